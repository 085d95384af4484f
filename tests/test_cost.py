"""The cost estimate's arithmetic for the committed stages, pinned against figures computed by hand
from the price table (costs/prices.py, us-east-1, 730 hours a month), and scripts/estimate-cost."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from costs.estimate import UnknownRegion, estimate, prices_for, render
from harness import cached_run
from variants import IDLE_BERLIN

ROOT = Path(__file__).resolve().parent.parent
H = 730
APP_RUNNER = {"express": None}
# The committed prod stage creates its zone; its ECS service runs once the zone is delegated.
DELEGATED = {"zoneDelegated": True}


def lines_of(stack: str, overrides: dict | None = None) -> dict[str, float]:
    run = cached_run(stack, overrides or {})
    result = estimate(run.resources, stack=stack, region="us-east-1")
    return {line.resource: round(line.monthly, 2) for line in result.lines}


def total_of(stack: str, overrides: dict | None = None) -> float:
    run = cached_run(stack, overrides or {})
    return estimate(run.resources, stack=stack, region="us-east-1").total


def test_dev_at_idle() -> None:
    # The committed dev stage: one NAT gateway, ECS Express with one 1 vCPU / 2 GB task behind
    # CloudFront, Aurora paused at 0 ACU, no readers, no cron, no zone.
    expected = {
        "redcap-vpc": round((0.045 + 0.005) * H, 2),                     # 36.50: NAT-hour + its public IPv4
        "redcap-secretsmanager": round(2 * 0.01 * H, 2),                 # 14.60: one endpoint ENI per AZ
        "redcap-key": 1.00,
        "secrets": round(6 * 0.40, 2),                                   # 5 of ours + the RDS-managed master
        "redcap-writer": 0.00,                                           # 0 ACU: paused
        "redcap-service": round((1 * 0.04048 + 2 * 0.004445) * H, 2),    # 36.04: one task
        "redcap-service (load balancer)": round(0.0225 * H, 2),          # 16.43: internal, no public IPv4
        "redcap-web-acl": round(5 + 6 * 1.0, 2),                         # cron, rate, 4 managed groups
        "alarms": round(14 * 0.10, 2),                                   # 11 + key rotation's; error rate reads 3
        "redcap-dashboard": 3.00,
        "custom metrics": round(2 * 0.30, 2),                            # UptimeCheckFailed, UptimeLatency
        "redcap-uptime": round(8760 * (0.0000002 + 0.125 * 0.0000166667), 2),  # every 5 minutes
    }
    assert lines_of("dev") == expected
    assert round(total_of("dev"), 2) == 122.99


def test_dev_on_app_runner_at_idle() -> None:
    # The same stage on App Runner: one provisioned 4 GB instance (memory only while idle).
    lines = lines_of("dev", APP_RUNNER)
    assert lines["redcap-service"] == round(4 * 0.007 * H, 2)         # 20.44
    assert "redcap-service (load balancer)" not in lines
    assert lines["alarms"] == round(12 * 0.10, 2)                      # no task alarm; the error rate reads 2
    assert round(total_of("dev", APP_RUNNER), 2) == 90.76


def test_prod_at_idle() -> None:
    # Once its zone is delegated: NAT per AZ, a reader, 0.5 ACU minimum, two 2 vCPU / 4 GB tasks,
    # ALB, US-only WAF, a signed zone, cron every minute.
    task_hour = 2 * 0.04048 + 4 * 0.004445 + 1 * 0.000111             # + 1 GB ephemeral storage above 20
    expected = {
        "redcap-vpc": round(2 * (0.045 + 0.005) * H, 2),                 # 73.00
        "redcap-secretsmanager": 14.60,
        "redcap-key, redcap-dnssec-key": 2.00,                          # + the zone's DNSSEC signing key
        "secrets": round(7 * 0.40, 2),                                   # + the EventBridge connection's
        "redcap-writer": round(0.5 * 0.12 * H, 2),                       # 43.80
        "redcap-reader-1": round(0.5 * 0.12 * H, 2),
        "redcap-service": round(2 * task_hour * H, 2),                   # 144.32
        "redcap-alb": round((0.0225 + 2 * 0.005) * H, 2),                # 23.73: hour + a public IPv4 per AZ
        "redcap-web-acl": round(5 + 8 * 1.0, 2),                         # + site-check and country-list
        "redcap-zone": 0.50,
        "alarms": round(19 * 0.10, 2),                                   # 16 + key rotation's; error rate reads 3
        "redcap-dashboard": 3.00,
        "custom metrics": round(3 * 0.30, 2),                            # + CronErrors
        "redcap-uptime": 0.02,
        "redcap-cron-schedule": round(43800 * 0.0000002, 2),             # 0.01
    }
    assert lines_of("prod", DELEGATED) == expected
    assert round(total_of("prod", DELEGATED), 2) == 367.38
    # Before the delegation (the first `pulumi up` of a new zone) there is no ECS service, no
    # load balancer, no cron, no site check yet.
    first = lines_of("prod")
    assert not {"redcap-service", "redcap-alb", "redcap-cron-schedule", "redcap-uptime"} & set(first)
    assert round(total_of("prod"), 2) == 195.60


def test_above_the_minimum() -> None:
    prod = estimate(cached_run("prod", DELEGATED).resources, stack="prod", region="us-east-1")
    assert [(w, round(a, 2)) for w, a in prod.extras] == [
        ("each task above the minimum (2 vCPU / 4 GB), per month", 72.16),
        ("each Aurora ACU above the minimum, per instance, per month", 87.60)]
    dev = estimate(cached_run("dev").resources, stack="dev", region="us-east-1")
    assert [round(a, 2) for _, a in dev.extras] == [36.04, 87.60]
    app_runner = estimate(cached_run("dev", APP_RUNNER).resources, stack="dev", region="us-east-1")
    assert [round(a, 2) for _, a in app_runner.extras] == [20.44, round(2 * 0.064 + 4 * 0.007, 2), 87.60]


def test_what_each_setting_costs() -> None:
    """The figures docs/cost.md quotes."""
    prod = total_of("prod", DELEGATED)
    assert round(prod - total_of("prod", {**DELEGATED, "natGateways": "single"}), 2) == 36.50
    no_reader = {"dbReaders": 0, "scaling": {"minCapacityAcu": 0.5, "maxCapacityAcu": 8}}
    assert round(prod - total_of("prod", {**DELEGATED, "db": no_reader}), 2) \
        == 43.80 + 0.10  # the reader, and the replica-lag alarm's metric
    one_acu = {"scaling": {"minCapacityAcu": 1, "maxCapacityAcu": 8}}
    assert round(total_of("prod", {**DELEGATED, "db": one_acu}) - prod, 2) == 87.60
    one_task = {**DELEGATED, "ecs": {"scaling": {"minContainers": 1, "maxContainers": 6}}}
    assert round(prod - total_of("prod", one_task), 2) == 72.16
    idle = estimate(cached_run("dev", {"operations": {"idleSchedule": IDLE_BERLIN}}).resources, stack="dev",
                    region="us-east-1")
    assert round(idle.awake_fraction, 4) == round(5 * 10.5 / 168, 4)  # 07:30-18:00, Monday to Friday
    task = next(line for line in idle.lines if line.resource == "redcap-service")
    assert round(task.monthly, 2) == round(36.0401 * 52.5 / 168, 2)  # 11.26
    assert round(idle.total_without_idle_schedule - idle.total, 2) == 24.78
    # ... and the schedule's own cost: AppTierExpected, and one more metric in each of the 4 app-tier alarms.
    assert round(idle.total_without_idle_schedule - total_of("dev"), 2) == round(0.30 + 4 * 0.10, 2)
    on_app_runner = estimate(cached_run("dev", {**APP_RUNNER, "operations": {"idleSchedule": IDLE_BERLIN}}).resources,
                             stack="dev", region="us-east-1")
    assert round(on_app_runner.total_without_idle_schedule - on_app_runner.total, 2) == round(20.44 * (1 - 52.5 / 168), 2)


def test_regions_outside_the_table_are_refused() -> None:
    with pytest.raises(UnknownRegion, match=r"no bundled prices for eu-west-1; the table \(costs/prices.py, "
                                            r"\d{4}-\d{2}-\d{2}\) covers us-east-1, us-east-2, us-west-2"):
        prices_for("eu-west-1")


def test_rendered_report_states_date_hours_and_exclusions() -> None:
    text = render(estimate(cached_run("dev").resources, stack="dev", region="us-east-1"))
    assert text.startswith("Monthly cost estimate of stack dev in us-east-1 (USD, on-demand list prices of ")
    assert "730 hours a month" in text and "total at idle" in text and "122.99" in text
    assert "Not included (grows with use): data transfer out" in text


def test_the_script_prints_the_estimate_of_a_stack_file() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "estimate-cost"), "prod", "--set",
                             "zoneDelegated=true"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Monthly cost estimate of stack prod in us-east-1" in result.stdout
    assert [line.split()[-1] for line in result.stdout.splitlines() if "total at idle" in line] == ["367.38"]
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "estimate-cost"), "nosuchstack"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no Pulumi.nosuchstack.yaml" in bad.stderr
