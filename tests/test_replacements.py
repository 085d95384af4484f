"""A replacement must not collide with the resource it replaces: AWS keeps cluster identifiers,
final snapshot names and App Runner service names unique per account and region, and Pulumi
creates a replacement before it deletes the original unless told otherwise.

The replacements here are forced the way a real change would force them: the stack's KMS key is
replaced (a ForceNew input of the key changes), which changes `kmsKeyId` of the cluster and the
App Runner service's encryption key (both ForceNew in the provider); or the subnet group is.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

from components import database, storage
from harness import StackRun, run_program
from transitions import transition

CLUSTER = "aws:rds/cluster:Cluster"
SERVICE = "aws:apprunner/service:Service"
RANDOM_ID = "random:index/randomId:RandomId"


# prod's removal policy (a final snapshot) without its protection, so the replacement can run.
UNPROTECTED_PROD = {"deletionProtection": False}


def with_patched(module: Any, attribute: str, factory: Callable[[Any], Any], stack: str,
                 overrides: dict[str, Any] | None = None) -> StackRun:
    with pytest.MonkeyPatch.context() as mp:
        original = getattr(module.aws, attribute.split(".")[0])
        mp.setattr(module, "aws", _PatchedAws(module.aws, attribute, factory(original)))
        return run_program(stack, overrides)


class _PatchedAws:
    """pulumi_aws with one resource class swapped (`kms.Key` -> a subclass adding an input)."""

    def __init__(self, real: Any, attribute: str, replacement: Any):
        self._real, self._path, self._replacement = real, attribute.split("."), replacement

    def __getattr__(self, name: str) -> Any:
        if name == self._path[0]:
            return self._replacement
        return getattr(self._real, name)


class _Namespace:
    def __init__(self, real: Any, **overrides: Any):
        self._real, self._overrides = real, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name, getattr(self._real, name))


def new_kms_key(kms: Any) -> Any:
    """`aws.kms` whose Key carries one more ForceNew input: the key is replaced."""
    class Key(kms.Key):
        def __init__(self, resource_name: str, **kwargs: Any):
            super().__init__(resource_name, customer_master_key_spec="SYMMETRIC_DEFAULT", **kwargs)
    return _Namespace(kms, Key=Key)


def new_subnet_group(rds: Any) -> Any:
    """`aws.rds` whose SubnetGroup gets another name prefix: the subnet group is replaced."""
    class SubnetGroup(rds.SubnetGroup):
        def __init__(self, resource_name: str, **kwargs: Any):
            super().__init__(resource_name, name_prefix="redcap-db-", **kwargs)
    return _Namespace(rds, SubnetGroup=SubnetGroup)


@pytest.mark.parametrize("module, attribute, factory", [
    (storage, "kms", new_kms_key),
    (database, "rds", new_subnet_group),
], ids=["new-kms-key", "new-subnet-group"])
def test_a_replaced_cluster_gets_a_new_name_and_final_snapshot_name(module, attribute, factory):
    before = run_program("prod", UNPROTECTED_PROD)
    after = with_patched(module, attribute, factory, "prod", UNPROTECTED_PROD)
    t = transition(before, after)
    assert (CLUSTER, "redcap-cluster") in t.replaces
    # The identifier's RandomId depends on the replaced input, so it draws a new value: the
    # replacement's identifier and final snapshot name are new (the mocks cannot show the new
    # value itself; the transition marks every value of a replaced resource as new).
    assert (RANDOM_ID, "redcap-suffix") in t.replaces
    assert t.change(RANDOM_ID, "redcap-identity").kind == "same"  # the record of the first inputs stays
    assert not [c for c in t.collisions if c.identity[0].startswith("rds-cluster")], t.problems()
    t.assert_safe()


def test_a_replaced_app_runner_service_is_deleted_first():
    app_runner = {"express": None}  # dev without its Express block runs on App Runner
    before = run_program("dev", app_runner)
    after = with_patched(storage, "kms", new_kms_key, "dev", app_runner)
    t = transition(before, after)
    change = t.change(SERVICE, "redcap-service")
    assert change.kind == "replace" and "encryptionConfiguration" in change.replace_keys
    assert change.delete_before_replace is True
    assert not [c for c in t.collisions if c.identity[0].startswith("apprunner")], t.problems()


def test_an_unchanged_stack_keeps_every_name():
    """The keepers that make names change with a replacement leave a stack alone otherwise."""
    t = transition(run_program("prod"), run_program("prod"))
    assert not t.replaces and not t.creates and not t.deletes and not t.updates, t.describe()


def test_kms_key_patch_really_replaces_the_key():
    """The scenario itself: the patched program replaces the KMS key (and nothing would without it)."""
    after = with_patched(storage, "kms", new_kms_key, "dev")
    t = transition(run_program("dev"), after)
    assert ("aws:kms/key:Key", "redcap-key") in t.replaces
    assert after.one("aws:kms/key:Key", "redcap-key").inputs["customerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
