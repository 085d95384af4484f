"""functions/rollout_check.py against moto's ECS: the check that fails `pulumi up` when a rollout did
not end on the revision the update deployed.

moto keeps a service's first deployment whatever UpdateService asks, so each test sets the
service's deployments and events as ECS describes them at that point of a rollout (Amazon ECS
Developer Guide, "How the Amazon ECS deployment circuit breaker detects failures"): the failing
deployment's rolloutState turns FAILED, and with rollback on, ECS starts a deployment of the last
COMPLETED revision, which becomes PRIMARY; once the failed tasks are gone only that one is left.
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.ecs.models import ecs_backends

from functions import rollout_check as fn
from lambda_clock import Clock

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOG_GROUP = "/ecs/redcap-prod"
AT = dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.timezone.utc)


@pytest.fixture
def aws(monkeypatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName="redcap-prod")
        old, new = (ecs.register_task_definition(
            family="redcap-prod", networkMode="awsvpc", cpu="2048", memory="4096", requiresCompatibilities=["FARGATE"],
            containerDefinitions=[{"name": "redcap", "image": f"redcap-prod:{tag}"}])["taskDefinition"]["taskDefinitionArn"]
            for tag in ("15.0.9-0a1b2c3d4e5f", "15.1.0-9f8e7d6c5b4a"))
        ecs.create_service(cluster="redcap-prod", serviceName="redcap-prod", desiredCount=2, taskDefinition=new,
                           launchType="FARGATE")
        (service,) = ecs_backends[ACCOUNT][REGION].services.values()
        yield {"ecs": ecs, "old": old, "new": new, "service": service}


def deployment(task_definition: str, *, status: str = "PRIMARY", state: str = "COMPLETED", running: int = 2,
               desired: int = 2, reason: str = "") -> dict[str, Any]:
    return {"id": f"ecs-svc/{task_definition.rsplit(':', 1)[-1]}{len(status)}", "status": status,
            "taskDefinition": task_definition, "rolloutState": state, "rolloutStateReason": reason,
            "runningCount": running, "desiredCount": desired, "pendingCount": 0, "failedTasks": 0,
            "launchType": "FARGATE", "createdAt": AT, "updatedAt": AT}


def ecs_says(aws: dict, *deployments: dict, events: tuple[str, ...] = ()) -> None:
    aws["service"].deployments = list(deployments)
    aws["service"].events = [{"id": str(i), "createdAt": AT - dt.timedelta(minutes=i), "message": m}
                             for i, m in enumerate(events)]


def event(aws: dict) -> dict:
    return {"runtime": "ecs", "cluster": "redcap-prod", "service": "redcap-prod", "taskDefinition": aws["new"], "logGroup": LOG_GROUP,
            "pollSeconds": 15}


def check(aws: dict, clock: Clock | None = None, sleep=None) -> dict:
    clock = clock or Clock(900_000)
    return fn.run(fn.Request.from_event(event(aws)), aws["ecs"], clock.remaining_ms, sleep=sleep or clock.sleep)


ROLLED_BACK_EVENTS = (
    "(service redcap-prod) rolling back to deployment ecs-svc/1111.",
    "(service redcap-prod) (deployment ecs-svc/2222) deployment failed: tasks failed to start.",
    "(service redcap-prod) (task 0a1b2c) failed container health checks.",
)


def test_a_rollout_that_ended_on_the_new_revision_passes(aws):
    ecs_says(aws, deployment(aws["new"]))
    assert check(aws) == {"status": "rolledOut", "runtime": "ecs", "serving": aws["new"],
                          "detail": "2 task(s) of revision redcap-prod:2 running"}


def test_a_stage_scaled_to_zero_by_its_idle_schedule_passes_once_the_revision_is_primary(aws):
    ecs_says(aws, deployment(aws["new"], running=0, desired=0))
    assert check(aws)["detail"] == "0 task(s) of revision redcap-prod:2 running"


def test_a_rollback_by_the_circuit_breaker_fails_with_the_events_and_where_to_look(aws):
    # What the service looks like once the rollback has finished: steady, one deployment, old revision.
    ecs_says(aws, deployment(aws["old"]), events=ROLLED_BACK_EVENTS)
    with pytest.raises(fn.RolloutFailed) as failure:
        check(aws)
    text = str(failure.value)
    assert text.startswith("The new REDCap revision redcap-prod:2 did not become healthy on ECS service redcap-prod "
                           "(cluster redcap-prod): the service runs redcap-prod:1, not revision redcap-prod:2: ECS rolled the "
                           "deployment back")
    lines = text.splitlines()
    # The newest events first, as ECS lists them, with their times.
    events = lines[lines.index("Latest service events:") + 1:lines.index("Where to look:")]
    assert events == [f"  {(AT - dt.timedelta(minutes=i)).isoformat()} {m}" for i, m in enumerate(ROLLED_BACK_EVENTS)]
    assert f"- the containers' log: aws logs tail {LOG_GROUP} --since 1h" in lines
    assert ("- the service's events: aws ecs describe-services --cluster redcap-prod --services redcap-prod "
            "--query 'services[0].events[:20]'") in lines
    assert any(line.startswith("- why tasks stopped: aws ecs describe-tasks --cluster redcap-prod") and
               "--desired-status STOPPED" in line for line in lines)
    assert "- what usually causes it and what to do: docs/compute.md#a-deployment-that-never-gets-healthy" in lines
    assert lines[-1] == "Fix the cause and run `pulumi up` again; until then the site serves the previous version."


def test_a_rollback_in_progress_fails_at_once_with_ecs_reason(aws):
    ecs_says(aws, deployment(aws["old"], state="IN_PROGRESS", running=1),
             deployment(aws["new"], status="ACTIVE", state="FAILED", running=0,
                        reason="ECS deployment circuit breaker: tasks failed to start."),
             events=ROLLED_BACK_EVENTS[1:])
    clock = Clock(900_000)
    with pytest.raises(fn.RolloutFailed, match=r"ECS stopped the deployment of revision redcap-prod:2 \(ECS deployment circuit "
                                               r"breaker: tasks failed to start\.\) and rolls the service back"):
        check(aws, clock)
    assert clock.sleeps == 0


def test_a_rollout_still_draining_is_waited_for(aws):
    ecs_says(aws, deployment(aws["new"], state="IN_PROGRESS", running=2),
             deployment(aws["old"], status="ACTIVE", state="COMPLETED", running=1))
    clock = Clock(900_000)

    def drained(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps == 3:
            ecs_says(aws, deployment(aws["new"]))

    assert check(aws, clock, drained)["status"] == "rolledOut" and clock.sleeps == 3


def test_a_check_out_of_time_says_to_run_pulumi_up_again(aws):
    ecs_says(aws, deployment(aws["new"], state="IN_PROGRESS", running=1),
             deployment(aws["old"], status="ACTIVE", running=2))
    with pytest.raises(fn.StillRollingOut) as still:
        check(aws, Clock(fn.DEADLINE_MARGIN_MS + 40_000))
    assert str(still.value).startswith("ECS service redcap-prod is still rolling out: 1 of 2 new task(s) running, "
                                       "1 older deployment(s) still draining; run `pulumi up` again")


def test_a_deleted_service_fails(aws):
    aws["ecs"].delete_service(cluster="redcap-prod", service="redcap-prod", force=True)
    with pytest.raises(fn.RolloutFailed, match="redcap-prod\\): the service is INACTIVE"):
        check(aws)


def test_the_handler_reads_its_event_and_asks_ecs(aws):
    ecs_says(aws, deployment(aws["new"]))
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 900_000)
    assert fn.handler(event(aws), context)["status"] == "rolledOut"
    with pytest.raises(ValueError, match="rollout check event lacks taskDefinition, logGroup"):
        fn.handler({"runtime": "ecs", "cluster": "redcap-prod", "service": "redcap-prod"}, context)
    with pytest.raises(ValueError, match="runtime must be one of ecs, express, apprunner, not 'fargate'"):
        fn.handler({**event(aws), "runtime": "fargate"}, context)


# --- Express: the same service API, judged by the image the primary deployment runs -----------------

IMAGE_NEW = "redcap-prod:15.1.0-9f8e7d6c5b4a"


def express_check(aws: dict, clock: Clock | None = None) -> dict:
    clock = clock or Clock(900_000)
    request = fn.Request.from_event({"runtime": "express", "cluster": "redcap-prod", "service": "redcap-prod",
                                     "image": IMAGE_NEW, "logGroup": "/ecs/redcap-prod-express"})
    return fn.run(request, aws["ecs"], clock.remaining_ms, sleep=clock.sleep)


def test_express_passes_when_the_primary_deployment_runs_the_new_image(aws):
    ecs_says(aws, deployment(aws["new"]))
    assert express_check(aws)["detail"] == f"2 task(s) of image {IMAGE_NEW} running"


def test_express_fails_when_it_rolled_back_to_a_revision_of_another_image(aws):
    ecs_says(aws, deployment(aws["old"]), events=ROLLED_BACK_EVENTS)
    with pytest.raises(fn.RolloutFailed) as failure:
        express_check(aws)
    text = str(failure.value)
    assert text.startswith(f"The new REDCap image {IMAGE_NEW} did not become healthy on ECS Express service "
                           "redcap-prod (cluster redcap-prod): the service runs redcap-prod:1")
    assert "aws logs tail /ecs/redcap-prod-express --since 1h" in text and ROLLED_BACK_EVENTS[0] in text


# --- App Runner: no emulator, so its verdict against the API's response shapes ----------------------

APPRUNNER_ARN = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:service/redcap-prod/0a1b2c3d4e5f"
APPRUNNER_LOGS = "/aws/apprunner/redcap-prod/0a1b2c3d4e5f/application"


class AppRunnerSays:
    """DescribeService and ListOperations answers, one pair per call."""

    def __init__(self, *answers: tuple[str, str, str]):
        self.answers = list(answers)  # (service status, image, latest operation status)
        self.calls: list[str] = []

    def describe_service(self, ServiceArn: str) -> dict:
        self.calls.append(ServiceArn)
        status, image, _ = self.answers[0]
        return {"Service": {"ServiceArn": ServiceArn, "Status": status,
                            "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": image}}}}

    def list_operations(self, ServiceArn: str, MaxResults: int) -> dict:
        _, _, operation = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return {"OperationSummaryList": [{"Type": "UPDATE_SERVICE", "Status": operation}]}


def apprunner_check(client: AppRunnerSays, clock: Clock | None = None) -> dict:
    clock = clock or Clock(900_000)
    request = fn.Request.from_event({"runtime": "apprunner", "service": APPRUNNER_ARN, "image": IMAGE_NEW,
                                     "logGroup": APPRUNNER_LOGS})
    return fn.run(request, client, clock.remaining_ms, sleep=clock.sleep)


def test_app_runner_waits_for_its_operation_and_passes_running_the_new_image():
    client = AppRunnerSays(("OPERATION_IN_PROGRESS", "redcap-prod:old", "IN_PROGRESS"),
                           ("RUNNING", IMAGE_NEW, "SUCCEEDED"))
    assert apprunner_check(client)["detail"] == f"RUNNING {IMAGE_NEW}" and len(client.calls) == 2


def test_app_runner_running_again_after_its_rollback_fails_with_where_to_look():
    client = AppRunnerSays(("RUNNING", "redcap-prod:15.0.9-0a1b2c3d4e5f", "ROLLBACK_SUCCEEDED"))
    with pytest.raises(fn.RolloutFailed) as failure:
        apprunner_check(client)
    lines = str(failure.value).splitlines()
    assert lines[0] == (f"The new REDCap image {IMAGE_NEW} did not become healthy on App Runner service {APPRUNNER_ARN}: "
                        "its last operation (UPDATE_SERVICE) is ROLLBACK_SUCCEEDED: the new version never became "
                        "healthy and App Runner went back to the previous one.")
    assert f"- the containers' log: aws logs tail {APPRUNNER_LOGS} --since 1h" in lines
    assert "- the deployment's own log: aws logs tail /aws/apprunner/redcap-prod/0a1b2c3d4e5f/service --since 1h" in lines
    assert f"- the service's operations: aws apprunner list-operations --service-arn {APPRUNNER_ARN}" in lines


def test_app_runner_serving_another_image_fails():
    with pytest.raises(fn.RolloutFailed, match=f"it runs redcap-prod:other, not {IMAGE_NEW}"):
        apprunner_check(AppRunnerSays(("RUNNING", "redcap-prod:other", "SUCCEEDED")))


def test_app_runner_paused_by_its_idle_schedule_passes_with_the_new_image_only():
    assert apprunner_check(AppRunnerSays(("PAUSED", IMAGE_NEW, "SUCCEEDED")))["detail"] == f"PAUSED {IMAGE_NEW}"
    with pytest.raises(fn.RolloutFailed, match=f"it runs redcap-prod:old, not {IMAGE_NEW}"):
        apprunner_check(AppRunnerSays(("PAUSED", "redcap-prod:old", "SUCCEEDED")))
    with pytest.raises(fn.RolloutFailed, match="the service is DELETED"):
        apprunner_check(AppRunnerSays(("DELETED", IMAGE_NEW, "SUCCEEDED")))
    with pytest.raises(fn.RolloutFailed, match=r"is FAILED: the new version never became healthy\.\n"):
        apprunner_check(AppRunnerSays(("RUNNING", IMAGE_NEW, "FAILED")))
