"""Application user SQL and the bounded wait.

MariaDB has no AWSAuthenticationPlugin, so the IAM statements are asserted as generated SQL;
the password mode runs for real on MariaDB (including a GRANT that must not leak to databases
whose names differ only where `_` would be a wildcard)."""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap import database  # noqa: E402
from bootstrap.database import (  # noqa: E402
    backoff_delays, connect_kwargs, execute, grant_database, iam_user_statements, password_user_statements,
    wait_for_database,
)
from bootstrap.errors import DatabaseStepError, DatabaseTlsError, DatabaseUnreachable  # noqa: E402
from fixtures.bootstrap_env import unique  # noqa: E402
from services import MariaDB  # noqa: E402


def test_iam_statements_as_generated_sql():
    assert iam_user_statements("redcap_user", "redcap") == [
        ("CREATE USER IF NOT EXISTS 'redcap_user'@'%' IDENTIFIED WITH AWSAuthenticationPlugin "
         "AS 'RDS' REQUIRE SSL", None),
        ("ALTER USER 'redcap_user'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS' "
         "REQUIRE SSL", None),
        ("GRANT ALL PRIVILEGES ON `redcap`.* TO 'redcap_user'@'%'", None),
    ]


def test_grant_escapes_wildcards():
    assert grant_database("redcap_prod") == "`redcap\\_prod`"
    stmts = iam_user_statements("redcap_user", "redcap_prod")
    assert stmts[2][0] == "GRANT ALL PRIVILEGES ON `redcap\\_prod`.* TO 'redcap_user'@'%'"


def test_password_statements_bind_the_password():
    stmts = password_user_statements("app", "s3cret'pw", "db", require_ssl=True)
    assert all("s3cret" not in sql for sql, _ in stmts)
    assert stmts[0] == ("CREATE USER IF NOT EXISTS 'app'@'%%' IDENTIFIED BY %s REQUIRE SSL",
                        ("s3cret'pw",))
    assert stmts[1] == ("ALTER USER 'app'@'%%' IDENTIFIED BY %s REQUIRE SSL", ("s3cret'pw",))
    assert stmts[2] == ("GRANT ALL PRIVILEGES ON `db`.* TO 'app'@'%'", None)


def test_password_mode_on_mariadb(mariadb):
    db = mariadb.fresh_database(unique("grant_db"))
    # A database whose name matches `grant_db...` only if `_` were a wildcard.
    lookalike = mariadb.fresh_database(db.replace("_", "X", 1))
    user, password = unique("u"), "pa'ss\\word %s"
    with mariadb.connect() as conn:
        execute(conn, password_user_statements(user, password, db, require_ssl=False))
        execute(conn, password_user_statements(user, password, db, require_ssl=False))  # again
    app = pymysql.connect(host=mariadb.host, port=mariadb.port, user=user, password=password,
                          database=db, autocommit=True)
    with app, app.cursor() as cur:
        cur.execute("CREATE TABLE t (x INT)")
        cur.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute(f"SELECT 1 FROM `{lookalike}`.dummy")
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=mariadb.host, port=mariadb.port, user=user, password=password,
                        database=lookalike)
    assert info.value.args[0] == 1044  # access denied to the look-alike database


def test_password_mode_require_ssl_is_enforced(mariadb):
    """MariaDB here has no TLS, so a REQUIRE SSL user cannot log in without it: proof it applies."""
    db = mariadb.fresh_database(unique("ssl_db"))
    user = unique("u")
    with mariadb.connect() as conn:
        execute(conn, password_user_statements(user, "pw-123", db, require_ssl=True))
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=mariadb.host, port=mariadb.port, user=user, password="pw-123")
    assert info.value.args[0] == 1045


def test_backoff_is_exponential_and_capped():
    gen = backoff_delays()
    assert [next(gen) for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]


@dataclass
class FakeClock:
    """Virtual time for the wait loop's arithmetic; the real waits are in test_bootstrap_e2e."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_deadline_is_respected():
    clock = FakeClock()
    calls = []

    def refuse(timeout: float):
        calls.append((clock.now, timeout))
        raise pymysql.err.OperationalError(2003, "Can't connect")

    with pytest.raises(DatabaseUnreachable) as info:
        wait_for_database(refuse, "db:3306/x", 20, clock=clock, sleep=clock.sleep)
    assert clock.now <= 20
    assert [t for t, _ in calls] == [0, 0.5, 1.5, 3.5, 7.5, 15.5]
    assert "not reachable after 6 attempts" in str(info.value)


def test_non_retryable_error_fails_at_once():
    clock = FakeClock()

    def denied(timeout: float):
        raise pymysql.err.OperationalError(1045, "Access denied for user 'm'@'x'")

    with pytest.raises(DatabaseStepError) as info:
        wait_for_database(denied, "db", 100, clock=clock, sleep=clock.sleep)
    assert clock.now == 0 and "Access denied" in str(info.value)


# --- TLS verification against a real TLS-enabled MariaDB -------------------------------------------

def self_signed(directory: Path, name: str, cn: str, san: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName={san}"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory):
    """MariaDB with a self-signed certificate for the name localhost only (not 127.0.0.1)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory, "server", "localhost", "DNS:localhost")
    key.chmod(0o644)  # mariadbd runs as this user here; the key is a throwaway
    server = MariaDB.start(extra_args=(f"--ssl-cert={cert}", f"--ssl-key={key}"))
    other_ca, _ = self_signed(directory, "other-ca", "Some Other CA", "DNS:other.invalid")
    yield server, cert, other_ca
    server.stop()


def tls_connect(host: str, port: int):
    return lambda timeout: pymysql.connect(**connect_kwargs(host, port, "root", "", None, "verify", timeout))


def test_tls_verification_passes_with_the_right_bundle_and_name(tls_mariadb, monkeypatch):
    server, cert, _ = tls_mariadb
    monkeypatch.setattr(database, "RDS_CA_BUNDLE", str(cert))
    conn = wait_for_database(tls_connect("localhost", server.port), "localhost", 10)
    with conn.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'Ssl_version'")
        assert cur.fetchone()[1].startswith("TLSv1.")
    conn.close()


@pytest.mark.parametrize("host,bundle,reason", [
    ("localhost", "other-ca", "self-signed certificate"),
    ("127.0.0.1", "server", "IP address mismatch"),
], ids=["untrusted-certificate", "name-not-in-certificate"])
def test_tls_verification_failure_fails_at_once(tls_mariadb, monkeypatch, host: str, bundle: str,
                                                reason: str):
    """Not "not reachable yet" for the whole wait: its own error (exit code 7) at the first try."""
    server, cert, other_ca = tls_mariadb
    monkeypatch.setattr(database, "RDS_CA_BUNDLE", str(cert if bundle == "server" else other_ca))
    start = time.monotonic()
    with pytest.raises(DatabaseTlsError) as info:
        wait_for_database(tls_connect(host, server.port), f"{host}:{server.port}/redcap", 120)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith(f"the TLS certificate of database {host}:{server.port}/redcap failed verification "
                              f"against {database.RDS_CA_BUNDLE}: ")
    assert reason in message and "use the cluster endpoint" in message
    assert info.value.exit_code == 7
