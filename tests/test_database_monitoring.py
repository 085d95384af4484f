"""What the cluster's instances report: Performance Insights under the stack key on every instance,
Enhanced Monitoring through a role RDS assumes (on by default where the stage keeps data), and the
cluster's Database Insights mode - and that tuning any of them changes the running cluster in
place (tests/force_new.py: none of these inputs is ForceNew).
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import yaml

from components import policies
from harness import ROOT, cached_run, depends_on
from transitions import FORCE_NEW, run_transition

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
KEY = "aws:kms/key:Key"
MONITORING_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


@lru_cache(maxsize=None)
def _stack_db(stack: str) -> str:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return json.dumps(config.get("redcap:db", {}))


def with_monitoring(stack: str, **monitoring: Any) -> dict[str, Any]:
    """Overrides that set db.monitoring keys in the stack file's db block."""
    return {"db": {**json.loads(_stack_db(stack)), "monitoring": monitoring}}


def test_prod_instances_are_monitored_alike_with_the_stack_key():
    run = cached_run("prod")
    key_arn = run.one(KEY, "redcap-key").outputs["arn"]
    instances = run.of_type(INSTANCE)
    assert len(instances) == 2  # writer and reader
    role = run.named("redcap-monitoring-role", ROLE)
    attachment = run.named("redcap-monitoring", ATTACHMENT)
    for instance in instances:
        i = instance.inputs
        assert (i["monitoringInterval"], i["performanceInsightsEnabled"], i["performanceInsightsRetentionPeriod"]) == \
            (60, True, 7)
        assert i["performanceInsightsKmsKeyId"] == key_arn
        assert i["monitoringRoleArn"] == role.outputs["arn"]
        # RDS checks the role's permissions when the instance starts using it.
        assert depends_on(run, instance, attachment.urn)
    cluster = run.one(CLUSTER).inputs
    assert (cluster["databaseInsightsMode"], cluster["performanceInsightsEnabled"],
            cluster["performanceInsightsRetentionPeriod"], cluster["performanceInsightsKmsKeyId"]) == \
        ("standard", True, 7, key_arn)


def test_the_monitoring_role_is_rds_monitoring_for_this_account_only():
    run = cached_run("prod")
    trust = json.loads(run.named("redcap-monitoring-role", ROLE).inputs["assumeRolePolicy"])
    assert trust["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}]
    assert "monitoring.rds.amazonaws.com" in policies.SOURCE_ACCOUNT_IN_TRUST
    attachment = run.named("redcap-monitoring", ATTACHMENT).inputs
    assert attachment["policyArn"] == MONITORING_POLICY
    # Nothing else may be attached to it, and it has no inline policy of ours.
    role_urn = run.named("redcap-monitoring-role", ROLE).urn
    attached = [r for r in run.resources if r.type in (ATTACHMENT, "aws:iam/rolePolicy:RolePolicy")
                and role_urn in r.property_dependencies.get("role", [])]
    assert [r.name for r in attached] == ["redcap-monitoring"]


def test_a_stage_destroyed_without_a_trace_has_no_enhanced_monitoring_by_default():
    run = cached_run("dev")
    assert [r.name for r in run.of_type(ROLE) if "monitoring" in r.name] == []
    (writer,) = run.of_type(INSTANCE)
    assert writer.inputs["monitoringInterval"] == 0 and "monitoringRoleArn" not in writer.inputs
    assert writer.inputs["performanceInsightsEnabled"] is True  # Performance Insights is free at 7 days


def test_every_setting_reaches_every_instance_and_the_cluster():
    run = cached_run("prod", with_monitoring("prod", enhancedMonitoringSeconds=15, databaseInsights="advanced",
                                             performanceInsightsRetentionDays=465))
    for instance in run.of_type(INSTANCE):
        assert (instance.inputs["monitoringInterval"], instance.inputs["performanceInsightsRetentionPeriod"]) == (15, 465)
    cluster = run.one(CLUSTER).inputs
    assert (cluster["databaseInsightsMode"], cluster["performanceInsightsRetentionPeriod"]) == ("advanced", 465)
    dev = cached_run("dev", with_monitoring("dev", enhancedMonitoringSeconds=60))
    assert dev.one(INSTANCE).inputs["monitoringRoleArn"] == dev.named("redcap-monitoring-role", ROLE).outputs["arn"]


def test_monitoring_inputs_replace_nothing():
    """The provider's ForceNew lists (terraform-provider-aws rds/cluster.go, cluster_instance.go)."""
    for type_ in (CLUSTER, INSTANCE):
        assert not {p for p in FORCE_NEW[type_] if p.startswith(("monitoring", "performanceInsights", "databaseInsights"))}


def test_switching_monitoring_on_and_tuning_it_updates_the_running_cluster_in_place():
    on = run_transition("dev", {}, with_monitoring("dev", enhancedMonitoringSeconds=60))
    on.assert_safe()
    assert on.change(INSTANCE, "redcap-writer").kind == "update"
    assert {(ROLE, "redcap-monitoring-role"), (ATTACHMENT, "redcap-monitoring")} <= on.creates
    assert not on.replaces and not on.deletes

    tuned = run_transition("prod", {}, with_monitoring("prod", enhancedMonitoringSeconds=1, databaseInsights="advanced",
                                                       performanceInsightsRetentionDays=731))
    tuned.assert_safe()
    assert tuned.change(CLUSTER, "redcap-cluster").kind == "update"
    assert set(tuned.change(CLUSTER, "redcap-cluster").keys) == {"databaseInsightsMode",
                                                                  "performanceInsightsRetentionPeriod"}
    for name in ("redcap-writer", "redcap-reader-1"):
        assert tuned.change(INSTANCE, name).kind == "update"
    assert not tuned.replaces and not tuned.deletes and not tuned.creates

    off = run_transition("prod", {}, with_monitoring("prod", enhancedMonitoringSeconds=0))
    off.assert_safe()
    assert {(ROLE, "redcap-monitoring-role"), (ATTACHMENT, "redcap-monitoring")} <= off.deletes
    assert not off.replaces
    assert "monitoringRoleArn" in off.change(INSTANCE, "redcap-writer").keys

