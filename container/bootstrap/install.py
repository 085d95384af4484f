"""REDCap's own installer, run once on an empty database (the original's step 6).

"Empty" means: no redcap_config table in DB_NAME (REDCap's install.php decides the same way:
its auto-install runs only when ``select * from redcap_config`` fails). After install.php the
table must exist, or the start fails clearly (aws-samples/redcap-on-aws#80: the installer
"succeeded" and the next step died with "Table 'redcap.redcap_config' doesn't exist"), and the
version row REDCap writes last must be the image's.

The caller records in the marker table, before install.php runs, that this bootstrap is
installing REDCap here (config_sql.record_pending): that is what later lets the configuration
SQL tell a database it installed from one where REDCap was already installed, even when the
start stopped between the installer and the configuration.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

from .database import table_exists
from .errors import DatabaseStepError, redact
from .replica import latest_version_dir

log = logging.getLogger("bootstrap")

# The original's invocation: install.php believes it received POST /install.php?auto=1&sql=1.
INSTALL_CODE = ('$_GET["auto"]=1; $_GET["sql"]=1; $_SERVER["REQUEST_METHOD"]="POST"; '
                '$_SERVER["PHP_SELF"]="install.php"; require_once("install.php");')
INSTALL_TIMEOUT_SECONDS = 900


def installed_version_expected(redcap_root: Path) -> str | None:
    """The version REDCap's installer records: that of the newest redcap_vX.Y.Z directory."""
    vdir = latest_version_dir(str(redcap_root))
    return vdir.name.removeprefix("redcap_v") if vdir is not None else None


def stored_version(conn: Any) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'redcap_version'")
        row = cur.fetchone()
    return row[0] if row else None


def install_command(php: str = "php") -> list[str]:
    return [php, "-r", INSTALL_CODE]


def check_install_complete(conn: Any, db_name: str, redcap_root: str, output: str = "") -> None:
    """Raise unless REDCap's installer finished: the image's version is recorded.

    REDCap's auto-install runs its install SQL as one multi-statement batch and prints
    "Install completed!" with exit code 0 even when the batch stopped part-way. Its last step
    records the version, so a partial schema shows as a missing or different redcap_version;
    without this check the configuration SQL would land on a broken schema that no later start
    re-installs.
    """
    expected = installed_version_expected(Path(redcap_root))
    found = stored_version(conn)
    if expected is not None and found != expected:
        raise DatabaseStepError(
            f"REDCap install.php did not complete: redcap_config.redcap_version is {found!r}, "
            f"expected {expected!r} (the image's redcap_v{expected}); drop the partly created "
            f"tables of {db_name} before the next start."
            + (f" Installer output (tail):\n{output[-2000:]}" if output else ""))


def run_install(conn: Any, db_name: str, redcap_root: str, hide: Iterable[str]) -> None:
    """Run install.php on a database without redcap_config and check that it completed."""
    root = Path(redcap_root)
    if not (root / "install.php").is_file():
        raise DatabaseStepError(f"database {db_name} is empty but {root}/install.php is missing: "
                                "the image does not contain REDCap's installer")
    php = shutil.which("php")
    if php is None:
        raise DatabaseStepError("database is empty but no 'php' binary is on PATH to run "
                                "install.php")
    log.info("database %s is empty: running REDCap's install.php", db_name)
    try:
        result = subprocess.run(install_command(php), cwd=root, capture_output=True,
                                text=True, errors="replace", timeout=INSTALL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise DatabaseStepError(f"REDCap install.php did not finish within "
                                f"{INSTALL_TIMEOUT_SECONDS}s") from None
    output = redact(result.stdout + result.stderr, hide)
    if not table_exists(conn, db_name, "redcap_config"):
        raise DatabaseStepError(
            f"REDCap install.php exited {result.returncode} but table redcap_config does not exist "
            f"in {db_name} (cf. aws-samples/redcap-on-aws#80); installer output (tail):\n"
            + output[-2000:])
    if result.returncode != 0:
        # The schema exists, but an installer error must not pass silently.
        raise DatabaseStepError(f"REDCap install.php exited {result.returncode}; output (tail):\n"
                                + output[-2000:])
    check_install_complete(conn, db_name, redcap_root, output)
    log.info("REDCap installed (install.php printed %d bytes)", len(output))
