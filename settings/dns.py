"""DNS settings: the delegation-only stack (`nsDelegation`)."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import Problem, _LABELS_RE, _STACK_REF_RE, _Model, parse_dns_name


class DelegationRecord(_Model):
    name: str
    name_servers: Optional[tuple[str, ...]] = Field(None, alias="nameServers")
    from_stack: Optional[str] = Field(None, alias="fromStack")

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> str:
        if not _LABELS_RE.match(str(v).lower()):
            raise Problem("the record name inside the zone (one or more labels)", "redcap")
        return str(v).lower()

    @field_validator("name_servers", mode="before")
    @classmethod
    def _servers(cls, v: Any) -> Optional[tuple[str, ...]]:
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not v:
            raise Problem("a non-empty list of name servers", "[ns-1.awsdns-01.org, ns-2.awsdns-02.com]")
        return tuple(parse_dns_name(str(s)) for s in v)

    @field_validator("from_stack", mode="before")
    @classmethod
    def _stack(cls, v: Any) -> Optional[str]:
        if v is not None and not _STACK_REF_RE.match(str(v)):
            raise Problem("a fully qualified stack name org/project/stack", "acme/redcap/prod")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> "DelegationRecord":
        if (self.name_servers is None) == (self.from_stack is None):
            raise Problem("exactly one of nameServers or fromStack",
                          "{name: redcap, fromStack: acme/redcap/prod}")
        return self


class NsDelegation(_Model):
    domain: str
    records: tuple[DelegationRecord, ...]

    _domain = field_validator("domain", mode="before")(lambda v: parse_dns_name(str(v)))

    @field_validator("records", mode="before")
    @classmethod
    def _records(cls, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not v:
            raise Problem("a non-empty list of {name, nameServers | fromStack}",
                          "[{name: redcap, fromStack: acme/redcap/prod}]")
        return v


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "domain": "Domain of the site; FQDN = `subdomain.domain`, or `domain` alone.",
    "subdomain": "Label(s) placed before `domain`.",
    "hostInRoute53": "`true`: create a hosted zone for the FQDN; a zone name: use that existing zone; `false`: no Route53 (docs/domains.md).",
    "zoneDelegated": "With `hostInRoute53: true` (required there, nowhere else): `false` until the FQDN is delegated to the exported `nameServers` (the first `pulumi up` creates only the zone), then `true` (certificate, custom domain and site record follow).",
    "dnssec": "For a zone this stack creates: `true` signs it with DNSSEC (KMS key and key-signing key in us-east-1; the DS record is written into the parent zone when the stack writes the delegation, otherwise exported as `dsRecord` for the parent's operator), `dsWithdrawn` keeps signing but removes the DS (first step of turning it off), `false` unsigned (docs/domains.md).",
    "dnsQueryLogging": "For a zone this stack creates: `true` logs every DNS query Route53 answers for it to the CloudWatch log group `/aws/route53/<fqdn>` in us-east-1 (exported as `dnsQueryLogGroup`).",
    "nsDelegation": "Present: this stack only writes NS delegation records (docs/domains.md).",
    "nsDelegation.domain": "The existing hosted zone that receives the NS records.",
    "nsDelegation.records": "`[{name, nameServers: [...]}]` or `[{name, fromStack: org/project/stack}]`.",
}
