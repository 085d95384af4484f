"""Stage settings: every `redcap:*` config key, read once, validated, and explained when wrong.

The key names follow the original `stages.ts` options so its users can carry their values over
(docs/migrating.md maps each one). Components never read `pulumi.Config`: they receive the typed,
immutable objects defined here.

Every rule fails before any resource is registered. All failures are reported together, each
naming the key, the bad value, what is allowed and an example.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

PROJECT_DIR = Path(__file__).resolve().parent
RELEASES_DIR = PROJECT_DIR / "releases"
NAMESPACE = "redcap"


class SettingsError(Exception):
    """Invalid stage settings. The message lists every problem; no resource was created."""


# --------------------------------------------------------------------------------------------
# Pure validators and planners (tests call these directly)
# --------------------------------------------------------------------------------------------

class Problem(ValueError):
    """One rule broken: what is allowed and an example (the caller adds the key and value)."""

    def __init__(self, allowed: str, example: str):
        super().__init__(f"allowed: {allowed}; example: {example}")
        self.allowed = allowed
        self.example = example


# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)
# The original's SST names (RetentionDays keys, lowercase), accepted so values carry over.
LOG_RETENTION_NAMES: dict[str, int] = {
    "one_day": 1, "three_days": 3, "five_days": 5, "one_week": 7, "two_weeks": 14,
    "one_month": 30, "two_months": 60, "three_months": 90, "four_months": 120,
    "five_months": 150, "six_months": 180, "one_year": 365, "thirteen_months": 400,
    "eighteen_months": 545, "two_years": 731, "three_years": 1096, "five_years": 1827,
    "six_years": 2192, "seven_years": 2557, "eight_years": 2922, "nine_years": 3288,
    "ten_years": 3653,
}

# ISO 3166-1 alpha-2 codes (officially assigned), which is what WAF geo match takes.
ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)

# App Runner instance sizes: cpu -> allowed memory values.
APPRUNNER_SIZES: dict[str, tuple[str, ...]] = {
    "0.25 vCPU": ("0.5 GB", "1 GB"),
    "0.5 vCPU": ("1 GB",),
    "1 vCPU": ("2 GB", "3 GB", "4 GB"),
    "2 vCPU": ("4 GB", "6 GB"),
    "4 vCPU": ("8 GB", "10 GB", "12 GB"),
}

# AWS managed SQLi rule group: sub-rules that may be switched to count (REDCap calculated
# fields trip SQLi_BODY; see docs/waf.md and the original's issue #57).
SQLI_RULE_NAMES: tuple[str, ...] = (
    "SQLi_QUERYARGUMENTS", "SQLi_BODY", "SQLi_COOKIE", "SQLi_URIPATH",
    "SQLiExtendedPatterns_QUERYARGUMENTS", "SQLiExtendedPatterns_BODY",
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$")
_LABELS_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_VERSION_IN_ZIP_RE = re.compile(r"redcap(\d+\.\d+\.\d+)\.zip$")
_LOCAL_VERSION_RE = re.compile(r"^redcap\d+\.\d+\.\d+$")
_BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DOCKER_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ENGINE_RE = re.compile(r"^8\.0\.mysql_aurora\.3\.(\d{2})\.(\d+)$")
_WAF_ACL_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:\d{12}:regional/webacl/[A-Za-z0-9_-]{1,128}/[0-9a-f-]{36}$"
)
_ACM_ARN_RE = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
# Graviton (arm64) families have a "g" after the generation digit: t4g, m7gd, c6gn, x2gd.
_GRAVITON_FAMILY_RE = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*$")
_STACK_REF_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.(nano|micro|small|medium|large|metal|\d*xlarge)$")


def parse_cidr(value: str) -> str:
    """An IPv4 or IPv6 network in CIDR form; a bare address means that one host."""
    try:
        if "/" not in value:
            return str(ipaddress.ip_network(value))  # /32 or /128
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        hint = ""
        try:
            hint = f" (did you mean {ipaddress.ip_network(value, strict=False)}?)"
        except ValueError:
            pass
        raise Problem(f"an IPv4 or IPv6 CIDR with no host bits set{hint}",
                      "203.0.113.0/24 or 2001:db8::/32") from None


def parse_country(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_COUNTRIES:
        raise Problem("ISO 3166-1 alpha-2 country codes", "US, GB, JP")
    return code


def parse_dns_name(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    if len(name) > 253 or not _DNS_NAME_RE.match(name):
        raise Problem("a DNS name of two or more labels (letters, digits, hyphens)",
                      "redcap.example.org")
    return name


def parse_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise Problem("an e-mail address", "redcap-admin@example.org")
    return value


def covers(identity: str, address: str) -> bool:
    """True when an SES identity (an address, or a domain) lets SES send as `address`."""
    identity, address = identity.lower(), address.lower()
    if "@" in identity:
        return identity == address
    host = address.rpartition("@")[2]
    return host == identity or host.endswith("." + identity)


def parse_maintenance_window(value: str) -> str:
    """`ddd:HH:mm-ddd:HH:mm` in UTC, at least 30 minutes long (AWS rejects shorter ones)."""
    allowed = "ddd:HH:mm-ddd:HH:mm (UTC, days Mon..Sun) lasting 30 minutes to 24 hours"
    example = "Sun:23:45-Mon:00:15"
    m = re.fullmatch(r"(\w{3}):(\d{2}):(\d{2})-(\w{3}):(\d{2}):(\d{2})", value.strip())
    if not m:
        raise Problem(allowed, example)
    d1, h1, m1, d2, h2, m2 = m.groups()
    if d1.lower() not in DAYS or d2.lower() not in DAYS:
        raise Problem(allowed, example)
    if not (int(h1) < 24 and int(h2) < 24 and int(m1) < 60 and int(m2) < 60):
        raise Problem(allowed, example)
    start = DAYS.index(d1.lower()) * 1440 + int(h1) * 60 + int(m1)
    end = DAYS.index(d2.lower()) * 1440 + int(h2) * 60 + int(m2)
    length = (end - start) % (7 * 1440)
    if length < 30 or length > 1440:
        raise Problem(allowed, example)
    return f"{d1.lower()}:{h1}:{m1}-{d2.lower()}:{h2}:{m2}"


def parse_log_retention(value: Any) -> int:
    allowed = f"one of {', '.join(map(str, LOG_RETENTION_DAYS))} (days) or a name like one_year"
    if isinstance(value, str) and value.strip().lower() in LOG_RETENTION_NAMES:
        return LOG_RETENTION_NAMES[value.strip().lower()]
    try:
        days = int(str(value))
    except ValueError:
        raise Problem(allowed, "365") from None
    if days not in LOG_RETENTION_DAYS:
        raise Problem(allowed, "365")
    return days


def parse_acu(value: Any) -> float:
    allowed = "0 to 256 Aurora capacity units in steps of 0.5"
    try:
        acu = float(value)
    except (TypeError, ValueError):
        raise Problem(allowed, "0.5") from None
    if not (0 <= acu <= 256) or (acu * 2) != int(acu * 2):
        raise Problem(allowed, "0.5")
    return acu


def parse_max_allowed_packet(value: Any) -> int:
    allowed = "bytes from 1024 to 1073741824, a multiple of 1024"
    try:
        n = int(str(value))
    except ValueError:
        raise Problem(allowed, "1073741824") from None
    if not (1024 <= n <= 1073741824) or n % 1024:
        raise Problem(allowed, "1073741824")
    return n


def parse_engine_version(value: str) -> str:
    if not _ENGINE_RE.match(value):
        raise Problem("an Aurora MySQL 3 engine version 8.0.mysql_aurora.3.MM.P",
                      "8.0.mysql_aurora.3.10.3")
    return value


def engine_supports_auto_pause(version: str) -> bool:
    """Scaling to 0 ACU (auto-pause) needs Aurora MySQL 3.08.0 or later."""
    m = _ENGINE_RE.match(version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (8, 0)


def parse_timezone(value: str) -> str:
    from zoneinfo import available_timezones

    if value not in available_timezones():
        raise Problem("an IANA time zone name", "America/Chicago or UTC")
    return value


def parse_s3_path(value: str) -> tuple[str, str]:
    """`bucket/key.zip` or `s3://bucket/key.zip` -> (bucket, key)."""
    path = value.strip()
    path = path[len("s3://"):] if path.startswith("s3://") else path
    bucket, _, key = path.partition("/")
    if not _BUCKET_RE.match(bucket) or not key or not key.endswith(".zip"):
        raise Problem("an S3 bucket and object key of a .zip, with or without s3://",
                      "s3://my-redcap-releases/redcap15.0.9.zip")
    return bucket, key


def version_from_zip_name(name: str) -> Optional[str]:
    """The REDCap version in a zip name such as `redcap15.0.9.zip`, else None."""
    m = _VERSION_IN_ZIP_RE.search(name)
    return m.group(1) if m else None


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise Problem("true or false", "true")


def closest_key(key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean redcap:{near[0]}?)" if near else ""


def plan_subnets(vpc_cidr: str, azs: int, tiers: tuple[str, ...], mask: int) -> dict[str, list[str]]:
    """Consecutive /mask blocks: tier by tier, AZ by AZ (the original's CDK layout).

    10.0.0.0/16, 2 AZs, (public, private, isolated), /24 ->
    public 10.0.0.0/24 10.0.1.0/24, private 10.0.2.0/24 10.0.3.0/24, isolated 10.0.4.0/24 10.0.5.0/24
    """
    network = ipaddress.ip_network(vpc_cidr)
    if mask < network.prefixlen:
        raise ValueError(f"subnet mask /{mask} is larger than the VPC {vpc_cidr}")
    blocks = network.subnets(new_prefix=mask)
    plan: dict[str, list[str]] = {}
    for tier in tiers:
        plan[tier] = []
        for _ in range(azs):
            try:
                plan[tier].append(str(next(blocks)))
            except StopIteration:
                raise ValueError(f"{vpc_cidr} has no room for {len(tiers)}x{azs} /{mask} subnets") from None
    return plan


# --------------------------------------------------------------------------------------------
# The settings model
# --------------------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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


class EcsScaling(_Model):
    min_containers: int = Field(1, alias="minContainers")
    max_containers: int = Field(2, alias="maxContainers")
    requests_per_container: int = Field(500, alias="requestsPerContainer")
    cpu_utilization: int = Field(70, alias="cpuUtilization")
    memory_utilization: int = Field(70, alias="memoryUtilization")

    @field_validator("min_containers", "max_containers", mode="before")
    @classmethod
    def _count(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 100:
            raise Problem("a whole number of tasks from 1 to 100", "2")
        return int(v)

    @field_validator("requests_per_container", mode="before")
    @classmethod
    def _requests(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 100000:
            raise Problem("1 to 100000 requests per target per minute", "500")
        return int(v)

    @field_validator("cpu_utilization", "memory_utilization", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> int:
        if not _is_int(v) or not 10 <= int(v) <= 95:
            raise Problem("a target utilisation from 10 to 95 percent", "70")
        return int(v)

    @model_validator(mode="after")
    def _bounds(self) -> "EcsScaling":
        if self.min_containers > self.max_containers:
            raise Problem("minContainers <= maxContainers", "{minContainers: 1, maxContainers: 3}")
        return self


def fargate_cpu_units(value: Any) -> int:
    """'2 vCPU', '2', '2048' -> 2048 (Fargate CPU units)."""
    allowed = "Fargate CPU: 0.25, 0.5, 1, 2, 4, 8 or 16 vCPU"
    text = str(value).strip().lower().replace("vcpu", "").strip()
    try:
        number = float(text)
    except ValueError:
        raise Problem(allowed, "2 vCPU") from None
    units = int(number * 1024) if number <= 16 else int(number)
    if units not in (256, 512, 1024, 2048, 4096, 8192, 16384):
        raise Problem(allowed, "2 vCPU")
    return units


def fargate_memory_mib(value: Any) -> int:
    """'4 GB', '4096' -> 4096 (MiB)."""
    text = str(value).strip().lower()
    try:
        if text.endswith("gb"):
            return int(float(text[:-2]) * 1024)
        return int(text)
    except ValueError:
        raise Problem("Fargate memory in GB or MiB", "4 GB") from None


def fargate_memory_choices(cpu_units: int) -> list[int]:
    """The memory sizes (MiB) Fargate accepts for a CPU size."""
    if cpu_units == 256:
        return [512, 1024, 2048]
    if cpu_units == 512:
        return [1024 * g for g in range(1, 5)]
    if cpu_units == 1024:
        return [1024 * g for g in range(2, 9)]
    if cpu_units == 2048:
        return [1024 * g for g in range(4, 17)]
    if cpu_units == 4096:
        return [1024 * g for g in range(8, 31)]
    if cpu_units == 8192:
        return [1024 * g for g in range(16, 61, 4)]
    return [1024 * g for g in range(32, 121, 8)]


class EcsSettings(_Model):
    cpu: int = 2048
    memory: int = 4096
    scaling: EcsScaling = EcsScaling()
    certificate_arn: Optional[str] = Field(None, alias="certificateArn")

    _cpu = field_validator("cpu", mode="before")(lambda v: fargate_cpu_units(v))
    _memory = field_validator("memory", mode="before")(lambda v: fargate_memory_mib(v))

    @field_validator("certificate_arn", mode="before")
    @classmethod
    def _cert(cls, v: Any) -> Optional[str]:
        if v is not None and not _ACM_ARN_RE.match(str(v)):
            raise Problem("an ACM certificate ARN in the stack's region",
                          "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666")
        return v

    @model_validator(mode="after")
    def _pair(self) -> "EcsSettings":
        choices = fargate_memory_choices(self.cpu)
        if self.memory not in choices:
            gbs = ", ".join(f"{m / 1024:g} GB" for m in choices)
            raise Problem(f"for {self.cpu / 1024:g} vCPU Fargate accepts memory {gbs}",
                          "{cpu: 2 vCPU, memory: 4 GB}")
        return self


class TunnelSettings(_Model):
    duration_hours: float = Field(3, alias="durationHours")
    instance_type: str = Field("t3.medium", alias="instanceType")

    @field_validator("duration_hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> float:
        try:
            hours = float(v)
        except (TypeError, ValueError):
            hours = 0
        if not 1 <= hours <= 72:
            raise Problem("1 to 72 hours", "3")
        return hours

    @field_validator("instance_type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> str:
        if not _INSTANCE_TYPE_RE.match(str(v)):
            raise Problem("an EC2 instance type family.size", "t3.medium")
        if _GRAVITON_FAMILY_RE.match(str(v).split(".")[0]):
            raise Problem("an x86_64 instance type (the image is linux/amd64; Graviton types such as "
                          "t4g cannot run it)", "t3.medium")
        return str(v)


class ExternalResources(_Model):
    waf_web_acl: Optional[str] = Field(None, alias="wafWebAcl")
    ses_identity: Optional[str] = Field(None, alias="sesIdentity")

    @field_validator("ses_identity", mode="before")
    @classmethod
    def _ses_identity(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        text = str(v).strip()
        try:
            return parse_email(text).lower() if "@" in text else parse_dns_name(text)
        except Problem:
            raise Problem("a verified SES identity of this account and region: an e-mail address or a domain",
                          "redcap-admin@example.org") from None

    @field_validator("waf_web_acl", mode="before")
    @classmethod
    def _arn(cls, v: Any) -> Optional[str]:
        if v is not None and not _WAF_ACL_ARN_RE.match(str(v)):
            raise Problem("a REGIONAL WAFv2 web ACL ARN",
                          "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/my-acl/"
                          "a1b2c3d4-5678-90ab-cdef-111122223333")
        return v


class DelegationRecord(_Model):
    name: str
    name_servers: Optional[tuple[str, ...]] = Field(None, alias="nameServers")
    from_stack: Optional[str] = Field(None, alias="fromStack")

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> str:
        if not _LABELS_RE.match(str(v).lower()):
            raise Problem("the record name inside the zone (one or more labels)", "redcap")
        return str(v).lower()

    @field_validator("name_servers", mode="before")
    @classmethod
    def _servers(cls, v: Any) -> Optional[tuple[str, ...]]:
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not v:
            raise Problem("a non-empty list of name servers", "[ns-1.awsdns-01.org, ns-2.awsdns-02.com]")
        return tuple(parse_dns_name(str(s)) for s in v)

    @field_validator("from_stack", mode="before")
    @classmethod
    def _stack(cls, v: Any) -> Optional[str]:
        if v is not None and not _STACK_REF_RE.match(str(v)):
            raise Problem("a fully qualified stack name org/project/stack", "acme/redcap/prod")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> "DelegationRecord":
        if (self.name_servers is None) == (self.from_stack is None):
            raise Problem("exactly one of nameServers or fromStack",
                          "{name: redcap, fromStack: acme/redcap/prod}")
        return self


class NsDelegation(_Model):
    domain: str
    records: tuple[DelegationRecord, ...]

    _domain = field_validator("domain", mode="before")(lambda v: parse_dns_name(str(v)))

    @field_validator("records", mode="before")
    @classmethod
    def _records(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not v:
            raise Problem("a non-empty list of {name, nameServers | fromStack}",
                          "[{name: redcap, fromStack: acme/redcap/prod}]")
        return v


RemovalPolicyName = Literal["destroy", "snapshot", "retain"]


class StageSettings(_Model):
    """Every `redcap:` key. Field aliases are the config key names (an interface: keep them)."""

    stack: str
    region: str
    red_cap_local_version: Optional[str] = Field(None, alias="redCapLocalVersion")
    red_cap_s3_path: Optional[str] = Field(None, alias="redCapS3Path")
    deploy_tag: Optional[str] = Field(None, alias="deployTag")
    allowed_ips: tuple[str, ...] = Field((), alias="allowedIps")
    allowed_countries: tuple[str, ...] = Field((), alias="allowedCountries")
    domain: Optional[str] = None
    subdomain: Optional[str] = None
    host_in_route53: bool | str = Field(True, alias="hostInRoute53")
    email: Optional[str] = None
    bounce_notification_email: Optional[str] = Field(None, alias="bounceNotificationEmail")
    php_timezone: str = Field("UTC", alias="phpTimezone")
    port: int = 8080
    cpu: str = "2 vCPU"
    memory: str = "4 GB"
    app_runner_concurrency: int = Field(10, alias="appRunnerConcurrency")
    app_runner_min_size: int = Field(1, alias="appRunnerMinSize")
    app_runner_max_size: int = Field(2, alias="appRunnerMaxSize")
    ecs: Optional[EcsSettings] = None
    has_cron_secret: bool = Field(False, alias="cronSecret")
    cron_minutes: int = Field(1, alias="cronMinutes")
    db: DbSettings = DbSettings()
    db_auth: Literal["iam", "password"] = Field("iam", alias="dbAuth")
    ec2_server_stack: Optional[TunnelSettings] = Field(None, alias="ec2ServerStack")
    general_log_retention: Optional[int] = Field(None, alias="generalLogRetention")
    external_resources: ExternalResources = Field(ExternalResources(), alias="externalResources")
    nat_gateways: Literal["onePerAz", "single"] = Field("onePerAz", alias="natGateways")
    removal_policy: RemovalPolicyName = Field("snapshot", alias="removalPolicy")
    deletion_protection: Optional[bool] = Field(None, alias="deletionProtection")
    image_build: Literal["codebuild", "local"] = Field("codebuild", alias="imageBuild")
    guard_duty: bool = Field(False, alias="guardDuty")
    ns_delegation: Optional[NsDelegation] = Field(None, alias="nsDelegation")
    app_bucket_versioning: bool = Field(True, alias="appBucketVersioning")
    waf_sqli_rules_to_count: tuple[str, ...] = Field((), alias="wafSqliRulesToCount")

    # --- single-value rules ------------------------------------------------------------------

    @field_validator("red_cap_local_version", mode="before")
    @classmethod
    def _local(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        if not _LOCAL_VERSION_RE.match(str(v)):
            raise Problem("redcapX.Y.Z, naming releases/redcapX.Y.Z.zip in the project folder",
                          "redcap15.0.9")
        if not (RELEASES_DIR / f"{v}.zip").is_file():
            raise Problem(f"a zip that exists: put your REDCap release at releases/{v}.zip "
                          "(or use redCapS3Path)", "redcap15.0.9")
        return str(v)

    _s3 = field_validator("red_cap_s3_path", mode="before")(
        lambda v: None if v is None else "s3://" + "/".join(parse_s3_path(str(v))))

    @field_validator("deploy_tag", mode="before")
    @classmethod
    def _tag(cls, v: Any) -> Optional[str]:
        if v is not None and not _DOCKER_TAG_RE.match(str(v)):
            raise Problem("a Docker tag: letters, digits, _ . - up to 128 characters", "15.0.9-hotfix1")
        return v

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _ips(cls, v: Any) -> tuple[str, ...]:
        return tuple(parse_cidr(str(x)) for x in _as_list(v, "[203.0.113.0/24, 2001:db8::/32]"))

    @field_validator("allowed_countries", mode="before")
    @classmethod
    def _countries(cls, v: Any) -> tuple[str, ...]:
        return tuple(parse_country(str(x)) for x in _as_list(v, "[US, CA]"))

    _domain = field_validator("domain", mode="before")(
        lambda v: None if v in (None, "") else parse_dns_name(str(v)))

    @field_validator("subdomain", mode="before")
    @classmethod
    def _subdomain(cls, v: Any) -> Optional[str]:
        if v in (None, ""):
            return None
        if not _LABELS_RE.match(str(v).lower()):
            raise Problem("one or more DNS labels placed before domain", "redcap")
        return str(v).lower()

    @field_validator("host_in_route53", mode="before")
    @classmethod
    def _route53(cls, v: Any) -> bool | str:
        if isinstance(v, bool) or str(v).lower() in ("true", "false"):
            return parse_bool(v)
        try:
            return parse_dns_name(str(v))
        except Problem:
            raise Problem("true (create a zone), false (no Route53) or the name of an existing "
                          "hosted zone", "example.org") from None

    _email = field_validator("email", "bounce_notification_email", mode="before")(
        lambda v: None if v is None else parse_email(str(v)))
    _tz = field_validator("php_timezone", mode="before")(lambda v: parse_timezone(str(v)))

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> int:
        if not _is_int(v) or not 1025 <= int(v) <= 65535:
            raise Problem("1025 to 65535 (Apache runs as www-data, so no privileged ports)", "8080")
        return int(v)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> str:
        text = _normalise_size(str(v), "vcpu", "vCPU")
        if text not in APPRUNNER_SIZES:
            raise Problem("App Runner cpu " + ", ".join(APPRUNNER_SIZES), "2 vCPU")
        return text

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str:
        text = _normalise_size(str(v), "gb", "GB")
        if not any(text in mems for mems in APPRUNNER_SIZES.values()):
            raise Problem("App Runner memory 0.5, 1, 2, 3, 4, 6, 8, 10 or 12 GB", "4 GB")
        return text

    @field_validator("app_runner_concurrency", mode="before")
    @classmethod
    def _concurrency(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 200:
            raise Problem("1 to 200 concurrent requests per instance", "10")
        return int(v)

    @field_validator("app_runner_min_size", "app_runner_max_size", mode="before")
    @classmethod
    def _sizes(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 25:
            raise Problem("1 to 25 instances", "2")
        return int(v)

    @field_validator("cron_minutes", mode="before")
    @classmethod
    def _cron(cls, v: Any) -> int:
        if not _is_int(v) or not 0 <= int(v) <= 1440:
            raise Problem("0 (no schedule) to 1440 minutes", "1")
        return int(v)

    @field_validator("db_auth", mode="before")
    @classmethod
    def _auth(cls, v: Any) -> str:
        if v not in ("iam", "password"):
            raise Problem("iam or password", "iam")
        return v

    _retention = field_validator("general_log_retention", mode="before")(
        lambda v: None if v is None else parse_log_retention(v))

    @field_validator("nat_gateways", mode="before")
    @classmethod
    def _nat(cls, v: Any) -> str:
        if v not in ("onePerAz", "single"):
            raise Problem("onePerAz or single", "single")
        return v

    @field_validator("removal_policy", mode="before")
    @classmethod
    def _removal(cls, v: Any) -> str:
        if v not in ("destroy", "snapshot", "retain"):
            raise Problem("destroy, snapshot or retain", "snapshot")
        return v

    @field_validator("image_build", mode="before")
    @classmethod
    def _build(cls, v: Any) -> str:
        if v not in ("codebuild", "local"):
            raise Problem("codebuild or local", "codebuild")
        return v

    _bools = field_validator("deletion_protection", "guard_duty", "has_cron_secret",
                             "app_bucket_versioning", mode="before")(
        lambda v: None if v is None else parse_bool(v))

    @field_validator("waf_sqli_rules_to_count", mode="before")
    @classmethod
    def _sqli(cls, v: Any) -> tuple[str, ...]:
        names = tuple(str(x) for x in _as_list(v, "[SQLi_BODY]"))
        for name in names:
            if name not in SQLI_RULE_NAMES:
                raise Problem("rule names of AWSManagedRulesSQLiRuleSet: " + ", ".join(SQLI_RULE_NAMES),
                              "[SQLi_BODY]")
        return tuple(sorted(set(names)))

    # --- rules across keys -------------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_rules(self) -> "StageSettings":
        problems: list[tuple[str, Any, Problem]] = []
        if self.ns_delegation is not None:
            # A delegation stack writes NS records only; anything else would be silently unused.
            return self
        if (self.red_cap_local_version is None) == (self.red_cap_s3_path is None):
            both = self.red_cap_local_version is not None
            problems.append(("redCapLocalVersion/redCapS3Path",
                             "both set" if both else "neither set",
                             Problem("exactly one REDCap source: redCapLocalVersion (releases/<v>.zip) "
                                     "or redCapS3Path", "redCapS3Path: my-redcap-releases/redcap15.0.9.zip")))
        elif self.deploy_tag is None and self.redcap_version is None:
            problems.append(("redCapS3Path", self.red_cap_s3_path,
                             Problem("a zip named redcapX.Y.Z.zip so the version (image tag) can be read, "
                                     "or set redcap:deployTag", "s3://my-redcap-releases/redcap15.0.9.zip")))
        if self.memory not in APPRUNNER_SIZES[self.cpu]:
            problems.append(("memory", self.memory,
                             Problem(f"for cpu {self.cpu}: " + ", ".join(APPRUNNER_SIZES[self.cpu]),
                                     "cpu: 2 vCPU, memory: 4 GB")))
        if self.app_runner_min_size > self.app_runner_max_size:
            problems.append(("appRunnerMinSize", self.app_runner_min_size,
                             Problem("appRunnerMinSize <= appRunnerMaxSize", "appRunnerMinSize: 1")))
        if self.subdomain and not self.domain:
            problems.append(("subdomain", self.subdomain,
                             Problem("a subdomain only together with redcap:domain", "domain: example.org")))
        if isinstance(self.host_in_route53, str) and self.domain and not (
                self.domain == self.host_in_route53 or self.domain.endswith("." + self.host_in_route53)):
            problems.append(("hostInRoute53", self.host_in_route53,
                             Problem(f"an existing zone that contains domain {self.domain}",
                                     f"hostInRoute53: {self.domain}")))
        if self.ecs is not None and not self.has_zone and self.ecs.certificate_arn is None:
            problems.append(("ecs", "no Route53 zone and no ecs.certificateArn",
                             Problem("ECS serves HTTPS only, so it needs redcap:domain with hostInRoute53 "
                                     "true or a zone name, or ecs.certificateArn",
                                     "domain: redcap.example.org, hostInRoute53: true")))
        if self.ecs is not None and self.ecs.certificate_arn and not self.domain:
            problems.append(("ecs.certificateArn", self.ecs.certificate_arn,
                             Problem("a certificate together with redcap:domain (the name it is for)",
                                     "domain: redcap.example.org")))
        if not self.has_zone and self.email is None:
            problems.append(("email", None,
                             Problem("an SES identity: redcap:email, or redcap:domain with a Route53 zone",
                                     "email: redcap-admin@example.org")))
        if self.bounce_notification_email and not self.has_zone:
            problems.append(("bounceNotificationEmail", self.bounce_notification_email,
                             Problem("bounce and complaint events of the stage's own domain identity, so "
                                     "redcap:domain with a Route53 zone (an address identity is shared by the "
                                     "stages and carries no configuration set; SES returns its bounces to "
                                     "redcap:email itself)", "domain: redcap.example.org, hostInRoute53: true")))
        shared = self.external_resources.ses_identity
        if shared and not (self.email and covers(shared, self.email)):
            problems.append(("externalResources.sesIdentity", shared,
                             Problem(f"an identity that covers redcap:email ({self.email or 'not set'}): that "
                                     "address or its domain", "sesIdentity: redcap-admin@example.org")))
        if self.external_resources.waf_web_acl and (self.allowed_ips or self.allowed_countries):
            problems.append(("allowedIps/allowedCountries", "set with externalResources.wafWebAcl",
                             Problem("no allow-lists when an external web ACL is used (they would be "
                                     "ignored); put them in that ACL", "allowedIps: []")))
        if problems:
            raise _CrossProblems(problems)
        return self

    # --- derived values ----------------------------------------------------------------------

    @property
    def redcap_version(self) -> Optional[str]:
        if self.red_cap_local_version:
            return self.red_cap_local_version.removeprefix("redcap")
        if self.red_cap_s3_path:
            return version_from_zip_name(self.red_cap_s3_path)
        return None

    @property
    def image_tag_prefix(self) -> str:
        """The readable part of the image tag; the build adds the content hash."""
        return self.deploy_tag or str(self.redcap_version)

    @property
    def fqdn(self) -> Optional[str]:
        if not self.domain:
            return None
        return f"{self.subdomain}.{self.domain}" if self.subdomain else self.domain

    @property
    def has_zone(self) -> bool:
        return bool(self.domain) and self.host_in_route53 is not False

    @property
    def protect_data(self) -> bool:
        """RDS deletion protection and Pulumi `protect` on the data resources."""
        if self.deletion_protection is not None:
            return self.deletion_protection
        return self.removal_policy != "destroy"

    @property
    def keep_data_on_destroy(self) -> bool:
        """snapshot/retain keep the key, buckets and salt so the final snapshot stays usable."""
        return self.removal_policy != "destroy"

    @property
    def uses_ecs(self) -> bool:
        return self.ecs is not None

    def log_retention(self, default_days: int) -> int:
        return self.general_log_retention or default_days


class _CrossProblems(ValueError):
    def __init__(self, problems: list[tuple[str, Any, Problem]]):
        super().__init__("; ".join(f"{k}: {p}" for k, _, p in problems))
        self.problems = problems


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()) is not None


def _as_list(v: Any, example: str) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    raise Problem("a list", example)


def _normalise_size(text: str, unit_lower: str, unit: str) -> str:
    number = text.strip().lower().replace(unit_lower, "").strip()
    try:
        value = float(number)
    except ValueError:
        return text
    return f"{value:g} {unit}"


# --------------------------------------------------------------------------------------------
# What each key means (docs/settings.md is generated from the models and this table)
# --------------------------------------------------------------------------------------------

DESCRIPTIONS: dict[str, str] = {
    "redCapLocalVersion": "Use `releases/<value>.zip` from the project folder (e.g. `redcap15.0.9`).",
    "redCapS3Path": "Use a REDCap zip already in S3: `bucket/key.zip` or `s3://bucket/key.zip`. Exactly one of the two sources.",
    "deployTag": "Readable part of the image tag instead of the version read from the zip name.",
    "allowedIps": "WAF allow-list: IPv4 and IPv6 CIDRs (a bare address means one host). Empty: everyone.",
    "allowedCountries": "WAF geo allow-list: ISO 3166-1 alpha-2 codes. Empty: every country.",
    "domain": "Domain of the site; FQDN = `subdomain.domain`, or `domain` alone.",
    "subdomain": "Label(s) placed before `domain`.",
    "hostInRoute53": "`true`: create a hosted zone for the FQDN; a zone name: use that existing zone; `false`: no Route53 (docs/domains.md).",
    "email": "Operator address: notifications, SES identity when there is no zone, sender address.",
    "bounceNotificationEmail": "Receives SES bounce and complaint notifications of the domain identity (needs a Route53 zone).",
    "phpTimezone": "PHP `date.timezone` (IANA name).",
    "port": "Container HTTP port (Apache runs as www-data, so above 1024).",
    "cpu": "App Runner instance CPU (`0.25 vCPU` to `4 vCPU`).",
    "memory": "App Runner instance memory; must pair with `cpu`.",
    "appRunnerConcurrency": "App Runner concurrent requests per instance before scaling out.",
    "appRunnerMinSize": "App Runner minimum instances.",
    "appRunnerMaxSize": "App Runner maximum instances.",
    "ecs": "Present: run on ECS Fargate behind an HTTPS load balancer instead of App Runner.",
    "ecs.cpu": "Fargate task CPU (`0.25 vCPU` to `16 vCPU`, or CPU units).",
    "ecs.memory": "Fargate task memory (`4 GB` or MiB); must pair with `ecs.cpu`.",
    "ecs.certificateArn": "An existing ACM certificate for the FQDN (instead of one validated in a Route53 zone).",
    "ecs.scaling": "Target-tracking autoscaling of the ECS service.",
    "ecs.scaling.minContainers": "Minimum tasks.",
    "ecs.scaling.maxContainers": "Maximum tasks.",
    "ecs.scaling.requestsPerContainer": "Target requests per task per minute (ALB request count).",
    "ecs.scaling.cpuUtilization": "Target average CPU percent.",
    "ecs.scaling.memoryUtilization": "Target average memory percent.",
    "cronSecret": "Secret for the cron.php HMAC (`pulumi config set --secret`). Unset: generated once and kept in state.",
    "cronMinutes": "Minutes between cron.php calls; 0 = no schedule (lets a 0-ACU database pause).",
    "db": "Aurora Serverless v2 settings.",
    "db.engineVersion": "Aurora MySQL 3 version (the minimum; AWS applies minor upgrades). Must be >= a snapshot's version when restoring.",
    "db.dbReaders": "Reader instances (0 to 15); REDCap's read-replica mode is on only with readers.",
    "db.dbSnapshotId": "Restore from this cluster snapshot (creates a new cluster: docs/restore.md).",
    "db.maxAllowedPacket": "Cluster parameter `max_allowed_packet` in bytes.",
    "db.preferredMaintenanceWindow": "`ddd:HH:mm-ddd:HH:mm` UTC, 30 minutes to 24 hours. Unset: AWS picks.",
    "db.scaling": "Serverless v2 capacity range.",
    "db.scaling.minCapacityAcu": "Minimum ACUs (0 = pause when idle; needs Aurora MySQL 3.08.0 or later).",
    "db.scaling.maxCapacityAcu": "Maximum ACUs (at least 1).",
    "db.backtrackHours": "Backtrack window in hours (0 to 72; can only be enabled when the cluster is created).",
    "db.backupRetentionDays": "Automated backup retention in days (1 to 35).",
    "dbAuth": "How REDCap logs in to the database: `iam` (token per connection) or `password`.",
    "ec2ServerStack": "Present: a temporary tunnel host reached through SSM port forwarding (docs/tunnel.md).",
    "ec2ServerStack.durationHours": "Hours before the host shuts itself down and terminates (1 to 72).",
    "ec2ServerStack.instanceType": "EC2 instance type.",
    "generalLogRetention": "Retention of every log group, in days or a name like `one_year`. Unset: per resource.",
    "externalResources": "Resources managed elsewhere.",
    "externalResources.wafWebAcl": "Associate this regional WAFv2 web ACL instead of creating one.",
    "externalResources.sesIdentity": "Send with this existing SES identity (redcap:email or its domain, made by "
                                     "another stage or by hand) instead of creating one (docs/email.md).",
    "natGateways": "`onePerAz` (resilient) or `single` (cheaper).",
    "removalPolicy": "What `pulumi destroy` leaves: `destroy` nothing, `snapshot` a final DB snapshot plus key, buckets and salt, `retain` the cluster too (docs/destroy.md).",
    "deletionProtection": "RDS deletion protection and Pulumi `protect` on the data. Unset: true unless removalPolicy is destroy.",
    "imageBuild": "Where the image is built: `codebuild` (in AWS) or `local` (Docker on this machine).",
    "guardDuty": "Enable a GuardDuty detector (one per account and region).",
    "nsDelegation": "Present: this stack only writes NS delegation records (docs/domains.md).",
    "nsDelegation.domain": "The existing hosted zone that receives the NS records.",
    "nsDelegation.records": "`[{name, nameServers: [...]}]` or `[{name, fromStack: org/project/stack}]`.",
    "appBucketVersioning": "Keep earlier versions of REDCap's files in the bucket.",
    "wafSqliRulesToCount": "Rules of AWSManagedRulesSQLiRuleSet to only count (e.g. `SQLi_BODY`, which REDCap calculated fields trigger).",
}


# --------------------------------------------------------------------------------------------
# Reading the config
# --------------------------------------------------------------------------------------------

KNOWN_KEYS: tuple[str, ...] = tuple(
    f.alias or name for name, f in StageSettings.model_fields.items() if name not in ("stack", "region")
)
STRUCTURED_KEYS = frozenset({"allowedIps", "allowedCountries", "ecs", "db", "ec2ServerStack",
                             "externalResources", "nsDelegation", "wafSqliRulesToCount"})
SECRET_KEYS = frozenset({"cronSecret"})


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
    "allowedIps": "pulumi config set --path 'redcap:allowedIps[0]' 203.0.113.0/24",
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


def load_settings(raw_config: Mapping[str, str], *, stack: str, region: Optional[str]) -> StageSettings:
    """Validate the flat `redcap:*` config of one stack. Raises SettingsError listing every problem.

    `raw_config` maps full keys (`redcap:db`) to the string values Pulumi hands the program.
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
            # Only its presence matters here; the value stays a secret Output (see read_secrets).
            values[key] = True
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
    "ecs": {"ecs", "domain", "hostInRoute53"},
    "ecs.certificateArn": {"ecs", "domain"},
    "email": {"email", "domain", "hostInRoute53"},
    "allowedIps/allowedCountries": {"allowedIps", "allowedCountries", "externalResources"},
    "externalResources.sesIdentity": {"externalResources", "email"},
    "bounceNotificationEmail": {"bounceNotificationEmail", "domain", "hostInRoute53"},
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
    return "see docs/settings.md"


# --------------------------------------------------------------------------------------------
# Entry point used by __main__.py
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Secrets:
    """Secret settings, kept as Outputs so they stay masked in state and logs."""

    cron_secret: Any  # Optional[pulumi.Output[str]]


def from_pulumi() -> tuple[StageSettings, Secrets]:
    """Read every `redcap:*` key of the current stack once."""
    import pulumi
    import pulumi_aws as aws
    from pulumi.runtime import config as runtime_config

    # The language host puts the stack's config in CONFIG; PULUMI_CONFIG is the older channel.
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {k: v for k, v in merged.items() if k.startswith(f"{NAMESPACE}:")}
    settings = load_settings(raw, stack=pulumi.get_stack(), region=aws.config.region)
    config = pulumi.Config(NAMESPACE)
    cron_secret = config.get_secret("cronSecret") if settings.has_cron_secret else None
    return settings, Secrets(cron_secret=cron_secret)
