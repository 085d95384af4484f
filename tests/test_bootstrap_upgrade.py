"""The container's upgrade-database mode (container/bootstrap/upgrade.py) for real: MariaDB, the
secrets in moto_server, the bootstrap as a subprocess exactly like the one-off task's command, and
the REDCap fixture's upgrade page (tests/fixtures/redcap_fixture.py), which prints the upgrade SQL
the way REDCap's upgrade.php does for `?sql=1`.

A database installed at 14.0.0 by a container of the old image; then the task of the new image
(14.0.1, or 14.2.0 several versions ahead) upgrades it, once.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap import upgrade as up  # noqa: E402
from bootstrap.errors import UpgradeFailed  # noqa: E402
from fixtures.bootstrap_env import Case, assert_no_secret_leak, succeeded  # noqa: E402
from fixtures.redcap_fixture import default_upgrade_sql, extract_fixture  # noqa: E402

OLD, NEW = "14.0.0", "14.0.1"


def result_of(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith(up.RESULT_PREFIX)]
    assert len(lines) == 1, f"expected one result line:\n{out}"
    return json.loads(lines[0][len(up.RESULT_PREFIX):])


def new_image(case: Case, version: str = NEW, upgrades: dict | None = None) -> None:
    """The task runs the new image: REDCap's files of `version` (database.php as the zip has it)."""
    root = extract_fixture(case.tmp / f"image-{version}", version, upgrades)
    case.env["REDCAP_ROOT"] = str(root)


def version(case: Case) -> str:
    return case.config()["redcap_version"]


@pytest.fixture
def installed(case: Case) -> Case:
    succeeded(case.run())  # the old image's container installs REDCap 14.0.0
    assert version(case) == OLD
    return case


def test_upgrades_the_database_to_the_image_version_once(installed: Case):
    case = installed
    new_image(case)
    result = case.run(up.MODE)
    out = succeeded(result)
    assert result_of(out) == {"status": "upgraded", "from": OLD, "to": NEW, "statements": result_of(out)["statements"],
                              "seconds": result_of(out)["seconds"]}
    assert result_of(out)["statements"] >= 6  # USE, SET, the version's two statements, date, history, version
    assert version(case) == NEW
    assert case.query("SELECT version FROM redcap_fixture_upgrades") == ((NEW,),)
    assert (NEW,) in case.query("SELECT redcap_version FROM redcap_history_version")
    # The container started as any container does: the application user and database.php work.
    front = case.index_php()
    assert f"REDCap fixture OK db={case.db_name} version={NEW}" in front.stdout, front.stdout + front.stderr
    # Again: nothing to do, nothing run.
    again = succeeded(case.run(up.MODE))
    assert result_of(again)["status"] == "current" and result_of(again)["to"] == NEW
    assert case.query("SELECT COUNT(*) FROM redcap_fixture_upgrades") == ((1,),)


def test_several_versions_at_once_in_order_and_only_those_after_the_database(installed: Case):
    case = installed
    upgrades = {"13.9.0": "DROP TABLE redcap_auth;\n",  # before the database's version: never run
                OLD: "DROP TABLE redcap_user_information;\n",  # the database's own version: never run
                "14.0.1": default_upgrade_sql("14.0.1"),
                "14.1.0": "ALTER TABLE `redcap_fixture_upgrades` ADD `note` VARCHAR(40) NULL;\n"
                          "UPDATE `redcap_fixture_upgrades` SET `note` = 'after 14.0.1';\n",
                "14.2.0": default_upgrade_sql("14.2.0")}
    new_image(case, "14.2.0", upgrades)
    out = succeeded(case.run(up.MODE))
    assert result_of(out)["from"] == OLD and result_of(out)["to"] == "14.2.0"
    assert version(case) == "14.2.0"
    assert case.query("SELECT version, note FROM redcap_fixture_upgrades ORDER BY version") == (
        ("14.0.1", "after 14.0.1"), ("14.2.0", None))
    tables = {row[0] for row in case.query("SHOW TABLES")}
    assert {"redcap_auth", "redcap_user_information"} <= tables


def test_a_failing_statement_fails_the_task_and_says_where(installed: Case):
    case = installed
    new_image(case, NEW, {NEW: "CREATE TABLE `redcap_fixture_half` (`id` INT PRIMARY KEY);\n"
                               "ALTER TABLE `redcap_no_such_table` ADD `x` INT NULL;\n"
                               "CREATE TABLE `redcap_fixture_never` (`id` INT PRIMARY KEY);\n"})
    result = case.run(up.MODE)
    out = result.stdout + result.stderr
    assert result.returncode == UpgradeFailed.exit_code == 8, out
    assert_no_secret_leak(out)
    outcome = result_of(out)
    assert outcome["status"] == "failed" and outcome["from"] == OLD and outcome["to"] == NEW
    assert "the upgrade SQL failed at statement 4 (in the SQL for version 14.0.1: ALTER TABLE " \
           "`redcap_no_such_table` ADD `x` INT NULL;)" in outcome["error"]
    assert "redcap_no_such_table' doesn't exist" in outcome["error"]
    assert "3 statement(s) before it ran and stay applied" in outcome["error"]
    # Partly upgraded, as REDCap's own upgrade would leave it: the version is still the old one.
    tables = {row[0] for row in case.query("SHOW TABLES")}
    assert "redcap_fixture_half" in tables and "redcap_fixture_never" not in tables
    assert version(case) == OLD


def dump(case: Case) -> bytes:
    """The database as a snapshot would keep it (mariadb-dump of the whole schema and data)."""
    return subprocess.run(["mariadb-dump", "-h", "127.0.0.1", "-P", str(case.mariadb.port), "-u", "root",
                           "--skip-dump-date", case.db_name], check=True, capture_output=True).stdout


def restore(case: Case, data: bytes) -> None:
    case.mariadb.fresh_database(case.db_name)
    subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(case.mariadb.port), "-u", "root", case.db_name],
                   input=data, check=True, capture_output=True)


def test_a_partial_upgrade_is_never_run_over_and_going_back_clears_the_way(installed: Case):
    case = installed
    before = dump(case)  # what the snapshot taken before the rollout holds
    broken = {NEW: "INSERT INTO `redcap_config` (field_name, value) VALUES ('fixture_counter', '1');\n"
                   "ALTER TABLE `redcap_no_such_table` ADD `x` INT NULL;\n"}
    new_image(case, NEW, broken)
    assert case.run(up.MODE).returncode == 8
    assert case.config()["fixture_counter"] == "1"
    # A second task (a retry of `pulumi up`, or a fixed image) must not run anything over it.
    new_image(case, NEW)
    again = case.run(up.MODE)
    error = result_of(again.stdout)["error"]
    assert again.returncode == 8
    assert error.startswith(f"an earlier upgrade from {OLD} to {NEW}, started at ")
    assert "did not complete (failed: the upgrade SQL failed at statement 4" in error
    assert "nothing was run. Go back first: backtrack the cluster to before that time or restore the snapshot" in error
    assert case.config()["fixture_counter"] == "1" and version(case) == OLD
    # The way back (here: the snapshot's content) rewinds the record too; then the upgrade runs.
    restore(case, before)
    assert "fixture_counter" not in case.config()
    out = succeeded(case.run(up.MODE))
    assert result_of(out)["status"] == "upgraded" and version(case) == NEW
    assert case.query("SELECT source, decision FROM redcap_pulumi_state WHERE name = 'redcap_upgrade'") == (
        (f"{OLD} -> {NEW}", "done"),)


def test_redcaps_refusal_is_reported_and_nothing_runs(installed: Case):
    """REDCap 15.6+ refuses databases without the full-Unicode transformation and exits 0 with an
    HTML message instead of SQL."""
    case = installed
    new_image(case)
    case.env["REDCAP_FIXTURE_UPGRADE_UNICODE_ERROR"] = "1"
    result = case.run(up.MODE)
    outcome = result_of(result.stdout)
    assert result.returncode == 8
    assert outcome["error"].startswith(f"REDCap's upgrade.php printed no upgrade SQL for {OLD} -> {NEW}")
    assert "Unicode Transformation" in outcome["error"]
    assert version(case) == OLD
    assert "redcap_fixture_upgrades" not in {row[0] for row in case.query("SHOW TABLES")}


def test_a_database_newer_than_the_image_is_refused(installed: Case):
    case = installed
    new_image(case)
    succeeded(case.run(up.MODE))
    case.env["REDCAP_ROOT"] = str(extract_fixture(case.tmp / "old-again", OLD))
    result = case.run(up.MODE)
    assert result.returncode == 8
    assert result_of(result.stdout)["error"].startswith(
        f"the database is at REDCap {NEW}, newer than this image's {OLD}: REDCap cannot run an older version on it")
    assert version(case) == NEW


def test_the_image_must_hold_the_upgrade_page(installed: Case):
    case = installed
    new_image(case)
    (Path(case.env["REDCAP_ROOT"]) / "upgrade.php").unlink()
    result = case.run(up.MODE)
    assert result.returncode == 8
    assert "upgrade.php is missing: the image does not contain REDCap's upgrade page" in result_of(result.stdout)["error"]


def test_a_failed_start_fails_before_any_upgrade(case: Case):
    """The task starts like every container: invalid environment, no upgrade attempted."""
    env = dict(case.env)
    env.pop("DB_HOST")
    result = case.run(up.MODE, env=env)
    assert result.returncode == 2 and "DB_HOST: missing" in result.stdout
    assert up.RESULT_PREFIX not in result.stdout


def test_the_script_is_checked_before_it_runs():
    script = ("-- --- SQL to upgrade REDCap to version 15.1.0 from 15.0.9 --- --\r\nUSE `redcap`;\r\n"
              "UPDATE redcap_config SET value = '15.1.0' WHERE field_name = 'redcap_version';\r\n")
    assert up.check_script(script, "15.0.9", "15.1.0") == script
    with pytest.raises(UpgradeFailed, match="printed the SQL for 15.0.9 -> 15.1.0, not 15.0.8 -> 15.1.0"):
        up.check_script(script, "15.0.8", "15.1.0")
    with pytest.raises(UpgradeFailed, match="does not end by recording 15.1.0"):
        up.check_script(script.split("UPDATE")[0], "15.0.9", "15.1.0")
    with pytest.raises(UpgradeFailed, match="printed no upgrade SQL"):
        up.check_script("<html>Fatal error</html>", "15.0.9", "15.1.0")


def test_plan_compares_versions_as_numbers():
    assert up.plan("15.0.9", "15.0.10") == up.UPGRADED
    assert up.plan("15.0.10", "15.0.10") == up.CURRENT
    with pytest.raises(UpgradeFailed, match="newer than this image's 15.0.9"):
        up.plan("15.0.10", "15.0.9")
    with pytest.raises(UpgradeFailed, match="REDCap is not installed here"):
        up.plan(None, "15.0.9")
    with pytest.raises(UpgradeFailed, match="no redcap_vX.Y.Z directory"):
        up.plan("15.0.9", None)


def test_statements_are_found_per_version_section():
    script = ("-- --- SQL to upgrade REDCap to version 2.0.0 from 1.0.0 --- --\r\nUSE `redcap`;\r\n"
              "\r\n-- SQL for Version 1.1.0 --\r\nALTER TABLE a\r\n  ADD b INT;\r\n-- a comment\r\nSELECT 1;\r\n")
    assert up.statements(script) == [("header", "USE `redcap`;"), ("1.1.0", "ALTER TABLE a\n  ADD b INT;"),
                                     ("1.1.0", "SELECT 1;")]

