"""functions/build_trigger.py against moto: the live moto server for the paths moto models
(ECR images, starting builds, a build that succeeds), and moto in-process with its CodeBuild
backend made faithful where moto is not (build status transitions, environment overrides,
ListBuildsForProject paging of 100 ids newest first) for failures, timeouts and >100 builds.

The handler's own code runs unchanged in every case; only AWS's side is simulated.
"""
from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.codebuild.models import CodeBuildBackend, codebuild_backends
from moto.codebuild.responses import CodeBuildResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult

from functions import build_trigger as bt

REGION = "us-east-1"
PROJECT = "redcap-dev-image"
REPOSITORY = "redcap-dev"
TAG = "15.0.9-0123456789ab"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                  "size": 2, "digest": "sha256:" + "0" * 64}, "layers": []})


def event(**extra: Any) -> dict[str, Any]:
    return {"projectName": PROJECT, "repositoryName": REPOSITORY, "imageTag": TAG,
            "sourceLocation": "artifacts-bucket/contexts/15.0.9-0123456789ab.zip", "pollSeconds": 1, **extra}


class Clock:
    """The Lambda's remaining time, spent by the handler's sleeps."""

    def __init__(self, remaining_ms: int):
        self.remaining = remaining_ms
        self.sleeps = 0
        self.hooks: list[Any] = []

    def remaining_ms(self) -> int:
        return self.remaining

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.remaining -= int(seconds * 1000)
        for hook in self.hooks:
            hook(self.sleeps)


def create_project(codebuild: Any) -> None:
    codebuild.create_project(
        name=PROJECT, source={"type": "S3", "location": "artifacts-bucket/contexts/x.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_MEDIUM", "privilegedMode": True},
        serviceRole=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/codebuild")


# -----------------------------------------------------------------------------------------
# Live moto server
# -----------------------------------------------------------------------------------------

@pytest.fixture
def live(moto_server, monkeypatch):
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    codebuild, ecr = moto_server.client("codebuild"), moto_server.client("ecr")
    create_project(codebuild)
    ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")
    return SimpleNamespace(codebuild=codebuild, ecr=ecr)


def test_existing_tag_returns_without_building(live):
    live.ecr.put_image(repositoryName=REPOSITORY, imageManifest=MANIFEST, imageTag=TAG)
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 900_000)

    result = bt.handler(event(), context)  # the real entry point, clients from the environment

    assert result == {"imageTag": TAG, "status": "exists"}
    assert live.codebuild.list_builds_for_project(projectName=PROJECT)["ids"] == []


def test_starts_a_build_and_waits_for_its_push(live):
    clock = Clock(900_000)
    # What the build does while the handler waits: it pushes the tag.
    clock.hooks.append(lambda n: n == 1 and live.ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=MANIFEST, imageTag=TAG))

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms,
                    codebuild=live.codebuild, ecr=live.ecr, sleep=clock.sleep)

    ids = live.codebuild.list_builds_for_project(projectName=PROJECT)["ids"]
    assert len(ids) == 1 and result == {"imageTag": TAG, "status": "built", "buildId": ids[0]}


def test_success_without_the_tag_in_ecr_fails_the_deployment(live):
    clock = Clock(900_000)
    with pytest.raises(bt.BuildFailed, match=f"{REPOSITORY}:{TAG} is not in ECR; see the build log: https://"):
        bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms,
               codebuild=live.codebuild, ecr=live.ecr, sleep=clock.sleep)


def test_many_earlier_builds_on_the_live_server_end(live):
    for _ in range(120):
        live.codebuild.start_build(projectName=PROJECT)
    clock = Clock(900_000)
    clock.hooks.append(lambda n: n == 1 and live.ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=MANIFEST, imageTag=TAG))

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms,
                    codebuild=live.codebuild, ecr=live.ecr, sleep=clock.sleep)

    assert result["status"] == "built"
    assert len(live.codebuild.list_builds_for_project(projectName=PROJECT)["ids"]) == 121


def test_event_without_a_tag_is_rejected():
    with pytest.raises(ValueError, match="lacks imageTag"):
        bt.BuildRequest.from_event({"projectName": PROJECT, "repositoryName": REPOSITORY, "sourceLocation": "b/k"})


# -----------------------------------------------------------------------------------------
# moto in-process, with CodeBuild's status transitions and paging made faithful
# -----------------------------------------------------------------------------------------

class FaithfulCodeBuild:
    """Makes moto's CodeBuild behave like the service where the handler depends on it."""

    PAGE = 100

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}
        self.next_script: list[str] = ["IN_PROGRESS", "SUCCEEDED"]
        self.list_calls: list[dict[str, Any]] = []
        self.started: list[dict[str, Any]] = []

    @property
    def backend(self) -> CodeBuildBackend:
        return codebuild_backends[DEFAULT_ACCOUNT_ID][REGION]

    def history(self) -> list[dict[str, Any]]:
        return self.backend.build_metadata_history[PROJECT]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self
        original_start = CodeBuildResponse.start_build

        def start_build(response: CodeBuildResponse) -> ActionResult:
            result = original_start(response)
            build = result.result["build"]
            overrides = response._get_param("environmentVariablesOverride") or []
            build["environment"] = {**build["environment"], "environmentVariables": overrides}
            fake.started.append({"sourceTypeOverride": response._get_param("sourceTypeOverride"),
                                 "sourceLocationOverride": response._get_param("sourceLocationOverride"),
                                 "environmentVariablesOverride": overrides})
            fake.scripts[build["id"]] = list(fake.next_script)
            return result

        def list_builds_for_project(response: CodeBuildResponse) -> ActionResult:
            fake.list_calls.append({"nextToken": response._get_param("nextToken"),
                                    "sortOrder": response._get_param("sortOrder")})
            ids = [b["id"] for b in reversed(fake.history())]  # newest first, as the service
            offset = int(response._get_param("nextToken") or 0)
            page: dict[str, Any] = {"ids": ids[offset:offset + fake.PAGE]}
            if offset + fake.PAGE < len(ids):
                page["nextToken"] = str(offset + fake.PAGE)
            return ActionResult(page)

        def batch_get_builds(backend: CodeBuildBackend, ids: list[str]) -> list[dict[str, Any]]:
            assert len(ids) <= 100, "BatchGetBuilds takes at most 100 ids"
            found = []
            for build in fake.history():
                if build["id"] in ids:
                    script = fake.scripts.get(build["id"])
                    if script:
                        build["buildStatus"] = script.pop(0) if len(script) > 1 else script[0]
                    if build["buildStatus"] != "IN_PROGRESS":
                        build["currentPhase"] = "COMPLETED"
                        build["phases"] = [{"phaseType": "BUILD", "phaseStatus": build["buildStatus"]}] \
                            if build["buildStatus"] != "SUCCEEDED" else []
                    build["logs"] = {**build["logs"], "deepLink": f"https://console.aws.amazon.com/logs/{build['id']}"}
                    found.append(build)
            return found

        monkeypatch.setattr(CodeBuildResponse, "start_build", start_build)
        monkeypatch.setattr(CodeBuildResponse, "list_builds_for_project", list_builds_for_project)
        monkeypatch.setattr(CodeBuildBackend, "batch_get_builds", batch_get_builds)

    def add_build(self, codebuild: Any, tag: str, status: str, started: dt.datetime) -> str:
        self.next_script = [status]
        build_id = codebuild.start_build(
            projectName=PROJECT,
            environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}])["build"]["id"]
        self.history()[-1]["startTime"] = started.isoformat()
        self.history()[-1]["buildStatus"] = status
        self.started.clear()
        return build_id


@pytest.fixture
def aws(monkeypatch) -> Iterator[SimpleNamespace]:
    for key in ("AWS_ENDPOINT_URL",):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        fake = FaithfulCodeBuild()
        fake.install(monkeypatch)
        codebuild = boto3.client("codebuild", region_name=REGION)
        ecr = boto3.client("ecr", region_name=REGION)
        create_project(codebuild)
        ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")
        yield SimpleNamespace(codebuild=codebuild, ecr=ecr, fake=fake)


def push_on_first_sleep(aws: SimpleNamespace, clock: Clock) -> None:
    clock.hooks.append(lambda n: n == 1 and aws.ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=MANIFEST, imageTag=TAG))


def test_start_passes_the_tag_and_the_context_location(aws):
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild, ecr=aws.ecr,
           sleep=clock.sleep)

    assert aws.fake.started == [{
        "sourceTypeOverride": "S3",
        "sourceLocationOverride": "artifacts-bucket/contexts/15.0.9-0123456789ab.zip",
        "environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": TAG, "type": "PLAINTEXT"}],
    }]
    assert aws.fake.list_calls[0]["sortOrder"] == "DESCENDING"


def test_waits_through_in_progress_until_success(aws):
    aws.fake.next_script = ["IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
                    ecr=aws.ecr, sleep=clock.sleep)

    assert result["status"] == "built" and clock.sleeps == 4


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED"])
def test_a_failed_build_fails_the_deployment_with_its_log_link(aws, status):
    aws.fake.next_script = ["IN_PROGRESS", status]
    clock = Clock(900_000)

    with pytest.raises(bt.BuildFailed) as raised:
        bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
               ecr=aws.ecr, sleep=clock.sleep)

    build_id = aws.fake.history()[-1]["id"]
    assert str(raised.value) == (f"image build {build_id} ended {status} in phase BUILD; "
                                 f"build log: https://console.aws.amazon.com/logs/{build_id}")


def test_near_the_lambda_deadline_it_stops_waiting_and_says_how_to_resume(aws):
    aws.fake.next_script = ["IN_PROGRESS"]
    clock = Clock(120_000)  # 2 minutes left, 1 s polls: stops with the 30 s margin

    with pytest.raises(bt.BuildStillRunning, match="run `pulumi up` again to wait for it"):
        bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
               ecr=aws.ecr, sleep=clock.sleep)

    assert clock.remaining >= bt.DEADLINE_MARGIN_MS
    assert clock.sleeps == (120_000 - bt.DEADLINE_MARGIN_MS) // 1000


def test_the_next_run_adopts_the_build_that_outlived_the_lambda(aws):
    aws.fake.next_script = ["IN_PROGRESS"]
    first = Clock(60_000)
    with pytest.raises(bt.BuildStillRunning):
        bt.run(bt.BuildRequest.from_event(event()), first.remaining_ms, codebuild=aws.codebuild,
               ecr=aws.ecr, sleep=first.sleep)
    running = aws.fake.history()[-1]["id"]
    aws.fake.started.clear()
    aws.fake.scripts[running] = ["IN_PROGRESS", "SUCCEEDED"]
    second = Clock(900_000)
    push_on_first_sleep(aws, second)

    result = bt.run(bt.BuildRequest.from_event(event()), second.remaining_ms, codebuild=aws.codebuild,
                    ecr=aws.ecr, sleep=second.sleep)

    assert result == {"imageTag": TAG, "status": "built", "buildId": running}
    assert aws.fake.started == []  # no second build


def test_more_than_100_earlier_builds_are_paged_and_a_running_one_on_page_two_is_adopted(aws):
    now = dt.datetime.now(dt.timezone.utc)
    adopted = aws.fake.add_build(aws.codebuild, TAG, "IN_PROGRESS", now - dt.timedelta(minutes=20))
    for i in range(149):  # newer builds of other tags push ours to the second page
        aws.fake.add_build(aws.codebuild, f"old-{i}", "SUCCEEDED", now - dt.timedelta(minutes=19))
    aws.fake.scripts[adopted] = ["IN_PROGRESS", "SUCCEEDED"]
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
                    ecr=aws.ecr, sleep=clock.sleep)

    assert result["buildId"] == adopted and aws.fake.started == []
    assert [c["nextToken"] for c in aws.fake.list_calls] == [None, "100"]


def test_paging_ends_after_the_last_page_and_starts_a_build(aws):
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(250):
        aws.fake.add_build(aws.codebuild, f"old-{i}", "SUCCEEDED", now - dt.timedelta(minutes=5))
    aws.fake.next_script = ["SUCCEEDED"]
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
                    ecr=aws.ecr, sleep=clock.sleep)

    assert result["status"] == "built" and len(aws.fake.started) == 1
    assert [c["nextToken"] for c in aws.fake.list_calls] == [None, "100", "200"]


def test_paging_stops_at_builds_too_old_to_be_running(aws):
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(150):
        aws.fake.add_build(aws.codebuild, f"old-{i}", "SUCCEEDED", now - dt.timedelta(days=30))
    for i in range(100):
        aws.fake.add_build(aws.codebuild, f"recent-{i}", "SUCCEEDED", now - dt.timedelta(days=2))
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild, ecr=aws.ecr,
           sleep=clock.sleep)

    assert [c["nextToken"] for c in aws.fake.list_calls] == [None]


def test_a_running_build_of_another_tag_is_not_adopted(aws):
    other = aws.fake.add_build(aws.codebuild, "15.0.8-ffffffffffff", "IN_PROGRESS", dt.datetime.now(dt.timezone.utc))
    aws.fake.next_script = ["SUCCEEDED"]
    clock = Clock(900_000)
    push_on_first_sleep(aws, clock)

    result = bt.run(bt.BuildRequest.from_event(event()), clock.remaining_ms, codebuild=aws.codebuild,
                    ecr=aws.ecr, sleep=clock.sleep)

    assert result["buildId"] != other and len(aws.fake.started) == 1
