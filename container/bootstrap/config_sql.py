"""The configuration SQL (sql/redcap-config*.sql), applied ONCE per database.

Once means once: a row in the marker table ``redcap_pulumi_state`` (name 'config_sql', the
applied file's sha256, the time) is written in the same transaction as the settings. Later
starts see the row and leave the file's settings alone, so an administrator's changes in the
Control Center are never overwritten; only the four S3 connection rows, which belong to the
infrastructure, follow it at every start (s3_settings.py). (The original compared amazon_s3_key
with the current key, and with its default SQL, which set no key, re-applied everything at
every start: #43.) A different
file on a database that already has the marker is reported, not applied; see
docs/configuration-sql.md for re-applying deliberately.

Values that exist only at run time (bucket, S3 keys, region) appear in the file as named
placeholders such as ``:s3_bucket`` and are bound as parameters by pymysql, never substituted
into the text (the original's sed replaced every occurrence of the word REGION). A placeholder
inside a quoted string is just text. Only INSERT/REPLACE/UPDATE/DELETE statements are accepted:
DDL would commit implicitly and break the all-or-nothing transaction.

With REDCAP_ADMIN_SECRET_ID, the same transaction also gives site_admin its initial temporary
password when the file did not (admin.py), so that too happens exactly once per database.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .admin import create_initial_admin
from .errors import DatabaseStepError, redact

log = logging.getLogger("bootstrap")

MARKER_TABLE = "redcap_pulumi_state"
MARKER_NAME = "config_sql"
# Named placeholders the generator emits (sql/generate.py) and the bootstrap binds.
PLACEHOLDERS = ("s3_bucket", "s3_access_key_id", "s3_secret_access_key", "aws_region")
ALLOWED_VERBS = ("INSERT", "REPLACE", "UPDATE", "DELETE")

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigSqlError(DatabaseStepError):
    """The configuration SQL file is malformed (reported before anything is applied)."""


@dataclass(frozen=True)
class ParsedStatement:
    sql: str  # pymysql format string: placeholders are %s, a literal % is %%
    names: tuple[str, ...]  # placeholder names, in order

    def params(self, values: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(values[name] for name in self.names)


def split_statements(text: str) -> list[ParsedStatement]:
    """Split SQL text at top-level ';', drop comments, turn :name into %s outside quotes.

    Understands '...' "..." `...` (with backslash and doubled-quote escapes), -- and #
    line comments and /* */ block comments.
    """
    statements: list[ParsedStatement] = []
    buf: list[str] = []
    names: list[str] = []
    i, n = 0, len(text)

    def flush() -> None:
        sql = "".join(buf).strip()
        if sql:
            statements.append(ParsedStatement(sql, tuple(names)))
        buf.clear()
        names.clear()

    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == "\\" and c != "`":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote inside the literal
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise ConfigSqlError(f"unterminated {c} quote starting at offset {i}")
            buf.append(text[i:j + 1].replace("%", "%%"))
            i = j + 1
        elif c == "#" or (text.startswith("--", i) and (i + 2 >= n or text[i + 2].isspace())):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            buf.append(" ")
        elif text.startswith("/*", i):
            if text.startswith("/*!", i):
                raise ConfigSqlError("MySQL conditional comments (/*! ... */) are not supported")
            j = text.find("*/", i + 2)
            if j < 0:
                raise ConfigSqlError(f"unterminated /* comment starting at offset {i}")
            i = j + 2
            buf.append(" ")
        elif c == ":" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
            m = _NAME_RE.match(text, i + 1)
            assert m is not None
            name = m.group(0)
            if name not in PLACEHOLDERS:
                raise ConfigSqlError(f"unknown placeholder :{name}; allowed: "
                                     + ", ".join(":" + p for p in PLACEHOLDERS))
            names.append(name)
            buf.append("%s")
            i = m.end()
        elif c == ";":
            flush()
            i += 1
        else:
            buf.append("%%" if c == "%" else c)
            i += 1
    flush()
    for number, stmt in enumerate(statements, 1):
        verb = stmt.sql.split(None, 1)[0].upper()
        if verb not in ALLOWED_VERBS:
            raise ConfigSqlError(f"statement {number} starts with {verb}; allowed: "
                                 + ", ".join(ALLOWED_VERBS))
    return statements


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_marker_table(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} ("
            " name VARCHAR(64) NOT NULL PRIMARY KEY,"
            " sha256 CHAR(64) NOT NULL,"
            " source VARCHAR(255) NOT NULL,"
            " applied_at DATETIME NOT NULL"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            " COMMENT='redcap-pulumi container bootstrap state; see docs/configuration-sql.md'")


def read_marker(conn: Any) -> tuple[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT sha256, applied_at FROM {MARKER_TABLE} WHERE name = %s",
                    (MARKER_NAME,))
        row = cur.fetchone()
    return (row[0], row[1]) if row else None


def use_backslash_escapes(conn: Any) -> None:
    """pymysql and the generator escape with backslashes: make sure the session honours them."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@SESSION.sql_mode")
        (mode,) = cur.fetchone()
        modes = [m for m in (mode or "").split(",") if m and m != "NO_BACKSLASH_ESCAPES"]
        if len(modes) != len([m for m in (mode or "").split(",") if m]):
            cur.execute("SET SESSION sql_mode = %s", (",".join(modes),))


@dataclass(frozen=True)
class ConfigSqlFile:
    path: str
    sha256: str
    statements: tuple[ParsedStatement, ...]


def load_config_sql(path: str) -> ConfigSqlFile:
    """Read and parse the file up front, so a malformed file fails before anything is written."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigSqlError(f"cannot read configuration SQL {path} (REDCAP_CONFIG_SQL): "
                             f"{exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigSqlError(f"configuration SQL {path} is not UTF-8") from None
    try:
        statements = split_statements(text)
    except ConfigSqlError as exc:
        raise ConfigSqlError(f"configuration SQL {path}: {exc}") from None
    return ConfigSqlFile(path, file_sha256(data), tuple(statements))


def apply_config_sql_once(conn: Any, config: ConfigSqlFile, values: Mapping[str, str],
                          initial_admin_password: str | None = None) -> bool:
    """Apply the file if this database never had one applied; return True if applied now.

    initial_admin_password (REDCAP_ADMIN_SECRET_ID's value) is used in the same transaction,
    after the file, when the file created no site_admin login.
    """
    missing = [p for p in PLACEHOLDERS if p not in values]
    if missing:
        raise ConfigSqlError("no value for placeholders: " + ", ".join(missing))
    ensure_marker_table(conn)
    marker = read_marker(conn)
    if marker is not None:
        if config.sha256 != marker[0]:
            log.info("configuration SQL %s (sha256 %s) differs from the one applied at %s "
                     "(sha256 %s): not applied, the database keeps its settings "
                     "(docs/configuration-sql.md explains how to re-apply)",
                     config.path, config.sha256[:12], marker[1], marker[0][:12])
        else:
            log.info("configuration SQL already applied at %s: skipped", marker[1])
        if initial_admin_password is not None:
            log.info("REDCAP_ADMIN_SECRET_ID not used: the initial site_admin password is "
                     "only set when the configuration SQL is first applied")
        return False
    use_backslash_escapes(conn)
    conn.begin()
    try:
        with conn.cursor() as cur:
            for stmt in config.statements:
                cur.execute(stmt.sql, stmt.params(values))
            if initial_admin_password is not None:
                create_initial_admin(cur, initial_admin_password)
            cur.execute(f"INSERT INTO {MARKER_TABLE} (name, sha256, source, applied_at) "
                        "VALUES (%s, %s, %s, UTC_TIMESTAMP())",
                        (MARKER_NAME, config.sha256, config.path[-255:]))
        conn.commit()
    except Exception as exc:
        conn.rollback()
        hide = [*values.values(), initial_admin_password or ""]
        message = redact(str(exc), hide)  # server errors quote the statement
        raise DatabaseStepError(f"configuration SQL {config.path} failed and was rolled back: "
                                f"{message}") from None
    log.info("configuration SQL %s applied (%d statements, sha256 %s)", config.path,
             len(config.statements), config.sha256[:12])
    warn_if_nobody_can_log_in(conn)
    return True


def warn_if_nobody_can_log_in(conn: Any) -> None:
    """Table-based login with no table user locks everyone out: say how to fix it."""
    with conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'auth_meth_global'")
        row = cur.fetchone()
        if not row or row[0] != "table":
            return
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                    "DATABASE() AND table_name = 'redcap_auth'")
        if cur.fetchone()[0] == 0:
            return
        cur.execute("SELECT COUNT(*) FROM redcap_auth")
        if cur.fetchone()[0] == 0:
            log.warning("REDCap uses table-based login but has no table user yet, so nobody can "
                        "log in: set REDCAP_ADMIN_SECRET_ID (the Pulumi program's "
                        "adminPasswordSecretArn) or generate sql/redcap-config.sql with a "
                        "site-admin temporary password (python sql/generate.py) before the "
                        "first start on a new database; see docs/configuration-sql.md")
