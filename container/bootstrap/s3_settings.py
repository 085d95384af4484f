"""REDCap's S3 file-storage settings follow the infrastructure at every start.

The bucket name, the access key pair and the region belong to the stack, not to the
administrator: a restore into a new stack (new bucket, new IAM key) or a key rotation changes
them, and REDCap must follow or every upload and download breaks. So at each start, whatever
the configuration SQL decided (also on a REDCap installation it found and kept), these four
redcap_config rows are rewritten, but only while REDCap stores files in Amazon S3
(edoc_storage_option = '2') with no custom endpoint URL (amazon_s3_endpoint_url, REDCap 12.2.11
and later, for S3-compatible stores elsewhere): an administrator who chose another storage
made a decision this must not undo. Pointing a migrated site's REDCap at the stack's bucket
leaves its old bucket untouched: the old key pair goes with the old deployment, the stack's
key reaches this bucket only, and the files are copied here (docs/migrating.md). Local storage
(option '0') is left alone too, with a warning: the container's disk is lost at every
deployment.

Only rows whose value differs are written, with bound parameters; the log names the changed
fields, never their values.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from .config_sql import use_backslash_escapes
from .errors import DatabaseStepError, redact

log = logging.getLogger("bootstrap")

STORAGE_OPTION_FIELD = "edoc_storage_option"
S3_STORAGE_OPTION = "2"  # REDCap: 0 local, 1 WebDAV, 2 Amazon S3, 3 and 5 Google Cloud, 4 Azure
LOCAL_STORAGE_OPTION = "0"
ENDPOINT_URL_FIELD = "amazon_s3_endpoint_url"
S3_FIELDS = ("amazon_s3_bucket", "amazon_s3_key", "amazon_s3_secret", "amazon_s3_endpoint")


def desired_s3_settings(bucket: str, access_key_id: str, secret_access_key: str,
                        region: str) -> dict[str, str]:
    """redcap_config values for the current infrastructure (REDCap's endpoint is the region)."""
    return dict(zip(S3_FIELDS, (bucket, access_key_id, secret_access_key, region)))


def changed_fields(current: Mapping[str, str | None], desired: Mapping[str, str]) -> list[str]:
    """Fields whose stored value (None: row missing or NULL) differs, in S3_FIELDS order."""
    return [f for f in S3_FIELDS if current.get(f) != desired[f]]


def uses_s3_storage(storage_option: str | None) -> bool:
    return storage_option is not None and storage_option.strip() == S3_STORAGE_OPTION


def uses_custom_endpoint(endpoint_url: str | None) -> bool:
    return bool(endpoint_url and endpoint_url.strip())


def read_locked(cur: Any, fields: tuple[str, ...]) -> dict[str, str | None]:
    """Current values, locked until commit so a concurrent Control Center save cannot slip in
    between the storage check and the update."""
    marks = ", ".join(["%s"] * len(fields))
    cur.execute(f"SELECT field_name, value FROM redcap_config WHERE field_name IN ({marks}) "
                "FOR UPDATE", fields)
    return {name: value for name, value in cur.fetchall()}


def write_field(cur: Any, field: str, value: str, exists: bool) -> None:
    if exists:
        cur.execute("UPDATE redcap_config SET value = %s WHERE field_name = %s", (value, field))
    else:
        cur.execute("INSERT INTO redcap_config (field_name, value) VALUES (%s, %s)",
                    (field, value))


def sync_s3_settings(conn: Any, desired: Mapping[str, str]) -> list[str]:
    """Make the four S3 rows match ``desired`` when storage is S3; return the changed fields."""
    use_backslash_escapes(conn)  # pymysql escapes bound values with backslashes
    conn.begin()
    try:
        with conn.cursor() as cur:
            current = read_locked(cur, (STORAGE_OPTION_FIELD, ENDPOINT_URL_FIELD, *S3_FIELDS))
            storage = current.get(STORAGE_OPTION_FIELD)
            if not uses_s3_storage(storage):
                conn.rollback()  # nothing written; releases the row locks
                log.info("file storage is not Amazon S3 (%s=%r): S3 settings left alone",
                         STORAGE_OPTION_FIELD, storage)
                if storage is not None and storage.strip() == LOCAL_STORAGE_OPTION:
                    log.warning("REDCap stores uploaded files on the container's local disk "
                                "(%s='0'), which is lost at every deployment and not shared "
                                "between containers: choose Amazon S3 in the Control Center "
                                "(File Upload Settings); docs/configuration-sql.md",
                                STORAGE_OPTION_FIELD)
                return []
            if uses_custom_endpoint(current.get(ENDPOINT_URL_FIELD)):
                conn.rollback()
                log.info("file storage is an S3-compatible store at a custom endpoint (%s is "
                         "set): S3 settings left alone", ENDPOINT_URL_FIELD)
                return []
            changed = changed_fields(current, desired)
            for field in changed:
                write_field(cur, field, desired[field], exists=field in current)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        raise DatabaseStepError("updating the S3 settings in redcap_config failed and was "
                                f"rolled back: {redact(str(exc), desired.values())}") from None
    if changed:
        log.info("S3 settings updated to follow the infrastructure: %s", ", ".join(changed))
    else:
        log.info("S3 settings match the infrastructure (bucket, key pair, region): unchanged")
    return changed
