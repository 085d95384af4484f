"""Takes a cluster snapshot before a new REDCap version rolls out (run by aws.lambda_.Invocation).

The Invocation's lifecycle scope is CRUD: Pulumi invokes this function when the invocation is
created, when its input changes and when it is deleted, and adds what it did and the input it
had before (terraform-provider-aws internal/service/lambda/invocation.go, buildInput):

    {"release": "15.1.0", "attempt": "0a1b2c3d", "namePrefix": "redcap-prod",
     "tf": {"action": "create" | "update" | "delete", "prev_input": {...} | null}}

So the release the stage ran before comes from Pulumi's state (the previous input), not from a
lookup. The function:
1. on create (a new stage, or a stage that just switched the snapshot on) and on delete: takes no
   snapshot (there is no earlier release of this stage to protect, or the stage is going);
2. on an update whose release differs from the previous one: snapshots the serving cluster
   (CLUSTER_IDENTIFIER in its environment) as `<namePrefix>-<old>-to-<new>-<attempt>`, where
   `attempt` is a random value the program draws anew for every release change: the name is
   unique per change even when a stage goes from one release to another twice, and the same
   for every retry of one change, so a retry adopts the snapshot its first try started;
3. waits until the snapshot is `available` and returns its identifier; raises - so `pulumi up`
   fails before the new image rolls out, and the next one tries again - when the cluster is
   missing, the snapshot fails, or the Lambda is about to time out first.

Manual snapshots are not deleted with the cluster: they stay until someone deletes them.
Standard library and boto3 only.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

AVAILABLE = "available"
# Stop polling this long before the Lambda's own deadline, so the function can still report.
DEADLINE_MARGIN_MS = 30_000
MAX_IDENTIFIER = 255
PURPOSE_TAG = "redcap/purpose"


class SnapshotNotReady(RuntimeError):
    """The snapshot could not be confirmed available; the message says what to do."""


@dataclass(frozen=True)
class Request:
    action: str
    release: str
    previous_release: Optional[str]
    attempt: str
    name_prefix: str
    cluster_identifier: str
    poll_seconds: float = 15.0

    @staticmethod
    def from_event(event: dict[str, Any], environ: dict[str, str]) -> "Request":
        tf = event.get("tf") or {}
        action = tf.get("action") or "create"
        previous = tf.get("prev_input") or {}
        missing = [k for k in ("release", "attempt", "namePrefix") if not event.get(k)]
        if missing:
            raise ValueError(f"upgrade snapshot event lacks {', '.join(missing)}: {sorted(event)}")
        cluster = environ.get("CLUSTER_IDENTIFIER", "")
        if not cluster:
            raise ValueError("CLUSTER_IDENTIFIER is not set in the function's environment")
        return Request(action=str(action), release=str(event["release"]),
                       previous_release=previous.get("release") if isinstance(previous, dict) else None,
                       attempt=str(event["attempt"]), name_prefix=str(event["namePrefix"]),
                       cluster_identifier=cluster, poll_seconds=float(event.get("pollSeconds", 15)))


def snapshot_name(prefix: str, old: str, new: str, attempt: str) -> str:
    """`<prefix>-<old>-to-<new>-<attempt>` as RDS takes an identifier: letters, digits and single
    hyphens, starting with a letter, at most 255 characters (the attempt is kept when cut)."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]", "-", text)).strip("-")

    tail = f"-{clean(attempt)}"
    body = clean(f"{prefix}-{old}-to-{new}")[:MAX_IDENTIFIER - len(tail)].rstrip("-")
    if not body[:1].isalpha():
        body = f"r-{body}"[:MAX_IDENTIFIER - len(tail)].rstrip("-")
    return f"{body}{tail}".lower()


def planned_snapshot(request: Request) -> Optional[str]:
    """The snapshot this invocation takes: a name on an update that changes the release, else None."""
    if request.action != "update" or not request.previous_release or request.previous_release == request.release:
        return None
    return snapshot_name(request.name_prefix, request.previous_release, request.release, request.attempt)


def describe_snapshot(rds: Any, identifier: str) -> Optional[dict[str, Any]]:
    try:
        found = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=identifier)["DBClusterSnapshots"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "DBClusterSnapshotNotFoundFault":
            return None
        raise
    return found[0] if found else None


def take_snapshot(rds: Any, request: Request, remaining_ms: Callable[[], int],
                  sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns what the stack exports."""
    base = {"release": request.release, "previousRelease": request.previous_release, "action": request.action}
    name = planned_snapshot(request)
    if name is None:
        LOG.info("%s of release %s after %s: nothing to protect", request.action, request.release,
                 request.previous_release)
        return {**base, "snapshotIdentifier": "", "status": "no-snapshot"}

    def wait(what: str) -> None:
        if remaining_ms() - request.poll_seconds * 1000 < DEADLINE_MARGIN_MS:
            raise SnapshotNotReady(
                f"snapshot {name} of {request.cluster_identifier} is {what}; the new release has not been rolled "
                "out. Run `pulumi up` again: it waits for this same snapshot.")
        sleep(request.poll_seconds)

    while True:
        snapshot = describe_snapshot(rds, name)
        if snapshot is None:
            try:
                rds.create_db_cluster_snapshot(
                    DBClusterIdentifier=request.cluster_identifier, DBClusterSnapshotIdentifier=name,
                    Tags=[{"Key": PURPOSE_TAG, "Value": "before-upgrade"},
                          {"Key": "redcap/from", "Value": request.previous_release},
                          {"Key": "redcap/to", "Value": request.release}])
            except ClientError as err:
                code = err.response["Error"]["Code"]
                if code == "DBClusterNotFoundFault":
                    raise SnapshotNotReady(f"cluster {request.cluster_identifier} does not exist") from err
                if code != "InvalidDBClusterStateFault":
                    raise
                wait("not started yet: the cluster is busy")
                continue
            LOG.info("snapshot %s of %s started", name, request.cluster_identifier)
            continue
        if snapshot.get("DBClusterIdentifier") != request.cluster_identifier:
            raise SnapshotNotReady(f"a snapshot named {name} exists for another cluster "
                                   f"({snapshot.get('DBClusterIdentifier')}); nothing was rolled out")
        status = snapshot.get("Status")
        if status == AVAILABLE:
            LOG.info("snapshot %s is available", name)
            return {**base, "snapshotIdentifier": name, "snapshotArn": snapshot.get("DBClusterSnapshotArn"),
                    "clusterIdentifier": request.cluster_identifier, "status": "snapshot"}
        if status in ("failed", "deleted", "deleting"):
            raise SnapshotNotReady(f"snapshot {name} is {status}: delete it (aws rds delete-db-cluster-snapshot "
                                   f"--db-cluster-snapshot-identifier {name}) and run `pulumi up` again")
        wait(f"'{status}' ({snapshot.get('PercentProgress', 0)}%)")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Request.from_event(event, dict(os.environ))
    return take_snapshot(boto3.client("rds"), request, context.get_remaining_time_in_millis)
