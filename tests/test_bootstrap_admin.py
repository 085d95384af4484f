"""The initial site_admin password from REDCAP_ADMIN_SECRET_ID (container/bootstrap/admin.py):
real MariaDB, the secret in moto_server, the bootstrap as a subprocess, and REDCap's hash
checked both in Python and by PHP's own hash()."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.admin import (  # noqa: E402
    SALT_ALPHABET, admin_password_problem, new_password_salt, redcap_password_hash,
)
from bootstrap.config_sql import configure, load_config_sql  # noqa: E402
from bootstrap.errors import DatabaseStepError  # noqa: E402
from bootstrap.secrets import Secrets, Credentials  # noqa: E402
from fixtures.bootstrap_env import (  # noqa: E402
    ADMIN_PASSWORD, DEFAULT_SQL, Case, admin_case, create_secret, require_php, site_admin_login,
    unique,
)
from fixtures.bootstrap_env import admin_succeeded as ok  # noqa: E402
from fixtures.redcap_fixture import STOCK_DATABASE_PHP  # noqa: E402
from sql import generate  # noqa: E402

GENERATED_PASSWORD = "Generated-Temp-Passw0rd"
VALUES = {"s3_bucket": "b", "s3_access_key_id": "AKIA", "s3_secret_access_key": "x",
          "aws_region": "us-east-1"}


@pytest.fixture
def case(mariadb, moto_server, tmp_path) -> Case:
    return admin_case(mariadb, moto_server, tmp_path)


def apply_fresh(conn) -> bool:
    """The default file as on a database whose REDCap this bootstrap has just installed."""
    return configure(conn, load_config_sql(str(DEFAULT_SQL)), VALUES, mode="onInstall",
                     installed_now=True, initial_admin_password=ADMIN_PASSWORD).apply


def php_hash(password: str, salt: str) -> str:
    """REDCap's check, computed by PHP itself: hash('sha512', $password . $salt)."""
    result = subprocess.run([require_php(), "-r", "echo hash('sha512', $argv[1] . $argv[2]);",
                             password, salt], capture_output=True, text=True, check=True)
    return result.stdout


# -- pure ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,reason", [
    ("", "empty"),
    ("Short-pw-1", "10 characters"),
    ("Xq7fRk2mWp9sLd4hTz6vBn3c\n", "contains a NUL or line break"),
    ("Xq7fRk2m\x00Wp9sLd4h", "contains a NUL or line break"),
    ('{"password": "Xq7fRk2mWp9sLd4hTz6vBn3c"}', "a JSON object, not a plain string"),
    (ADMIN_PASSWORD, None),
    ("{Xq7fRk2mWp9sLd4h", None),  # a password may start with a brace
    ("twelve chars", None),
])
def test_admin_password_problem(value, reason):
    assert admin_password_problem(value) == reason


def test_hash_and_salt_are_redcaps():
    salt = new_password_salt()
    assert len(salt) == 100 and set(salt) <= set(SALT_ALPHABET)
    assert new_password_salt() != salt
    expected = hashlib.sha512((ADMIN_PASSWORD + salt).encode()).hexdigest()
    assert redcap_password_hash(ADMIN_PASSWORD, salt) == expected
    # The same function as the SQL generator's, which writes the same column.
    assert generate.redcap_password_hash("Pässwort-1234", salt) == \
        redcap_password_hash("Pässwort-1234", salt) == php_hash("Pässwort-1234", salt)


def test_secrets_repr_hides_the_password():
    s = Secrets(master=Credentials("u", "p"), app=None, salt="s" * 16, s3_access_key_id="A",
                s3_secret_access_key="S", ses=None, admin_password=ADMIN_PASSWORD)
    assert ADMIN_PASSWORD not in repr(s) and "admin_password=<hidden>" in repr(s)


# -- the bootstrap, end to end ------------------------------------------------------------------

def test_new_database_gets_a_temporary_site_admin_password(case: Case):
    out = ok(case.run())
    assert "site_admin table-login password set from REDCAP_ADMIN_SECRET_ID" in out
    assert "nobody can log in" not in out
    hashed, salt, legacy, temp = site_admin_login(case)
    assert (legacy, temp) == (0, 1)  # REDCap demands a new password at first login
    assert len(salt) == 100 and set(salt) <= set(SALT_ALPHABET)
    assert hashed == hashlib.sha512((ADMIN_PASSWORD + salt).encode()).hexdigest()
    assert hashed == php_hash(ADMIN_PASSWORD, salt)
    # The installer's account, still a super user; nothing added next to it.
    assert case.query("SELECT username, super_user FROM redcap_user_information") == \
        (("site_admin", 1),)
    assert case.query("SELECT username FROM redcap_auth") == (("site_admin",),)
    assert case.query("SELECT decision, reason FROM redcap_pulumi_state") == (
        ("applied", "REDCap installed on an empty database by this start; site_admin login "
                    "from REDCAP_ADMIN_SECRET_ID"),)


def test_later_starts_never_touch_the_login(case: Case, moto_server):
    ok(case.run())
    first = site_admin_login(case)
    # A rotated secret on a database that already has its admin: not applied.
    moto_server.client("secretsmanager").put_secret_value(
        SecretId=case.env["REDCAP_ADMIN_SECRET_ID"], SecretString="Another-Passw0rd-2025")
    out = ok(case.run())
    assert "REDCAP_ADMIN_SECRET_ID not used" in out
    assert site_admin_login(case) == first
    # Even when the account is gone (e.g. the administrator removed table users): not recreated.
    case.query("DELETE FROM redcap_auth WHERE username = 'site_admin'")
    ok(case.run())
    assert site_admin_login(case) is None


def test_site_admin_from_the_generated_sql_is_kept(case: Case, tmp_path):
    answers = generate.Answers(
        admin_password=GENERATED_PASSWORD, admin_first_name="Ada", admin_last_name="O'Brien",
        admin_email="ada@example.org", api_enabled=False, language="English",
        auto_report_stats=False, use_s3=True, contact_email=None, base_url=None)
    salt = generate.new_password_salt()
    sql = tmp_path / "redcap-config.sql"
    sql.write_text(generate.render_sql(answers, salt))
    case.env["REDCAP_CONFIG_SQL"] = str(sql)
    out = ok(case.run())
    assert "site_admin already has a table-login password" in out
    assert "REDCAP_ADMIN_SECRET_ID not used" in out
    assert site_admin_login(case) == (
        hashlib.sha512((GENERATED_PASSWORD + salt).encode()).hexdigest(), salt, 0, 1)


@pytest.mark.parametrize("value,shown", [
    ("Short-pw-1", "<hidden: 10 characters>"),
    (ADMIN_PASSWORD + "\n", "<hidden: contains a NUL or line break>"),
    ('{"password": "' + ADMIN_PASSWORD + '"}', "<hidden: a JSON object, not a plain string>"),
], ids=["short", "newline", "json"])
def test_unusable_secret_fails_before_anything_is_written(case: Case, moto_server, value, shown):
    arn = create_secret(moto_server, value)
    case.env["REDCAP_ADMIN_SECRET_ID"] = arn
    result = case.run("touch", str(case.tmp / "cmd-ran"))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert f"REDCAP_ADMIN_SECRET_ID ({arn}): got '{shown}'; allowed: a plain string of at " \
           "least 12 characters on one line" in out
    assert ADMIN_PASSWORD not in out and "Short-pw-1" not in out
    assert "Traceback" not in out
    # Nothing written: no schema, no files, no CMD.
    assert case.query("SHOW TABLES") == ()
    assert case.database_php.read_text() == STOCK_DATABASE_PHP
    assert not case.msmtprc.exists()
    assert not (case.tmp / "cmd-ran").exists()


# -- in the configuration SQL's transaction -------------------------------------------------------

def make_installed(mariadb, with_auth: bool = True, super_user: int | None = 1) -> str:
    """A database shaped like REDCap's installer output (only the tables involved)."""
    db = mariadb.fresh_database(unique("adm"))
    with mariadb.connect(db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE redcap_config (field_name VARCHAR(191) PRIMARY KEY, "
                    "value MEDIUMTEXT) ENGINE=InnoDB")
        cur.execute("INSERT INTO redcap_config VALUES ('api_enabled', '1')")
        if with_auth:
            cur.execute("CREATE TABLE redcap_auth (username VARCHAR(191) PRIMARY KEY, "
                        "password VARCHAR(255), password_salt VARCHAR(100), "
                        "legacy_hash INT(1) NOT NULL DEFAULT 0, "
                        "temp_pwd INT(1) NOT NULL DEFAULT 0) ENGINE=InnoDB")
        cur.execute("CREATE TABLE redcap_user_information (ui_id INT AUTO_INCREMENT PRIMARY "
                    "KEY, username VARCHAR(191) UNIQUE, super_user INT(1) NOT NULL DEFAULT 0) "
                    "ENGINE=InnoDB")
        if super_user is not None:
            cur.execute("INSERT INTO redcap_user_information (username, super_user) "
                        "VALUES ('site_admin', %s)", (super_user,))
    return db


def test_super_user_is_never_changed(mariadb):
    db = make_installed(mariadb, super_user=0)
    with mariadb.connect(db) as conn:
        assert apply_fresh(conn) is True
        with conn.cursor() as cur:
            cur.execute("SELECT username, super_user FROM redcap_user_information")
            assert cur.fetchall() == (("site_admin", 0),)
            cur.execute("SELECT temp_pwd FROM redcap_auth WHERE username = 'site_admin'")
            assert cur.fetchone() == (1,)


def test_missing_user_information_row_is_added(mariadb):
    db = make_installed(mariadb, super_user=None)
    with mariadb.connect(db) as conn:
        apply_fresh(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT username, super_user FROM redcap_user_information")
            assert cur.fetchall() == (("site_admin", 1),)


def test_admin_failure_rolls_back_the_whole_configuration(mariadb):
    db = make_installed(mariadb, with_auth=False)  # a REDCap without redcap_auth
    with mariadb.connect(db) as conn:
        with pytest.raises(DatabaseStepError) as info:
            apply_fresh(conn)
        assert "rolled back" in str(info.value) and "redcap_auth" in str(info.value)
        assert ADMIN_PASSWORD not in str(info.value)
        with conn.cursor() as cur:
            cur.execute("SELECT field_name, value FROM redcap_config")
            assert cur.fetchall() == (("api_enabled", "1"),)  # the file's rows rolled back
            cur.execute("SELECT COUNT(*) FROM redcap_pulumi_state")
            assert cur.fetchone() == (0,)  # so the next start tries again
