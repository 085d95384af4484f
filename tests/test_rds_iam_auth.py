"""functions/rds_iam_auth.py against moto's RDS, made faithful where moto is not: moto keeps a
restored cluster's IAM authentication off (as RDS does) but ignores EnableIAMDatabaseAuthentication
on ModifyDBCluster and never shows the `configuring-iam-database-auth` status. The patch below
does both (IAM auth flips on after a number of describes, the cluster meanwhile busy), so the
handler's own code runs unchanged against the RDS API shape.
"""
from __future__ import annotations

from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.rds.models import RDSBackend

from functions import rds_iam_auth as fn
from lambda_clock import Clock

REGION = "us-east-1"
SOURCE = "redcap-prod-0a1b2c3d"
RESTORED = "redcap-prod-9f8e7d6c"
SNAPSHOT = "redcap-prod-0a1b2c3d-before-upgrade"


class SlowIamAuth:
    """ModifyDBCluster(EnableIAMDatabaseAuthentication) as RDS does it: the cluster is busy for
    `busy_describes` describes, then available with IAM authentication on. `refuse_first`
    answers the first modification with InvalidDBClusterStateFault (the cluster still busy from
    the restore)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, busy_describes: int = 2, refuse_first: bool = False):
        self.busy_describes = busy_describes
        self.refuse_first = refuse_first
        self.modifications = 0
        self.pending: dict[str, int] = {}
        original_modify = RDSBackend.modify_db_cluster
        original_describe = RDSBackend.describe_db_clusters
        patch = self

        def modify(backend: RDSBackend, kwargs: dict[str, Any]) -> Any:
            patch.modifications += 1
            if patch.refuse_first and patch.modifications == 1:
                from moto.rds.exceptions import RDSClientError
                raise RDSClientError("InvalidDBClusterStateFault", "cluster is not in the available state")
            enable = kwargs.pop("enable_iam_database_authentication", None)
            cluster = original_modify(backend, kwargs)
            if enable:
                patch.pending[kwargs["db_cluster_identifier"] or cluster.db_cluster_identifier] = patch.busy_describes
                backend.clusters[cluster.db_cluster_identifier].status = "configuring-iam-database-auth"
            return cluster

        def describe(backend: RDSBackend, *args: Any, **kwargs: Any) -> Any:
            for identifier, left in list(patch.pending.items()):
                cluster = backend.clusters[identifier]
                if left == 0:
                    cluster.iam_auth = True
                    cluster.status = "available"
                    del patch.pending[identifier]
                else:
                    patch.pending[identifier] = left - 1
            return original_describe(backend, *args, **kwargs)

        monkeypatch.setattr(RDSBackend, "modify_db_cluster", modify)
        monkeypatch.setattr(RDSBackend, "describe_db_clusters", describe)


@pytest.fixture
def rds() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("rds", region_name=REGION)
        client.create_db_cluster(DBClusterIdentifier=SOURCE, Engine="aurora-mysql", MasterUsername="dbadmin",
                                 MasterUserPassword="not-used-here-0123", StorageEncrypted=True,
                                 EnableIAMDatabaseAuthentication=True)
        client.create_db_cluster_snapshot(DBClusterIdentifier=SOURCE, DBClusterSnapshotIdentifier=SNAPSHOT)
        client.restore_db_cluster_from_snapshot(DBClusterIdentifier=RESTORED, SnapshotIdentifier=SNAPSHOT,
                                                Engine="aurora-mysql")
        yield client


def iam_on(rds: Any, identifier: str) -> bool:
    return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]["IAMDatabaseAuthenticationEnabled"]


def test_a_restored_cluster_starts_without_iam_authentication(rds):
    """What the function is for: the source had it on, the restore (without the flag) does not."""
    assert iam_on(rds, SOURCE) is True
    assert iam_on(rds, RESTORED) is False


def test_switches_iam_authentication_on_and_waits_until_rds_reports_it(rds, monkeypatch):
    slow = SlowIamAuth(monkeypatch, busy_describes=3)
    clock = Clock(remaining_ms=900_000)
    result = fn.confirm_iam_auth(rds, fn.Request(RESTORED, poll_seconds=15), clock.remaining_ms, clock.sleep)
    assert result == {"clusterIdentifier": RESTORED, "iamDatabaseAuthenticationEnabled": True, "changed": True}
    assert iam_on(rds, RESTORED) is True
    assert slow.modifications == 1
    assert clock.sleeps >= 3  # it waited through the busy describes instead of returning early


def test_a_cluster_that_has_it_already_is_left_alone(rds, monkeypatch):
    slow = SlowIamAuth(monkeypatch)
    clock = Clock(remaining_ms=900_000)
    result = fn.confirm_iam_auth(rds, fn.Request(SOURCE), clock.remaining_ms, clock.sleep)
    assert result["changed"] is False and result["iamDatabaseAuthenticationEnabled"] is True
    assert slow.modifications == 0 and clock.sleeps == 0


def test_a_busy_cluster_is_retried(rds, monkeypatch):
    slow = SlowIamAuth(monkeypatch, busy_describes=1, refuse_first=True)
    clock = Clock(remaining_ms=900_000)
    result = fn.confirm_iam_auth(rds, fn.Request(RESTORED, poll_seconds=5), clock.remaining_ms, clock.sleep)
    assert result["changed"] is True and slow.modifications == 2
    assert iam_on(rds, RESTORED) is True


def test_running_out_of_time_fails_the_update_with_what_to_do(rds, monkeypatch):
    SlowIamAuth(monkeypatch, busy_describes=10_000)
    clock = Clock(remaining_ms=fn.DEADLINE_MARGIN_MS + 60_000)
    with pytest.raises(fn.NotConfirmed) as err:
        fn.confirm_iam_auth(rds, fn.Request(RESTORED, poll_seconds=15), clock.remaining_ms, clock.sleep)
    text = str(err.value)
    assert RESTORED in text and "configuring-iam-database-auth" in text and "pulumi up" in text
    assert clock.remaining >= fn.DEADLINE_MARGIN_MS - 15_000  # stopped before the Lambda's own deadline


def test_a_missing_cluster_fails(rds):
    clock = Clock(remaining_ms=900_000)
    with pytest.raises(fn.NotConfirmed, match="redcap-prod-missing does not exist"):
        fn.confirm_iam_auth(rds, fn.Request("redcap-prod-missing"), clock.remaining_ms, clock.sleep)


def test_other_errors_are_not_swallowed(rds, monkeypatch):
    def denied(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "ModifyDBCluster")

    monkeypatch.setattr(rds, "modify_db_cluster", denied)
    clock = Clock(remaining_ms=900_000)
    with pytest.raises(ClientError, match="AccessDenied"):
        fn.confirm_iam_auth(rds, fn.Request(RESTORED), clock.remaining_ms, clock.sleep)


def test_handler_reads_the_event_and_the_lambda_deadline(rds, monkeypatch):
    SlowIamAuth(monkeypatch, busy_describes=0)
    monkeypatch.setattr(fn.time, "sleep", lambda _: None)
    monkeypatch.setattr(fn.boto3, "client", lambda service: rds)

    class Context:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 900_000

    result = fn.handler({"clusterIdentifier": RESTORED, "pollSeconds": 1}, Context())
    assert result["iamDatabaseAuthenticationEnabled"] is True
    with pytest.raises(ValueError, match="clusterIdentifier"):
        fn.handler({}, Context())
