"""RolloutCheck: `pulumi up` fails when the runtime's new version never became healthy
(functions/rollout_check.py, docs/compute.md "A deployment that never gets healthy").

The runtimes wait for their rollout, but once ECS's circuit breaker has rolled a failed
deployment back the service is steady again, on the old revision, and App Runner is RUNNING
again after its own rollback. So after the runtime's update an aws.lambda_.Invocation (lifecycle
scope CREATE_ONLY) runs a function that asks the service what serves and fails the update, with
the service's reason, its latest events and where to look, when it is not what this update
deployed. What that is (the task definition revision for ECS, the image for Express and App
Runner) is the invocation's input, and App Runner's environment and sizes are its triggers: each
new version replaces the invocation, so the check runs exactly when something rolled out, and an
unchanged `pulumi up` (or a drift run) runs nothing. A failed check leaves the invocation out of
the state, so every later `pulumi up` checks again until a version rolls out.

One check per stage, whatever the runtime (the runtime components describe what they deployed
as a DeployedVersion): a switch between runtimes updates its grants and runs it against the new
service, instead of creating a second function of the same name before the old one is deleted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.lambdas import FunctionSpec, logged_function, write_logs
from components.naming import stage_name

SUFFIX = "-rollout-check"
Runtime = Literal["ecs", "express", "apprunner"]


def function_name(stack: str) -> str:
    """`redcap-<stack>-rollout-check` within Lambda's 64 characters."""
    return stage_name(stack, 64 - len(SUFFIX)) + SUFFIX


def check_policy(*, runtime: Runtime, log_group_arn: str, service_arn: str) -> str:
    """Its own log, and reading the one service (both APIs authorize these on the service)."""
    statements = [write_logs(log_group_arn)]
    if runtime == "apprunner":
        statements.append(policies.allow(["apprunner:DescribeService", "apprunner:ListOperations"], [service_arn],
                                         sid="SeeTheRollout"))
    else:
        statements.append(policies.allow(["ecs:DescribeServices"], [service_arn], sid="SeeTheRollout"))
    if runtime == "express":
        # DescribeTaskDefinition has no resource type: AWS offers nothing narrower than "*".
        statements.append(policies.allow(["ecs:DescribeTaskDefinition"], ["*"], sid="SeeTheRolloutImage"))
    return policies.document(statements)


def check_event(*, runtime: Runtime, service: str, cluster: Optional[str], expected: str, log_group: str) -> str:
    event = {"runtime": runtime, "service": service, "logGroup": log_group,
             ("taskDefinition" if runtime == "ecs" else "image"): expected}
    if cluster is not None:
        event["cluster"] = cluster
    return json.dumps(event, sort_keys=True)


@dataclass(frozen=True)
class DeployedVersion:
    """What a runtime component deployed, as the check reads it back."""
    runtime: Runtime
    # ECS and Express: the service's name or ARN and its cluster; App Runner: the ARN, no cluster.
    service: pulumi.Input[str]
    cluster: Optional[pulumi.Input[str]]
    service_arn: pulumi.Input[str]
    # What this update deploys: the service's task definition (ECS) or image (Express, App Runner).
    expected: pulumi.Input[str]
    # Where the containers log (named in a failure's "where to look").
    container_log_group: pulumi.Input[str]
    # The service: the check runs once its update, including its wait, has finished.
    after: Sequence[pulumi.Resource] = ()
    # Settings that roll out a new version without changing `expected` (environment, sizes).
    triggers: Optional[Mapping[str, pulumi.Input[str]]] = None


@dataclass(frozen=True)
class RolloutCheckArgs:
    context: AwsContext
    target: DeployedVersion
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int


class RolloutCheck(pulumi.ComponentResource):
    result: pulumi.Output[Any]

    def __init__(self, name: str, args: RolloutCheckArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:runtime:RolloutCheck", name, None, opts)
        ctx, target = args.context, args.target
        function = logged_function(name, ctx, FunctionSpec(
            function_name=function_name(ctx.stack), module="rollout_check",
            description="Fails pulumi up when the REDCap service's new version did not roll out",
            policy=lambda group_arn: pulumi.Output.all(group_arn, target.service_arn).apply(
                lambda a: check_policy(runtime=target.runtime, log_group_arn=a[0], service_arn=a[1])),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days), self)
        event = pulumi.Output.all(target.service, target.cluster, target.expected, target.container_log_group).apply(
            lambda a: check_event(runtime=target.runtime, service=a[0], cluster=a[1], expected=a[2], log_group=a[3]))
        invocation = aws.lambda_.Invocation(
            f"{name}-invocation", function_name=function.name, input=event,
            triggers=dict(target.triggers) if target.triggers else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[function, *target.after]))
        self.result = invocation.result.apply(lambda text: json.loads(text) if text else None)
        self.register_outputs({"result": self.result})


def settings_fingerprint(values: Mapping[str, Any]) -> str:
    """A short, stable digest of settings (sorted JSON): a trigger that changes with any of them."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]
