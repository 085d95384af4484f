"""Builds the REDCap image in CodeBuild and waits for the result (run by aws.lambda_.Invocation).

`pulumi up` invokes this function once per image tag (the Invocation's input holds the tag, so
a new tag means a new invocation and the same tag means none). The function:

1. returns at once when the tag is already in ECR (tags are immutable: nothing to build);
2. adopts a build of the same tag that is still running (a previous `pulumi up` that ran out of
   time, or a concurrent one), otherwise starts one;
3. polls the build until it ends or until the Lambda is about to time out, and raises - so the
   deployment fails - when the build failed, with a link to the build's log, or when it is still
   running (the next `pulumi up` adopts it and waits again).

The original trigger swallowed build failures and, once a project had more than 100 builds,
looped forever on ListBuildsForProject; here every page is read with its own nextToken and the
listing stops at builds too old to be running.

Event: {"projectName", "repositoryName", "imageTag", "sourceLocation"}; optional
"pollSeconds" (default 10) and "maxBuildHours" (default 10: the project's queued + build
timeouts, after which no build can still be running). Standard library and boto3 only.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

RUNNING = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED_STATUSES = frozenset({"FAILED", "FAULT", "TIMED_OUT", "STOPPED"})
# Stop polling this long before the Lambda's own deadline, so the function can still report
# (a killed Lambda gives Pulumi only "Task timed out").
DEADLINE_MARGIN_MS = 30_000
BATCH_GET_LIMIT = 100  # BatchGetBuilds accepts at most 100 ids per call
TAG_VARIABLE = "IMAGE_TAG"


class BuildFailed(RuntimeError):
    """The build ended without success; the message carries the log link."""


class BuildStillRunning(RuntimeError):
    """The Lambda ran out of time while the build goes on; `pulumi up` again adopts it."""


@dataclass(frozen=True)
class BuildRequest:
    project_name: str
    repository_name: str
    image_tag: str
    source_location: str
    poll_seconds: float = 10.0
    max_build_hours: float = 10.0

    @staticmethod
    def from_event(event: dict[str, Any]) -> "BuildRequest":
        missing = [k for k in ("projectName", "repositoryName", "imageTag", "sourceLocation") if not event.get(k)]
        if missing:
            raise ValueError(f"build trigger event lacks {', '.join(missing)}: {sorted(event)}")
        return BuildRequest(
            project_name=str(event["projectName"]),
            repository_name=str(event["repositoryName"]),
            image_tag=str(event["imageTag"]),
            source_location=str(event["sourceLocation"]),
            poll_seconds=float(event.get("pollSeconds", 10)),
            max_build_hours=float(event.get("maxBuildHours", 10)),
        )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(BuildRequest.from_event(event), context.get_remaining_time_in_millis,
               codebuild=boto3.client("codebuild"), ecr=boto3.client("ecr"))


def run(request: BuildRequest, remaining_ms: Callable[[], int], *, codebuild: Any, ecr: Any,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> dict[str, Any]:
    """The whole trigger; the clients, clock and sleep come in so tests drive real APIs."""
    if image_exists(ecr, request.repository_name, request.image_tag):
        LOG.info("image %s:%s exists, nothing to build", request.repository_name, request.image_tag)
        return {"imageTag": request.image_tag, "status": "exists"}
    build_id = running_build_for_tag(codebuild, request, now())
    if build_id:
        LOG.info("adopting running build %s for tag %s", build_id, request.image_tag)
    else:
        build_id = start_build(codebuild, request)
        LOG.info("started build %s for tag %s", build_id, request.image_tag)
    build = wait_for_build(codebuild, build_id, remaining_ms, request.poll_seconds, sleep)
    if not image_exists(ecr, request.repository_name, request.image_tag):
        raise BuildFailed(f"build {build_id} succeeded but {request.repository_name}:{request.image_tag} "
                          f"is not in ECR; see the build log: {log_link(build)}")
    return {"imageTag": request.image_tag, "status": "built", "buildId": build_id}


def image_exists(ecr: Any, repository: str, tag: str) -> bool:
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ImageNotFoundException":
            return False
        raise
    return bool(found.get("imageDetails"))


def start_build(codebuild: Any, request: BuildRequest) -> str:
    build = codebuild.start_build(
        projectName=request.project_name,
        sourceTypeOverride="S3",
        sourceLocationOverride=request.source_location,
        environmentVariablesOverride=[{"name": TAG_VARIABLE, "value": request.image_tag, "type": "PLAINTEXT"}],
    )["build"]
    return str(build["id"])


def project_build_ids(codebuild: Any, project: str) -> Iterator[list[str]]:
    """Pages of build ids, newest first, following nextToken until the listing ends."""
    token: Optional[str] = None
    while True:
        kwargs: dict[str, Any] = {"projectName": project, "sortOrder": "DESCENDING"}
        if token:
            kwargs["nextToken"] = token
        page = codebuild.list_builds_for_project(**kwargs)
        ids = list(page.get("ids") or [])
        if ids:
            yield ids
        next_token = page.get("nextToken")
        if not next_token or next_token == token:  # a repeated token would never end
            return
        token = next_token


def get_builds(codebuild: Any, ids: list[str]) -> list[dict[str, Any]]:
    builds: list[dict[str, Any]] = []
    for i in range(0, len(ids), BATCH_GET_LIMIT):
        builds.extend(codebuild.batch_get_builds(ids=ids[i:i + BATCH_GET_LIMIT]).get("builds") or [])
    return builds


def build_tag(build: dict[str, Any]) -> Optional[str]:
    for variable in (build.get("environment") or {}).get("environmentVariables") or []:
        if variable.get("name") == TAG_VARIABLE:
            return variable.get("value")
    return None


def _start_time(build: dict[str, Any]) -> Optional[dt.datetime]:
    value = build.get("startTime")
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return None


def running_build_for_tag(codebuild: Any, request: BuildRequest, now: dt.datetime) -> Optional[str]:
    """Id of a running build of this tag, if any.

    Builds are listed newest first; a build that started more than max_build_hours ago has hit
    its timeouts, so the listing stops at the first page that reaches that far back.
    """
    horizon = now - dt.timedelta(hours=request.max_build_hours)
    for ids in project_build_ids(codebuild, request.project_name):
        builds = get_builds(codebuild, ids)
        for build in builds:
            if build.get("buildStatus") == RUNNING and build_tag(build) == request.image_tag:
                return str(build["id"])
        starts = [s for s in map(_start_time, builds) if s is not None]
        if starts and min(starts) < horizon:
            return None
    return None


def log_link(build: dict[str, Any]) -> str:
    logs = build.get("logs") or {}
    return str(logs.get("deepLink") or logs.get("cloudWatchLogsArn") or "(no log link)")


def wait_for_build(codebuild: Any, build_id: str, remaining_ms: Callable[[], int], poll_seconds: float,
                   sleep: Callable[[float], None]) -> dict[str, Any]:
    """Poll until the build ends; return it on success, raise on failure or when time is up."""
    while True:
        # Wait first: a build that was just started or adopted cannot have finished yet.
        if remaining_ms() - poll_seconds * 1000 < DEADLINE_MARGIN_MS:
            raise BuildStillRunning(
                f"build {build_id} is still running and this function is about to time out; run "
                f"`pulumi up` again to wait for it (it will not start a second build)")
        sleep(poll_seconds)
        builds = get_builds(codebuild, [build_id])
        if not builds:
            raise BuildFailed(f"build {build_id} is not known to CodeBuild any more")
        build = builds[0]
        status = build.get("buildStatus")
        if status == SUCCEEDED:
            return build
        if status in FAILED_STATUSES:
            phase = next((p for p in build.get("phases") or [] if p.get("phaseStatus") in FAILED_STATUSES), {})
            where = f" in phase {phase['phaseType']}" if phase.get("phaseType") else ""
            raise BuildFailed(f"image build {build_id} ended {status}{where}; build log: {log_link(build)}")
        LOG.info("build %s: %s, phase %s", build_id, status, build.get("currentPhase"))
