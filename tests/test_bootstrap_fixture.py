"""The REDCap stand-in zip used by the bootstrap and image tests: layout and determinism."""
from __future__ import annotations

import hashlib
import zipfile

from fixtures.redcap_fixture import build_fixture_zip


def test_layout_imitates_a_redcap_release(tmp_path):
    path = build_fixture_zip(tmp_path, "14.0.0")
    assert path == tmp_path / "redcap14.0.0.zip"
    names = set(zipfile.ZipFile(path).namelist())
    for name in ("redcap/index.php", "redcap/install.php", "redcap/cron.php",
                 "redcap/database.php", "redcap/temp/", "redcap/edocs/", "redcap/modules/",
                 "redcap/redcap_v14.0.0/Config/init_functions.php"):
        assert name in names
    assert all(n.startswith("redcap/") for n in names)
    init = zipfile.ZipFile(path).read("redcap/redcap_v14.0.0/Config/init_functions.php")
    assert b"$bypassReadReplicaLagCheck=false)" in init


def test_zip_is_deterministic_and_versioned(tmp_path):
    a = build_fixture_zip(tmp_path / "a")
    b = build_fixture_zip(tmp_path / "b")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    other = build_fixture_zip(tmp_path / "c", "14.0.1")
    assert "redcap/redcap_v14.0.1/VERSION" in zipfile.ZipFile(other).namelist()
    assert b"'14.0.1'" in zipfile.ZipFile(other).read("redcap/install.php")


def test_upgrade_files_are_named_as_redcap_names_them(tmp_path):
    """REDCap's Upgrade::getUpgradeSql reads redcap_vX.Y.Z/Resources/sql/upgrade_<XX.YY.ZZ>.sql|php."""
    path = build_fixture_zip(tmp_path, "15.1.0", upgrades={"15.0.10": "SELECT 1;\n", "15.1.0": "SELECT 2;\n"})
    names = set(zipfile.ZipFile(path).namelist())
    assert {"redcap/upgrade.php", "redcap/redcap_v15.1.0/upgrade.php",
            "redcap/redcap_v15.1.0/Resources/sql/upgrade_15.00.10.sql",
            "redcap/redcap_v15.1.0/Resources/sql/upgrade_15.01.00.sql"} <= names
    default = set(zipfile.ZipFile(build_fixture_zip(tmp_path / "d", "14.0.1")).namelist())
    assert "redcap/redcap_v14.0.1/Resources/sql/upgrade_14.00.01.sql" in default
