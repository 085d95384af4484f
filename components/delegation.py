"""NsDelegation: the delegation-only stack (the original's `route53NS` stage).

Deployed with the credentials of the account that owns the parent zone (often another AWS
account). It writes nothing but NS records `<name>.<domain>` in the existing zone `<domain>`,
with name servers given explicitly or read from another stack's `nameServers` output through a
StackReference, so nobody copies name servers by hand (docs/domains.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import pulumi
import pulumi_aws as aws

# The original's NsRecord default TTL.
NS_TTL = 1800
# Output of an application stack that lists its zone's name servers (see __main__.py).
NAME_SERVERS_OUTPUT = "nameServers"


class DelegatedName(Protocol):
    """One delegation (settings.DelegationRecord has this shape): `name` (labels inside the
    zone) and exactly one source of name servers."""

    @property
    def name(self) -> str: ...
    @property
    def name_servers(self) -> Optional[tuple[str, ...]]: ...
    @property
    def from_stack(self) -> Optional[str]: ...


@dataclass(frozen=True)
class NsDelegationArgs:
    domain: str
    records: Sequence[DelegatedName]


def record_name(label: str, domain: str) -> str:
    return f"{label}.{domain}"


def logical_name(label: str) -> str:
    return f"ns-{label.replace('.', '-')}"


class NsDelegation(pulumi.ComponentResource):
    delegated_names: list[str]

    def __init__(self, name: str, args: NsDelegationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:delegation:NsDelegation", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.get_zone_output(name=args.domain, private_zone=False)
        # One reference per stack, even when several records read the same one.
        references: dict[str, pulumi.StackReference] = {}
        for record in args.records:
            if record.from_stack and record.from_stack not in references:
                references[record.from_stack] = pulumi.StackReference(record.from_stack, opts=child)
        for record in args.records:
            aws.route53.Record(
                f"{name}-{logical_name(record.name)}", zone_id=zone.zone_id,
                name=record_name(record.name, args.domain), type="NS", ttl=NS_TTL,
                records=self._servers(record, references), opts=child)
        self.delegated_names = sorted(record_name(r.name, args.domain) for r in args.records)
        self.register_outputs({"delegatedNames": self.delegated_names})

    @staticmethod
    def _servers(record: DelegatedName,
                 references: dict[str, pulumi.StackReference]) -> pulumi.Input[Sequence[str]]:
        if record.name_servers is not None:
            return sorted(record.name_servers)
        if record.from_stack is None:
            raise ValueError(f"delegation {record.name}: give nameServers or fromStack")
        return references[record.from_stack].require_output(NAME_SERVERS_OUTPUT).apply(
            lambda servers: sorted(servers))
