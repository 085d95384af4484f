"""Reading a stack's config: unknown keys, JSON-decoding structured keys, running the models and
turning pydantic's errors into one message per problem. `from_pulumi` is what __main__.py calls."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from pydantic import BaseModel, ValidationError

from settings.common import NAMESPACE, Problem, SettingsError, _CrossProblems, closest_key, parse_db_salt
from settings.stage import StageSettings


KNOWN_KEYS: tuple[str, ...] = tuple(
    f.alias or name for name, f in StageSettings.model_fields.items() if name not in ("stack", "region")
)
STRUCTURED_KEYS = frozenset({"allowedIps", "allowedCountries", "ecs", "express", "db", "ec2ServerStack",
                             "externalResources", "nsDelegation", "wafSqliRulesToCount", "backup", "operations", "upgrade"})
SECRET_KEYS = frozenset({"cronSecret", "dbSalt"})
# Secret values checked where they arrive; a problem shows the key, never the value.
SECRET_RULES = {"dbSalt": parse_db_salt}
SECRET_SHOWN_AS = "[secret]"


def _decode(key: str, raw: str) -> Any:
    """Config values arrive as strings; objects and lists as JSON (as `pulumi config set --path` stores them)."""
    if key in STRUCTURED_KEYS:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise _KeyProblem(key, raw, Problem("a YAML object or list in the stack file (JSON on the wire)",
                                                _STRUCTURED_EXAMPLES.get(key, "{}"))) from None
    return raw


_STRUCTURED_EXAMPLES = {
    "db": "pulumi config set --path redcap:db.dbReaders 1",
    "ecs": "pulumi config set --path redcap:ecs.cpu '2 vCPU'",
    "express": "pulumi config set --path redcap:express.cpu '2 vCPU'",
    "allowedIps": "pulumi config set --path 'redcap:allowedIps[0]' 203.0.113.0/24",
    "backup": "pulumi config set --path redcap:backup.retentionDays 35",
    "operations": "pulumi config set --path redcap:operations.uptimeMinutes 5",
    "upgrade": "pulumi config set --path redcap:upgrade.database true",
}


STACK_NAME_LABEL = "stack name"
_STACK_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class _KeyProblem(Exception):
    def __init__(self, key: str, value: Any, problem: Problem):
        self.key, self.value, self.problem = key, value, problem


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def format_problems(problems: list[tuple[str, Any, str]]) -> str:
    lines = [f"Invalid stage settings ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
             "nothing was created:"]
    for key, value, detail in problems:
        # aws:* keys and the stack name are shown as they are; everything else is a redcap: key.
        name = key if (":" in key or key == STACK_NAME_LABEL) else f"redcap:{key}"
        lines.append(f"  - {name} = {_show(value)}: {detail}")
    return "\n".join(lines)


def load_settings(raw_config: Mapping[str, str], *, stack: str, region: Optional[str],
                  is_secret: Optional[Callable[[str], bool]] = None) -> StageSettings:
    """Validate the flat `redcap:*` config of one stack. Raises SettingsError listing every problem.

    `raw_config` maps full keys (`redcap:db`) to the string values Pulumi hands the program;
    `is_secret` tells which of them the stack keeps encrypted (then SECRET_KEYS must be).
    """
    problems: list[tuple[str, Any, str]] = []
    values: dict[str, Any] = {}
    for full_key in sorted(raw_config):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if key not in KNOWN_KEYS:
            problems.append((key, raw_config[full_key],
                             "unknown key" + closest_key(key, list(KNOWN_KEYS))
                             + f"; allowed: {', '.join(sorted(KNOWN_KEYS))}"))
            continue
        if key in SECRET_KEYS:
            # Only its presence matters here; the value stays a secret Output (see from_pulumi).
            values[key] = True
            if is_secret is not None and not is_secret(full_key):
                problems.append((key, SECRET_SHOWN_AS, f"allowed: a secret, set with `pulumi config set --secret "
                                 f"{full_key} ...` (a plain value stays unencrypted in Pulumi.<stack>.yaml); "
                                 f"example: pulumi config set --secret {full_key} \"$VALUE\""))
            if key in SECRET_RULES:
                try:
                    SECRET_RULES[key](raw_config[full_key])
                except Problem as problem:
                    problems.append((key, SECRET_SHOWN_AS, str(problem)))
            continue
        try:
            values[key] = _decode(key, raw_config[full_key])
        except _KeyProblem as kp:
            problems.append((kp.key, kp.value, str(kp.problem)))
    if not _STACK_NAME_RE.match(stack):
        # The stack name goes into AWS names (KMS alias, SES configuration set, WAF metrics,
        # cluster identifier) that accept letters, digits, - and _ only.
        problems.append((STACK_NAME_LABEL, stack, "allowed: letters, digits, - and _, at most 40 characters "
                         "(it becomes part of AWS resource names); example: pulumi stack init prod-eu"))
    if not region:
        problems.append(("aws:region", None, "the AWS region must be set: "
                         "allowed: an AWS region; example: pulumi config set aws:region us-east-1"))
    settings, field_problems, cross_problems = _validate({"stack": stack, "region": region or "", **values})
    problems.extend(field_problems)
    if field_problems:
        # Check the rules across keys too, on the keys that are valid on their own, so one run
        # reports everything; skip a rule that reads a key already reported as wrong.
        failed = {key.split(".")[0] for key, _, _ in field_problems}
        retry = {k: v for k, v in values.items() if k not in failed}
        _, _, cross_problems = _validate({"stack": stack, "region": region or "", **retry})
        cross_problems = [p for p in cross_problems if not (CROSS_RULE_INPUTS[p[0]] & failed)]
    problems.extend(cross_problems)
    if problems or settings is None:
        # aws:region is not a redcap key: show it without the prefix.
        msg = format_problems(problems)
        raise SettingsError(msg)
    return settings


# The keys each rule across keys reads (the first element of its problem names the rule).
CROSS_RULE_INPUTS: dict[str, set[str]] = {
    "redCapLocalVersion/redCapS3Path": {"redCapLocalVersion", "redCapS3Path"},
    "redCapS3Path": {"redCapS3Path", "deployTag"},
    "memory": {"cpu", "memory"},
    "appRunnerMinSize": {"appRunnerMinSize", "appRunnerMaxSize"},
    "subdomain": {"subdomain", "domain"},
    "hostInRoute53": {"hostInRoute53", "domain"},
    "zoneDelegated": {"zoneDelegated", "hostInRoute53", "domain"},
    "dnssec": {"dnssec", "hostInRoute53", "domain", "subdomain"},
    "dnsQueryLogging": {"dnsQueryLogging", "hostInRoute53", "domain", "subdomain"},
    "ecs": {"ecs", "domain", "hostInRoute53"},
    "ecs.certificateArn": {"ecs", "domain"},
    "ecs/express": {"ecs", "express"},
    "express": {"express", "domain", "hostInRoute53"},
    "express.certificateArn": {"express", "domain"},
    "allowListScope": {"allowListScope", "allowedIps", "allowedCountries"},
    "externalResources.wafWebAcl": {"externalResources", "express"},
    "email": {"email", "domain", "hostInRoute53"},
    "allowedIps/allowedCountries": {"allowedIps", "allowedCountries", "externalResources"},
    "operations.alarmEmail": {"operations", "email"},
    "operations.idleSchedule": {"operations", "deletionProtection", "removalPolicy"},
    "db.engineUpgradeTo": {"db"},
    "db.previousCluster": {"db"},
    "db.previousCluster.dbSnapshotId": {"db"},
    "db.monitoring.performanceInsightsRetentionDays": {"db"},
    "aws:region": {"ecs"},
    "senderEmail": {"senderEmail", "domain", "subdomain", "hostInRoute53"},
    "db.backtrackHours": {"db"},
    "bounceNotificationEmail": {"bounceNotificationEmail", "domain", "hostInRoute53"},
    "externalResources.sesIdentity": {"externalResources", "email", "domain", "hostInRoute53"},
    "appBucketVersioning": {"appBucketVersioning", "backup", "removalPolicy"},
    "backup.copyToRegion": {"backup"},
    "backup.vaultLock": {"backup", "removalPolicy"},
}


def _validate(values: dict[str, Any]) -> tuple[Optional[StageSettings], list[tuple[str, Any, str]],
                                                 list[tuple[str, Any, str]]]:
    """(settings or None, problems of single keys, problems across keys)."""
    try:
        return StageSettings.model_validate(values), [], []
    except ValidationError as err:
        explained = _explain(err, values)
    cross = [p for p in explained if isinstance(p, _CrossRow)]
    return None, [p for p in explained if not isinstance(p, _CrossRow)], cross


class _CrossRow(tuple):
    """A problem row produced by a rule across keys."""


def _explain(err: ValidationError, values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    out: list[tuple[str, Any, str]] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) if loc else "(settings)"
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _CrossProblems):
            out.extend(_CrossRow((k, v, str(p))) for k, v, p in ctx_err.problems)
            continue
        value = e.get("input")
        if isinstance(ctx_err, Problem):
            detail = str(ctx_err)
        elif e["type"] == "extra_forbidden":
            parent = _lookup_model(loc[:-1])
            known = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent else []
            detail = "unknown key" + (f"; allowed: {', '.join(known)}" if known else "")
        elif e["type"] == "missing":
            detail = "required; " + _missing_hint(loc)
            value = None
        elif e["type"] in ("model_type", "model_attributes_type", "dict_type"):
            detail = "allowed: an object; example: " + _STRUCTURED_EXAMPLES.get(loc[0], "{...}")
        else:
            detail = e["msg"]
        out.append((key, value, detail))
    return out


def _lookup_model(path: list[str]) -> Optional[type[BaseModel]]:
    model: type[BaseModel] = StageSettings
    for part in path:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        model = candidates[0]
    return model


def _missing_hint(loc: list[str]) -> str:
    if loc[-1] == "domain":
        return "example: {domain: example.org, records: [...]}"
    if loc[-1] == "records":
        return "example: [{name: redcap, fromStack: acme/redcap/prod}]"
    if loc[-1] == "name":
        return "example: redcap"
    if loc[-1] == "mode":
        return "example: {mode: governance, minRetentionDays: 7, maxRetentionDays: 3650}"
    if loc[-1] == "timezone":
        return "example: Europe/Berlin"
    return "see docs/settings.md"


@dataclass(frozen=True)
class Secrets:
    """Secret settings, kept as Outputs so they stay masked in state and logs."""

    cron_secret: Any  # Optional[pulumi.Output[str]]
    db_salt: Any = None  # Optional[pulumi.Output[str]]


def from_pulumi() -> tuple[StageSettings, Secrets]:
    """Read every `redcap:*` key of the current stack once."""
    import pulumi
    import pulumi_aws as aws
    from pulumi.runtime import config as runtime_config

    # The language host puts the stack's config in CONFIG; PULUMI_CONFIG is the older channel.
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {k: v for k, v in merged.items() if k.startswith(f"{NAMESPACE}:")}
    # The language host names the encrypted keys in PULUMI_CONFIG_SECRET_KEYS (tests: set_all_config).
    encrypted = set(runtime_config.get_config_secret_keys_env())
    settings = load_settings(raw, stack=pulumi.get_stack(), region=aws.config.region,
                             is_secret=lambda key: key in encrypted or runtime_config.is_config_secret(key))
    config = pulumi.Config(NAMESPACE)
    cron_secret = config.get_secret("cronSecret") if settings.has_cron_secret else None
    db_salt = config.get_secret("dbSalt") if settings.has_db_salt else None
    return settings, Secrets(cron_secret=cron_secret, db_salt=db_salt)


# The cost allocation tag a stage's budget counts: the stack files tag every resource with
# `deployment: redcap-<stage>` through aws:defaultTags (docs/operations.md, Budget).
BUDGET_TAG_KEY = "deployment"


def budget_tag() -> Optional[tuple[str, str]]:
    """(key, value) of the stack's `deployment` default tag, or None when the stack sets none."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return budget_tag_of(merged.get("aws:defaultTags"))


def budget_tag_of(raw: Optional[str]) -> Optional[tuple[str, str]]:
    try:
        tags = (json.loads(raw) if raw else {}).get("tags") or {}
    except (json.JSONDecodeError, AttributeError):
        return None
    value = tags.get(BUDGET_TAG_KEY) if isinstance(tags, dict) else None
    return (BUDGET_TAG_KEY, str(value)) if value else None
