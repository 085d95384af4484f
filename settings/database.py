"""Aurora settings: the `db` block and `dbAuth`."""
from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import Problem, _Model, _is_int, engine_supports_auto_pause, parse_acu, parse_engine_version, parse_max_allowed_packet, parse_maintenance_window


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


class DbSettings(_Model):
    engine_version: str = Field("8.0.mysql_aurora.3.10.3", alias="engineVersion")
    db_readers: int = Field(1, alias="dbReaders")
    db_snapshot_id: Optional[str] = Field(None, alias="dbSnapshotId")
    max_allowed_packet: int = Field(1073741824, alias="maxAllowedPacket")
    preferred_maintenance_window: Optional[str] = Field(None, alias="preferredMaintenanceWindow")
    scaling: DbScaling = DbScaling()
    backtrack_hours: float = Field(24, alias="backtrackHours")
    backup_retention_days: int = Field(30, alias="backupRetentionDays")

    _engine = field_validator("engine_version", mode="before")(lambda v: parse_engine_version(str(v)))
    _packet = field_validator("max_allowed_packet", mode="before")(lambda v: parse_max_allowed_packet(v))
    _window = field_validator("preferred_maintenance_window", mode="before")(
        lambda v: None if v is None else parse_maintenance_window(str(v)))

    @field_validator("db_readers", mode="before")
    @classmethod
    def _readers(cls, v: Any) -> int:
        if not _is_int(v) or not 0 <= int(v) <= 15:
            raise Problem("a whole number of reader instances from 0 to 15", "1")
        return int(v)

    @field_validator("db_snapshot_id", mode="before")
    @classmethod
    def _snapshot(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        text = str(v).strip()
        if not re.fullmatch(r"(arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster-snapshot:)?[A-Za-z][A-Za-z0-9:-]{0,254}", text):
            raise Problem("an Aurora cluster snapshot identifier or ARN",
                          "rds:redcap-prod-2026-11-01-03-10 or redcap-final-1a2b3c4d")
        return text

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


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "db": "Aurora Serverless v2 settings.",
    "db.engineVersion": "Aurora MySQL 3 version (the minimum; AWS applies minor upgrades). Must be >= a snapshot's version when restoring.",
    "db.dbReaders": "Reader instances (0 to 15); REDCap's read-replica mode is on only with readers.",
    "db.dbSnapshotId": "Restore from this cluster snapshot (creates a new cluster: docs/restore.md).",
    "db.maxAllowedPacket": "Cluster parameter `max_allowed_packet` in bytes.",
    "db.preferredMaintenanceWindow": "`ddd:HH:mm-ddd:HH:mm` UTC, 30 minutes to 24 hours. Unset: AWS picks.",
    "db.scaling": "Serverless v2 capacity range.",
    "db.scaling.minCapacityAcu": "Minimum ACUs (0 = pause when idle; needs Aurora MySQL 3.08.0 or later).",
    "db.scaling.maxCapacityAcu": "Maximum ACUs (at least 1).",
    "db.backtrackHours": "Backtrack window in hours (0 to 72; can only be enabled when the cluster is created). In a region without Aurora backtrack (docs/regions.md) unset means 0 and a value above 0 is an error.",
    "db.backupRetentionDays": "Automated backup retention in days (1 to 35).",
    "dbAuth": "How REDCap logs in to the database: `iam` (token per connection) or `password`.",
}
