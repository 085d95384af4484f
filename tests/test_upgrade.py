"""Upgrades that cannot lose data, as the program declares them (components/upgrade.py), and what
`pulumi up` does with them between two runs (tests/transitions.py):

- the snapshot before a release change: a CRUD invocation whose input carries the release, so the
  provider invokes the function exactly when the release changes, with the previous release from
  the state; the rollout of the new image waits for it;
- the opt-in database upgrade after the rollout: a one-off task of the same image and contract.

What the invoked functions then do is tested against moto (tests/test_upgrade_snapshot_fn.py,
tests/test_db_upgrade_fn.py); the task's upgrade mode against MariaDB (tests/test_bootstrap_upgrade.py).
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from components import upgrade as up
from functions import upgrade_snapshot as snapshot_fn
from harness import StackRun, cached_run, depends_on, unwrap_secrets
from transitions import destroy, run_transition, transition

INVOCATION = "aws:lambda/invocation:Invocation"
FUNCTION = "aws:lambda/function:Function"
RANDOM_ID = "random:index/randomId:RandomId"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
CLUSTER = "aws:rds/cluster:Cluster"
SNAPSHOT_INVOCATION = "redcap-upgrade-snapshot-invocation"
UPGRADE_INVOCATION = "redcap-db-upgrade-invocation"
# prod past phase one of its new zone (docs/domains.md): its ECS service runs.
LIVE = {"zoneDelegated": True}
NEW_RELEASE = {**LIVE, "redCapS3Path": "my-redcap-releases/redcap15.1.0.zip"}
DATABASE = {**LIVE, "upgrade": {"database": True}}
RUNTIME_RESOURCES = {"ecs": ("aws:ecs/service:Service", "redcap-service"),
                     "express": ("aws:ecs/expressGatewayService:ExpressGatewayService", "redcap-service"),
                     "apprunner": ("aws:apprunner/service:Service", "redcap-service")}


def event(run: StackRun, name: str = SNAPSHOT_INVOCATION) -> dict[str, Any]:
    return json.loads(unwrap_secrets(run.named(name, INVOCATION).inputs["input"]))


def provider_payload(t: Any, name: str) -> dict[str, Any]:
    """What terraform-provider-aws sends a CRUD invocation's function on this step (buildInput)."""
    change = t.change(INVOCATION, name)
    new = json.loads(unwrap_secrets(t.after.named(name, INVOCATION).inputs["input"]))
    if change.kind == "create":
        return {**new, "tf": {"action": "create", "prev_input": None}}
    old = json.loads(unwrap_secrets(t.before.named(name, INVOCATION).inputs["input"]))
    return {**new, "tf": {"action": "update", "prev_input": old}}


def planned(t: Any) -> str | None:
    """The snapshot the function takes on this step (functions/upgrade_snapshot.planned_snapshot)."""
    payload = provider_payload(t, SNAPSHOT_INVOCATION)
    return snapshot_fn.planned_snapshot(snapshot_fn.Request.from_event(payload, {"CLUSTER_IDENTIFIER": "c"}))


# --- the snapshot, as declared ----------------------------------------------------------------------

def test_stages_that_keep_data_snapshot_before_a_new_release_and_dev_does_not():
    prod = cached_run("prod", LIVE)
    invocation = prod.named(SNAPSHOT_INVOCATION, INVOCATION)
    assert invocation.inputs["lifecycleScope"] == "CRUD" and "triggers" not in invocation.inputs
    e = event(prod)
    attempt = prod.named("redcap-upgrade-snapshot-attempt", RANDOM_ID)
    assert e == {"release": "15.0.9", "namePrefix": "redcap-prod", "attempt": attempt.outputs["hex"]}
    assert attempt.inputs["keepers"] == {"release": "15.0.9"}
    assert prod.outputs["dbUpgradeSnapshotIdentifier"] == ""  # no release change yet
    dev = cached_run("dev")
    assert not [r for r in dev.resources if "upgrade" in r.name] and "dbUpgradeSnapshotIdentifier" not in dev.outputs
    on = cached_run("dev", {"upgrade": {"snapshot": True}})
    assert event(on)["namePrefix"] == "redcap-dev"


def test_the_function_snapshots_the_serving_cluster_only():
    for overrides in (LIVE, {**LIVE, "db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final",
                                            "previousCluster": {"deletionProtection": True}}}):
        run = cached_run("prod", overrides)
        serving = run.outputs["dbClusterIdentifier"]
        serving_arn = next(c.outputs["arn"] for c in run.of_type(CLUSTER) if c.inputs["clusterIdentifier"] == serving)
        function = run.named("redcap-upgrade-snapshot-function", FUNCTION)
        assert function.inputs["environment"]["variables"] == {"CLUSTER_IDENTIFIER": serving}
        assert (function.inputs["name"], function.inputs["handler"], function.inputs["timeout"]) == (
            "redcap-prod-upgrade-snapshot", "upgrade_snapshot.handler", 900)
        policy = json.loads(run.named("redcap-upgrade-snapshot-policy").inputs["policy"])
        statements = {s["Sid"]: s for s in policy["Statement"]}
        pattern = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:redcap-prod-*"
        assert statements["SnapshotTheCluster"]["Action"] == ["rds:CreateDBClusterSnapshot"]
        assert statements["SnapshotTheCluster"]["Resource"] == [serving_arn, pattern]
        assert statements["TagAndWatchTheSnapshot"]["Resource"] == [pattern]
        assert statements["WriteLogs"]["Resource"] == [
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/redcap-prod-upgrade-snapshot:*"]
        assert set(statements) == {"SnapshotTheCluster", "TagAndWatchTheSnapshot", "WriteLogs"}


@pytest.mark.parametrize("stack, overrides, runtime", [
    ("prod", LIVE, "ecs"), ("dev", {"upgrade": {"snapshot": True}}, "express"),
    ("dev", {"upgrade": {"snapshot": True}, "express": None}, "apprunner")])
def test_the_snapshot_is_taken_after_the_build_and_before_the_rollout(stack, overrides, runtime):
    run = cached_run(stack, overrides)
    snapshot = run.named(SNAPSHOT_INVOCATION, INVOCATION)
    build = run.named("redcap-build-invocation", INVOCATION)
    assert depends_on(run, snapshot, build.urn)  # a failed build takes no snapshot
    type_, name = RUNTIME_RESOURCES[runtime]
    assert depends_on(run, run.named(name, type_), snapshot.urn)
    if runtime == "ecs":
        assert depends_on(run, run.one(TASK_DEFINITION, "redcap-task"), snapshot.urn)


# --- what `pulumi up` does with it ---------------------------------------------------------------------

def test_a_new_release_updates_the_snapshot_invocation_with_the_old_release_from_the_state():
    t = run_transition("prod", LIVE, NEW_RELEASE)
    t.assert_safe()
    change = t.change(INVOCATION, SNAPSHOT_INVOCATION)
    assert change.kind == "update" and change.keys == ("input",)  # CRUD: invoked with the previous input
    assert t.change(RANDOM_ID, "redcap-upgrade-snapshot-attempt").kind == "replace"
    payload = provider_payload(t, SNAPSHOT_INVOCATION)
    assert (payload["tf"]["prev_input"]["release"], payload["release"]) == ("15.0.9", "15.1.0")
    attempt = t.after.named("redcap-upgrade-snapshot-attempt", RANDOM_ID).outputs["hex"]
    assert planned(t) == f"redcap-prod-15-0-9-to-15-1-0-{attempt}"
    # The rollout comes after the snapshot in the update.
    order = [s.urn for s in t.steps]
    snapshot_urn = next(u for u in order if u.endswith(f"::{SNAPSHOT_INVOCATION}"))
    rollout_urn = next(s.urn for s in t.steps if s.type == TASK_DEFINITION and s.op == "create-replacement")
    assert order.index(snapshot_urn) < order.index(rollout_urn)


@pytest.mark.parametrize("overrides", [
    {},                                     # the same release, re-run
    {"deployTag": "15.0.9-site2"},          # a rebuilt image of the same release
    {"cronMinutes": 5},                     # anything else
    {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final", "previousCluster": {"deletionProtection": True}}},
], ids=["re-run", "same-release-new-image", "other-setting", "restore-in-place"])
def test_nothing_but_a_release_change_takes_a_snapshot(overrides):
    t = run_transition("prod", LIVE, {**LIVE, **overrides})
    assert t.change(INVOCATION, SNAPSHOT_INVOCATION).kind == "same"
    assert t.change(RANDOM_ID, "redcap-upgrade-snapshot-attempt").kind == "same"


def test_the_first_deploy_creates_the_invocation_and_takes_no_snapshot():
    first = transition(StackRun(stack="prod", resources=[], outputs={}, secret_outputs=set(), config={}),
                       cached_run("prod", LIVE))
    assert first.change(INVOCATION, SNAPSHOT_INVOCATION).kind == "create"
    assert planned(first) is None


def test_the_same_release_change_twice_is_two_snapshots_and_back_is_one_too():
    forth = run_transition("prod", LIVE, NEW_RELEASE)
    back = run_transition("prod", NEW_RELEASE, LIVE)
    names = [planned(forth), planned(back)]
    assert names[0].startswith("redcap-prod-15-0-9-to-15-1-0-") and names[1].startswith("redcap-prod-15-1-0-to-15-0-9-")
    # Forth again from a state that went back: its attempt was drawn anew (a RandomId replaced
    # at each change), so the name differs from the first time.
    again = transition(back.after, forth.after)
    assert again.change(RANDOM_ID, "redcap-upgrade-snapshot-attempt").kind == "replace"
    assert planned(again).startswith("redcap-prod-15-0-9-to-15-1-0-")


def test_destroy_invokes_nothing_that_deletes_snapshots_and_keeps_them():
    d = destroy(cached_run("prod", {**LIVE, "deletionProtection": False}))
    assert (INVOCATION, SNAPSHOT_INVOCATION) in d.deletes  # CRUD: invoked with action delete: no-op
    # The snapshots are not resources of the stack: nothing in the state names them.
    assert not [r for r in cached_run("prod", LIVE).resources if r.type == "aws:rds/clusterSnapshot:ClusterSnapshot"]


def test_switching_the_snapshot_off_removes_its_function_and_the_gate():
    t = run_transition("prod", LIVE, {**LIVE, "upgrade": {"snapshot": False}})
    t.assert_safe()
    assert (INVOCATION, SNAPSHOT_INVOCATION) in t.deletes and (FUNCTION, "redcap-upgrade-snapshot-function") in t.deletes
    assert "dbUpgradeSnapshotIdentifier" not in t.after.outputs


# --- the database upgrade ----------------------------------------------------------------------------

@pytest.mark.parametrize("stack, overrides, runtime", [
    ("prod", DATABASE, "ecs"), ("dev", {"upgrade": {"database": True, "snapshot": True}}, "express"),
    ("dev", {"upgrade": {"database": True, "snapshot": True}, "express": None}, "apprunner")])
def test_the_upgrade_task_is_the_service_image_and_contract_with_the_upgrade_command(stack, overrides, runtime):
    run = cached_run(stack, overrides)
    task = run.named("redcap-db-upgrade-task", TASK_DEFINITION)
    (container,) = json.loads(task.inputs["containerDefinitions"])
    assert container["command"] == ["upgrade-database"] and container["image"] == run.outputs["imageUri"]
    assert "portMappings" not in container and container["name"] == "redcap"
    # Read-only like the service's containers, with the same writable task volumes.
    service_task = next((r for r in run.of_type(TASK_DEFINITION) if r.name == "redcap-task"), None)
    assert container["readonlyRootFilesystem"] is True
    if service_task is not None:
        (served,) = json.loads(service_task.inputs["containerDefinitions"])
        assert container["mountPoints"] == served["mountPoints"]
        assert task.inputs["volumes"] == service_task.inputs["volumes"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == run.outputs["redcapUpgradeLogGroup"]
    assert container["logConfiguration"]["options"]["awslogs-stream-prefix"] == "upgrade"
    # The same environment and grants as the serving containers (components/runtime.py).
    runtime_policy = next(r for r in run.resources if r.type == "aws:iam/rolePolicy:RolePolicy"
                          and r.name == "redcap-runtime")
    assert run.named("redcap-db-upgrade-runtime").inputs["policy"] == runtime_policy.inputs["policy"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["DB_HOST"] == run.outputs["dbEndpoint"] and environment["REDCAP_CONFIG_SQL_MODE"] == "onInstall"
    assert (task.inputs["networkMode"], task.inputs["requiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
    # The function knows the runtime it waits for; the invocation waits for the rollout.
    variables = run.named("redcap-db-upgrade-function", FUNCTION).inputs["environment"]["variables"]
    assert variables["RUNTIME"] == runtime and variables["IMAGE_URI"] == run.outputs["imageUri"]
    assert variables["TASK_DEFINITION"] == task.outputs["arn"]
    assert variables["DB_CLUSTER_IDENTIFIER"] == run.outputs["dbClusterIdentifier"]
    assert variables["SUBNETS"] == "subnet-private-a,subnet-private-b"
    type_, name = RUNTIME_RESOURCES[runtime]
    service = run.named(name, type_)
    assert variables["SERVICE_ARN"] == (service.outputs.get("serviceArn") or service.outputs["arn"])
    invocation = run.named(UPGRADE_INVOCATION, INVOCATION)
    assert depends_on(run, invocation, service.urn) and invocation.inputs["lifecycleScope"] == "CRUD"
    assert depends_on(run, invocation, run.named(SNAPSHOT_INVOCATION, INVOCATION).urn)
    assert run.outputs["redcapDatabaseUpgrade"]["status"] == "current"
    if runtime == "ecs":  # and for the check that the rollout ended on the new revision
        assert service.inputs["waitForSteadyState"] is True
        assert depends_on(run, invocation, run.named("redcap-rollout-invocation", INVOCATION).urn)


def test_the_upgrade_function_may_run_only_its_task_and_read_only_the_rollout():
    run = cached_run("prod", DATABASE)
    statements = {s["Sid"]: s for s in json.loads(run.named("redcap-db-upgrade-policy").inputs["policy"])["Statement"]}
    cluster = run.named("redcap-db-upgrade-cluster").outputs["arn"]
    assert statements["RunTheUpgradeTask"]["Resource"] == [
        "arn:aws:ecs:us-east-1:123456789012:task-definition/redcap-prod-upgrade:*"]
    assert statements["RunTheUpgradeTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    assert statements["FindARunningUpgradeTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    assert statements["PassTheTaskRoles"]["Resource"] == sorted([
        run.named("redcap-db-upgrade-execution-role").outputs["arn"], run.named("redcap-db-upgrade-task-role").outputs["arn"]])
    assert statements["SeeTheRollout"] == {"Effect": "Allow", "Action": ["ecs:DescribeServices"], "Sid": "SeeTheRollout",
                                           "Resource": [run.named("redcap-service", "aws:ecs/service:Service").outputs["arn"]]}
    assert set(statements) == {"WriteLogs", "RunTheUpgradeTask", "PassTheTaskRoles", "WatchTheUpgradeTask",
                               "FindARunningUpgradeTask", "ReadTheTaskLog", "SeeTheRollout", "SeeTheRolloutImage"}
    apprunner = cached_run("dev", {"upgrade": {"database": True, "snapshot": True}, "express": None})
    statements = {s["Sid"]: s for s in json.loads(apprunner.named("redcap-db-upgrade-policy").inputs["policy"])["Statement"]}
    assert statements["SeeTheRollout"]["Action"] == ["apprunner:DescribeService", "apprunner:ListOperations"]
    assert "SeeTheRolloutImage" not in statements


def test_a_new_release_runs_the_upgrade_once_after_the_snapshot():
    t = run_transition("prod", DATABASE, {**DATABASE, **NEW_RELEASE})
    t.assert_safe()
    assert t.change(INVOCATION, UPGRADE_INVOCATION).kind == "update"
    payload = provider_payload(t, UPGRADE_INVOCATION)
    assert (payload["tf"]["prev_input"]["release"], payload["release"]) == ("15.0.9", "15.1.0")
    order = [s.urn for s in t.steps]
    snapshot = next(i for i, u in enumerate(order) if u.endswith(f"::{SNAPSHOT_INVOCATION}"))
    upgrade = next(i for i, u in enumerate(order) if u.endswith(f"::{UPGRADE_INVOCATION}"))
    # The new task definition revision is the rollout (the mock's revision ARN does not change, so
    # the service's own update does not show here).
    rollout = next(i for i, s in enumerate(t.steps) if s.type == TASK_DEFINITION and s.op == "create-replacement"
                   and s.name == "redcap-task")
    assert snapshot < rollout < upgrade
    for same in ({**DATABASE, "deployTag": "15.0.9-site2"}, {**DATABASE, "cronMinutes": 5}):
        other = run_transition("prod", DATABASE, same)
        assert other.change(INVOCATION, UPGRADE_INVOCATION).kind == "same"


def test_switching_the_database_upgrade_on_and_off_touches_no_data():
    on = run_transition("prod", LIVE, DATABASE)
    on.assert_safe()
    assert on.change(INVOCATION, UPGRADE_INVOCATION).kind == "create" and not on.replaces and not on.deletes
    off = run_transition("prod", DATABASE, LIVE)
    off.assert_safe()
    assert {k for k in off.deletes if "upgrade" not in k[1]} == set(), off.describe()


def test_upgrade_names_carry_the_stage():
    run = cached_run("prod", DATABASE)
    names = {r.inputs.get("name") or r.inputs.get("family") for r in run.resources if r.name.startswith("redcap-db-upgrade")
             and r.custom and r.type in (FUNCTION, TASK_DEFINITION, "aws:ecs/cluster:Cluster",
                                         "aws:cloudwatch/logGroup:LogGroup")}
    assert names == {"redcap-prod-db-upgrade", "redcap-prod-upgrade", "/ecs/redcap-prod-upgrade",
                     "/aws/lambda/redcap-prod-db-upgrade"}
    assert up.snapshot_prefix("Prod_EU") == "redcap-prod-eu"


def test_results_are_read_defensively():
    assert up.parse_result(None) == {} and up.parse_result("not json") == {} and up.parse_result("[1]") == {}
    assert up.parse_result('{"snapshotIdentifier": "x"}') == {"snapshotIdentifier": "x"}


def test_before_the_new_zone_is_delegated_no_runtime_serves_so_nothing_is_upgraded():
    """ECS's phase one (docs/domains.md) runs no service: the upgrade waits for the stage's phase two."""
    run = cached_run("prod", {"upgrade": {"database": True}})
    assert not [r for r in run.resources if r.name.startswith("redcap-db-upgrade")]
    assert "redcapDatabaseUpgrade" not in run.outputs and "dbUpgradeSnapshotIdentifier" in run.outputs
