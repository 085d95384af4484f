"""REDCap's S3 settings follow the infrastructure at every start (container/bootstrap/
s3_settings.py): real MariaDB, secrets in moto_server, the bootstrap as a subprocess.

Writes are observed by the database itself: triggers on redcap_config record every row an
INSERT, UPDATE or DELETE touches, so "nothing written" means no statement reached a row (a
no-op UPDATE that sets the same value is recorded too, checked below).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.s3_settings import (  # noqa: E402
    S3_FIELDS, changed_fields, desired_s3_settings, sync_s3_settings, uses_custom_endpoint,
    uses_s3_storage,
)
from fixtures.bootstrap_env import (
    succeeded as ok,  # noqa: E402
    S3_KEY_ID, S3_SECRET, Case, create_secret, unique,
)

NEW_KEY_ID = "AKIAROTATEDKEY02"
NEW_SECRET = "rotated/secret+key'with%chars\\2"
NEW_BUCKET = "restored-redcap-app-files"


def audit_writes(case: Case) -> None:
    """Record every row written to redcap_config from now on in test_config_writes."""
    case.query("CREATE TABLE test_config_writes (id INT AUTO_INCREMENT PRIMARY KEY, "
               "op VARCHAR(6) NOT NULL, field_name VARCHAR(191) NOT NULL)")
    for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        case.query(f"CREATE TRIGGER test_audit_{op.lower()} AFTER {op} ON redcap_config "
                   f"FOR EACH ROW INSERT INTO test_config_writes (op, field_name) "
                   f"VALUES ('{op}', {row}.field_name)")
    # The audit sees an UPDATE even when it sets the value a row already has.
    case.query("UPDATE redcap_config SET value = value WHERE field_name = 'amazon_s3_key'")
    assert writes(case) == [("UPDATE", "amazon_s3_key")]
    case.query("DELETE FROM test_config_writes")


def writes(case: Case) -> list[tuple[str, str]]:
    return [tuple(r) for r in case.query("SELECT op, field_name FROM test_config_writes "
                                         "ORDER BY id")]


def s3_rows(case: Case) -> dict[str, str]:
    config = case.config()
    return {f: config[f] for f in S3_FIELDS}


def rotate_s3_key(case: Case, moto_server, key_id: str, secret: str) -> None:
    """A key rotation: a new version of the same secret, as Pulumi writes it."""
    moto_server.client("secretsmanager").put_secret_value(
        SecretId=case.env["S3_SECRET_ID"],
        SecretString=json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret}))


# -- pure ---------------------------------------------------------------------------------------

def test_desired_and_changed_fields():
    desired = desired_s3_settings("b", "AKIA", "s", "eu-west-1")
    assert desired == {"amazon_s3_bucket": "b", "amazon_s3_key": "AKIA",
                       "amazon_s3_secret": "s", "amazon_s3_endpoint": "eu-west-1"}
    assert changed_fields(desired, desired) == []
    assert changed_fields({**desired, "amazon_s3_key": "akia", "amazon_s3_bucket": None},
                          desired) == ["amazon_s3_bucket", "amazon_s3_key"]
    assert changed_fields({}, desired) == list(S3_FIELDS)


@pytest.mark.parametrize("option,expected", [
    ("2", True), (" 2", True), ("0", False), ("1", False), ("3", False), ("", False),
    (None, False),
])
def test_only_amazon_s3_storage_counts(option, expected):
    assert uses_s3_storage(option) is expected


@pytest.mark.parametrize("url,expected", [
    (None, False), ("", False), ("  ", False), ("https://objects.hospital.example", True),
])
def test_custom_endpoint(url, expected):
    assert uses_custom_endpoint(url) is expected


# -- the bootstrap, end to end ------------------------------------------------------------------

def test_key_rotation_and_new_stack_are_followed(case: Case, moto_server):
    ok(case.run())
    audit_writes(case)

    rotate_s3_key(case, moto_server, NEW_KEY_ID, NEW_SECRET)
    out = ok(case.run())
    assert NEW_SECRET not in out and NEW_KEY_ID not in out
    assert "S3 settings updated to follow the infrastructure: amazon_s3_key, " \
           "amazon_s3_secret\n" in out
    assert s3_rows(case) == {"amazon_s3_bucket": "prod-redcap-app-files",
                             "amazon_s3_key": NEW_KEY_ID, "amazon_s3_secret": NEW_SECRET,
                             "amazon_s3_endpoint": "us-east-1"}
    assert writes(case) == [("UPDATE", "amazon_s3_key"), ("UPDATE", "amazon_s3_secret")]

    # A restore into a new stack: another bucket and region, another S3 user's secret.
    case.query("DELETE FROM test_config_writes")
    case.env["S3_BUCKET"] = NEW_BUCKET
    case.env["AWS_REGION"] = "eu-west-1"  # secrets are still read in their ARN's region
    case.env["S3_SECRET_ID"] = create_secret(moto_server, json.dumps(
        {"AccessKeyId": S3_KEY_ID, "SecretAccessKey": S3_SECRET}))
    out = ok(case.run())
    assert ("S3 settings updated to follow the infrastructure: amazon_s3_bucket, "
            "amazon_s3_key, amazon_s3_secret, amazon_s3_endpoint\n") in out
    assert NEW_BUCKET not in out
    assert s3_rows(case) == {"amazon_s3_bucket": NEW_BUCKET, "amazon_s3_key": S3_KEY_ID,
                             "amazon_s3_secret": S3_SECRET, "amazon_s3_endpoint": "eu-west-1"}
    assert sorted(writes(case)) == [("UPDATE", f) for f in sorted(S3_FIELDS)]
    # Everything else stayed once-only.
    assert "already applied" in out
    assert case.config()["api_enabled"] == "0"


def test_unchanged_infrastructure_writes_nothing(case: Case):
    ok(case.run())
    before = case.config()
    audit_writes(case)
    out = ok(case.run())
    assert "S3 settings match the infrastructure (bucket, key pair, region): unchanged" in out
    assert writes(case) == []
    assert case.config() == before


def test_storage_chosen_by_the_administrator_is_left_alone(case: Case, moto_server):
    ok(case.run())
    # The administrator switched file storage to the local disk in the Control Center.
    case.query("UPDATE redcap_config SET value = '0' WHERE field_name = 'edoc_storage_option'")
    before = case.config()
    audit_writes(case)
    rotate_s3_key(case, moto_server, NEW_KEY_ID, NEW_SECRET)
    case.env["S3_BUCKET"] = NEW_BUCKET
    out = ok(case.run())
    assert "file storage is not Amazon S3 (edoc_storage_option='0'): S3 settings left alone" \
        in out
    # Left alone, but not silently: the container's disk does not outlive a deployment.
    assert ("bootstrap WARNING: REDCap stores uploaded files on the container's local disk "
            "(edoc_storage_option='0'), which is lost at every deployment") in out
    assert writes(case) == []
    assert case.config() == before


def test_s3_compatible_store_at_a_custom_endpoint_is_left_alone(case: Case, moto_server):
    """A migrated site whose files live in an S3-compatible store elsewhere (REDCap 12.2.11+
    amazon_s3_endpoint_url): the stack's bucket and key would break it, so nothing is written."""
    ok(case.run())
    case.query("INSERT INTO redcap_config VALUES ('amazon_s3_endpoint_url', "
               "'https://objects.hospital.example')")
    case.query("UPDATE redcap_config SET value = 'hospital-redcap' WHERE field_name = "
               "'amazon_s3_bucket'")
    before = case.config()
    audit_writes(case)
    rotate_s3_key(case, moto_server, NEW_KEY_ID, NEW_SECRET)
    out = ok(case.run())
    assert ("file storage is an S3-compatible store at a custom endpoint "
            "(amazon_s3_endpoint_url is set): S3 settings left alone") in out
    assert "objects.hospital.example" not in out
    assert writes(case) == []
    assert case.config() == before
    # REDCap's installer writes the row empty: then the stack's bucket is followed as before.
    case.query("UPDATE redcap_config SET value = '' WHERE field_name = 'amazon_s3_endpoint_url'")
    ok(case.run())
    assert s3_rows(case)["amazon_s3_bucket"] == "prod-redcap-app-files"
    assert s3_rows(case)["amazon_s3_key"] == NEW_KEY_ID


# -- the module against MariaDB: rows REDCap may lack, values pymysql must escape -----------------

def make_config(mariadb, rows: dict[str, str | None]) -> str:
    db = mariadb.fresh_database(unique("s3"))
    with mariadb.connect(db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE redcap_config (field_name VARCHAR(191) PRIMARY KEY, "
                    "value MEDIUMTEXT NULL) ENGINE=InnoDB")
        for field, value in rows.items():
            cur.execute("INSERT INTO redcap_config VALUES (%s, %s)", (field, value))
    return db


def config_of(conn) -> dict[str, str | None]:
    with conn.cursor() as cur:
        cur.execute("SELECT field_name, value FROM redcap_config")
        return dict(cur.fetchall())


def test_missing_and_null_rows_are_written_even_without_backslash_escapes(mariadb):
    db = make_config(mariadb, {"edoc_storage_option": "2", "amazon_s3_bucket": None,
                               "amazon_s3_key": "old"})
    desired = desired_s3_settings("bucket-a", "AKIA'1", "se\\cret'%s", "ap-northeast-1")
    with mariadb.connect(db) as conn:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        assert sync_s3_settings(conn, desired) == list(S3_FIELDS)
        assert config_of(conn) == {"edoc_storage_option": "2", **desired}
        assert sync_s3_settings(conn, desired) == []


def test_no_storage_row_means_not_s3(mariadb):
    db = make_config(mariadb, {"amazon_s3_key": "kept"})
    with mariadb.connect(db) as conn:
        assert sync_s3_settings(conn, desired_s3_settings("b-b", "K", "S", "us-east-1")) == []
        assert config_of(conn) == {"amazon_s3_key": "kept"}
