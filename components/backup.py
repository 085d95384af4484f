"""Backup: AWS Backup of the Aurora cluster and the REDCap file bucket, with copies and a lock.

- A vault `redcap-<stack>-<8 hex>` encrypted with the stack key. The suffix comes from a
  RandomId kept in state: a vault that an earlier stage of the same name left behind (it is kept
  on destroy, see below) never collides with a new one. The stack key rather than a key of its
  own: AWS Backup keeps Aurora recovery points encrypted with the cluster's key whatever the
  vault's key is (only fully managed types such as S3 are re-encrypted with the vault key), so the
  stack key must outlive every recovery point and be shared for cross-account copies anyway; a
  second key would be one more thing to keep and share without narrowing anything.
- A plan: a daily rule (05:00 UTC, kept `retention_days`) and optionally a monthly one (the
  1st, kept `monthly_retention_days`), each copying its recovery points to the copy targets.
- A selection of exactly the cluster and the bucket (versioned: AWS Backup requires it; the
  settings refuse backups of an unversioned bucket), backed up by a role that only AWS Backup
  can assume, with AWS's managed backup and restore policies (why: docs/security.md).
- Copies: to a vault this component creates in another region (with a KMS key of its own
  there: keys are regional), and/or to a vault given by ARN (another account of the same AWS
  Organization; that account's side is in docs/security.md). The vault's access policy lets
  that account copy recovery points back, for a restore.
- Vault lock (governance or compliance) on every vault this component creates.

On `pulumi destroy`: when the stage keeps its data, the vaults, their lock and the copy key are
kept (`retain_on_delete`) with every recovery point, which then expires on its own schedule; the
plan, selection and role go. A stage whose removalPolicy is destroy has no lock (the settings
refuse it), and its vaults are emptied and deleted (`force_destroy`). docs/destroy.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import policies
from components.context import AwsContext

DAILY_SCHEDULE = "cron(0 5 * * ? *)"
MONTHLY_SCHEDULE = "cron(0 5 1 * ? *)"
START_WINDOW_MINUTES = 60
# AWS Backup's service role, as AWS documents it: backups and restores of every supported
# service, and the separate S3 pair (docs/security.md says why managed policies here).
MANAGED_POLICIES = (
    "service-role/AWSBackupServiceRolePolicyForBackup",
    "service-role/AWSBackupServiceRolePolicyForRestores",
    "AWSBackupServiceRolePolicyForS3Backup",
    "AWSBackupServiceRolePolicyForS3Restore",
)
NAME_LIMIT = 50  # vault, plan and selection names


@dataclass(frozen=True)
class VaultLockArgs:
    mode: Literal["governance", "compliance"]
    min_retention_days: int
    max_retention_days: int
    changeable_for_days: int


@dataclass(frozen=True)
class BackupArgs:
    context: AwsContext
    kms_key_arn: pulumi.Input[str]
    cluster_arns: Sequence[pulumi.Input[str]]
    bucket_arn: pulumi.Input[str]
    retention_days: int
    keep_on_destroy: bool
    protect: bool
    monthly_retention_days: Optional[int] = None
    copy_to_region: Optional[str] = None
    copy_to_vault_arn: Optional[str] = None
    vault_lock: Optional[VaultLockArgs] = None


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def backup_name(stack: str, suffix_hex: str) -> str:
    """`redcap-<stack>-<hex>` within AWS Backup's 50 characters (letters, digits, - and _)."""
    tail = f"-{suffix_hex}"
    return f"redcap-{stack}"[:NAME_LIMIT - len(tail)] + tail


def copy_key_policy(partition: str, account_id: str) -> str:
    """The copy vault's key: IAM in this account decides (AWS Backup's role and the grant AWS
    Backup makes when the vault is created)."""
    return policies.document([{
        "Sid": "AccountAdministersKeyThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",  # AWS's default key policy: delegates every decision to IAM.
        "Resource": "*",  # In a key policy, "*" means this key only.
    }])


def destination_vault_access_policy(partition: str, source_account: str) -> str:
    """What the destination account sets on its vault (docs/security.md): this stage's account
    may copy recovery points into it, nothing more."""
    return policies.document([{
        "Sid": "CopiesFromRedcapAccount",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{source_account}:root"},
        "Action": "backup:CopyIntoBackupVault",
        "Resource": "*",  # In a vault access policy, "*" means this vault.
    }])


def copy_back_policy(vault_arn: str, partition: str, account: str) -> str:
    """This stage's vault accepts copies back from the account it copies to: how a recovery point
    of the backup account returns here for a restore (docs/security.md)."""
    return policies.document([{
        "Sid": "CopiesBackFromBackupAccount",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
        "Action": "backup:CopyIntoBackupVault",
        "Resource": vault_arn,
    }])


def destination_key_statement(partition: str, source_account: str) -> dict:
    """The statement the destination account adds to its vault key's policy, so that recovery
    points can be copied back to this account for a restore (docs/security.md)."""
    return policies.cross_account_copy_statement(partition, [source_account]) | {"Sid": "CopiesBackToRedcapAccount"}


def plan_rules(*, vault_name: pulumi.Input[str], retention_days: int, monthly_retention_days: Optional[int],
               copy_vault_arns: list[pulumi.Input[str]], tags: dict[str, str]) -> list[aws.backup.PlanRuleArgs]:
    def rule(rule_name: str, schedule: str, days: int) -> aws.backup.PlanRuleArgs:
        return aws.backup.PlanRuleArgs(
            rule_name=rule_name, target_vault_name=vault_name, schedule=schedule, start_window=START_WINDOW_MINUTES,
            lifecycle=aws.backup.PlanRuleLifecycleArgs(delete_after=days),
            copy_actions=[aws.backup.PlanRuleCopyActionArgs(
                destination_vault_arn=arn, lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(delete_after=days))
                for arn in copy_vault_arns],
            recovery_point_tags=tags)

    rules = [rule("daily", DAILY_SCHEDULE, retention_days)]
    if monthly_retention_days is not None:
        rules.append(rule("monthly", MONTHLY_SCHEDULE, monthly_retention_days))
    return rules


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

class Backup(pulumi.ComponentResource):
    vault_arn: pulumi.Output[str]
    vault_name: pulumi.Output[str]
    plan_id: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    copy_vault_arn: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: BackupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:backup:Backup", name, None, opts)
        ctx = args.context
        if args.copy_to_region == ctx.region:
            raise ValueError("BackupArgs.copy_to_region must differ from the stack's region")
        if args.vault_lock is not None and not args.keep_on_destroy:
            raise ValueError("a vault lock needs keep_on_destroy: a locked vault cannot be deleted")
        child = pulumi.ResourceOptions(parent=self)
        # What `pulumi destroy` must leave when the stage keeps its data.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=args.keep_on_destroy, protect=args.protect)

        # Keyed on the vault's key, the one input that replaces a vault: a replacement gets a new
        # name instead of colliding with the old vault, which stays with its recovery points.
        suffix = random.RandomId(f"{name}-suffix", byte_length=4, keepers={"vaultKey": args.kms_key_arn},
                                 opts=child)
        physical_name = suffix.hex.apply(lambda h: backup_name(ctx.stack, h))
        vault = aws.backup.Vault(
            f"{name}-vault", name=physical_name, kms_key_arn=args.kms_key_arn,
            force_destroy=not args.keep_on_destroy, opts=keep)
        self._lock(f"{name}-vault", vault, args, keep)

        copy_vault_arns: list[pulumi.Input[str]] = []
        self.copy_vault_arn = None
        if args.copy_to_region:
            self.copy_vault_arn = self._copy_vault(name, args, physical_name, keep)
            copy_vault_arns.append(self.copy_vault_arn)
        if args.copy_to_vault_arn:
            copy_vault_arns.append(args.copy_to_vault_arn)
            destination_account = args.copy_to_vault_arn.split(":")[4]
            aws.backup.VaultPolicy(
                f"{name}-vault-policy", backup_vault_name=vault.name,
                policy=pulumi.Output.all(vault.arn, ctx.partition).apply(
                    lambda a: copy_back_policy(a[0], a[1], destination_account)),
                opts=keep)

        role = aws.iam.Role(
            f"{name}-role", description=f"AWS Backup of REDCap {ctx.stack}: backs up and restores its cluster and bucket",
            assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("backup.amazonaws.com", a)),
            opts=child)
        attachments = [aws.iam.RolePolicyAttachment(
            f"{name}-role-{policy.rsplit('/', 1)[-1].removeprefix('AWSBackupServiceRolePolicyFor').lower()}",
            role=role.name, policy_arn=ctx.partition.apply(lambda p, s=policy: f"arn:{p}:iam::aws:policy/{s}"),
            opts=child) for policy in MANAGED_POLICIES]

        plan = aws.backup.Plan(
            f"{name}-plan", name=physical_name,
            rules=plan_rules(vault_name=vault.name, retention_days=args.retention_days,
                             monthly_retention_days=args.monthly_retention_days, copy_vault_arns=copy_vault_arns,
                             tags={"redcap-stack": ctx.stack}),
            opts=child)
        aws.backup.Selection(
            f"{name}-selection", name=f"redcap-{ctx.stack}-data"[:NAME_LIMIT], iam_role_arn=role.arn, plan_id=plan.id,
            resources=[*args.cluster_arns, args.bucket_arn],
            # AWS Backup checks that it may pass the role; the role must have its policies first.
            # Every argument replaces a selection (there is no update): dropping the old one first
            # keeps two selections of one name from existing at once; the daily plan misses nothing.
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments, delete_before_replace=True))

        self.vault_arn = vault.arn
        self.vault_name = vault.name
        self.plan_id = plan.id
        self.role_arn = role.arn
        self.register_outputs({
            "vaultArn": self.vault_arn,
            "planId": self.plan_id,
            "roleArn": self.role_arn,
            "copyVaultArn": self.copy_vault_arn,
        })

    def _lock(self, name: str, vault: aws.backup.Vault, args: BackupArgs, keep: pulumi.ResourceOptions,
              region: Optional[str] = None) -> None:
        lock = args.vault_lock
        if lock is None:
            return
        # Kept with its vault: deleting it on destroy would remove a governance lock from the kept vault.
        aws.backup.VaultLockConfiguration(
            f"{name}-lock", backup_vault_name=vault.name, region=region,
            min_retention_days=lock.min_retention_days, max_retention_days=lock.max_retention_days,
            changeable_for_days=lock.changeable_for_days if lock.mode == "compliance" else None,
            opts=keep)

    def _copy_vault(self, name: str, args: BackupArgs, physical_name: pulumi.Output[str],
                    keep: pulumi.ResourceOptions) -> pulumi.Output[str]:
        ctx, region = args.context, args.copy_to_region
        # pulumi-aws 7's per-resource `region`: the stack's provider, with its credentials and
        # default tags, manages these too; no second provider to configure alike.
        key = aws.kms.Key(
            f"{name}-copy-key", region=region, description=f"REDCap {ctx.stack}: backup copies from {ctx.region}",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=pulumi.Output.all(ctx.partition, ctx.account_id).apply(lambda a: copy_key_policy(a[0], a[1])),
            opts=keep)
        aws.kms.Alias(f"{name}-copy-key-alias", region=region, name=f"alias/redcap-{ctx.stack}-backup-copies",
                      target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self))
        vault = aws.backup.Vault(
            f"{name}-copy-vault", region=region, name=physical_name, kms_key_arn=key.arn,
            force_destroy=not args.keep_on_destroy, opts=keep)
        self._lock(f"{name}-copy-vault", vault, args, keep, region=region)
        return vault.arn
