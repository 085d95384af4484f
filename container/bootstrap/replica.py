"""REDCap read-replica mode, derived from the infrastructure at every start.

read_replica_enable = 1 only when DB_READER_HOST is set (the cluster has readers), else 0 (the
original enabled it always, with a reader endpoint that then pointed at the writer). With a
reader, REDCap's replica-lag check is bypassed as in the original: Aurora readers share the
cluster volume and have no classic replication lag, and REDCap's check reports them "offline".
Must run after install.php (aws-samples/redcap-on-aws#32: before it, redcap_config is missing).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from .errors import DatabaseStepError
from .files import write_atomic

log = logging.getLogger("bootstrap")

LAG_CHECK_OFF = "$bypassReadReplicaLagCheck=false)"
LAG_CHECK_BYPASSED = "$bypassReadReplicaLagCheck=true)"


def replica_flag_value(reader_host: str | None) -> str:
    return "1" if reader_host else "0"


def set_replica_flag(conn: Any, reader_host: str | None) -> None:
    value = replica_flag_value(reader_host)
    with conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'read_replica_enable'")
        row = cur.fetchone()
        if row is None:
            if value == "1":
                # A REDCap without read-replica support still works on the writer alone.
                log.warning("DB_READER_HOST is set but redcap_config has no read_replica_enable "
                            "row (REDCap version without read-replica support?): the reader "
                            "is not used")
            return
        if row[0] != value:
            cur.execute("UPDATE redcap_config SET value = %s "
                        "WHERE field_name = 'read_replica_enable'", (value,))
    log.info("read_replica_enable=%s (%s)", value,
             "reader endpoint configured" if reader_host else "no reader endpoint")


def version_key(name: str) -> tuple[int, ...]:
    """Sort key for redcap_v14.0.10 > redcap_v14.0.9 (like `sort -V`)."""
    return tuple(int(part) for part in re.findall(r"\d+", name))


def latest_version_dir(redcap_root: str) -> Path | None:
    dirs = [p for p in Path(redcap_root).glob("redcap_v*") if p.is_dir()
            and re.fullmatch(r"redcap_v\d+(\.\d+)*", p.name)]
    return max(dirs, key=lambda p: version_key(p.name)) if dirs else None


def bypass_lag_check_text(text: str) -> str | None:
    """The file content with the lag check bypassed; None if the expected code is absent."""
    if LAG_CHECK_BYPASSED in text:
        return text
    if LAG_CHECK_OFF in text:
        return text.replace(LAG_CHECK_OFF, LAG_CHECK_BYPASSED)
    return None


def bypass_lag_check(redcap_root: str) -> bool:
    """Patch the latest redcap_v*/Config/init_functions.php; return True if the file changed.

    Idempotent: an already bypassed file (e.g. patched at image build) is not rewritten, so the
    bootstrap then needs no write access to the REDCap code.
    """
    vdir = latest_version_dir(redcap_root)
    if vdir is None:
        raise DatabaseStepError(f"no redcap_v* directory under {redcap_root}")
    path = vdir / "Config" / "init_functions.php"
    try:
        # latin-1 maps every byte to one character, so the file round-trips byte for byte.
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DatabaseStepError(f"cannot read {path}: {exc.strerror}") from None
    patched = bypass_lag_check_text(text)
    if patched is None:
        log.warning("%s has no %r: REDCap may report the Aurora reader as lagging", path,
                    LAG_CHECK_OFF)
        return False
    if patched == text:
        return False
    write_atomic(path, patched.encode("latin-1"), path.stat().st_mode & 0o777)
    log.info("bypassed REDCap's replica lag check in %s", path)
    return True
