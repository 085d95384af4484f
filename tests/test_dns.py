"""Domain and SiteRecord (components/dns.py): the four hostInRoute53 modes, the two phases of a
new zone (`zoneDelegated`), the delegation record, ACM validation, the one site record and which
records may overwrite an existing one."""
from __future__ import annotations

import json
from typing import Any

import pytest

import harness
import transitions
from components import dns
from settings import SettingsError, load_settings
from variants import IDS, VARIANTS

ZONE = "aws:route53/zone:Zone"
RECORD = "aws:route53/record:Record"
CERT = "aws:acm/certificate:Certificate"
CERT_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
ASSOCIATION = "aws:apprunner/customDomainAssociation:CustomDomainAssociation"
SITE_RECORD = "redcap:dns:SiteRecord"
GET_ZONE = "aws:route53/getZone:getZone"
CERT_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
# dev has no domain (Express); prod is ECS with a new zone, committed as phase one.
NO_ECS: dict[str, Any] = {"ecs": None}
DELEGATED: dict[str, Any] = {"zoneDelegated": True}
# Modes other than `true` take no zoneDelegated (prod's file carries one).
NO_NEW_ZONE: dict[str, Any] = {"zoneDelegated": None}
# prod signs and logs the zone it creates; a stage without such a zone sets neither.
NOT_OUR_ZONE: dict[str, Any] = {**NO_NEW_ZONE, "dnssec": None, "dnsQueryLogging": None}
# What waits for a name in the zone to resolve, and what serves the site.
WAITS_FOR_DNS = {CERT_VALIDATION, ASSOCIATION}
SERVES_THE_SITE = {"aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener", "aws:ecs/service:Service",
                   SITE_RECORD, ASSOCIATION}


def run_with_zone_lookups(stack: str, overrides: dict[str, Any]) -> tuple[harness.StackRun, list[dict]]:
    lookups: list[dict] = []

    def get_zone(args: dict) -> dict:
        lookups.append(args)
        return {"zoneId": "ZPARENT", "id": "ZPARENT", "name": args["name"], "nameServers": ["ns-p.example"]}

    return harness.run_program(stack, overrides, call_overrides={GET_ZONE: get_zone}), lookups


def names_in_zone(run: harness.StackRun, zone_id: str) -> set[tuple[str, str]]:
    """(name, type) of every record written into one zone."""
    return {(r.inputs["name"], r.inputs["type"]) for r in run.of_type(RECORD) if r.inputs["zoneId"] == zone_id}


def problems(**values: Any) -> str:
    base = {"redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "email": "redcap-admin@example.org"}
    raw = {f"redcap:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in {**base, **values}.items()}
    with pytest.raises(SettingsError) as err:
        load_settings(raw, stack="test", region="us-east-1")
    return str(err.value)


@pytest.mark.parametrize("host, subdomain, mode", [
    (True, None, "new-zone"), (True, "redcap", "new-zone"), ("example.org", None, "existing-zone"),
    ("example.org", "redcap", "delegated-zone"), (False, None, "none"), (False, "redcap", "none"),
])
def test_zone_mode(host: bool | str, subdomain: str | None, mode: str) -> None:
    assert dns.zone_mode(host, subdomain) == mode


@pytest.mark.parametrize("mode, delegated, ready", [
    ("new-zone", False, False), ("new-zone", True, True), ("existing-zone", False, True),
    ("delegated-zone", False, True), ("none", False, True),
])
def test_only_a_zone_somebody_else_delegates_waits(mode: dns.ZoneMode, delegated: bool, ready: bool) -> None:
    assert dns.is_ready(mode, delegated) is ready


# --- redcap:zoneDelegated -------------------------------------------------------------------

def test_zone_delegated_is_required_for_a_zone_the_stack_creates() -> None:
    text = problems(domain="example.org", subdomain="redcap", hostInRoute53=True)
    assert ("redcap:zoneDelegated = null: allowed: required with hostInRoute53: true - false for the first "
            "`pulumi up` of a new zone (it creates the zone and exports nameServers; delegate the FQDN to them), "
            "true once that delegation is in place and for a stage that already serves its site "
            "(docs/domains.md); example: pulumi config set redcap:zoneDelegated false") in text
    # hostInRoute53 defaults to true: a bare domain is a new zone too.
    assert "redcap:zoneDelegated = null: allowed: required" in problems(domain="example.org")
    assert "allowed: true or false" in problems(domain="example.org", zoneDelegated="soon")


@pytest.mark.parametrize("values", [
    {"domain": "example.org", "hostInRoute53": "example.org"},
    {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org"},
    {"domain": "example.org", "hostInRoute53": False},
    {"hostInRoute53": True},
])
def test_zone_delegated_is_refused_where_nothing_waits_for_a_delegation(values: dict[str, Any]) -> None:
    assert ("redcap:zoneDelegated = true: allowed: only together with redcap:domain and hostInRoute53: true "
            "(a zone this stack creates and somebody else delegates); an existing zone is live already, a "
            "child zone is delegated by the stack itself, and false has no zone; "
            "example: pulumi config rm redcap:zoneDelegated") in problems(**values, zoneDelegated=True)


def test_upgrading_a_running_stage_stops_before_anything_changes() -> None:
    """A stage deployed before zoneDelegated existed already serves its site from a new zone:
    the upgraded program refuses it until the operator says so, instead of deleting the
    certificate, the ECS service and the site record as phase one would."""
    with pytest.raises(SettingsError, match="redcap:zoneDelegated = null: allowed: required"):
        harness.run_program("prod", NO_NEW_ZONE)


# --- phase one: a new zone nobody has delegated yet -------------------------------------------

def test_phase_one_ecs_creates_the_zone_exports_name_servers_and_waits_for_nothing() -> None:
    run = harness.run_program("prod")  # committed with zoneDelegated: false
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"  # not example.org (upstream #16)
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])
    assert run.outputs["domainName"] == "redcap.example.org"
    assert not run.types() & (WAITS_FOR_DNS | {CERT})
    # No certificate means no HTTPS listener, and REDCap is never served over plain HTTP.
    assert not run.types() & SERVES_THE_SITE
    # cron would call a name that does not resolve (the credential rotation's own schedule is not cron)
    assert not [r for r in run.of_type("aws:cloudwatch/eventRule:EventRule") if "redcap:cron:Cron" in r.urn]
    assert "siteUrl" not in run.outputs and "customServiceUrl" not in run.outputs
    # The data and the image are built in phase one already.
    assert run.one("aws:rds/cluster:Cluster") and run.outputs["imageUri"]
    # Only SES records go into the new zone; they wait for nothing at create time.
    assert all(r.inputs["zoneId"] == zone.outputs["zoneId"] for r in run.of_type(RECORD))
    assert {r.inputs["name"] for r in run.of_type(RECORD)} <= {"mail.redcap.example.org", *(
        f"{t}._domainkey.redcap.example.org" for t in ("tokenaaa1111", "tokenbbb2222", "tokenccc3333"))}


def test_phase_one_app_runner_serves_its_own_url_without_the_custom_domain() -> None:
    run = harness.run_program("dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                      "zoneDelegated": False, "cronMinutes": 5, "express": None})
    assert not run.types() & (WAITS_FOR_DNS | {CERT, SITE_RECORD})
    assert not [r for r in run.of_type(RECORD) if "domain-validation" in r.name]
    assert run.outputs["siteUrl"] == run.outputs["appRunnerServiceUrl"]
    assert "customServiceUrl" not in run.outputs
    assert run.outputs["nameServers"] == sorted(run.one(ZONE).outputs["nameServers"])
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert destination.inputs["invocationEndpoint"].startswith(run.outputs["appRunnerServiceUrl"])


def test_phase_one_express_serves_its_distribution_name_without_the_custom_domain() -> None:
    run = harness.run_program("dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True,
                                      "zoneDelegated": False})
    assert not run.types() & (WAITS_FOR_DNS | {CERT, SITE_RECORD})
    distribution = run.one("aws:cloudfront/distribution:Distribution")
    assert not distribution.inputs.get("aliases")  # CloudFront's own name and certificate only
    assert run.outputs["siteUrl"] == run.outputs["cloudFrontUrl"] and "customServiceUrl" not in run.outputs
    assert run.outputs["nameServers"]
    delegated = harness.run_program("dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True,
                                            "zoneDelegated": True})
    assert delegated.one("aws:cloudfront/distribution:Distribution").inputs["aliases"] == ["redcap-dev.example.org"]
    assert delegated.named("redcap-site").inputs["aliases"][0]["name"] == delegated.outputs["cloudFrontUrl"].removeprefix(
        "https://")


def test_the_delegation_stack_reads_the_name_servers_phase_one_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first `pulumi up` of the application stack finishes, so its nameServers output exists
    when the delegation stack (in the parent zone's account) reads it."""
    app = harness.run_program("prod")
    monkeypatch.setattr(harness, "stack_reference_outputs", lambda name: dict(app.outputs))
    delegation = harness.run_program("dev", {"nsDelegation": {"domain": "example.org", "records": [
        {"name": "redcap", "fromStack": "acme/redcap/prod"}]}, "redCapS3Path": None, "email": None})
    record = delegation.one(RECORD)
    assert (record.inputs["name"], record.inputs["type"]) == ("redcap.example.org", "NS")
    assert record.inputs["records"] == app.outputs["nameServers"]


# --- phase two and the modes that are ready at once -------------------------------------------

def test_phase_two_ecs_certificate_dns_validated_in_the_zone() -> None:
    run = harness.run_program("prod", DELEGATED)
    cert = run.one(CERT)
    assert cert.inputs["domainName"] == "redcap.example.org"
    assert cert.inputs["validationMethod"] == "DNS" and "region" not in cert.inputs  # the stack's region
    option = cert.outputs["domainValidationOptions"][0]
    record = run.one(RECORD, "certificate-validation")
    assert record.inputs["zoneId"] == run.one(ZONE).outputs["zoneId"]
    assert (record.inputs["name"], record.inputs["type"], record.inputs["records"]) == (
        option["resourceRecordName"], option["resourceRecordType"], [option["resourceRecordValue"]])
    validation = run.one(CERT_VALIDATION)
    assert validation.inputs["certificateArn"] == cert.outputs["arn"]
    assert validation.inputs["validationRecordFqdns"] == [record.outputs["fqdn"]]
    site = run.named("redcap-site")
    assert (site.inputs["name"], site.inputs["type"]) == ("redcap.example.org", "A")
    assert run.outputs["siteUrl"] == "https://redcap.example.org"


def test_new_zone_for_domain_holds_every_record_of_the_site() -> None:
    run, lookups = run_with_zone_lookups("dev", {"domain": "redcap.example.org", "hostInRoute53": True,
                                                 "zoneDelegated": True})
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"
    assert lookups == []
    assert not [r for r in run.of_type(RECORD) if r.inputs["type"] == "NS"]
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])
    names = names_in_zone(run, zone.outputs["zoneId"])
    assert {("mail.redcap.example.org", "MX"), ("mail.redcap.example.org", "TXT"), ("redcap.example.org", "A")} <= names
    assert names == {(r.inputs["name"], r.inputs["type"]) for r in run.of_type(RECORD)}


def test_existing_zone_records_at_fqdn_inside_it() -> None:
    run, lookups = run_with_zone_lookups(
        "prod", {"domain": "research.example.org", "subdomain": None, "hostInRoute53": "example.org", **NOT_OUR_ZONE})
    assert run.of_type(ZONE) == []
    assert [(a["name"], a.get("privateZone")) for a in lookups] == [("example.org", False)]
    assert "nameServers" not in run.outputs
    names = names_in_zone(run, "ZPARENT")
    assert ("mail.research.example.org", "MX") in names
    assert ("_0a1b2c3d.research.example.org.", "CNAME") in names  # ACM validation for the ECS certificate
    assert ("research.example.org", "A") in names  # an existing zone is live: the site is served at once
    assert all(n.rstrip(".").endswith("research.example.org") for n, _ in names)  # the org's own names untouched


def test_existing_zone_apex_gets_the_alias_and_takes_over_nothing() -> None:
    run, _ = run_with_zone_lookups("prod", {"domain": "example.org", "subdomain": None,
                                            "hostInRoute53": "example.org", **NOT_OUR_ZONE, **NO_ECS})
    site = run.named("redcap-site")
    assert (site.inputs["zoneId"], site.inputs["name"], site.inputs["type"]) == ("ZPARENT", "example.org", "A")
    assert site.inputs["allowOverwrite"] is False


def test_zone_name_with_subdomain_creates_delegated_child_and_validates_after_the_delegation() -> None:
    run, lookups = run_with_zone_lookups("prod", {"hostInRoute53": "example.org", **NO_NEW_ZONE})
    zone = run.one(ZONE)
    assert zone.inputs["name"] == "redcap.example.org"
    assert [a["name"] for a in lookups] == ["example.org"]
    delegation = run.one(RECORD, "delegation")
    assert delegation.inputs == {"zoneId": "ZPARENT", "name": "redcap.example.org", "type": "NS",
                                 "ttl": 172800, "records": sorted(zone.outputs["nameServers"])}
    # Only the delegation (and, as prod signs its zone, the DS record) goes into the parent zone;
    # everything else into the child.
    assert names_in_zone(run, "ZPARENT") == {("redcap.example.org", "NS"), ("redcap.example.org", "DS")}
    assert run.outputs["nameServers"] == sorted(zone.outputs["nameServers"])
    # Ready in one `pulumi up`: ACM looks the CNAME up through the parent, so it waits for the NS record.
    assert delegation.urn in run.one(CERT_VALIDATION).dependencies
    assert run.named("redcap-site").inputs["zoneId"] == zone.outputs["zoneId"]


def test_no_route53() -> None:
    run, lookups = run_with_zone_lookups("prod", {"hostInRoute53": False, "bounceNotificationEmail": None,
                                                  **NOT_OUR_ZONE, **NO_ECS})
    assert run.of_type(ZONE) == [] and run.of_type(RECORD) == [] and run.of_type(CERT) == []
    assert lookups == []
    assert "nameServers" not in run.outputs
    assert run.outputs["domainName"] == "redcap.example.org"
    ecs = harness.run_program("prod", {"hostInRoute53": False, "ecs": {"certificateArn": CERT_ARN},
                                       "bounceNotificationEmail": None, **NOT_OUR_ZONE})
    assert ecs.of_type("aws:ecs/service:Service") and not ecs.of_type(SITE_RECORD)  # DNS by hand


def test_no_domain_no_domain_component() -> None:
    run = harness.run_program("dev")
    assert [r for r in run.resources if r.type == "redcap:dns:Domain"] == []
    assert "domainName" not in run.outputs


def test_no_certificate_for_app_runner_or_given_arn() -> None:
    app_runner = harness.run_program("prod", {**NO_ECS, **DELEGATED})
    assert app_runner.of_type(CERT) == [] and app_runner.of_type(ASSOCIATION)
    given = harness.run_program("prod", {**DELEGATED, "ecs": {"cpu": "2 vCPU", "memory": "4 GB",
                                                              "certificateArn": CERT_ARN}})
    assert given.of_type(CERT) == []
    assert given.one("aws:lb/listener:Listener", "https").inputs["certificateArn"] == CERT_ARN


def test_a_certificate_in_another_region_is_managed_there(tmp_path) -> None:
    """certificate_region (CloudFront needs us-east-1): the certificate and its validation carry
    that region; the records stay in the (global) zone."""
    (tmp_path / "Pulumi.yaml").write_text("name: redcap\nruntime: python\n")
    (tmp_path / "Pulumi.cdn.yaml").write_text("config:\n  aws:region: eu-west-1\n")
    (tmp_path / "__main__.py").write_text(
        "from components.dns import Domain, DomainArgs\n"
        "Domain('redcap', DomainArgs(domain='example.org', subdomain='redcap', host_in_route53='example.org',\n"
        "       stack_region='eu-west-1', certificate_region='us-east-1'))\n")
    run = harness.run_program("cdn", root=tmp_path)
    assert run.one(CERT).inputs["region"] == "us-east-1"
    assert run.one(CERT_VALIDATION).inputs["region"] == "us-east-1"
    assert "region" not in run.one(RECORD, "certificate-validation").inputs


# --- one owner of the site record; overwriting only what ACM re-asks for -----------------------

def test_the_site_record_has_one_urn_and_answers_to_its_former_ones() -> None:
    def site(overrides: dict[str, Any]) -> harness.Recorded:
        return transitions.engine_view(harness.cached_run("prod", overrides)).named("redcap-site", RECORD)

    ecs = site(DELEGATED)
    assert ecs.urn == "urn:pulumi:prod::redcap::redcap:dns:SiteRecord$aws:route53/record:Record::redcap-site"
    assert ecs.aliases == [
        "urn:pulumi:prod::redcap::redcap:apprunner:AppRunnerService$aws:route53/record:Record::redcap-site",
        "urn:pulumi:prod::redcap::redcap:ecs:FargateService$aws:route53/record:Record::redcap-site",
    ]
    for other in ({**DELEGATED, **NO_ECS}, {**DELEGATED, **NO_ECS, "express": {}}):
        assert (site(other).urn, site(other).aliases) == (ecs.urn, ecs.aliases)


@pytest.mark.parametrize("variant_id, stack, overrides", VARIANTS, ids=IDS)
def test_exactly_one_resource_owns_the_site_name(variant_id: str, stack: str, overrides: dict[str, Any]) -> None:
    run = harness.cached_run(stack, overrides)
    fqdn = run.outputs.get("domainName")
    owners = [r for r in run.of_type(RECORD) if fqdn and r.inputs["name"].rstrip(".") == fqdn
              and r.inputs["type"] in ("A", "AAAA", "CNAME")]
    assert len(owners) <= 1, [r.urn for r in owners]
    for record in owners:
        assert record.parent == run.one(SITE_RECORD).urn


@pytest.mark.parametrize("variant_id, stack, overrides", VARIANTS, ids=IDS)
def test_only_acm_validation_cnames_may_overwrite(variant_id: str, stack: str, overrides: dict[str, Any]) -> None:
    run = harness.cached_run(stack, overrides)
    overwriting = [r for r in run.of_type(RECORD) if r.inputs.get("allowOverwrite")]
    acm = [r for r in run.of_type(RECORD) if r.parent.endswith("redcap:dns:Domain::redcap")
           and r.name == "redcap-certificate-validation-record"]
    assert overwriting == acm
