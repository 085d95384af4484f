"""The initial site_admin password from REDCAP_ADMIN_SECRET_ID, so no manual step and no known
default is needed to log in the first time.

Runs only inside the configuration SQL's transaction (config_sql.py), after the file's
statements, so only where the file is applied: on a database this bootstrap installed REDCap
on, or with REDCAP_CONFIG_SQL_MODE=apply. Never on a REDCap installation it found, where a new
super-user login would sit next to the site's own administrators. If the file created no
``site_admin`` login of its own (the default SQL never does; a generated one does), a
``redcap_auth`` row is inserted with REDCap's own salted hash and ``temp_pwd = 1``, so REDCap
demands a new password at first login. Because it shares the transaction with the marker row,
it happens at most once per file applied: later starts, a rotated secret or a deleted row never
bring it back.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import string
from typing import Any

log = logging.getLogger("bootstrap")

SITE_ADMIN = "site_admin"
MIN_ADMIN_PASSWORD_LENGTH = 12
# REDCap's redcap_auth.password_salt is VARCHAR(100) and REDCap fills it with 100 characters.
SALT_LENGTH = 100
SALT_ALPHABET = string.ascii_letters + string.digits


def admin_password_problem(value: str) -> str | None:
    """Why this SecretString cannot be the initial password, or None if it can.

    The description never contains the value itself. Line breaks are refused because nobody
    can type them into REDCap's login form (a secret written from a file with a trailing
    newline would lock the administrator out); JSON because the contract is a plain string and
    the administrator would otherwise have to type the braces.
    """
    if value == "":
        return "empty"
    if len(value) < MIN_ADMIN_PASSWORD_LENGTH:
        return f"{len(value)} characters"
    if any(c in value for c in "\x00\r\n"):
        return "contains a NUL or line break"
    if value.lstrip().startswith("{"):
        try:
            if isinstance(json.loads(value), dict):
                return "a JSON object, not a plain string"
        except ValueError:
            pass  # a password may start with '{'
    return None


def new_password_salt(length: int = SALT_LENGTH) -> str:
    """A salt from the secrets module's CSPRNG, alphanumeric like REDCap's own."""
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(length))


def redcap_password_hash(password: str, salt: str) -> str:
    """REDCap's Authentication::hashPassword with the default $password_algo 'sha512'
    (legacy_hash = 0): hash('sha512', $password . $salt). PHP concatenates bytes; so does
    UTF-8 encoding here."""
    return hashlib.sha512((password + salt).encode("utf-8")).hexdigest()


def site_admin_has_login(cur: Any) -> bool:
    cur.execute("SELECT COUNT(*) FROM redcap_auth WHERE username = %s", (SITE_ADMIN,))
    return cur.fetchone()[0] > 0


def create_initial_admin(cur: Any, password: str) -> bool:
    """Give site_admin a temporary table-login password unless it has one; True if it did.

    ``cur`` belongs to the configuration SQL's open transaction: the caller commits or rolls
    back, together with the marker row.
    """
    if site_admin_has_login(cur):
        log.info("site_admin already has a table-login password (set by the configuration "
                 "SQL): REDCAP_ADMIN_SECRET_ID not used")
        return False
    salt = new_password_salt()
    cur.execute("INSERT INTO redcap_auth (username, password, password_salt, legacy_hash, "
                "temp_pwd) VALUES (%s, %s, %s, 0, 1)",
                (SITE_ADMIN, redcap_password_hash(password, salt), salt))
    cur.execute("SELECT COUNT(*) FROM redcap_user_information WHERE username = %s",
                (SITE_ADMIN,))
    if cur.fetchone()[0] == 0:
        # REDCap's installer creates this row as a super user; if it is missing the login
        # would be an administrator-less account, useless for setting REDCap up.
        cur.execute("INSERT INTO redcap_user_information (username, super_user) "
                    "VALUES (%s, 1)", (SITE_ADMIN,))
        log.warning("redcap_user_information had no site_admin row (REDCap's installer "
                    "creates it): added with super_user = 1")
    log.info("site_admin table-login password set from REDCAP_ADMIN_SECRET_ID (temporary: "
             "REDCap asks for a new one at first login)")
    return True
