"""AppRunnerService: REDCap on AWS App Runner (stages without an `ecs` block).

App Runner takes no new AWS customers since 2026-04-30; accounts that already use it keep it,
and ECS Fargate (components/ecs.py) is the equally complete alternative.

The service runs the pinned image (an immutable tag, so only `pulumi up` changes what runs;
automatic deployments are off), egresses through the VPC (NAT, S3 gateway, Secrets Manager
endpoint) via a VPC connector on the private subnets, checks /healthz over HTTP, is encrypted
with the stack key and protected by the web ACL. With a Route53 zone, the FQDN is associated
natively (CustomDomainAssociation) and its certificate-validation CNAMEs and the site record are
written in the zone. With an e-mail address, service operation results are mailed through an
encrypted SNS topic.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.dns import AliasTarget
from components.naming import stage_name
from components.rollout import DeployedVersion, settings_fingerprint
from components.notifications import EmailSubscription, email_subscription
from components.runtime import RuntimeContract
from settings import regions

HEALTH_PATH = "/healthz"
# Operation results worth a mail (seed-inventory 7.1).
OPERATION_STATUSES = (
    "DeploymentCompletedSuccessfully", "DeploymentFailed",
    "PauseServiceCompletedSuccessfully", "PauseServiceFailed",
    "ResumeServiceCompletedSuccessfully", "ResumeServiceFailed",
    "UpdateServiceCompletedSuccessfully", "UpdateServiceFailed",
)
# Certificate-validation CNAMEs App Runner returns for a custom domain without www: one for the
# domain and one for the extra name App Runner puts on its certificate
# (`_<hash>.<label>.<domain>`); www would add a third. A fixed number, so the records are
# created by index (known at preview) instead of inside an apply.
VALIDATION_RECORDS = 2
RECORD_TTL = 300


@dataclass(frozen=True)
class AppRunnerArgs:
    context: AwsContext
    image_uri: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    runtime: RuntimeContract
    private_subnet_ids: pulumi.Input[Sequence[str]]
    cpu: str
    memory: str
    max_concurrency: int
    min_size: int
    max_size: int
    web_acl_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    # Custom domain: the FQDN, the zone that holds it, and what must exist before App Runner
    # starts validating names in that zone (the stack's own NS delegation).
    fqdn: Optional[str] = None
    zone_id: Optional[pulumi.Input[str]] = None
    domain_dependencies: Sequence[pulumi.Resource] = ()
    notification_email: Optional[str] = None
    # redcap:emailSubscriptions: subscribe notification_email to the topic (else topic only).
    subscribe_notification_email: bool = True


def short_name(stack: str, limit: int) -> str:
    """`redcap-<stack>` within an App Runner name limit (letters, digits, - and _), unique per stack."""
    return stage_name(stack, limit, allowed=r"A-Za-z0-9_-")


def apprunner_ids(arn: str) -> tuple[str, str]:
    """arn:aws:apprunner:<region>:<account>:service/<name>/<id> -> (name, id)."""
    parts = arn.split(":service/")[-1].split("/")
    if len(parts) != 2:
        raise ValueError(f"not an App Runner service ARN: {arn}")
    return parts[0], parts[1]


def application_log_group(service_arn: str) -> str:
    """The log group App Runner creates and names for a service's container output."""
    name, service_id = apprunner_ids(service_arn)
    return f"/aws/apprunner/{name}/{service_id}/application"


def access_policy(repository_arn: str) -> str:
    return policies.document([
        # ECR issues registry login tokens account-wide: the action has no resource type.
        policies.allow(["ecr:GetAuthorizationToken"], ["*"], sid="RegistryLogin"),
        policies.allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:DescribeImages",
                        "ecr:GetDownloadUrlForLayer"], [repository_arn], sid="PullImage"),
    ])


def notification_pattern(service_name: str) -> str:
    return json.dumps({"source": ["aws.apprunner"],
                       "detail": {"serviceName": [service_name], "operationStatus": list(OPERATION_STATUSES)}},
                      sort_keys=True)


def topic_policy(topic_arn: str, rule_arn: str) -> str:
    return policies.document([{
        "Sid": "EventBridgeRule", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sns:Publish", "Resource": topic_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
    }])


def validation_records(records: Optional[list[Any]], fqdn: str,
                       expected: int = VALIDATION_RECORDS) -> list[tuple[str, str]]:
    """(name, value) of App Runner's certificate-validation CNAMEs, de-duplicated and sorted by
    name (the order existing stacks already hold them in). Anything but `expected` records is an
    error: a missing one would leave the certificate pending for ever, an extra one unwritten."""
    found = set()
    for record in records or []:
        get = record.get if isinstance(record, dict) else (lambda k, r=record: getattr(r, k, None))
        if get("name") and get("value"):
            if str(get("type") or "CNAME").upper() != "CNAME":
                raise ValueError(f"App Runner asked for a {get('type')} record {get('name')} to validate {fqdn}; "
                                 "only CNAME records are expected (AWS App Runner API, CertificateValidationRecord)")
            found.add((str(get("name")), str(get("value"))))
    ordered = sorted(found)
    if len(ordered) != expected:
        names = ", ".join(n for n, _ in ordered) or "none"
        raise ValueError(
            f"App Runner returned {len(ordered)} certificate-validation records for {fqdn} ({names}); this "
            f"program writes exactly {expected} (the domain's and the one App Runner adds, www not enabled). "
            "No validation record was written; please report this with the list above")
    return ordered


class AppRunnerService(pulumi.ComponentResource):
    service_arn: pulumi.Output[str]
    service_url: pulumi.Output[str]
    custom_url: Optional[str]
    waf_association: aws.wafv2.WebAclAssociation
    # Where the site record points; None without a custom domain.
    site_alias: Optional[AliasTarget]
    email_subscriptions: list[EmailSubscription]

    def __init__(self, name: str, args: AppRunnerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:apprunner:AppRunnerService", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        service_name = short_name(ctx.stack, 40)
        custom_domain = bool(args.fqdn) and args.zone_id is not None
        # Settings allow App Runner only in regions whose endpoints have a hosted zone.
        alias_zone = regions.require(ctx.region).app_runner_zone_id if custom_domain else None

        access_role = aws.iam.Role(
            f"{name}-access-role",
            assume_role_policy=ctx.account_id.apply(
                lambda a: policies.assume_role_policy("build.apprunner.amazonaws.com", a)),
            opts=child)
        access = aws.iam.RolePolicy(
            f"{name}-access", role=access_role.id,
            policy=pulumi.Output.from_input(args.repository_arn).apply(access_policy), opts=child)
        instance_role = aws.iam.Role(
            f"{name}-instance-role",
            assume_role_policy=ctx.account_id.apply(
                lambda a: policies.assume_role_policy("tasks.apprunner.amazonaws.com", a)),
            opts=child)
        runtime_grants = aws.iam.RolePolicy(f"{name}-runtime", role=instance_role.id,
                                            policy=args.runtime.role_policy, opts=child)

        connector = aws.apprunner.VpcConnector(
            f"{name}-connector", vpc_connector_name=short_name(ctx.stack, 40),
            subnets=args.private_subnet_ids, security_groups=[args.runtime.security_group_id], opts=child)
        scaling = aws.apprunner.AutoScalingConfigurationVersion(
            f"{name}-scaling", auto_scaling_configuration_name=short_name(ctx.stack, 32),
            max_concurrency=args.max_concurrency, min_size=args.min_size, max_size=args.max_size, opts=child)

        service = aws.apprunner.Service(
            f"{name}-service",
            service_name=service_name,
            source_configuration={
                # The tag is immutable and changes only with `pulumi up`: never deploy behind its back.
                "auto_deployments_enabled": False,
                "authentication_configuration": {"access_role_arn": access_role.arn},
                "image_repository": {
                    "image_identifier": args.image_uri,
                    "image_repository_type": "ECR",
                    "image_configuration": {"port": str(args.runtime.port),
                                            "runtime_environment_variables": args.runtime.environment},
                },
            },
            instance_configuration={"cpu": args.cpu, "memory": args.memory, "instance_role_arn": instance_role.arn},
            network_configuration={
                "egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": connector.arn},
                "ingress_configuration": {"is_publicly_accessible": True},
            },
            health_check_configuration={"protocol": "HTTP", "path": HEALTH_PATH, "interval": 10, "timeout": 5,
                                        "healthy_threshold": 1, "unhealthy_threshold": 5},
            auto_scaling_configuration_arn=scaling.arn,
            encryption_configuration={"kms_key": args.kms_key_arn},
            # No observability configuration: X-Ray tracing needs an instrumented app, and REDCap is not.
            # The name is unique per account and region and the provider replaces the service when
            # its name or encryption key changes (ForceNew): the old service must go first, or the
            # new one fails with "already exists". A replacement gets a new URL anyway.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access, runtime_grants], delete_before_replace=True))
        # What must be in place before the site is checked through its public entry (components/operations.py).
        self.waf_association = aws.wafv2.WebAclAssociation(
            f"{name}-waf", resource_arn=service.arn, web_acl_arn=args.web_acl_arn, opts=child)

        # After App Runner's own rollback the service is RUNNING again: the check reads which
        # image runs and how the last operation ended. Environment and sizes roll out too.
        self.deployed = DeployedVersion(
            runtime="apprunner", service=service.arn, cluster=None, service_arn=service.arn, expected=args.image_uri,
            container_log_group=service.arn.apply(application_log_group), after=(service,),
            triggers={"settings": pulumi.Output.from_input(args.runtime.environment).apply(
                lambda env: settings_fingerprint({"environment": env, "cpu": args.cpu, "memory": args.memory,
                                                  "port": args.runtime.port}))})

        self.service_arn = service.arn
        self.service_url = service.service_url.apply(lambda u: f"https://{u}")
        self.custom_url = None
        self.site_alias = None
        if custom_domain:
            assert alias_zone is not None
            self.custom_url = f"https://{args.fqdn}"
            self.site_alias = self._custom_domain(name, args, service, alias_zone)
        self.email_subscriptions = []
        if args.notification_email:
            self._notifications(name, args, service_name)

        self.register_outputs({"serviceArn": self.service_arn, "serviceUrl": self.service_url,
                               "customUrl": self.custom_url})

    def _custom_domain(self, name: str, args: AppRunnerArgs, service: aws.apprunner.Service,
                       alias_zone: str) -> AliasTarget:
        assert args.fqdn is not None and args.zone_id is not None
        fqdn = args.fqdn
        child = pulumi.ResourceOptions(parent=self)
        association = aws.apprunner.CustomDomainAssociation(
            f"{name}-domain", domain_name=fqdn, service_arn=service.arn, enable_www_subdomain=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.domain_dependencies)))
        records = association.certificate_validation_records.apply(lambda found: validation_records(found, fqdn))
        for index in range(VALIDATION_RECORDS):
            record = records.apply(lambda found, i=index: found[i])
            aws.route53.Record(
                f"{name}-domain-validation-{index}", zone_id=args.zone_id, type="CNAME", ttl=RECORD_TTL,
                name=record.apply(lambda r: r[0]), records=[record.apply(lambda r: r[1])],
                # App Runner's own names for this association: an existing record of that name
                # belongs to somebody else and is not taken over.
                allow_overwrite=False, opts=child)
        # An alias A record works at a zone apex and below it alike (a CNAME cannot sit at an
        # apex), so the site record has one type whatever the runtime.
        return AliasTarget(dns_name=association.dns_target,
                           hosted_zone_id=pulumi.Output.from_input(alias_zone))

    def _notifications(self, name: str, args: AppRunnerArgs, service_name: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{name}-notifications", kms_master_key_id=args.kms_key_arn,
                              display_name=f"REDCap {args.context.stack} App Runner", opts=child)
        rule = aws.cloudwatch.EventRule(
            f"{name}-operations", description="App Runner operation results of the REDCap service",
            event_pattern=notification_pattern(service_name), opts=child)
        publish = aws.sns.TopicPolicy(
            f"{name}-notifications-policy", arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, rule.arn).apply(lambda a: topic_policy(a[0], a[1])), opts=child)
        # EventBridge may deliver as soon as the target exists: the topic must already let it.
        aws.cloudwatch.EventTarget(f"{name}-operations-mail", rule=rule.name, arn=topic.arn,
                                   opts=pulumi.ResourceOptions(parent=self, depends_on=[publish]))
        assert args.notification_email is not None
        self.email_subscriptions.append(email_subscription(
            f"{name}-notifications-email", topic=topic, address=args.notification_email,
            purpose="App Runner operation results", subscribe=args.subscribe_notification_email, parent=self))
