"""The transition helper itself (tests/transitions.py), on small synthetic runs: each engine rule
it models, proven independently of the program."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import Recorded, StackRun, run_program
from transitions import (AUTO_NAMED, FORCE_NEW, format_identity, physical_identities, transition)

RECORD = "aws:route53/record:Record"
ZONE = "aws:route53/zone:Zone"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SERVICE = "aws:apprunner/service:Service"
IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
CLUSTER = "aws:rds/cluster:Cluster"
KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
COMPONENT = "redcap:test:Thing"


def stack_urn(stack: str) -> str:
    return f"urn:pulumi:{stack}::redcap::pulumi:pulumi:Stack::redcap-{stack}"


def make_urn(stack: str, parent: str, type_: str, name: str) -> str:
    chain = type_ if parent == stack_urn(stack) else f"{parent.split('::')[2]}${type_}"
    return f"urn:pulumi:{stack}::redcap::{chain}::{name}"


def res(stack: str, type_: str, name: str, inputs: dict[str, Any] | None = None, *, parent: str = "",
        custom: bool = True, deps: dict[str, list[str]] | None = None, **options: Any) -> Recorded:
    parent = parent or stack_urn(stack)
    return Recorded(urn=make_urn(stack, parent, type_, name), type=type_, name=name, custom=custom,
                    inputs=inputs or {}, parent=parent, property_dependencies=deps or {},
                    dependencies=sorted({u for us in (deps or {}).values() for u in us}), **options)


def run(stack: str, *resources: Recorded) -> StackRun:
    return StackRun(stack=stack, resources=list(resources), outputs={}, secret_outputs=set(),
                    config={"aws:region": "us-east-1"})


def ops(t) -> list[tuple[str, str]]:
    return [(s.op, s.name) for s in t.steps]


# --- classification ---------------------------------------------------------------------------

def test_create_update_same_delete() -> None:
    before = run("s", res("s", LOG_GROUP, "kept", {"name": "/a", "retentionInDays": 30.0}),
                 res("s", LOG_GROUP, "same", {"name": "/b"}),
                 res("s", LOG_GROUP, "gone", {"name": "/c"}))
    after = run("s", res("s", LOG_GROUP, "kept", {"name": "/a", "retentionInDays": 90.0}),
                res("s", LOG_GROUP, "same", {"name": "/b"}),
                res("s", LOG_GROUP, "new", {"name": "/d"}))
    t = transition(before, after)
    assert t.creates == {(LOG_GROUP, "new")}
    assert t.updates == {(LOG_GROUP, "kept")}
    assert t.deletes == {(LOG_GROUP, "gone")}
    assert t.change(LOG_GROUP, "same").kind == "same"
    assert t.change(LOG_GROUP, "kept").keys == ("retentionInDays",)
    assert ops(t) == [("update", "kept"), ("create", "new"), ("delete", "gone")]
    t.assert_safe()


def test_force_new_input_replaces_create_before_delete() -> None:
    assert "serviceName" in FORCE_NEW[SERVICE]
    before = run("s", res("s", SERVICE, "svc", {"serviceName": "a"}), res("s", LOG_GROUP, "x", {"name": "/x"}))
    after = run("s", res("s", SERVICE, "svc", {"serviceName": "b"}), res("s", LOG_GROUP, "x", {"name": "/x"}))
    t = transition(before, after)
    change = t.change(SERVICE, "svc")
    assert (change.kind, change.replace_keys, change.delete_before_replace) == ("replace", ("serviceName",), False)
    assert ops(t) == [("create-replacement", "svc"), ("delete-replaced", "svc")]
    assert t.replaces == {(SERVICE, "svc")} and t.deletes == set()


def test_non_force_new_change_is_an_update() -> None:
    assert "retentionInDays" not in FORCE_NEW[LOG_GROUP]
    t = transition(run("s", res("s", LOG_GROUP, "g", {"name": "/g", "retentionInDays": 1.0})),
                   run("s", res("s", LOG_GROUP, "g", {"name": "/g", "retentionInDays": 7.0})))
    assert ops(t) == [("update", "g")]


def test_delete_before_replace_option_deletes_first() -> None:
    before = run("s", res("s", SERVICE, "svc", {"serviceName": "a", "encryptionConfiguration": {"kmsKey": "k1"}}))
    after = run("s", res("s", SERVICE, "svc", {"serviceName": "a", "encryptionConfiguration": {"kmsKey": "k2"}},
                         delete_before_replace=True))
    t = transition(before, after)
    assert t.change(SERVICE, "svc").replace_keys == ("encryptionConfiguration",)
    assert ops(t) == [("delete-replaced", "svc"), ("create-replacement", "svc")]
    assert t.collisions == []


def test_bridge_deletes_first_when_an_auto_named_name_is_set_and_kept() -> None:
    # logGroupClass forces a replacement; the explicit, unchanged `name` makes the bridge replace
    # delete-before-replace (pulumi-terraform-bridge nameRequiresDeleteBeforeReplace).
    assert AUTO_NAMED.get(LOG_GROUP) == "name" and AUTO_NAMED.get(SERVICE) is None
    before = run("s", res("s", LOG_GROUP, "g", {"name": "/g", "logGroupClass": "STANDARD"}))
    after = run("s", res("s", LOG_GROUP, "g", {"name": "/g", "logGroupClass": "INFREQUENT_ACCESS"}))
    t = transition(before, after)
    assert t.change(LOG_GROUP, "g").delete_before_replace
    assert ops(t) == [("delete-replaced", "g"), ("create-replacement", "g")]
    t.assert_safe()


def test_ignore_changes_keeps_the_old_value() -> None:
    before = run("s", res("s", CLUSTER, "db", {"clusterIdentifier": "c", "engineVersion": "8.0.1"}))
    after = run("s", res("s", CLUSTER, "db", {"clusterIdentifier": "c", "engineVersion": "8.0.2"},
                         ignore_changes=["engineVersion"]))
    assert transition(before, after).change(CLUSTER, "db").kind == "same"


def test_replace_on_changes_forces_replacement() -> None:
    before = run("s", res("s", LOG_GROUP, "g", {"name": "/g", "retentionInDays": 1.0}))
    after = run("s", res("s", LOG_GROUP, "g", {"name": "/g", "retentionInDays": 7.0},
                         replace_on_changes=["retentionInDays"]))
    assert transition(before, after).change(LOG_GROUP, "g").kind == "replace"


def test_new_dependency_value_counts_as_changed_and_can_force_replacement() -> None:
    # The key is replaced: its ARN is new, so the cluster's kmsKeyId (ForceNew) changes.
    key_v1 = res("s", KEY, "key", {"description": "a"})
    key_v2 = res("s", KEY, "key", {"description": "a", "customerMasterKeySpec": "RSA_2048"})
    assert "customerMasterKeySpec" in FORCE_NEW[KEY] and "kmsKeyId" in FORCE_NEW[CLUSTER]
    cluster = dict(inputs={"clusterIdentifier": "c", "kmsKeyId": "arn:key"}, deps={"kmsKeyId": [key_v1.urn]})
    t = transition(run("s", key_v1, res("s", CLUSTER, "db", **cluster)),
                   run("s", key_v2, res("s", CLUSTER, "db", **cluster)))
    assert t.change(CLUSTER, "db").replace_keys == ("kmsKeyId",)
    # ... and its identifier is unchanged: create-before-delete hits "already exists".
    assert [c.kind for c in t.collisions] == ["replacement-already-exists"]


def test_a_replaced_revisioned_resource_has_a_new_arn_under_the_same_name() -> None:
    # A new ECS task definition revision keeps its family but not its ARN (family:N+1), so what
    # takes the ARN sees a change even though the mocks give both revisions one ARN.
    task = "aws:ecs/taskDefinition:TaskDefinition"
    invocation = "aws:lambda/invocation:Invocation"
    assert "containerDefinitions" in FORCE_NEW[task] and "input" not in FORCE_NEW[invocation]
    v1 = res("s", task, "task", {"family": "redcap-s", "containerDefinitions": "[1]"})
    v2 = res("s", task, "task", {"family": "redcap-s", "containerDefinitions": "[2]"})
    check = dict(inputs={"functionName": "f", "input": '{"taskDefinition": "arn:task:1"}'}, deps={"input": [v1.urn]})
    t = transition(run("s", v1, res("s", invocation, "check", **check)),
                   run("s", v2, res("s", invocation, "check", **check)))
    assert t.change(task, "task").kind == "replace"
    # Without lifecycleScope (CREATE_ONLY) a new input replaces the invocation: it runs again.
    assert t.change(invocation, "check").kind == "replace"
    assert ops(t).index(("create-replacement", "check")) > ops(t).index(("create-replacement", "task"))


# --- protect, retainOnDelete, parents -----------------------------------------------------------

def test_delete_of_a_resource_protected_in_the_state_is_refused() -> None:
    t = transition(run("s", res("s", CLUSTER, "db", {"clusterIdentifier": "c"}, protect=True),
                       res("s", LOG_GROUP, "g", {"name": "/g"})),
                   run("s", res("s", LOG_GROUP, "g2", {"name": "/g2"})))
    assert [(s.op, s.name) for s in t.refused] == [("refused-delete", "db")]
    with pytest.raises(AssertionError, match=r"refused: delete of aws:rds/cluster:Cluster db: protected in the state\n"
                                             r"  pulumi up fails at step 3, after 2 step\(s\) already ran"):
        t.assert_safe()


def test_replacement_is_refused_only_when_protected_before_and_after() -> None:
    before = run("s", res("s", SERVICE, "svc", {"serviceName": "a"}, protect=True))
    still = run("s", res("s", SERVICE, "svc", {"serviceName": "b"}, protect=True))
    lowered = run("s", res("s", SERVICE, "svc", {"serviceName": "b"}, protect=False))
    assert [s.op for s in transition(before, still).refused] == ["refused-replace"]
    assert transition(before, lowered).refused == []


def test_protect_and_retain_are_inherited_from_the_parent_in_the_state() -> None:
    parent = res("s", COMPONENT, "thing", custom=False, protect=True, retain_on_delete=True)
    child = res("s", LOG_GROUP, "thing-logs", {"name": "/t"}, parent=parent.urn)
    t = transition(run("s", parent, child), run("s"))
    assert {s.name for s in t.refused} == {"thing", "thing-logs"}
    parent = res("s", COMPONENT, "thing", custom=False, retain_on_delete=True)
    child = res("s", LOG_GROUP, "thing-logs", {"name": "/t"}, parent=parent.urn)
    t = transition(run("s", parent, child), run("s"))
    # Children go before their parent; a retained resource is only dropped from state.
    assert ops(t) == [("discard", "thing-logs"), ("discard", "thing")]
    assert t.discards == {(LOG_GROUP, "thing-logs"), (COMPONENT, "thing")} and t.deletes == set()


def test_protect_is_inherited_client_side_in_the_recording(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: redcap\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(textwrap.dedent("""
        import pulumi, pulumi_aws as aws
        class Thing(pulumi.ComponentResource):
            def __init__(self, name, opts=None):
                super().__init__("redcap:test:Thing", name, None, opts)
                aws.cloudwatch.LogGroup(f"{name}-logs", opts=pulumi.ResourceOptions(parent=self))
                self.register_outputs({})
        Thing("kept", pulumi.ResourceOptions(protect=True, retain_on_delete=True))
        """))
    recorded = run_program("s", root=tmp_path)
    child = next(r for r in recorded.resources if r.name == "kept-logs")
    assert child.protect is True            # the SDK copies the parent's protect into the request
    assert child.retain_on_delete is None   # ... but not retainOnDelete: the engine inherits that one


def test_deletes_run_last_in_reverse_order_of_the_state() -> None:
    a = res("s", LOG_GROUP, "a", {"name": "/a"})
    b = res("s", LOG_GROUP, "b", {"name": "/b"}, deps={"kmsKeyId": [a.urn]})
    before = run("s", a, b, res("s", SERVICE, "svc", {"serviceName": "x"}))
    after = run("s", res("s", SERVICE, "svc", {"serviceName": "y"}), res("s", LOG_GROUP, "c", {"name": "/c"}))
    assert ops(transition(before, after)) == [
        ("create-replacement", "svc"), ("create", "c"), ("delete-replaced", "svc"), ("delete", "b"), ("delete", "a")]


def test_an_alias_takes_the_old_resource_over() -> None:
    old_parent = res("s", "redcap:a:Old", "x", custom=False)
    new_parent = res("s", "redcap:b:New", "x", custom=False)
    old_child = res("s", RECORD, "site", {"zoneId": "Z1", "name": "a.example.org", "type": "A"}, parent=old_parent.urn)
    new_child = res("s", RECORD, "site", {"zoneId": "Z1", "name": "a.example.org", "type": "A"}, parent=new_parent.urn,
                    aliases=[old_child.urn])
    t = transition(run("s", old_parent, old_child), run("s", new_parent, new_child))
    assert t.change(RECORD, "site").kind == "same" and t.change(RECORD, "site").old_urn == old_child.urn
    assert t.deletes == {("redcap:a:Old", "x")} and t.creates == {("redcap:b:New", "x")}
    t.assert_safe()
    # The parent's alias is enough: the child's old URN follows from it.
    new_parent_aliased = res("s", "redcap:b:New", "x", custom=False, aliases=[old_parent.urn])
    new_child_plain = res("s", RECORD, "site", {"zoneId": "Z1", "name": "a.example.org", "type": "A"},
                          parent=new_parent_aliased.urn)
    t = transition(run("s", old_parent, old_child), run("s", new_parent_aliased, new_child_plain))
    assert t.steps == [] and t.collisions == []


# --- collisions ---------------------------------------------------------------------------------

def site_record(parent: Recorded, **inputs: Any) -> Recorded:
    return res("s", RECORD, "site", {"zoneId": "Z1", "name": "redcap.example.org.", "type": "A", **inputs},
               parent=parent.urn)


def test_a_record_moving_between_owners_is_deleted_by_the_old_owner() -> None:
    apprunner = res("s", "redcap:apprunner:AppRunnerService", "redcap", custom=False)
    ecs = res("s", "redcap:ecs:FargateService", "redcap", custom=False)
    before = run("s", apprunner, site_record(apprunner, allowOverwrite=True))
    t = transition(before, run("s", ecs, site_record(ecs, allowOverwrite=True)))
    [c] = t.collisions
    assert c.kind == "delete-removes-new"
    assert c.identity == ("route53-record", "global", "Z1", "redcap.example.org", "A", "")
    assert "removes it (the provider finds it by name, not by id)" in c.why
    with pytest.raises(AssertionError, match="collision: delete-removes-new: route53-record Z1 redcap.example.org A"):
        t.assert_safe()
    # Without allowOverwrite the create fails instead.
    [c] = transition(before, run("s", ecs, site_record(ecs))).collisions
    assert c.kind == "already-exists"


def test_replacement_keeping_its_identity_hits_already_exists() -> None:
    before = run("s", res("s", SERVICE, "svc", {"serviceName": "a", "encryptionConfiguration": {"kmsKey": "k1"}}))
    after = run("s", res("s", SERVICE, "svc", {"serviceName": "a", "encryptionConfiguration": {"kmsKey": "k2"}}))
    [c] = transition(before, after).collisions
    assert (c.kind, c.identity) == ("replacement-already-exists", ("apprunner-service", "us-east-1", "a"))


def test_retained_old_resource_keeps_its_name() -> None:
    before = run("s", res("s", IDENTITY, "old", {"emailIdentity": "a@example.org"}, retain_on_delete=True))
    after = run("s", res("s", IDENTITY, "new", {"emailIdentity": "A@example.org"}))
    t = transition(before, after)
    assert ops(t) == [("create", "new"), ("discard", "old")]
    [c] = t.collisions
    assert c.kind == "already-exists" and "kept in AWS (retainOnDelete)" in c.why


def test_two_live_owners_in_one_run() -> None:
    t = transition(run("s"), run("s", res("s", LOG_GROUP, "a", {"name": "/x"}), res("s", LOG_GROUP, "b", {"name": "/x"})))
    assert [c.kind for c in t.collisions] == ["duplicate"]


def test_a_replaced_setting_is_removed_by_the_delete_of_the_original() -> None:
    bucket = res("s", BUCKET, "b", {"bucket": "my-bucket"})
    before = run("s", bucket, res("s", POLICY, "p", {"bucket": "my-bucket", "policy": "{}"}, replace_on_changes=["policy"]))
    after = run("s", bucket, res("s", POLICY, "p", {"bucket": "my-bucket", "policy": "{\"a\":1}"},
                                 replace_on_changes=["policy"]))
    assert [c.kind for c in transition(before, after).collisions] == ["delete-removes-new"]


def test_final_snapshot_names_stay_taken() -> None:
    before = run("s", res("s", CLUSTER, "db", {"clusterIdentifier": "c1", "finalSnapshotIdentifier": "c-final"}))
    after = run("s", res("s", CLUSTER, "db2", {"clusterIdentifier": "c2", "finalSnapshotIdentifier": "c-final"}))
    assert [c.kind for c in transition(before, after).collisions] == ["snapshot-name-reused"]


# --- physical identities --------------------------------------------------------------------------

def test_values_of_server_named_resources_are_scoped_to_that_resource() -> None:
    def stage(stack: str) -> StackRun:
        zone = res(stack, ZONE, "zone", {"name": "redcap.example.org"})
        record = res(stack, RECORD, "site", {"zoneId": "ZMOCK", "name": "redcap.example.org", "type": "A"},
                     deps={"zoneId": [zone.urn]})
        existing = res(stack, RECORD, "apex", {"zoneId": "ZEXISTING", "name": "Example.org.", "type": "A"})
        return run(stack, zone, record, existing)
    dev, prod = physical_identities(stage("dev")), physical_identities(stage("prod"))
    # Records in each stage's own zone never meet (a zone id is AWS's), records in one existing zone do.
    assert set(dev) & set(prod) == {("route53-record", "global", "ZEXISTING", "example.org", "A", "")}
    [own] = [i for i in dev if i[2] != "ZEXISTING"]
    assert format_identity(own) == "route53-record ZMOCK [value of zone] redcap.example.org A "
    # Zones themselves have no identity: AWS allows several zones with one name.
    assert not any(i[0].startswith("route53-zone") for i in dev)


def test_auto_named_resources_have_no_identity() -> None:
    assert physical_identities(run("s", res("s", LOG_GROUP, "g", {}), res("s", BUCKET, "b", {}))) == {}


def test_an_alias_spec_in_a_program_is_resolved_like_the_engine(tmp_path: Path) -> None:
    def program(folder: str, component_type: str, alias: str) -> StackRun:
        root = tmp_path / folder
        root.mkdir()
        (root / "Pulumi.yaml").write_text("name: redcap\nruntime: python\n")
        (root / "__main__.py").write_text(textwrap.dedent(f"""
            import pulumi, pulumi_aws as aws
            class Thing(pulumi.ComponentResource):
                def __init__(self, name, opts=None):
                    super().__init__("{component_type}", name, None, opts)
                    aws.cloudwatch.LogGroup(f"{{name}}-logs", name="/thing",
                                            opts=pulumi.ResourceOptions(parent=self))
                    self.register_outputs({{}})
            Thing("thing", pulumi.ResourceOptions(aliases=[{alias}]))
            """))
        return run_program("s", root=root)
    before = program("a", "redcap:old:Thing", "")
    after = program("b", "redcap:new:Thing", 'pulumi.Alias(type_="redcap:old:Thing")')
    t = transition(before, after)
    # The component and, through it, its child keep their state: nothing is created or deleted.
    assert t.steps == [] and t.change(LOG_GROUP, "thing-logs").old_urn == \
        "urn:pulumi:s::redcap::redcap:old:Thing$aws:cloudwatch/logGroup:LogGroup::thing-logs"
    # Without the alias the log group moves: created anew while the old one still holds its name.
    t = transition(before, program("c", "redcap:new:Thing", ""))
    assert [c.kind for c in t.collisions] == ["already-exists"]


def test_every_recorded_type_has_a_force_new_entry() -> None:
    from harness import cached_run, stack_files
    from variants import VARIANTS

    runs = [cached_run(stack, overrides) for _, stack, overrides in VARIANTS]
    runs += [cached_run(stack) for stack in stack_files()]
    recorded = {r.type for run in runs for r in run.resources if r.custom}
    assert sorted(recorded - set(FORCE_NEW)) == [], \
        "look these up in the provider (tests/force_new.py says how) and add them to FORCE_NEW"


def test_a_name_from_a_new_random_value_is_a_new_name() -> None:
    def stage(byte_length: float) -> StackRun:
        suffix = res("s", "random:index/randomId:RandomId", "suffix", {"byteLength": byte_length})
        group = res("s", LOG_GROUP, "g", {"name": "/db/a1b2c3d4", "logGroupClass": "STANDARD"},
                    deps={"name": [suffix.urn]})
        return run("s", suffix, group)
    t = transition(stage(4.0), stage(8.0))
    # The mock gives the same hex again; the real value is new, so this is create-before-delete
    # under a new name, and nothing collides.
    change = t.change(LOG_GROUP, "g")
    assert (change.kind, change.replace_keys, change.delete_before_replace) == ("replace", ("name",), False)
    assert t.collisions == []
    # With the suffix kept, the same name: the bridge deletes first.
    kept = transition(stage(4.0), run("s", stage(4.0).resources[0], dataclasses.replace(
        stage(4.0).resources[1], inputs={"name": "/db/a1b2c3d4", "logGroupClass": "INFREQUENT_ACCESS"})))
    assert kept.change(LOG_GROUP, "g").delete_before_replace and kept.collisions == []
