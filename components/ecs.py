"""FargateService: REDCap on ECS Fargate behind an internet-facing HTTPS load balancer (stages
with an `ecs` block). Unlike App Runner (120 s request limit, closed to new AWS customers since
2026-04-30) requests may run up to 4000 s, the ALB's maximum idle timeout.

- Tasks: awsvpc in the private subnets, no public IPs, x86_64, CPU/memory from settings, logs
  to an encrypted log group with retention; the task role carries the runtime contract.
- Service: circuit breaker with rollback; the desired count belongs to autoscaling (ignored
  in diffs). A new image (new immutable tag) is a new task definition revision, rolled out by
  the same `pulumi up` - no EventBridge/Step Functions redeploy machinery. `pulumi up` waits for
  the rollout, and the stage's RolloutCheck (components/rollout.py) fails it when the rollout
  did not end on the new revision.
- ALB: public subnets, idle timeout 4000 s, invalid headers dropped, access logs to the log
  bucket under alb/, HTTPS 443 with a TLS 1.3 policy and the ACM certificate, HTTP 80 only
  redirects. Security groups: the world reaches the ALB on 80/443 only; the ALB reaches the
  tasks on the container port only (the original hard-coded 8080).
- Target tracking on CPU, memory and requests per target; WAF on the ALB. The site record
  is not made here: `site_alias` is what the stack's one SiteRecord (components/dns.py) points
  at, so switching runtimes never moves the record between owners.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.dns import AliasTarget
from components.naming import stage_name
from components.rollout import DeployedVersion
from components.runtime import RuntimeContract
from container.context import WRITABLE_PATHS

CONTAINER_NAME = "redcap"
HEALTH_PATH = "/healthz"
IDLE_TIMEOUT_SECONDS = 4000
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
EPHEMERAL_STORAGE_GIB = 21  # 20 GiB is Fargate's default and cannot be requested explicitly
COOLDOWN_SECONDS = 300
DEREGISTRATION_DELAY_SECONDS = 3600  # the ALB maximum
# REDCap's first start runs its installer; give it time before health checks count.
HEALTH_CHECK_GRACE_SECONDS = 600
# How long `pulumi up` waits for a rollout to end. A failing one ends when the circuit breaker
# has seen at least 3 tasks fail (each after the grace period and the health checks) and has
# rolled back; a healthy one when the old tasks have drained (up to the deregistration delay).
ROLLOUT_TIMEOUT = "90m"


@dataclass(frozen=True)
class FargateArgs:
    context: AwsContext
    image_uri: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    runtime: RuntimeContract
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[Sequence[str]]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    cpu: int
    memory: int
    min_containers: int
    max_containers: int
    requests_per_container: int
    cpu_utilization: int
    memory_utilization: int
    certificate_arn: pulumi.Input[str]
    web_acl_arn: pulumi.Input[str]
    log_bucket_name: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool
    # The name the certificate is for; users reach the site there.
    fqdn: str
    # An idle schedule moves the scalable target's bounds (components/operations.py): a diff on
    # them would wake a sleeping stage at every `pulumi up`.
    capacity_scheduled: bool = False


def resource_name(stack: str, limit: int) -> str:
    """`redcap-<stack>`, lower case, letters, digits and hyphens, unique per stack within `limit`."""
    return stage_name(stack, limit, lower=True)


def volume_name(path: str) -> str:
    """Task volume name for a writable path: letters, digits, hyphens (ECS allows up to 255)."""
    return "w" + path.replace("/", "-")


def task_volumes() -> list[dict[str, str]]:
    """One bind-mount volume (task storage, gone with the task) per path the container writes."""
    return [{"name": volume_name(p)} for p in WRITABLE_PATHS]


def container_definitions(*, image: str, port: int, environment: list[dict[str, str]], log_group: str,
                          region: str) -> str:
    return json.dumps([{
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        # Nothing in the image can be changed at run time; only the image's declared volumes
        # (container/context.py WRITABLE_PATHS) are writable, and they start from the image's
        # content, owners and modes (Fargate copies a Dockerfile VOLUME into its bind mount).
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": volume_name(p), "containerPath": p, "readOnly": False}
                        for p in WRITABLE_PATHS],
        "portMappings": [{"containerPort": port, "hostPort": port, "protocol": "tcp"}],
        "environment": environment,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": CONTAINER_NAME}},
        # Apache must stop gracefully so in-flight requests finish during a rollout.
        "stopTimeout": 120,
    }], sort_keys=True)


def execution_policy(repository_arn: str, log_group_arn: str) -> str:
    return policies.document([
        # ECR issues registry login tokens account-wide: the action has no resource type.
        policies.allow(["ecr:GetAuthorizationToken"], ["*"], sid="RegistryLogin"),
        policies.allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                       [repository_arn], sid="PullImage"),
        policies.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"], sid="WriteLogs"),
    ])


def task_roles(name: str, ctx: AwsContext, repository_arn: pulumi.Input[str], log_group_arn: pulumi.Output[str],
               runtime: RuntimeContract, child: pulumi.ResourceOptions
               ) -> tuple[aws.iam.Role, aws.iam.RolePolicy, aws.iam.Role, aws.iam.RolePolicy]:
    """The execution role (image pull, the container log) and the task role (the runtime
    contract) of an ECS task, with their inline policies: (execution role, its policy, task
    role, its policy). ECS and Express both use them."""
    trust = ctx.account_id.apply(lambda a: policies.assume_role_policy("ecs-tasks.amazonaws.com", a))
    execution_role = aws.iam.Role(f"{name}-execution-role", assume_role_policy=trust, opts=child)
    execution = aws.iam.RolePolicy(
        f"{name}-execution", role=execution_role.id,
        policy=pulumi.Output.all(repository_arn, log_group_arn).apply(lambda a: execution_policy(a[0], a[1])),
        opts=child)
    task_role = aws.iam.Role(f"{name}-task-role", assume_role_policy=trust, opts=child)
    runtime_grants = aws.iam.RolePolicy(f"{name}-runtime", role=task_role.id, policy=runtime.role_policy, opts=child)
    return execution_role, execution, task_role, runtime_grants


class FargateService(pulumi.ComponentResource):
    load_balancer_url: pulumi.Output[str]
    load_balancer_arn: pulumi.Output[str]
    load_balancer_dns_name: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    scaling_resource_id: pulumi.Output[str]
    custom_url: str
    site_alias: AliasTarget
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    service_arn: pulumi.Output[str]

    def __init__(self, name: str, args: FargateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:ecs:FargateService", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        port = args.runtime.port

        cluster = aws.ecs.Cluster(
            f"{name}-cluster", name=resource_name(ctx.stack, 255),
            settings=[{"name": "containerInsights", "value": "enabled"}], opts=child)
        group = aws.cloudwatch.LogGroup(
            f"{name}-container-logs", name=f"/ecs/{resource_name(ctx.stack, 200)}",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)

        execution_role, execution, task_role, runtime_grants = task_roles(
            name, ctx, args.repository_arn, group.arn, args.runtime, child)

        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=resource_name(ctx.stack, 255),
            cpu=str(args.cpu), memory=str(args.memory),
            network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn, task_role_arn=task_role.arn,
            ephemeral_storage={"size_in_gib": EPHEMERAL_STORAGE_GIB},
            volumes=task_volumes(),
            container_definitions=pulumi.Output.all(args.image_uri, args.runtime.environment_list(), group.name).apply(
                lambda a: container_definitions(image=a[0], port=port, environment=a[1], log_group=a[2],
                                                region=ctx.region)),
            opts=child)

        alb_sg, tasks_sg = self._security_groups(name, args, port)
        alb = aws.lb.LoadBalancer(
            f"{name}-alb", name=resource_name(ctx.stack, 32), internal=False, load_balancer_type="application",
            ip_address_type="ipv4", security_groups=[alb_sg.id], subnets=args.public_subnet_ids,
            idle_timeout=IDLE_TIMEOUT_SECONDS, drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            access_logs={"bucket": args.log_bucket_name, "prefix": "alb", "enabled": True},
            opts=child)
        target_group = aws.lb.TargetGroup(
            f"{name}-targets", port=port, protocol="HTTP", target_type="ip", vpc_id=args.vpc_id,
            # The ALB waits only while requests are in flight: long ones (imports, up to the
            # 4000 s idle timeout) finish during a deployment or scale-in instead of being cut.
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            health_check={"enabled": True, "path": HEALTH_PATH, "protocol": "HTTP", "port": "traffic-port",
                          "matcher": "200", "interval": 15, "timeout": 5, "healthy_threshold": 2,
                          "unhealthy_threshold": 3},
            opts=child)
        https = aws.lb.Listener(
            f"{name}-https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}], opts=child)
        aws.lb.Listener(
            f"{name}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP",
            default_actions=[{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443",
                                                               "status_code": "HTTP_301"}}],
            opts=child)

        service = aws.ecs.Service(
            f"{name}-service", name=resource_name(ctx.stack, 255), cluster=cluster.arn,
            task_definition=task.arn, launch_type="FARGATE", platform_version="LATEST",
            desired_count=args.min_containers,
            network_configuration={"subnets": args.private_subnet_ids, "assign_public_ip": False,
                                   "security_groups": [args.runtime.security_group_id, tasks_sg.id]},
            load_balancers=[{"target_group_arn": target_group.arn, "container_name": CONTAINER_NAME,
                             "container_port": port}],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            health_check_grace_period_seconds=HEALTH_CHECK_GRACE_SECONDS,
            propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            # `pulumi up` waits until the rollout has ended (the stage's RolloutCheck then says
            # whether it ended on the new revision).
            wait_for_steady_state=True,
            # Autoscaling owns the running count: a diff on it would undo scaling at every `pulumi up`.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCount"],
                                        depends_on=[https, execution, runtime_grants],
                                        custom_timeouts=pulumi.CustomTimeouts(create=ROLLOUT_TIMEOUT,
                                                                              update=ROLLOUT_TIMEOUT)))
        # The revision's ARN covers every setting of the task: nothing else needs to trigger the check.
        self.deployed = DeployedVersion(
            runtime="ecs", service=service.name, cluster=cluster.name, service_arn=service.arn, expected=task.arn,
            container_log_group=group.name, after=(service,))
        scaling = self._autoscaling(name, args, cluster, service, alb, target_group)
        aws.wafv2.WebAclAssociation(f"{name}-waf", resource_arn=alb.arn, web_acl_arn=args.web_acl_arn, opts=child)

        self.custom_url = f"https://{args.fqdn}"
        # The name moves to the ALB only once the service exists, not while its first tasks
        # are still being placed.
        self.site_alias = AliasTarget(
            dns_name=pulumi.Output.all(alb.dns_name, service.id).apply(lambda a: a[0]),
            hosted_zone_id=alb.zone_id, evaluate_target_health=True)

        self.load_balancer_arn = alb.arn
        self.load_balancer_dns_name = alb.dns_name
        self.target_group_arn = target_group.arn
        self.log_group_name = group.name
        self.scaling_resource_id = scaling.resource_id
        self.load_balancer_url = alb.dns_name.apply(lambda d: f"https://{d}")
        self.cluster_name = cluster.name
        self.service_name = service.name
        self.service_arn = service.arn
        self.register_outputs({"loadBalancerUrl": self.load_balancer_url, "customUrl": self.custom_url,
                               "clusterName": self.cluster_name, "serviceName": self.service_name})

    def _security_groups(self, name: str, args: FargateArgs,
                         port: int) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        child = pulumi.ResourceOptions(parent=self)
        alb_sg = aws.ec2.SecurityGroup(f"{name}-load-balancer", vpc_id=args.vpc_id,
                                       description="REDCap load balancer: HTTPS and HTTP (redirect) from anywhere",
                                       opts=child)
        # Tasks also carry the runtime contract's group (database, AWS APIs); this one only
        # admits the load balancer.
        tasks_sg = aws.ec2.SecurityGroup(f"{name}-tasks", vpc_id=args.vpc_id,
                                         description="REDCap tasks: the container port from the load balancer only",
                                         opts=child)
        for listener_port, why in ((443, "HTTPS from anywhere"), (80, "HTTP from anywhere (redirected to HTTPS)")):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-load-balancer-in-{listener_port}", security_group_id=alb_sg.id, cidr_ipv4="0.0.0.0/0",
                ip_protocol="tcp", from_port=listener_port, to_port=listener_port, description=why, opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-load-balancer-to-tasks", security_group_id=alb_sg.id, referenced_security_group_id=tasks_sg.id,
            ip_protocol="tcp", from_port=port, to_port=port, description="to the REDCap container port", opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-tasks-from-load-balancer", security_group_id=tasks_sg.id, referenced_security_group_id=alb_sg.id,
            ip_protocol="tcp", from_port=port, to_port=port, description="from the load balancer", opts=child)
        return alb_sg, tasks_sg

    def _autoscaling(self, name: str, args: FargateArgs, cluster: aws.ecs.Cluster, service: aws.ecs.Service,
                     alb: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup) -> aws.appautoscaling.Target:
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.all(cluster.name, service.name).apply(lambda a: f"service/{a[0]}/{a[1]}"),
            min_capacity=args.min_containers, max_capacity=args.max_containers,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["minCapacity", "maxCapacity"]
                                        if args.capacity_scheduled else None))
        metrics = (
            ("cpu", "ECSServiceAverageCPUUtilization", args.cpu_utilization, None),
            ("memory", "ECSServiceAverageMemoryUtilization", args.memory_utilization, None),
            ("requests", "ALBRequestCountPerTarget", args.requests_per_container,
             pulumi.Output.all(alb.arn_suffix, target_group.arn_suffix).apply(lambda a: f"{a[0]}/{a[1]}")),
        )
        for suffix, metric, value, label in metrics:
            specification: dict = {"predefined_metric_type": metric}
            if label is not None:
                specification["resource_label"] = label
            aws.appautoscaling.Policy(
                f"{name}-scale-on-{suffix}", policy_type="TargetTrackingScaling",
                resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
                service_namespace=target.service_namespace,
                target_tracking_scaling_policy_configuration={
                    "target_value": value, "predefined_metric_specification": specification,
                    "scale_in_cooldown": COOLDOWN_SECONDS, "scale_out_cooldown": COOLDOWN_SECONDS},
                opts=child)
        return target
