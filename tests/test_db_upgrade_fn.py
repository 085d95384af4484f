"""functions/db_upgrade.py against moto's ECS and CloudWatch Logs (the ECS and Express runtimes),
and its App Runner verdict against the API's response shapes (moto has no App Runner).

moto runs a Fargate task through RUNNING ... STOPPED as it is described, with exit code 0, and
keeps no container log. `TaskRunner` makes it faithful where the function depends on it: a task
stops after `describes` describes with the exit code and the log lines the container's
upgrade-database mode writes (container/bootstrap/upgrade.py), into the awslogs stream ECS uses.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecs.models import EC2ContainerServiceBackend
from moto.moto_api import state_manager

from functions import db_upgrade as fn
from lambda_clock import Clock

REGION = "us-east-1"
IMAGE_OLD = "123456789012.dkr.ecr.us-east-1.amazonaws.com/redcap-prod:15.0.9-0a1b2c3d4e5f"
IMAGE_NEW = "123456789012.dkr.ecr.us-east-1.amazonaws.com/redcap-prod:15.1.0-9f8e7d6c5b4a"
STARTED = dt.datetime(2026, 11, 30, 9, 15, 0, tzinfo=dt.timezone.utc)
UPGRADED_LINE = ('upgrade result: {"from": "15.0.9", "seconds": 41.2, "statements": 812, "status": "upgraded", '
                 '"to": "15.1.0"}')
FAILED_LINE = ('upgrade result: {"error": "the upgrade SQL failed at statement 4 (in the SQL for version 15.1.0: '
               'ALTER TABLE x ADD y INT;): (1054, \\"Unknown column\\")", "from": "15.0.9", "status": "failed", '
               '"to": "15.1.0"}')


class TaskRunner:
    """Upgrade tasks run for `describes` describes, then stop with `exit_code`, having written
    `lines` to their log stream."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, logs: Any, *, describes: int = 2, exit_code: int = 0,
                 lines: tuple[str, ...] = ("bootstrap INFO: bootstrap complete", UPGRADED_LINE)):
        self.describes, self.exit_code, self.lines, self.logs = describes, exit_code, lines, logs
        self.started: list[Any] = []
        self.seen: dict[str, int] = {}
        original_run = EC2ContainerServiceBackend.run_task
        original_describe = EC2ContainerServiceBackend.describe_tasks
        original_transition = state_manager.get_transition
        runner = self

        def transition(model_name: str) -> dict:
            # Tasks keep their status until this runner stops them (moto would progress them).
            if model_name == "ecs::task":
                return {"progression": "manual", "times": 10**9}
            return original_transition(model_name)

        def run_task(backend: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> Any:
            tasks = original_run(backend, *args, **kwargs)
            for task in tasks:
                task.started_at = STARTED
                runner.started.append(task)
            return tasks

        def describe(backend: EC2ContainerServiceBackend, cluster: str, tasks: list[str]) -> Any:
            found = original_describe(backend, cluster, tasks)
            for task in found:
                if task not in runner.started:
                    continue
                runner.seen[task.task_arn] = runner.seen.get(task.task_arn, 0) + 1
                if runner.seen[task.task_arn] > runner.describes:
                    task.status, task.desired_status = "STOPPED", "STOPPED"
                    task.stopped_reason = "Essential container in task exited"
                    task.containers[0].exitCode = runner.exit_code
                    runner.write_log(task.task_arn)
            return found

        monkeypatch.setattr(state_manager, "get_transition", transition)
        monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run_task)
        monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", describe)

    def write_log(self, task_arn: str) -> None:
        stream = f"upgrade/redcap/{task_arn.rsplit('/', 1)[-1]}"
        existing = self.logs.describe_log_streams(logGroupName="/ecs/redcap-prod-upgrade",
                                                  logStreamNamePrefix=stream)["logStreams"]
        if existing or not self.lines:
            return  # a container that never started writes no stream
        self.logs.create_log_stream(logGroupName="/ecs/redcap-prod-upgrade", logStreamName=stream)
        self.logs.put_log_events(logGroupName="/ecs/redcap-prod-upgrade", logStreamName=stream, logEvents=[
            {"timestamp": int(time.time() * 1000) + i, "message": line} for i, line in enumerate(self.lines)])


@pytest.fixture
def aws(monkeypatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "2")  # the service's tasks run (rollout COMPLETED)
    # moto 5.2.5 describes an awsvpc task's network interface with a DNS name its ENIs lack.
    monkeypatch.setattr(NetworkInterface, "private_dns_name",
                        property(lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.ec2.internal"),
                        raising=False)
    with mock_aws():
        ecs, ec2, logs = (boto3.client(s, region_name=REGION) for s in ("ecs", "ec2", "logs"))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
        service_cluster = ecs.create_cluster(clusterName="redcap-prod")["cluster"]["clusterArn"]
        upgrade_cluster = ecs.create_cluster(clusterName="redcap-prod-upgrade")["cluster"]["clusterArn"]
        serving = ecs.register_task_definition(family="redcap-prod", networkMode="awsvpc", cpu="2048", memory="4096",
                                               requiresCompatibilities=["FARGATE"],
                                               containerDefinitions=[{"name": "redcap", "image": IMAGE_NEW}])
        service = ecs.create_service(cluster="redcap-prod", serviceName="redcap-prod", desiredCount=2,
                                     taskDefinition=serving["taskDefinition"]["taskDefinitionArn"],
                                     launchType="FARGATE")["service"]["serviceArn"]
        task = ecs.register_task_definition(
            family="redcap-prod-upgrade", networkMode="awsvpc", cpu="1024", memory="2048",
            requiresCompatibilities=["FARGATE"],
            containerDefinitions=[{"name": "redcap", "image": IMAGE_NEW, "command": ["upgrade-database"],
                                   "memory": 2048}])  # moto needs a container memory to place a task
        logs.create_log_group(logGroupName="/ecs/redcap-prod-upgrade")
        target = fn.Target.from_environment({
            "RUNTIME": "ecs", "SERVICE_ARN": service, "SERVICE_CLUSTER": service_cluster, "IMAGE_URI": IMAGE_NEW,
            "UPGRADE_CLUSTER": upgrade_cluster, "TASK_DEFINITION": task["taskDefinition"]["taskDefinitionArn"],
            "SUBNETS": subnet, "SECURITY_GROUPS": group, "CONTAINER_NAME": "redcap",
            "LOG_GROUP": "/ecs/redcap-prod-upgrade", "LOG_STREAM_PREFIX": "upgrade",
            "DB_CLUSTER_IDENTIFIER": "redcap-prod-0a1b2c3d", "BACKTRACK": "true"})
        yield {"ecs": ecs, "logs": logs, "target": target, "service": service}


def event(action: str = "update", attempt: str = "9f8e7d6c") -> dict:
    return {"release": "15.1.0", "attempt": attempt, "snapshotIdentifier": "redcap-prod-15-0-9-to-15-1-0-9f8e7d6c",
            "tf": {"action": action, "prev_input": {"release": "15.0.9", "attempt": "0a1b2c3d"}}}


def go(aws: dict, e: dict, clock: Clock | None = None) -> dict:
    clock = clock or Clock(900_000)
    return fn.run(fn.Request.from_event({**e, "pollSeconds": 15}), aws["target"], clock.remaining_ms,
                  ecs=aws["ecs"], apprunner=None, logs=aws["logs"], sleep=clock.sleep)


def upgrade_tasks(aws: dict) -> list[dict]:
    arns = [a for status in ("RUNNING", "STOPPED") for a in aws["ecs"].list_tasks(
        cluster="redcap-prod-upgrade", desiredStatus=status)["taskArns"]]
    return aws["ecs"].describe_tasks(cluster="redcap-prod-upgrade", tasks=arns)["tasks"] if arns else []


def test_runs_the_task_after_the_rollout_and_reports_its_result(aws, monkeypatch):
    runner = TaskRunner(monkeypatch, aws["logs"], describes=3)
    clock = Clock(900_000)
    result = go(aws, event(), clock)
    assert (result["status"], result["from"], result["to"], result["statements"]) == ("upgraded", "15.0.9", "15.1.0", 812)
    assert result["snapshotIdentifier"] == "redcap-prod-15-0-9-to-15-1-0-9f8e7d6c"
    (task,) = runner.started
    assert result["taskArn"] == task.task_arn and clock.sleeps >= 3
    assert task.started_by == "redcap-upgrade-9f8e7d6c" and task.launch_type == "FARGATE"
    net = task.network_configuration["awsvpcConfiguration"]
    assert net["assignPublicIp"] == "DISABLED" and net["subnets"] == list(aws["target"].subnets)
    assert task.task_definition_arn == aws["target"].task_definition


def test_a_database_already_upgraded_is_reported_as_current(aws, monkeypatch):
    TaskRunner(monkeypatch, aws["logs"], describes=0, lines=(
        'upgrade result: {"from": "15.1.0", "seconds": 0.4, "statements": 0, "status": "current", "to": "15.1.0"}',))
    assert go(aws, event("create"))["status"] == "current"


def test_delete_does_nothing(aws, monkeypatch):
    runner = TaskRunner(monkeypatch, aws["logs"])
    assert go(aws, event("delete"))["status"] == "skipped" and runner.started == []


def test_a_failed_upgrade_fails_the_update_with_the_cause_and_the_way_back(aws, monkeypatch):
    TaskRunner(monkeypatch, aws["logs"], describes=1, exit_code=8,
               lines=("bootstrap INFO: running REDCap's upgrade SQL 15.0.9 -> 15.1.0 (812 statements, 90112 bytes)",
                      "bootstrap ERROR: the upgrade SQL failed at statement 4", FAILED_LINE))
    with pytest.raises(fn.UpgradeFailed) as err:
        go(aws, event())
    text = str(err.value)
    assert "REDCap's database upgrade to 15.1.0 failed (task arn:aws:ecs:" in text and "exit code 8" in text
    assert "the upgrade SQL failed at statement 4 (in the SQL for version 15.1.0: ALTER TABLE x ADD y INT;)" in text
    assert ("aws rds backtrack-db-cluster --db-cluster-identifier redcap-prod-0a1b2c3d --backtrack-to "
            "2026-11-30T09:15:00Z") in text
    assert "restore the snapshot redcap-prod-15-0-9-to-15-1-0-9f8e7d6c (taken before the rollout)" in text
    assert "Last lines of the task's log (/ecs/redcap-prod-upgrade):" in text and "812 statements" in text


def test_a_task_that_never_started_reports_why(aws, monkeypatch):
    TaskRunner(monkeypatch, aws["logs"], describes=0, exit_code=None, lines=())
    original = EC2ContainerServiceBackend.describe_tasks

    def pull_failed(backend: EC2ContainerServiceBackend, *args: Any) -> Any:
        found = original(backend, *args)
        for task in found:
            if task.status == "STOPPED":
                task.stopped_reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
        return found

    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", pull_failed)
    with pytest.raises(fn.UpgradeFailed, match="exit code None\\): CannotPullContainerError"):
        go(aws, event())


def test_a_retry_takes_over_the_running_task_and_a_new_try_starts_a_new_one(aws, monkeypatch):
    runner = TaskRunner(monkeypatch, aws["logs"], describes=100)
    with pytest.raises(fn.StillRunning, match="the upgrade task arn:aws:ecs:.* is RUNNING; run `pulumi up` again"):
        go(aws, event(), Clock(fn.DEADLINE_MARGIN_MS + 40_000))
    runner.describes = runner.seen[runner.started[0].task_arn] + 2  # it ends soon after
    result = go(aws, event())  # the next `pulumi up`: same input, same startedBy
    assert len(runner.started) == 1 and result["taskArn"] == runner.started[0].task_arn
    # The task has stopped: a further try (same release, e.g. after going back) runs a new task.
    go(aws, event())
    assert len(runner.started) == 2


def test_nothing_runs_while_the_rollout_is_in_progress_or_when_it_was_rolled_back(aws, monkeypatch):
    runner = TaskRunner(monkeypatch, aws["logs"])
    ecs = aws["ecs"]
    old = ecs.register_task_definition(family="redcap-prod", networkMode="awsvpc", cpu="2048", memory="4096",
                                       requiresCompatibilities=["FARGATE"],
                                       containerDefinitions=[{"name": "redcap", "image": IMAGE_OLD}])
    # The circuit breaker's rollback: the primary deployment is the old task definition again
    # (moto's UpdateService keeps its first deployment, so it is set on moto's service itself).
    from moto.ecs.models import ecs_backends
    (svc,) = ecs_backends["123456789012"][REGION].services.values()
    svc.deployments[0]["rolloutState"] = "IN_PROGRESS"
    with pytest.raises(fn.StillRunning, match="the new image is not serving yet .*the primary one IN_PROGRESS"):
        go(aws, event(), Clock(fn.DEADLINE_MARGIN_MS + 40_000))
    svc.deployments[0].update(rolloutState="COMPLETED", taskDefinition=old["taskDefinition"]["taskDefinitionArn"])
    with pytest.raises(fn.UpgradeFailed) as err:
        go(aws, event())
    assert f"its rollout ended on another image ({IMAGE_OLD})" in str(err.value)
    assert "ECS rolled back" in str(err.value) and "the database still matches the previous release" in str(err.value)
    assert runner.started == [] and upgrade_tasks(aws) == []


def service(deployments: list[dict], status: str = "ACTIVE") -> dict:
    return {"status": status, "deployments": deployments}


def deployment(state: str = "COMPLETED", running: int = 2, desired: int = 2, status: str = "PRIMARY") -> dict:
    return {"status": status, "rolloutState": state, "runningCount": running, "desiredCount": desired,
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/redcap-prod:7",
            "rolloutStateReason": "tasks failed to start" if state == "FAILED" else ""}


def task_def(image: str) -> dict:
    return {"containerDefinitions": [{"name": "redcap", "image": image}]}


@pytest.mark.parametrize("svc, td, verdict, why", [
    (service([deployment()]), task_def(IMAGE_NEW), fn.READY, "2 task(s) of the new image"),
    (service([deployment("IN_PROGRESS", 1), deployment(status="ACTIVE")]), task_def(IMAGE_NEW), fn.WAITING,
     "2 deployment(s), the primary one IN_PROGRESS"),
    (service([deployment(running=1)]), task_def(IMAGE_NEW), fn.WAITING, "1 of 2 task(s) running"),
    (service([deployment("FAILED", 0)]), task_def(IMAGE_NEW), fn.FAILED, "its deployment failed: tasks failed to start"),
    (service([deployment()]), task_def(IMAGE_OLD), fn.FAILED, "its rollout ended on another image"),
    (service([deployment()], "DRAINING"), task_def(IMAGE_NEW), fn.FAILED, "the service is DRAINING"),
    (None, None, fn.FAILED, "the service is missing"),
])
def test_ecs_verdicts(svc, td, verdict, why):
    state, text = fn.ecs_state(svc, td, IMAGE_NEW)
    assert state == verdict and text.startswith(why)


def apprunner_service(status: str = "RUNNING", image: str = IMAGE_NEW) -> dict:
    return {"Status": status, "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": image,
                                                                         "ImageRepositoryType": "ECR"}}}


@pytest.mark.parametrize("svc, op, verdict, why", [
    (apprunner_service(), "SUCCEEDED", fn.READY, "running the new image"),
    (apprunner_service("OPERATION_IN_PROGRESS"), "IN_PROGRESS", fn.WAITING, "operation UPDATE_SERVICE IN_PROGRESS"),
    (apprunner_service(), "ROLLBACK_SUCCEEDED", fn.FAILED, "its last operation (UPDATE_SERVICE) is ROLLBACK_SUCCEEDED"),
    (apprunner_service(), "FAILED", fn.FAILED, "its last operation (UPDATE_SERVICE) is FAILED"),
    (apprunner_service(image=IMAGE_OLD), "SUCCEEDED", fn.FAILED, f"it runs {IMAGE_OLD}"),
    (apprunner_service("PAUSED"), "SUCCEEDED", fn.FAILED, "the service is PAUSED"),
])
def test_apprunner_verdicts(svc, op, verdict, why):
    operations = [{"Id": "op-1", "Type": "UPDATE_SERVICE", "Status": op}]
    state, text = fn.apprunner_state(svc, operations, IMAGE_NEW)
    assert state == verdict and text.startswith(why)


def test_the_apprunner_runtime_reads_its_service_and_last_operation(aws, monkeypatch):
    TaskRunner(monkeypatch, aws["logs"], describes=0)
    calls: list[tuple[str, dict]] = []

    class AppRunner:
        def describe_service(self, **kwargs: Any) -> dict:
            calls.append(("describe_service", kwargs))
            return {"Service": apprunner_service()}

        def list_operations(self, **kwargs: Any) -> dict:
            calls.append(("list_operations", kwargs))
            return {"OperationSummaryList": [{"Type": "UPDATE_SERVICE", "Status": "SUCCEEDED"}]}

    arn = "arn:aws:apprunner:us-east-1:123456789012:service/redcap-prod/0123456789abcdef"
    import dataclasses
    target = dataclasses.replace(aws["target"], runtime="apprunner", service_arn=arn, service_cluster="")
    clock = Clock(900_000)
    result = fn.run(fn.Request.from_event(event()), target, clock.remaining_ms, ecs=aws["ecs"], apprunner=AppRunner(),
                    logs=aws["logs"], sleep=clock.sleep)
    assert result["status"] == "upgraded"
    assert calls == [("describe_service", {"ServiceArn": arn}), ("list_operations", {"ServiceArn": arn, "MaxResults": 1})]


def test_environment_and_event_are_checked():
    with pytest.raises(ValueError, match="lacks UPGRADE_CLUSTER, TASK_DEFINITION"):
        fn.Target.from_environment({"RUNTIME": "apprunner"})
    with pytest.raises(ValueError, match="SERVICE_CLUSTER"):
        fn.Target.from_environment({k: "x" for k in ("UPGRADE_CLUSTER", "TASK_DEFINITION", "SUBNETS", "SECURITY_GROUPS",
                                                     "CONTAINER_NAME", "LOG_GROUP", "LOG_STREAM_PREFIX", "SERVICE_ARN",
                                                     "IMAGE_URI", "DB_CLUSTER_IDENTIFIER")} | {"RUNTIME": "ecs"})
    with pytest.raises(ValueError, match="lacks release"):
        fn.Request.from_event({"tf": {"action": "update"}})
    assert fn.Request.from_event({"release": "1.0.0", "attempt": "ab" * 40}).started_by == ("redcap-upgrade-" + "ab" * 40)[:36]
    assert json.loads(json.dumps(fn.Request.from_event(event()).__dict__))["previous_release"] == "15.0.9"
