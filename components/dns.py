"""Domain: the Route53 zone that holds the site's name (four `hostInRoute53` modes), the
delegation from a parent zone and a DNS-validated ACM certificate for the FQDN; SiteRecord: the
one record that sends the FQDN to whichever runtime serves it.

| hostInRoute53 | subdomain | zone of the FQDN                          | extra                          |
|---------------|-----------|-------------------------------------------|--------------------------------|
| true          | -         | new zone <domain>                         | export nameServers             |
| true          | set       | new zone <subdomain>.<domain>             | export nameServers             |
| '<zone>'      | -         | existing zone <zone> (looked up)          | records at <domain> inside it  |
| '<zone>'      | set       | new zone <subdomain>.<domain>             | NS delegation in <zone>; nameServers |
| false         | any       | none                                      | everything by hand             |

Two phases (docs/domains.md): a zone this stack creates and somebody else delegates
(`hostInRoute53: true`) answers nobody until the delegation exists, and ACM or App Runner would
wait for it for hours. So the first `pulumi up` creates only the zone and exports its name
servers; the certificate, the custom domain and the site record exist once the operator says
the delegation is done (`zoneDelegated: true`). The other modes are `ready` at once: the zone is
live already, or the stack delegates it itself and the certificate validation waits for that
NS record.

Unlike the original (which wrote every record at the zone apex, upstream #16), records for the
site are written at `fqdn` inside `zone_id`. Only the ACM validation CNAME may overwrite an
existing record: ACM asks every certificate for this FQDN in the account for the same one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext

# CDK's ZoneDelegationRecord default (2 days), as the original: NS records of a delegation
# change only when the child zone is recreated.
DELEGATION_TTL = 172800
VALIDATION_TTL = 300

ZoneMode = Literal["new-zone", "existing-zone", "delegated-zone", "none"]

# Components that owned the site record before SiteRecord did (same component name, child
# `<name>-site`). Listed as aliases, so an existing stack's record becomes SiteRecord's
# without being deleted and created again.
PREVIOUS_SITE_RECORD_OWNERS = ("redcap:apprunner:AppRunnerService", "redcap:ecs:FargateService")


def zone_mode(host_in_route53: bool | str, subdomain: Optional[str]) -> ZoneMode:
    """Which of the four modes a setting combination means."""
    if host_in_route53 is False:
        return "none"
    if host_in_route53 is True:
        return "new-zone"
    return "delegated-zone" if subdomain else "existing-zone"


def fqdn_of(domain: str, subdomain: Optional[str]) -> str:
    return f"{subdomain}.{domain}" if subdomain else domain


def waits_for_delegation(mode: ZoneMode) -> bool:
    """Only a zone this stack creates and somebody else delegates is unreachable at first."""
    return mode == "new-zone"


def is_ready(mode: ZoneMode, zone_delegated: bool) -> bool:
    """Phase two reached, or a mode that never waits for a delegation."""
    return not waits_for_delegation(mode) or zone_delegated


@dataclass(frozen=True)
class DomainArgs:
    domain: str
    subdomain: Optional[str]
    host_in_route53: bool | str
    # redcap:zoneDelegated: the operator's word that the new zone is delegated (mode true only).
    zone_delegated: bool = False
    # Where a DNS-validated certificate for the FQDN is needed: None = none (App Runner manages
    # its own), the stack's region for an ALB, us-east-1 for CloudFront.
    certificate_region: Optional[str] = None
    # The stack's own region: a certificate anywhere else names its region explicitly.
    stack_region: Optional[str] = None


class Domain(pulumi.ComponentResource):
    fqdn: str
    mode: ZoneMode
    ready: bool
    zone_name: Optional[str]
    zone_id: Optional[pulumi.Output[str]]
    name_servers: Optional[pulumi.Output[list[str]]]
    certificate_arn: Optional[pulumi.Output[str]]
    # What must exist before anyone validates a name in the zone (the NS delegation this
    # stack writes itself); empty when the zone is live already.
    dns_dependencies: list[pulumi.Resource]
    # The parent zone this stack writes the delegation into (delegated-zone mode only).
    parent_zone_id: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: DomainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:dns:Domain", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.fqdn = fqdn_of(args.domain, args.subdomain)
        self.mode = zone_mode(args.host_in_route53, args.subdomain)
        self.ready = is_ready(self.mode, args.zone_delegated)
        self.zone_id = None
        self.zone_name = None
        self.name_servers = None
        self.certificate_arn = None
        self.dns_dependencies = []
        self.parent_zone_id = None

        if self.mode in ("new-zone", "delegated-zone"):
            zone = aws.route53.Zone(
                f"{name}-zone", name=self.fqdn, comment=f"REDCap {self.fqdn} (managed by Pulumi)",
                opts=child)
            self.zone_id = zone.zone_id
            self.zone_name = self.fqdn
            self.name_servers = zone.name_servers.apply(sorted)
            if self.mode == "delegated-zone":
                parent = aws.route53.get_zone_output(name=str(args.host_in_route53), private_zone=False)
                delegation = aws.route53.Record(
                    f"{name}-delegation", zone_id=parent.zone_id, name=self.fqdn, type="NS",
                    ttl=DELEGATION_TTL, records=self.name_servers, opts=child)
                self.dns_dependencies = [delegation]
                self.parent_zone_id = parent.zone_id
        elif self.mode == "existing-zone":
            existing = aws.route53.get_zone_output(name=str(args.host_in_route53), private_zone=False)
            self.zone_id = existing.zone_id
            self.zone_name = str(args.host_in_route53)

        if args.certificate_region is not None and self.ready:
            if self.zone_id is None:
                raise ValueError("a DNS-validated certificate needs a Route53 zone (hostInRoute53 true or a zone name)")
            region = args.certificate_region if args.certificate_region != args.stack_region else None
            self.certificate_arn = self._certificate(name, self.zone_id, region)

        self.register_outputs({
            "fqdn": self.fqdn,
            "ready": self.ready,
            "zoneId": self.zone_id,
            "nameServers": self.name_servers,
            "certificateArn": self.certificate_arn,
        })

    def _certificate(self, name: str, zone_id: pulumi.Output[str], region: Optional[str]) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        # pulumi-aws 7 manages a resource in another region through its `region` argument, with
        # the stack's own credentials and default tags (an explicit provider would need both
        # copied from the stack's configuration).
        regional = {"region": region} if region is not None else {}
        cert = aws.acm.Certificate(
            f"{name}-certificate", domain_name=self.fqdn, validation_method="DNS", key_algorithm="RSA_2048",
            opts=child, **regional)
        # One name, no SANs: exactly one validation option.
        option = cert.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            f"{name}-certificate-validation-record", zone_id=zone_id,
            name=option.apply(lambda o: o.resource_record_name),
            type=option.apply(lambda o: o.resource_record_type),
            records=[option.apply(lambda o: o.resource_record_value)],
            ttl=VALIDATION_TTL,
            # The one record that may take over an existing one: ACM gives every certificate
            # for this FQDN in the account the same CNAME, so a replaced certificate (or another
            # stage for the same name) asks for the record that is already there.
            allow_overwrite=True,
            opts=child)
        # ACM resolves the CNAME through the parent zone: wait until the delegation exists.
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validation", certificate_arn=cert.arn, validation_record_fqdns=[record.fqdn],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.dns_dependencies)), **regional)
        return validation.certificate_arn


DNSSEC_REGION = "us-east-1"
# A DS record is cached by resolvers for its TTL: removing DNSSEC must wait that long after the
# DS is gone (docs/domains.md), so it is kept short rather than the delegation's two days.
DS_TTL = 3600
# Route53 KSK names: 3-128 of [A-Za-z0-9_], unique within the zone (one zone per stack).
KSK_NAME = "redcap_ksk"

DnssecMode = Literal["off", "signing", "dsWithdrawn"]


def dnssec_key_policy(partition: str, account_id: str, zone_id: str) -> str:
    """Key policy of the zone's signing key: IAM in this account administers it; Route53's DNSSEC
    service may read the public key and sign, for this account's zone only (the confused-deputy
    conditions AWS documents for dnssec-route53.amazonaws.com)."""
    service = {"Service": "dnssec-route53.amazonaws.com"}
    confused_deputy = {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:route53:::hostedzone/{zone_id}"},
    }
    return policies.document([
        {
            "Sid": "AccountAdministersKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": "kms:*",  # AWS's default key policy: delegates every decision to IAM.
            "Resource": "*",  # In a key policy, "*" means this key only.
        },
        {
            "Sid": "Route53DnssecSigns",
            "Effect": "Allow",
            "Principal": service,
            "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"],
            "Resource": "*",
            "Condition": confused_deputy,
        },
        {
            "Sid": "Route53DnssecGrantsForItself",
            "Effect": "Allow",
            "Principal": service,
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {**confused_deputy, "Bool": {"kms:GrantIsForAWSResource": True}},
        },
    ])


def query_log_group_name(fqdn: str) -> str:
    """AWS's recommended prefix for query-log groups (one per zone)."""
    return f"/aws/route53/{fqdn}"


def query_log_policy(log_group_arn: str, account_id: str, partition: str, zone_id: str) -> str:
    """Route53 may write query logs into this group only, for this account's zone only."""
    return policies.document([{
        "Sid": "Route53QueryLogsOfTheZone",
        "Effect": "Allow",
        "Principal": {"Service": "route53.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        # The group (CreateLogStream) and its streams (PutLogEvents).
        "Resource": [log_group_arn, f"{log_group_arn}:*"],
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account_id},
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:route53:::hostedzone/{zone_id}"},
        },
    }])


@dataclass(frozen=True)
class ZoneSecurityArgs:
    context: AwsContext
    zone_id: pulumi.Output[str]
    fqdn: str
    # The parent zone when this stack writes the delegation: the DS record goes there too.
    parent_zone_id: Optional[pulumi.Output[str]]
    # The NS delegation this stack writes (Domain.dns_dependencies): Route53 refuses to start
    # signing a zone whose parent lists other name servers (HostedZonePartiallyDelegated).
    dns_dependencies: Sequence[pulumi.Resource]
    # off; signing (and the DS published where the stack owns the delegation); dsWithdrawn
    # (still signing, DS removed: the first step of turning DNSSEC off).
    dnssec: DnssecMode
    query_logging: bool
    # The stack's key encrypts the query log when the stack runs in us-east-1.
    kms_key_arn: pulumi.Output[str]
    log_retention_days: int


class ZoneSecurity(pulumi.ComponentResource):
    """DNSSEC signing and query logging of a zone this stack creates. Both live in us-east-1
    (Route53 requires the signing key and the log group there), managed through pulumi-aws 7's
    per-resource `region` with the stack's own credentials and tags.

    Destroy order follows the dependencies: DS record, then signing off, then the KSK, then the
    key (scheduled for deletion after its 30-day window, so it can be cancelled)."""

    ds_record: Optional[pulumi.Output[str]]
    query_log_group_name: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: ZoneSecurityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:dns:ZoneSecurity", name, None, opts)
        ctx = args.context
        regional = {"region": DNSSEC_REGION} if ctx.region != DNSSEC_REGION else {}
        child = pulumi.ResourceOptions(parent=self)
        self.ds_record = None
        self.query_log_group_name = None

        if args.dnssec != "off":
            key = aws.kms.Key(
                f"{name}-dnssec-key", description=f"REDCap {ctx.stack}: DNSSEC key-signing key of {args.fqdn}",
                customer_master_key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY",
                # Asymmetric keys cannot rotate; the KSK is rotated by replacing it.
                deletion_window_in_days=30,
                policy=pulumi.Output.all(ctx.partition, ctx.account_id, args.zone_id).apply(
                    lambda a: dnssec_key_policy(a[0], a[1], a[2])),
                opts=child, **regional)
            ksk = aws.route53.KeySigningKey(
                f"{name}-ksk", hosted_zone_id=args.zone_id, key_management_service_arn=key.arn,
                name=KSK_NAME, status="ACTIVE", opts=child)
            signing = aws.route53.HostedZoneDnsSec(
                f"{name}-dnssec", hosted_zone_id=ksk.hosted_zone_id, signing_status="SIGNING",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ksk, *args.dns_dependencies]))
            self.ds_record = ksk.ds_record
            if args.parent_zone_id is not None and args.dnssec == "signing":
                # Published only once the zone signs: a DS without signatures breaks resolution.
                aws.route53.Record(
                    f"{name}-ds", zone_id=args.parent_zone_id, name=args.fqdn, type="DS", ttl=DS_TTL,
                    records=[ksk.ds_record], opts=pulumi.ResourceOptions(parent=self, depends_on=[signing]))

        if args.query_logging:
            log_key_arn = args.kms_key_arn if not regional else self._log_key(name, ctx)
            group = aws.cloudwatch.LogGroup(
                f"{name}-query-logs", name=query_log_group_name(args.fqdn),
                retention_in_days=args.log_retention_days, kms_key_id=log_key_arn, opts=child, **regional)
            policy = aws.cloudwatch.LogResourcePolicy(
                f"{name}-query-logs-delivery", policy_name=f"redcap-{ctx.stack}-route53-query-logs",
                policy_document=pulumi.Output.all(group.arn, ctx.account_id, ctx.partition, args.zone_id).apply(
                    lambda a: query_log_policy(a[0], a[1], a[2], a[3])),
                opts=child, **regional)
            aws.route53.QueryLog(
                f"{name}-query-log", zone_id=args.zone_id, cloudwatch_log_group_arn=group.arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
            self.query_log_group_name = group.name

        self.register_outputs({"dsRecord": self.ds_record, "queryLogGroupName": self.query_log_group_name})

    def _log_key(self, name: str, ctx: AwsContext) -> pulumi.Output[str]:
        """A log group can only use a key of its own region."""
        key = aws.kms.Key(
            f"{name}-query-log-key", description=f"REDCap {ctx.stack} ({ctx.region}): Route53 query log in {DNSSEC_REGION}",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=pulumi.Output.all(ctx.partition, ctx.account_id).apply(
                lambda a: policies.stack_key_policy(a[0], a[1], DNSSEC_REGION)),
            region=DNSSEC_REGION, opts=pulumi.ResourceOptions(parent=self))
        return key.arn


@dataclass(frozen=True)
class AliasTarget:
    """Where the site's A alias record points: a runtime's load balancer, App Runner's custom
    domain target, a CloudFront distribution. Each runtime exposes one as `site_alias`."""

    dns_name: pulumi.Output[str]
    hosted_zone_id: pulumi.Output[str]
    evaluate_target_health: bool = False


@dataclass(frozen=True)
class SiteRecordArgs:
    zone_id: pulumi.Input[str]
    fqdn: str
    target: AliasTarget


class SiteRecord(pulumi.ComponentResource):
    """The single A alias record for the FQDN. It has one URN whatever runs the site, so a
    runtime switch is an in-place update of the alias target (an UPSERT), never a second record
    whose later delete would remove the live name."""

    fqdn: str

    def __init__(self, name: str, args: SiteRecordArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:dns:SiteRecord", name, None, opts)
        self.fqdn = args.fqdn
        aws.route53.Record(
            f"{name}-site", zone_id=args.zone_id, name=args.fqdn, type="A",
            aliases=[{"name": args.target.dns_name, "zone_id": args.target.hosted_zone_id,
                      "evaluate_target_health": args.target.evaluate_target_health}],
            # Never take over a record this stack did not create (an organisation's apex A
            # record, say): Route53 refuses the create instead, and `pulumi destroy` can then
            # only ever delete what this stack made (docs/domains.md).
            allow_overwrite=False,
            opts=pulumi.ResourceOptions(parent=self, aliases=previous_owner_aliases(name)))
        self.register_outputs({"fqdn": self.fqdn})


def previous_owner_aliases(name: str, owners: Sequence[str] = PREVIOUS_SITE_RECORD_OWNERS) -> list[pulumi.Alias]:
    """The record's URNs under its former owners (the runtime components named `name`)."""
    return [pulumi.Alias(parent=pulumi.create_urn(name, owner)) for owner in owners]
