"""container/context.py: the build-context layout of notes/container-contract.md and a content hash
that depends on nothing but the inputs (not on timestamps, locations or the machine's umask)."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from container.context import assemble_context, context_files, context_hash
from fixtures.redcap_fixture import build_fixture_zip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def container_dir(tmp_path: Path) -> Path:
    """A copy of container/ plus the clutter that must stay out of the context."""
    dest = tmp_path / "container"
    shutil.copytree(ROOT / "container", dest, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (dest / "tests").mkdir()
    (dest / "tests" / "test_x.py").write_text("assert True\n")
    (dest / "bootstrap" / "__pycache__").mkdir(exist_ok=True)
    (dest / "bootstrap" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (dest / "apache" / "common.conf~").write_text("editor backup\n")
    return dest


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    langs = tmp_path / "languages"
    langs.mkdir()
    (langs / "Deutsch.ini").write_text("a = 1\n")
    (langs / "Francais.ini").write_text("b = 2\n")
    (langs / "notes.txt").write_text("not a language\n")
    sql = tmp_path / "config.sql"
    sql.write_text("REPLACE INTO redcap_config (field_name, value) VALUES ('x', '1');\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return {"redcap_zip": build_fixture_zip(tmp_path / "zip"), "languages_dir": langs,
            "config_sql": sql, "ca_bundle": ca}


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(root).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_matches_the_contract(tmp_path: Path, container_dir: Path, inputs: dict[str, Path]) -> None:
    ctx = assemble_context(tmp_path / "ctx", container_dir=container_dir, **inputs)
    files = tree(ctx)
    expected_container = {p.relative_to(container_dir).as_posix() for p in container_dir.rglob("*")
                          if p.is_file() and "tests" not in p.relative_to(container_dir).parts
                          and "__pycache__" not in p.parts and not p.name.endswith("~")}
    assert set(files) == expected_container | {
        "redcap.zip", "redcap-config.sql", "rds-ca-bundle.pem", "languages/Deutsch.ini", "languages/Francais.ini"}
    assert {"Dockerfile", "rds_iam_auth.php", "redcap-apache", "apache/common.conf", "php/redcap.ini",
            "bootstrap/__main__.py"} <= set(files)
    assert files["redcap.zip"][1] == inputs["redcap_zip"].read_bytes()
    assert files["redcap-config.sql"][1] == inputs["config_sql"].read_bytes()
    assert files["rds-ca-bundle.pem"][1] == inputs["ca_bundle"].read_bytes()
    # Modes are normalised: scripts executable, everything else 0644.
    assert files["redcap-apache"][0] == 0o755
    assert files["Dockerfile"][0] == 0o644 and files["redcap.zip"][0] == 0o644


def test_languages_dir_is_optional_but_always_present(tmp_path: Path, inputs: dict[str, Path]) -> None:
    ctx = assemble_context(tmp_path / "ctx", **{**inputs, "languages_dir": None})
    assert (ctx / "languages").is_dir() and list((ctx / "languages").iterdir()) == []


def test_destination_is_emptied_first(tmp_path: Path, inputs: dict[str, Path]) -> None:
    dest = tmp_path / "ctx"
    dest.mkdir()
    (dest / "stale-secret.env").write_text("x")
    assemble_context(dest, **inputs)
    assert not (dest / "stale-secret.env").exists()


def test_missing_inputs_fail_clearly(tmp_path: Path, inputs: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="REDCap zip not found"):
        assemble_context(tmp_path / "ctx", **{**inputs, "redcap_zip": tmp_path / "nope.zip"})
    with pytest.raises(FileNotFoundError, match="RDS CA bundle not found"):
        context_hash(**{**inputs, "ca_bundle": tmp_path / "nope.pem"})
    with pytest.raises(FileNotFoundError, match="languages_dir"):
        context_hash(**{**inputs, "languages_dir": tmp_path / "nope"})


def test_hash_ignores_location_and_timestamps(tmp_path: Path, inputs: dict[str, Path]) -> None:
    first = context_hash(**inputs)
    moved = tmp_path / "elsewhere"
    shutil.copytree(inputs["languages_dir"], moved / "langs")
    copies = {k: shutil.copy(v, moved / v.name) for k, v in inputs.items() if k != "languages_dir"}
    for p in [*map(Path, copies.values()), *(moved / "langs").iterdir()]:
        os.utime(p, (1, 1))
    assert context_hash(**{**{k: Path(v) for k, v in copies.items()}, "languages_dir": moved / "langs"}) == first
    assert len(first) == 64 and first == context_hash(**inputs)


@pytest.mark.parametrize("change", ["zip", "sql", "ca", "language content", "language name",
                                    "new language", "dockerfile", "executable bit"])
def test_hash_changes_with_any_input(tmp_path: Path, container_dir: Path, inputs: dict[str, Path],
                                     change: str) -> None:
    before = context_hash(container_dir=container_dir, **inputs)
    langs = inputs["languages_dir"]
    if change == "zip":
        inputs["redcap_zip"] = build_fixture_zip(tmp_path / "zip2", version="14.0.1")
    elif change == "sql":
        inputs["config_sql"].write_text(inputs["config_sql"].read_text() + "-- changed\n")
    elif change == "ca":
        inputs["ca_bundle"].write_bytes(inputs["ca_bundle"].read_bytes() + b"\n")
    elif change == "language content":
        (langs / "Deutsch.ini").write_text("a = 2\n")
    elif change == "language name":
        (langs / "Deutsch.ini").rename(langs / "German.ini")
    elif change == "new language":
        (langs / "Espanol.ini").write_text("c = 3\n")
    elif change == "dockerfile":
        (container_dir / "Dockerfile").write_text((container_dir / "Dockerfile").read_text() + "\n")
    elif change == "executable bit":
        (container_dir / "rds_iam_auth.php").chmod(0o755)
    assert context_hash(container_dir=container_dir, **inputs) != before


def test_non_language_files_do_not_affect_the_hash(inputs: dict[str, Path]) -> None:
    before = context_hash(**inputs)
    (inputs["languages_dir"] / "another-note.md").write_text("x")
    assert context_hash(**inputs) == before


def test_hash_covers_exactly_the_assembled_files(tmp_path: Path, inputs: dict[str, Path]) -> None:
    ctx = assemble_context(tmp_path / "ctx", **inputs)
    assert sorted(context_files(**inputs)) == sorted(tree(ctx))


def test_a_container_file_may_not_shadow_an_input(container_dir: Path, inputs: dict[str, Path]) -> None:
    (container_dir / "redcap.zip").write_bytes(b"PK")
    with pytest.raises(ValueError, match="shadow"):
        context_hash(container_dir=container_dir, **inputs)


def _modules(root: Path) -> Path:
    module = root / "modules" / "vizr_v1.2.3"
    (module / "lang").mkdir(parents=True)
    (module / "config.json").write_text('{"name": "Vizr"}\n')
    # Names that are build inputs or excluded at the top of container/ belong to the module here.
    (module / "languages").mkdir()
    (module / "languages" / "Deutsch.ini").write_text("y = 2\n")
    (module / "tests").mkdir()
    (module / "tests" / "ModuleTest.php").write_text("<?php\n")
    (module / "lang" / "English.ini").write_text("x = 1\n")
    (module / "__pycache__").mkdir()
    (module / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (root / "modules" / "README.md").write_text("not a module\n")
    (root / "modules" / ".git").mkdir()
    return root / "modules"


def test_module_directories_enter_the_context_whole(tmp_path: Path, inputs: dict[str, Path]) -> None:
    modules = _modules(tmp_path / "project")
    ctx = assemble_context(tmp_path / "ctx", **inputs, modules_dir=modules)
    assert sorted(p.relative_to(ctx).as_posix() for p in (ctx / "modules").rglob("*") if p.is_file()) == [
        "modules/vizr_v1.2.3/config.json", "modules/vizr_v1.2.3/lang/English.ini",
        "modules/vizr_v1.2.3/languages/Deutsch.ini", "modules/vizr_v1.2.3/tests/ModuleTest.php"]
    assert (ctx / "modules/vizr_v1.2.3/config.json").read_bytes() == (modules / "vizr_v1.2.3/config.json").read_bytes()
    # Without a modules/ folder the context still has the (empty) directory the Dockerfile copies.
    assert list((assemble_context(tmp_path / "ctx2", **inputs) / "modules").iterdir()) == []


def test_module_content_changes_the_hash_and_nothing_else_does(tmp_path: Path, inputs: dict[str, Path]) -> None:
    modules = _modules(tmp_path / "a")
    first = context_hash(**inputs, modules_dir=modules)
    assert first != context_hash(**inputs)
    moved = _modules(tmp_path / "b")
    for p in moved.rglob("*"):
        os.utime(p, (1, 1))
    assert context_hash(**inputs, modules_dir=moved) == first
    (moved / "README.md").write_text("still not a module\n")
    assert context_hash(**inputs, modules_dir=moved) == first
    (moved / "vizr_v1.2.3" / "config.json").write_text('{"name": "Vizr 2"}\n')
    assert context_hash(**inputs, modules_dir=moved) != first


def test_a_module_directory_redcap_cannot_find_fails_clearly(tmp_path: Path, inputs: dict[str, Path]) -> None:
    modules = tmp_path / "modules"
    (modules / "Vizr").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"modules/Vizr: an external module directory must be named "
                                         r"<prefix>_v<version> in lower case, e.g. modules/vizr_v1.2.3"):
        context_hash(**inputs, modules_dir=modules)
    with pytest.raises(FileNotFoundError, match="modules_dir"):
        context_hash(**inputs, modules_dir=tmp_path / "nope")
