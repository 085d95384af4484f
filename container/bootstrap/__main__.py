"""Entry point: ``python3 -m bootstrap [CMD...]`` (the image's ENTRYPOINT; CMD = Apache).

Order (container/README.md "Start-time bootstrap"):
 1. validate the environment and the configuration SQL file (nothing written yet);
 2. read the secrets;
 3. wait for the writer (bounded exponential backoff), connect as the master user;
 4. under a database lock: application user, database.php, REDCap install if the database is
    empty, read-replica flag, the configuration SQL (with the initial site_admin password from
    REDCAP_ADMIN_SECRET_ID and REDCap's universal From address = SMTP_EMAIL) once, and only on
    a database this bootstrap installed REDCap on or with REDCAP_CONFIG_SQL_MODE=apply, then
    the S3 settings following the infrastructure and a warning while REDCap's From address is
    not SMTP_EMAIL;
 5. msmtp configuration when SES credentials are given;
 6. exec the CMD with the same environment (plus PHP_TIMEZONE's default). Secrets are never
    exported to the environment (the original exported them, visible to every PHP page).

``python3 -m bootstrap upgrade-database`` (a one-off task): steps 1-5, then REDCap's database
upgrade to the image's version instead of a CMD (bootstrap/upgrade.py).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import pymysql

from .config_sql import (ConfigSqlFile, configure, ensure_marker_table, install_pending,
                         load_config_sql, record_pending)
from .database import app_user_statements, bootstrap_lock, execute, open_master, table_exists
from .database_php import DATABASE_PHP_MODE, DatabasePhp, redcap_salt, render_database_php
from .errors import BootstrapError, DatabaseStepError, redact
from .files import write_atomic
from .install import check_install_complete, run_install
from .logs import setup_logging
from .msmtp import clear_msmtprc, write_msmtprc
from .replica import bypass_lag_check, set_replica_flag
from .s3_settings import desired_s3_settings, sync_s3_settings
from .secrets import Fetch, Secrets, app_user_name, boto3_fetcher, load_secrets
from .sender import check_universal_from
from .settings import Settings, load_settings
from . import upgrade

log = logging.getLogger("bootstrap")


def secret_values(secrets: Secrets) -> list[str]:
    values = [secrets.master.password, secrets.salt, redcap_salt(secrets.salt),
              secrets.s3_secret_access_key]
    if secrets.app:
        values.append(secrets.app.password)
    if secrets.ses:
        values.append(secrets.ses.password)
    if secrets.admin_password:
        values.append(secrets.admin_password)
    return values


def database_php_config(settings: Settings, secrets: Secrets) -> DatabasePhp:
    return DatabasePhp(
        host=settings.db_host, port=settings.db_port, db=settings.db_name,
        username=app_user_name(settings, secrets), auth=settings.db_auth,
        password=secrets.app.password if secrets.app else None, region=settings.aws_region,
        tls=settings.db_tls, salt_hex=redcap_salt(secrets.salt),
        reader_host=settings.db_reader_host)


def mail_sender(settings: Settings) -> str | None:
    """SMTP_EMAIL when mail goes out through SES (msmtp is configured), else None."""
    return settings.smtp_email if settings.ses_secret_id and settings.smtp_email else None


def install_step(conn: Any, settings: Settings,
                 config_sql: ConfigSqlFile, hide: list[str]) -> bool:
    """REDCap's installer on an empty database; True if this start installed REDCap.

    The marker says 'pending' before install.php runs, so a start that stops after the
    installer still leaves the database known as one this bootstrap installed: the next start
    checks that the installer completed, then configures it like a fresh install.
    """
    ensure_marker_table(conn)
    if not table_exists(conn, settings.db_name, "redcap_config"):
        record_pending(conn, config_sql)
        run_install(conn, settings.db_name, settings.redcap_root, hide)
        return True
    log.info("REDCap schema present (redcap_config exists): install skipped")
    if install_pending(conn):
        check_install_complete(conn, settings.db_name, settings.redcap_root)
        log.info("an earlier start installed REDCap here and stopped before configuring it")
    return False


def prepare_database(settings: Settings, secrets: Secrets, config_sql: ConfigSqlFile,
                     hide: list[str]) -> None:
    """Step 3 and 4: wait for the writer, then everything that needs the database."""
    conn = open_master(settings, secrets)
    try:
        with bootstrap_lock(conn, settings.db_name):
            user = app_user_name(settings, secrets)
            try:
                execute(conn, app_user_statements(
                    settings, user, secrets.app.password if secrets.app else None))
            except pymysql.err.Error as exc:
                raise DatabaseStepError(
                    f"creating/updating application user {user!r} failed: "
                    f"{redact(str(exc), hide)}") from None
            log.info("application user %r ready (%s authentication)", user, settings.db_auth)
            php_path = os.path.join(settings.redcap_root, "database.php")
            changed = write_atomic(php_path, render_database_php(
                database_php_config(settings, secrets)), DATABASE_PHP_MODE)
            log.info("%s %s", php_path, "written" if changed else "unchanged")
            installed_now = install_step(conn, settings, config_sql, hide)
            sender = mail_sender(settings)
            set_replica_flag(conn, settings.db_reader_host)
            if settings.db_reader_host:
                bypass_lag_check(settings.redcap_root)
            configure(conn, config_sql, {
                "s3_bucket": settings.s3_bucket,
                "s3_access_key_id": secrets.s3_access_key_id,
                "s3_secret_access_key": secrets.s3_secret_access_key,
                "aws_region": settings.aws_region,
            }, mode=settings.config_sql_mode, installed_now=installed_now,
                initial_admin_password=secrets.admin_password, sender=sender)
            # At every start, whatever the configuration decision: the S3 rows are
            # infrastructure.
            sync_s3_settings(conn, desired_s3_settings(
                settings.s3_bucket, secrets.s3_access_key_id, secrets.s3_secret_access_key,
                settings.aws_region))
            if sender is not None:
                check_universal_from(conn, sender)
    finally:
        try:
            conn.close()  # also releases the lock
        except pymysql.err.Error:
            pass  # already closed by a failure; that failure is what gets reported


def bootstrap(env: Mapping[str, str],
              fetcher: Callable[[Settings], Fetch] = boto3_fetcher) -> None:
    """Everything before the exec; raises BootstrapError subclasses with exit codes."""
    settings = load_settings(env)
    config_sql = load_config_sql(settings.config_sql_path)
    log.info("environment valid: database %s:%d/%s, auth=%s, tls=%s, reader=%s, ses=%s, "
             "configuration SQL mode=%s", settings.db_host, settings.db_port, settings.db_name,
             settings.db_auth, settings.db_tls, settings.db_reader_host or "none",
             "yes" if settings.ses_secret_id else "no", settings.config_sql_mode)
    secrets = load_secrets(settings, fetcher(settings))
    log.info("secrets read")
    hide = secret_values(secrets)
    try:
        prepare_database(settings, secrets, config_sql, hide)
    except BootstrapError:
        raise
    except pymysql.err.Error as exc:
        # e.g. the connection dropped mid-way: report it cleanly, without secret values.
        raise DatabaseStepError(f"database step failed: {redact(str(exc), hide)}") from None
    except Exception as exc:  # noqa: BLE001 - an unexpected failure, still without secrets
        raise BootstrapError(f"unexpected {type(exc).__name__}: "
                             f"{redact(str(exc), hide)}") from None
    if secrets.ses and settings.smtp_email:
        changed = write_msmtprc(settings.msmtprc_path, settings.aws_region, secrets.ses.username,
                                secrets.ses.password, settings.smtp_email)
        log.info("%s %s (SES SMTP, from %s)", settings.msmtprc_path,
                 "written" if changed else "unchanged", settings.smtp_email)
    else:
        cleared = clear_msmtprc(settings.msmtprc_path)
        log.info("no SES credentials: mail sending is not configured%s",
                 f" ({settings.msmtprc_path} cleared)" if cleared else "")


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The CMD's environment: unchanged, plus defaults the PHP configuration refers to."""
    out = dict(env)
    if not out.get("PHP_TIMEZONE", "").strip():
        out["PHP_TIMEZONE"] = "UTC"
    return out


def main(argv: Sequence[str]) -> int:
    setup_logging()
    try:
        bootstrap(os.environ)
    except BootstrapError as exc:
        log.error("%s", exc)
        log.error("start aborted (exit code %d)", exc.exit_code)
        return exc.exit_code
    if argv[:1] == [upgrade.MODE]:
        return upgrade.main(os.environ, secret_values)
    if not argv:
        log.info("bootstrap complete; no command to run")
        return 0
    log.info("bootstrap complete; starting %s", argv[0])
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], list(argv), child_environment(os.environ))
    except OSError as exc:
        log.error("cannot start %s: %s", argv[0], exc.strerror)
        return 127
    return 0  # not reached: exec replaces the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
