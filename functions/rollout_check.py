"""Fails `pulumi up` when a rollout did not end on what this update deployed (run by an
aws.lambda_.Invocation whose input names it: components/rollout.py).

Why a check of its own: ECS's deployment circuit breaker rolls a deployment whose tasks never
become healthy back to the last completed one, and the service is then stable again - on the old
revision; App Runner rolls a failed deployment back and is RUNNING again. A wait for a steady
state alone (the provider's, depending on its version) reports that as a successful update, and
the state records a version that is not running. This function asks the service itself:

- ECS (`taskDefinition`): the revision's deployment is FAILED (the circuit breaker stopped it), or
  the service's primary deployment is another revision (ECS rolled back, or something else
  deployed over it): it raises, with ECS's reason, the service's latest events and where to look;
  while the revision is primary but older tasks still drain or new ones still start, it waits;
  one deployment of the revision, COMPLETED, every desired task running (zero when an idle
  schedule has scaled the stage in) passes.
- Express (`image`): the same, with "the primary deployment's task definition runs the image"
  for "the primary deployment is the revision" (Express registers its own revisions).
- App Runner (`image`): the latest operation failed or was rolled back, or the service runs
  another image, fails; an operation in progress is waited for; RUNNING the image passes, and so
  does PAUSED with it (an idle schedule paused the stage; the image runs when it resumes).

Before the Lambda's own time runs out it raises "still rolling out", so the next `pulumi up`
checks again.

Event: {"runtime": "ecs" | "express" | "apprunner", "service" (name or ARN), "cluster" (ECS and
Express), "taskDefinition" (ECS) or "image" (Express, App Runner), "logGroup", "pollSeconds"}.
Standard library and boto3 only; needs ecs:DescribeServices (and, for Express,
ecs:DescribeTaskDefinition) or apprunner:DescribeService and apprunner:ListOperations.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import boto3

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

READY, WAITING, FAILED = "ready", "waiting", "failed"
DEADLINE_MARGIN_MS = 20_000
EVENTS_SHOWN = 8
DOCS = "docs/compute.md#a-deployment-that-never-gets-healthy"


class RolloutFailed(RuntimeError):
    """The new revision does not serve; the message says why and where to look."""


class StillRollingOut(RuntimeError):
    """The Lambda ran out of time first; the next `pulumi up` checks again."""


RUNTIMES = ("ecs", "express", "apprunner")
APPRUNNER_FAILED = frozenset({"FAILED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED", "ROLLBACK_SUCCEEDED"})


@dataclass(frozen=True)
class Request:
    runtime: str
    service: str
    cluster: str
    expected: str  # the task definition revision ARN (ECS) or the image URI (Express, App Runner)
    log_group: str
    poll_seconds: float = 15.0

    @staticmethod
    def from_event(event: dict[str, Any]) -> "Request":
        runtime = str(event.get("runtime") or "ecs")
        if runtime not in RUNTIMES:
            raise ValueError(f"rollout check event: runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        what = "taskDefinition" if runtime == "ecs" else "image"
        needed = ["service", what, "logGroup"] + (["cluster"] if runtime != "apprunner" else [])
        missing = [k for k in needed if not event.get(k)]
        if missing:
            raise ValueError(f"rollout check event lacks {', '.join(missing)}: {sorted(event)}")
        return Request(runtime=runtime, service=str(event["service"]), cluster=str(event.get("cluster") or ""),
                       expected=str(event[what]), log_group=str(event["logGroup"]),
                       poll_seconds=float(event.get("pollSeconds", 15)))

    @property
    def what(self) -> str:
        """What should serve, as the user knows it."""
        return f"revision {revision(self.expected)}" if self.runtime == "ecs" else f"image {self.expected}"


def revision(arn: str) -> str:
    """`family:revision` of a task definition ARN (what the console and the CLI show)."""
    return arn.rsplit("/", 1)[-1]


def ecs_verdict(service: Optional[dict[str, Any]], serves: Callable[[dict[str, Any]], bool],
                what: str) -> tuple[str, str]:
    """(READY | WAITING | FAILED, why) for a DescribeServices entry; `serves(deployment)` says
    whether a deployment is what this update deployed, `what` names it."""
    if service is None or service.get("status") != "ACTIVE":
        return FAILED, f"the service is {service.get('status') if service else 'missing'}"
    deployments = service.get("deployments") or []
    stopped = next((d for d in deployments if d.get("rolloutState") == "FAILED" and serves(d)), None)
    if stopped is not None:
        reason = stopped.get("rolloutStateReason") or "no reason given"
        return FAILED, (f"ECS stopped the deployment of {what} ({reason}) and rolls the service back to its last "
                        "completed deployment")
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return WAITING, "the service has no primary deployment yet"
    if not serves(primary):
        return FAILED, (f"the service runs {revision(str(primary.get('taskDefinition')))}, not {what}: ECS rolled "
                        "the deployment back (its tasks never became healthy), or another deployment replaced it")
    running, desired = int(primary.get("runningCount") or 0), int(primary.get("desiredCount") or 0)
    if len(deployments) > 1 or primary.get("rolloutState") not in (None, "COMPLETED"):
        return WAITING, (f"rolling out: {running} of {desired} new task(s) running, "
                         f"{len(deployments) - 1} older deployment(s) still draining")
    if running < desired:
        return WAITING, f"{running} of {desired} task(s) running"
    return READY, f"{running} task(s) of {what} running"


def verdict(service: Optional[dict[str, Any]], expected: str) -> tuple[str, str]:
    """ECS: the deployments of the task definition revision `expected`."""
    return ecs_verdict(service, lambda d: d.get("taskDefinition") == expected, f"revision {revision(expected)}")


def apprunner_verdict(service: Optional[dict[str, Any]], operations: list[dict[str, Any]],
                      image: str) -> tuple[str, str]:
    """(READY | WAITING | FAILED, why) for DescribeService and the newest ListOperations entry."""
    if service is None:
        return FAILED, "the service is missing"
    latest = operations[0] if operations else {}
    status = latest.get("Status")
    if status in APPRUNNER_FAILED:
        why = ("the new version never became healthy and App Runner went back to the previous one"
               if str(status).startswith("ROLLBACK") else "the new version never became healthy")
        return FAILED, f"its last operation ({latest.get('Type')}) is {status}: {why}"
    if status in ("PENDING", "IN_PROGRESS") or service.get("Status") == "OPERATION_IN_PROGRESS":
        return WAITING, f"operation {latest.get('Type')} {status}"
    state = service.get("Status")
    if state not in ("RUNNING", "PAUSED"):
        return FAILED, f"the service is {state}"
    serving = ((service.get("SourceConfiguration") or {}).get("ImageRepository") or {}).get("ImageIdentifier")
    if serving != image:
        return FAILED, f"it runs {serving}, not {image}"
    # Paused by its idle schedule: the update took, and the image runs when the service resumes.
    return READY, f"{state} {image}"


def recent_events(service: Optional[dict[str, Any]], count: int = EVENTS_SHOWN) -> list[str]:
    """The service's newest events (DescribeServices lists them newest first), one line each."""
    lines = []
    for event in ((service or {}).get("events") or [])[:count]:
        moment = event.get("createdAt")
        when = moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else str(moment or "")
        lines.append(f"  {when} {event.get('message', '')}".rstrip())
    return lines


def where_to_look(request: Request) -> str:
    c, s = request.cluster, request.service
    if request.runtime == "apprunner":
        places = [
            f"- the containers' log: aws logs tail {request.log_group} --since 1h",
            f"- the deployment's own log: aws logs tail {request.log_group.rsplit('/', 1)[0]}/service --since 1h",
            f"- the service's operations: aws apprunner list-operations --service-arn {s}",
        ]
    else:
        places = [
            f"- the containers' log: aws logs tail {request.log_group} --since 1h",
            f"- the service's events: aws ecs describe-services --cluster {c} --services {s} "
            "--query 'services[0].events[:20]'",
            f"- why tasks stopped: aws ecs describe-tasks --cluster {c} --tasks $(aws ecs list-tasks --cluster {c} "
            f"--service-name {s} --desired-status STOPPED --query 'taskArns[:5]' --output text) "
            "--query 'tasks[].[stoppedReason,containers[0].reason]'",
        ]
    return "\n".join(["Where to look:", *places, f"- what usually causes it and what to do: {DOCS}",
                      "Fix the cause and run `pulumi up` again; until then the site serves the previous version."])


KINDS = {"ecs": "ECS", "express": "ECS Express", "apprunner": "App Runner"}


def failure_message(request: Request, why: str, service: Optional[dict[str, Any]]) -> str:
    kind = KINDS[request.runtime]
    where = f" (cluster {request.cluster})" if request.cluster else ""
    events = recent_events(service) if request.runtime != "apprunner" else []
    return "\n".join([
        f"The new REDCap {request.what} did not become healthy on {kind} service {request.service}{where}: {why}.",
        *(["Latest service events:", *events] if events else []),
        where_to_look(request),
    ])


def serving_state(request: Request, client: Any) -> tuple[str, str, Optional[dict[str, Any]]]:
    """(state, why, the service as described) from the runtime's API."""
    if request.runtime == "apprunner":
        service = client.describe_service(ServiceArn=request.service).get("Service")
        operations = client.list_operations(ServiceArn=request.service, MaxResults=1).get("OperationSummaryList", [])
        return (*apprunner_verdict(service, operations, request.expected), service)
    services = client.describe_services(cluster=request.cluster, services=[request.service]).get("services") or []
    service = services[0] if services else None
    if request.runtime == "ecs":
        return (*verdict(service, request.expected), service)
    images: dict[str, list[str]] = {}

    def runs_image(deployment: dict[str, Any]) -> bool:
        arn = str(deployment.get("taskDefinition"))
        if arn not in images:
            definition = client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            images[arn] = [str(c.get("image")) for c in definition.get("containerDefinitions") or []]
        return request.expected in images[arn]

    return (*ecs_verdict(service, runs_image, f"image {request.expected}"), service)


def run(request: Request, client: Any, remaining_ms: Callable[[], int],
        sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    while True:
        state, why, service = serving_state(request, client)
        if state == READY:
            LOG.info("rolled out: %s", why)
            return {"status": "rolledOut", "runtime": request.runtime, "serving": request.expected, "detail": why}
        if state == FAILED:
            raise RolloutFailed(failure_message(request, why, service))
        if remaining_ms() - request.poll_seconds * 1000 < DEADLINE_MARGIN_MS:
            raise StillRollingOut(f"{KINDS[request.runtime]} service {request.service} is still {why}; run `pulumi up` "
                                  f"again to check once it has finished.\n{where_to_look(request)}")
        LOG.info("waiting: %s", why)
        sleep(request.poll_seconds)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = Request.from_event(event)
    client = boto3.client("apprunner" if request.runtime == "apprunner" else "ecs")
    return run(request, client, context.get_remaining_time_in_millis)
