"""The configuration SQL (sql/redcap-config*.sql): applied to a database REDCap was installed on
by this bootstrap, once, and never to a REDCap installation it found.

A database on which REDCap was already installed (migrated from the original system, restored
from a snapshot older than this bootstrap, set up by hand) keeps its settings and its accounts:
the file would reset the login method (an LDAP or Shibboleth site would lock its users out),
the API switch, the language and the contacts, and the initial site_admin login would add a
super user next to the site's own administrators. Only the operator's explicit
REDCAP_CONFIG_SQL_MODE=apply (stage setting redcap:configurationSql) applies it there.

The decision lives in the marker table ``redcap_pulumi_state``, row 'config_sql' (the file's
sha256, its path, the time, the decision and why), so every later start decides the same way:

- ``pending``: written before install.php runs on an empty database. A later start that finds
  it (the first stopped between the installer and the configuration) still counts the
  database as one this bootstrap installed, once the installer is known to have completed.
- ``applied``: written in the same transaction as the file's statements (and the initial
  site_admin login), so either all of it happened or nothing did and the next start retries.
  An administrator's later changes in the Control Center are never overwritten; a different
  file is reported, not applied, unless the mode is apply.
- ``kept``: REDCap was already installed when this bootstrap first saw the database; nothing
  was written but this row.

Only the four S3 connection rows follow the infrastructure at every start, whatever the
decision (s3_settings.py). (The original compared amazon_s3_key with the current key, and with
its default SQL, which set no key, re-applied everything at every start: #43.)

Values that exist only at run time (bucket, S3 keys, region) appear in the file as named
placeholders such as ``:s3_bucket`` and are bound as parameters by pymysql, never substituted
into the text (the original's sed replaced every occurrence of the word REGION). A placeholder
inside a quoted string is just text. Only INSERT/REPLACE/UPDATE/DELETE statements are accepted:
DDL would commit implicitly and break the all-or-nothing transaction.

With REDCAP_ADMIN_SECRET_ID, the same transaction also gives site_admin its initial temporary
password when the file did not (admin.py), so that too happens only where the file is applied.
With SMTP_EMAIL (and SES credentials), it also sets REDCap's universal From address to that
sender, over whatever the file says (sender.py): no other From address passes SES and DMARC.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pymysql

from .admin import create_initial_admin
from .errors import DatabaseStepError, redact
from .sender import set_universal_from
from .settings import CONFIG_SQL_APPLY, CONFIG_SQL_MODES

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


# Decisions recorded in the marker row.
PENDING = "pending"
APPLIED = "applied"
KEPT = "kept"

# Columns added after the first release. A table written by an earlier version has rows only for
# files it applied, hence the default 'applied'.
ADDED_COLUMNS = (
    ("decision", "VARCHAR(16) NOT NULL DEFAULT 'applied'"),
    ("reason", "VARCHAR(255) NOT NULL DEFAULT ''"),
)


def ensure_marker_table(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} ("
            " name VARCHAR(64) NOT NULL PRIMARY KEY,"
            " sha256 CHAR(64) NOT NULL,"
            " source VARCHAR(255) NOT NULL,"
            " applied_at DATETIME NOT NULL,"
            + ",".join(f" {column} {spec}" for column, spec in ADDED_COLUMNS)
            + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            " COMMENT='redcap-pulumi container bootstrap state; see docs/configuration-sql.md'")
        # Aurora MySQL 3 has no ADD COLUMN IF NOT EXISTS: look first.
        cur.execute("SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = %s", (MARKER_TABLE,))
        present = {row[0].lower() for row in cur.fetchall()}
        for column, spec in ADDED_COLUMNS:
            if column not in present:
                cur.execute(f"ALTER TABLE {MARKER_TABLE} ADD COLUMN {column} {spec}")


@dataclass(frozen=True)
class Marker:
    sha256: str
    decision: str  # PENDING, APPLIED or KEPT
    reason: str
    recorded_at: Any  # applied_at: when the decision was recorded (UTC)


def read_marker(conn: Any) -> Marker | None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT sha256, decision, reason, applied_at FROM {MARKER_TABLE} "
                    "WHERE name = %s", (MARKER_NAME,))
        row = cur.fetchone()
    return Marker(*row) if row else None


def write_marker(cur: Any, config: ConfigSqlFile, decision: str, reason: str) -> None:
    cur.execute(f"REPLACE INTO {MARKER_TABLE} (name, sha256, source, applied_at, decision, reason) "
                "VALUES (%s, %s, %s, UTC_TIMESTAMP(), %s, %s)",
                (MARKER_NAME, config.sha256, config.path[-255:], decision, reason[:255]))


def record_pending(conn: Any, config: ConfigSqlFile) -> None:
    """Before install.php runs on an empty database: this bootstrap is installing REDCap here."""
    ensure_marker_table(conn)
    with conn.cursor() as cur:
        write_marker(cur, config, PENDING, "REDCap being installed on an empty database by "
                                           "this bootstrap")


def install_pending(conn: Any) -> bool:
    """A start that ran install.php here stopped before the configuration was decided."""
    marker = read_marker(conn)
    return marker is not None and marker.decision == PENDING


# --- the decision (pure) -------------------------------------------------------------------------

INSTALLED_NOW = "installed now"
INSTALLED_EARLIER = "installed by an earlier start"
REQUESTED = "requested"
ALREADY_APPLIED = "already applied"
DIFFERENT_FILE = "different file"
FOUND_INSTALLED = "found installed"
STILL_KEPT = "still kept"


@dataclass(frozen=True)
class Decision:
    kind: str  # one of the constants above
    apply: bool  # apply the file (and the initial site_admin login) now
    record_kept: bool  # write a 'kept' marker (REDCap found installed, first time)


def decide(mode: str, installed_now: bool, marker: Marker | None, sha256: str) -> Decision:
    """What to do with the configuration SQL on this database, and why.

    A schema this bootstrap installed (now, or in a start that stopped before configuring it)
    is REDCap's bare default (login method 'none': anyone reaching the URL is site_admin), so
    it always gets the file; a REDCap installation it found gets it only with mode apply, and
    then once per file, so a restart with apply still set changes nothing.
    """
    if mode not in CONFIG_SQL_MODES:
        raise ValueError(f"unknown configuration SQL mode {mode!r}")
    if installed_now:
        return Decision(INSTALLED_NOW, apply=True, record_kept=False)
    if marker is not None and marker.decision == PENDING:
        return Decision(INSTALLED_EARLIER, apply=True, record_kept=False)
    if marker is not None and marker.decision == APPLIED and marker.sha256 == sha256:
        return Decision(ALREADY_APPLIED, apply=False, record_kept=False)
    if mode == CONFIG_SQL_APPLY:
        return Decision(REQUESTED, apply=True, record_kept=False)
    if marker is None:
        return Decision(FOUND_INSTALLED, apply=False, record_kept=True)
    if marker.decision == APPLIED:
        return Decision(DIFFERENT_FILE, apply=False, record_kept=False)
    return Decision(STILL_KEPT, apply=False, record_kept=False)


APPLY_REASONS = {
    INSTALLED_NOW: "REDCap installed on an empty database by this start",
    INSTALLED_EARLIER: "REDCap installed by an earlier start that stopped before configuring it",
    REQUESTED: "REDCAP_CONFIG_SQL_MODE=apply (redcap:configurationSql) on an existing installation",
}


def table_in_database(cur: Any, table: str) -> bool:
    """The table exists in the connection's database (DB_NAME)."""
    cur.execute("SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = %s", (table,))
    return cur.fetchone()[0] > 0


def describe_installation(conn: Any) -> str:
    """What an existing installation looks like, for the log and the marker: counts and the
    login method, never a user name or a setting's value beyond those."""
    with conn.cursor() as cur:
        cur.execute("SELECT field_name, value FROM redcap_config "
                    "WHERE field_name IN ('redcap_version', 'auth_meth_global')")
        config = dict(cur.fetchall())
        users = "no redcap_user_information table"
        if table_in_database(cur, "redcap_user_information"):
            try:
                cur.execute("SELECT COUNT(*), COALESCE(SUM(super_user = 1), 0) "
                            "FROM redcap_user_information")
                total, supers = cur.fetchone()
                users = f"{total} user(s), {int(supers)} super user(s)"
            except pymysql.err.Error:  # a schema without super_user: the count is only a hint
                cur.execute("SELECT COUNT(*) FROM redcap_user_information")
                users = f"{cur.fetchone()[0]} user(s)"
    return (f"REDCap {config.get('redcap_version') or 'of unknown version'}, login method "
            f"{config.get('auth_meth_global')!r}, {users}")


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


def configure(conn: Any, config: ConfigSqlFile, values: Mapping[str, str], *, mode: str,
              installed_now: bool, initial_admin_password: str | None = None,
              sender: str | None = None) -> Decision:
    """Decide (``decide``), record and log the decision, apply the file when it says so.

    installed_now: install.php created this database's schema in this start.
    initial_admin_password (REDCAP_ADMIN_SECRET_ID's value) is used in the same transaction as
    the file, after it, when the file created no site_admin login.
    sender (SMTP_EMAIL, when mail is configured) becomes REDCap's universal From address in the
    same transaction, after the file.
    """
    missing = [p for p in PLACEHOLDERS if p not in values]
    if missing:
        raise ConfigSqlError("no value for placeholders: " + ", ".join(missing))
    ensure_marker_table(conn)
    marker = read_marker(conn)
    decision = decide(mode, installed_now, marker, config.sha256)
    if decision.apply:
        apply_config_sql(conn, config, values, APPLY_REASONS[decision.kind],
                         initial_admin_password, sender)
        return decision
    admin_note = (" REDCAP_ADMIN_SECRET_ID not used: no site_admin login is created."
                  if initial_admin_password is not None else "")
    if decision.record_kept:
        found = describe_installation(conn)
        with conn.cursor() as cur:
            write_marker(cur, config, KEPT, "REDCap already installed when first seen: " + found)
        log.info("REDCap was already installed on this database (%s), not by this bootstrap: "
                 "configuration SQL %s NOT applied and no site_admin login created; its "
                 "settings and accounts are kept (recorded as 'kept' in %s). To apply the file "
                 "anyway, set redcap:configurationSql to apply (REDCAP_CONFIG_SQL_MODE=apply); "
                 "see docs/configuration-sql.md.%s", found, config.path, MARKER_TABLE,
                 admin_note)
    elif decision.kind == STILL_KEPT:
        assert marker is not None
        log.info("configuration SQL not applied: REDCap was already installed when this "
                 "bootstrap first saw the database at %s (kept; REDCAP_CONFIG_SQL_MODE=%s).%s",
                 marker.recorded_at, mode, admin_note)
    elif decision.kind == DIFFERENT_FILE:
        assert marker is not None
        log.info("configuration SQL %s (sha256 %s) differs from the one applied at %s "
                 "(sha256 %s): not applied, the database keeps its settings (set "
                 "redcap:configurationSql to apply to apply it; docs/configuration-sql.md).%s",
                 config.path, config.sha256[:12], marker.recorded_at, marker.sha256[:12],
                 admin_note)
    else:
        assert marker is not None
        log.info("configuration SQL already applied at %s: skipped.%s", marker.recorded_at,
                 admin_note)
    return decision


def apply_config_sql(conn: Any, config: ConfigSqlFile, values: Mapping[str, str], reason: str,
                     initial_admin_password: str | None = None, sender: str | None = None) -> None:
    """The file, the initial site_admin login, REDCap's universal From address and the
    'applied' marker in one transaction."""
    use_backslash_escapes(conn)
    conn.begin()
    admin = False
    try:
        with conn.cursor() as cur:
            for stmt in config.statements:
                cur.execute(stmt.sql, stmt.params(values))
            if initial_admin_password is not None:
                admin = create_initial_admin(cur, initial_admin_password)
            if sender is not None:
                set_universal_from(cur, sender)
            write_marker(cur, config, APPLIED, reason + (
                "; site_admin login from REDCAP_ADMIN_SECRET_ID" if admin else ""))
        conn.commit()
    except Exception as exc:
        conn.rollback()
        hide = [*values.values(), initial_admin_password or ""]
        message = redact(str(exc), hide)  # server errors quote the statement
        raise DatabaseStepError(f"configuration SQL {config.path} failed and was rolled back: "
                                f"{message}") from None
    log.info("configuration SQL %s applied (%d statements, sha256 %s): %s", config.path,
             len(config.statements), config.sha256[:12], reason)
    if sender is not None:
        log.info("REDCap's universal From address (from_email) set to %s (SMTP_EMAIL)", sender)
    warn_if_nobody_can_log_in(conn)


def warn_if_nobody_can_log_in(conn: Any) -> None:
    """Table-based login with no table user locks everyone out: say how to fix it."""
    with conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'auth_meth_global'")
        row = cur.fetchone()
        if not row or row[0] != "table":
            return
        if not table_in_database(cur, "redcap_auth"):
            return
        cur.execute("SELECT COUNT(*) FROM redcap_auth")
        if cur.fetchone()[0] == 0:
            log.warning("REDCap uses table-based login but has no table user yet, so nobody can "
                        "log in: set REDCAP_ADMIN_SECRET_ID (the Pulumi program's "
                        "adminPasswordSecretArn) or generate sql/redcap-config.sql with a "
                        "site-admin temporary password (python sql/generate.py) before the "
                        "first start on a new database; see docs/configuration-sql.md")
