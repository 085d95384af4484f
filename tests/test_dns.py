"""Domain (issue 3): the four hostInRoute53 modes, the delegation record, ACM validation."""
from __future__ import annotations

from typing import Any

import pytest

import harness
from components import dns

ZONE = "aws:route53/zone:Zone"
RECORD = "aws:route53/record:Record"
CERT = "aws:acm/certificate:Certificate"
CERT_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
GET_ZONE = "aws:route53/getZone:getZone"
# dev has no domain (Express); prod is ECS (which asks for a certificate); without ecs, App Runner.
NO_ECS: dict[str, Any] = {"ecs": None}


def run_with_zone_lookups(stack: str, overrides: dict[str, Any]) -> tuple[harness.StackRun, list[dict]]:
    lookups: list[dict] = []

    def get_zone(args: dict) -> dict:
        lookups.append(args)
        return {"zoneId": "ZPARENT", "id": "ZPARENT", "name": args["name"], "nameServers": ["ns-p.example"]}

    return harness.run_program(stack, overrides, call_overrides={GET_ZONE: get_zone}), lookups


def names_in_zone(run: harness.StackRun, zone_id: str) -> set[tuple[str, str]]:
    """(name, type) of every record written into one zone."""
    return {(r.inputs["name"], r.inputs["type"]) for r in run.of_type(RECORD) if r.inputs["zoneId"] == zone_id}


@pytest.mark.parametrize("host, subdomain, mode", [
    (True, None, "new-zone"), (True, "redcap", "new-zone"), ("example.org", None, "existing-zone"),
    ("example.org", "redcap", "delegated-zone"), (False, None, "none"), (False, "redcap", "none"),
])
def test_zone_mode(host: bool | str, subdomain: str | None, mode: str) -> None:
    assert dns.zone_mode(host, subdomain) == mode


def test_new_zone_for_domain() -> None:
    run, lookups = run_with_zone_lookups("dev", {"domain": "redcap.example.org", "hostInRoute53": True})
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"
    assert lookups == []
    assert not [r for r in run.of_type(RECORD) if r.inputs["type"] == "NS"]
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])
    assert run.outputs["domainName"] == "redcap.example.org"
    # SES records of the site go inside the new zone, under the FQDN.
    names = names_in_zone(run, zone.outputs["zoneId"])
    assert {("mail.redcap.example.org", "MX"), ("mail.redcap.example.org", "TXT")} <= names


def test_new_zone_for_subdomain_prod() -> None:
    run, lookups = run_with_zone_lookups("prod", {})
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"  # not example.org (upstream #16)
    assert lookups == []
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])
    assert all(r.inputs["zoneId"] == zone.outputs["zoneId"] for r in run.of_type(RECORD))
    assert all(r.inputs["name"].rstrip(".").endswith("redcap.example.org") for r in run.of_type(RECORD))


def test_existing_zone_records_at_fqdn_inside_it() -> None:
    run, lookups = run_with_zone_lookups(
        "prod", {"domain": "research.example.org", "subdomain": None, "hostInRoute53": "example.org"})
    assert run.of_type(ZONE) == []
    assert [(a["name"], a.get("privateZone")) for a in lookups] == [("example.org", False)]
    assert "nameServers" not in run.outputs
    names = names_in_zone(run, "ZPARENT")
    assert ("mail.research.example.org", "MX") in names
    assert ("_0a1b2c3d.research.example.org.", "CNAME") in names  # ACM validation for the ECS certificate
    assert all(n.rstrip(".").endswith("research.example.org") for n, _ in names)  # the org's own names untouched


def test_zone_name_with_subdomain_creates_delegated_child() -> None:
    run, lookups = run_with_zone_lookups("prod", {"hostInRoute53": "example.org"})
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"
    assert [a["name"] for a in lookups] == ["example.org"]
    delegation = run.one(RECORD, "delegation")
    assert delegation.inputs == {"zoneId": "ZPARENT", "name": "redcap.example.org", "type": "NS",
                                 "ttl": 172800, "records": sorted(zone.outputs["nameServers"])}
    # Only the delegation goes into the parent zone; everything else into the child.
    assert names_in_zone(run, "ZPARENT") == {("redcap.example.org", "NS")}
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])


def test_no_route53() -> None:
    run, lookups = run_with_zone_lookups("prod", {"hostInRoute53": False, "bounceNotificationEmail": None, **NO_ECS})
    assert run.of_type(ZONE) == [] and run.of_type(RECORD) == [] and run.of_type(CERT) == []
    assert lookups == []
    assert "nameServers" not in run.outputs
    assert run.outputs["domainName"] == "redcap.example.org"


def test_no_domain_no_domain_component() -> None:
    run = harness.run_program("dev")
    assert [r for r in run.resources if r.type == "redcap:dns:Domain"] == []
    assert "domainName" not in run.outputs


def test_certificate_dns_validated_in_zone() -> None:
    run = harness.run_program("prod")
    cert = run.one(CERT)
    assert cert.inputs["domainName"] == "redcap.example.org"
    assert cert.inputs["validationMethod"] == "DNS"
    option = cert.outputs["domainValidationOptions"][0]
    record = run.one(RECORD, "certificate-validation")
    assert record.inputs["zoneId"] == run.one(ZONE).outputs["zoneId"]
    assert (record.inputs["name"], record.inputs["type"], record.inputs["records"]) == (
        option["resourceRecordName"], option["resourceRecordType"], [option["resourceRecordValue"]])
    validation = run.one(CERT_VALIDATION)
    assert validation.inputs["certificateArn"] == cert.outputs["arn"]
    assert validation.inputs["validationRecordFqdns"] == [record.outputs["fqdn"]]


def test_no_certificate_for_app_runner_or_given_arn() -> None:
    app_runner = harness.run_program("prod", NO_ECS)
    assert app_runner.of_type(CERT) == []
    given = harness.run_program("prod", {"ecs": {"cpu": "2 vCPU", "memory": "4 GB", "certificateArn":
                                                 "arn:aws:acm:us-east-1:123456789012:certificate/"
                                                 "0a1b2c3d-1111-2222-3333-444455556666"}})
    assert given.of_type(CERT) == []
