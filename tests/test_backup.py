"""AWS Backup under mocks (components/backup.py): the vault, plan, selection, copies and lock that
redcap:backup asks for, the key policy cross-account copies need, and what `pulumi destroy`
leaves. Also the versioned access-log bucket (components/storage.py)."""
from __future__ import annotations

import json

import pytest

from components.backup import MANAGED_POLICIES, backup_name
from harness import ACCOUNT_ID, StackRun, cached_run, run_program
from variants import BACKUP_ACCOUNT_VAULT, SAME_ACCOUNT_VAULT, VARIANTS

VAULT, PLAN, SELECTION = "aws:backup/vault:Vault", "aws:backup/plan:Plan", "aws:backup/selection:Selection"
LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
KEY, BUCKET = "aws:kms/key:Key", "aws:s3/bucket:Bucket"


def variant(variant_id: str) -> StackRun:
    _, stack, overrides = next(v for v in VARIANTS if v[0] == variant_id)
    return cached_run(stack, overrides)


def stack_key(run: StackRun):
    return run.named("redcap-key", KEY)


def test_names_fit_aws_backup_and_carry_the_stage():
    assert backup_name("prod", "a1b2c3d4") == "redcap-prod-a1b2c3d4"
    long = backup_name("x" * 40, "a1b2c3d4")
    assert len(long) == 50 and long.endswith("-a1b2c3d4")


def test_prod_backs_up_the_cluster_and_the_file_bucket_daily_and_monthly(prod_run):
    run = prod_run
    vault = run.one(VAULT)
    suffix = run.named("redcap-backup-suffix", "random:index/randomId:RandomId").outputs["hex"]
    assert vault.inputs["name"] == f"redcap-prod-{suffix}" == run.outputs["backupVaultName"]
    assert vault.inputs["kmsKeyArn"] == stack_key(run).outputs["arn"]
    plan = run.one(PLAN)
    daily, monthly = plan.inputs["rules"]
    assert (daily["ruleName"], daily["schedule"], daily["lifecycle"]) == ("daily", "cron(0 5 * * ? *)", {"deleteAfter": 35.0})
    assert (monthly["ruleName"], monthly["schedule"], monthly["lifecycle"]) == (
        "monthly", "cron(0 5 1 * ? *)", {"deleteAfter": 365.0})
    assert {r["targetVaultName"] for r in plan.inputs["rules"]} == {vault.outputs["name"]}
    assert daily["copyActions"] == [] and daily["recoveryPointTags"] == {"redcap-stack": "prod"}
    selection = run.one(SELECTION)
    assert selection.inputs["planId"] == plan.id
    assert selection.inputs["resources"] == [run.one("aws:rds/cluster:Cluster").outputs["arn"],
                                             run.named("redcap-files", BUCKET).outputs["arn"]]
    assert run.outputs["backupVaultArn"] == vault.outputs["arn"] and run.outputs["backupPlanId"] == plan.id


def test_only_aws_backup_assumes_its_role_with_the_documented_managed_policies(prod_run):
    run = prod_run
    role = run.named("redcap-backup-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = sorted(a.inputs["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                      if a.inputs["role"] == role.outputs["name"])
    assert attached == sorted(f"arn:aws:iam::aws:policy/{p}" for p in MANAGED_POLICIES)
    selection = run.one(SELECTION)
    assert selection.inputs["iamRoleArn"] == role.outputs["arn"] == run.outputs["backupRoleArn"]
    # The role has its policies before AWS Backup is told to use it.
    assert {a.urn for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.inputs["role"] == role.outputs["name"]} <= set(selection.dependencies)


def test_stages_that_keep_data_back_up_by_default_and_dev_does_not(dev_run, prod_run):
    assert dev_run.of_type(VAULT) == [] and "backupVaultArn" not in dev_run.outputs
    retained = variant("prod-retain-readers")
    assert retained.one(SELECTION) and retained.one(VAULT).retain_on_delete is True


def test_a_kept_stage_keeps_its_vaults_locks_and_copy_key_on_destroy():
    run = variant("prod-backup-copies-compliance-lock")
    kept = [*run.of_type(VAULT), *run.of_type(LOCK), run.named("redcap-backup-copy-key", KEY)]
    assert len(kept) == 5
    for resource in kept:
        assert resource.retain_on_delete is True and resource.protect is True, resource.name
    assert all(v.inputs["forceDestroy"] is False for v in run.of_type(VAULT))
    # The plan, selection and role go: nothing is left to back up.
    for name in ("redcap-backup-plan", "redcap-backup-selection", "redcap-backup-role"):
        assert not run.named(name).retain_on_delete, name


def test_a_destroy_stage_with_backups_empties_and_deletes_its_vault():
    run = variant("dev-backup-on")
    vault = run.one(VAULT)
    assert vault.inputs["forceDestroy"] is True and not vault.retain_on_delete and not vault.protect
    assert run.of_type(LOCK) == []
    assert run.one(PLAN).inputs["rules"][0]["lifecycle"] == {"deleteAfter": 7.0}


def test_copies_to_another_region_and_to_a_backup_account():
    run = variant("prod-backup-copies-compliance-lock")
    copy_key = run.named("redcap-backup-copy-key", KEY)
    assert copy_key.inputs["region"] == "us-west-2" and copy_key.inputs["enableKeyRotation"] is True
    copy_vault = run.named("redcap-backup-copy-vault", VAULT)
    assert copy_vault.inputs["region"] == "us-west-2" and copy_vault.inputs["kmsKeyArn"] == copy_key.outputs["arn"]
    assert copy_vault.outputs["arn"].startswith("arn:aws:backup:us-west-2:") and copy_vault.inputs["name"] == (
        run.named("redcap-backup-vault", VAULT).inputs["name"])
    assert run.outputs["backupCopyVaultArn"] == copy_vault.outputs["arn"]
    for rule in run.one(PLAN).inputs["rules"]:
        assert rule["copyActions"] == [
            {"destinationVaultArn": target, "lifecycle": rule["lifecycle"]}
            for target in (copy_vault.outputs["arn"], BACKUP_ACCOUNT_VAULT)]
    alias = run.one("aws:kms/alias:Alias", "copy-key")
    assert alias.inputs["region"] == "us-west-2" and alias.inputs["name"] == "alias/redcap-prod-backup-copies"


def test_the_backup_account_may_use_the_key_of_the_database_recovery_points():
    run = variant("prod-backup-copies-compliance-lock")
    statements = {s["Sid"]: s for s in json.loads(stack_key(run).inputs["policy"])["Statement"]}
    shared = statements["BackupCopiesToOtherAccounts"]
    assert shared["Principal"] == {"AWS": ["arn:aws:iam::210987654321:root"]}
    assert {"kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncryptFrom"} <= set(shared["Action"])
    assert not any("*" in a for a in shared["Action"])
    # A copy within this account shares nothing; without copies there is no such statement.
    same = variant("prod-retain-backup-governance-lock")
    assert SAME_ACCOUNT_VAULT.split(":")[4] == ACCOUNT_ID
    for run in (same, cached_run("prod")):
        assert "BackupCopiesToOtherAccounts" not in {s["Sid"] for s in json.loads(stack_key(run).inputs["policy"])["Statement"]}


def test_compliance_lock_on_every_vault_the_stage_creates():
    run = variant("prod-backup-copies-compliance-lock")
    locks = {lock.inputs["backupVaultName"]: lock for lock in run.of_type(LOCK)}
    assert set(locks) == {run.named("redcap-backup-vault", VAULT).outputs["name"]}  # same name in both regions
    by_region = {lock.inputs.get("region"): lock.inputs for lock in run.of_type(LOCK)}
    assert set(by_region) == {None, "us-west-2"}
    for inputs in by_region.values():
        assert (inputs["minRetentionDays"], inputs["maxRetentionDays"], inputs["changeableForDays"]) == (7.0, 3650.0, 3.0)


def test_governance_lock_has_no_grace_period_and_stays_removable():
    run = variant("prod-retain-backup-governance-lock")
    lock = run.one(LOCK)
    assert "changeableForDays" not in lock.inputs
    assert (lock.inputs["minRetentionDays"], lock.inputs["maxRetentionDays"]) == (1.0, 400.0)
    assert lock.retain_on_delete is True  # deleting it on destroy would unlock the kept vault
    assert run.one(PLAN).inputs["rules"][0]["copyActions"][0]["destinationVaultArn"] == SAME_ACCOUNT_VAULT


def test_backups_off_remove_the_plan_and_need_no_versioning():
    run = run_program("prod", {"backup": {"enabled": False}, "appBucketVersioning": False})
    assert run.of_type(VAULT) == run.of_type(PLAN) == run.of_type(SELECTION) == []


# --- the access-log bucket -------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_access_log_bucket_keeps_deleted_logs_recoverable(stack):
    run = cached_run(stack)
    logs = run.named("redcap-logs", BUCKET)
    versioning = run.named("redcap-logs-versioning")
    assert versioning.inputs == {"bucket": logs.id, "versioningConfiguration": {"status": "Enabled"}}
    assert versioning.retain_on_delete is (stack == "prod")  # kept exactly when the bucket is
    lifecycle = run.named("redcap-logs-lifecycle")
    rule = lifecycle.inputs["rules"][0]
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 365.0}
    assert rule["expiration"] == {"expiredObjectDeleteMarker": True}
    assert versioning.urn in lifecycle.dependencies
    files_rule = run.named("redcap-files-lifecycle").inputs["rules"][0]
    assert "noncurrentVersionExpiration" not in files_rule and "expiration" not in files_rule


def test_the_backup_account_may_copy_recovery_points_back_for_a_restore():
    run = variant("prod-backup-copies-compliance-lock")
    vault = run.named("redcap-backup-vault", "aws:backup/vault:Vault")
    policy = run.named("redcap-backup-vault-policy")
    assert policy.inputs["backupVaultName"] == vault.outputs["name"]
    assert json.loads(policy.inputs["policy"])["Statement"] == [{
        "Sid": "CopiesBackFromBackupAccount", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": "backup:CopyIntoBackupVault", "Resource": vault.outputs["arn"]}]
    assert policy.retain_on_delete is True
    assert cached_run("prod").of_type("aws:backup/vaultPolicy:VaultPolicy") == []
