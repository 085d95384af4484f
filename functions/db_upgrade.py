"""Runs REDCap's database upgrade once the new image serves (run by aws.lambda_.Invocation, when
redcap:upgrade.database is true; docs/upgrade.md).

The Invocation (lifecycle scope CRUD) has the release and a random value drawn anew for every
release change as its input, so Pulumi invokes this function exactly when the release changes
(and once when the invocation is created). The function:

1. on delete (the stage or the setting goes): does nothing;
2. waits until the runtime serves the new image (IMAGE_URI): ECS and Express services (DescribeServices)
   with one deployment, rolled out (COMPLETED) and running tasks of a task definition whose container
   runs that image; App Runner (DescribeService, ListOperations) RUNNING that image after a successful
   operation. A rollout that failed or was rolled back fails `pulumi up` here: the database is not
   touched while another image serves;
3. starts the one-off task (the service's image and environment, command `upgrade-database`) in
   its own cluster, or adopts the one a previous try started (same `startedBy`, derived from the
   random value), and waits until it stops;
4. reads the task's exit code and the `upgrade result:` line of its log and returns it (upgraded,
   or current when the database was at the image's version already); raises with what failed and
   the way back (backtrack to the task's start, the snapshot taken before the rollout) otherwise,
   and - so `pulumi up` waits on the next run - when the Lambda is about to time out first.

Environment (set by the program): UPGRADE_CLUSTER, TASK_DEFINITION, SUBNETS, SECURITY_GROUPS,
CONTAINER_NAME, LOG_GROUP, LOG_STREAM_PREFIX, RUNTIME (ecs, express or apprunner), SERVICE_ARN,
SERVICE_CLUSTER (ecs, express), IMAGE_URI, DB_CLUSTER_IDENTIFIER, BACKTRACK ("true"/"false").
Standard library and boto3 only.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import boto3

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

DEADLINE_MARGIN_MS = 30_000
RESULT_PREFIX = "upgrade result: "
UPGRADE_COMMAND = "upgrade-database"
READY, WAITING, FAILED = "ready", "waiting", "failed"
APPRUNNER_BAD = frozenset({"FAILED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED", "ROLLBACK_SUCCEEDED"})
LOG_LINES = 40


class UpgradeFailed(RuntimeError):
    """The upgrade did not happen or did not complete; the message says what to do."""


class StillRunning(RuntimeError):
    """The Lambda ran out of time; the next `pulumi up` waits for the same rollout or task."""


@dataclass(frozen=True)
class Target:
    runtime: str
    service_arn: str
    service_cluster: str
    image_uri: str
    upgrade_cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    container_name: str
    log_group: str
    log_stream_prefix: str
    db_cluster_identifier: str
    backtrack: bool

    @staticmethod
    def from_environment(env: dict[str, str]) -> "Target":
        needed = ["UPGRADE_CLUSTER", "TASK_DEFINITION", "SUBNETS", "SECURITY_GROUPS", "CONTAINER_NAME",
                  "LOG_GROUP", "LOG_STREAM_PREFIX", "RUNTIME", "SERVICE_ARN", "IMAGE_URI", "DB_CLUSTER_IDENTIFIER"]
        missing = [k for k in needed if not env.get(k)]
        if env.get("RUNTIME") in ("ecs", "express") and not env.get("SERVICE_CLUSTER"):
            missing.append("SERVICE_CLUSTER")
        if missing:
            raise ValueError(f"the function's environment lacks {', '.join(missing)}")
        if env["RUNTIME"] not in ("ecs", "express", "apprunner"):
            raise ValueError(f"RUNTIME must be ecs, express or apprunner, not {env['RUNTIME']!r}")
        return Target(
            runtime=env["RUNTIME"], service_arn=env["SERVICE_ARN"], service_cluster=env.get("SERVICE_CLUSTER", ""),
            image_uri=env["IMAGE_URI"], upgrade_cluster=env["UPGRADE_CLUSTER"], task_definition=env["TASK_DEFINITION"],
            subnets=tuple(s for s in env["SUBNETS"].split(",") if s),
            security_groups=tuple(s for s in env["SECURITY_GROUPS"].split(",") if s),
            container_name=env["CONTAINER_NAME"], log_group=env["LOG_GROUP"],
            log_stream_prefix=env["LOG_STREAM_PREFIX"], db_cluster_identifier=env["DB_CLUSTER_IDENTIFIER"],
            backtrack=env.get("BACKTRACK", "false") == "true")


@dataclass(frozen=True)
class Request:
    action: str
    release: str
    previous_release: Optional[str]
    attempt: str
    snapshot_identifier: str
    poll_seconds: float = 15.0

    @staticmethod
    def from_event(event: dict[str, Any]) -> "Request":
        tf = event.get("tf") or {}
        previous = tf.get("prev_input") or {}
        missing = [k for k in ("release", "attempt") if not event.get(k)]
        if missing:
            raise ValueError(f"database upgrade event lacks {', '.join(missing)}: {sorted(event)}")
        return Request(action=str(tf.get("action") or "create"), release=str(event["release"]),
                       previous_release=previous.get("release") if isinstance(previous, dict) else None,
                       attempt=str(event["attempt"]), snapshot_identifier=str(event.get("snapshotIdentifier") or ""),
                       poll_seconds=float(event.get("pollSeconds", 15)))

    @property
    def started_by(self) -> str:
        """ECS startedBy (at most 36 characters): the same for every try of one release change."""
        return f"redcap-upgrade-{self.attempt}"[:36]


# --- is the new image serving? (pure: API responses in, verdict out) ----------------------------------

def ecs_state(service: Optional[dict[str, Any]], task_definition: Optional[dict[str, Any]],
              image: str) -> tuple[str, str]:
    """(READY | WAITING | FAILED, why) for an ECS or Express service (DescribeServices, and
    DescribeTaskDefinition of its primary deployment)."""
    if service is None or service.get("status") != "ACTIVE":
        return FAILED, f"the service is {service.get('status') if service else 'missing'}"
    deployments = service.get("deployments") or []
    if any(d.get("rolloutState") == "FAILED" for d in deployments):
        failed = next(d for d in deployments if d.get("rolloutState") == "FAILED")
        return FAILED, f"its deployment failed: {failed.get('rolloutStateReason', '')}"
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None or len(deployments) > 1 or primary.get("rolloutState") not in (None, "COMPLETED"):
        return WAITING, f"{len(deployments)} deployment(s), the primary one {primary.get('rolloutState') if primary else 'missing'}"
    running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
    if running < max(desired, 1):
        return WAITING, f"{running} of {desired} task(s) running"
    images = [c.get("image") for c in (task_definition or {}).get("containerDefinitions") or []]
    if image not in images:
        return FAILED, (f"its rollout ended on another image ({', '.join(str(i) for i in images) or 'unknown'}): the "
                        "new tasks never became healthy and ECS rolled back")
    return READY, f"{running} task(s) of the new image"


def apprunner_state(service: Optional[dict[str, Any]], operations: list[dict[str, Any]], image: str) -> tuple[str, str]:
    """(READY | WAITING | FAILED, why) for an App Runner service (DescribeService, ListOperations)."""
    if service is None:
        return FAILED, "the service is missing"
    latest = operations[0] if operations else {}
    status = latest.get("Status")
    if status in APPRUNNER_BAD:
        return FAILED, f"its last operation ({latest.get('Type')}) is {status}: the new image never became healthy"
    if status in ("PENDING", "IN_PROGRESS") or service.get("Status") == "OPERATION_IN_PROGRESS":
        return WAITING, f"operation {latest.get('Type')} {status}"
    if service.get("Status") != "RUNNING":
        return FAILED, f"the service is {service.get('Status')}"
    serving = (((service.get("SourceConfiguration") or {}).get("ImageRepository") or {}).get("ImageIdentifier"))
    if serving != image:
        return FAILED, f"it runs {serving}, not the new image"
    return READY, "running the new image"


def serving_state(target: Target, ecs: Any, apprunner: Any) -> tuple[str, str]:
    if target.runtime == "apprunner":
        service = apprunner.describe_service(ServiceArn=target.service_arn).get("Service")
        operations = apprunner.list_operations(ServiceArn=target.service_arn, MaxResults=1).get("OperationSummaryList", [])
        return apprunner_state(service, operations, target.image_uri)
    services = ecs.describe_services(cluster=target.service_cluster, services=[target.service_arn]).get("services", [])
    service = services[0] if services else None
    primary = next((d for d in (service or {}).get("deployments") or [] if d.get("status") == "PRIMARY"), None)
    task_definition = None
    if primary is not None:
        task_definition = ecs.describe_task_definition(taskDefinition=primary["taskDefinition"])["taskDefinition"]
    return ecs_state(service, task_definition, target.image_uri)


# --- the one-off task ----------------------------------------------------------------------------------

def find_task(ecs: Any, target: Target, started_by: str) -> Optional[str]:
    """The task a previous try of this release change started and that still runs (the Lambda
    ran out of time before it ended). A stopped one is not taken over: a new try starts a new task,
    and the container itself refuses to run over an upgrade that stopped part-way."""
    arns = ecs.list_tasks(cluster=target.upgrade_cluster, startedBy=started_by, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return None
    tasks = [t for t in ecs.describe_tasks(cluster=target.upgrade_cluster, tasks=arns)["tasks"]
             if t.get("startedBy") == started_by and t.get("lastStatus") != "STOPPED"]
    return max(tasks, key=lambda t: str(t.get("createdAt", "")))["taskArn"] if tasks else None


def start_task(ecs: Any, target: Target, started_by: str) -> str:
    response = ecs.run_task(
        cluster=target.upgrade_cluster, taskDefinition=target.task_definition, launchType="FARGATE", count=1,
        startedBy=started_by, platformVersion="LATEST",
        networkConfiguration={"awsvpcConfiguration": {"subnets": list(target.subnets),
                                                      "securityGroups": list(target.security_groups),
                                                      "assignPublicIp": "DISABLED"}})
    if response.get("failures") or not response.get("tasks"):
        raise UpgradeFailed(f"ECS did not start the upgrade task: {response.get('failures')}")
    return response["tasks"][0]["taskArn"]


def log_lines(logs: Any, target: Target, task_arn: str) -> list[str]:
    """The task's container log (awslogs stream <prefix>/<container>/<task id>)."""
    stream = f"{target.log_stream_prefix}/{target.container_name}/{task_arn.rsplit('/', 1)[-1]}"
    lines: list[str] = []
    token: Optional[str] = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": target.log_group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            return lines
        lines.extend(str(e.get("message", "")).rstrip("\n") for e in page.get("events", []))
        if page.get("nextForwardToken") in (None, token) or not page.get("events"):
            return lines
        token = page["nextForwardToken"]


def result_line(lines: list[str]) -> Optional[dict[str, Any]]:
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line[len(RESULT_PREFIX):])
            except json.JSONDecodeError:
                return None
    return None


def iso_utc(moment: Any) -> Optional[str]:
    """A task's startedAt as `aws rds backtrack-db-cluster --backtrack-to` takes it."""
    if moment is None:
        return None
    if hasattr(moment, "astimezone"):
        return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(moment)


def way_back(target: Target, request: Request, started_at: Any) -> str:
    steps = []
    if target.backtrack and started_at:
        steps.append(f"aws rds backtrack-db-cluster --db-cluster-identifier {target.db_cluster_identifier} "
                     f"--backtrack-to {iso_utc(started_at)}")
    if request.snapshot_identifier:
        steps.append(f"restore the snapshot {request.snapshot_identifier} (taken before the rollout)")
    back = " or ".join(steps) if steps else "restore the database from a backup"
    return (f"The new image serves and shows REDCap's upgrade notice until the database matches it. Go back: {back}, "
            "then deploy the previous release again, or fix the cause and run `pulumi up` again (docs/upgrade.md, "
            "\"If the upgrade step fails\").")


def outcome(task: dict[str, Any], lines: list[str], target: Target, request: Request) -> dict[str, Any]:
    container = next((c for c in task.get("containers") or [] if c.get("name") == target.container_name),
                     (task.get("containers") or [{}])[0])
    code = container.get("exitCode")
    result = result_line(lines)
    if code == 0 and result and result.get("status") in ("upgraded", "current"):
        return {**result, "taskArn": task["taskArn"], "snapshotIdentifier": request.snapshot_identifier,
                "release": request.release}
    why = (result or {}).get("error") or next((ln for ln in reversed(lines) if " ERROR: " in ln), None) \
        or task.get("stoppedReason") or container.get("reason") or "no result line in the task's log"
    tail = "\n".join(lines[-LOG_LINES:])
    raise UpgradeFailed(
        f"REDCap's database upgrade to {request.release} failed (task {task['taskArn']}, exit code {code}): {why}\n"
        f"{way_back(target, request, task.get('startedAt'))}\nLast lines of the task's log ({target.log_group}):\n{tail}")


def run(request: Request, target: Target, remaining_ms: Callable[[], int], *, ecs: Any, apprunner: Any, logs: Any,
        sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Steps 1-4 of the module docstring."""
    if request.action == "delete":
        return {"status": "skipped", "release": request.release}

    def wait(what: str) -> None:
        if remaining_ms() - request.poll_seconds * 1000 < DEADLINE_MARGIN_MS:
            raise StillRunning(f"{what}; run `pulumi up` again: it waits for the same rollout and upgrade task")
        sleep(request.poll_seconds)

    while True:
        state, why = serving_state(target, ecs, apprunner)
        if state == READY:
            LOG.info("the new image serves (%s)", why)
            break
        if state == FAILED:
            raise UpgradeFailed(f"the database was not upgraded to {request.release}: the new image is not serving "
                                f"({target.runtime} {target.service_arn}: {why}). Fix the cause and run `pulumi up` "
                                "again; the database still matches the previous release")
        wait(f"the new image is not serving yet ({why})")

    task_arn = find_task(ecs, target, request.started_by) or start_task(ecs, target, request.started_by)
    LOG.info("upgrade task %s", task_arn)
    while True:
        task = ecs.describe_tasks(cluster=target.upgrade_cluster, tasks=[task_arn])["tasks"][0]
        if task.get("lastStatus") == "STOPPED":
            return outcome(task, log_lines(logs, target, task_arn), target, request)
        wait(f"the upgrade task {task_arn} is {task.get('lastStatus')}")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    target = Target.from_environment(dict(os.environ))
    return run(Request.from_event(event), target, context.get_remaining_time_in_millis,
               ecs=boto3.client("ecs"), apprunner=boto3.client("apprunner") if target.runtime == "apprunner" else None,
               logs=boto3.client("logs"))
