"""REDCap's own configuration: what the container may do to the settings and accounts in
REDCap's database at start (docs/configuration-sql.md)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import field_validator

from settings.common import Problem, _Model, parse_bool

ConfigurationSqlMode = Literal["onInstall", "apply"]
CONFIGURATION_SQL_MODES: tuple[str, ...] = ("onInstall", "apply")


def parse_configuration_sql(value: Any) -> str:
    """Exact values only: a near miss must not quietly mean either of them (one resets a
    production site's login method)."""
    if value not in CONFIGURATION_SQL_MODES:
        raise Problem("onInstall (apply sql/redcap-config*.sql only to a database on which the "
                      "container installed REDCap itself) or apply (also to a database where "
                      "REDCap was already installed, e.g. migrated or restored: resets the "
                      "settings the file sets and gives a site_admin without a table login the "
                      "generated password; once per file)", "apply")
    return str(value)


class UpgradeSettings(_Model):
    """What `pulumi up` does when the REDCap version changes (docs/upgrade.md)."""

    # Unset: on for stages that keep their data (removalPolicy snapshot or retain).
    snapshot: Optional[bool] = None
    database: bool = False

    _bools = field_validator("snapshot", "database", mode="before")(
        lambda v: None if v is None else parse_bool(v))


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "upgrade": "What `pulumi up` does when the REDCap version changes (docs/upgrade.md).",
    "upgrade.snapshot": "Take a cluster snapshot named after the old and new version before the new image rolls out; it survives `pulumi destroy`. Unset: true unless removalPolicy is destroy.",
    "upgrade.database": "After the new image is healthy, run REDCap's database upgrade in a one-off task with the same image; a failure fails `pulumi up` (docs/upgrade.md).",
    "configurationSql": "When the container applies the configuration SQL and gives `site_admin` the generated password: `onInstall` only on a database it installed REDCap on; `apply` also on a database where REDCap was already installed (migration, older snapshot), once per file (docs/configuration-sql.md).",
}
