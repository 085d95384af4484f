"""REDCap's database upgrade, unattended: ``python3 -m bootstrap upgrade-database``.

A one-off task with the service's image and environment runs this after the new image serves
(the Pulumi program starts it when redcap:upgrade.database is true; docs/upgrade.md). The
container starts as every container does (bootstrap: application user, database.php, the S3
rows), then, instead of Apache, this module upgrades the database to the image's REDCap version
and exits.

How REDCap upgrades, and what runs here. REDCap has no command-line upgrade: `upgrade.php` (the
non-versioned file includes the newest `redcap_vX.Y.Z/upgrade.php`) is a web page. Its pieces:
- `?sql=1` (also `?download_file=1`: "Option B/C" of the page) prints the upgrade script and
  exits: `Upgrade::getUpgradeSql(<redcap_version in redcap_config>, <directory's version>)`, the
  `Resources/sql/upgrade_X.Y.Z.sql|.php` files of every version after the database's up to the
  image's, then the install date, `redcap_history_version` and, last, `redcap_version`. The page
  tells the administrator to run it with the mysql client as a user allowed to change tables.
- `?auto=1` ("Option A") runs the same script through REDCap's own connection, but only for a
  "fast" upgrade (every version in `upgrade_fast_versions.txt`) with table privileges, and it
  answers with a redirect either way; the Control Center's "Easy Upgrade" first downloads a
  release into the web root, which an immutable image cannot take.
This mode takes the first path: php-cli runs upgrade.php with `$_GET["sql"]` set (as the
original ran install.php with `$_GET["auto"]`), the script REDCap prints is checked to be the one
for exactly the database's version and the image's, and it is run as one multi-statement batch
(as REDCap's own db_multi_query does) over the master user's TLS connection, under the bootstrap
lock, so no starting container configures a half-upgraded schema. Table changes commit one by
one in MySQL: a failure leaves the database partly upgraded, and the documented way back is
Aurora backtrack or the snapshot taken before the new image rolled out.

Never twice over a partial upgrade. REDCap's upgrade statements are not all repeatable (some
transform data), so the attempt is recorded in the marker table (`redcap_pulumi_state`, row
`redcap_upgrade`: both versions, the script's sha256, running / failed / done) before the script
runs. A later task that finds an attempt from the database's current version that did not finish
refuses to run anything. Backtrack and the snapshot rewind that row with everything else, so
either way back also clears it.

Outcome. One line `upgrade result: {json}` (status upgraded, current or failed, both versions,
statements run) for the Lambda that started the task, and the exit code: 0, the bootstrap's own
codes when the start failed, or 8 (UpgradeFailed).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import pymysql
from pymysql.constants import CLIENT

from .config_sql import MARKER_TABLE, ensure_marker_table
from .database import bootstrap_lock, connect_kwargs, open_master, table_exists
from .errors import BootstrapError, UpgradeFailed, redact
from .install import installed_version_expected, stored_version
from .secrets import Fetch, Secrets, boto3_fetcher, load_secrets
from .settings import Settings, load_settings

log = logging.getLogger("bootstrap")

MODE = "upgrade-database"
RESULT_PREFIX = "upgrade result: "
# upgrade.php as REDCap's "download the upgrade script" request: GET /upgrade.php?sql=1.
SQL_CODE = ('$_GET["sql"]=1; $_SERVER["REQUEST_METHOD"]="GET"; $_SERVER["PHP_SELF"]="/upgrade.php"; '
            '$_SERVER["HTTP_HOST"]="localhost"; $_SERVER["SERVER_NAME"]="localhost"; '
            '$_SERVER["SERVER_PORT"]="443"; $_SERVER["HTTPS"]="on"; require "upgrade.php";')
SQL_TIMEOUT_SECONDS = 900
HEADER_RE = re.compile(r"^-- --- SQL to upgrade REDCap to version (?P<to>\S+) from (?P<from>\S+) --- --")
SECTION_RE = re.compile(r"^-- SQL for Version (\S+) --$")

UPGRADED, CURRENT, FAILED = "upgraded", "current", "failed"
# The attempt's row in the marker table, and its states.
ATTEMPT_NAME = "redcap_upgrade"
RUNNING, DONE = "running", "done"


@dataclass(frozen=True)
class Attempt:
    from_version: str
    to_version: str
    state: str  # RUNNING, FAILED or DONE
    reason: str
    recorded_at: Any


def read_attempt(conn: Any) -> Optional[Attempt]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT source, decision, reason, applied_at FROM {MARKER_TABLE} WHERE name = %s",
                    (ATTEMPT_NAME,))
        row = cur.fetchone()
    if row is None or " -> " not in row[0]:
        return None
    old, new = row[0].split(" -> ", 1)
    return Attempt(old, new, row[1], row[2], row[3])


def record_attempt(conn: Any, script: str, found: str, image: str, state: str, reason: str = "") -> None:
    sha = hashlib.sha256(script.encode()).hexdigest()
    with conn.cursor() as cur:
        cur.execute(f"REPLACE INTO {MARKER_TABLE} (name, sha256, source, applied_at, decision, reason) "
                    "VALUES (%s, %s, %s, UTC_TIMESTAMP(), %s, %s)",
                    (ATTEMPT_NAME, sha, f"{found} -> {image}", state, reason[:255]))


def refuse_unfinished(attempt: Optional[Attempt], found: str) -> None:
    """An attempt from the database's version that did not finish: nothing may run again."""
    if attempt is None or attempt.state == DONE or attempt.from_version != found:
        return
    detail = f": {attempt.reason}" if attempt.reason else ""
    raise UpgradeFailed(
        f"an earlier upgrade from {attempt.from_version} to {attempt.to_version}, started at {attempt.recorded_at} "
        f"UTC, did not complete ({attempt.state}{detail}); the database may be partly upgraded and REDCap's upgrade "
        "statements are not all safe to run twice, so nothing was run. Go back first: backtrack the cluster to "
        "before that time or restore the snapshot taken before the rollout (docs/upgrade.md, \"If the upgrade step "
        "fails\"); both also remove this record")


@dataclass(frozen=True)
class Outcome:
    status: str
    from_version: Optional[str]
    to_version: Optional[str]
    statements: int = 0
    seconds: float = 0.0
    error: Optional[str] = None

    def line(self) -> str:
        """The result line the Lambda reads from the task's log."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["from"], data["to"] = data.pop("from_version", None), data.pop("to_version", None)
        return RESULT_PREFIX + json.dumps(data, sort_keys=True)


def version_key(version: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+\.\d+\.\d+", version or ""):
        raise UpgradeFailed(f"{version!r} is not a REDCap version X.Y.Z")
    return tuple(int(p) for p in version.split("."))


def plan(found: Optional[str], image: Optional[str]) -> str:
    """CURRENT or UPGRADED (to do) for the database's version and the image's; raises when
    there is nothing this image can do."""
    if image is None:
        raise UpgradeFailed("the image has no redcap_vX.Y.Z directory: nothing to upgrade to")
    if not found:
        raise UpgradeFailed("redcap_config has no redcap_version: REDCap is not installed here (or its "
                            "installer stopped part-way); an upgrade needs an installed database")
    if version_key(found) == version_key(image):
        return CURRENT
    if version_key(found) > version_key(image):
        raise UpgradeFailed(
            f"the database is at REDCap {found}, newer than this image's {image}: REDCap cannot run an older "
            f"version on it. Deploy the zip of {found} (or newer) again, or restore the snapshot taken before "
            f"the upgrade to {found} (docs/upgrade.md)")
    return UPGRADED


def sql_command(php: str) -> list[str]:
    return [php, "-r", SQL_CODE]


def check_script(output: str, found: str, image: str) -> str:
    """The upgrade SQL REDCap printed, if it is the script for exactly found -> image."""
    text = output.lstrip("\ufeff")
    match = HEADER_RE.match(text)
    if match is None:
        raise UpgradeFailed(
            f"REDCap's upgrade.php printed no upgrade SQL for {found} -> {image} (it refuses, for example, a "
            f"database without the full-Unicode transformation); its output (tail):\n{text[-2000:]}")
    if (match.group("from"), match.group("to")) != (found, image):
        raise UpgradeFailed(
            f"REDCap's upgrade.php printed the SQL for {match.group('from')} -> {match.group('to')}, not "
            f"{found} -> {image}; nothing was run")
    if f"UPDATE redcap_config SET value = '{image}' WHERE field_name = 'redcap_version'" not in text:
        raise UpgradeFailed(f"the upgrade SQL for {found} -> {image} does not end by recording {image}: "
                            "REDCap's output was cut off; nothing was run")
    return text


def upgrade_script(redcap_root: str, found: str, image: str, hide: Iterable[str]) -> str:
    """Run upgrade.php for its SQL (REDCap connects through database.php, as the site does)."""
    root = Path(redcap_root)
    if not (root / "upgrade.php").is_file():
        raise UpgradeFailed(f"{root}/upgrade.php is missing: the image does not contain REDCap's upgrade page")
    php = shutil.which("php")
    if php is None:
        raise UpgradeFailed("no 'php' binary on PATH to run REDCap's upgrade.php")
    try:
        result = subprocess.run(sql_command(php), cwd=root, capture_output=True, text=True, errors="replace",
                                timeout=SQL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise UpgradeFailed(f"REDCap's upgrade.php did not print the upgrade SQL within {SQL_TIMEOUT_SECONDS}s") \
            from None
    output = redact(result.stdout, hide)
    if result.returncode != 0:
        raise UpgradeFailed(f"REDCap's upgrade.php exited {result.returncode}; output (tail):\n"
                            + (output + redact(result.stderr, hide))[-2000:])
    return check_script(output, found, image)


def statements(script: str) -> list[tuple[str, str]]:
    """(version section, statement) for each statement of the script, for messages only: REDCap's
    upgrade files end each statement with ';' at the end of a line."""
    found: list[tuple[str, str]] = []
    section, current = "header", []
    for line in script.replace("\r\n", "\n").split("\n"):
        heading = SECTION_RE.match(line.strip())
        if heading and not current:
            section = heading.group(1)
            continue
        if not current and (not line.strip() or line.strip().startswith("--")):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            found.append((section, "\n".join(current).strip()))
            current = []
    return found


def run_script(conn: Any, script: str) -> int:
    """Run the script as one batch; returns how many statements ran. A failure names the
    statement (1-based), its version section and MySQL's error."""
    done = 0
    try:
        with conn.cursor() as cur:
            cur.execute(script)
            done = 1
            while cur.nextset():
                done += 1
    except pymysql.err.Error as exc:
        listed = statements(script)
        where = ""
        if done < len(listed):
            section, text = listed[done]
            where = f" (in the SQL for version {section}: {text[:300]})"
        raise UpgradeFailed(
            f"the upgrade SQL failed at statement {done + 1}{where}: {exc}. {done} statement(s) before it ran and "
            "stay applied (MySQL commits table changes one by one): the database is partly upgraded") from None
    return done


def open_batch(settings: Settings, secrets: Secrets) -> Any:
    """The master user's connection that takes a multi-statement batch."""
    return pymysql.connect(**connect_kwargs(
        settings.db_host, settings.db_port, secrets.master.username, secrets.master.password, settings.db_name,
        settings.db_tls, settings.db_wait_seconds), client_flag=CLIENT.MULTI_STATEMENTS)


def upgrade(settings: Settings, secrets: Secrets, hide: list[str],
            clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Bring the database to the image's REDCap version (nothing when it is there already)."""
    started = clock()
    image = installed_version_expected(Path(settings.redcap_root))
    found: Optional[str] = None
    conn = open_master(settings, secrets)
    try:
        with bootstrap_lock(conn, settings.db_name):
            found = stored_version(conn) if table_exists(conn, settings.db_name, "redcap_config") else None
            if plan(found, image) == CURRENT:
                log.info("the database is at REDCap %s, the image's version: nothing to upgrade", image)
                return Outcome(CURRENT, found, image, seconds=round(clock() - started, 1))
            assert found is not None and image is not None
            ensure_marker_table(conn)
            refuse_unfinished(read_attempt(conn), found)
            script = upgrade_script(settings.redcap_root, found, image, hide)
            log.info("running REDCap's upgrade SQL %s -> %s (%d statements, %d bytes)", found, image,
                     len(statements(script)), len(script))
            record_attempt(conn, script, found, image, RUNNING)
            batch = open_batch(settings, secrets)
            try:
                ran = run_script(batch, script)
                now = stored_version(conn)
                if now != image:
                    raise UpgradeFailed(f"the upgrade SQL ran ({ran} statements) but redcap_config.redcap_version "
                                        f"is {now!r}, not {image!r}")
            except UpgradeFailed as exc:
                record_attempt(conn, script, found, image, FAILED, str(exc))
                raise
            finally:
                batch.close()
            record_attempt(conn, script, found, image, DONE)
            log.info("REDCap's database upgraded from %s to %s (%d statements)", found, image, ran)
            return Outcome(UPGRADED, found, image, statements=ran, seconds=round(clock() - started, 1))
    except UpgradeFailed as exc:
        exc.from_version = found  # type: ignore[attr-defined]  # for the result line
        raise
    finally:
        try:
            conn.close()
        except pymysql.err.Error:
            pass


def main(env: Mapping[str, str], hidden: Callable[[Secrets], list[str]],
         fetcher: Callable[[Settings], Fetch] = boto3_fetcher) -> int:
    """The mode after a successful container start: upgrade, print the result line, exit code."""
    found_image: Optional[str] = None
    hide: list[str] = []
    try:
        settings = load_settings(env)
        found_image = installed_version_expected(Path(settings.redcap_root))
        secrets = load_secrets(settings, fetcher(settings))
        hide = hidden(secrets)
        outcome = upgrade(settings, secrets, hide)
    except BootstrapError as exc:
        message = redact(str(exc), hide)
        log.error("%s", message)
        print(Outcome(FAILED, getattr(exc, "from_version", None), found_image, error=message[:4000]).line(),
              flush=True)
        return exc.exit_code
    except pymysql.err.Error as exc:
        message = f"database step failed during the upgrade: {redact(str(exc), hide)}"
        log.error("%s", message)
        print(Outcome(FAILED, None, found_image, error=message).line(), flush=True)
        return UpgradeFailed.exit_code
    print(outcome.line(), flush=True)
    return 0
