"""The database's life after its first `pulumi up`, as the program declares it: names that change
with every replacement, the restore in place (two clusters side by side), the engine upgrade,
IAM authentication of a restored cluster, the salt a new stage starts with. What the engine then
does with these declarations (replacements, refused deletes, collisions) is walked through in
tests/test_walkthroughs.py.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import pytest
import yaml

from components import database as db
from harness import ROOT, Recorded, StackRun, cached_run, depends_on, is_secret_input, mock_random_id, unwrap_secrets
from transitions import FORCE_NEW

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
RANDOM_ID = "random:index/randomId:RandomId"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
INVOCATION = "aws:lambda/invocation:Invocation"
SNAPSHOT = "redcap-prod-0a1b2c3d-before-upgrade"
OLDER_SNAPSHOT = "redcap-prod-0a1b2c3d-2026-10-01"
UPGRADE = "8.0.mysql_aurora.3.11.0"
APP_RUNNER = {"express": None}  # dev without its Express block runs on App Runner

# Inputs of aws.rds.Cluster the provider marks ForceNew (the transition helper's table, taken from
# hashicorp/terraform-provider-aws internal/service/rds/cluster.go).
CLUSTER_FORCE_NEW = frozenset(p.split(".")[0] for p in FORCE_NEW[CLUSTER])


@lru_cache(maxsize=None)
def _stack_db(stack: str) -> str:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return json.dumps(config.get("redcap:db", {}))


def with_db(stack: str, **changes: Any) -> dict[str, Any]:
    """Overrides that change keys of the stack file's `db` block (as `pulumi config set --path`)."""
    return {"db": {**json.loads(_stack_db(stack)), **changes}}


def clusters(run: StackRun) -> dict[str, Recorded]:
    return {r.name: r for r in run.of_type(CLUSTER)}


# --- names unique per replacement ------------------------------------------------------------

def test_every_replacing_input_the_program_sets_is_a_keeper_of_the_name():
    """A change of any of them replaces the cluster, so it must change the identifier too."""
    for overrides in ({}, with_db("prod", dbSnapshotId=SNAPSHOT)):
        run = cached_run("prod", overrides)
        cluster = run.one(CLUSTER)
        set_force_new = {k for k in cluster.inputs if k in CLUSTER_FORCE_NEW}
        # The snapshot has its own keeper; the identifier is what the keepers name.
        tracked = set(db.replacing_inputs(kms_key_id="k", subnet_group_name="s", restored=False))
        assert set_force_new - {"snapshotIdentifier", "clusterIdentifier"} <= tracked, set_force_new - tracked
        identity = run.one(RANDOM_ID, "identity")
        assert identity.ignore_changes == ["keepers"]
        assert identity.inputs["keepers"] == {k: str(cluster.inputs[k]).lower() if isinstance(cluster.inputs[k], bool)
                                              else str(cluster.inputs[k]) for k in tracked if k in cluster.inputs} | \
            {k: "" for k in ("databaseName", "masterUsername") if k not in cluster.inputs}


def test_the_name_of_an_existing_cluster_does_not_change():
    """The keepers of a stack created before the replacing inputs were tracked stay as they were."""
    run = cached_run("prod")
    suffix = run.named("redcap-suffix", RANDOM_ID)
    assert suffix.inputs["keepers"] == {"restoreFrom": ""}
    assert run.one(CLUSTER).name == "redcap-cluster"
    assert run.one(CLUSTER).inputs["clusterIdentifier"] == f"redcap-prod-{suffix.outputs['hex']}"


@pytest.mark.parametrize("changed", sorted(db.replacing_inputs(kms_key_id="k", subnet_group_name="s", restored=False)))
def test_a_change_of_any_replacing_input_gives_new_keepers(changed):
    recorded = db.replacing_inputs(kms_key_id="arn:aws:kms:us-east-1:1:key/a", subnet_group_name="subnets-a",
                                   restored=False)
    assert db.identifier_keepers(None, recorded, recorded) == {"restoreFrom": ""}
    current = {**recorded, changed: recorded[changed] + "-other"}
    keepers = db.identifier_keepers(None, recorded, current)
    assert keepers["restoreFrom"] == "" and len(keepers["replacedFor"]) == 16
    # Stable: the same changed inputs give the same keepers on every run; another change, others.
    assert db.identifier_keepers(None, recorded, dict(current)) == keepers
    again = {**current, changed: recorded[changed] + "-third"}
    assert db.identifier_keepers(None, recorded, again)["replacedFor"] != keepers["replacedFor"]
    # A new value of the RandomId means a new identifier, hence a new final snapshot name.
    before = mock_random_id("redcap-suffix", {"byteLength": 4, "keepers": {"restoreFrom": ""}})["hex"]
    after = mock_random_id("redcap-suffix", {"byteLength": 4, "keepers": keepers})["hex"]
    assert db.final_snapshot_name(db.cluster_identifier("prod", before)) != \
        db.final_snapshot_name(db.cluster_identifier("prod", after))


def test_the_app_runner_service_is_deleted_before_it_is_replaced():
    """Its name is unique per account and region, and a new KMS key replaces it (ForceNew)."""
    run = cached_run("dev", APP_RUNNER)
    service = run.one("aws:apprunner/service:Service")
    assert service.delete_before_replace is True
    assert service.inputs["serviceName"] == "redcap-dev"  # unchanged: no replacement of live services


# --- restore in place: two clusters ------------------------------------------------------------

def test_a_restore_in_place_keeps_the_replaced_cluster_protected_next_to_the_new_one():
    run = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={"deletionProtection": True}))
    tail = db.restore_suffix(SNAPSHOT)
    found = clusters(run)
    assert set(found) == {"redcap-cluster", f"redcap-cluster{tail}"}
    old, new = found["redcap-cluster"], found[f"redcap-cluster{tail}"]
    # The stage's first cluster is declared exactly as before the restore (no update, no replace).
    first = cached_run("prod").one(CLUSTER)
    assert old.inputs == first.inputs and old.protect is True and old.ignore_changes == ["engineVersion"]
    assert new.inputs["snapshotIdentifier"] == SNAPSHOT and new.protect is True
    assert old.inputs["clusterIdentifier"] != new.inputs["clusterIdentifier"]
    assert old.inputs["finalSnapshotIdentifier"] != new.inputs["finalSnapshotIdentifier"]
    # Each has its own writer, readers and log groups.
    names = {r.name for r in run.of_type(INSTANCE)}
    assert names == {"redcap-writer", "redcap-reader-1", f"redcap-writer{tail}", f"redcap-reader-1{tail}"}
    groups = {r.inputs["name"] for r in run.of_type(LOG_GROUP) if r.inputs.get("name", "").startswith("/aws/rds/")}
    assert len(groups) == 8
    # The site and the exports follow the restored cluster.
    assert run.outputs["dbClusterIdentifier"] == new.inputs["clusterIdentifier"]
    assert run.outputs["dbPreviousClusterIdentifier"] == old.inputs["clusterIdentifier"]
    assert run.outputs["dbEndpoint"].startswith(new.inputs["clusterIdentifier"] + ".")


def test_lowering_the_replaced_clusters_protection_touches_only_that_cluster():
    kept = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={"deletionProtection": True}))
    lowered = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={"deletionProtection": False}))
    tail = db.restore_suffix(SNAPSHOT)
    old = clusters(lowered)["redcap-cluster"]
    assert old.protect is False and old.inputs["deletionProtection"] is False
    assert all(i.protect is False for i in lowered.of_type(INSTANCE) if not i.name.endswith(tail))
    new = clusters(lowered)[f"redcap-cluster{tail}"]
    assert new.protect is True and new.inputs["deletionProtection"] is True
    # Nothing else of the stage changes protection.
    before = {(r.type, r.name): r.protect for r in kept.resources}
    changed = {k for k in before if before[k] != {(r.type, r.name): r.protect for r in lowered.resources}[k]}
    assert changed == {(CLUSTER, "redcap-cluster"), (INSTANCE, "redcap-writer"), (INSTANCE, "redcap-reader-1")}


def test_the_previous_cluster_defaults_to_the_stages_protection():
    run = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={}))
    assert clusters(run)["redcap-cluster"].protect is True
    dev = cached_run("dev", with_db("dev", dbSnapshotId=SNAPSHOT, previousCluster={}))
    assert clusters(dev)["redcap-cluster"].protect is False


def test_a_second_restore_keeps_the_first_restored_cluster_under_its_names():
    first = cached_run("prod", with_db("prod", dbSnapshotId=OLDER_SNAPSHOT))
    second = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={"dbSnapshotId": OLDER_SNAPSHOT}))
    older = db.restore_suffix(OLDER_SNAPSHOT)
    kept = clusters(second)[f"redcap-cluster{older}"]
    assert kept.inputs == first.one(CLUSTER).inputs
    assert set(clusters(second)) == {f"redcap-cluster{older}", f"redcap-cluster{db.restore_suffix(SNAPSHOT)}"}


def test_a_restored_cluster_alone_keeps_the_names_single_cluster_stacks_gave_it():
    """Stacks restored before two clusters could coexist called its RandomId and log groups
    `redcap-suffix` and `redcap-log-*`: aliases keep them (no new identifier for a live cluster)."""
    run = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT))
    tail = db.restore_suffix(SNAPSHOT)
    suffix = run.named(f"redcap-suffix{tail}", RANDOM_ID)
    assert alias_names(suffix) == ["redcap-suffix"]
    for group in (r for r in run.of_type(LOG_GROUP) if r.inputs.get("name", "").startswith("/aws/rds/")):
        assert alias_names(group) == [group.name.replace(tail, "")]
    # With the replaced cluster declared, the old names are the first cluster's own.
    both = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={}))
    assert alias_names(both.named(f"redcap-suffix{tail}", RANDOM_ID)) == []


def alias_names(r: Recorded) -> list[str]:
    """The old names a resource's aliases give (same type and parent)."""
    assert all(isinstance(a, dict) and not a["type"] and not a["parent"] and not a["noParent"] for a in r.aliases)
    return [a["name"] for a in r.aliases]


def test_the_previous_cluster_needs_a_restore_and_another_snapshot():
    with pytest.raises(ValueError, match="another snapshot"):
        db.cluster_specs(SNAPSHOT, True, db.PreviousClusterArgs(SNAPSHOT, True))
    specs = db.cluster_specs(SNAPSHOT, True, db.PreviousClusterArgs(None, False))
    assert [(s.snapshot_id, s.serving, s.protect) for s in specs] == [(None, False, False), (SNAPSHOT, True, True)]


# --- engine upgrade ------------------------------------------------------------------------------

def test_without_an_upgrade_the_engine_version_is_awss_to_move():
    cluster = cached_run("prod").one(CLUSTER)
    assert cluster.ignore_changes == ["engineVersion"] and "applyImmediately" not in cluster.inputs


def test_engine_upgrade_to_is_a_real_update_applied_now():
    run = cached_run("prod", with_db("prod", engineUpgradeTo=UPGRADE))
    cluster = run.one(CLUSTER)
    assert cluster.inputs["engineVersion"] == UPGRADE
    assert cluster.ignore_changes == [] and cluster.inputs["applyImmediately"] is True
    assert "allowMajorVersionUpgrade" not in cluster.inputs  # Aurora MySQL 3 to 3 is a minor upgrade
    # Instances follow their cluster; the name stays (an upgrade is no replacement).
    assert all(i.ignore_changes == ["engineVersion"] for i in run.of_type(INSTANCE))
    assert cluster.inputs["clusterIdentifier"] == cached_run("prod").one(CLUSTER).inputs["clusterIdentifier"]


def test_an_upgrade_during_a_restore_leaves_the_replaced_cluster_alone():
    run = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={}, engineUpgradeTo=UPGRADE))
    found = clusters(run)
    assert found["redcap-cluster"].ignore_changes == ["engineVersion"]
    assert found["redcap-cluster"].inputs["engineVersion"] == "8.0.mysql_aurora.3.10.3"
    assert found[f"redcap-cluster{db.restore_suffix(SNAPSHOT)}"].inputs["engineVersion"] == UPGRADE


# --- IAM authentication of a restored cluster --------------------------------------------------

@pytest.mark.parametrize("stack, runtime, runtime_type", [
    ("prod", {"zoneDelegated": True}, "aws:ecs/taskDefinition:TaskDefinition"),
    ("dev", {}, "aws:ecs/expressGatewayService:ExpressGatewayService"),
    ("dev", APP_RUNNER, "aws:apprunner/service:Service"),
], ids=["ecs", "express", "apprunner"])
def test_the_runtime_reaches_a_restored_cluster_only_after_iam_auth_is_switched_on(stack, runtime, runtime_type):
    run = cached_run(stack, {**runtime, **with_db(stack, dbSnapshotId=SNAPSHOT)})
    cluster = run.one(CLUSTER)
    # What the provider leaves behind (the mock models its restore call): IAM authentication off.
    assert cluster.inputs["iamDatabaseAuthenticationEnabled"] is True
    assert cluster.outputs["iamDatabaseAuthenticationEnabled"] is False
    invocation = run.named(f"redcap-iam-auth{db.restore_suffix(SNAPSHOT)}", INVOCATION)
    assert json.loads(invocation.inputs["input"]) == {"clusterIdentifier": cluster.inputs["clusterIdentifier"]}
    assert invocation.inputs["lifecycleScope"] == "CREATE_ONLY"
    assert depends_on(run, invocation, cluster.urn)
    runtime = run.one(runtime_type)
    assert depends_on(run, runtime, invocation.urn), "the runtime would log in before IAM auth is on"


def test_a_stage_created_without_a_snapshot_needs_no_iam_auth_function():
    run = cached_run("prod")
    assert run.one(CLUSTER).outputs["iamDatabaseAuthenticationEnabled"] is True  # CreateDBCluster sends it
    assert not [r for r in run.resources if "iam-auth" in r.name]


def test_the_iam_auth_function_may_modify_only_the_restored_clusters():
    run = cached_run("prod", with_db("prod", dbSnapshotId=SNAPSHOT, previousCluster={"dbSnapshotId": OLDER_SNAPSHOT}))
    arns = sorted(c.outputs["arn"] for c in run.of_type(CLUSTER))
    policy = json.loads(run.named("redcap-iam-auth-policy").inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["EnableIamAuthentication"]["Action"] == ["rds:DescribeDBClusters", "rds:ModifyDBCluster"]
    assert statements["EnableIamAuthentication"]["Resource"] == arns
    assert set(statements) == {"EnableIamAuthentication", "WriteLogs"}
    function = run.named("redcap-iam-auth", "aws:lambda/function:Function")
    assert function.inputs["name"] == "redcap-prod-db-iam-auth" and function.inputs["timeout"] == 900
    # the image build, and one per restored cluster (the credential rotation's, the post-deploy
    # smoke check's and the upgrade snapshot's are not the database's)
    assert len([i for i in run.of_type(INVOCATION) if "CredentialRotation" not in i.urn
                and i.name != "redcap-smoke-check" and "upgrade" not in i.name]) == 3


# --- the salt a new stage starts with ------------------------------------------------------------

def test_a_carried_over_salt_is_written_once_and_stays_secret():
    from harness import Secret

    salt = "Carried-over-salt-of-the-old-stage-0123"
    run = cached_run("prod", {"dbSalt": Secret(salt)})
    version = run.named("redcap-salt-value", "aws:secretsmanager/secretVersion:SecretVersion")
    assert is_secret_input(version.inputs["secretString"])
    assert unwrap_secrets(version.inputs["secretString"]) == salt
    assert version.ignore_changes == ["secretString"]
    # Without it the generated salt is used, written once the same way.
    generated = cached_run("prod").named("redcap-salt-value", "aws:secretsmanager/secretVersion:SecretVersion")
    assert unwrap_secrets(generated.inputs["secretString"]) != salt and generated.ignore_changes == ["secretString"]
    # The salt's RandomPassword stays declared either way (it is protected in prod).
    assert run.one("random:index/randomPassword:RandomPassword", "salt").protect is True


def test_a_salt_in_plain_text_is_refused_before_anything_is_created():
    from harness import run_program
    from settings import SettingsError

    with pytest.raises(SettingsError) as err:
        run_program("prod", {"dbSalt": "Carried-over-salt-of-the-old-stage-0123"})
    text = str(err.value)
    assert ("redcap:dbSalt = '[secret]': allowed: a secret, set with `pulumi config set --secret redcap:dbSalt ...` "
            "(a plain value stays unencrypted in Pulumi.<stack>.yaml)") in text
    assert "Carried-over-salt" not in text
