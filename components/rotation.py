"""CredentialRotation: Secrets Manager rotation of the IAM access keys REDCap needs (its S3 user,
the SES SMTP user), by one Lambda function (functions/rotate_access_key.py).

Pulumi holds no access key: the components create the IAM users and empty secrets, and every
key, the first one too, is made by the rotation (SecretRotation rotates at once when created).
So no key or secret key is in state, and a refresh never finds a key that rotation replaced.
`pulumi up` waits for the first key (an Invocation of the function per secret), and the secret
ARNs this component hands on carry that wait: a runtime that reads them starts only once its
credentials exist.

The rotation redeploys the runtime after switching keys (containers read the secrets at start;
REDCap's S3 key lives in redcap_config, which the bootstrap re-syncs then) and deletes the old
key only once that deployment completed: a schedule checks every 15 minutes. Errors of the
function (a failed step, a failed deployment, an old key still alive a day later) raise an
alarm to an encrypted SNS topic, with an e-mail subscription when an address is given (or the
address listed for the operator to subscribe, with redcap:emailSubscriptions false).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.lambdas import FunctionSpec, logged_function, write_logs
from components.notifications import EmailSubscription, email_subscription

RETIRE_SCHEDULE = "rate(15 minutes)"
ALARM_PERIOD_SECONDS = 900


@dataclass(frozen=True)
class RotatedCredential:
    """An IAM user whose key the secret holds: `s3` ({"AccessKeyId", "SecretAccessKey"}, tested by
    listing `bucket`) or `smtp` ({"username", "password"}, tested by an SES SMTP login)."""

    kind: Literal["s3", "smtp"]
    secret_arn: pulumi.Input[str]
    user_name: pulumi.Input[str]
    user_arn: pulumi.Input[str]
    bucket: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class RolloutTarget:
    """The runtime whose containers read the secrets, redeployed after a key switch. Plain names
    (not the runtime's outputs): the rotation exists before the runtime, which waits for it."""

    kind: Literal["ecs", "apprunner", "none"]
    cluster: Optional[str] = None
    service: Optional[str] = None
    # Instead of `service`: the one ACTIVE service of `cluster` whose name starts with this (an
    # Express service's name ends in a random suffix the rotation cannot know before it exists).
    service_prefix: Optional[str] = None

    @staticmethod
    def ecs(stack: str) -> "RolloutTarget":
        from components.ecs import resource_name  # FargateService's cluster and service name

        return RolloutTarget("ecs", cluster=resource_name(stack, 255), service=resource_name(stack, 255))

    @staticmethod
    def express(stack: str) -> "RolloutTarget":
        # ExpressService's cluster and service: an Express Mode service is an ECS service.
        from components.express import express_name, service_name_prefix

        return RolloutTarget("ecs", cluster=express_name(stack), service_prefix=service_name_prefix(stack))

    @staticmethod
    def apprunner(stack: str) -> "RolloutTarget":
        from components.apprunner import short_name  # AppRunnerService's service name

        return RolloutTarget("apprunner", service=short_name(stack, 40))

    @staticmethod
    def for_runtime(runtime: str, stack: str) -> "RolloutTarget":
        return {"ecs": RolloutTarget.ecs, "express": RolloutTarget.express,
                "apprunner": RolloutTarget.apprunner}[runtime](stack)

    def as_json(self) -> str:
        body: dict[str, str] = {"kind": self.kind}
        if self.cluster:
            body["cluster"] = self.cluster
        if self.service:
            body["service"] = self.service
        if self.service_prefix:
            body["servicePrefix"] = self.service_prefix
        return json.dumps(body, sort_keys=True)


@dataclass(frozen=True)
class CredentialRotationArgs:
    context: AwsContext
    kms_key_arn: pulumi.Input[str]
    rotation_days: int
    log_retention_days: int
    credentials: tuple[RotatedCredential, ...]
    rollout: RolloutTarget
    alarm_email: Optional[str] = None
    # Subscribe alarm_email to the alarm topic (else the operator does, components/notifications.py).
    subscribe_emails: bool = True


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def function_name(stack: str) -> str:
    return f"redcap-{stack}-key-rotation"


def targets_json(entries: Sequence[tuple[str, str, str, str, Optional[str]]]) -> str:
    """ROTATION_TARGETS: secret ARN -> {kind, userName, userArn[, bucket]}, sorted."""
    out = {}
    for kind, secret_arn, user_name, user_arn, bucket in entries:
        spec = {"kind": kind, "userName": user_name, "userArn": user_arn}
        if bucket:
            spec["bucket"] = bucket
        out[secret_arn] = spec
    return json.dumps(out, sort_keys=True)


def rollout_resources(rollout: RolloutTarget, *, partition: str, region: str, account_id: str) -> list[str]:
    if rollout.kind == "ecs":
        service = rollout.service if rollout.service else f"{rollout.service_prefix}*"
        return [f"arn:{partition}:ecs:{region}:{account_id}:service/{rollout.cluster}/{service}"]
    if rollout.kind == "apprunner":
        # App Runner appends a generated id to the service's ARN.
        return [f"arn:{partition}:apprunner:{region}:{account_id}:service/{rollout.service}/*"]
    return []


def rotation_policy(*, log_group_arn: str, secret_arns: Sequence[str], user_arns: Sequence[str], kms_key_arn: str,
                    function_arn: str, rollout: RolloutTarget, partition: str, region: str, account_id: str) -> str:
    """Least privilege of the rotation function: its log group, the secrets it rotates and their
    key (through Secrets Manager only), the keys of its users, starting a rotation of its own
    secrets (which invokes itself), and redeploying exactly its runtime."""
    statements = [
        write_logs(log_group_arn),
        policies.allow(["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                        "secretsmanager:ListSecretVersionIds", "secretsmanager:PutSecretValue",
                        "secretsmanager:RotateSecret", "secretsmanager:UpdateSecretVersionStage"],
                       sorted(secret_arns), sid="RotateTheSecrets"),
        policies.allow(["kms:Decrypt", "kms:GenerateDataKey"], [kms_key_arn], sid="SecretsKey",
                       Condition={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}),
        policies.allow(["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys"], sorted(user_arns),
                       sid="ManageTheUsersKeys"),
        # RotateSecret (the first-key wait starts one) needs permission to invoke the function.
        policies.allow(["lambda:InvokeFunction"], [function_arn], sid="StartRotation"),
    ]
    resources = rollout_resources(rollout, partition=partition, region=region, account_id=account_id)
    if rollout.kind == "ecs":
        statements.append(policies.allow(["ecs:DescribeServices", "ecs:UpdateService"], resources, sid="RedeployEcs"))
        if rollout.service_prefix:
            # ListServices has no resource type; the condition keeps it to the stage's cluster.
            cluster_arn = f"arn:{partition}:ecs:{region}:{account_id}:cluster/{rollout.cluster}"
            statements.append(policies.allow(["ecs:ListServices"], ["*"], sid="FindEcsService",
                                             Condition={"ArnEquals": {"ecs:cluster": cluster_arn}}))
    elif rollout.kind == "apprunner":
        # The service's ARN holds an id App Runner generates: the function looks it up by name.
        statements.append(policies.allow(["apprunner:ListServices"], ["*"], sid="FindAppRunnerService"))
        statements.append(policies.allow(["apprunner:DescribeService", "apprunner:ListOperations",
                                          "apprunner:StartDeployment"], resources, sid="RedeployAppRunner"))
    return policies.document(statements)


def alarm_topic_policy(topic_arn: str, account_id: str, alarm_arn: str) -> str:
    return policies.service_topic_policy(topic_arn, "CloudWatchAlarmOfThisStack", "cloudwatch.amazonaws.com",
                                         {"StringEquals": {"aws:SourceAccount": account_id},
                                          "ArnLike": {"aws:SourceArn": alarm_arn}})


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

class CredentialRotation(pulumi.ComponentResource):
    function_name: str
    function_arn: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str]
    ready_secret_arns: dict[str, pulumi.Output[str]]
    email_subscriptions: list[EmailSubscription]

    def __init__(self, name: str, args: CredentialRotationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:rotation:CredentialRotation", name, None, opts)
        if not args.credentials or len({c.kind for c in args.credentials}) != len(args.credentials):
            raise ValueError("CredentialRotationArgs.credentials needs one entry per kind")
        ctx = args.context
        self.function_name = function_name(ctx.stack)
        function_arn = pulumi.Output.all(ctx.partition, ctx.account_id).apply(
            lambda a: f"arn:{a[0]}:lambda:{ctx.region}:{a[1]}:function:{self.function_name}")
        secret_arns = [c.secret_arn for c in args.credentials]
        user_arns = [c.user_arn for c in args.credentials]
        targets = pulumi.Output.all(*[pulumi.Output.all(c.kind, c.secret_arn, c.user_name, c.user_arn, c.bucket)
                                      for c in args.credentials]).apply(targets_json)
        # Lambda's maximum timeout (the default): long enough for the first-key wait during `pulumi up`.
        function = logged_function(name, ctx, FunctionSpec(
            function_name=self.function_name, module="rotate_access_key",
            description="Rotates REDCap's IAM access keys held in Secrets Manager (S3, SES SMTP)",
            policy=lambda group_arn: pulumi.Output.all(group_arn, secret_arns, user_arns, args.kms_key_arn, function_arn,
                                                       ctx.partition, ctx.account_id).apply(
                lambda a: rotation_policy(log_group_arn=a[0], secret_arns=a[1], user_arns=a[2], kms_key_arn=a[3],
                                          function_arn=a[4], rollout=args.rollout, partition=a[5],
                                          region=ctx.region, account_id=a[6])),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days, memory_mb=256,
            environment={"ROTATION_TARGETS": targets, "ROLLOUT": args.rollout.as_json()}), self)

        self.ready_secret_arns = {}
        self.email_subscriptions = []
        for credential in args.credentials:
            self.ready_secret_arns[credential.kind] = self._rotate(name, args, credential, function)
        self._retire_schedule(name, function)
        self.alarm_topic_arn = self._alarm(name, args, function)
        self.function_arn = function.arn
        self.register_outputs({
            "functionArn": self.function_arn,
            "alarmTopicArn": self.alarm_topic_arn,
            **{f"{kind}SecretArn": arn for kind, arn in self.ready_secret_arns.items()},
        })

    def _rotate(self, name: str, args: CredentialRotationArgs, credential: RotatedCredential,
                function: aws.lambda_.Function) -> pulumi.Output[str]:
        prefix = f"{name}-{credential.kind}"
        permission = aws.lambda_.Permission(
            f"{prefix}-invoke", action="lambda:InvokeFunction", function=function.name,
            principal="secretsmanager.amazonaws.com", source_arn=credential.secret_arn,
            opts=pulumi.ResourceOptions(parent=self))
        # Rotates at once when created: that makes the first key.
        rotation = aws.secretsmanager.SecretRotation(
            prefix, secret_id=credential.secret_arn, rotation_lambda_arn=function.arn,
            rotation_rules={"automatically_after_days": args.rotation_days},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]))
        # Runs once, when created: returns when the secret holds a working key.
        first_key = aws.lambda_.Invocation(
            f"{prefix}-first-key", function_name=function.name,
            input=pulumi.Output.from_input(credential.secret_arn).apply(
                lambda arn: json.dumps({"action": "awaitCurrent", "secretId": arn}, sort_keys=True)),
            lifecycle_scope="CREATE_ONLY",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[rotation]))
        return pulumi.Output.all(credential.secret_arn, first_key.result).apply(lambda a: a[0])

    def _retire_schedule(self, name: str, function: aws.lambda_.Function) -> None:
        child = pulumi.ResourceOptions(parent=self)
        rule = aws.cloudwatch.EventRule(
            f"{name}-retire", schedule_expression=RETIRE_SCHEDULE,
            description="Deletes old REDCap access keys once every container runs with the new ones", opts=child)
        permission = aws.lambda_.Permission(
            f"{name}-retire-invoke", action="lambda:InvokeFunction", function=function.name,
            principal="events.amazonaws.com", source_arn=rule.arn, opts=child)
        aws.cloudwatch.EventTarget(
            f"{name}-retire-target", rule=rule.name, arn=function.arn,
            input=json.dumps({"action": "retire"}), opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]))

    def _alarm(self, name: str, args: CredentialRotationArgs, function: aws.lambda_.Function) -> pulumi.Output[str]:
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(
            f"{name}-alarms", kms_master_key_id=args.kms_key_arn,
            display_name=f"REDCap {ctx.stack} credential rotation", opts=child)
        alarm_name = f"redcap-{ctx.stack}-key-rotation-errors"
        alarm_arn = pulumi.Output.all(ctx.partition, ctx.account_id).apply(
            lambda a: f"arn:{a[0]}:cloudwatch:{ctx.region}:{a[1]}:alarm:{alarm_name}")
        topic_policy = aws.sns.TopicPolicy(
            f"{name}-alarms-policy", arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, ctx.account_id, alarm_arn).apply(
                lambda a: alarm_topic_policy(a[0], a[1], a[2])),
            opts=child)
        if args.alarm_email:
            self.email_subscriptions.append(email_subscription(
                f"{name}-alarms-subscription", topic=topic, address=args.alarm_email,
                purpose="access key rotation failures", subscribe=args.subscribe_emails, parent=self))
        aws.cloudwatch.MetricAlarm(
            f"{name}-errors", name=alarm_name,
            alarm_description=(f"REDCap {ctx.stack}: a key rotation step, the redeployment after it or the retirement "
                               "of an old key failed (the old key keeps working); see the log group "
                               f"/aws/lambda/{self.function_name}"),
            namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": function.name},
            statistic="Sum", period=ALARM_PERIOD_SECONDS, evaluation_periods=1, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching",
            alarm_actions=[topic.arn], opts=pulumi.ResourceOptions(parent=self, depends_on=[topic_policy]))
        return topic.arn

