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
