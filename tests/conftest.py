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


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """The REDCap image built once per session (tests/image_support.py), shared by every test
    that runs the container."""
    from image_support import build_image

    return build_image(tmp_path_factory.mktemp("image"))


@pytest.fixture
def case(mariadb, moto_server, tmp_path):
    """A bootstrap run against the session's MariaDB and moto (tests/fixtures/bootstrap_env.py)."""
    from fixtures.bootstrap_env import Case

    return Case(mariadb, moto_server, tmp_path)


@pytest.fixture(scope="session")
def dev_run():
    """The unchanged dev stack under mocks, evaluated once per session (read-only)."""
    from harness import cached_run

    return cached_run("dev")


@pytest.fixture(scope="session")
def prod_run():
    """The unchanged prod stack under mocks, evaluated once per session (read-only)."""
    from harness import cached_run

    return cached_run("prod")
