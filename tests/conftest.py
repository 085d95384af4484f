"""Shared fixtures. Real services are session-scoped: started once, used by every test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from services import MariaDB, MotoServer  # noqa: E402


@pytest.fixture(scope="session")
def mariadb():
    server = MariaDB.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer.start()
    yield server
    server.stop()
