"""Operations settings: the `operations` block (alarms and where they go, dashboard, uptime and
post-deploy checks, idle schedule, budget).

The alarm catalogue lives here as plain data (ids, periods, defaults, units) because both the
settings rules (which ids exist, which durations fit a period) and the Operations component
read it; docs/operations.md documents every entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import DAYS, Problem, _Model, _as_list, _is_int, parse_bool, parse_email, parse_timezone


@dataclass(frozen=True)
class AlarmKind:
    """One alarm of the catalogue. `default_threshold` None: derived from the stage's settings
    (maxCapacityAcu, the minimum number of tasks or instances)."""

    id: str
    period_seconds: int
    default_minutes: int
    default_threshold: Optional[float]
    unit: str
    lowest: float
    highest: float


# In the order docs/operations.md lists them.
ALARMS: tuple[AlarmKind, ...] = (
    AlarmKind("siteErrorRate", 300, 10, 5, "percent of requests answered 5xx", 0.1, 100),
    AlarmKind("siteLatency", 300, 15, 10, "seconds (p99 response time)", 0.1, 4000),
    AlarmKind("unhealthyTargets", 60, 5, 0, "unhealthy targets (more than)", 0, 100),
    AlarmKind("tasksBelowMinimum", 60, 5, None, "running tasks or instances (fewer than)", 1, 100),
    AlarmKind("uptime", 60, 10, 1, "failed check (every check in the window failed)", 1, 1),
    AlarmKind("cronFailures", 300, 10, 1, "failed EventBridge invocations (at least)", 1, 10000),
    AlarmKind("cronStopped", 300, 15, 1, "EventBridge invocations in the window (fewer than)", 1, 10000),
    AlarmKind("cronErrors", 300, 10, 1, "cron.php answers 4xx/5xx in the container log (at least)", 1, 10000),
    AlarmKind("dbCapacityAtMax", 300, 30, None, "ACUs (at least; default the configured maximum)", 0.5, 256),
    AlarmKind("dbConnections", 300, 10, 80, "percent of the estimated max_connections", 1, 100),
    AlarmKind("dbReplicaLag", 60, 10, 2000, "milliseconds of reader lag", 1, 3600000),
    AlarmKind("wafBlockedSpike", 300, 5, 500, "blocked requests per 5 minutes (more than)", 1, 10000000),
    AlarmKind("sesBounceRate", 3600, 60, 5, "percent bounce rate (AWS warns at 5)", 0.1, 100),
    AlarmKind("sesComplaintRate", 3600, 60, 0.1, "percent complaint rate (AWS warns at 0.1)", 0.01, 100),
    AlarmKind("imageBuildFailed", 300, 5, 1, "failed CodeBuild builds (at least)", 1, 1000),
    AlarmKind("buildTriggerErrors", 300, 5, 1, "build-trigger Lambda errors (at least)", 1, 1000),
    AlarmKind("certificateExpiry", 86400, 1440, 30, "days to expiry (fewer than)", 1, 365),
)
ALARM_IDS: tuple[str, ...] = tuple(a.id for a in ALARMS)
ALARM_BY_ID: dict[str, AlarmKind] = {a.id: a for a in ALARMS}
# CloudWatch evaluates at most one day of periods for periods of a minute or more.
MAX_ALARM_MINUTES = 1440

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DEFAULT_WORKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")


def parse_clock(value: Any) -> str:
    """`HH:MM` on a 24-hour clock."""
    text = str(value).strip()
    if not _TIME_RE.match(text):
        raise Problem("a time of day HH:MM (24-hour clock)", "07:30")
    return text


def clock_minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class AlarmTuning(_Model):
    enabled: bool = True
    threshold: Optional[float] = None
    minutes: Optional[int] = None

    _enabled = field_validator("enabled", mode="before")(lambda v: parse_bool(v))

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Optional[float]:
        if v is None:
            return None
        if isinstance(v, bool):
            raise Problem("a number", "10")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise Problem("a number", "10") from None

    @field_validator("minutes", mode="before")
    @classmethod
    def _minutes(cls, v: Any) -> Optional[int]:
        if v is None:
            return None
        if not _is_int(v) or not 1 <= int(v) <= MAX_ALARM_MINUTES:
            raise Problem(f"a whole number of minutes from 1 to {MAX_ALARM_MINUTES}", "15")
        return int(v)


def parse_alarms(value: Any) -> dict[str, AlarmTuning]:
    """`{<alarm id>: {enabled, threshold, minutes}}`: ids from the catalogue, thresholds in each
    alarm's range, minutes a multiple of its period."""
    example = "{siteLatency: {threshold: 20}, wafBlockedSpike: {enabled: false}}"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem("an object keyed by alarm id (docs/operations.md)", example)
    out: dict[str, AlarmTuning] = {}
    for alarm_id in sorted(value):
        kind = ALARM_BY_ID.get(alarm_id)
        if kind is None:
            raise Problem(f"alarm ids {', '.join(ALARM_IDS)} (unknown: {alarm_id})", example)
        tuning = value[alarm_id]
        if isinstance(tuning, AlarmTuning):
            out[alarm_id] = tuning
            continue
        if not isinstance(tuning, dict):
            raise Problem(f"for {alarm_id} an object {{enabled, threshold, minutes}}",
                          f"{{{alarm_id}: {{enabled: false}}}}")
        unknown = sorted(set(tuning) - {"enabled", "threshold", "minutes"})
        if unknown:
            raise Problem(f"for {alarm_id} the keys enabled, threshold, minutes (unknown: {', '.join(unknown)})",
                          f"{{{alarm_id}: {{threshold: {kind.default_threshold or 1:g}}}}}")
        try:
            parsed = AlarmTuning.model_validate(tuning)
        except ValueError as exc:
            inner = _first_problem(exc)
            raise Problem(f"for {alarm_id}.{inner[0]} {inner[1].allowed}", inner[1].example) from None
        if parsed.threshold is not None and not kind.lowest <= parsed.threshold <= kind.highest:
            raise Problem(f"for {alarm_id}.threshold {kind.lowest:g} to {kind.highest:g} ({kind.unit})",
                          f"{{{alarm_id}: {{threshold: {kind.default_threshold or kind.lowest:g}}}}}")
        period_minutes = kind.period_seconds // 60
        if parsed.minutes is not None and parsed.minutes % period_minutes:
            raise Problem(f"for {alarm_id}.minutes a multiple of its {period_minutes}-minute period",
                          f"{{{alarm_id}: {{minutes: {kind.default_minutes}}}}}")
        out[alarm_id] = parsed
    return out


def _first_problem(exc: ValueError) -> tuple[str, Problem]:
    errors = getattr(exc, "errors", lambda: [])()
    for error in errors:
        found = (error.get("ctx") or {}).get("error")
        if isinstance(found, Problem):
            return ".".join(str(p) for p in error["loc"]) or "value", found
    return "value", Problem("enabled (true/false), threshold (a number), minutes (a whole number)", "{enabled: false}")


class IdleSchedule(_Model):
    timezone: str
    workdays: tuple[str, ...] = DEFAULT_WORKDAYS
    start: str = "07:00"
    end: str = "19:00"

    _tz = field_validator("timezone", mode="before")(lambda v: parse_timezone(str(v)))
    _clock = field_validator("start", "end", mode="before")(lambda v: parse_clock(v))

    @field_validator("workdays", mode="before")
    @classmethod
    def _days(cls, v: Any) -> tuple[str, ...]:
        days = [str(d).strip().lower()[:3] for d in _as_list(v, "[mon, tue, wed, thu, fri]")]
        if not days or any(d not in DAYS for d in days):
            raise Problem("a non-empty list of days mon, tue, wed, thu, fri, sat, sun", "[mon, tue, wed, thu, fri]")
        return tuple(d for d in DAYS if d in days)

    @model_validator(mode="after")
    def _order(self) -> "IdleSchedule":
        if clock_minutes(self.end) - clock_minutes(self.start) < 60:
            raise Problem("start before end on the same day, at least an hour apart (the app tier is up "
                          "from start to end on each workday)", "{start: '07:00', end: '19:00'}")
        return self

    @property
    def awake_minutes_per_week(self) -> int:
        return len(self.workdays) * (clock_minutes(self.end) - clock_minutes(self.start))


class OperationsSettings(_Model):
    alarm_email: Optional[str] = Field(None, alias="alarmEmail")
    alarms: dict[str, AlarmTuning] = Field({})
    dashboard: bool = True
    uptime_minutes: int = Field(5, alias="uptimeMinutes")
    smoke_check: bool = Field(True, alias="smokeCheck")
    idle_schedule: Optional[IdleSchedule] = Field(None, alias="idleSchedule")
    monthly_budget_usd: Optional[float] = Field(None, alias="monthlyBudgetUsd")

    _email = field_validator("alarm_email", mode="before")(lambda v: None if v is None else parse_email(str(v)))
    _alarms = field_validator("alarms", mode="before")(lambda v: parse_alarms(v))
    _bools = field_validator("dashboard", "smoke_check", mode="before")(lambda v: parse_bool(v))

    @field_validator("uptime_minutes", mode="before")
    @classmethod
    def _uptime(cls, v: Any) -> int:
        # No "off": every public entry has an uptime check (the policy pack requires it).
        if not _is_int(v) or not 1 <= int(v) <= 60:
            raise Problem("1 to 60 minutes between uptime checks (every public entry has one)", "5")
        return int(v)

    @model_validator(mode="after")
    def _uptime_alarm_stays(self) -> "OperationsSettings":
        if not self.alarm("uptime").enabled:
            raise Problem("the uptime alarm on (every public entry has an uptime check with an alarm, which the "
                          "policy pack requires); tune alarms.uptime.minutes, or uptimeMinutes, instead",
                          "{alarms: {uptime: {minutes: 30}}}")
        return self

    @field_validator("monthly_budget_usd", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> Optional[float]:
        if v is None:
            return None
        try:
            amount = float(v) if not isinstance(v, bool) else -1.0
        except (TypeError, ValueError):
            amount = -1.0
        if not 1 <= amount <= 1_000_000:
            raise Problem("US dollars per month from 1 to 1000000", "300")
        return round(amount, 2)

    def alarm(self, alarm_id: str) -> AlarmTuning:
        """The tuning of one alarm (defaults when the stage says nothing about it)."""
        if alarm_id not in ALARM_BY_ID:
            raise KeyError(alarm_id)
        return self.alarms.get(alarm_id, AlarmTuning())


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "operations": "Alarms, dashboard, uptime and post-deploy checks, idle schedule and budget (docs/operations.md). On by default.",
    "operations.alarmEmail": "Where alarms and budget alerts go. Unset: `redcap:email`; neither: the alarm topic has no subscriber (subscribe by hand, docs/operations.md).",
    "operations.alarms": "Per-alarm tuning by alarm id: `{enabled, threshold, minutes}` (the ids, units and defaults are in docs/operations.md).",
    "operations.dashboard": "A CloudWatch dashboard for the stage (`dashboardUrl` output).",
    "operations.uptimeMinutes": "Minutes between uptime checks of the public entry from outside the VPC (1 to 60).",
    "operations.smokeCheck": "Check the site through its public entry at the end of a `pulumi up` that changed the image or runtime settings; a failure fails the update.",
    "operations.idleSchedule": "Present: the app tier runs only on workdays from start to end and is scaled to zero outside them (not on stages with deletion protection).",
    "operations.idleSchedule.timezone": "IANA time zone of start and end.",
    "operations.idleSchedule.workdays": "Days the app tier runs (`mon` to `sun`).",
    "operations.idleSchedule.start": "When the app tier starts, `HH:MM`.",
    "operations.idleSchedule.end": "When the app tier is scaled to zero, `HH:MM` (at least an hour after start).",
    "operations.monthlyBudgetUsd": "An AWS Budget of this many USD per month with forecast and actual alerts to the alarm address.",
}
