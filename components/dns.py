"""Domain: the Route53 zone that holds the site's name (four `hostInRoute53` modes), the
delegation from a parent zone, and a DNS-validated ACM certificate for the FQDN.

| hostInRoute53 | subdomain | zone of the FQDN                          | extra                          |
|---------------|-----------|-------------------------------------------|--------------------------------|
| true          | -         | new zone <domain>                         | export nameServers             |
| true          | set       | new zone <subdomain>.<domain>             | export nameServers             |
| '<zone>'      | -         | existing zone <zone> (looked up)          | records at <domain> inside it  |
| '<zone>'      | set       | new zone <subdomain>.<domain>             | NS delegation in <zone>; nameServers |
| false         | any       | none                                      | everything by hand             |

Unlike the original (which wrote every record at the zone apex, upstream #16), whoever writes a
record for the site writes it at `fqdn` inside `zone_id`. This component writes no site record:
App Runner / ECS write their own alias or CNAME records there; the Express runtime hands its
distribution over as an `AliasTarget` for `SiteRecord`. docs/domains.md explains each mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws

# CDK's ZoneDelegationRecord default (2 days), as the original: NS records of a delegation
# change only when the child zone is recreated.
DELEGATION_TTL = 172800
VALIDATION_TTL = 300

ZoneMode = Literal["new-zone", "existing-zone", "delegated-zone", "none"]


def zone_mode(host_in_route53: bool | str, subdomain: Optional[str]) -> ZoneMode:
    """Which of the four modes a setting combination means."""
    if host_in_route53 is False:
        return "none"
    if host_in_route53 is True:
        return "new-zone"
    return "delegated-zone" if subdomain else "existing-zone"


def fqdn_of(domain: str, subdomain: Optional[str]) -> str:
    return f"{subdomain}.{domain}" if subdomain else domain


@dataclass(frozen=True)
class AliasTarget:
    """What the site's A alias record points at: a runtime's load balancer or distribution."""

    dns_name: pulumi.Output[str]
    hosted_zone_id: pulumi.Output[str]


@dataclass(frozen=True)
class DomainArgs:
    domain: str
    subdomain: Optional[str]
    host_in_route53: bool | str
    # Where a DNS-validated ACM certificate for the FQDN is created: None = none (App Runner makes
    # its own), the stack's region for an ALB (ECS), us-east-1 for CloudFront (Express).
    certificate_region: Optional[str] = None
    # The stack's region: a certificate elsewhere is created through the resource's own `region`.
    stack_region: Optional[str] = None


class Domain(pulumi.ComponentResource):
    fqdn: str
    mode: ZoneMode
    zone_name: Optional[str]
    zone_id: Optional[pulumi.Output[str]]
    name_servers: Optional[pulumi.Output[list[str]]]
    certificate_arn: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: DomainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:dns:Domain", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.fqdn = fqdn_of(args.domain, args.subdomain)
        self.mode = zone_mode(args.host_in_route53, args.subdomain)
        self.zone_id = None
        self.zone_name = None
        self.name_servers = None
        self.certificate_arn = None

        if self.mode in ("new-zone", "delegated-zone"):
            zone = aws.route53.Zone(
                f"{name}-zone", name=self.fqdn, comment=f"REDCap {self.fqdn} (managed by Pulumi)",
                opts=child)
            self.zone_id = zone.zone_id
            self.zone_name = self.fqdn
            self.name_servers = zone.name_servers.apply(sorted)
            if self.mode == "delegated-zone":
                parent = aws.route53.get_zone_output(name=str(args.host_in_route53), private_zone=False)
                aws.route53.Record(
                    f"{name}-delegation", zone_id=parent.zone_id, name=self.fqdn, type="NS",
                    ttl=DELEGATION_TTL, records=self.name_servers, opts=child)
        elif self.mode == "existing-zone":
            existing = aws.route53.get_zone_output(name=str(args.host_in_route53), private_zone=False)
            self.zone_id = existing.zone_id
            self.zone_name = str(args.host_in_route53)

        if args.certificate_region is not None:
            if self.zone_id is None:
                raise ValueError("a DNS-validated certificate needs a Route53 zone (hostInRoute53 true or a zone name)")
            where = {"region": args.certificate_region} if args.certificate_region != args.stack_region else {}
            self.certificate_arn = self._certificate(name, self.zone_id, child, where)

        self.register_outputs({
            "fqdn": self.fqdn,
            "zoneId": self.zone_id,
            "nameServers": self.name_servers,
            "certificateArn": self.certificate_arn,
        })

    def _certificate(self, name: str, zone_id: pulumi.Output[str], child: pulumi.ResourceOptions,
                     where: dict[str, str]) -> pulumi.Output[str]:
        cert = aws.acm.Certificate(
            f"{name}-certificate", domain_name=self.fqdn, validation_method="DNS", key_algorithm="RSA_2048",
            **where, opts=child)
        # One name, no SANs: exactly one validation option.
        option = cert.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            f"{name}-certificate-validation-record", zone_id=zone_id,
            name=option.apply(lambda o: o.resource_record_name),
            type=option.apply(lambda o: o.resource_record_type),
            records=[option.apply(lambda o: o.resource_record_value)],
            ttl=VALIDATION_TTL,
            # ACM asks for the same CNAME again when the certificate is replaced.
            allow_overwrite=True,
            opts=child)
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validation", certificate_arn=cert.arn, validation_record_fqdns=[record.fqdn],
            **where, opts=child)
        return validation.certificate_arn


@dataclass(frozen=True)
class SiteRecordArgs:
    zone_id: pulumi.Input[str]
    fqdn: str
    target: AliasTarget


class SiteRecord(pulumi.ComponentResource):
    """The site's A alias record, pointing at whatever runtime serves the FQDN."""

    fqdn: str

    def __init__(self, name: str, args: SiteRecordArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:dns:SiteRecord", name, None, opts)
        self.fqdn = args.fqdn
        # No allow_overwrite: an existing record of that name is the organisation's, not ours.
        aws.route53.Record(
            f"{name}-alias", zone_id=args.zone_id, name=args.fqdn, type="A",
            aliases=[{"name": args.target.dns_name, "zone_id": args.target.hosted_zone_id,
                      "evaluate_target_health": False}],
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"fqdn": self.fqdn})
