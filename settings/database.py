"""Aurora settings: the `db` block and `dbAuth`."""
from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import (Problem, _CrossProblems, _Model, _is_int, engine_supports_auto_pause,
                             engine_version_order, parse_acu, parse_bool, parse_engine_version,
                             parse_max_allowed_packet, parse_maintenance_window)


class DbScaling(_Model):
    min_capacity_acu: float = Field(0.5, alias="minCapacityAcu")
    max_capacity_acu: float = Field(2.0, alias="maxCapacityAcu")

    _acu = field_validator("min_capacity_acu", "max_capacity_acu", mode="before")(
        lambda v: parse_acu(v))

    @model_validator(mode="after")
    def _min_le_max(self) -> "DbScaling":
        if self.min_capacity_acu > self.max_capacity_acu:
            raise Problem("minCapacityAcu <= maxCapacityAcu, and maxCapacityAcu >= 1 when min is 0",
                          "{minCapacityAcu: 0.5, maxCapacityAcu: 4}")
        if self.max_capacity_acu < 1:
            raise Problem("maxCapacityAcu of at least 1 (Aurora Serverless v2)",
                          "{minCapacityAcu: 0, maxCapacityAcu: 2}")
        return self


def parse_snapshot_id(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"(arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster-snapshot:)?[A-Za-z][A-Za-z0-9:-]{0,254}", text):
        raise Problem("an Aurora cluster snapshot identifier or ARN",
                      "rds:redcap-prod-2026-11-01-03-10 or redcap-final-1a2b3c4d")
    return text


class PreviousCluster(_Model):
    """The cluster a restore in place replaces: kept next to the restored one until it is removed
    from the settings (docs/restore.md)."""

    db_snapshot_id: Optional[str] = Field(None, alias="dbSnapshotId")
    deletion_protection: Optional[bool] = Field(None, alias="deletionProtection")

    _snapshot = field_validator("db_snapshot_id", mode="before")(lambda v: parse_snapshot_id(v))
    _protection = field_validator("deletion_protection", mode="before")(
        lambda v: None if v is None else parse_bool(v))


# Enhanced Monitoring granularities RDS accepts (MonitoringInterval; 0 = off).
MONITORING_INTERVALS: tuple[int, ...] = (0, 1, 5, 10, 15, 30, 60)
# Database Insights' advanced mode keeps Performance Insights data at least this long.
ADVANCED_INSIGHTS_MIN_RETENTION_DAYS = 465
DATABASE_INSIGHTS_MODES: tuple[str, ...] = ("standard", "advanced")


def performance_insights_retentions() -> tuple[int, ...]:
    """What RDS accepts as PerformanceInsightsRetentionPeriod: 7, months * 31 (1 to 23), 731."""
    return (7, *(31 * months for months in range(1, 24)), 731)


class DbMonitoring(_Model):
    """What the cluster's instances report beyond CloudWatch's own metrics."""

    enhanced_monitoring_seconds: Optional[int] = Field(None, alias="enhancedMonitoringSeconds")
    performance_insights_retention_days: int = Field(7, alias="performanceInsightsRetentionDays")
    database_insights: str = Field("standard", alias="databaseInsights")

    @field_validator("enhanced_monitoring_seconds", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Optional[int]:
        if v is None:
            return None
        if not _is_int(v) or int(v) not in MONITORING_INTERVALS:
            raise Problem("0 (off), 1, 5, 10, 15, 30 or 60 seconds between Enhanced Monitoring samples", "60")
        return int(v)

    @field_validator("performance_insights_retention_days", mode="before")
    @classmethod
    def _retention(cls, v: Any) -> int:
        if not _is_int(v) or int(v) not in performance_insights_retentions():
            raise Problem("7 (free), a multiple of 31 up to 713 (months), or 731 days of Performance Insights "
                          "data", "7")
        return int(v)

    @field_validator("database_insights", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> str:
        if v not in DATABASE_INSIGHTS_MODES:
            raise Problem("standard (free) or advanced (billed per ACU-hour; needs "
                          "performanceInsightsRetentionDays of at least 465)", "standard")
        return str(v)

    @model_validator(mode="after")
    def _advanced_needs_retention(self) -> "DbMonitoring":
        if self.database_insights == "advanced" and \
                self.performance_insights_retention_days < ADVANCED_INSIGHTS_MIN_RETENTION_DAYS:
            raise _CrossProblems([("db.monitoring.performanceInsightsRetentionDays",
                                   self.performance_insights_retention_days, Problem(
                "at least 465 days with databaseInsights: advanced (RDS refuses the mode with less): "
                "465, 496, ... 713 or 731", "performanceInsightsRetentionDays: 465"))])
        return self


class DbSettings(_Model):
    engine_version: str = Field("8.0.mysql_aurora.3.10.3", alias="engineVersion")
    db_readers: int = Field(1, alias="dbReaders")
    db_snapshot_id: Optional[str] = Field(None, alias="dbSnapshotId")
    max_allowed_packet: int = Field(1073741824, alias="maxAllowedPacket")
    preferred_maintenance_window: Optional[str] = Field(None, alias="preferredMaintenanceWindow")
    scaling: DbScaling = DbScaling()
    backtrack_hours: float = Field(24, alias="backtrackHours")
    backup_retention_days: int = Field(30, alias="backupRetentionDays")
    engine_upgrade_to: Optional[str] = Field(None, alias="engineUpgradeTo")
    previous_cluster: Optional[PreviousCluster] = Field(None, alias="previousCluster")
    monitoring: DbMonitoring = DbMonitoring()

    _engine = field_validator("engine_version", mode="before")(lambda v: parse_engine_version(str(v)))
    _upgrade = field_validator("engine_upgrade_to", mode="before")(
        lambda v: None if v is None else parse_engine_version(str(v)))
    _packet = field_validator("max_allowed_packet", mode="before")(lambda v: parse_max_allowed_packet(v))
    _window = field_validator("preferred_maintenance_window", mode="before")(
        lambda v: None if v is None else parse_maintenance_window(str(v)))

    @field_validator("db_readers", mode="before")
    @classmethod
    def _readers(cls, v: Any) -> int:
        if not _is_int(v) or not 0 <= int(v) <= 15:
            raise Problem("a whole number of reader instances from 0 to 15", "1")
        return int(v)

    _snapshot = field_validator("db_snapshot_id", mode="before")(lambda v: parse_snapshot_id(v))

    @field_validator("backtrack_hours", mode="before")
    @classmethod
    def _backtrack(cls, v: Any) -> float:
        try:
            hours = float(v)
        except (TypeError, ValueError):
            hours = -1
        if not 0 <= hours <= 72:
            raise Problem("0 to 72 hours (0 turns backtrack off, which cannot be undone)", "24")
        return hours

    @field_validator("backup_retention_days", mode="before")
    @classmethod
    def _retention(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 35:
            raise Problem("1 to 35 days of automated backups", "30")
        return int(v)

    @model_validator(mode="after")
    def _auto_pause_needs_3_08(self) -> "DbSettings":
        if self.scaling.min_capacity_acu == 0 and not engine_supports_auto_pause(self.engine_version):
            raise Problem("engineVersion 8.0.mysql_aurora.3.08.0 or later when scaling.minCapacityAcu is 0 "
                          "(auto-pause)", "8.0.mysql_aurora.3.10.3")
        return self

    @model_validator(mode="after")
    def _upgrade_and_restore(self) -> "DbSettings":
        problems: list[tuple[str, Any, Problem]] = []
        upgrade = self.engine_upgrade_to
        if upgrade is not None and engine_version_order(upgrade) <= engine_version_order(self.engine_version):
            problems.append(("db.engineUpgradeTo", upgrade, Problem(
                f"a version newer than db.engineVersion {self.engine_version} (the version to upgrade "
                "the running cluster to; afterwards set engineVersion to it and remove engineUpgradeTo)",
                "8.0.mysql_aurora.3.11.0")))
        previous = self.previous_cluster
        if previous is not None and self.db_snapshot_id is None:
            problems.append(("db.previousCluster", previous.model_dump(by_alias=True, exclude_none=True), Problem(
                "a previous cluster only during a restore in place, together with db.dbSnapshotId "
                "(the snapshot the new cluster is restored from)",
                "dbSnapshotId: redcap-prod-a1b2c3d4-before-upgrade, previousCluster: {deletionProtection: true}")))
        elif previous is not None and previous.db_snapshot_id == self.db_snapshot_id:
            problems.append(("db.previousCluster.dbSnapshotId", previous.db_snapshot_id, Problem(
                "the snapshot the cluster being replaced was restored from (omit it for the stage's first "
                "cluster), which is not db.dbSnapshotId; to restore the same snapshot again, copy it first "
                "(aws rds copy-db-cluster-snapshot) and restore the copy",
                "previousCluster: {dbSnapshotId: redcap-prod-a1b2c3d4-before-upgrade}")))
        if problems:
            raise _CrossProblems(problems)
        return self


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "db": "Aurora Serverless v2 settings.",
    "db.engineVersion": "Aurora MySQL 3 version a new cluster gets (AWS applies minor upgrades later, which are not drift). Must be >= a snapshot's version when restoring.",
    "db.engineUpgradeTo": "Upgrade the running cluster to this newer version on the next `pulumi up`; then move it to engineVersion and remove this key (docs/upgrade.md).",
    "db.dbReaders": "Reader instances (0 to 15); REDCap's read-replica mode is on only with readers.",
    "db.dbSnapshotId": "Restore from this cluster snapshot (creates a new cluster: docs/restore.md).",
    "db.previousCluster": "During a restore in place: the cluster being replaced, kept until this key is removed (docs/restore.md).",
    "db.previousCluster.dbSnapshotId": "The snapshot that cluster was restored from; omitted: the stage's first cluster.",
    "db.previousCluster.deletionProtection": "Its RDS deletion protection and Pulumi `protect`; false before removing it. Unset: as the stage's.",
    "db.maxAllowedPacket": "Cluster parameter `max_allowed_packet` in bytes.",
    "db.preferredMaintenanceWindow": "`ddd:HH:mm-ddd:HH:mm` UTC, 30 minutes to 24 hours. Unset: AWS picks.",
    "db.scaling": "Serverless v2 capacity range.",
    "db.scaling.minCapacityAcu": "Minimum ACUs (0 = pause when idle; needs Aurora MySQL 3.08.0 or later).",
    "db.scaling.maxCapacityAcu": "Maximum ACUs (at least 1).",
    "db.backtrackHours": "Backtrack window in hours (0 to 72; can only be enabled when the cluster is created). In a region without Aurora backtrack (docs/regions.md) unset means 0 and a value above 0 is an error.",
    "db.backupRetentionDays": "Automated backup retention in days (1 to 35).",
    "db.monitoring": "What the cluster's instances report besides CloudWatch's own metrics (docs/upgrade.md, \"Watching the database\").",
    "db.monitoring.enhancedMonitoringSeconds": "Enhanced Monitoring (operating-system metrics) every 1, 5, 10, 15, 30 or 60 seconds, or 0 for off. Unset: 60 unless removalPolicy is destroy, then 0.",
    "db.monitoring.performanceInsightsRetentionDays": "Days of Performance Insights data, encrypted with the stack key: 7 (free), a multiple of 31 up to 713, or 731.",
    "db.monitoring.databaseInsights": "CloudWatch Database Insights mode of the cluster: `standard` (free) or `advanced` (billed; needs performanceInsightsRetentionDays of at least 465).",
    "dbAuth": "How REDCap logs in to the database: `iam` (token per connection) or `password`.",
}
