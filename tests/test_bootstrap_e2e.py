"""Start-time bootstrap end to end: real MariaDB, secrets from moto_server, the fixture REDCap
run by php-cli, and the bootstrap as a subprocess (`python -m bootstrap CMD...`) like the image.

Scenarios from issue 6: empty database -> installed and configured; restart -> no change;
admin change -> kept; DB unreachable at first -> waits then succeeds; DB never reachable ->
clear failure; plus the reader endpoint, #80 (installer that creates nothing), concurrent
starts and the CMD exec.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path


from fixtures.bootstrap_env import (
    succeeded as ok,
    S3_KEY_ID, S3_SECRET, SALT, SES_PASSWORD, SES_USER, Case, TcpForwarder,
    assert_no_secret_leak,
)
from fixtures.redcap_fixture import STOCK_DATABASE_PHP
from services import free_port


def test_empty_database_is_installed_and_configured(case: Case):
    out = ok(case.run())
    assert "running REDCap's install.php" in out
    # Schema from REDCap's installer, then the default configuration with bound S3 values.
    config = case.config()
    assert config["redcap_version"] == "14.0.0"
    assert config["edoc_storage_option"] == "2"
    assert config["amazon_s3_bucket"] == "prod-redcap-app-files"
    assert config["amazon_s3_key"] == S3_KEY_ID
    assert config["amazon_s3_secret"] == S3_SECRET  # quote and % survived binding
    assert config["amazon_s3_endpoint"] == "us-east-1"
    assert config["auth_meth_global"] == "table"
    assert config["api_enabled"] == "0" and config["auto_report_stats"] == "0"
    assert config["language_global"] == "English"
    assert config["read_replica_enable"] == "0"
    (marker,) = case.query("SELECT name, sha256, decision, reason FROM redcap_pulumi_state")
    default_sql = Path(case.env["REDCAP_CONFIG_SQL"]).read_bytes()
    assert marker == ("config_sql", hashlib.sha256(default_sql).hexdigest(), "applied",
                      "REDCap installed on an empty database by this start")
    # database.php: the app user's password mode, REDCap's $salt = sha256 hex of the secret.
    php = case.database_php.read_text()
    assert f"$salt = '{hashlib.sha256(SALT.encode()).hexdigest()}';" in php
    assert "$username = '" + case.app_user + "';" in php
    assert case.database_php.stat().st_mode & 0o777 == 0o640
    # REDCap really reaches its database through database.php, as the app user.
    page = case.index_php()
    assert page.returncode == 0, page.stdout + page.stderr
    assert page.stdout.strip() == f"REDCap fixture OK db={case.db_name} version=14.0.0"
    grants = case.query(f"SHOW GRANTS FOR '{case.app_user}'@'%'")
    assert any(f"ON `{case.db_name.replace('_', chr(92) + '_')}`.*" in g[0] for g in grants)
    # Mail: msmtp with the SES credentials, never from localhost, private.
    rc = case.msmtprc.read_text()
    assert "host email-smtp.us-east-1.amazonaws.com\n" in rc
    assert f"user {SES_USER}\n" in rc and f"password {SES_PASSWORD}\n" in rc
    assert "from redcap@example.org\n" in rc and "localhost" not in rc
    assert case.msmtprc.stat().st_mode & 0o777 == 0o600


def snapshot(case: Case) -> dict:
    return {
        "database_php": case.database_php.read_bytes(),
        "database_php_inode": case.database_php.stat().st_ino,
        "msmtprc": case.msmtprc.read_bytes(),
        "config": case.config(),
        "marker": case.query("SELECT * FROM redcap_pulumi_state"),
        "tables": case.query("SHOW TABLES"),
    }


def test_restart_changes_nothing(case: Case):
    ok(case.run())
    before = snapshot(case)
    out = ok(case.run())
    assert "install skipped" in out and "already applied" in out
    assert snapshot(case) == before  # byte-identical database.php, same rows, same marker
    out = ok(case.run())
    assert snapshot(case) == before


def test_administrator_changes_are_kept(case: Case):
    ok(case.run())
    # What an administrator does in the Control Center after the first start.
    case.query("UPDATE redcap_config SET value = '1' WHERE field_name = 'api_enabled'")
    case.query("UPDATE redcap_config SET value = 'Japanese' WHERE field_name = 'language_global'")
    case.query("UPDATE redcap_config SET value = 'other-key' WHERE field_name = 'amazon_s3_key'")
    case.query("UPDATE redcap_config SET value = 'help@example.org' WHERE field_name = 'from_email'")
    out = ok(case.run())
    config = case.config()
    # The original re-applied the whole file whenever amazon_s3_key differed from the secret,
    # resetting these; here they are kept.
    assert config["api_enabled"] == "1"
    assert config["language_global"] == "Japanese"
    # So is the From address, with a warning: only SMTP_EMAIL passes SES and DMARC.
    assert config["from_email"] == "help@example.org"
    assert ("bootstrap WARNING: REDCap's universal From address (from_email) is 'help@example.org', not "
            "SMTP_EMAIL redcap@example.org") in out
    # Only the S3 rows are infrastructure: they follow S3_SECRET_ID while storage is S3
    # (tests/test_bootstrap_s3_settings.py).
    assert config["amazon_s3_key"] == S3_KEY_ID


def test_changed_config_file_is_not_reapplied(case: Case, tmp_path):
    ok(case.run())
    changed = tmp_path / "changed.sql"
    changed.write_text("REPLACE INTO redcap_config (field_name, value) "
                       "VALUES ('api_enabled', '1');\n")
    out = ok(case.run(env={**case.env, "REDCAP_CONFIG_SQL": str(changed)}))
    assert "differs from the one applied" in out
    assert case.config()["api_enabled"] == "0"


def test_database_unreachable_at_first_waits_then_succeeds(case: Case):
    port = free_port()  # nothing listens here yet: like Aurora resuming from 0 ACU
    case.env["DB_PORT"] = str(port)
    case.env["BOOTSTRAP_DB_WAIT_SECONDS"] = "30"
    forwarder = TcpForwarder(port, case.mariadb.port)
    proc = case.spawn()
    try:
        time.sleep(2.0)
        assert proc.poll() is None, proc.communicate()[0]
        forwarder.start()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "not reachable yet" in out
        assert "reachable after" in out
        assert case.config()["edoc_storage_option"] == "2"
        page = case.index_php()
        assert f"REDCap fixture OK db={case.db_name}" in page.stdout, page.stdout + page.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        forwarder.stop()


def test_database_never_reachable_fails_clearly(case: Case):
    case.env["DB_PORT"] = str(free_port())
    case.env["BOOTSTRAP_DB_WAIT_SECONDS"] = "3"
    started = time.monotonic()
    result = case.run("touch", str(case.tmp / "cmd-ran"))
    elapsed = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 4, out
    assert "not reachable after" in out and "BOOTSTRAP_DB_WAIT_SECONDS=3" in out
    assert elapsed < 15, f"the wait is bounded by the deadline, took {elapsed:.1f}s"
    # Nothing written, the CMD not started.
    assert case.database_php.read_text() == STOCK_DATABASE_PHP
    assert not case.msmtprc.exists()
    assert not (case.tmp / "cmd-ran").exists()
    assert_no_secret_leak(out)


def test_wrong_master_password_fails_at_once(case: Case, moto_server):
    from fixtures.bootstrap_env import MASTER_USER, create_secret
    import json

    case.env["DB_SECRET_ID"] = create_secret(
        moto_server, json.dumps({"username": MASTER_USER, "password": "wrong"}))
    case.env["BOOTSTRAP_DB_WAIT_SECONDS"] = "60"
    started = time.monotonic()
    result = case.run()
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert "Access denied" in out
    assert time.monotonic() - started < 15  # waiting would not help: no retries
    assert case.database_php.read_text() == STOCK_DATABASE_PHP


def test_master_without_user_privileges_fails_clearly(case: Case, moto_server):
    import json

    from fixtures.bootstrap_env import create_secret, unique

    weak, weak_pw = unique("weak"), "weak 'pw' 1"
    with case.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (weak, weak_pw))
        cur.execute(f"GRANT ALL PRIVILEGES ON `{case.db_name}`.* TO %s@'%%'", (weak,))
    case.env["DB_SECRET_ID"] = create_secret(
        moto_server, json.dumps({"username": weak, "password": weak_pw}))
    result = case.run()
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert f"creating/updating application user '{case.app_user}' failed" in out
    assert weak_pw not in out and "Traceback" not in out
    assert case.database_php.read_text() == STOCK_DATABASE_PHP


def test_missing_database_is_not_created(case: Case):
    """A wrong DB_NAME must not silently start a fresh, empty REDCap next to the real data."""
    case.env["DB_NAME"] = case.db_name + "_typo"
    result = case.run()
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert "Unknown database" in out
    assert case.database_php.read_text() == STOCK_DATABASE_PHP


def test_installer_that_creates_nothing_fails_clearly(case: Case):
    case.env["REDCAP_FIXTURE_INSTALL_NOOP"] = "1"  # imitates aws-samples/redcap-on-aws#80
    result = case.run()
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert "table redcap_config does not exist" in out and "#80" in out
    assert not case.msmtprc.exists()


def test_partly_installed_schema_fails_clearly(case: Case):
    # REDCap's auto-install prints "Install completed!" and exits 0 even when its install SQL
    # stopped after creating redcap_config: the version row written last must be checked, or
    # the configuration SQL and its once-only marker land on a broken schema.
    case.env["REDCAP_FIXTURE_INSTALL_PARTIAL"] = "1"
    result = case.run()
    out = result.stdout + result.stderr
    assert result.returncode == 5, out
    assert "redcap_version" in out and "14.0.0" in out
    # Recorded before install.php ran: this bootstrap was installing here, nothing configured.
    assert case.query("SELECT decision FROM redcap_pulumi_state") == (("pending",),)
    assert not case.msmtprc.exists()
    # The next start neither configures the broken schema nor takes it for a REDCap
    # installation to keep: it stops with the same explanation.
    del case.env["REDCAP_FIXTURE_INSTALL_PARTIAL"]
    again = case.run()
    out = again.stdout + again.stderr
    assert again.returncode == 5, out
    assert "install.php did not complete" in out and "drop the partly created tables" in out
    assert case.query("SELECT decision FROM redcap_pulumi_state") == (("pending",),)
    assert case.config()["auth_meth_global"] == "none"


def test_reader_endpoint_enables_replica_mode(case: Case):
    case.env["DB_READER_HOST"] = "127.0.0.1"  # the test server plays the reader too
    ok(case.run())
    assert case.config()["read_replica_enable"] == "1"
    init = case.redcap_root / "redcap_v14.0.0" / "Config" / "init_functions.php"
    assert "$bypassReadReplicaLagCheck=true)" in init.read_text()
    php = case.database_php.read_text()
    assert "$read_replica_hostname = '127.0.0.1' . ':' . $port;" in php
    page = case.index_php()
    assert page.stdout.strip() == (f"REDCap fixture OK db={case.db_name} version=14.0.0 "
                                   f"replica={case.db_name}"), page.stdout + page.stderr
    # Idempotent: a restart changes neither file.
    before = (init.read_bytes(), init.stat().st_ino, case.database_php.read_bytes())
    ok(case.run())
    assert (init.read_bytes(), init.stat().st_ino, case.database_php.read_bytes()) == before
    # Readers removed: the flag follows the infrastructure.
    del case.env["DB_READER_HOST"]
    ok(case.run())
    assert case.config()["read_replica_enable"] == "0"
    assert "$read_replica_hostname = '';" in case.database_php.read_text()


def test_without_ses_no_mail_configuration(case: Case):
    env = {k: v for k, v in case.env.items()
           if k not in ("SES_CREDENTIALS_SECRET_ID", "SMTP_EMAIL")}
    out = ok(case.run(env=env))
    assert "mail sending is not configured" in out
    assert not case.msmtprc.exists()
    # SES credentials removed after a start that had them: the old account is dropped.
    ok(case.run())
    assert SES_PASSWORD in case.msmtprc.read_text()
    out = ok(case.run(env=env))
    assert f"{case.msmtprc} cleared" in out
    assert "password" not in case.msmtprc.read_text()
    assert case.msmtprc.stat().st_mode & 0o777 == 0o600


def test_concurrent_starts_install_and_configure_once(case: Case):
    procs = [case.spawn() for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    joined = "\n".join(outputs)
    assert joined.count("running REDCap's install.php") == 1
    assert joined.count("applied (") == 1
    assert len(case.query("SELECT * FROM redcap_pulumi_state")) == 1


def test_execs_the_command_with_the_environment_but_no_secrets(case: Case):
    dump = case.tmp / "env.txt"
    code = f"import os; open({str(dump)!r}, 'w').write(repr(dict(os.environ)))"
    case.env.pop("PHP_TIMEZONE", None)
    ok(case.run("python3", "-c", code))
    env = eval(dump.read_text())  # noqa: S307 - our own repr
    assert env["PHP_TIMEZONE"] == "UTC"  # default for php.ini's ${PHP_TIMEZONE}
    assert env["DB_NAME"] == case.db_name
    assert_no_secret_leak(repr(env))


def test_command_not_found_exit_127(case: Case):
    result = case.run("/nonexistent/apache2-foreground")
    assert result.returncode == 127, result.stdout + result.stderr
    assert "cannot start /nonexistent/apache2-foreground" in result.stdout


def test_app_user_password_rotation_is_applied(case: Case, moto_server):
    import json

    from fixtures.bootstrap_env import create_secret

    ok(case.run())
    case.app_password = "Rotated 'pw' 2"
    case.env["DB_APP_SECRET_ID"] = create_secret(moto_server, json.dumps(
        {"username": case.app_user, "password": case.app_password}))
    ok(case.run())
    assert "Rotated \\'pw\\' 2" in case.database_php.read_text()
    page = case.index_php()
    assert page.returncode == 0 and "REDCap fixture OK" in page.stdout, page.stdout + page.stderr


def test_child_environment_is_a_copy_plus_defaults():
    """The bootstrap never exports secrets: the child environment is a copy plus defaults."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))
    from bootstrap.__main__ import child_environment

    assert child_environment({"A": "1"}) == {"A": "1", "PHP_TIMEZONE": "UTC"}
    assert child_environment({"PHP_TIMEZONE": "Asia/Tokyo"}) == {"PHP_TIMEZONE": "Asia/Tokyo"}
