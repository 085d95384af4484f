"""Credential rotation under mocks (components/rotation.py): no access key in the program or its
state, rotation schedules from redcap:credentialRotationDays, the function's least-privilege role
and encrypted logs, the first-key wait the runtimes depend on, and the failure alarm."""
from __future__ import annotations

import json

import pytest

from harness import ACCOUNT_ID, StackRun, cached_run, run_program

ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
APP_RUNNER = {"express": None}  # dev runs on Express; without its block, on App Runner
FUNCTION = "aws:lambda/function:Function"
INVOCATION = "aws:lambda/invocation:Invocation"

# prod once its zone is delegated: ECS runs (the committed file is phase one, docs/domains.md).
DELEGATED = {"zoneDelegated": True}


def function(run: StackRun):
    return run.named("redcap-rotation-function", FUNCTION)


def env(run: StackRun) -> dict[str, str]:
    return function(run).inputs["environment"]["variables"]


def role_policy(run: StackRun) -> dict:
    return json.loads(run.named("redcap-rotation-policy").inputs["policy"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_access_key_anywhere_in_the_program(stack):
    run = cached_run(stack)
    assert run.of_type("aws:iam/accessKey:AccessKey") == []
    for name in ("redcap-s3-credentials-value", "redcap-smtp-credentials-value"):
        assert [r for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion") if r.name == name] == []
    # The users go with their (unmanaged) keys on destroy.
    assert all(u.inputs["forceDestroy"] is True for u in run.of_type("aws:iam/user:User"))


def test_both_secrets_rotate_on_the_configured_schedule_with_the_function(prod_run):
    run = prod_run
    rotations = {r.name: r for r in run.of_type(ROTATION)}
    assert set(rotations) == {"redcap-rotation-s3", "redcap-rotation-smtp"}
    secrets = {"redcap-rotation-s3": run.named("redcap-s3-credentials").outputs["arn"],
               "redcap-rotation-smtp": run.named("redcap-smtp-credentials").outputs["arn"]}
    for name, rotation in rotations.items():
        assert rotation.inputs["secretId"] == secrets[name]
        assert rotation.inputs["rotationLambdaArn"] == function(run).outputs["arn"]
        assert rotation.inputs["rotationRules"] == {"automaticallyAfterDays": 90.0}
        assert "rotateImmediately" not in rotation.inputs  # the provider's default: rotate at once, making the first key
        permission = run.named(f"{name}-invoke")
        assert (permission.inputs["principal"], permission.inputs["sourceArn"]) == (
            "secretsmanager.amazonaws.com", secrets[name])
        assert permission.urn in rotation.dependencies
    shorter = run_program("prod", {"credentialRotationDays": 30})
    assert {r.inputs["rotationRules"]["automaticallyAfterDays"] for r in shorter.of_type(ROTATION)} == {30.0}


def test_the_function_knows_each_user_its_secret_and_the_runtime_to_redeploy(prod_run):
    run = cached_run("prod", DELEGATED)  # phase two: the ECS service exists
    targets = json.loads(env(run)["ROTATION_TARGETS"])
    s3_user, smtp_user = run.named("redcap-s3-user"), run.named("redcap-smtp-user")
    assert targets == {
        run.named("redcap-s3-credentials").outputs["arn"]: {
            "kind": "s3", "userName": s3_user.outputs["name"], "userArn": s3_user.outputs["arn"],
            "bucket": run.outputs["appBucketName"]},
        run.named("redcap-smtp-credentials").outputs["arn"]: {
            "kind": "smtp", "userName": smtp_user.outputs["name"], "userArn": smtp_user.outputs["arn"]},
    }
    # The runtime it redeploys is the stage's: the very names FargateService gives its cluster and service.
    rollout = json.loads(env(run)["ROLLOUT"])
    assert rollout == {"kind": "ecs", "cluster": run.one("aws:ecs/cluster:Cluster").inputs["name"],
                       "service": run.one("aws:ecs/service:Service").inputs["name"]}
    # An Express Mode service is an ECS service in the Express cluster.
    dev = cached_run("dev")
    express = dev.one("aws:ecs/expressGatewayService:ExpressGatewayService")
    # Its name ends in a random suffix, so the function finds it by the stage's prefix.
    rollout = json.loads(env(dev)["ROLLOUT"])
    assert rollout == {"kind": "ecs", "cluster": express.inputs["cluster"], "servicePrefix": "redcap-dev-"}
    assert express.inputs["serviceName"].startswith(rollout["servicePrefix"])
    apprunner = cached_run("dev", APP_RUNNER)
    assert json.loads(env(apprunner)["ROLLOUT"]) == {
        "kind": "apprunner", "service": apprunner.one("aws:apprunner/service:Service").inputs["serviceName"]}


def test_the_role_grants_exactly_what_the_rotation_does(prod_run):
    run = prod_run
    by_sid = {s["Sid"]: s for s in role_policy(run)["Statement"]}
    secrets = sorted(run.named(n).outputs["arn"] for n in ("redcap-s3-credentials", "redcap-smtp-credentials"))
    assert by_sid["RotateTheSecrets"]["Resource"] == secrets
    assert by_sid["ManageTheUsersKeys"]["Action"] == ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys"]
    assert by_sid["ManageTheUsersKeys"]["Resource"] == sorted(run.named(n).outputs["arn"]
                                                              for n in ("redcap-s3-user", "redcap-smtp-user"))
    assert by_sid["SecretsKey"]["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert by_sid["StartRotation"]["Resource"] == [function(run).outputs["arn"]]
    assert by_sid["RedeployEcs"]["Resource"] == [
        f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:service/redcap-prod/redcap-prod"]
    assert by_sid["WriteLogs"]["Resource"] == [f"{run.named('redcap-rotation-logs').outputs['arn']}:*"]
    for statement in by_sid.values():
        assert all("*" not in action for action in statement["Action"])
        assert "*" not in statement["Resource"]
    # App Runner's service ARN carries a generated id: only the lookup by name needs "*".
    apprunner = {s["Sid"]: s for s in role_policy(cached_run("dev", APP_RUNNER))["Statement"]}
    assert apprunner["FindAppRunnerService"] == {"Effect": "Allow", "Action": ["apprunner:ListServices"],
                                                 "Resource": ["*"], "Sid": "FindAppRunnerService"}
    assert apprunner["RedeployAppRunner"]["Resource"] == [
        f"arn:aws:apprunner:us-east-1:{ACCOUNT_ID}:service/redcap-dev/*"]
    express = {s["Sid"]: s for s in role_policy(cached_run("dev"))["Statement"]}
    assert express["RedeployEcs"]["Resource"] == [
        f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:service/redcap-dev-express/redcap-dev-*"]
    # ListServices has no resource type: the condition keeps it to the stage's Express cluster.
    assert express["FindEcsService"] == {
        "Effect": "Allow", "Action": ["ecs:ListServices"], "Resource": ["*"], "Sid": "FindEcsService",
        "Condition": {"ArnEquals": {"ecs:cluster": f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/redcap-dev-express"}}}
    assert "FindAppRunnerService" not in express


def test_the_function_logs_to_an_encrypted_group_and_runs_long_enough_to_wait(prod_run):
    run = prod_run
    group = run.named("redcap-rotation-logs")
    assert group.inputs["kmsKeyId"] == run.named("redcap-key").outputs["arn"]
    assert group.inputs["retentionInDays"] == 731.0 and group.inputs["name"] == "/aws/lambda/redcap-prod-key-rotation"
    fn = function(run).inputs
    assert fn["loggingConfig"]["logGroup"] == group.outputs["name"] and fn["timeout"] == 900.0
    assert fn["handler"] == "rotate_access_key.handler" and fn["runtime"] == "python3.12"
    role = run.named("redcap-rotation-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


@pytest.mark.parametrize("stack, overrides, runtime_type", [
    ("prod", DELEGATED, "aws:ecs/taskDefinition:TaskDefinition"),
    ("dev", {}, "aws:ecs/expressGatewayService:ExpressGatewayService"),
    ("dev", {"express": None}, "aws:apprunner/service:Service"),
], ids=["ecs", "express", "apprunner"])
def test_the_runtime_starts_only_once_both_first_keys_exist(stack, overrides, runtime_type):
    run = cached_run(stack, overrides)
    waits = {i.name: i for i in run.of_type(INVOCATION) if i.name.startswith("redcap-rotation-")}
    assert set(waits) == {"redcap-rotation-s3-first-key", "redcap-rotation-smtp-first-key"}
    for kind, wait in (("s3", waits["redcap-rotation-s3-first-key"]), ("smtp", waits["redcap-rotation-smtp-first-key"])):
        assert json.loads(wait.inputs["input"]) == {"action": "awaitCurrent",
                                                    "secretId": run.named(f"redcap-{kind}-credentials").outputs["arn"]}
        assert wait.inputs["lifecycleScope"] == "CREATE_ONLY"
        assert run.named(f"redcap-rotation-{kind}").urn in wait.dependencies
        assert wait.urn in run.one(runtime_type).dependencies

def test_the_tunnel_host_waits_for_the_first_keys_too():
    run = cached_run("dev", {"ec2ServerStack": {"durationHours": 4}})
    waits = {i.urn for i in run.of_type(INVOCATION) if "first-key" in i.name}
    assert len(waits) == 2 and waits <= set(run.one("aws:ec2/instance:Instance").dependencies)


def test_old_keys_are_retired_on_a_schedule(prod_run):
    run = prod_run
    rule = run.named("redcap-rotation-retire")
    assert rule.inputs["scheduleExpression"] == "rate(15 minutes)"
    target = run.named("redcap-rotation-retire-target")
    assert (target.inputs["arn"], json.loads(target.inputs["input"])) == (function(run).outputs["arn"],
                                                                          {"action": "retire"})
    permission = run.named("redcap-rotation-retire-invoke")
    assert (permission.inputs["principal"], permission.inputs["sourceArn"]) == ("events.amazonaws.com",
                                                                                 rule.outputs["arn"])


def test_a_failure_of_the_function_alarms_to_an_encrypted_topic(prod_run):
    run = prod_run
    alarm = run.named("redcap-rotation-errors")
    topic = run.named("redcap-rotation-alarms")
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"], alarm.inputs["dimensions"]) == (
        "AWS/Lambda", "Errors", {"FunctionName": function(run).outputs["name"]})
    assert alarm.inputs["threshold"] == 1.0 and alarm.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm.inputs["treatMissingData"] == "notBreaching" and alarm.inputs["alarmActions"] == [topic.outputs["arn"]]
    assert topic.inputs["kmsMasterKeyId"] == run.named("redcap-key").outputs["arn"]
    allow = json.loads(run.named("redcap-rotation-alarms-policy").inputs["policy"])["Statement"][0]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT_ID}:alarm:{alarm.inputs['name']}"}
    subscription = run.named("redcap-rotation-alarms-subscription")
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == ("email", "redcap-admin@example.org")
    assert run.outputs["credentialRotationAlarmTopicArn"] == topic.outputs["arn"]
    assert {"purpose": "access key rotation failures", "address": "redcap-admin@example.org",
            "topicArn": topic.outputs["arn"]}.items() <= next(
        r for r in run.outputs["emailSubscriptions"] if r["purpose"] == "access key rotation failures").items()
    # The stack key lets CloudWatch publish to the encrypted topic, for this account only.
    statements = {s["Sid"]: s for s in json.loads(run.named("redcap-key").inputs["policy"])["Statement"]}
    assert statements["CloudWatchAlarmsToEncryptedTopics"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_without_an_operator_address_the_topic_has_no_subscription():
    run = run_program("prod", {"email": None, "bounceNotificationEmail": None})
    assert [s for s in run.of_type("aws:sns/topicSubscription:TopicSubscription") if "rotation" in s.name] == []
    assert run.named("redcap-rotation-errors").inputs["alarmActions"] == [run.named("redcap-rotation-alarms").outputs["arn"]]


def test_with_subscriptions_left_to_the_operator_the_stack_says_how_to_subscribe():
    run = cached_run("dev")  # redcap:emailSubscriptions false
    assert [s for s in run.of_type("aws:sns/topicSubscription:TopicSubscription") if "rotation" in s.name] == []
    row = next(r for r in run.outputs["emailSubscriptions"] if r["purpose"] == "access key rotation failures")
    assert row["subscribe"].startswith("aws sns subscribe --region us-east-1 --topic-arn ")
