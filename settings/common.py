"""Shared pieces of the stage settings: the error types, pure validators and planners (tests call
these directly), and the base model every settings block derives from."""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

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
# CLOUDFRONT-scope web ACLs (the Express runtime's distribution) are "global" and live in us-east-1.
_WAF_GLOBAL_ACL_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:wafv2:us-east-1:\d{12}:global/webacl/[A-Za-z0-9_-]{1,128}/[0-9a-f-]{36}$"
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


def engine_version_order(version: str) -> tuple[int, int]:
    """(minor, patch) of an Aurora MySQL 3 version, for comparing two of them."""
    m = _ENGINE_RE.match(version)
    if not m:
        raise ValueError(f"not an Aurora MySQL 3 engine version: {version!r}")
    return int(m.group(1)), int(m.group(2))


def parse_db_salt(value: str) -> str:
    """A salt carried over from an earlier stage (the original's are 32 characters)."""
    if not 16 <= len(value) <= 1024 or value != value.strip() or "\n" in value:
        raise Problem("16 to 1024 characters without leading or trailing white space (the old stage's "
                      "salt, exactly as its secret holds it)",
                      "pulumi config set --secret redcap:dbSalt \"$OLD_SALT\"")
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
