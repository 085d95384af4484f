"""Docs that are generated from code, or name code, must agree with it."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import settings
from docs_reference import render_settings_reference, rows

ROOT = Path(__file__).resolve().parent.parent


def test_settings_reference_is_generated_from_the_code():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == render_settings_reference(), "docs/settings.md is stale: run scripts/settings-reference"


def test_every_key_and_nested_key_is_described():
    keys = {k for k, *_ in rows()}
    assert set(settings.KNOWN_KEYS) <= keys
    assert keys == set(settings.DESCRIPTIONS), "a description without a key, or a key without one"


def test_reference_check_mode_detects_staleness(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings-reference"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no command block"
    first = blocks[0]
    assert "pulumi up -s dev" in first and "scripts/test" in first


def test_ci_runs_the_readme_test_command():
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
