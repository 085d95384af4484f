"""Stage settings: every `redcap:*` config key, read once, validated, and explained when wrong.

The key names follow the original `stages.ts` options so its users can carry their values over
(docs/migrating.md maps each one). Components never read `pulumi.Config`: they receive the typed,
immutable objects defined here. Every rule fails before any resource is registered; all failures
are reported together, each naming the key, the bad value, what is allowed and an example.

One module per concern, each with its model(s) and the descriptions of its keys:
  common    error types, pure validators and planners, the base model
  application  REDCap's own configuration (the configuration SQL policy)
  database  the `db` block (Aurora) and `dbAuth`
  compute   App Runner sizes, the `ecs` block, the tunnel host
  edge      WAF and e-mail keys, externalResources
  backup    the `backup` block (AWS Backup vault, plan, copies, vault lock)
  credentials  how often the IAM access keys rotate
  dns       domain keys, the delegation-only stack
  stage     StageSettings (every key) and the rules across keys
  loader    reading the config and formatting problems; `from_pulumi` for __main__.py
  paths     where the project's files are
"""
from settings import application, backup, compute, credentials, database, dns, edge, stage
from settings.application import *  # noqa: F401,F403
from settings.backup import *  # noqa: F401,F403
from settings.common import *  # noqa: F401,F403
from settings.common import (NAMESPACE, Problem, SettingsError, _as_list, _is_int,  # noqa: F401
                             closest_key, plan_subnets)
from settings.compute import *  # noqa: F401,F403
from settings.database import *  # noqa: F401,F403
from settings.dns import *  # noqa: F401,F403
from settings.edge import *  # noqa: F401,F403
from settings.loader import *  # noqa: F401,F403
from settings.loader import (CROSS_RULE_INPUTS, KNOWN_KEYS, SECRET_KEYS, STRUCTURED_KEYS,  # noqa: F401
                             Secrets, format_problems, from_pulumi, load_settings)
from settings.stage import StageSettings  # noqa: F401

DESCRIPTIONS: dict[str, str] = {
    **application.DESCRIPTIONS, **backup.DESCRIPTIONS, **compute.DESCRIPTIONS, **credentials.DESCRIPTIONS,
    **database.DESCRIPTIONS, **dns.DESCRIPTIONS, **edge.DESCRIPTIONS, **stage.DESCRIPTIONS,
}
