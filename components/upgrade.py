"""What `pulumi up` does when the stage's REDCap release changes (docs/upgrade.md).

UpgradeSnapshot (redcap:upgrade.snapshot): before the new image rolls out, a manual snapshot of
the serving cluster named after the old and the new release. A Lambda (functions/
upgrade_snapshot.py) takes it, run by an aws.lambda_.Invocation with lifecycle scope CRUD whose
input carries the release: the provider invokes it when the input changes and passes the
previous input along, so the old release comes from Pulumi's state. A RandomId drawn anew for
each release change (keepers: the release) is part of the input and of the name, so two
changes between the same releases get two snapshots and every retry of one change adopts the
one it started. The snapshot is not a Pulumi resource: nothing deletes it, not even `pulumi
destroy`. `gate()` makes a value (the image URI the runtimes deploy) wait for it.

DatabaseUpgrade (redcap:upgrade.database): after the rollout, REDCap's database upgrade in a
one-off Fargate task of the same image and runtime contract (its own cluster and task
definition, command `upgrade-database`: container/bootstrap/upgrade.py), started by a Lambda
(functions/db_upgrade.py) that first waits until the runtime serves the new image and fails the
update with the task's own error and the way back if the upgrade fails. Its invocation has the
release and its own RandomId as input, so it runs when the release changes (and once when it
is created: the task finds the database current then).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, TypeVar

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import policies
from components.context import AwsContext
from components.ecs import CONTAINER_NAME, task_roles, task_volumes, volume_name
from components.lambdas import FunctionSpec, logged_function, write_logs
from components.naming import stage_name
from components.runtime import RuntimeContract
from container.context import WRITABLE_PATHS

UPGRADE_COMMAND = "upgrade-database"
LOG_STREAM_PREFIX = "upgrade"
TASK_CPU, TASK_MEMORY = 1024, 2048
T = TypeVar("T")


def snapshot_prefix(stack: str) -> str:
    """The start of every upgrade snapshot's name: `redcap-<stack>` as RDS takes identifiers."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", f"redcap-{stack}".lower())).strip("-")


def attempt(name: str, release: str, parent: pulumi.Resource) -> random.RandomId:
    """A value drawn anew whenever the release changes, and kept while it does not."""
    return random.RandomId(name, byte_length=4, keepers={"release": release},
                           opts=pulumi.ResourceOptions(parent=parent))


def snapshot_policy(*, log_group_arn: str, cluster_arn: str, snapshot_arn_pattern: str) -> str:
    """CreateDBClusterSnapshot needs the cluster and the snapshot; tags on create need AddTagsToResource."""
    return policies.document([
        write_logs(log_group_arn),
        policies.allow(["rds:CreateDBClusterSnapshot"], [cluster_arn, snapshot_arn_pattern], sid="SnapshotTheCluster"),
        policies.allow(["rds:AddTagsToResource", "rds:DescribeDBClusterSnapshots"], [snapshot_arn_pattern],
                       sid="TagAndWatchTheSnapshot"),
    ])


def upgrade_policy(*, partition: str, region: str, account_id: str, log_group_arn: str, upgrade_log_group_arn: str,
                   cluster_arn: str, family: str, role_arns: Sequence[str], runtime: str, service_arn: str) -> str:
    """Run and watch the upgrade task in its own cluster; read whether the runtime serves the image."""
    cluster_name = cluster_arn.rsplit("/", 1)[-1]
    statements = [
        write_logs(log_group_arn),
        policies.allow(["ecs:RunTask"], [f"arn:{partition}:ecs:{region}:{account_id}:task-definition/{family}:*"],
                       sid="RunTheUpgradeTask", Condition={"ArnEquals": {"ecs:cluster": cluster_arn}}),
        policies.allow(["iam:PassRole"], sorted(role_arns), sid="PassTheTaskRoles",
                       Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        policies.allow(["ecs:DescribeTasks"], [f"arn:{partition}:ecs:{region}:{account_id}:task/{cluster_name}/*"],
                       sid="WatchTheUpgradeTask"),
        # Listing a Fargate cluster's tasks is authorized on "*" (there is no container instance);
        # the condition keeps it to the upgrade cluster.
        policies.allow(["ecs:ListTasks"], ["*"], sid="FindARunningUpgradeTask",
                       Condition={"ArnEquals": {"ecs:cluster": cluster_arn}}),
        policies.allow(["logs:GetLogEvents"], [f"{upgrade_log_group_arn}:log-stream:*"], sid="ReadTheTaskLog"),
    ]
    if runtime == "apprunner":
        statements.append(policies.allow(["apprunner:DescribeService", "apprunner:ListOperations"], [service_arn],
                                         sid="SeeTheRollout"))
    else:
        statements.append(policies.allow(["ecs:DescribeServices"], [service_arn], sid="SeeTheRollout"))
        # DescribeTaskDefinition has no resource type: AWS offers nothing narrower than "*".
        statements.append(policies.allow(["ecs:DescribeTaskDefinition"], ["*"], sid="SeeTheRolloutImage"))
    return policies.document(statements)


def upgrade_container_definitions(*, image: str, environment: list[dict[str, str]], log_group: str,
                                  region: str) -> str:
    """The service's container with the upgrade command instead of Apache, and no port; read-only
    like the service's, with the same writable task volumes (components/ecs.py)."""
    return json.dumps([{
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "command": [UPGRADE_COMMAND],
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": volume_name(p), "containerPath": p, "readOnly": False}
                        for p in WRITABLE_PATHS],
        "environment": environment,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": LOG_STREAM_PREFIX}},
    }], sort_keys=True)


def parse_result(result: Optional[str]) -> dict:
    """An invocation's result (the function's JSON answer); {} when there is none yet."""
    try:
        value = json.loads(result or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# The snapshot before a new release
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpgradeSnapshotArgs:
    context: AwsContext
    release: str
    cluster_identifier: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    # Taken once these exist (the image build): a failed build takes no snapshot, and the
    # snapshot is as recent as possible when the rollout starts.
    after: Sequence[pulumi.Resource] = ()


class UpgradeSnapshot(pulumi.ComponentResource):
    snapshot_identifier: pulumi.Output[str]
    invocation: aws.lambda_.Invocation

    def __init__(self, name: str, args: UpgradeSnapshotArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:upgrade:UpgradeSnapshot", name, None, opts)
        ctx = args.context
        prefix = snapshot_prefix(ctx.stack)
        function = logged_function(name, ctx, FunctionSpec(
            function_name=f"redcap-{ctx.stack}-upgrade-snapshot", module="upgrade_snapshot",
            description="Snapshots the REDCap cluster before a new REDCap release rolls out",
            policy=lambda group_arn: pulumi.Output.all(ctx.partition, ctx.account_id, group_arn, args.cluster_arn).apply(
                lambda a: snapshot_policy(log_group_arn=a[2], cluster_arn=a[3],
                                          snapshot_arn_pattern=f"arn:{a[0]}:rds:{ctx.region}:{a[1]}:cluster-snapshot:{prefix}-*")),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days,
            # The cluster is configuration, not input: a restore in place (a new serving cluster)
            # changes the function, not the invocation, and takes no snapshot by itself.
            environment={"CLUSTER_IDENTIFIER": args.cluster_identifier}), self)
        drawn = attempt(f"{name}-attempt", args.release, self)
        event = drawn.hex.apply(lambda h: json.dumps(
            {"attempt": h, "namePrefix": prefix, "release": args.release}, sort_keys=True))
        self.invocation = aws.lambda_.Invocation(
            f"{name}-invocation", function_name=function.name, input=event, lifecycle_scope="CRUD",
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
        self.snapshot_identifier = self.invocation.result.apply(lambda r: str(parse_result(r).get("snapshotIdentifier", "")))
        self.register_outputs({"snapshotIdentifier": self.snapshot_identifier})

    def gate(self, value: pulumi.Input[T]) -> pulumi.Output[T]:
        """`value`, once the snapshot of this update (if any) is available."""
        return pulumi.Output.all(value, self.invocation.result).apply(lambda a: a[0])


# --------------------------------------------------------------------------------------------
# REDCap's database upgrade after the rollout
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatabaseUpgradeArgs:
    context: AwsContext
    release: str
    image_uri: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    runtime: RuntimeContract
    private_subnet_ids: pulumi.Input[Sequence[str]]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    runtime_kind: Literal["ecs", "express", "apprunner"]
    service_arn: pulumi.Input[str]
    db_cluster_identifier: pulumi.Input[str]
    backtrack: bool
    # ECS and Express: the cluster of the service (DescribeServices needs it).
    service_cluster: Optional[pulumi.Input[str]] = None
    # The snapshot taken before the rollout, named in a failure's way back ("" when none).
    snapshot_identifier: pulumi.Input[str] = ""
    # The runtime (its rollout is done when these are).
    rollout: Sequence[pulumi.Resource] = ()


class DatabaseUpgrade(pulumi.ComponentResource):
    result: pulumi.Output[dict]
    cluster_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseUpgradeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:upgrade:DatabaseUpgrade", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        base = stage_name(ctx.stack, 255 - len("-upgrade"), lower=True)
        cluster = aws.ecs.Cluster(f"{name}-cluster", name=f"{base}-upgrade", opts=child)
        group = aws.cloudwatch.LogGroup(
            f"{name}-task-logs", name=f"/ecs/{stage_name(ctx.stack, 190, lower=True)}-upgrade",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)
        execution_role, execution, task_role, runtime_grants = task_roles(
            name, ctx, args.repository_arn, group.arn, args.runtime, child)
        family = f"{base}-upgrade"
        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=family, cpu=str(TASK_CPU), memory=str(TASK_MEMORY),
            network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn, task_role_arn=task_role.arn, volumes=task_volumes(),
            container_definitions=pulumi.Output.all(args.image_uri, args.runtime.environment_list(), group.name).apply(
                lambda a: upgrade_container_definitions(image=a[0], environment=a[1], log_group=a[2],
                                                        region=ctx.region)),
            opts=child)

        variables = {
            "UPGRADE_CLUSTER": cluster.arn, "TASK_DEFINITION": task.arn,
            "SUBNETS": pulumi.Output.from_input(args.private_subnet_ids).apply(lambda s: ",".join(s)),
            "SECURITY_GROUPS": pulumi.Output.from_input(args.runtime.security_group_id),
            "CONTAINER_NAME": CONTAINER_NAME, "LOG_GROUP": group.name, "LOG_STREAM_PREFIX": LOG_STREAM_PREFIX,
            "RUNTIME": args.runtime_kind, "SERVICE_ARN": args.service_arn, "IMAGE_URI": args.image_uri,
            "DB_CLUSTER_IDENTIFIER": args.db_cluster_identifier, "BACKTRACK": "true" if args.backtrack else "false",
        }
        if args.service_cluster is not None:
            variables["SERVICE_CLUSTER"] = args.service_cluster
        function = logged_function(name, ctx, FunctionSpec(
            function_name=f"redcap-{ctx.stack}-db-upgrade", module="db_upgrade",
            description="Runs REDCap's database upgrade in a one-off task once the new image serves",
            policy=lambda group_arn: pulumi.Output.all(
                ctx.partition, ctx.account_id, group_arn, group.arn, cluster.arn, execution_role.arn, task_role.arn,
                args.service_arn).apply(
                lambda a: upgrade_policy(partition=a[0], region=ctx.region, account_id=a[1], log_group_arn=a[2],
                                         upgrade_log_group_arn=a[3], cluster_arn=a[4], family=family,
                                         role_arns=[a[5], a[6]], runtime=args.runtime_kind, service_arn=a[7])),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days,
            # What changes with every rollout (image, task definition) is configuration: only a
            # new release, in the invocation's input, starts an upgrade.
            environment=variables), self)
        drawn = attempt(f"{name}-attempt", args.release, self)
        event = pulumi.Output.all(drawn.hex, args.snapshot_identifier).apply(lambda a: json.dumps(
            {"attempt": a[0], "release": args.release, "snapshotIdentifier": a[1]}, sort_keys=True))
        invocation = aws.lambda_.Invocation(
            f"{name}-invocation", function_name=function.name, input=event, lifecycle_scope="CRUD",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[task, execution, runtime_grants, *args.rollout]))
        self.result = invocation.result.apply(
            lambda r: {k: v for k, v in parse_result(r).items() if k in ("status", "from", "to", "taskArn")})
        self.cluster_name = cluster.name
        self.log_group_name = group.name
        self.register_outputs({"result": self.result, "clusterName": self.cluster_name,
                               "logGroupName": self.log_group_name})
