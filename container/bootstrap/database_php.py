"""REDCap's database.php, rendered from scratch at every start (never appended to).

The original appended an include to the stock file on every start, so a restart without
re-creating the container appended twice. Here the whole file is a pure function of the
settings, so two starts give byte-identical files (and an unchanged file is not rewritten).
No secret goes into the environment: in IAM mode the file holds no password at all (a token is
built per request by the image's rds_iam_auth.php); in password mode it holds the app password,
so the file is mode 0640.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .settings import RDS_CA_BUNDLE, RDS_IAM_AUTH_PHP

DATABASE_PHP_MODE = 0o640


@dataclass(frozen=True)
class DatabasePhp:
    host: str
    port: int
    db: str
    username: str
    auth: str  # "iam" or "password"
    password: str | None  # password mode only
    region: str
    tls: str  # "verify" or "off"
    salt_hex: str
    reader_host: str | None

    def __repr__(self) -> str:
        return (f"DatabasePhp(host={self.host!r}, port={self.port}, db={self.db!r}, "
                f"username={self.username!r}, auth={self.auth!r}, password=<hidden>, "
                f"region={self.region!r}, tls={self.tls!r}, salt_hex=<hidden>, "
                f"reader_host={self.reader_host!r})")


def redcap_salt(salt_secret: str) -> str:
    """REDCap's $salt: SHA-256 hex of the salt secret, as the original (`echo -n | sha256sum`)."""
    return hashlib.sha256(salt_secret.encode("utf-8")).hexdigest()


def php_string(value: str) -> str:
    """A PHP single-quoted string literal: only \\ and ' are special there."""
    if "\x00" in value:
        raise ValueError("a NUL byte cannot be written into database.php")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_database_php(cfg: DatabasePhp) -> str:
    """The complete database.php content (deterministic: no timestamps, fixed order)."""
    lines = [
        "<?php",
        "// REDCap database connection, written by the container's start-time bootstrap",
        "// (container/bootstrap/database_php.py) at every start: edits here are lost.",
        "global $log_all_errors;",
        "$log_all_errors = FALSE;",
        "",
        f"$hostname = {php_string(cfg.host)};",
        f"$port     = {int(cfg.port)};",
        f"$db       = {php_string(cfg.db)};",
        f"$username = {php_string(cfg.username)};",
    ]
    if cfg.auth == "iam":
        lines += [
            f"require_once {php_string(RDS_IAM_AUTH_PHP)};",
            "// IAM database authentication: a short-lived token, not a stored password.",
            "$password = redcap_rds_auth_token($hostname, $port, $username, "
            f"{php_string(cfg.region)});",
        ]
    else:
        if cfg.password is None:
            raise ValueError("password mode needs the application password")
        lines.append(f"$password = {php_string(cfg.password)};")
    lines += [
        "// REDCap takes a non-default port only as \"host:port\" in $hostname.",
        "$hostname = $hostname . ':' . $port;",
        "",
        "$db_ssl_key    = '';",
        "$db_ssl_cert   = '';",
    ]
    if cfg.tls == "verify":
        lines += [
            f"$db_ssl_ca     = {php_string(RDS_CA_BUNDLE)};",
            "$db_ssl_capath = NULL;",
            "$db_ssl_cipher = NULL;",
            "$db_ssl_verify_server_cert = true;",
        ]
    else:
        lines += [
            "$db_ssl_ca     = '';",
            "$db_ssl_capath = NULL;",
            "$db_ssl_cipher = NULL;",
            "$db_ssl_verify_server_cert = false;",
        ]
    lines += ["", f"$salt = {php_string(cfg.salt_hex)};", ""]
    if cfg.reader_host:
        lines += [
            "// Aurora reader endpoint: REDCap's read-replica mode (same user and database).",
            f"$read_replica_hostname = {php_string(cfg.reader_host)} . ':' . $port;",
            "$read_replica_db       = $db;",
            "$read_replica_username = $username;",
        ]
        if cfg.auth == "iam":
            lines.append(
                # The token is signed for the host it is used on, so the reader gets its own.
                "$read_replica_password = redcap_rds_auth_token("
                f"{php_string(cfg.reader_host)}, $port, $username, {php_string(cfg.region)});")
        else:
            lines.append("$read_replica_password = $password;")
    else:
        lines += [
            "$read_replica_hostname = '';",
            "$read_replica_db       = '';",
            "$read_replica_username = '';",
            "$read_replica_password = '';",
        ]
    return "\n".join(lines) + "\n"
