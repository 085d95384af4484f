"""The policy pack's rules over every recorded resource of every stack variant: zero violations.

The same rules run for real with `pulumi preview --policy-pack policy`; here they see exactly what
the program registers under mocks. Waivers are explicit in policy/rules.py, each with a reason.
"""
from __future__ import annotations

import pytest

from harness import StackRun, cached_run
from policy.model import Resource
from policy.rules import WAIVERS, violations_for
from variants import IDS, VARIANTS


def as_policy_resources(run: StackRun) -> list[Resource]:
    return [
        Resource.from_mock(r.type, r.name, r.inputs, r.outputs, r.id,
                           {"parent": r.parent, "protect": r.protect, "retainOnDelete": r.retain_on_delete},
                           r.urn, r.dependencies, r.property_dependencies)
        for r in run.resources
    ]


@pytest.mark.parametrize("variant_id, stack, overrides", VARIANTS, ids=IDS)
def test_no_policy_violations(variant_id, stack, overrides):
    run = cached_run(stack, overrides)
    violations = violations_for(as_policy_resources(run))
    assert violations == [], "\n".join(str(v) for v in violations)


def test_policy_sees_a_violation_the_program_would_make():
    """Guard against a hollow zero: break one recorded input and the right rule reports it."""
    run = cached_run("prod")
    resources = as_policy_resources(run)
    cluster = next(r for r in resources if r.type == "aws:rds/cluster:Cluster")
    broken = [r if r is not cluster else Resource.from_mock(
        r.type, r.name, {**r.props, "iamDatabaseAuthenticationEnabled": False}, r.outputs, r.id,
        r.options, r.urn, r.dependencies, r.property_dependencies) for r in resources]
    rule_ids = {v.rule for v in violations_for(broken)}
    assert "rds-iam-auth" in rule_ids


def test_every_waiver_has_a_reason():
    for (rule, selector), reason in WAIVERS.items():
        assert rule and selector and len(reason) > 40, (rule, selector)


def test_policy_sees_a_stage_that_keeps_data_without_backups():
    run = cached_run("prod", {"backup": {"enabled": False}})
    found = {(v.rule, v.resource_name) for v in violations_for(as_policy_resources(run))}
    assert found == {("backup-plan-coverage", "redcap-cluster"), ("backup-plan-coverage", "redcap-files")}


def test_policy_sees_an_access_key_the_program_would_hold():
    resources = as_policy_resources(cached_run("prod"))
    key = Resource.from_mock("aws:iam/accessKey:AccessKey", "redcap-s3-key", {"user": "redcap-s3-user"})
    assert {v.rule for v in violations_for([*resources, key])} == {"iam-access-key-rotation"}
    without_rotation = [r for r in resources if r.type != "aws:secretsmanager/secretRotation:SecretRotation"]
    assert {v.resource_name for v in violations_for(without_rotation)} == {"redcap-s3-user", "redcap-smtp-user"}
