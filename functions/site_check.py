"""Checks REDCap through its public entry from outside the VPC, as users and cron reach it.

One handler, two modes (event {"mode": ...}):

- "uptime" (EventBridge Scheduler, every `uptimeMinutes`): GET /healthz through the public
  entry and the WAF, then CloudWatch metrics in the stage's namespace: UptimeCheckFailed (0/1)
  and UptimeLatency (ms). With an idle schedule it also publishes AppTierExpected (1 when the
  app tier should be up, 0 while it is scaled to zero on purpose) for every minute until the
  next check; the app tier's alarms read it and stay quiet while it is 0. Outside working hours
  no request is made at all.
- "smoke" (aws.lambda_.Invocation, at the end of a `pulumi up` that changed the image or the
  runtime settings): once /healthz answers (it waits up to `waitSeconds`, default 600, for new
  tasks to come up), /healthz and the REDCap page answer 200, cron.php is refused (403)
  without the cron header and answers 200 with it. Any failure raises, so the update fails with
  a message naming every check that failed; the result (no secret in it) is a stack output.

Every request carries the cron header (the value the WAF's rules require), read from Secrets
Manager at run time: the WAF lets these requests through its IP and country allow-lists
without opening them for anybody else. The value never appears in a result, a message or a
log line, and never in a URL.

Environment: SITE_URL (https://<host>), CHECK_SECRET_ARN, CHECK_HEADER, METRIC_NAMESPACE;
the smoke event may name its own siteUrl and connectHost; optional CONNECT_HOST (connect there, with TLS name and Host header still the site's: the
runtime's own entry, independent of DNS), IDLE_SCHEDULE (JSON {timezone, workdays, start, end,
graceMinutes}), UPTIME_MINUTES, REQUEST_TIMEOUT_SECONDS. Standard library and boto3 only.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import socket
import ssl
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HEALTH_PATH = "/healthz"
CRON_PATH = "/cron.php"
REFUSED_STATUS = 403  # what the WAF's cron rule answers without the secret
DEFAULT_TIMEOUT_SECONDS = 10.0
# How long a smoke check waits for /healthz before judging (the function's timeout is 15 minutes).
DEFAULT_WAIT_SECONDS = 600
USER_AGENT = "redcap-site-check/1"


class SmokeCheckFailed(RuntimeError):
    """One or more smoke checks failed; the message names each of them."""


class ConfigurationError(RuntimeError):
    """The function's environment is incomplete (a deployment problem, not a site problem)."""


# --------------------------------------------------------------------------------------------
# The idle schedule (pure)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    timezone: str
    workdays: tuple[str, ...]
    start: str
    end: str
    grace_minutes: int = 0

    @staticmethod
    def from_json(text: str) -> "Schedule":
        data = json.loads(text)
        return Schedule(timezone=data["timezone"], workdays=tuple(data["workdays"]), start=data["start"],
                        end=data["end"], grace_minutes=int(data.get("graceMinutes", 0)))


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def app_tier_expected(schedule: Optional[Schedule], now: dt.datetime) -> bool:
    """Whether the app tier should be serving at `now` (aware): always without a schedule;
    with one, on a workday from start + grace (time to come up) until end, in its time zone."""
    if schedule is None:
        return True
    local = now.astimezone(ZoneInfo(schedule.timezone))
    if DAYS[local.weekday()] not in schedule.workdays:
        return False
    minute = local.hour * 60 + local.minute
    return _minutes(schedule.start) + schedule.grace_minutes <= minute < _minutes(schedule.end)


# --------------------------------------------------------------------------------------------
# HTTP (standard library; no redirects followed, so a redirect is seen as what it is)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    connect_host: str

    @staticmethod
    def parse(site_url: str, connect_host: Optional[str] = None) -> "Target":
        parts = urllib.parse.urlsplit(site_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(f"SITE_URL must be an http(s) URL with a host, not {site_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Target(parts.scheme, parts.hostname, port, connect_host or parts.hostname)

    @property
    def base(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")


class _TlsToOtherHost(http.client.HTTPSConnection):
    """HTTPS to `connect_host`, with SNI and certificate check for the site's own name."""

    def __init__(self, connect_host: str, port: int, server_name: str, timeout: float):
        super().__init__(connect_host, port, timeout=timeout, context=ssl.create_default_context())
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


@dataclass(frozen=True)
class Outcome:
    name: str
    method: str
    path: str
    expected: int
    status: Optional[int]
    ok: bool
    ms: int
    detail: str = ""


def request(target: Target, path: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    if target.scheme == "https":
        conn: http.client.HTTPConnection = _TlsToOtherHost(target.connect_host, target.port, target.host, timeout)
    else:
        conn = http.client.HTTPConnection(target.connect_host, target.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": target.host if target.port in (80, 443)
                                           else f"{target.host}:{target.port}",
                                           "User-Agent": USER_AGENT, **headers})
        response = conn.getresponse()
        return response.status, response.read(65536)
    finally:
        conn.close()


def check(name: str, target: Target, path: str, expected: int, headers: dict[str, str], timeout: float,
          body_check: Optional[Callable[[bytes], bool]] = None) -> Outcome:
    """One GET; never raises for what the site does, and never puts a header value in a detail."""
    started = time.monotonic()
    try:
        status, body = request(target, path, headers, timeout)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        ms = int((time.monotonic() - started) * 1000)
        where = f"{target.connect_host}:{target.port}"
        return Outcome(name, "GET", path, expected, None, False, ms,
                       f"no answer from {where}: {type(exc).__name__}: {exc}".rstrip(": "))
    ms = int((time.monotonic() - started) * 1000)
    if status != expected:
        return Outcome(name, "GET", path, expected, status, False, ms, f"answered {status}, expected {expected}")
    if body_check is not None and not body_check(body):
        return Outcome(name, "GET", path, expected, status, False, ms, "answered with an unexpected body")
    return Outcome(name, "GET", path, expected, status, True, ms)


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    target: Target
    header: str
    secret_arn: str
    namespace: str
    schedule: Optional[Schedule]
    uptime_minutes: int
    timeout: float

    @staticmethod
    def from_env(env: dict[str, str], event: Optional[dict[str, Any]] = None) -> "Config":
        """The environment, with the smoke event's siteUrl / connectHost taking precedence."""
        event = event or {}
        missing = [k for k in ("SITE_URL", "CHECK_SECRET_ARN", "CHECK_HEADER", "METRIC_NAMESPACE") if not env.get(k)]
        if missing:
            raise ConfigurationError(f"missing environment: {', '.join(missing)}")
        schedule = Schedule.from_json(env["IDLE_SCHEDULE"]) if env.get("IDLE_SCHEDULE") else None
        return Config(
            target=Target.parse(event.get("siteUrl") or env["SITE_URL"],
                                event.get("connectHost") or env.get("CONNECT_HOST") or None),
            header=env["CHECK_HEADER"], secret_arn=env["CHECK_SECRET_ARN"], namespace=env["METRIC_NAMESPACE"],
            schedule=schedule, uptime_minutes=int(env.get("UPTIME_MINUTES") or 5),
            timeout=float(env.get("REQUEST_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_SECONDS))


def _health_body(body: bytes) -> bool:
    return body.strip() == b"ok"


def await_health(config: Config, secret: str, wait_seconds: float, poll_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """/healthz until it answers 200 or `wait_seconds` pass: right after a deployment the new
    tasks may still be starting (a service that never becomes healthy fails the checks)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        outcome = check("health", config.target, HEALTH_PATH, 200, {config.header: secret}, config.timeout,
                        _health_body)
        if outcome.ok or time.monotonic() + poll_seconds > deadline:
            return outcome
        sleep(poll_seconds)


def smoke_checks(config: Config, secret: str) -> list[Outcome]:
    signed = {config.header: secret}
    t, timeout = config.target, config.timeout
    return [
        check("health", t, HEALTH_PATH, 200, signed, timeout, _health_body),
        check("redcap page", t, "/", 200, signed, timeout),
        check("cron refused without the secret", t, CRON_PATH, REFUSED_STATUS, {}, timeout),
        check("cron accepted with the secret", t, CRON_PATH, 200, signed, timeout),
    ]


def smoke_report(config: Config, outcomes: list[Outcome]) -> dict[str, Any]:
    return {"mode": "smoke", "site": config.target.base, "ok": all(o.ok for o in outcomes),
            "checks": [asdict(o) for o in outcomes]}


def smoke_failure_message(config: Config, outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if not o.ok]
    lines = [f"smoke check of {config.target.base} failed ({len(failed)} of {len(outcomes)} checks):"]
    for o in failed:
        lines.append(f"  - {o.name}: GET {o.path} {o.detail}")
    lines.append("The site did not pass through its public entry after this update; see docs/operations.md "
                 "(Post-deploy smoke check) for what each check means and where to look.")
    return "\n".join(lines)


def metric_data(outcome: Optional[Outcome], expected: list[tuple[dt.datetime, bool]],
                now: dt.datetime) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = []
    if outcome is not None:
        data.append({"MetricName": "UptimeCheckFailed", "Timestamp": now, "Value": 0.0 if outcome.ok else 1.0,
                     "Unit": "Count"})
        data.append({"MetricName": "UptimeLatency", "Timestamp": now, "Value": float(outcome.ms),
                     "Unit": "Milliseconds"})
    data.extend({"MetricName": "AppTierExpected", "Timestamp": when, "Value": 1.0 if up else 0.0, "Unit": "None"}
                for when, up in expected)
    return data


def expected_minutes(schedule: Optional[Schedule], now: dt.datetime, minutes: int) -> list[tuple[dt.datetime, bool]]:
    """AppTierExpected for every minute from now until just after the next check (CloudWatch
    takes timestamps up to two hours ahead), so alarms with one-minute periods see it too."""
    if schedule is None:
        return []
    first = now.replace(second=0, microsecond=0)
    return [(first + dt.timedelta(minutes=i), app_tier_expected(schedule, first + dt.timedelta(minutes=i)))
            for i in range(min(minutes, 119) + 1)]


# --------------------------------------------------------------------------------------------
# AWS
# --------------------------------------------------------------------------------------------

def read_secret(arn: str) -> str:
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    if not value:
        raise ConfigurationError(f"secret {arn} is empty")
    return value


def put_metrics(namespace: str, data: list[dict[str, Any]]) -> None:
    import boto3

    client = boto3.client("cloudwatch")
    for start in range(0, len(data), 1000):  # PutMetricData takes at most 1000 values per call
        client.put_metric_data(Namespace=namespace, MetricData=data[start:start + 1000])


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run(event: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    mode = (event or {}).get("mode")
    if mode not in ("uptime", "smoke"):
        raise ConfigurationError(f"event mode must be uptime or smoke, not {mode!r}")
    config = Config.from_env(env, event if mode == "smoke" else None)
    now = now_utc()
    expected_now = app_tier_expected(config.schedule, now)
    if mode == "smoke":
        if not expected_now:
            raise SmokeCheckFailed(
                f"smoke check of {config.target.base} not possible: the stage's idle schedule has the app tier "
                f"scaled to zero now ({config.schedule.start}-{config.schedule.end} "  # type: ignore[union-attr]
                f"{config.schedule.timezone} on {', '.join(config.schedule.workdays)}); "  # type: ignore[union-attr]
                "run this `pulumi up` during working hours (docs/operations.md, Idle schedule)")
        secret = read_secret(config.secret_arn)
        await_health(config, secret, float(event.get("waitSeconds", DEFAULT_WAIT_SECONDS)),
                     float(event.get("pollSeconds", 10)))
        outcomes = smoke_checks(config, secret)
        report = smoke_report(config, outcomes)
        LOG.info("smoke check %s: %s", "passed" if report["ok"] else "FAILED",
                 "; ".join(f"{o.name} {o.status}" for o in outcomes))
        if not report["ok"]:
            raise SmokeCheckFailed(smoke_failure_message(config, outcomes))
        return report
    outcome = None
    if expected_now:
        outcome = check("health", config.target, HEALTH_PATH, 200, {config.header: read_secret(config.secret_arn)},
                        config.timeout, _health_body)
        LOG.info("uptime check %s: %s %s", "passed" if outcome.ok else "FAILED", outcome.status, outcome.detail)
    else:
        LOG.info("uptime check skipped: the app tier is scaled to zero by the idle schedule")
    put_metrics(config.namespace, metric_data(outcome, expected_minutes(config.schedule, now, config.uptime_minutes),
                                              now))
    return {"mode": "uptime", "site": config.target.base, "expected": expected_now,
            "check": asdict(outcome) if outcome else None}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(event, dict(os.environ))
