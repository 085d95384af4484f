"""The stage's RolloutCheck (components/rollout.py) on every runtime: one check per stage, reading
back what the runtime's update deployed; it runs when a new version rolls out and at no other
`pulumi up`; runtime switches update it in place. ECS's own details are in tests/test_ecs.py, the
function against the service APIs in tests/test_rollout_check_fn.py."""
from __future__ import annotations

import json
from typing import Any

import pytest

from compute_support import policy_of, run_variant, statements
from harness import depends_on
from transitions import run_transition

INVOCATION = ("aws:lambda/invocation:Invocation", "redcap-rollout-invocation")
FUNCTION = ("aws:lambda/function:Function", "redcap-rollout-function")
APP_RUNNER = {"express": None}
PROD = {"zoneDelegated": True}
SERVICES = {"prod": "aws:ecs/service:Service", "express": "aws:ecs/expressGatewayService:ExpressGatewayService",
            "dev-apprunner": "aws:apprunner/service:Service"}


@pytest.mark.parametrize("variant", list(SERVICES))
def test_one_check_per_stage_reads_back_what_the_runtime_deployed(variant: str) -> None:
    run = run_variant(variant)
    checks = [r for r in run.of_type(FUNCTION[0]) if r.inputs["handler"] == "rollout_check.handler"]
    assert [c.name for c in checks] == [FUNCTION[1]]
    assert checks[0].inputs["name"] == f"redcap-{run.stack}-rollout-check"
    service = run.one(SERVICES[variant])
    invocation = run.named(INVOCATION[1], INVOCATION[0])
    event = json.loads(invocation.inputs["input"])
    assert depends_on(run, invocation, service.urn) and "lifecycleScope" not in invocation.inputs
    if variant == "prod":
        assert event["runtime"] == "ecs" and event["taskDefinition"] == service.inputs["taskDefinition"]
    elif variant == "express":
        assert event == {"runtime": "express", "service": service.outputs["serviceArn"],
                         "cluster": run.one("aws:ecs/cluster:Cluster").outputs["name"],
                         "image": run.outputs["imageUri"], "logGroup": run.outputs["expressLogGroup"]}
    else:
        arn = service.outputs["arn"]
        name, service_id = arn.split(":service/")[1].split("/")
        assert event == {"runtime": "apprunner", "service": arn, "image": run.outputs["imageUri"],
                         "logGroup": f"/aws/apprunner/{name}/{service_id}/application"}
        assert set(invocation.inputs["triggers"]) == {"settings"}
    assert run.outputs["rolloutCheck"]["status"] == "rolledOut"


@pytest.mark.parametrize("variant, allowed", [
    ("express", {"SeeTheRollout": ["ecs:DescribeServices"], "SeeTheRolloutImage": ["ecs:DescribeTaskDefinition"]}),
    ("dev-apprunner", {"SeeTheRollout": ["apprunner:DescribeService", "apprunner:ListOperations"]}),
])
def test_the_check_may_only_read_its_own_service(variant: str, allowed: dict[str, list[str]]) -> None:
    run = run_variant(variant)
    service = run.one(SERVICES[variant])
    found = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-rollout-policy")))}
    assert set(found) == {"WriteLogs", *allowed}
    for sid, actions in allowed.items():
        assert found[sid]["Action"] == actions
    assert found["SeeTheRollout"]["Resource"] == [service.outputs.get("serviceArn") or service.outputs["arn"]]
    if "SeeTheRolloutImage" in found:  # the one action AWS authorizes on "*" only
        assert found["SeeTheRolloutImage"]["Resource"] == ["*"]


@pytest.mark.parametrize("stack, before, change", [
    ("dev", {}, {"deployTag": "15.0.9-hotfix1"}),                         # Express, a new image
    ("dev", APP_RUNNER, {"deployTag": "15.0.9-hotfix1"}),                 # App Runner, a new image
    ("dev", APP_RUNNER, {"phpTimezone": "Europe/Berlin"}),                # App Runner, a new environment
], ids=["express-image", "apprunner-image", "apprunner-environment"])
def test_a_new_version_runs_the_check_after_the_runtime_has_rolled_it_out(stack: str, before: dict[str, Any],
                                                                         change: dict[str, Any]) -> None:
    t = run_transition(stack, before, {**before, **change})
    t.assert_safe()
    assert INVOCATION in t.replaces
    steps = [(s.op, s.type, s.name) for s in t.steps]
    service = next(i for i, s in enumerate(steps) if s[1] in SERVICES.values() and s[0] in ("update", "create-replacement"))
    assert steps.index(("create-replacement", *INVOCATION)) > service


@pytest.mark.parametrize("stack, overrides", [("dev", {}), ("dev", APP_RUNNER), ("prod", PROD)],
                         ids=["express", "apprunner", "ecs"])
def test_other_changes_run_no_check(stack: str, overrides: dict[str, Any]) -> None:
    t = run_transition(stack, overrides, {**overrides, "operations": {"alarms": {"siteLatency": {"threshold": 30}}}})
    assert t.change(*INVOCATION).kind == "same" and t.change(*FUNCTION).kind == "same"


@pytest.mark.parametrize("stack, before, after", [
    ("dev", APP_RUNNER, {}), ("dev", {}, APP_RUNNER),
    ("prod", PROD, {"ecs": None, "express": {}, **PROD}), ("prod", {"ecs": None, "express": {}, **PROD}, PROD),
], ids=["apprunner-to-express", "express-to-apprunner", "ecs-to-express", "express-to-ecs"])
def test_a_runtime_switch_updates_the_one_check_and_runs_it_against_the_new_service(stack, before, after) -> None:
    t = run_transition(stack, before, after)
    t.assert_safe()
    assert t.change(*FUNCTION).kind == "same"  # its name, code and role stay; only its grants change
    assert t.change("aws:iam/rolePolicy:RolePolicy", "redcap-rollout-policy").kind == "update"
    assert INVOCATION in t.replaces
