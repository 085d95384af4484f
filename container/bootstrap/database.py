"""Database access for the bootstrap: bounded wait, a cross-container lock, the application user.

The bootstrap itself connects only as the master user (from DB_SECRET_ID); REDCap connects as
the application user that this module creates. SQL generation is kept in pure functions so the
IAM statements (which MariaDB cannot execute: it has no AWSAuthenticationPlugin) can be
asserted as text while the password mode runs end to end.
"""
from __future__ import annotations

import logging
import os
import ssl
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import pymysql

from .errors import DatabaseStepError, DatabaseTlsError, DatabaseUnreachable
from .secrets import Secrets
from .settings import RDS_CA_BUNDLE, Settings

log = logging.getLogger("bootstrap")

# (sql, params). params None: sql is sent as is. A tuple: pymysql binds it (so a literal % is %%).
Statement = tuple[str, "tuple[Any, ...] | None"]

# Errors that mean "not reachable yet" (Aurora at 0 ACU resuming, DNS not yet resolvable,
# server starting or restarting). Anything else, e.g. 1045 access denied, fails at once.
RETRYABLE_ERRNOS = frozenset({1040, 1053, 2002, 2003, 2005, 2006, 2013})

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 10.0
LOCK_TIMEOUT_SECONDS = 300


def backoff_delays(first: float = FIRST_DELAY_SECONDS,
                   cap: float = MAX_DELAY_SECONDS) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 10, 10, ... seconds."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


def connect_kwargs(host: str, port: int, user: str, password: str, database: str | None,
                   tls: str, connect_timeout: float) -> dict[str, Any]:
    """pymysql.connect arguments; with tls=verify the server certificate and name are checked."""
    kwargs: dict[str, Any] = dict(host=host, port=port, user=user, password=password,
                                  database=database, autocommit=True, charset="utf8mb4",
                                  connect_timeout=max(1, int(connect_timeout)))
    if tls == "verify":
        kwargs.update(ssl_ca=RDS_CA_BUNDLE, ssl_verify_cert=True, ssl_verify_identity=True)
    return kwargs


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate-verification failure behind a connection error, if that is what it is.

    pymysql reports every socket-level failure, this one included, as 2003 "Can't connect"
    (which alone would look like "not reachable yet") and keeps the cause in
    original_exception.
    """
    for candidate in (exc, getattr(exc, "original_exception", None), exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return candidate
    return None


def is_retryable(exc: BaseException) -> bool:
    if certificate_error(exc) is not None:
        return False
    if isinstance(exc, pymysql.err.OperationalError) and exc.args:
        return exc.args[0] in RETRYABLE_ERRNOS
    return isinstance(exc, (ConnectionError, TimeoutError))


def wait_for_database(connect: Callable[[float], Any], what: str, deadline_seconds: float,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call connect(timeout) until it succeeds, with exponential backoff, within the deadline.

    Raises DatabaseUnreachable (after the deadline), DatabaseTlsError (the server's certificate
    failed verification) or DatabaseStepError (another non-retryable error, e.g. a wrong master
    password): waiting would not help with either of the last two.
    """
    start = clock()
    deadline = start + deadline_seconds
    attempts = 0
    delays = backoff_delays()
    while True:
        attempts += 1
        remaining = deadline - clock()
        try:
            conn = connect(max(1.0, min(10.0, remaining)))
        except Exception as exc:  # noqa: BLE001 - classified below
            if (cert := certificate_error(exc)) is not None:
                raise DatabaseTlsError(
                    f"the TLS certificate of database {what} failed verification against "
                    f"{RDS_CA_BUNDLE}: {cert.verify_message or cert}. Either the image's RDS CA "
                    "bundle does not cover the server's certificate, or DB_HOST is not a name the "
                    "certificate is for (use the cluster endpoint, not an address or an alias)"
                ) from None
            if not is_retryable(exc):
                raise DatabaseStepError(f"cannot connect to {what}: {exc}") from None
            delay = next(delays)
            elapsed = clock() - start
            if clock() + delay > deadline:
                raise DatabaseUnreachable(
                    f"database {what} not reachable after {attempts} attempts in {elapsed:.1f}s "
                    f"(BOOTSTRAP_DB_WAIT_SECONDS={deadline_seconds:g}); last error: {exc}"
                ) from None
            log.info("database %s not reachable yet (attempt %d: %s); retrying in %.1fs",
                     what, attempts, exc.args[-1] if exc.args else exc, delay)
            sleep(delay)
            continue
        if attempts > 1:
            log.info("database %s reachable after %d attempts (%.1fs)", what, attempts,
                     clock() - start)
        return conn


def open_master(settings: Settings, secrets: Secrets) -> Any:
    """Wait for the writer and connect as the master user to DB_NAME."""
    if settings.db_tls == "verify" and not os.path.isfile(RDS_CA_BUNDLE):
        raise DatabaseStepError(f"DB_TLS=verify but the CA bundle {RDS_CA_BUNDLE} is missing "
                                "from the image")
    what = f"{settings.db_host}:{settings.db_port}/{settings.db_name}"

    def connect(timeout: float) -> Any:
        return pymysql.connect(**connect_kwargs(
            settings.db_host, settings.db_port, secrets.master.username, secrets.master.password,
            settings.db_name, settings.db_tls, timeout))

    return wait_for_database(connect, what, settings.db_wait_seconds)


def execute(conn: Any, statements: Sequence[Statement]) -> None:
    with conn.cursor() as cur:
        for sql, params in statements:
            cur.execute(sql, params)


@contextmanager
def bootstrap_lock(conn: Any, db_name: str, timeout: int = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Serialise the database steps across containers starting together (ECS/App Runner scale-out).

    GET_LOCK is per server and released with the session, so a crashed container never leaves
    the lock behind.
    """
    name = f"redcap_pulumi_bootstrap.{db_name}"[:64]
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, timeout))
        (got,) = cur.fetchone()
    if got != 1:
        raise DatabaseStepError(f"could not take the bootstrap lock {name!r} within {timeout}s "
                                "(another container is still bootstrapping?)")
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (name,))


# --- application user: pure SQL generation ------------------------------------------------------

def sql_string(value: str) -> str:
    """A single-quoted SQL string literal for values validated to a safe character set."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def grant_database(db_name: str) -> str:
    """Backquoted database name for GRANT: _ and % are wildcards there, so escape them."""
    escaped = (db_name.replace("`", "``").replace("\\", "\\\\")
               .replace("_", "\\_").replace("%", "\\%"))
    return f"`{escaped}`"


def iam_user_statements(user: str, db_name: str) -> list[Statement]:
    """Aurora MySQL: the app user authenticates with an RDS IAM token over TLS only."""
    account = f"{sql_string(user)}@'%'"
    auth = "IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'"
    return [
        (f"CREATE USER IF NOT EXISTS {account} {auth} REQUIRE SSL", None),
        # ALTER as well: a user created earlier in password mode is switched over.
        (f"ALTER USER {account} {auth} REQUIRE SSL", None),
        (f"GRANT ALL PRIVILEGES ON {grant_database(db_name)}.* TO {account}", None),
    ]


def password_user_statements(user: str, password: str, db_name: str,
                             require_ssl: bool) -> list[Statement]:
    """DB_AUTH=password: the password is bound, never pasted into the SQL text."""
    bound = f"{sql_string(user)}@'%%'"  # %% because these statements carry bound params
    tls = "REQUIRE SSL" if require_ssl else "REQUIRE NONE"
    return [
        (f"CREATE USER IF NOT EXISTS {bound} IDENTIFIED BY %s {tls}", (password,)),
        # ALTER as well: the app secret may have been rotated, or the user was in IAM mode.
        (f"ALTER USER {bound} IDENTIFIED BY %s {tls}", (password,)),
        (f"GRANT ALL PRIVILEGES ON {grant_database(db_name)}.* TO {sql_string(user)}@'%'", None),
    ]


def app_user_statements(settings: Settings, user: str, app_password: str | None) -> list[Statement]:
    if settings.db_auth == "iam":
        return iam_user_statements(user, settings.db_name)
    assert app_password is not None  # settings guarantee DB_APP_SECRET_ID with password mode
    return password_user_statements(user, app_password, settings.db_name,
                                    require_ssl=settings.db_tls == "verify")


def table_exists(conn: Any, db_name: str, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables "
                    "WHERE table_schema = %s AND table_name = %s", (db_name, table))
        (count,) = cur.fetchone()
    return count > 0
