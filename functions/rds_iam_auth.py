"""Switches IAM database authentication on for a cluster restored from a snapshot and waits until
RDS reports it on (run by aws.lambda_.Invocation, once per restored cluster).

The Terraform provider behind pulumi-aws restores a cluster with RestoreDBClusterFromSnapshot
without EnableIAMDatabaseAuthentication, and RDS restores with it off. The containers log in with
IAM tokens, so they must not reach a restored cluster before it is on: the program makes the
endpoints the runtimes read wait for this function.

The function:
1. waits until the cluster is `available` (RDS refuses a modification while it is busy);
2. returns at once when IAM authentication is already on (a repeated invocation changes nothing);
3. otherwise calls ModifyDBCluster(EnableIAMDatabaseAuthentication, ApplyImmediately) and polls
   until RDS reports it on and the cluster is `available` again;
4. raises - so `pulumi up` fails, and the next one invokes it again - when the cluster does not
   exist or the Lambda is about to time out first.

Event: {"clusterIdentifier"}; optional "pollSeconds" (default 15). Standard library and boto3 only.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

AVAILABLE = "available"
# Stop polling this long before the Lambda's own deadline, so the function can still report
# (a killed Lambda gives Pulumi only "Task timed out").
DEADLINE_MARGIN_MS = 30_000


class NotConfirmed(RuntimeError):
    """IAM authentication could not be confirmed in time; the message says what to do."""


@dataclass(frozen=True)
class Request:
    cluster_identifier: str
    poll_seconds: float = 15.0

    @staticmethod
    def from_event(event: dict[str, Any]) -> "Request":
        identifier = event.get("clusterIdentifier")
        if not isinstance(identifier, str) or not identifier:
            raise ValueError(f"event needs a clusterIdentifier, got {event!r}")
        return Request(identifier, float(event.get("pollSeconds", 15.0)))


def describe(rds: Any, identifier: str) -> dict[str, Any]:
    try:
        clusters = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "DBClusterNotFoundFault":
            raise NotConfirmed(f"cluster {identifier} does not exist") from err
        raise
    return clusters[0]


def confirm_iam_auth(rds: Any, request: Request, remaining_ms: Callable[[], int],
                     sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Enable and wait; returns {"clusterIdentifier", "iamDatabaseAuthenticationEnabled", "changed"}."""
    identifier = request.cluster_identifier
    changed = False

    def wait(what: str) -> None:
        if remaining_ms() - request.poll_seconds * 1000 < DEADLINE_MARGIN_MS:
            raise NotConfirmed(
                f"cluster {identifier} is still {what}; IAM database authentication is not confirmed yet. "
                "Run `pulumi up` again: it invokes this check again and waits for the cluster.")
        sleep(request.poll_seconds)

    while True:
        cluster = describe(rds, identifier)
        enabled = bool(cluster.get("IAMDatabaseAuthenticationEnabled"))
        if cluster.get("Status") != AVAILABLE:
            wait(f"'{cluster.get('Status')}'")
            continue
        if enabled:
            LOG.info("IAM database authentication is on for %s (changed: %s)", identifier, changed)
            return {"clusterIdentifier": identifier, "iamDatabaseAuthenticationEnabled": True, "changed": changed}
        if not changed:
            try:
                rds.modify_db_cluster(DBClusterIdentifier=identifier, EnableIAMDatabaseAuthentication=True,
                                      ApplyImmediately=True)
            except ClientError as err:
                if err.response["Error"]["Code"] != "InvalidDBClusterStateFault":
                    raise
                wait("busy")
                continue
            LOG.info("requested IAM database authentication for %s", identifier)
            changed = True
        wait("switching IAM database authentication on")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Request.from_event(event)
    return confirm_iam_auth(boto3.client("rds"), request, context.get_remaining_time_in_millis)
