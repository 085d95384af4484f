"""ExpressService: REDCap on Amazon ECS Express Mode, reached through CloudFront (stages with an
`express` block). The runtime for AWS accounts that App Runner no longer takes, and the only one
that serves HTTPS without a domain of your own besides App Runner.

Why CloudFront in front (docs/compute.md has the whole argument):
- Express Mode takes one subnet list for the tasks and its managed load balancer. Tasks in the
  private subnets (no public IPs) give an *internal* load balancer that the internet cannot reach.
- The bridged resource does not expose that load balancer's ARN, so a REGIONAL web ACL cannot be
  associated with it from pulumi-aws, and its HTTPS listener carries only the certificate of the
  AWS-managed endpoint name (`<id>.ecs.<region>.on.aws`), routing by that host name.
- So the public entry is a CloudFront distribution with a VPC origin (CloudFront's own network
  interfaces in the VPC reach the internal load balancer over HTTPS, host name = the managed
  endpoint, so its certificate and its listener rule match) and the stack's CLOUDFRONT-scope web
  ACL (every rule of components/firewall.py). The VPC origin needs the load balancer's ARN, which
  is read from the Express service's `ecsManagedResourceArns` through pulumi-aws-native (Cloud
  Control's view of AWS::ECS::ExpressGatewayService).
- Without a domain, `https://<id>.cloudfront.net` works at once; with one, the distribution gets
  the FQDN as alias and an ACM certificate from us-east-1, and the stack's site record points at
  `site_alias` (this component writes no Route53 record).

Requests can run up to 60 s: CloudFront's origin response timeout (its maximum without a quota
increase) and the managed load balancer's default idle timeout. ECS (4000 s) is for longer ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_aws_native as aws_native
import pulumi_random as random
import pulumiverse_time as pulumi_time

from components import policies
from components.context import AwsContext
from components.dns import AliasTarget
from components.ecs import CONTAINER_NAME, HEALTH_PATH, task_roles
from components.network import AVAILABILITY_ZONES, SUBNET_MASK, TIERS, VPC_CIDR
from components.runtime import RuntimeContract, environment_list, trusting_forwarded_host
from components.rollout import DeployedVersion
from settings.common import plan_subnets

# AWS's managed policy for the role Express Mode uses to create the load balancer, target
# groups, security groups, certificate, alarms and autoscaling in this account.
INFRASTRUCTURE_POLICY_ARN_SUFFIX = "service-role/AmazonECSInfrastructureRoleforExpressGatewayServices"
# AWS-managed CloudFront policies (fixed ids): nothing is cached (REDCap pages are per user and
# per session), and every viewer header, cookie and query argument goes to the origin except
# Host, which must stay the managed endpoint's name for its certificate and listener rule.
CACHING_DISABLED_POLICY_ID = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_POLICY_ID = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
ORIGIN_ID = "express"
# CloudFront's maximum origin response timeout without a quota increase, in seconds.
ORIGIN_READ_TIMEOUT_SECONDS = 60
ORIGIN_KEEPALIVE_SECONDS = 60
VIEWER_TLS_POLICY = "TLSv1.2_2021"
# North America and Europe edge locations: every viewer anywhere is served, from farther away.
PRICE_CLASS = "PriceClass_100"
CLOUDFRONT_NAME_LIMIT = 64
# How long a destroy waits after the service's deletion before it removes what the draining
# service still uses: the provider returns once the service is DRAINING, and only after its tasks
# stop (the target groups' deregistration delay, 300 s by default) does Express remove the load
# balancer, target groups and security groups, with the infrastructure role.
DRAIN_WAIT = "10m"
# The viewer's Host goes to the origin as X-Forwarded-Host (Host itself must be the endpoint's),
# over any value the viewer sent; the container takes the site's host name from it
# (TRUST_FORWARDED_HOST, set for this runtime only).
FORWARDED_HOST_FUNCTION = """function handler(event) {
  var request = event.request;
  request.headers['x-forwarded-host'] = {value: request.headers.host.value};
  return request;
}
"""


@dataclass(frozen=True)
class ExpressArgs:
    context: AwsContext
    image_uri: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    runtime: RuntimeContract
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    cpu: int
    memory: int
    min_containers: int
    max_containers: int
    scaling_metric: str  # AVERAGE_CPU, AVERAGE_MEMORY or REQUEST_COUNT_PER_TARGET
    scaling_target: int
    web_acl_arn: pulumi.Input[str]  # CLOUDFRONT scope
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    fqdn: Optional[str] = None
    # ACM certificate in us-east-1 for `fqdn`; None = the distribution's own *.cloudfront.net name.
    certificate_arn: Optional[pulumi.Input[str]] = None
    # An idle schedule moves the service's scaling bounds (components/operations.py): a diff on
    # them would wake a sleeping stage at every `pulumi up`.
    capacity_scheduled: bool = False


def express_name(stack: str, limit: int = 255) -> str:
    """`redcap-<stack>-express`: the cluster and log group must not share the ECS runtime's names,
    or switching runtimes would create the new one while the old one (same name) still exists."""
    cleaned = "".join(c if c.isalnum() else "-" for c in f"redcap-{stack}".lower())
    return f"{cleaned[:limit - len('-express')].strip('-')}-express"


def cloudfront_name(stack: str, region: str, suffix: str) -> str:
    """CloudFront names are global to the account: the stage's region is part of them."""
    base = "".join(c if c.isalnum() else "-" for c in f"redcap-{stack}-{region}".lower())
    return f"{base[:CLOUDFRONT_NAME_LIMIT - len(suffix) - 1].strip('-')}-{suffix}"


def service_name_prefix(stack: str) -> str:
    """What every Express service name of the stage starts with (service_name without its suffix)."""
    return service_name(stack, "")


def service_name(stack: str, suffix: str) -> str:
    """`redcap-<stack>-<suffix>`. The suffix changes with every new service: the provider refuses
    to create a service whose name its cluster still lists, and ECS lists a deleted service
    (DRAINING, then INACTIVE) for a while, so a replacement, a destroy and redeploy, or a switch
    back to Express would otherwise fail."""
    base = "".join(c if c.isalnum() else "-" for c in f"redcap-{stack}".lower())
    return f"{base[:255 - len(suffix) - 1].strip('-')}-{suffix}"


def task_ingress_cidrs() -> list[str]:
    """The private subnets: where the internal managed load balancer (and nothing public) is."""
    return plan_subnets(VPC_CIDR, AVAILABILITY_ZONES, TIERS, SUBNET_MASK)["private"]


def endpoint_of(ingress_paths: Optional[Sequence[object]]) -> str:
    """The managed endpoint host name from the service's ingress paths."""
    for path in ingress_paths or []:
        endpoint = path.get("endpoint") if isinstance(path, dict) else getattr(path, "endpoint", None)
        if endpoint:
            return str(endpoint).removeprefix("https://").rstrip("/")
    raise ValueError("the Express service reported no ingress path endpoint")


def console_url(region: str, cluster: str, service: str) -> str:
    return f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/services/{service}/health?region={region}"


def describe_command(region: str, service_arn: str) -> str:
    return f"aws ecs describe-express-gateway-service --region {region} --service-arn {service_arn}"


def viewer_certificate(certificate_arn: Optional[str]) -> dict[str, object]:
    if certificate_arn is None:
        return {"cloudfront_default_certificate": True}
    return {"acm_certificate_arn": certificate_arn, "ssl_support_method": "sni-only",
            "minimum_protocol_version": VIEWER_TLS_POLICY}


class ExpressService(pulumi.ComponentResource):
    distribution_url: pulumi.Output[str]
    service_url: pulumi.Output[str]
    custom_url: Optional[str]
    site_alias: AliasTarget
    cluster_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    service_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    load_balancer_arn: pulumi.Output[str]
    distribution_id: pulumi.Output[str]
    distribution_arn: pulumi.Output[str]
    console_url: pulumi.Output[str]
    describe_command: pulumi.Output[str]

    def __init__(self, name: str, args: ExpressArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:express:ExpressService", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        port = args.runtime.port

        cluster = aws.ecs.Cluster(
            f"{name}-cluster", name=express_name(ctx.stack),
            settings=[{"name": "containerInsights", "value": "enabled"}], opts=child)
        group = aws.cloudwatch.LogGroup(
            f"{name}-container-logs", name=f"/ecs/{express_name(ctx.stack, 200)}",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)

        execution_role, execution, task_role, runtime_grants = task_roles(
            name, ctx, args.repository_arn, group.arn, args.runtime, child)
        infrastructure_role = aws.iam.Role(
            f"{name}-infrastructure-role",
            assume_role_policy=policies.assume_role_policy("ecs.amazonaws.com"),
            description="ECS Express Mode creates the load balancer, certificate and autoscaling of REDCap",
            opts=child)
        infrastructure = aws.iam.RolePolicyAttachment(
            f"{name}-infrastructure", role=infrastructure_role.name,
            policy_arn=ctx.partition.apply(lambda p: f"arn:{p}:iam::aws:policy/{INFRASTRUCTURE_POLICY_ARN_SUFFIX}"),
            opts=child)

        tasks_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks", vpc_id=args.vpc_id,
            description="REDCap Express tasks: the container port from the private subnets (the internal load balancer)",
            opts=child)
        ingress = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-tasks-from-private-{index}", security_group_id=tasks_sg.id, cidr_ipv4=cidr,
                ip_protocol="tcp", from_port=port, to_port=port,
                description="from the internal load balancer in the private subnets", opts=child)
            for index, cidr in enumerate(task_ingress_cidrs())
        ]

        # Destroyed after the service, DRAIN_WAIT later: the roles (Express removes its load
        # balancer with the infrastructure role), the tasks' security group, the log group and
        # the cluster outlive the draining service.
        drained = pulumi_time.Sleep(
            f"{name}-drain", destroy_duration=DRAIN_WAIT,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                execution, runtime_grants, infrastructure, tasks_sg, *ingress, group, cluster]))
        # A new name for each new service (service_name); the inputs that replace the service
        # (infrastructure role, cluster) replace the suffix too, so the replacement is created
        # under its own name before the old service is deleted.
        suffix = random.RandomId(
            f"{name}-service-suffix", byte_length=3,
            keepers={"infrastructureRoleArn": infrastructure_role.arn, "cluster": cluster.name}, opts=child)

        service = aws.ecs.ExpressGatewayService(
            f"{name}-service",
            cluster=cluster.name,
            service_name=suffix.hex.apply(lambda h: service_name(ctx.stack, h)),
            cpu=str(args.cpu), memory=str(args.memory),
            execution_role_arn=execution_role.arn, task_role_arn=task_role.arn,
            infrastructure_role_arn=infrastructure_role.arn,
            health_check_path=HEALTH_PATH,
            primary_container={
                "image": args.image_uri,
                "container_port": port,
                # Host reaches the container as the managed endpoint's name; the site's own
                # comes as X-Forwarded-Host from the function below, and only from it.
                "environments": args.runtime.environment.apply(
                    lambda env: environment_list(trusting_forwarded_host(env))),
                "aws_logs_configurations": [{"log_group": group.name, "log_stream_prefix": CONTAINER_NAME}],
            },
            network_configurations=[{"subnets": args.private_subnet_ids,
                                     "security_groups": [args.runtime.security_group_id, tasks_sg.id]}],
            scaling_targets=[{"auto_scaling_metric": args.scaling_metric,
                              "auto_scaling_target_value": args.scaling_target,
                              "min_task_count": args.min_containers, "max_task_count": args.max_containers}],
            # A rollout whose tasks never become healthy fails `pulumi up` (Express rolls back).
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Tasks pull the image and read their secrets with these roles as soon as the
                # service exists; Express builds its load balancer with the infrastructure role.
                depends_on=[execution, runtime_grants, infrastructure, drained],
                ignore_changes=["scalingTargets"] if args.capacity_scheduled else None))

        native = aws_native.Provider(f"{name}-native", region=ctx.region,
                                     **({"profile": ctx.profile} if ctx.profile else {}), opts=child)
        managed = aws_native.ecs.get_express_gateway_service_output(
            service_arn=service.service_arn, opts=pulumi.InvokeOutputOptions(parent=self, provider=native))
        self.load_balancer_arn = managed.ecs_managed_resource_arns.apply(
            lambda arns: _load_balancer_arn(arns))
        endpoint = service.ingress_paths.apply(endpoint_of)

        origin = aws.cloudfront.VpcOrigin(
            f"{name}-origin",
            vpc_origin_endpoint_config={
                "name": cloudfront_name(ctx.stack, ctx.region, "express"),
                "arn": self.load_balancer_arn,
                "http_port": 80, "https_port": 443,
                "origin_protocol_policy": "https-only",
                "origin_ssl_protocols": {"items": ["TLSv1.2"], "quantity": 1},
            },
            opts=child)
        forwarded_host = aws.cloudfront.Function(
            f"{name}-forwarded-host", name=cloudfront_name(ctx.stack, ctx.region, "host"),
            runtime="cloudfront-js-2.0", comment="Viewer Host as X-Forwarded-Host for REDCap",
            code=FORWARDED_HOST_FUNCTION, publish=True, opts=child)

        certificate = pulumi.Output.from_input(args.certificate_arn) if args.certificate_arn is not None else None
        distribution = aws.cloudfront.Distribution(
            f"{name}-distribution",
            comment=f"REDCap {ctx.stack} ({ctx.region})",
            enabled=True, is_ipv6_enabled=True, http_version="http2and3", price_class=PRICE_CLASS,
            aliases=[args.fqdn] if args.fqdn and certificate is not None else None,
            origins=[{
                "origin_id": ORIGIN_ID,
                "domain_name": endpoint,
                "vpc_origin_config": {"vpc_origin_id": origin.id,
                                      "origin_read_timeout": ORIGIN_READ_TIMEOUT_SECONDS,
                                      "origin_keepalive_timeout": ORIGIN_KEEPALIVE_SECONDS},
            }],
            default_cache_behavior={
                "target_origin_id": ORIGIN_ID,
                "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": list(ALL_METHODS),
                "cached_methods": ["GET", "HEAD"],
                "cache_policy_id": CACHING_DISABLED_POLICY_ID,
                "origin_request_policy_id": ALL_VIEWER_EXCEPT_HOST_POLICY_ID,
                "compress": True,
                "function_associations": [{"event_type": "viewer-request", "function_arn": forwarded_host.arn}],
            },
            # Countries are the web ACL's business (allowedCountries), as for the other runtimes.
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate=certificate.apply(viewer_certificate) if certificate is not None
            else viewer_certificate(None),
            web_acl_id=args.web_acl_arn,
            # No CloudFront access logs: they record full query strings (survey hashes, record
            # ids); the WAF log has every request with the query string redacted.
            opts=child)

        self.distribution_id = distribution.id
        self.distribution_arn = distribution.arn
        self.distribution_url = distribution.domain_name.apply(lambda d: f"https://{d}")
        self.service_url = endpoint.apply(lambda e: f"https://{e}")
        self.custom_url = f"https://{args.fqdn}" if args.fqdn and certificate is not None else None
        self.site_alias = AliasTarget(dns_name=distribution.domain_name, hosted_zone_id=distribution.hosted_zone_id)
        self.cluster_name = cluster.name
        self.service_name = service.service_name
        self.service_arn = service.service_arn
        self.log_group_name = group.name
        # Express registers its own revisions, so the check follows the image: a rollback to a
        # revision of another image fails `pulumi up` even where the service's wait does not.
        self.deployed = DeployedVersion(
            runtime="express", service=service.service_arn, cluster=cluster.name, service_arn=service.service_arn,
            expected=args.image_uri, container_log_group=group.name, after=(service,))
        self.console_url = pulumi.Output.all(cluster.name, service.service_name).apply(
            lambda a: console_url(ctx.region, a[0], a[1]))
        self.describe_command = service.service_arn.apply(lambda arn: describe_command(ctx.region, arn))
        self.register_outputs({
            "distributionUrl": self.distribution_url, "serviceUrl": self.service_url, "customUrl": self.custom_url,
            "clusterName": self.cluster_name, "serviceName": self.service_name, "logGroupName": self.log_group_name,
            "loadBalancerArn": self.load_balancer_arn,
        })


def _load_balancer_arn(arns: object) -> str:
    """ecsManagedResourceArns.ingressPath.loadBalancerArn, which pulumi-aws does not expose."""
    ingress = getattr(arns, "ingress_path", None) if arns is not None else None
    arn = getattr(ingress, "load_balancer_arn", None) if ingress is not None else None
    if not arn:
        raise ValueError("the Express service's managed load balancer is not known yet "
                         "(ecsManagedResourceArns.ingressPath.loadBalancerArn is empty): see "
                         "`aws ecs describe-express-gateway-service` for its status")
    return str(arn)

