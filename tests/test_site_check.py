"""functions/site_check.py for real: the uptime and post-deploy smoke checks run against the REDCap
container the tests start (MariaDB, moto), through a local stand-in for the public entry that
applies the program's own WAF rules (tests/entry_standin.py) from an address outside the
stage's allow-lists; the cron header's value lives in moto's Secrets Manager and the metrics go
to moto's CloudWatch. Failing cases: a wrong secret, a WAF that lets cron through, no healthy
target, nothing listening, and the idle window.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, Iterator

import pytest

from components import firewall as fw
from entry_standin import EntryStandIn, make_test_ca_and_certificate
from functions import site_check as sc
from image_support import RunningApp, start_app
from waf_eval import Request, evaluate

pytestmark = pytest.mark.docker

SECRET = "check-secret-" + uuid.uuid4().hex  # random per run: finding it anywhere means it leaked
HMAC = fw.cron_search_string(SECRET)
IP_SET_ARN = "arn:aws:wafv2:us-east-1:123456789012:regional/ipset/allowed/0000"


def program_rules(**kw: Any) -> list[dict[str, Any]]:
    """The stage's web ACL rules as the program builds them: US only and one office network."""
    return fw.web_acl_rules(countries=kw.get("countries", ["US"]), search_string=HMAC,
                            ip_set_arns=kw.get("ip_set_arns", [IP_SET_ARN]), site_checks=kw.get("site_checks", True))


@pytest.fixture(scope="module")
def app(image, mariadb, moto_server) -> Iterator[RunningApp]:
    running = start_app(image.tag, mariadb, moto_server)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secret_arn(moto_server) -> str:
    return moto_server.client("secretsmanager").create_secret(
        Name=f"redcap-check-{uuid.uuid4().hex[:8]}", SecretString=HMAC)["ARN"]


@pytest.fixture
def entry(app: RunningApp) -> Iterator[EntryStandIn]:
    standin = EntryStandIn(upstream_port=app.port, rules=program_rules(),
                           ip_sets={IP_SET_ARN: ["203.0.113.0/24"]}).start()
    yield standin
    standin.stop()


@pytest.fixture
def env(moto_server, monkeypatch, entry: EntryStandIn, secret_arn: str) -> dict[str, str]:
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return {"SITE_URL": f"http://127.0.0.1:{entry.port}", "CHECK_SECRET_ARN": secret_arn,
            "CHECK_HEADER": fw.CRON_HEADER, "METRIC_NAMESPACE": f"REDCap/test-{uuid.uuid4().hex[:8]}",
            "UPTIME_MINUTES": "5", "REQUEST_TIMEOUT_SECONDS": "20"}


def statuses(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [(c["name"], c["status"]) for c in report["checks"]]


def metric(moto_server, namespace: str, name: str) -> list[float]:
    now = dt.datetime.now(dt.timezone.utc)
    points = moto_server.client("cloudwatch").get_metric_statistics(
        Namespace=namespace, MetricName=name, StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(hours=2), Period=60, Statistics=["Maximum"])["Datapoints"]
    return [p["Maximum"] for p in sorted(points, key=lambda p: p["Timestamp"])]


# --- the stand-in is the WAF the program builds ----------------------------------------------

def test_the_entry_is_closed_to_the_outside_except_for_the_checks_and_cron(entry: EntryStandIn) -> None:
    def decide(path: str, headers: dict[str, str], method: str = "GET", query: str = "",
               ip: str = entry.client_ip, country: str = "DE") -> tuple[bool, Any]:
        decision = evaluate(entry.rules, Request(path=path, ip=ip, country=country,
                                                 query=dict([query.split("=", 1)]) if query else {},
                                                 headers=headers, method=method), entry.ip_sets)
        return decision.action == "ALLOW", decision.rule

    signed = {fw.CRON_HEADER: HMAC}
    assert decide("/", {}) == (False, "country-list")
    assert decide("/", {}, ip="203.0.113.9", country="US") == (True, None)
    assert decide("/healthz", signed) == (True, "site-check")
    assert decide("/", signed) == (True, "site-check")
    # The header opens nothing else: another page, a query string, a POST (a login), a wrong value.
    assert decide("/index.php", signed) == (False, "country-list")
    assert decide("/", signed, query="route=DataExportController:index") == (False, "country-list")
    assert decide("/", signed, method="POST") == (False, "country-list")
    assert decide("/", {fw.CRON_HEADER: HMAC + "x"}) == (False, "country-list")
    assert decide("/cron.php", {}) == (False, "cron-execution")
    assert decide("/cron.php", signed) == (True, None)
    # Without allow-lists there is nothing to pass, so the rule is not there at all.
    assert [r["name"] for r in program_rules(countries=[], ip_set_arns=[])][0] == "cron-execution"
    assert "site-check" not in [r["name"] for r in program_rules(site_checks=False)]


# --- smoke -----------------------------------------------------------------------------------

def test_smoke_check_passes_through_the_allow_lists(env, entry: EntryStandIn, caplog) -> None:
    caplog.set_level(logging.INFO)
    report = sc.run({"mode": "smoke"}, env)
    assert report["ok"] is True and report["site"] == env["SITE_URL"]
    assert statuses(report) == [("health", 200), ("redcap page", 200), ("cron refused without the secret", 403),
                                ("cron accepted with the secret", 200)]
    # Each request went through the entry and was judged by the rule it was meant for.
    # (the first /healthz is the wait for a healthy entry)
    assert [(p, allowed, rule) for _, p, allowed, rule in entry.requests] == [
        ("/healthz", True, "site-check"), ("/healthz", True, "site-check"), ("/", True, "site-check"), ("/cron.php", False, "cron-execution"),
        ("/cron.php", True, None)]
    assert SECRET not in json.dumps(report) and HMAC not in json.dumps(report)
    assert HMAC not in caplog.text and "smoke check passed" in caplog.text


def test_smoke_check_with_a_wrong_secret_fails_and_says_which_checks(env, moto_server, caplog) -> None:
    wrong = moto_server.client("secretsmanager").create_secret(
        Name=f"redcap-check-wrong-{uuid.uuid4().hex[:8]}", SecretString="0" * 64)["ARN"]
    with pytest.raises(sc.SmokeCheckFailed) as failed:
        sc.run({"mode": "smoke", "waitSeconds": 0}, {**env, "CHECK_SECRET_ARN": wrong})
    message = str(failed.value)
    assert message.startswith(f"smoke check of {env['SITE_URL']} failed (3 of 4 checks):")
    assert "  - health: GET /healthz answered 403, expected 200" in message
    assert "  - redcap page: GET / answered 403, expected 200" in message
    assert "  - cron accepted with the secret: GET /cron.php answered 403, expected 200" in message
    assert "cron refused without the secret" not in message
    assert "0" * 64 not in message and "0" * 64 not in caplog.text


def test_smoke_check_fails_when_the_waf_lets_cron_through(env, entry: EntryStandIn) -> None:
    entry.rules = [r for r in entry.rules if r["name"] != "cron-execution"]
    with pytest.raises(sc.SmokeCheckFailed) as failed:
        sc.run({"mode": "smoke", "waitSeconds": 0}, env)
    assert ("  - cron refused without the secret: GET /cron.php answered 200, expected 403"
            in str(failed.value))
    assert "(1 of 4 checks)" in str(failed.value)


def test_smoke_check_fails_without_a_healthy_target(env, entry: EntryStandIn) -> None:
    entry.upstream_down()
    with pytest.raises(sc.SmokeCheckFailed) as failed:
        sc.run({"mode": "smoke", "waitSeconds": 0}, env)
    message = str(failed.value)
    assert "(3 of 4 checks)" in message and "GET /healthz answered 502, expected 200" in message
    assert "cron accepted with the secret: GET /cron.php answered 502, expected 200" in message
    # The WAF itself still refuses cron.php without the secret: that check passes.
    assert "cron refused without the secret" not in message


def test_smoke_check_waits_for_new_tasks_to_come_up(env, entry: EntryStandIn) -> None:
    """Right after a deployment the entry may have no healthy target yet: the check waits."""
    entry.upstream_down()
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            entry.upstream_down(False)  # the new task became healthy

    config = sc.Config.from_env(env)
    assert sc.await_health(config, HMAC, wait_seconds=60, poll_seconds=0.01, sleep=sleep).ok
    assert len(polls) == 2 and [p for _, p, _, _ in entry.requests] == ["/healthz"] * 3
    assert sc.run({"mode": "smoke", "pollSeconds": 0.01}, env)["ok"]


def test_smoke_check_fails_when_nothing_answers(env, entry: EntryStandIn) -> None:
    entry.stop()
    with pytest.raises(sc.SmokeCheckFailed) as failed:
        sc.run({"mode": "smoke", "waitSeconds": 0}, env)
    message = str(failed.value)
    assert f"  - health: GET /healthz no answer from 127.0.0.1:{entry.port}: ConnectionRefusedError" in message
    assert "docs/operations.md" in message


def test_smoke_check_over_tls_to_the_entry_by_its_own_name(app: RunningApp, env, tmp_path, monkeypatch) -> None:
    """CONNECT_HOST: connect to the runtime's entry (the load balancer's DNS name in AWS) while
    TLS name and Host stay the site's, so the check does not depend on the site's DNS record."""
    ca, cert, key = make_test_ca_and_certificate(tmp_path / "tls", "redcap.example.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    standin = EntryStandIn(upstream_port=app.port, rules=program_rules(), ip_sets={IP_SET_ARN: ["203.0.113.0/24"]},
                           tls=(cert, key)).start()
    try:
        site = f"https://redcap.example.test:{standin.port}"
        report = sc.run({"mode": "smoke", "siteUrl": site, "connectHost": "127.0.0.1"}, env)
        assert report["ok"] and report["site"] == site
        # Without the site's name the certificate does not match: the check says so, it does not pass.
        with pytest.raises(sc.SmokeCheckFailed) as failed:
            sc.run({"mode": "smoke", "siteUrl": f"https://127.0.0.1:{standin.port}", "waitSeconds": 0}, env)
        assert "SSLCertVerificationError" in str(failed.value)
    finally:
        standin.stop()


# --- uptime ----------------------------------------------------------------------------------

def test_uptime_check_publishes_success_and_latency(env, moto_server, entry: EntryStandIn) -> None:
    result = sc.run({"mode": "uptime"}, env)
    assert result["check"]["ok"] is True and result["check"]["status"] == 200 and result["expected"] is True
    assert [(p, rule) for _, p, _, rule in entry.requests] == [("/healthz", "site-check")]
    assert metric(moto_server, env["METRIC_NAMESPACE"], "UptimeCheckFailed") == [0.0]
    assert len(metric(moto_server, env["METRIC_NAMESPACE"], "UptimeLatency")) == 1
    # Without an idle schedule nothing says the app tier may be down.
    assert metric(moto_server, env["METRIC_NAMESPACE"], "AppTierExpected") == []


def test_uptime_check_publishes_a_failure(env, moto_server, entry: EntryStandIn) -> None:
    entry.upstream_down()
    result = sc.run({"mode": "uptime"}, env)
    assert result["check"]["ok"] is False and result["check"]["status"] == 502
    assert metric(moto_server, env["METRIC_NAMESPACE"], "UptimeCheckFailed") == [1.0]


def test_uptime_check_sleeps_with_the_app_tier(env, moto_server, entry: EntryStandIn, monkeypatch) -> None:
    # A schedule whose working hours are never now: Sunday only, in a zone where it is not Sunday.
    now = dt.datetime.now(dt.timezone.utc)
    not_today = sc.DAYS[(now.weekday() + 3) % 7]
    schedule = {"timezone": "UTC", "workdays": [not_today], "start": "07:00", "end": "19:00", "graceMinutes": 15}
    result = sc.run({"mode": "uptime"}, {**env, "IDLE_SCHEDULE": json.dumps(schedule)})
    assert result == {"mode": "uptime", "site": env["SITE_URL"], "expected": False, "check": None}
    assert entry.requests == []  # nothing is requested from a stage that is asleep on purpose
    assert metric(moto_server, env["METRIC_NAMESPACE"], "UptimeCheckFailed") == []
    assert set(metric(moto_server, env["METRIC_NAMESPACE"], "AppTierExpected")) == {0.0}
    with pytest.raises(sc.SmokeCheckFailed) as failed:
        sc.run({"mode": "smoke"}, {**env, "IDLE_SCHEDULE": json.dumps(schedule)})
    assert "the stage's idle schedule has the app tier scaled to zero now (07:00-19:00 UTC on " in str(failed.value)
    assert entry.requests == []


def test_configuration_problems_are_not_site_problems(env) -> None:
    with pytest.raises(sc.ConfigurationError, match="missing environment: CHECK_SECRET_ARN"):
        sc.run({"mode": "smoke"}, {k: v for k, v in env.items() if k != "CHECK_SECRET_ARN"})
    with pytest.raises(sc.ConfigurationError, match="event mode must be uptime or smoke"):
        sc.run({}, env)
