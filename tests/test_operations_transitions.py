"""What `pulumi up` does when operations settings change (tests/transitions.py): an unchanged
second update changes nothing and runs no smoke check; a new image or new runtime settings run it
again (and only that); switching each feature on or off creates or removes only its own
resources, and every such change is safe (no refused step, no collision)."""
from __future__ import annotations

from typing import Any

import pytest

from harness import cached_run, run_program
from transitions import run_transition, transition
from variants import IDLE_BERLIN

SMOKE = ("aws:lambda/invocation:Invocation", "redcap-smoke-check")
CHECK = ("aws:lambda/function:Function", "redcap-site-check")
DASHBOARD = ("aws:cloudwatch/dashboard:Dashboard", "redcap-dashboard")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
APP_RUNNER = {"express": None}
ECS = {"express": None, "domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": True, "ecs": {},
       "cronMinutes": 5}
PROD = {"zoneDelegated": True}  # prod's second phase: its ECS service exists


def alarms(*ids: str) -> set[tuple[str, str]]:
    return {(ALARM, f"redcap-{i}") for i in ids}


@pytest.mark.parametrize("stack, overrides", [("dev", {}), ("dev", APP_RUNNER), ("prod", PROD), ("prod", {})],
                         ids=["express", "apprunner", "ecs", "ecs-phase-one"])
def test_an_unchanged_update_changes_nothing_and_runs_no_smoke_check(stack: str, overrides: dict[str, Any]) -> None:
    t = transition(cached_run(stack, overrides), run_program(stack, overrides))
    assert t.steps == [], t.describe()


def test_a_new_image_runs_the_smoke_check_again() -> None:
    t = run_transition("prod", PROD, {**PROD, "deployTag": "15.0.9-hotfix1"})
    t.assert_safe()
    assert SMOKE in t.replaces
    # The new invocation runs after everything it checks is in place; the old one's delete does nothing.
    assert [s.op for s in t.steps if (s.type, s.name) == SMOKE] == ["create-replacement", "delete-replaced"]
    assert not {k for k in t.creates | t.deletes if k[1].startswith("redcap-") and "alarm" in k[0]}


def test_new_runtime_settings_run_the_smoke_check_and_other_changes_do_not() -> None:
    changed = run_transition("dev", APP_RUNNER, {**APP_RUNNER, "phpTimezone": "Europe/Berlin"})
    changed.assert_safe()
    assert SMOKE in changed.replaces
    unrelated = run_transition("dev", APP_RUNNER, {**APP_RUNNER, "operations": {"alarms": {
        "siteLatency": {"threshold": 30}}}})
    unrelated.assert_safe()
    assert SMOKE not in unrelated.replaces and unrelated.updates == alarms("siteLatency")


def both_ways(stack: str, off: dict[str, Any], on: dict[str, Any]):
    forward, backward = run_transition(stack, off, on), run_transition(stack, on, off)
    forward.assert_safe()
    backward.assert_safe()
    assert forward.creates == backward.deletes and forward.deletes == backward.creates
    assert not forward.replaces and not backward.replaces, (forward.describe(), backward.describe())
    return forward


def test_budget_on_and_off() -> None:
    t = both_ways("dev", {}, {"operations": {"monthlyBudgetUsd": 120}})
    assert t.creates == {("aws:budgets/budget:Budget", "redcap-budget")} and t.deletes == set() and t.updates == set()


def test_dashboard_off_and_on() -> None:
    t = both_ways("dev", {"operations": {"dashboard": False}}, {})
    assert t.creates == {DASHBOARD} and t.deletes == set() and t.updates == set()


def test_smoke_check_off_and_on() -> None:
    t = both_ways("dev", {"operations": {"smokeCheck": False}}, {})
    assert t.creates == {SMOKE} and t.updates == set()


def test_one_alarm_off_and_on() -> None:
    t = both_ways("prod", {**PROD, "operations": {"alarms": {"wafBlockedSpike": {"enabled": False}}}}, PROD)
    # The dashboard's alarm widget lists the alarm's ARN too.
    assert t.creates == alarms("wafBlockedSpike") and t.updates == {DASHBOARD}


def test_apprunner_idle_schedule_on_and_off() -> None:
    t = both_ways("dev", APP_RUNNER, {**APP_RUNNER, "operations": {"idleSchedule": IDLE_BERLIN}})
    assert t.creates == {("aws:scheduler/schedule:Schedule", "redcap-wake"),
                         ("aws:scheduler/schedule:Schedule", "redcap-sleep"),
                         ("aws:iam/role:Role", "redcap-idle-role"), ("aws:iam/rolePolicy:RolePolicy", "redcap-idle-policy")}
    # The checker learns the schedule; the app tier's alarms get their gate.
    assert t.updates == {CHECK} | alarms("siteErrorRate", "siteLatency", "uptime")


@pytest.mark.parametrize("runtime, gated", [
    (ECS, ("siteErrorRate", "siteLatency", "unhealthyTargets", "tasksBelowMinimum", "uptime", "cronFailures",
           "cronStopped", "cronErrors")),
    ({}, ("siteErrorRate", "siteLatency", "tasksBelowMinimum", "uptime")),
], ids=["ecs", "express"])
def test_scheduled_scaling_idle_schedule_on_and_off(runtime: dict[str, Any], gated: tuple[str, ...]) -> None:
    t = both_ways("dev", runtime, {**runtime, "operations": {"idleSchedule": IDLE_BERLIN}})
    assert t.creates == {("aws:appautoscaling/scheduledAction:ScheduledAction", "redcap-wake"),
                         ("aws:appautoscaling/scheduledAction:ScheduledAction", "redcap-sleep")}
    assert t.updates == {CHECK} | alarms(*gated)


def test_the_delegation_of_a_new_zone_adds_the_site_checks() -> None:
    """docs/domains.md phase one -> phase two: the runtime appears, and with it its alarms, the
    site checks and the dashboard's site widgets; nothing of operations is deleted or replaced."""
    t = run_transition("prod", {}, PROD)
    t.assert_safe()
    assert {CHECK, SMOKE, ("aws:scheduler/schedule:Schedule", "redcap-uptime")} <= t.creates
    assert alarms("siteErrorRate", "uptime", "tasksBelowMinimum", "cronFailures") <= t.creates
    touched = t.urns("delete") | t.urns("create-replacement")
    assert not {u for u in touched if "redcap:operations:Operations" in u}, t.describe()


def test_another_alarm_address_resubscribes_only_the_alarm_topic() -> None:
    t = run_transition("prod", PROD, {**PROD, "operations": {"alarmEmail": "redcap-ops@example.org"}})
    t.assert_safe()
    assert t.replaces == {("aws:sns/topicSubscription:TopicSubscription", "redcap-alarms-email")}
    assert t.creates == set() and t.deletes == set()
