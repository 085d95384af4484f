"""Network: the VPC (public / private-with-NAT / isolated tiers in 2 AZs), flow logs, the S3
gateway and Secrets Manager interface endpoints, and the security groups of the app and the
database.

The VPC itself is an awsx component; everything security-relevant around it (flow logs,
endpoints, security groups) is plain pulumi-aws so tests and the policy pack can see it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components import policies
from components.context import AwsContext
from settings import plan_subnets

VPC_CIDR = "10.0.0.0/16"
AVAILABILITY_ZONES = 2
SUBNET_MASK = 24
TIERS = ("public", "private", "isolated")
MYSQL_PORT = 3306


@dataclass(frozen=True)
class NetworkArgs:
    context: AwsContext
    nat_gateways: Literal["onePerAz", "single"]
    flow_log_retention_days: int
    kms_key_arn: pulumi.Input[str]
    # removalPolicy retain keeps the cluster, whose network interfaces live in the isolated
    # subnets: those subnets, the VPC and the database security group must stay with it, or
    # `pulumi destroy` fails on them (DependencyViolation) on every retry.
    keep_database_network: bool = False


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    isolated_subnet_ids: pulumi.Output[list[str]]
    app_security_group_id: pulumi.Output[str]
    database_security_group_id: pulumi.Output[str]
    flow_log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:network:Network", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        plan = plan_subnets(VPC_CIDR, AVAILABILITY_ZONES, TIERS, SUBNET_MASK)

        vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=VPC_CIDR,
            number_of_availability_zones=AVAILABILITY_ZONES,
            enable_dns_hostnames=True,  # needed for private DNS of interface endpoints
            enable_dns_support=True,
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, name="public", cidr_blocks=plan["public"]),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, name="private", cidr_blocks=plan["private"]),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.ISOLATED, name="isolated",
                                        cidr_blocks=plan["isolated"]),
            ],
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=nat_strategy(args.nat_gateways)),
            # awsx creates the VPC and subnets itself: only a transform reaches them.
            opts=pulumi.ResourceOptions(parent=self, transforms=[keep_database_subnets])
            if args.keep_database_network else child,
        )
        self._flow_logs(name, vpc, args)
        app_sg, db_sg = self._security_groups(name, vpc, args.keep_database_network)
        self._endpoints(name, vpc, app_sg, ctx)

        self.vpc_id = vpc.vpc_id
        self.public_subnet_ids = vpc.public_subnet_ids
        self.private_subnet_ids = vpc.private_subnet_ids
        self.isolated_subnet_ids = vpc.isolated_subnet_ids
        self.app_security_group_id = app_sg.id
        self.database_security_group_id = db_sg.id
        self.register_outputs({
            "vpcId": self.vpc_id,
            "publicSubnetIds": self.public_subnet_ids,
            "privateSubnetIds": self.private_subnet_ids,
            "isolatedSubnetIds": self.isolated_subnet_ids,
            "appSecurityGroupId": self.app_security_group_id,
            "databaseSecurityGroupId": self.database_security_group_id,
        })

    def _flow_logs(self, name: str, vpc: awsx.ec2.Vpc, args: NetworkArgs) -> None:
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.kms_key_arn, opts=child)
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=ctx.account_id.apply(
                lambda account: policies.assume_role_policy("vpc-flow-logs.amazonaws.com", account)),
            opts=child)
        write = aws.iam.RolePolicy(
            f"{name}-flow-logs-write", role=role.id,
            policy=group.arn.apply(lambda arn: policies.document([
                policies.allow(["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                               [arn, f"{arn}:*"])])),
            opts=child)
        aws.ec2.FlowLog(
            f"{name}-flow-log", vpc_id=vpc.vpc_id, traffic_type="ALL",
            log_destination_type="cloud-watch-logs", log_destination=group.arn, iam_role_arn=role.arn,
            max_aggregation_interval=60,
            # Flow logs deliver with the role from the start: its write grant must exist first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[write]))
        self.flow_log_group_name = group.name

    def _security_groups(self, name: str, vpc: awsx.ec2.Vpc,
                         keep_database_sg: bool) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup]:
        child = pulumi.ResourceOptions(parent=self)
        app_sg = aws.ec2.SecurityGroup(
            f"{name}-app", vpc_id=vpc.vpc_id,
            description="REDCap application (App Runner connector, ECS tasks, tunnel host)", opts=child)
        db_sg = aws.ec2.SecurityGroup(
            f"{name}-database", vpc_id=vpc.vpc_id, description="REDCap Aurora cluster",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep_database_sg))
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-database-from-app", security_group_id=db_sg.id, referenced_security_group_id=app_sg.id,
            ip_protocol="tcp", from_port=MYSQL_PORT, to_port=MYSQL_PORT,
            description="MySQL from the REDCap application only", opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-app-to-database", security_group_id=app_sg.id, referenced_security_group_id=db_sg.id,
            ip_protocol="tcp", from_port=MYSQL_PORT, to_port=MYSQL_PORT,
            description="MySQL to the REDCap database", opts=child)
        # Outbound web and mail only: AWS APIs, REDCap's own update/consortium calls and SES SMTP.
        # (DNS to the VPC resolver is not subject to security groups.)
        for port, why in app_egress_ports():
            for family, cidr in (("ipv4", "0.0.0.0/0"), ("ipv6", "::/0")):
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-app-egress-{port}-{family}", security_group_id=app_sg.id,
                    ip_protocol="tcp", from_port=port, to_port=port, description=why,
                    **({"cidr_ipv4": cidr} if family == "ipv4" else {"cidr_ipv6": cidr}), opts=child)
        return app_sg, db_sg

    def _endpoints(self, name: str, vpc: awsx.ec2.Vpc, app_sg: aws.ec2.SecurityGroup, ctx: AwsContext) -> None:
        child = pulumi.ResourceOptions(parent=self)
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints", vpc_id=vpc.vpc_id, description="Interface VPC endpoints", opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-from-app", security_group_id=endpoint_sg.id, referenced_security_group_id=app_sg.id,
            ip_protocol="tcp", from_port=443, to_port=443, description="HTTPS from the REDCap application",
            opts=child)
        aws.ec2.VpcEndpoint(
            f"{name}-secretsmanager", vpc_id=vpc.vpc_id, service_name=f"com.amazonaws.{ctx.region}.secretsmanager",
            vpc_endpoint_type="Interface", private_dns_enabled=True, subnet_ids=vpc.private_subnet_ids,
            security_group_ids=[endpoint_sg.id], opts=child)
        # The gateway endpoint goes into every route table of the VPC (sorted: stable inputs).
        route_tables = aws.ec2.get_route_tables_output(vpc_id=vpc.vpc_id)
        aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.vpc_id, service_name=f"com.amazonaws.{ctx.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=route_tables.ids.apply(sorted), opts=child)


def keep_database_subnets(args: pulumi.ResourceTransformArgs) -> Optional[pulumi.ResourceTransformResult]:
    """Transform for the awsx VPC's children: keep the VPC and its isolated subnets on destroy."""
    if args.type_ == "aws:ec2/vpc:Vpc" or (args.type_ == "aws:ec2/subnet:Subnet" and "isolated" in args.name):
        return pulumi.ResourceTransformResult(
            props=args.props, opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(retain_on_delete=True)))
    return None


def nat_strategy(setting: str) -> awsx.ec2.NatGatewayStrategy:
    return awsx.ec2.NatGatewayStrategy.SINGLE if setting == "single" else awsx.ec2.NatGatewayStrategy.ONE_PER_AZ


def app_egress_ports() -> tuple[tuple[int, str], ...]:
    return ((443, "HTTPS to AWS APIs and REDCap services"),
            (80, "HTTP for REDCap outbound checks"),
            (587, "SMTP submission to Amazon SES"))
