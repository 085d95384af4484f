"""Backup settings: the `backup` block (AWS Backup vault, plan, copies, vault lock)."""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import Problem, _Model, _is_int, parse_bool

# AWS Backup's limits on a recovery point's lifecycle and on a vault lock (days).
MAX_RETENTION_DAYS = 36500
MIN_CHANGEABLE_FOR_DAYS = 3  # a compliance lock can be changed for at least 3 days after it is set
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_VAULT_ARN_RE = re.compile(r"^arn:aws[a-z-]*:backup:([a-z0-9-]+):(\d{12}):backup-vault:[A-Za-z0-9_-]{2,50}$")
VAULT_ARN_EXAMPLE = "arn:aws:backup:us-west-2:210987654321:backup-vault:redcap-dr"

# What a compliance-mode lock means, in every message that concerns it.
COMPLIANCE_IS_IRREVERSIBLE = (
    "compliance mode is IRREVERSIBLE once changeableForDays have passed: nobody (not your "
    "administrators, not the account's root user, not AWS) can then remove the lock, shorten the "
    "retention or delete the vault, and every recovery point in it stays, and is billed, until its "
    "retention ends")


def _days(value: Any, allowed: str, example: str, low: int = 1, high: int = MAX_RETENTION_DAYS) -> int:
    if not _is_int(value) or not low <= int(value) <= high:
        raise Problem(allowed, example)
    return int(value)


def vault_arn_region_and_account(arn: str) -> tuple[str, str]:
    """(region, account id) of a backup vault ARN that passed validation."""
    match = _VAULT_ARN_RE.match(arn)
    if match is None:
        raise ValueError(f"not a backup vault ARN: {arn}")
    return match.group(1), match.group(2)


class VaultLock(_Model):
    mode: Literal["governance", "compliance"]
    min_retention_days: int = Field(1, alias="minRetentionDays")
    max_retention_days: int = Field(MAX_RETENTION_DAYS, alias="maxRetentionDays")
    changeable_for_days: int = Field(MIN_CHANGEABLE_FOR_DAYS, alias="changeableForDays")
    acknowledge_irreversible: bool = Field(False, alias="acknowledgeIrreversible")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> str:
        if v not in ("governance", "compliance"):
            raise Problem("governance (an administrator allowed backup:DeleteBackupVaultLockConfiguration "
                          "can still remove the lock) or compliance (" + COMPLIANCE_IS_IRREVERSIBLE + ")",
                          "governance")
        return v

    _min = field_validator("min_retention_days", mode="before")(
        lambda v: _days(v, f"1 to {MAX_RETENTION_DAYS} days", "7"))
    _max = field_validator("max_retention_days", mode="before")(
        lambda v: _days(v, f"1 to {MAX_RETENTION_DAYS} days", "3650"))
    _changeable = field_validator("changeable_for_days", mode="before")(
        lambda v: _days(v, f"{MIN_CHANGEABLE_FOR_DAYS} to {MAX_RETENTION_DAYS} days (the grace period in which "
                           "a compliance lock can still be removed)", "3", low=MIN_CHANGEABLE_FOR_DAYS))
    _ack = field_validator("acknowledge_irreversible", mode="before")(lambda v: parse_bool(v))

    @model_validator(mode="after")
    def _consistent(self) -> "VaultLock":
        if self.min_retention_days > self.max_retention_days:
            raise Problem("minRetentionDays <= maxRetentionDays", "{minRetentionDays: 7, maxRetentionDays: 3650}")
        if self.mode == "compliance" and not self.acknowledge_irreversible:
            raise Problem(
                f"acknowledgeIrreversible: true together with mode compliance, because {COMPLIANCE_IS_IRREVERSIBLE} "
                f"(here up to maxRetentionDays = {self.max_retention_days} days); choose mode governance "
                "to keep a way back",
                "{mode: compliance, minRetentionDays: 7, maxRetentionDays: 3650, changeableForDays: 3, "
                "acknowledgeIrreversible: true}")
        return self

    @property
    def compliance(self) -> bool:
        return self.mode == "compliance"


class BackupSettings(_Model):
    enabled: Optional[bool] = None
    retention_days: int = Field(35, alias="retentionDays")
    monthly_retention_days: Optional[int] = Field(None, alias="monthlyRetentionDays")
    copy_to_region: Optional[str] = Field(None, alias="copyToRegion")
    copy_to_vault_arn: Optional[str] = Field(None, alias="copyToVaultArn")
    vault_lock: Optional[VaultLock] = Field(None, alias="vaultLock")

    _enabled = field_validator("enabled", mode="before")(lambda v: None if v is None else parse_bool(v))
    _retention = field_validator("retention_days", mode="before")(
        lambda v: _days(v, f"1 to {MAX_RETENTION_DAYS} days of daily recovery points", "35"))
    _monthly = field_validator("monthly_retention_days", mode="before")(
        lambda v: None if v is None else _days(v, f"1 to {MAX_RETENTION_DAYS} days of monthly recovery points",
                                                "365"))

    @field_validator("copy_to_region", mode="before")
    @classmethod
    def _region(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        if not _REGION_RE.match(str(v)):
            raise Problem("an AWS region name", "us-west-2")
        return str(v)

    @field_validator("copy_to_vault_arn", mode="before")
    @classmethod
    def _vault_arn(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        if not _VAULT_ARN_RE.match(str(v)):
            raise Problem("the ARN of a backup vault (in another account or region; docs/security.md says what "
                          "that account must allow)", VAULT_ARN_EXAMPLE)
        return str(v)

    @model_validator(mode="after")
    def _consistent(self) -> "BackupSettings":
        if self.monthly_retention_days is not None and self.monthly_retention_days <= self.retention_days:
            raise Problem(f"monthlyRetentionDays > retentionDays ({self.retention_days}): monthly recovery points "
                          "exist to be kept longer than the daily ones", "{retentionDays: 35, monthlyRetentionDays: 365}")
        lock = self.vault_lock
        if lock is not None:
            for key, days in (("retentionDays", self.retention_days),
                              ("monthlyRetentionDays", self.monthly_retention_days)):
                if days is not None and not lock.min_retention_days <= days <= lock.max_retention_days:
                    raise Problem(
                        f"{key} ({days}) within vaultLock.minRetentionDays..maxRetentionDays "
                        f"({lock.min_retention_days}..{lock.max_retention_days}): a locked vault refuses "
                        "recovery points with a retention outside that range, so every backup would fail",
                        f"{{{key}: {min(max(lock.min_retention_days, 35), lock.max_retention_days)}, "
                        "vaultLock: {...}}")
        return self


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "backup": "AWS Backup of the database cluster and the file bucket into a vault encrypted with the stack key (docs/security.md).",
    "backup.enabled": "Take the backups. Needs appBucketVersioning (AWS Backup backs up versioned buckets only).",
    "backup.retentionDays": "Days a daily recovery point (taken at 05:00 UTC) is kept, in the vault and in every copy.",
    "backup.monthlyRetentionDays": "Also keep a recovery point of the 1st of each month this many days. Unset: no monthly ones.",
    "backup.copyToRegion": "Copy every recovery point to a vault this stack creates in that region (its own KMS key there).",
    "backup.copyToVaultArn": "Copy every recovery point to this vault, e.g. in a backup account of the same AWS Organization; that account must allow it (docs/security.md).",
    "backup.vaultLock": "Lock the vaults: recovery points cannot be deleted before their retention ends, nor kept outside the range.",
    "backup.vaultLock.mode": "`governance` (removable by an administrator with the permission) or `compliance` (irreversible after changeableForDays; docs/security.md).",
    "backup.vaultLock.minRetentionDays": "Shortest retention a recovery point in the vault may have.",
    "backup.vaultLock.maxRetentionDays": "Longest retention a recovery point in the vault may have.",
    "backup.vaultLock.changeableForDays": "Compliance mode: days after the lock is set during which it can still be removed (at least 3).",
    "backup.vaultLock.acknowledgeIrreversible": "Must be `true` with mode `compliance`: nobody can undo that lock or delete the vault before its recovery points expire.",
}
