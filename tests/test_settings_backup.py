"""The redcap:backup block and redcap:credentialRotationDays: every rule, valid and invalid, with the
message the user sees."""
from __future__ import annotations

import json
from typing import Any

import pytest

from settings import SettingsError, load_settings, vault_arn_region_and_account

BASE = {"redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "email": "redcap-admin@example.org"}
VAULT = "arn:aws:backup:eu-central-1:210987654321:backup-vault:redcap-dr"
IRREVERSIBLE = ("compliance mode is IRREVERSIBLE once changeableForDays have passed: nobody (not your administrators, "
                "not the account's root user, not AWS) can then remove the lock, shorten the retention or delete the "
                "vault, and every recovery point in it stays, and is billed, until its retention ends")


def load(**overrides: Any):
    values = {**BASE, **overrides}
    raw = {f"redcap:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in values.items() if v is not None}
    return load_settings(raw, stack="test", region="us-east-1")


def problems_of(**overrides: Any) -> str:
    with pytest.raises(SettingsError) as err:
        load(**overrides)
    return str(err.value)


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert lines[0] == "Invalid stage settings (1 problem); nothing was created:", text
    assert len(lines) == 2, text
    return lines[1]


def test_backups_are_on_exactly_for_stages_that_keep_data():
    assert load().backup_enabled is True  # removalPolicy snapshot by default
    assert load(removalPolicy="retain").backup_enabled is True
    assert load(removalPolicy="destroy").backup_enabled is False
    assert load(removalPolicy="destroy", backup={"enabled": True}).backup_enabled is True
    assert load(backup={"enabled": False}).backup_enabled is False


def test_defaults():
    s = load()
    b = s.backup
    assert (b.retention_days, b.monthly_retention_days, b.copy_to_region, b.copy_to_vault_arn, b.vault_lock) == (
        35, None, None, None, None)
    assert s.credential_rotation_days == 90


def test_a_full_block_is_read():
    b = load(backup={"retentionDays": 35, "monthlyRetentionDays": 365, "copyToRegion": "us-west-2",
                     "copyToVaultArn": VAULT, "vaultLock": {"mode": "compliance", "minRetentionDays": 7,
                                                            "maxRetentionDays": 3650, "changeableForDays": 5,
                                                            "acknowledgeIrreversible": True}}).backup
    assert (b.monthly_retention_days, b.copy_to_region, b.copy_to_vault_arn) == (365, "us-west-2", VAULT)
    lock = b.vault_lock
    assert (lock.mode, lock.min_retention_days, lock.max_retention_days, lock.changeable_for_days) == (
        "compliance", 7, 3650, 5)
    assert vault_arn_region_and_account(VAULT) == ("eu-central-1", "210987654321")


def test_backups_of_an_unversioned_bucket_are_refused_with_both_ways_out():
    assert only_line(problems_of(appBucketVersioning=False)) == (
        "  - redcap:appBucketVersioning = false: allowed: true while backups are on (backups are on by default "
        "because removalPolicy snapshot keeps the data; AWS Backup backs up versioned buckets only): set "
        "appBucketVersioning: true, or turn the backups off with backup.enabled: false; example: "
        "appBucketVersioning: true")
    assert "(backup.enabled is true;" in problems_of(removalPolicy="destroy", appBucketVersioning=False,
                                                     backup={"enabled": True})
    assert load(appBucketVersioning=False, backup={"enabled": False}).backup_enabled is False


def test_a_compliance_lock_needs_the_irreversibility_acknowledged():
    assert only_line(problems_of(backup={"vaultLock": {"mode": "compliance", "maxRetentionDays": 3650}})) == (
        '  - redcap:backup.vaultLock = {"mode": "compliance", "maxRetentionDays": 3650}: allowed: '
        f"acknowledgeIrreversible: true together with mode compliance, because {IRREVERSIBLE} (here up to "
        "maxRetentionDays = 3650 days); choose mode governance to keep a way back; example: {mode: compliance, "
        "minRetentionDays: 7, maxRetentionDays: 3650, changeableForDays: 3, acknowledgeIrreversible: true}")


def test_a_wrong_lock_mode_explains_both_modes():
    assert only_line(problems_of(backup={"vaultLock": {"mode": "strict"}})) == (
        "  - redcap:backup.vaultLock.mode = 'strict': allowed: governance (an administrator allowed "
        "backup:DeleteBackupVaultLockConfiguration can still remove the lock) or compliance "
        f"({IRREVERSIBLE}); example: governance")
    assert "redcap:backup.vaultLock.mode = null: required; example: {mode: governance" in problems_of(
        backup={"vaultLock": {"minRetentionDays": 7}})


@pytest.mark.parametrize("lock, message", [
    ({"mode": "governance", "minRetentionDays": 0}, "redcap:backup.vaultLock.minRetentionDays = 0: allowed: 1 to 36500 days; example: 7"),
    ({"mode": "governance", "maxRetentionDays": 40000}, "redcap:backup.vaultLock.maxRetentionDays = 40000: allowed: 1 to 36500 days; example: 3650"),
    ({"mode": "compliance", "changeableForDays": 2, "acknowledgeIrreversible": True},
     "redcap:backup.vaultLock.changeableForDays = 2: allowed: 3 to 36500 days (the grace period in which a compliance lock can still be removed); example: 3"),
    ({"mode": "governance", "minRetentionDays": 30, "maxRetentionDays": 7},
     "allowed: minRetentionDays <= maxRetentionDays; example: {minRetentionDays: 7, maxRetentionDays: 3650}"),
    ({"mode": "governance", "acknowledgeIrreversible": "yes"},
     "redcap:backup.vaultLock.acknowledgeIrreversible = 'yes': allowed: true or false; example: true"),
])
def test_lock_values_are_checked(lock, message):
    assert message in problems_of(backup={"vaultLock": lock})


def test_retentions_must_fit_the_lock_or_every_backup_would_fail():
    text = only_line(problems_of(backup={"retentionDays": 35, "vaultLock": {"mode": "governance",
                                                                            "maxRetentionDays": 30}}))
    assert text.endswith(
        "allowed: retentionDays (35) within vaultLock.minRetentionDays..maxRetentionDays (1..30): a locked vault "
        "refuses recovery points with a retention outside that range, so every backup would fail; example: "
        "{retentionDays: 30, vaultLock: {...}}")
    assert "monthlyRetentionDays (400) within vaultLock" in problems_of(backup={
        "monthlyRetentionDays": 400, "vaultLock": {"mode": "governance", "maxRetentionDays": 365}})


@pytest.mark.parametrize("block, message", [
    ({"retentionDays": 0}, "redcap:backup.retentionDays = 0: allowed: 1 to 36500 days of daily recovery points; example: 35"),
    ({"retentionDays": "weekly"}, "redcap:backup.retentionDays = 'weekly': allowed: 1 to 36500 days of daily recovery points; example: 35"),
    ({"monthlyRetentionDays": 40000}, "redcap:backup.monthlyRetentionDays = 40000: allowed: 1 to 36500 days of monthly recovery points; example: 365"),
    ({"monthlyRetentionDays": 30}, "allowed: monthlyRetentionDays > retentionDays (35): monthly recovery points exist to be kept longer than the daily ones; example: {retentionDays: 35, monthlyRetentionDays: 365}"),
    ({"copyToRegion": "west"}, "redcap:backup.copyToRegion = 'west': allowed: an AWS region name; example: us-west-2"),
    ({"copyToVaultArn": "redcap-dr"}, "redcap:backup.copyToVaultArn = 'redcap-dr': allowed: the ARN of a backup vault (in another account or region; docs/security.md says what that account must allow); example: arn:aws:backup:us-west-2:210987654321:backup-vault:redcap-dr"),
    ({"enabled": "sometimes"}, "redcap:backup.enabled = 'sometimes': allowed: true or false; example: true"),
    ({"retentionDay": 35}, "redcap:backup.retentionDay = 35: unknown key; allowed: copyToRegion, copyToVaultArn, enabled, monthlyRetentionDays, retentionDays, vaultLock"),
])
def test_block_values_are_checked(block, message):
    assert message in problems_of(backup=block)


def test_a_copy_in_the_stacks_own_region_is_refused():
    assert only_line(problems_of(backup={"copyToRegion": "us-east-1"})) == (
        "  - redcap:backup.copyToRegion = 'us-east-1': allowed: a region other than the stack's (us-east-1): a copy "
        "in the same region does not survive the loss of that region; example: us-west-2")


def test_a_lock_on_a_destroy_stage_is_refused():
    assert only_line(problems_of(removalPolicy="destroy", appBucketVersioning=True, backup={
        "enabled": True, "vaultLock": {"mode": "governance"}})) == (
        "  - redcap:backup.vaultLock = 'governance': allowed: no vault lock with removalPolicy destroy (`pulumi "
        "destroy` must delete the vault and its recovery points, which a lock forbids); use removalPolicy "
        "snapshot or retain; example: removalPolicy: snapshot")


def test_a_wrong_key_and_a_rule_across_keys_are_reported_together():
    text = problems_of(appBucketVersioning=False, credentialRotationDays=0)
    assert "(2 problems)" in text
    assert "redcap:credentialRotationDays = '0'" in text and "redcap:appBucketVersioning = false" in text
    # A rule across keys is not judged on a block that is wrong itself.
    text = problems_of(backup={"retentionDays": -1}, appBucketVersioning=False)
    assert "(1 problem)" in text and "redcap:backup.retentionDays = -1" in text


@pytest.mark.parametrize("days", [1, 30, 90])
def test_rotation_interval_accepts_up_to_90_days(days):
    assert load(credentialRotationDays=days).credential_rotation_days == days


@pytest.mark.parametrize("days", [0, 91, 365, "monthly"])
def test_rotation_interval_longer_than_90_days_is_refused(days):
    assert only_line(problems_of(credentialRotationDays=days)) == (
        f"  - redcap:credentialRotationDays = '{days}': allowed: 1 to 90 days between rotations of the S3 and SES "
        "SMTP access keys (longer-lived keys are what the rotation exists to prevent); example: 90")
