"""functions/rotate_access_key.py against the AWS API emulator (moto server): IAM keys, the four
rotation steps as Secrets Manager runs them, retries of every step, failures that must leave the
old key working, the redeployment that gates the old key's deletion, and the first key that
`pulumi up` waits for. The SES SMTP password is checked against AWS's documented algorithm.

Secrets Manager's side is simulated by `run_rotation` (it calls the steps in order with one
token, as the service does); App Runner, which moto does not model, by `FakeAppRunner`. The
handler's own code runs unchanged.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any, Optional

import boto3
import pytest
from botocore.exceptions import ClientError

from functions import rotate_access_key as rk
from smtp_support import FakeSesSmtp, documented_smtp_password, self_signed_localhost

REGION = "us-east-1"
BUCKET = "redcap-files-test"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


# -----------------------------------------------------------------------------------------
# The SMTP password: AWS's documented algorithm, and terraform-provider-aws's vectors
# -----------------------------------------------------------------------------------------

def test_smtp_password_is_the_documented_version_4_derivation():
    # The secret access key of AWS's documentation examples.
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert rk.smtp_password_v4(secret, "us-east-1") == documented_smtp_password(secret, "us-east-1")
    assert rk.smtp_password_v4(secret, "us-east-1") == "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"
    # Region matters: SES SMTP passwords are per region.
    assert rk.smtp_password_v4(secret, "eu-west-1") != rk.smtp_password_v4(secret, "us-east-1")


@pytest.mark.parametrize("region, secret, expected", [
    # terraform-provider-aws, internal/service/iam/access_key_test.go, TestSESSMTPPasswordFromSecretKeySigV4:
    # the same conversion the provider's ses_smtp_password_v4 output uses.
    ("eu-central-1", "some+secret+key", "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2"),
    ("eu-central-1", "another+secret+key", "BBbphbrQmrKMx42d1N6+C7VINYEBGI5v9VsZeTxwskfh"),
    ("us-west-1", "some+secret+key", "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj"),
    ("us-west-1", "another+secret+key", "BKVmjjMDFk/qqw8EROW99bjCS65PF8WKvK5bSr4Y6EqF"),
])
def test_smtp_password_matches_the_terraform_provider(region, secret, expected):
    assert rk.smtp_password_v4(secret, region) == expected == documented_smtp_password(secret, region)


def test_secret_values_are_the_container_contract():
    assert json.loads(rk.secret_value("s3", "AKIA1", "s3cr3t", REGION)) == {
        "AccessKeyId": "AKIA1", "SecretAccessKey": "s3cr3t"}
    assert json.loads(rk.secret_value("smtp", "AKIA1", "s3cr3t", REGION)) == {
        "username": "AKIA1", "password": documented_smtp_password("s3cr3t", REGION)}


# -----------------------------------------------------------------------------------------
# Pure decisions
# -----------------------------------------------------------------------------------------

def _key(key_id: str, created: float, status: str = "Active") -> dict[str, Any]:
    return {"AccessKeyId": key_id, "CreateDate": created, "Status": status}


def test_keys_older_than_the_current_version_retire_newer_ones_are_orphans():
    keys = [_key("OLD", 100), _key("CUR", 190), _key("ORPHAN", 300), _key("PENDING", 310)]
    assert rk.classify_keys(keys, "CUR", 200, keep={"PENDING"}) == (["ORPHAN"], ["OLD"])
    # No current version: nothing can have read any key.
    assert rk.classify_keys(keys, None, None, keep=set()) == (["CUR", "OLD", "ORPHAN", "PENDING"], [])


def test_ecs_rollout_is_complete_only_when_one_newer_deployment_finished():
    def deployment(created: float, state: str, status: str = "PRIMARY") -> dict[str, Any]:
        return {"createdAt": created, "rolloutState": state, "status": status, "runningCount": 2, "desiredCount": 2}

    assert rk.ecs_rollout_state(None, 100) == rk.ABSENT
    assert rk.ecs_rollout_state({"status": "INACTIVE", "deployments": []}, 100) == rk.ABSENT
    assert rk.ecs_rollout_state({"status": "ACTIVE", "deployments": [deployment(50, "COMPLETED")]}, 100) == rk.NOT_STARTED
    both = [deployment(150, "IN_PROGRESS"), deployment(50, "COMPLETED", "ACTIVE")]
    assert rk.ecs_rollout_state({"status": "ACTIVE", "deployments": both}, 100) == rk.IN_PROGRESS
    assert rk.ecs_rollout_state({"status": "ACTIVE", "deployments": [deployment(150, "COMPLETED")]}, 100) == rk.COMPLETE
    assert rk.ecs_rollout_state({"status": "ACTIVE", "deployments": [deployment(150, "FAILED")]}, 100) == rk.FAILED


def test_apprunner_rollout_needs_a_newer_successful_deployment_and_nothing_running():
    def op(started: float, status: str, type_: str = "START_DEPLOYMENT") -> dict[str, Any]:
        return {"StartedAt": started, "Status": status, "Type": type_}

    assert rk.apprunner_rollout_state(None, [], 100) == rk.ABSENT
    assert rk.apprunner_rollout_state("PAUSED", [], 100) == rk.COMPLETE
    assert rk.apprunner_rollout_state("RUNNING", [op(50, "SUCCEEDED")], 100) == rk.NOT_STARTED
    assert rk.apprunner_rollout_state("RUNNING", [op(150, "IN_PROGRESS")], 100) == rk.IN_PROGRESS
    assert rk.apprunner_rollout_state("RUNNING", [op(150, "SUCCEEDED")], 100) == rk.COMPLETE
    assert rk.apprunner_rollout_state("RUNNING", [op(150, "ROLLBACK_SUCCEEDED")], 100) == rk.FAILED
    assert rk.apprunner_rollout_state("RUNNING", [op(150, "SUCCEEDED", "PAUSE_SERVICE")], 100) == rk.NOT_STARTED


def test_rollout_label_round_trips():
    assert rk.rollout_since(["AWSCURRENT", rk.rollout_label(1700000000.9)]) == 1700000000
    assert rk.rollout_since(["AWSCURRENT", "AWSPENDING"]) is None


def test_config_from_the_environment_is_checked():
    env = {"AWS_REGION": REGION, "ROTATION_TARGETS": json.dumps({"arn:s": {"kind": "s3", "userName": "u",
                                                                           "userArn": "arn:u"}})}
    with pytest.raises(ValueError, match="needs the bucket"):
        rk.Config.from_env(env)
    env["ROTATION_TARGETS"] = json.dumps({"arn:s": {"kind": "ftp", "userName": "u", "userArn": "arn:u"}})
    with pytest.raises(ValueError, match="kind must be s3 or smtp"):
        rk.Config.from_env(env)
    env["ROTATION_TARGETS"] = json.dumps({"arn:s": {"kind": "smtp", "userName": "u", "userArn": "arn:u"}})
    cfg = rk.Config.from_env(env)
    assert (cfg.smtp_host, cfg.smtp_port, cfg.rollout) == ("email-smtp.us-east-1.amazonaws.com", 587,
                                                           rk.Rollout("none"))
    with pytest.raises(ValueError, match="not a secret this function rotates"):
        cfg.target("arn:other")


# -----------------------------------------------------------------------------------------
# Against the emulator
# -----------------------------------------------------------------------------------------

class Clock:
    """Real time plus what the handler's sleeps (and the test) add: timestamps stay comparable
    with the emulator's, and waiting costs nothing."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps = 0

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        # The wait for the switch's second to pass is real (the emulator stamps deployments with
        # real time); retry intervals are not.
        if seconds <= 1.5 and self.offset == 0:
            time.sleep(seconds)
            return
        self.sleeps += 1
        self.offset += seconds


class RecordingIam:
    """The emulator's IAM, recording the secret of every key it creates (only the caller sees
    it, as with AWS), so the fake SES SMTP can check the derived password."""

    def __init__(self, client: Any):
        self._client = client
        self.secrets: dict[str, str] = {}
        self.fail_after_create: Optional[BaseException] = None

    def create_access_key(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.create_access_key(**kwargs)
        self.secrets[response["AccessKey"]["AccessKeyId"]] = response["AccessKey"]["SecretAccessKey"]
        if self.fail_after_create is not None:
            raise self.fail_after_create
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class LambdaTimedOut(BaseException):
    """What a Lambda killed at its timeout looks like to the code: it simply stops (no except)."""


class FakeAppRunner:
    """App Runner's deployment API as the handler uses it (moto does not model App Runner)."""

    def __init__(self, name: str, clock: Clock):
        self.arn = f"arn:aws:apprunner:{REGION}:123456789012:service/{name}/0123456789abcdef"
        self.name, self.clock = name, clock
        self.status = "RUNNING"
        self.operations: list[dict[str, Any]] = [
            {"Type": "CREATE_SERVICE", "Status": "SUCCEEDED", "StartedAt": clock.now() - 3600}]
        self.deployments = 0

    def list_services(self, **_: Any) -> dict[str, Any]:
        return {"ServiceSummaryList": [{"ServiceName": self.name, "ServiceArn": self.arn, "Status": self.status}]}

    def describe_service(self, ServiceArn: str) -> dict[str, Any]:  # noqa: N803 (AWS parameter name)
        assert ServiceArn == self.arn
        return {"Service": {"ServiceArn": self.arn, "Status": self.status}}

    def list_operations(self, ServiceArn: str, MaxResults: int) -> dict[str, Any]:  # noqa: N803
        return {"OperationSummaryList": sorted(self.operations, key=lambda o: -o["StartedAt"])[:MaxResults]}

    def start_deployment(self, ServiceArn: str) -> dict[str, Any]:  # noqa: N803
        if any(o["Status"] in ("PENDING", "IN_PROGRESS") for o in self.operations):
            raise ClientError({"Error": {"Code": "InvalidStateException", "Message": "operation in progress"}},
                              "StartDeployment")
        self.deployments += 1
        self.operations.append({"Type": "START_DEPLOYMENT", "Status": "IN_PROGRESS", "StartedAt": self.clock.now()})
        return {"OperationId": str(self.deployments)}

    def finish(self, status: str = "SUCCEEDED") -> None:
        for op in self.operations:
            if op["Status"] == "IN_PROGRESS":
                op["Status"] = status


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path):
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    clock = Clock()
    iam = RecordingIam(moto_server.client("iam"))
    sm, s3, ecs = (moto_server.client(s) for s in ("secretsmanager", "s3", "ecs"))
    s3.create_bucket(Bucket=BUCKET)
    targets = {}
    for kind in ("s3", "smtp"):
        user = iam.create_user(UserName=f"redcap-{kind}-user", Path="/redcap/")["User"]
        arn = sm.create_secret(Name=f"redcap-{kind}-credentials")["ARN"]
        # Rotation on, no value: the state Pulumi leaves a new stage in.
        sm.rotate_secret(SecretId=arn, RotationRules={"AutomaticallyAfterDays": 90})
        targets[kind] = rk.Target(arn, kind, user["UserName"], user["Arn"], BUCKET if kind == "s3" else None)
    ns = SimpleNamespace(iam=iam, sm=sm, s3=s3, ecs=ecs, clock=clock, targets=targets, tmp=tmp_path,
                         smtp=None, rollout=rk.Rollout("none"), apprunner=None)
    yield ns
    if ns.smtp is not None:
        ns.smtp.stop()


def clients(aws) -> rk.Clients:
    return rk.Clients(secrets=aws.sm, iam=aws.iam, ecs=aws.ecs, apprunner=aws.apprunner,
                      session_for=lambda key_id, secret: boto3.session.Session(
                          aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION),
                      sleep=aws.clock.sleep, now=aws.clock.now)


def config(aws, smtp_port: int = 1) -> rk.Config:
    return rk.Config(targets={t.secret_arn: t for t in aws.targets.values()}, rollout=aws.rollout,
                     region=REGION, smtp_host="localhost", smtp_port=smtp_port)


def run_rotation(aws, kind: str, token: Optional[str] = None, steps=STEPS, smtp_port: int = 1) -> str:
    """What Secrets Manager does for one rotation: the steps in order, with one token."""
    token = token or str(uuid.uuid4())
    for step in steps:
        rk.rotation_step(clients(aws), config(aws, smtp_port),
                         {"Step": step, "SecretId": aws.targets[kind].secret_arn, "ClientRequestToken": token})
    return token


def current(aws, kind: str) -> dict[str, Any]:
    return json.loads(aws.sm.get_secret_value(SecretId=aws.targets[kind].secret_arn,
                                              VersionStage="AWSCURRENT")["SecretString"])


def keys(aws, kind: str) -> dict[str, str]:
    listed = aws.iam.list_access_keys(UserName=aws.targets[kind].user_name)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in listed}


def labels(aws, kind: str) -> dict[str, list[str]]:
    return aws.sm.describe_secret(SecretId=aws.targets[kind].secret_arn)["VersionIdsToStages"]


def signs_in_as(aws, value: dict[str, str]) -> str:
    return boto3.client("sts", region_name=REGION, aws_access_key_id=value["AccessKeyId"],
                        aws_secret_access_key=value["SecretAccessKey"]).get_caller_identity()["Arn"]


def with_ecs_service(aws, desired: int) -> None:
    """desired 0: its deployments complete at once; 1: they stay IN_PROGRESS (the emulator runs no task)."""
    aws.ecs.create_cluster(clusterName="redcap-test")
    aws.ecs.register_task_definition(family="redcap-test", containerDefinitions=[
        {"name": "redcap", "image": "redcap:1", "memory": 512}])
    aws.ecs.create_service(cluster="redcap-test", serviceName="redcap-test", taskDefinition="redcap-test",
                           desiredCount=desired)
    aws.rollout = rk.Rollout("ecs", "redcap-test", "redcap-test")


def ecs_deployment(aws) -> dict[str, Any]:
    return aws.ecs.describe_services(cluster="redcap-test", services=["redcap-test"])["services"][0]["deployments"][0]


# --- the first key and a rotation ---------------------------------------------------------------

def test_first_rotation_makes_the_only_key_and_the_current_value(aws):
    token = run_rotation(aws, "s3")

    value = current(aws, "s3")
    assert list(keys(aws, "s3")) == [value["AccessKeyId"]]
    assert value["SecretAccessKey"] == aws.iam.secrets[value["AccessKeyId"]]
    assert signs_in_as(aws, value) == aws.targets["s3"].user_arn
    assert "AWSCURRENT" in labels(aws, "s3")[token]
    assert not [l for l in labels(aws, "s3")[token] if l.startswith(rk.ROLLOUT_LABEL_PREFIX)]


def test_a_rotation_replaces_the_key_and_no_runtime_means_no_wait(aws):
    run_rotation(aws, "s3")
    first = current(aws, "s3")["AccessKeyId"]

    run_rotation(aws, "s3")

    second = current(aws, "s3")
    assert second["AccessKeyId"] != first
    assert list(keys(aws, "s3")) == [second["AccessKeyId"]]  # no container held the old one


def test_the_old_key_stays_until_the_redeployment_completes(aws):
    with_ecs_service(aws, desired=1)
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]
    before = ecs_deployment(aws)["createdAt"]

    token = run_rotation(aws, "s3")

    new = current(aws, "s3")["AccessKeyId"]
    assert keys(aws, "s3") == {old: "Active", new: "Active"}
    assert ecs_deployment(aws)["createdAt"] > before  # finishSecret forced a new deployment
    since = rk.rollout_since(labels(aws, "s3")[token])
    assert since is not None and since <= ecs_deployment(aws)["createdAt"].timestamp()
    # The schedule keeps it while the deployment runs ...
    assert rk.retire(clients(aws), config(aws)) == {aws.targets["s3"].secret_arn: [old],
                                                    aws.targets["smtp"].secret_arn: []}
    assert old in keys(aws, "s3")
    # ... and calls for help when it never finishes.
    aws.clock.offset += rk.OVERDUE_SECONDS + 60
    with pytest.raises(rk.RotationError, match=f"old key {old} of redcap-s3-user is still active 24 hours"):
        rk.retire(clients(aws), config(aws))
    assert old in keys(aws, "s3")


def test_a_completed_redeployment_retires_the_old_key(aws):
    with_ecs_service(aws, desired=0)  # its deployments complete at once
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]

    token = run_rotation(aws, "s3")

    assert list(keys(aws, "s3")) == [current(aws, "s3")["AccessKeyId"]] != [old]
    assert not [l for l in labels(aws, "s3")[token] if l.startswith(rk.ROLLOUT_LABEL_PREFIX)]


def test_a_second_rotation_waits_while_the_previous_old_key_is_in_use(aws):
    with_ecs_service(aws, desired=1)
    run_rotation(aws, "s3")
    run_rotation(aws, "s3")
    before = dict(keys(aws, "s3"))
    value = current(aws, "s3")

    with pytest.raises(rk.RotationError, match="already has two keys"):
        run_rotation(aws, "s3")

    assert keys(aws, "s3") == before and current(aws, "s3") == value


# --- retries: every step may run again -----------------------------------------------------------

def test_every_step_run_twice_gives_the_same_result(aws):
    with_ecs_service(aws, desired=1)
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]
    token = str(uuid.uuid4())
    for step in STEPS:
        run_rotation(aws, "s3", token, steps=(step, step))

    value = current(aws, "s3")
    assert keys(aws, "s3") == {old: "Active", value["AccessKeyId"]: "Active"}
    assert "AWSCURRENT" in labels(aws, "s3")[token]
    rollout = [l for ls in labels(aws, "s3").values() for l in ls if l.startswith(rk.ROLLOUT_LABEL_PREFIX)]
    assert len(rollout) == 1
    # A late retry of createSecret, after the rotation finished, makes no key.
    assert rk.rotation_step(clients(aws), config(aws), {"Step": "createSecret", "ClientRequestToken": token,
                                                        "SecretId": aws.targets["s3"].secret_arn}) == "exists"
    assert keys(aws, "s3") == {old: "Active", value["AccessKeyId"]: "Active"}


def test_a_create_step_killed_after_making_the_key_is_repaired_by_its_retry(aws):
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]
    token = str(uuid.uuid4())
    aws.iam.fail_after_create = LambdaTimedOut()
    with pytest.raises(LambdaTimedOut):
        run_rotation(aws, "s3", token, steps=("createSecret",))
    assert len(keys(aws, "s3")) == 2  # the orphan: made, never stored

    aws.iam.fail_after_create = None
    run_rotation(aws, "s3", token)

    value = current(aws, "s3")
    assert list(keys(aws, "s3")) == [value["AccessKeyId"]] and value["AccessKeyId"] != old


def test_a_key_that_cannot_be_stored_is_deleted_at_once(aws, monkeypatch):
    run_rotation(aws, "s3")
    before = dict(keys(aws, "s3"))

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "LimitExceededException", "Message": "too many versions"}},
                          "PutSecretValue")

    monkeypatch.setattr(aws.sm, "put_secret_value", refuse)
    with pytest.raises(ClientError):
        run_rotation(aws, "s3", steps=("createSecret",))

    assert keys(aws, "s3") == before


# --- failures leave the old key working ----------------------------------------------------------

def test_a_key_that_fails_its_test_never_becomes_current(aws):
    run_rotation(aws, "s3")
    value = current(aws, "s3")
    aws.targets["s3"] = rk.Target(aws.targets["s3"].secret_arn, "s3", aws.targets["s3"].user_name,
                                  aws.targets["s3"].user_arn, bucket="a-bucket-that-does-not-exist")

    with pytest.raises(rk.KeyTestFailed, match="listing s3://a-bucket-that-does-not-exist: NoSuchBucket"):
        run_rotation(aws, "s3")

    assert current(aws, "s3") == value and keys(aws, "s3")[value["AccessKeyId"]] == "Active"
    assert signs_in_as(aws, value) == aws.targets["s3"].user_arn
    assert aws.clock.sleeps == 0  # a missing bucket is not an IAM delay: no retries


def test_the_schedule_abandons_a_failed_rotation_alarms_and_lets_the_next_one_run(aws):
    run_rotation(aws, "s3")
    value = current(aws, "s3")
    good_bucket = aws.targets["s3"].bucket
    aws.targets["s3"] = rk.Target(aws.targets["s3"].secret_arn, "s3", aws.targets["s3"].user_name,
                                  aws.targets["s3"].user_arn, bucket="a-bucket-that-does-not-exist")
    failed = str(uuid.uuid4())
    with pytest.raises(rk.KeyTestFailed):
        run_rotation(aws, "s3", failed)
    assert len(keys(aws, "s3")) == 2

    # Within the hour the pending rotation is left alone; after it, it is a failed one.
    assert aws.targets["s3"].secret_arn not in rk.retire(clients(aws), config(aws))
    aws.clock.offset += rk.FAILED_ROTATION_SECONDS + 60
    with pytest.raises(rk.RotationError, match="a rotation of .* failed .* rotate-secret --secret-id"):
        rk.retire(clients(aws), config(aws))

    assert "AWSPENDING" not in labels(aws, "s3")[failed]
    assert list(keys(aws, "s3")) == [value["AccessKeyId"]]  # the never-current key is gone
    aws.targets["s3"] = rk.Target(aws.targets["s3"].secret_arn, "s3", aws.targets["s3"].user_name,
                                  aws.targets["s3"].user_arn, bucket=good_bucket)
    run_rotation(aws, "s3")
    assert current(aws, "s3")["AccessKeyId"] != value["AccessKeyId"]


def test_a_pending_key_deleted_behind_the_rotation_stops_it(aws):
    run_rotation(aws, "s3")
    value = current(aws, "s3")
    token = run_rotation(aws, "s3", steps=("createSecret",))
    pending = json.loads(aws.sm.get_secret_value(SecretId=aws.targets["s3"].secret_arn, VersionId=token)["SecretString"])
    aws.iam.delete_access_key(UserName=aws.targets["s3"].user_name, AccessKeyId=pending["AccessKeyId"])

    with pytest.raises(rk.RotationError, match="is not an active key of redcap-s3-user"):
        run_rotation(aws, "s3", token, steps=("setSecret",))
    assert current(aws, "s3") == value


def test_a_failed_redeployment_keeps_the_old_key_and_alarms(aws):
    aws.apprunner = FakeAppRunner("redcap-test", aws.clock)
    aws.rollout = rk.Rollout("apprunner", service="redcap-test")
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]
    assert aws.apprunner.deployments == 0  # the first key replaces none: nothing to redeploy

    run_rotation(aws, "s3")
    assert aws.apprunner.deployments == 1 and old in keys(aws, "s3")
    aws.apprunner.finish("ROLLBACK_SUCCEEDED")

    with pytest.raises(rk.RotationError, match=f"the old key {old} stays active .* aws apprunner start-deployment"):
        rk.retire(clients(aws), config(aws))
    assert old in keys(aws, "s3")


def test_app_runner_busy_then_deployed_then_the_old_key_retires(aws):
    aws.apprunner = FakeAppRunner("redcap-test", aws.clock)
    aws.rollout = rk.Rollout("apprunner", service="redcap-test")
    run_rotation(aws, "s3")
    old = current(aws, "s3")["AccessKeyId"]
    # Something else is deploying the service while the key switches: its instances may have
    # read the old key, so it does not count, and the deployment is started once it ends.
    aws.apprunner.operations.append({"Type": "UPDATE_SERVICE", "Status": "IN_PROGRESS",
                                     "StartedAt": aws.clock.now() - 5})

    run_rotation(aws, "s3")
    assert aws.apprunner.deployments == 0 and old in keys(aws, "s3")  # busy: not started yet
    aws.apprunner.finish()
    rk.retire(clients(aws), config(aws))  # starts the deployment after the switch
    assert aws.apprunner.deployments == 1 and old in keys(aws, "s3")
    aws.apprunner.finish()
    rk.retire(clients(aws), config(aws))

    assert list(keys(aws, "s3")) == [current(aws, "s3")["AccessKeyId"]]


# --- a stage that had a key before rotation existed -------------------------------------------------

def test_a_key_created_by_an_earlier_program_is_taken_over_and_retired(aws):
    with_ecs_service(aws, desired=1)
    legacy = aws.iam.create_access_key(UserName=aws.targets["s3"].user_name)["AccessKey"]
    aws.sm.put_secret_value(SecretId=aws.targets["s3"].secret_arn, SecretString=json.dumps(
        {"AccessKeyId": legacy["AccessKeyId"], "SecretAccessKey": legacy["SecretAccessKey"]}))

    run_rotation(aws, "s3")

    assert keys(aws, "s3") == {legacy["AccessKeyId"]: "Active", current(aws, "s3")["AccessKeyId"]: "Active"}


# --- the first key `pulumi up` waits for -------------------------------------------------------------

class SecretsManagerRotating:
    """Secrets Manager with its rotation function: RotateSecret runs the four steps (a failure
    leaves the pending version behind, as the service does)."""

    def __init__(self, aws, fail_first: int = 0):
        self.aws, self.fail_first, self.rotations = aws, fail_first, 0

    def rotate_secret(self, SecretId: str) -> dict[str, Any]:  # noqa: N803
        self.rotations += 1
        kind = next(k for k, t in self.aws.targets.items() if t.secret_arn == SecretId)
        steps = ("createSecret",) if self.rotations <= self.fail_first else STEPS
        run_rotation(self.aws, kind, steps=steps)
        return {"ARN": SecretId}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.aws.sm, name)


def test_await_current_starts_a_rotation_and_returns_when_the_key_works(aws):
    sm = SecretsManagerRotating(aws)
    c = clients(aws)
    c.secrets = sm

    result = rk.await_current(c, config(aws), aws.targets["s3"].secret_arn, lambda: 900_000)

    assert result == {"status": "ready", "secretArn": aws.targets["s3"].secret_arn}
    assert sm.rotations == 1 and signs_in_as(aws, current(aws, "s3")) == aws.targets["s3"].user_arn
    # Once there is a key, it returns at once.
    assert rk.await_current(c, config(aws), aws.targets["s3"].secret_arn, lambda: 900_000)["status"] == "ready"
    assert sm.rotations == 1


def test_await_current_abandons_a_stalled_rotation_and_starts_another(aws):
    # A current value whose key is gone, and a rotation that stopped after createSecret.
    aws.sm.put_secret_value(SecretId=aws.targets["s3"].secret_arn, SecretString=json.dumps(
        {"AccessKeyId": "AKIAGONEGONEGONEGONE", "SecretAccessKey": "gone"}))
    stalled = run_rotation(aws, "s3", steps=("createSecret",))
    sm = SecretsManagerRotating(aws)
    c = clients(aws)
    c.secrets = sm
    aws.clock.offset += rk.STALLED_FIRST_ROTATION_SECONDS + 1

    rk.await_current(c, config(aws), aws.targets["s3"].secret_arn, lambda: 900_000)

    assert sm.rotations == 1 and "AWSPENDING" not in labels(aws, "s3")[stalled]
    assert list(keys(aws, "s3")) == [current(aws, "s3")["AccessKeyId"]]  # the stalled one's key is gone


def test_await_current_fails_clearly_before_the_lambda_times_out(aws):
    aws.sm.put_secret_value(SecretId=aws.targets["s3"].secret_arn, SecretString=json.dumps(
        {"AccessKeyId": "AKIAGONEGONEGONEGONE", "SecretAccessKey": "gone"}))
    sm = SecretsManagerRotating(aws, fail_first=100)  # every rotation stops after createSecret
    c = clients(aws)
    c.secrets = sm
    remaining = {"ms": 120_000}
    c.sleep = lambda s: (aws.clock.sleep(s), remaining.update(ms=remaining["ms"] - s * 1000))

    with pytest.raises(rk.RotationError, match="still has no working key; .* run `pulumi up` again"):
        rk.await_current(c, config(aws), aws.targets["s3"].secret_arn, lambda: remaining["ms"])
    assert remaining["ms"] >= rk.AWAIT_MARGIN_MS and sm.rotations == 1


# --- SES SMTP keys -------------------------------------------------------------------------------------

@pytest.fixture
def smtp(aws, monkeypatch):
    cert, key = self_signed_localhost(aws.tmp)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    user = aws.targets["smtp"].user_name
    fake = FakeSesSmtp(REGION, is_active=lambda key_id: keys(aws, "smtp").get(key_id) == "Active",
                       secrets=aws.iam.secrets)
    aws.smtp = fake
    return fake, fake.start(cert, key), user


def test_smtp_rotation_logs_in_over_starttls_with_the_derived_password(aws, smtp):
    fake, port, _ = smtp
    fake.reject_first = 2  # the new key needs a moment before SES accepts it

    run_rotation(aws, "smtp", smtp_port=port)

    value = current(aws, "smtp")
    assert set(value) == {"username", "password"}
    assert value["password"] == documented_smtp_password(aws.iam.secrets[value["username"]], REGION)
    assert fake.logins[-1] == (value["username"], True, True)
    assert [ok for _, _, ok in fake.logins] == [False, False, True] and aws.clock.sleeps == 2


def test_smtp_key_that_ses_refuses_keeps_the_old_credentials(aws, smtp):
    fake, port, _ = smtp
    run_rotation(aws, "smtp", smtp_port=port)
    value = current(aws, "smtp")
    fake.reject_first = 10_000
    start = aws.clock.now()

    with pytest.raises(rk.KeyTestFailed, match="SMTP login of .* SMTPAuthenticationError"):
        run_rotation(aws, "smtp", smtp_port=port)

    assert current(aws, "smtp") == value and keys(aws, "smtp")[value["username"]] == "Active"
    assert aws.clock.now() - start >= rk.KEY_TEST_SECONDS - rk.RETRY_SECONDS  # it kept trying that long


def test_smtp_credentials_are_never_sent_without_tls(aws, smtp):
    fake, port, _ = smtp
    fake.offer_starttls = False

    with pytest.raises(rk.KeyTestFailed, match="offers no STARTTLS; credentials are never sent in clear"):
        run_rotation(aws, "smtp", smtp_port=port)

    assert fake.logins == [] and aws.clock.sleeps == 0


def test_no_secret_reaches_the_log(aws, smtp, caplog):
    _, port, _ = smtp
    caplog.set_level(logging.INFO)
    run_rotation(aws, "s3")
    run_rotation(aws, "smtp", smtp_port=port)

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert current(aws, "s3")["AccessKeyId"] in text  # key ids are logged, for the audit trail
    for secret in [*aws.iam.secrets.values(), current(aws, "smtp")["password"]]:
        assert secret not in text


# --- the real entry point -----------------------------------------------------------------------------

def test_handler_reads_its_configuration_from_the_environment(aws, monkeypatch):
    run_rotation(aws, "s3")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("ROTATION_TARGETS", json.dumps({t.secret_arn: {
        "kind": t.kind, "userName": t.user_name, "userArn": t.user_arn, "bucket": t.bucket}
        for t in aws.targets.values()}))
    monkeypatch.setenv("ROLLOUT", json.dumps({"kind": "ecs", "cluster": "absent", "service": "absent"}))

    assert rk.handler({"action": "retire"}, None) == {t.secret_arn: [] for t in aws.targets.values()}
    token = str(uuid.uuid4())
    assert rk.handler({"Step": "createSecret", "SecretId": aws.targets["s3"].secret_arn,
                       "ClientRequestToken": token}, None) == "created"
    with pytest.raises(ValueError, match="unknown event"):
        rk.handler({"nothing": 1}, None)
