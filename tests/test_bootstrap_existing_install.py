"""Which databases get the configuration SQL and the initial site_admin login (container/
bootstrap/config_sql.py): a database this bootstrap installed REDCap on, always once; a database
on which REDCap was already installed (migrated from the original system, restored from an
older snapshot) never, unless REDCAP_CONFIG_SQL_MODE=apply (stage setting
redcap:configurationSql). Real MariaDB, secrets in moto_server, the bootstrap as a subprocess;
"installed elsewhere" is the fixture's own install.php run from another tree, as another system
would have run it.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.config_sql import (  # noqa: E402
    ALREADY_APPLIED, APPLIED, DIFFERENT_FILE, FOUND_INSTALLED, INSTALLED_EARLIER, INSTALLED_NOW,
    KEPT, PENDING, REQUESTED, STILL_KEPT, Decision, Marker, decide,
)
from bootstrap.install import INSTALL_CODE  # noqa: E402
from fixtures.bootstrap_env import (  # noqa: E402
    ADMIN_PASSWORD, DEFAULT_SQL, S3_KEY_ID, S3_SECRET, Case, admin_case, require_php,
    site_admin_login,
)
from fixtures.bootstrap_env import admin_succeeded as ok  # noqa: E402
from fixtures.redcap_fixture import extract_fixture  # noqa: E402

DEFAULT_SHA = hashlib.sha256(DEFAULT_SQL.read_bytes()).hexdigest()
OTHER_SHA = "0" * 64

# What a production site looks like after years of administration: LDAP login, the API on,
# its own language, contacts and base URL, files in the original system's bucket.
SITE_SETTINGS = {
    "auth_meth_global": "ldap",
    "api_enabled": "1",
    "auto_report_stats": "1",
    "language_global": "German",
    "from_email": "redcap-help@hospital.example",
    "homepage_contact_email": "redcap-help@hospital.example",
    "project_contact_email": "redcap-help@hospital.example",
    "redcap_base_url": "https://redcap.hospital.example/",
    "edoc_storage_option": "2",
    "amazon_s3_bucket": "prod-redcap-original-files",
    "amazon_s3_key": "AKIAORIGINALSYSTEM1",
    "amazon_s3_secret": "original-system-secret",
    "amazon_s3_endpoint": "us-east-1",
}
S3_ROWS = ("amazon_s3_bucket", "amazon_s3_key", "amazon_s3_secret", "amazon_s3_endpoint")
FOUND = ("REDCap 13.7.2, login method 'ldap', 3 user(s), 2 super user(s)")
FROM_WARNING = ("REDCap's universal From address (from_email) is 'redcap-help@hospital.example', not "
                "SMTP_EMAIL redcap@example.org, the stack's senderAddress: SES refuses mail From an "
                "address outside the stack's identities and receivers' DMARC checks fail outside its "
                "DKIM-signed domain; set it to redcap@example.org in Control Center -> General "
                "Configuration -> \"Set a universal FROM email address\" (docs/email.md)")


@pytest.fixture
def case(mariadb, moto_server, tmp_path) -> Case:
    return admin_case(mariadb, moto_server, tmp_path)


def install_elsewhere(case: Case, version: str = "13.7.2") -> None:
    """REDCap installed by another system (e.g. the original deployment), then administered."""
    root = extract_fixture(case.tmp / "elsewhere", version)
    (root / "database.php").write_text(
        "<?php\n"
        f"$hostname = '127.0.0.1:{case.mariadb.port}';\n"
        f"$db = '{case.db_name}';\n"
        "$username = 'root';\n$password = '';\n$salt = 'another-system';\n")
    result = subprocess.run([require_php(), "-r", INSTALL_CODE], cwd=root, capture_output=True,
                            text=True, timeout=60)
    assert f"installed {version}" in result.stdout, result.stdout + result.stderr
    for field, value in SITE_SETTINGS.items():
        case.query("UPDATE redcap_config SET value = %s WHERE field_name = %s", (value, field))
    # The site's own administrators next to the installer's site_admin; LDAP, so no table logins.
    case.query("INSERT INTO redcap_user_information (username, user_email, super_user) VALUES "
               "('alice', 'alice@hospital.example', 1), ('bob', 'bob@hospital.example', 0)")


def state(case: Case) -> dict:
    (marker_table,) = case.query("SELECT COUNT(*) FROM information_schema.tables WHERE "
                                 "table_schema = %s AND table_name = 'redcap_pulumi_state'",
                                 (case.db_name,))
    return {
        "config": case.config(),
        "users": case.query("SELECT * FROM redcap_user_information ORDER BY username"),
        "logins": case.query("SELECT * FROM redcap_auth ORDER BY username"),
        "marker": case.query("SELECT * FROM redcap_pulumi_state") if marker_table[0] else None,
    }


def marker(case: Case) -> tuple:
    (row,) = case.query("SELECT sha256, decision, reason FROM redcap_pulumi_state "
                        "WHERE name = 'config_sql'")
    return tuple(row)


# -- the decision (pure) --------------------------------------------------------------------------

def m(decision: str, sha: str = DEFAULT_SHA) -> Marker:
    return Marker(sha256=sha, decision=decision, reason="", recorded_at=None)


@pytest.mark.parametrize("mode", ["onInstall", "apply"])
@pytest.mark.parametrize("installed_now, found, expected", [
    # Installed by this bootstrap: always the file, even over an old marker left behind.
    (True, None, INSTALLED_NOW),
    (True, m(APPLIED), INSTALLED_NOW),
    (True, m(KEPT), INSTALLED_NOW),
    (False, m(PENDING), INSTALLED_EARLIER),
    (False, m(PENDING, OTHER_SHA), INSTALLED_EARLIER),
    # This very file applied: nothing, whatever the mode (restarts with apply still set).
    (False, m(APPLIED), ALREADY_APPLIED),
])
def test_decision_independent_of_the_mode(mode, installed_now, found, expected):
    assert decide(mode, installed_now, found, DEFAULT_SHA).kind == expected


@pytest.mark.parametrize("found, on_install, apply", [
    (None, Decision(FOUND_INSTALLED, apply=False, record_kept=True),
     Decision(REQUESTED, apply=True, record_kept=False)),
    (m(KEPT), Decision(STILL_KEPT, apply=False, record_kept=False),
     Decision(REQUESTED, apply=True, record_kept=False)),
    (m(KEPT, OTHER_SHA), Decision(STILL_KEPT, apply=False, record_kept=False),
     Decision(REQUESTED, apply=True, record_kept=False)),
    (m(APPLIED, OTHER_SHA), Decision(DIFFERENT_FILE, apply=False, record_kept=False),
     Decision(REQUESTED, apply=True, record_kept=False)),
])
def test_only_the_operator_applies_the_file_to_an_installation_found(found, on_install, apply):
    assert decide("onInstall", False, found, DEFAULT_SHA) == on_install
    assert decide("apply", False, found, DEFAULT_SHA) == apply


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown configuration SQL mode 'Apply'"):
        decide("Apply", True, None, DEFAULT_SHA)


# -- a database this bootstrap installs -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["onInstall", "apply"])
def test_fresh_database_gets_the_file_and_site_admin(case: Case, mode):
    case.env["REDCAP_CONFIG_SQL_MODE"] = mode
    out = ok(case.run())
    assert "running REDCap's install.php" in out
    assert ("applied (9 statements, sha256 " + DEFAULT_SHA[:12]
            + "): REDCap installed on an empty database by this start") in out
    config = case.config()
    assert (config["auth_meth_global"], config["api_enabled"], config["language_global"]) == (
        "table", "0", "English")
    # REDCap sends everything From the stack's sender, the one address SES and DMARC accept.
    assert config["from_email"] == case.env["SMTP_EMAIL"] == "redcap@example.org"
    assert "REDCap's universal From address (from_email) set to redcap@example.org (SMTP_EMAIL)" in out
    assert "REDCap's universal From address is redcap@example.org (SMTP_EMAIL)" in out
    assert site_admin_login(case)[3] == 1  # temporary password from the secret
    assert marker(case) == (DEFAULT_SHA, "applied", "REDCap installed on an empty database by "
                            "this start; site_admin login from REDCAP_ADMIN_SECRET_ID")
    before = state(case)
    out = ok(case.run())
    assert "already applied at" in out and "REDCAP_ADMIN_SECRET_ID not used" in out
    assert state(case) == before


def test_a_start_that_stopped_before_configuring_is_configured_by_the_next(case: Case, tmp_path):
    broken = tmp_path / "broken.sql"
    broken.write_text("UPDATE redcap_config SET value = 'table' WHERE field_name = "
                      "'auth_meth_global';\nINSERT INTO no_such_table VALUES (1);\n")
    result = case.run(env={**case.env, "REDCAP_CONFIG_SQL": str(broken)})
    assert result.returncode == 5, result.stdout + result.stderr
    assert "failed and was rolled back" in result.stdout
    # REDCap's bare install ('none' lets anyone act as site_admin), known as ours.
    assert case.config()["auth_meth_global"] == "none"
    assert marker(case)[1:] == ("pending", "REDCap being installed on an empty database by "
                                           "this bootstrap")
    assert site_admin_login(case) is None

    out = ok(case.run())
    assert "install skipped" in out
    assert "an earlier start installed REDCap here and stopped before configuring it" in out
    assert case.config()["auth_meth_global"] == "table"
    assert site_admin_login(case) is not None
    assert marker(case) == (DEFAULT_SHA, "applied", "REDCap installed by an earlier start that "
                            "stopped before configuring it; site_admin login from "
                            "REDCAP_ADMIN_SECRET_ID")


def test_schema_installed_now_is_configured_even_over_an_old_marker(case: Case):
    ok(case.run())
    # Someone dropped REDCap's tables to start over but left the bootstrap's marker table.
    for table in ("redcap_config", "redcap_auth", "redcap_user_information"):
        case.query(f"DROP TABLE {table}")
    out = ok(case.run())
    assert "running REDCap's install.php" in out
    assert case.config()["auth_meth_global"] == "table"  # never REDCap's bare 'none'
    assert site_admin_login(case) is not None
    assert marker(case)[1] == "applied"


def test_marker_table_of_an_earlier_version_is_upgraded(case: Case, tmp_path):
    ok(case.run())
    before = case.config()
    # The table as the first release wrote it: a row only for an applied file.
    case.query("DROP TABLE redcap_pulumi_state")
    case.query("CREATE TABLE redcap_pulumi_state (name VARCHAR(64) NOT NULL PRIMARY KEY, "
               "sha256 CHAR(64) NOT NULL, source VARCHAR(255) NOT NULL, applied_at DATETIME "
               "NOT NULL) ENGINE=InnoDB")
    case.query("INSERT INTO redcap_pulumi_state VALUES ('config_sql', %s, %s, "
               "'2025-01-01 00:00:00')", (DEFAULT_SHA, str(DEFAULT_SQL)))
    out = ok(case.run())
    assert "configuration SQL already applied at 2025-01-01 00:00:00: skipped." in out
    assert marker(case) == (DEFAULT_SHA, "applied", "")
    changed = tmp_path / "changed.sql"
    changed.write_text("REPLACE INTO redcap_config (field_name, value) VALUES "
                       "('api_enabled', '1');\n")
    out = ok(case.run(env={**case.env, "REDCAP_CONFIG_SQL": str(changed)}))
    assert "differs from the one applied at 2025-01-01 00:00:00" in out
    assert case.config() == before


# -- a database on which REDCap was already installed ------------------------------------------------

def test_existing_installation_keeps_its_settings_and_gets_no_new_account(case: Case, tmp_path):
    install_elsewhere(case)
    before = state(case)
    out = ok(case.run())
    assert "install skipped" in out and "running REDCap's install.php" not in out
    assert (f"REDCap was already installed on this database ({FOUND}), not by this bootstrap: "
            f"configuration SQL {DEFAULT_SQL} NOT applied and no site_admin login created; its "
            "settings and accounts are kept (recorded as 'kept' in redcap_pulumi_state). To "
            "apply the file anyway, set redcap:configurationSql to apply "
            "(REDCAP_CONFIG_SQL_MODE=apply); see docs/configuration-sql.md. "
            "REDCAP_ADMIN_SECRET_ID not used: no site_admin login is created.") in out
    after = state(case)
    # Every setting kept but the four S3 connection rows, which follow the stack's bucket and
    # key pair (the only ones its key can reach; docs/migrating.md copies the files).
    assert {k: v for k, v in after["config"].items() if k not in S3_ROWS} == \
        {k: v for k, v in before["config"].items() if k not in S3_ROWS}
    assert [after["config"][f] for f in S3_ROWS] == [
        "prod-redcap-app-files", S3_KEY_ID, S3_SECRET, "us-east-1"]
    # Its From address too, with a warning at every start saying what the operator must set.
    assert after["config"]["from_email"] == "redcap-help@hospital.example"
    assert (f"WARNING: {FROM_WARNING}") in out
    # The same accounts, no table login for anyone, no super user added.
    assert after["users"] == before["users"]
    assert after["logins"] == () and site_admin_login(case) is None
    assert marker(case) == (DEFAULT_SHA, "kept", "REDCap already installed when first seen: "
                            + FOUND)

    # Restarts: the same decision, nothing written.
    out = ok(case.run())
    assert "configuration SQL not applied: REDCap was already installed when this bootstrap "\
           "first saw the database at " in out
    assert "(kept; REDCAP_CONFIG_SQL_MODE=onInstall)" in out
    assert FROM_WARNING in out
    assert state(case) == after
    # Nor does a new image with another configuration file change that.
    changed = tmp_path / "changed.sql"
    changed.write_text("REPLACE INTO redcap_config (field_name, value) VALUES "
                       "('auth_meth_global', 'table');\n")
    ok(case.run(env={**case.env, "REDCAP_CONFIG_SQL": str(changed)}))
    assert state(case) == after


def test_operator_opt_in_applies_the_file_once(case: Case, tmp_path):
    install_elsewhere(case)
    ok(case.run())  # first start without the opt-in: kept
    users = state(case)["users"]

    case.env["REDCAP_CONFIG_SQL_MODE"] = "apply"
    out = ok(case.run())
    assert ("applied (9 statements, sha256 " + DEFAULT_SHA[:12] + "): REDCAP_CONFIG_SQL_MODE="
            "apply (redcap:configurationSql) on an existing installation") in out
    config = case.config()
    assert (config["auth_meth_global"], config["api_enabled"], config["auto_report_stats"],
            config["language_global"]) == ("table", "0", "0", "English")
    assert config["redcap_base_url"] == SITE_SETTINGS["redcap_base_url"]  # not in the file
    assert config["from_email"] == "redcap@example.org" and FROM_WARNING not in out
    # site_admin gets the temporary table login; super-user flags stay as the site set them.
    hashed, salt, legacy, temp = site_admin_login(case)
    assert (hashed, legacy, temp) == (
        hashlib.sha512((ADMIN_PASSWORD + salt).encode()).hexdigest(), 0, 1)
    assert state(case)["users"] == users
    assert marker(case) == (DEFAULT_SHA, "applied", "REDCAP_CONFIG_SQL_MODE=apply "
                            "(redcap:configurationSql) on an existing installation; site_admin "
                            "login from REDCAP_ADMIN_SECRET_ID")

    # Left set, apply does not re-apply the same file: the administrator's changes stay.
    case.query("UPDATE redcap_config SET value = 'ldap_table' WHERE field_name = "
               "'auth_meth_global'")
    applied = state(case)
    out = ok(case.run())
    assert "configuration SQL already applied at" in out
    assert state(case) == applied
    # A new file is applied once more while apply is set (that is what apply asks for).
    changed = tmp_path / "changed.sql"
    changed.write_text("REPLACE INTO redcap_config (field_name, value) VALUES "
                       "('language_global', 'French');\n")
    env = {**case.env, "REDCAP_CONFIG_SQL": str(changed)}
    ok(case.run(env=env))
    assert case.config()["language_global"] == "French"
    assert case.config()["auth_meth_global"] == "ldap_table"
    assert site_admin_login(case) == (hashed, salt, legacy, temp)  # has a login: untouched
    again = state(case)
    ok(case.run(env=env))
    assert state(case) == again
    # The documented last step: the setting removed, back to onInstall; nothing changes.
    del env["REDCAP_CONFIG_SQL_MODE"]
    out = ok(case.run(env=env))
    assert "configuration SQL mode=onInstall" in out and "already applied at" in out
    assert state(case) == again


def test_restored_snapshot_of_this_stack_keeps_its_decision(case: Case):
    """A snapshot of a database this bootstrap configured carries its marker: restored into a
    new cluster (a new stack), it is neither re-configured nor given a new login."""
    ok(case.run())
    case.query("UPDATE redcap_config SET value = 'shibboleth' WHERE field_name = "
               "'auth_meth_global'")
    case.query("DELETE FROM redcap_auth")
    before = {k: v for k, v in state(case).items() if k != "config"}
    case.env["S3_BUCKET"] = "restored-redcap-app-files"
    out = ok(case.run())
    assert "configuration SQL already applied at" in out
    assert case.config()["auth_meth_global"] == "shibboleth"
    assert {k: v for k, v in state(case).items() if k != "config"} == before
