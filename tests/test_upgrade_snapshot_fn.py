"""functions/upgrade_snapshot.py against moto's RDS. moto makes a cluster snapshot `available` at
once; the patch below keeps it `creating` for a number of describes, as RDS does while it copies,
so the waiting and the adoption of a snapshot a previous try started run against the API shape.
The events are what terraform-provider-aws sends for lifecycle_scope CRUD (input + `tf`)."""
from __future__ import annotations

from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.rds.models import RDSBackend

from functions import upgrade_snapshot as fn
from lambda_clock import Clock

REGION = "us-east-1"
CLUSTER = "redcap-prod-0a1b2c3d"
NAME = "redcap-prod-15-0-9-to-15-1-0-9f8e7d6c"


class SlowSnapshots:
    """A new snapshot stays `creating` for `busy` describes; `refuse` answers the first creates
    with InvalidDBClusterStateFault (the cluster busy, e.g. with its automated backup)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, busy: int = 2, refuse: int = 0):
        self.busy, self.refuse, self.creates = busy, refuse, 0
        self.pending: dict[str, int] = {}
        original_create = RDSBackend.create_db_cluster_snapshot
        original_describe = RDSBackend.describe_db_cluster_snapshots
        patch = self

        def create(backend: RDSBackend, *args: Any, **kwargs: Any) -> Any:
            patch.creates += 1
            if patch.creates <= patch.refuse:
                from moto.rds.exceptions import RDSClientError
                raise RDSClientError("InvalidDBClusterStateFault", "cluster is backing-up")
            snapshot = original_create(backend, *args, **kwargs)
            snapshot.status, snapshot.percent_progress = "creating", 10
            patch.pending[snapshot.db_cluster_snapshot_identifier] = patch.busy
            return snapshot

        def describe(backend: RDSBackend, *args: Any, **kwargs: Any) -> Any:
            for name, left in list(patch.pending.items()):
                if left == 0:
                    backend.cluster_snapshots[name].status = "available"
                    del patch.pending[name]
                else:
                    patch.pending[name] = left - 1
            return original_describe(backend, *args, **kwargs)

        monkeypatch.setattr(RDSBackend, "create_db_cluster_snapshot", create)
        monkeypatch.setattr(RDSBackend, "describe_db_cluster_snapshots", describe)


@pytest.fixture
def rds() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("rds", region_name=REGION)
        client.create_db_cluster(DBClusterIdentifier=CLUSTER, Engine="aurora-mysql", MasterUsername="dbadmin",
                                 MasterUserPassword="not-used-here-0123", StorageEncrypted=True)
        yield client


def event(action: str, release: str = "15.1.0", previous: str | None = "15.0.9", attempt: str = "9f8e7d6c") -> dict:
    prev = None if previous is None else {"release": previous, "attempt": "0a1b2c3d", "namePrefix": "redcap-prod"}
    return {"release": release, "attempt": attempt, "namePrefix": "redcap-prod",
            "tf": {"action": action, "prev_input": prev}}


def request(e: dict, cluster: str = CLUSTER, poll: float = 15) -> fn.Request:
    return fn.Request.from_event({**e, "pollSeconds": poll}, {"CLUSTER_IDENTIFIER": cluster})


def manual_snapshots(rds: Any) -> list[dict]:
    return rds.describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER, SnapshotType="manual")["DBClusterSnapshots"]


def test_a_release_change_snapshots_the_cluster_and_waits_until_it_is_available(rds, monkeypatch):
    slow = SlowSnapshots(monkeypatch, busy=3)
    clock = Clock(900_000)
    result = fn.take_snapshot(rds, request(event("update")), clock.remaining_ms, clock.sleep)
    assert result["snapshotIdentifier"] == NAME and result["status"] == "snapshot"
    assert (result["previousRelease"], result["release"]) == ("15.0.9", "15.1.0")
    assert result["snapshotArn"].endswith(f":cluster-snapshot:{NAME}")
    assert clock.sleeps >= 3 and slow.creates == 1  # it waited, and created once
    (snapshot,) = manual_snapshots(rds)
    assert snapshot["Status"] == "available" and snapshot["DBClusterIdentifier"] == CLUSTER
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=snapshot["DBClusterSnapshotArn"])["TagList"]}
    assert tags == {"redcap/purpose": "before-upgrade", "redcap/from": "15.0.9", "redcap/to": "15.1.0"}


@pytest.mark.parametrize("e", [event("create", previous=None), event("delete"), event("update", previous="15.1.0")],
                         ids=["first-deploy", "destroy", "same-release"])
def test_no_snapshot_without_an_earlier_release(rds, monkeypatch, e):
    slow = SlowSnapshots(monkeypatch)
    clock = Clock(900_000)
    result = fn.take_snapshot(rds, request(e), clock.remaining_ms, clock.sleep)
    assert result["snapshotIdentifier"] == "" and slow.creates == 0 and manual_snapshots(rds) == []


def test_a_retry_adopts_the_snapshot_its_first_try_started(rds, monkeypatch):
    SlowSnapshots(monkeypatch, busy=50)
    short = Clock(fn.DEADLINE_MARGIN_MS + 40_000)
    with pytest.raises(fn.SnapshotNotReady) as err:
        fn.take_snapshot(rds, request(event("update")), short.remaining_ms, short.sleep)
    assert f"snapshot {NAME} of {CLUSTER} is 'creating' (10%)" in str(err.value)
    assert "Run `pulumi up` again: it waits for this same snapshot" in str(err.value)
    # The next `pulumi up` invokes with the same input (the failed update left the state as it was).
    result = fn.take_snapshot(rds, request(event("update")), Clock(900_000).remaining_ms, Clock(900_000).sleep)
    assert result["snapshotIdentifier"] == NAME
    assert len(manual_snapshots(rds)) == 1


def test_the_same_release_change_twice_gets_two_snapshots(rds, monkeypatch):
    """15.0.9 -> 15.1.0, back (after a backtrack), and again: each change has its own attempt value."""
    SlowSnapshots(monkeypatch, busy=0)
    clock = Clock(900_000)
    first = fn.take_snapshot(rds, request(event("update", attempt="9f8e7d6c")), clock.remaining_ms, clock.sleep)
    back = fn.take_snapshot(rds, request(event("update", "15.0.9", "15.1.0", attempt="11111111")),
                            clock.remaining_ms, clock.sleep)
    again = fn.take_snapshot(rds, request(event("update", attempt="22222222")), clock.remaining_ms, clock.sleep)
    names = [first["snapshotIdentifier"], back["snapshotIdentifier"], again["snapshotIdentifier"]]
    assert names == [NAME, "redcap-prod-15-1-0-to-15-0-9-11111111", "redcap-prod-15-0-9-to-15-1-0-22222222"]
    assert sorted(s["DBClusterSnapshotIdentifier"] for s in manual_snapshots(rds)) == sorted(names)


def test_a_busy_cluster_is_retried(rds, monkeypatch):
    slow = SlowSnapshots(monkeypatch, busy=0, refuse=2)
    clock = Clock(900_000)
    result = fn.take_snapshot(rds, request(event("update"), poll=5), clock.remaining_ms, clock.sleep)
    assert result["status"] == "snapshot" and slow.creates == 3 and clock.sleeps == 2


def test_a_missing_cluster_or_a_foreign_name_fails(rds, monkeypatch):
    SlowSnapshots(monkeypatch, busy=0)
    clock = Clock(900_000)
    with pytest.raises(fn.SnapshotNotReady, match="cluster redcap-prod-gone does not exist"):
        fn.take_snapshot(rds, request(event("update"), cluster="redcap-prod-gone"), clock.remaining_ms, clock.sleep)
    rds.create_db_cluster(DBClusterIdentifier="redcap-other-1", Engine="aurora-mysql", MasterUsername="dbadmin",
                          MasterUserPassword="not-used-here-0123")
    rds.create_db_cluster_snapshot(DBClusterIdentifier="redcap-other-1", DBClusterSnapshotIdentifier=NAME)
    with pytest.raises(fn.SnapshotNotReady, match="exists for another cluster"):
        fn.take_snapshot(rds, request(event("update")), clock.remaining_ms, clock.sleep)


def test_a_failed_snapshot_says_how_to_go_on(rds, monkeypatch):
    SlowSnapshots(monkeypatch, busy=100)
    original = RDSBackend.describe_db_cluster_snapshots

    def failed(backend: RDSBackend, *args: Any, **kwargs: Any) -> Any:
        found = original(backend, *args, **kwargs)
        for s in found:
            s.status = "failed"
        return found

    monkeypatch.setattr(RDSBackend, "describe_db_cluster_snapshots", failed)
    with pytest.raises(fn.SnapshotNotReady, match=f"delete-db-cluster-snapshot --db-cluster-snapshot-identifier {NAME}"):
        fn.take_snapshot(rds, request(event("update")), Clock(900_000).remaining_ms, Clock(900_000).sleep)


def test_other_errors_are_not_swallowed(rds, monkeypatch):
    def denied(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "CreateDBClusterSnapshot")

    monkeypatch.setattr(rds, "create_db_cluster_snapshot", denied)
    with pytest.raises(ClientError, match="AccessDenied"):
        fn.take_snapshot(rds, request(event("update")), Clock(900_000).remaining_ms, Clock(900_000).sleep)


@pytest.mark.parametrize("old, new, attempt, expected", [
    ("15.0.9", "15.1.0", "0a1b2c3d", "redcap-prod-15-0-9-to-15-1-0-0a1b2c3d"),
    ("15.0.9-hotfix_1", "15.1.0", "0a1b2c3d", "redcap-prod-15-0-9-hotfix-1-to-15-1-0-0a1b2c3d"),
])
def test_snapshot_names_are_rds_identifiers(old, new, attempt, expected):
    assert fn.snapshot_name("redcap-prod", old, new, attempt) == expected


def test_long_names_keep_the_attempt_and_rds_rules():
    name = fn.snapshot_name("redcap-" + "s" * 40, "1" * 120 + ".0.0", "2" * 120 + ".0.0", "0a1b2c3d")
    assert len(name) <= 255 and name.endswith("-0a1b2c3d") and name[0].isalpha()
    assert "--" not in name and not name.endswith("-")


def test_handler_reads_the_event_the_environment_and_the_deadline(rds, monkeypatch):
    SlowSnapshots(monkeypatch, busy=0)
    monkeypatch.setattr(fn.time, "sleep", lambda _: None)
    monkeypatch.setattr(fn.boto3, "client", lambda service: rds)
    monkeypatch.setenv("CLUSTER_IDENTIFIER", CLUSTER)

    class Context:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 900_000

    assert fn.handler(event("update"), Context())["snapshotIdentifier"] == NAME
    with pytest.raises(ValueError, match="lacks release"):
        fn.handler({"tf": {"action": "update"}}, Context())
    monkeypatch.delenv("CLUSTER_IDENTIFIER")
    with pytest.raises(ValueError, match="CLUSTER_IDENTIFIER is not set"):
        fn.handler(event("update"), Context())
