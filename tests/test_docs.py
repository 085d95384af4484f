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


# --- commands in the docs name things that exist ---------------------------------------------

DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "container" / "README.md"])


def _doc_text() -> str:
    return "\n".join(p.read_text() for p in DOC_FILES)


DELIBERATE_TYPOS = {"allowedIp"}  # README shows the error a typo gives


def _valid_key_path(path: str) -> bool:
    """`db.scaling.minCapacityAcu` or `allowedIps[0]` against the settings models."""
    keys = {k for k, *_ in rows()}
    plain = re.sub(r"\[\d+\]", "", path)
    return plain in keys


def test_every_redcap_key_in_the_docs_exists():
    # Type tokens (redcap:storage:Storage) are not config keys; README's typo example is deliberate.
    found = set(re.findall(r"redcap:([A-Za-z][A-Za-z0-9.\[\]]*[A-Za-z0-9\]])(?![A-Za-z0-9.\[\]:])", _doc_text()))
    assert found, "no redcap: keys found in the docs"
    unknown = sorted(k for k in found if not _valid_key_path(k) and k not in DELIBERATE_TYPOS)
    assert unknown == [], f"docs name config keys that the settings package does not have: {unknown}"


def test_every_stack_output_in_the_docs_is_exported():
    from harness import cached_run
    from variants import VARIANTS

    exported: set[str] = set()
    for _, stack, overrides in VARIANTS:
        exported |= set(cached_run(stack, overrides).outputs)
    named = set(re.findall(r"pulumi stack output ([A-Za-z][A-Za-z0-9]*)", _doc_text()))
    assert named, "no `pulumi stack output` commands found in the docs"
    assert sorted(named - exported) == [], "docs read stack outputs the program does not export"


def test_linked_docs_and_scripts_exist():
    text = _doc_text()
    for rel in set(re.findall(r"(?<![/\w.-])((?:docs|scripts|benchmarks|container|sql|policy|ops)/[A-Za-z0-9_./-]+)", text)):
        rel = rel.rstrip(".,)")
        if "<" in rel or "*" in rel:
            continue
        generated = any(subprocess.run(["git", "check-ignore", "-q", candidate], cwd=ROOT).returncode == 0
                        for candidate in (rel, rel + "/"))  # generated files and folders (venv/, build/)
        assert (ROOT / rel).exists() or generated, f"docs mention {rel}, which does not exist"


def test_files_that_must_never_be_committed_are_ignored():
    # The generated configuration SQL holds the site admin's password hash; REDCap is licensed.
    for path in ("sql/redcap-config.sql", "releases/redcap15.0.9.zip"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


def test_every_dev_output_the_docs_read_is_exported_by_the_committed_dev_stage():
    """`pulumi stack output X -s dev` in a doc must work on the committed Pulumi.dev.yaml as it is
    (ECS Express Mode, no domain): not on a variant with another runtime."""
    from harness import cached_run

    dev = cached_run("dev", {})
    named = set(re.findall(r"pulumi stack output ([A-Za-z][A-Za-z0-9]*) -s dev\b", _doc_text()))
    assert {"siteUrl", "expressLogGroup", "expressDescribeCommand"} <= named
    assert sorted(named - set(dev.outputs)) == []
    assert dev.outputs["siteUrl"] == dev.outputs["cloudFrontUrl"]
    assert not {"appRunnerServiceUrl", "loadBalancerUrl", "customServiceUrl"} & set(dev.outputs)
