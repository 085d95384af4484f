"""TunnelHost: a temporary EC2 instance running the REDCap image, reached only through an SSM
port-forwarding session (for long requests such as big imports, which App Runner cuts at 120 s).

Amazon Linux 2023 in a private subnet, no public IP, IMDSv2 only (hop limit 2 so the container
can reach the instance role), encrypted gp3 root. The subnet is the first private subnet whose
availability zone offers the instance type: EC2 offers types per zone, and zone names map to
different physical zones in each account, so the choice goes by zone id (EC2's instance-type
offerings by availability-zone-id), and fails with a clear message when no zone offers it. User data logs in to ECR, runs the same image
with the HTTPS vhost on 127.0.0.1:8081 (only the SSM session reaches it) and schedules its own
end: `shutdown -h +<minutes>` with instance_initiated_shutdown_behavior = terminate. No timestamp
enters the program, so repeated `pulumi up` runs see no diff; docs/tunnel.md says what a refresh
reports once the instance has ended, and how to remove it from the stack.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.runtime import RuntimeContract

TLS_PORT = 8081
AL2023_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
ROOT_VOLUME_GIB = 20


@dataclass(frozen=True)
class TunnelArgs:
    context: AwsContext
    instance_type: str
    duration_hours: float
    # The private subnets, in the network's order: the first whose zone offers the type is used.
    subnet_ids: pulumi.Input[Sequence[str]]
    image_uri: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    runtime: RuntimeContract
    kms_key_arn: pulumi.Input[str]


def choose_subnet(subnets: Sequence[tuple[str, str]], offered_zone_ids: Iterable[str], instance_type: str) -> str:
    """The first (subnet id, zone id) whose zone offers the instance type, in the given order (the
    same inputs always give the same subnet)."""
    offered = set(offered_zone_ids)
    for subnet_id, zone_id in subnets:
        if zone_id in offered:
            return subnet_id
    zones = ", ".join(sorted({zone for _, zone in subnets}))
    where = ", ".join(sorted(offered)) if offered else "no zone of this region"
    raise ValueError(
        f"EC2 instance type {instance_type} (redcap:ec2ServerStack.instanceType) is not offered in the "
        f"availability zones of the private subnets ({zones}); AWS offers it in {where}. Choose a type "
        f"offered there, e.g. t3.medium or m6i.large (aws ec2 describe-instance-type-offerings "
        f"--location-type availability-zone-id --filters Name=instance-type,Values={instance_type})")


def shutdown_minutes(duration_hours: float) -> int:
    return max(1, int(round(duration_hours * 60)))


def user_data(*, region: str, image_uri: str, environment: dict[str, str], duration_hours: float) -> str:
    """Boot script. Every value is quoted; the environment holds ARNs and host names only."""
    registry = image_uri.split("/", 1)[0]
    env = {**environment, "TLS_PORT": str(TLS_PORT)}
    env_args = " ".join(f"-e {shlex.quote(f'{k}={v}')}" for k, v in sorted(env.items()))
    return "\n".join([
        "#!/bin/bash",
        "set -euo pipefail",
        # First, so the host ends on time even if a later step fails.
        f"shutdown -h +{shutdown_minutes(duration_hours)} 'REDCap tunnel host: duration over'",
        "dnf install -y docker",
        "systemctl enable --now docker",
        f"aws ecr get-login-password --region {shlex.quote(region)} | "
        f"docker login --username AWS --password-stdin {shlex.quote(registry)}",
        f"docker run -d --name redcap --restart unless-stopped -p 127.0.0.1:{TLS_PORT}:{TLS_PORT} "
        f"{env_args} {shlex.quote(image_uri)}",
        "",
    ])


def port_forward_command(instance_id: str, region: str) -> str:
    parameters = f'{{"portNumber":["{TLS_PORT}"],"localPortNumber":["{TLS_PORT}"]}}'
    return (f"aws ssm start-session --target {instance_id} --document-name AWS-StartPortForwardingSession "
            f"--parameters '{parameters}' --region {region}")


def pull_policy(repository_arn: str) -> str:
    return policies.document([
        # ECR issues registry login tokens account-wide: the action has no resource type.
        policies.allow(["ecr:GetAuthorizationToken"], ["*"], sid="RegistryLogin"),
        policies.allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                       [repository_arn], sid="PullImage"),
    ])


class TunnelHost(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    port_forward_command: pulumi.Output[str]

    def __init__(self, name: str, args: TunnelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:tunnel:TunnelHost", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("ec2.amazonaws.com", a)),
            opts=child)
        ssm = aws.iam.RolePolicyAttachment(
            f"{name}-ssm", role=role.name,
            policy_arn=ctx.partition.apply(lambda p: f"arn:{p}:iam::aws:policy/AmazonSSMManagedInstanceCore"),
            opts=child)
        runtime = aws.iam.RolePolicy(f"{name}-runtime", role=role.id, policy=args.runtime.role_policy, opts=child)
        pull = aws.iam.RolePolicy(f"{name}-pull", role=role.id,
                                  policy=pulumi.Output.from_input(args.repository_arn).apply(pull_policy), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)

        # The AMI id moves with every AL2023 release; a running host is not replaced for that.
        ami = aws.ssm.get_parameter_output(name=AL2023_AMI_PARAMETER)
        instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami.value,
            instance_type=args.instance_type,
            subnet_id=self._subnet(args),
            vpc_security_group_ids=[args.runtime.security_group_id],
            associate_public_ip_address=False,
            iam_instance_profile=profile.name,
            monitoring=True,
            instance_initiated_shutdown_behavior="terminate",
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 2},
            root_block_device={"volume_type": "gp3", "volume_size": ROOT_VOLUME_GIB, "encrypted": True,
                               "kms_key_id": args.kms_key_arn, "delete_on_termination": True},
            user_data=pulumi.Output.all(args.image_uri, args.runtime.environment).apply(
                lambda a: user_data(region=ctx.region, image_uri=a[0], environment=a[1],
                                    duration_hours=args.duration_hours)),
            user_data_replace_on_change=True,
            tags={"Name": f"redcap-{ctx.stack}-tunnel"},
            # The container reads its secrets and the SSM agent registers right after boot.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"], depends_on=[pull, runtime, ssm]))

        self.instance_id = instance.id
        self.port_forward_command = instance.id.apply(lambda i: port_forward_command(i, ctx.region))
        self.register_outputs({"instanceId": self.instance_id, "portForwardCommand": self.port_forward_command})

    @staticmethod
    def _subnet(args: TunnelArgs) -> pulumi.Output[str]:
        """The private subnet whose zone (by id) offers the instance type."""
        offerings = aws.ec2.get_instance_type_offerings_output(
            location_type="availability-zone-id",
            filters=[{"name": "instance-type", "values": [args.instance_type]}])

        def zones_of(ids: Sequence[str]) -> pulumi.Output[list[tuple[str, str]]]:
            zone_ids = [aws.ec2.get_subnet_output(id=subnet).availability_zone_id for subnet in ids]
            return pulumi.Output.all(*zone_ids).apply(lambda zones: list(zip(ids, zones)))

        subnets = pulumi.Output.from_input(args.subnet_ids).apply(zones_of)
        return pulumi.Output.all(subnets, offerings.locations).apply(
            lambda a: choose_subnet(a[0], a[1] or [], args.instance_type))
