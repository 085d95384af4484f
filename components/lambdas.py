"""One Python function of functions/ as the stack deploys it: its own log group (encrypted with the
stack key, with retention), a role only Lambda can assume and that may do what the caller's policy
says, and the function (its file inline, or its zip as AWS Signer signed it), created once its log
group and grants exist (its first invocation may run in the same update)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.paths import FUNCTIONS_DIR, project_relative

LAMBDA_MAX_TIMEOUT_SECONDS = 900


def function_code(module: str) -> pulumi.AssetArchive:
    """functions/<module>.py alone: the functions use the standard library and the runtime's boto3."""
    return pulumi.AssetArchive({f"{module}.py": pulumi.FileAsset(project_relative(FUNCTIONS_DIR / f"{module}.py"))})


def lambda_role(name: str, ctx: AwsContext, parent: pulumi.Resource) -> aws.iam.Role:
    return aws.iam.Role(
        name, assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("lambda.amazonaws.com", a)),
        opts=pulumi.ResourceOptions(parent=parent))


def write_logs(log_group_arn: str) -> dict:
    return policies.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"], sid="WriteLogs")


@dataclass(frozen=True)
class SignedCode:
    """Where the signed copy of a function's zip is, and the configuration that enforces it."""

    bucket: pulumi.Input[str]
    key: pulumi.Input[str]
    code_signing_config_arn: pulumi.Input[str]


@dataclass(frozen=True)
class FunctionSpec:
    function_name: str
    module: str  # functions/<module>.py, handler <module>.handler
    description: str
    # The role's policy document, given the function's log group ARN.
    policy: Callable[[pulumi.Output[str]], pulumi.Input[str]]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    timeout_seconds: int = LAMBDA_MAX_TIMEOUT_SECONDS
    environment: Optional[Mapping[str, pulumi.Input[str]]] = None
    tags: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    memory_mb: int = 128
    reserved_concurrency: Optional[int] = None  # None: the account's unreserved pool
    # The zip as AWS Signer signed it, instead of functions/<module>.py inline.
    signed_code: Optional[SignedCode] = None


def logged_function(name: str, ctx: AwsContext, spec: FunctionSpec, parent: pulumi.Resource, *,
                    function_resource: Optional[str] = None) -> aws.lambda_.Function:
    """`<name>-logs`, `<name>-role`, `<name>-policy` and `<name>-function`, children of `parent`.
    `function_resource` names the function otherwise: functions older than this helper keep
    their name, as a new one would replace them."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.cloudwatch.LogGroup(
        f"{name}-logs", name=f"/aws/lambda/{spec.function_name}", retention_in_days=spec.log_retention_days,
        kms_key_id=spec.kms_key_arn, opts=child)
    role = lambda_role(f"{name}-role", ctx, parent)
    grants = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=spec.policy(group.arn), opts=child)
    signed = spec.signed_code
    code = {"code": function_code(spec.module)} if signed is None else {
        "s3_bucket": signed.bucket, "s3_key": signed.key, "code_signing_config_arn": signed.code_signing_config_arn}
    return aws.lambda_.Function(
        function_resource or f"{name}-function", name=spec.function_name, role=role.arn, runtime="python3.12",
        handler=f"{spec.module}.handler", timeout=spec.timeout_seconds, memory_size=spec.memory_mb,
        architectures=["x86_64"], **code, reserved_concurrent_executions=spec.reserved_concurrency,
        environment={"variables": dict(spec.environment)} if spec.environment is not None else None,
        logging_config={"log_format": "Text", "log_group": group.name},
        description=spec.description, tags=dict(spec.tags) or None,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[group, grants]))
