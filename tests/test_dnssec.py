"""ZoneSecurity (components/dns.py): DNSSEC signing and Route53 query logging of the zone the
stack creates, on prod's stack file and its variants; the settings that allow them only there;
and what `pulumi up` does when DNSSEC is turned on and, in two steps, off (tests/transitions.py).
"""
from __future__ import annotations

import json
from typing import Any

import pytest

import harness
from components import dns
from test_dns import NOT_OUR_ZONE, names_in_zone, problems, run_with_zone_lookups
from transitions import run_transition

KEY = "aws:kms/key:Key"
KSK = "aws:route53/keySigningKey:KeySigningKey"
SIGNING = "aws:route53/hostedZoneDnsSec:HostedZoneDnsSec"
RECORD = "aws:route53/record:Record"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LOG_POLICY = "aws:cloudwatch/logResourcePolicy:LogResourcePolicy"
QUERY_LOG = "aws:route53/queryLog:QueryLog"
ZONE_SECURITY = "redcap:dns:ZoneSecurity"
ACCOUNT = harness.ACCOUNT_ID
ZONE_ID = "ZREDCAPZONE"  # the mock zone id of `redcap-zone`
DS = f"40523 13 2 {'0a1b2c3d' * 8}"
OFF = {"dnssec": None, "dnsQueryLogging": None}
CHILD_ZONE = {"hostInRoute53": "example.org", "zoneDelegated": None}
OWN_TYPES = {KEY, KSK, SIGNING, RECORD, LOG_GROUP, LOG_POLICY, QUERY_LOG, ZONE_SECURITY}


def security_children(run: harness.StackRun) -> set[tuple[str, str]]:
    parent = run.one(ZONE_SECURITY)
    return {(r.type, r.name) for r in run.children_of(parent)}


def test_prod_logs_its_new_zone_from_phase_one_and_signs_it_from_phase_two() -> None:
    # Route53 refuses to sign a zone its parent does not delegate to yet (HostedZonePartiallyDelegated):
    # the first `pulumi up` of a new zone logs its queries but signs nothing.
    first = harness.run_program("prod")  # hostInRoute53 true, zoneDelegated false
    assert not first.of_type(KSK) and not first.of_type(SIGNING) and "dsRecord" not in first.outputs
    assert first.named("redcap-query-log", QUERY_LOG)
    run = harness.run_program("prod", {"zoneDelegated": True})
    zone_id = run.one("aws:route53/zone:Zone").outputs["zoneId"]
    key = run.named("redcap-dnssec-key", KEY)
    assert {k: key.inputs.get(k) for k in ("customerMasterKeySpec", "keyUsage", "deletionWindowInDays",
                                          "enableKeyRotation", "region")} == {
        "customerMasterKeySpec": "ECC_NIST_P256", "keyUsage": "SIGN_VERIFY", "deletionWindowInDays": 30,
        "enableKeyRotation": None, "region": None}  # prod runs in us-east-1: no region override
    assert json.loads(key.inputs["policy"]) == json.loads(dns.dnssec_key_policy("aws", ACCOUNT, zone_id))

    ksk = run.named("redcap-ksk", KSK)
    assert ksk.inputs == {"hostedZoneId": zone_id, "keyManagementServiceArn": key.outputs["arn"],
                          "name": "redcap_ksk", "status": "ACTIVE"}
    signing = run.named("redcap-dnssec", SIGNING)
    assert signing.inputs == {"hostedZoneId": zone_id, "signingStatus": "SIGNING"}
    assert ksk.urn in signing.dependencies
    # The stack does not write the parent's records here: the DS goes to the parent's operator.
    assert not [r for r in run.of_type(RECORD) if r.inputs["type"] == "DS"]
    assert run.outputs["dsRecord"] == DS

    group = run.named("redcap-query-logs", LOG_GROUP)
    assert group.inputs == {"name": "/aws/route53/redcap.example.org", "retentionInDays": 731,
                            "kmsKeyId": run.outputs["kmsKeyArn"]}  # the stack's key: prod is in us-east-1
    policy = run.named("redcap-query-logs-delivery", LOG_POLICY)
    assert policy.inputs["policyName"] == "redcap-prod-route53-query-logs"
    assert json.loads(policy.inputs["policyDocument"]) == json.loads(
        dns.query_log_policy(group.outputs["arn"], ACCOUNT, "aws", zone_id))
    query_log = run.named("redcap-query-log", QUERY_LOG)
    assert query_log.inputs == {"zoneId": zone_id, "cloudwatchLogGroupArn": group.outputs["arn"]}
    assert policy.urn in query_log.dependencies
    assert run.outputs["dnsQueryLogGroup"] == "/aws/route53/redcap.example.org"


def test_the_signing_key_policy_lets_route53_sign_for_this_zone_only() -> None:
    statements = {s["Sid"]: s for s in json.loads(dns.dnssec_key_policy("aws", "123456789012", "Z1"))["Statement"]}
    deputy = {"StringEquals": {"aws:SourceAccount": "123456789012"},
              "ArnLike": {"aws:SourceArn": "arn:aws:route53:::hostedzone/Z1"}}
    assert statements["Route53DnssecSigns"] == {
        "Sid": "Route53DnssecSigns", "Effect": "Allow", "Principal": {"Service": "dnssec-route53.amazonaws.com"},
        "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"], "Resource": "*", "Condition": deputy}
    assert statements["Route53DnssecGrantsForItself"]["Action"] == "kms:CreateGrant"
    assert statements["Route53DnssecGrantsForItself"]["Condition"] == {
        **deputy, "Bool": {"kms:GrantIsForAWSResource": True}}
    assert statements["AccountAdministersKeyThroughIam"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    query = json.loads(dns.query_log_policy("arn:aws:logs:us-east-1:123456789012:log-group:/aws/route53/x",
                                            "123456789012", "aws", "Z1"))["Statement"]
    assert query == [{"Sid": "Route53QueryLogsOfTheZone", "Effect": "Allow",
                      "Principal": {"Service": "route53.amazonaws.com"},
                      "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                      "Resource": ["arn:aws:logs:us-east-1:123456789012:log-group:/aws/route53/x",
                                   "arn:aws:logs:us-east-1:123456789012:log-group:/aws/route53/x:*"],
                      "Condition": deputy}]


def test_outside_us_east_1_the_key_and_the_log_group_live_in_us_east_1() -> None:
    run = harness.run_program("prod", {"aws:region": "eu-west-1", "zoneDelegated": True})
    assert run.named("redcap-dnssec-key", KEY).inputs["region"] == "us-east-1"
    group = run.named("redcap-query-logs", LOG_GROUP)
    assert group.inputs["region"] == "us-east-1"
    assert run.named("redcap-query-logs-delivery", LOG_POLICY).inputs["region"] == "us-east-1"
    # A log group can use a key of its own region only: one in us-east-1, rotating.
    log_key = run.named("redcap-query-log-key", KEY)
    assert (log_key.inputs["region"], log_key.inputs["enableKeyRotation"]) == ("us-east-1", True)
    assert group.inputs["kmsKeyId"] == log_key.outputs["arn"] != run.outputs["kmsKeyArn"]


def test_a_child_zone_gets_its_ds_record_in_the_parent_after_signing_starts() -> None:
    run, _ = run_with_zone_lookups("prod", CHILD_ZONE)
    ds = run.named("redcap-ds", RECORD)
    assert ds.inputs == {"zoneId": "ZPARENT", "name": "redcap.example.org", "type": "DS", "ttl": 3600,
                         "records": [DS]}
    signing = run.named("redcap-dnssec", SIGNING)
    assert signing.urn in ds.dependencies
    # Signing starts once the parent lists exactly the zone's name servers.
    assert run.named("redcap-delegation", RECORD).urn in signing.dependencies
    assert names_in_zone(run, "ZPARENT") == {("redcap.example.org", "NS"), ("redcap.example.org", "DS")}


def test_ds_withdrawn_keeps_signing_without_the_ds_record() -> None:
    run, _ = run_with_zone_lookups("prod", {**CHILD_ZONE, "dnssec": "dsWithdrawn"})
    assert run.named("redcap-dnssec", SIGNING).inputs["signingStatus"] == "SIGNING"
    assert names_in_zone(run, "ZPARENT") == {("redcap.example.org", "NS")}


def test_off_means_no_zone_security_at_all() -> None:
    run = harness.run_program("prod", OFF)
    assert run.of_type(ZONE_SECURITY) == [] and run.of_type(KSK) == [] and run.of_type(QUERY_LOG) == []
    assert "dsRecord" not in run.outputs and "dnsQueryLogGroup" not in run.outputs


@pytest.mark.parametrize("zone", [
    {"domain": "example.org", "hostInRoute53": "example.org"},
    {"domain": "redcap.example.org", "hostInRoute53": False},
], ids=["existing-zone", "no-route53"])
@pytest.mark.parametrize("key, value", [("dnssec", True), ("dnssec", "dsWithdrawn"), ("dnsQueryLogging", True)])
def test_only_a_zone_the_stack_creates_is_signed_or_logged(zone: dict[str, Any], key: str, value: Any) -> None:
    shown = "true" if value is True else f"'{value}'"
    assert (f"redcap:{key} = {shown}: allowed: only for a zone this stack creates (redcap:domain with "
            "hostInRoute53: true, or a zone name together with redcap:subdomain); an existing zone is signed and "
            f"logged by whoever manages it; example: pulumi config rm redcap:{key}") in problems(**zone, **{key: value})


def test_dnssec_value_is_checked() -> None:
    assert ("redcap:dnssec = 'sometimes': allowed: true (sign the zone), false (unsigned) or dsWithdrawn (still "
            "signed, DS record removed from the parent zone: the first of the two steps that turn DNSSEC off, "
            "docs/domains.md); example: true") in problems(domain="example.org", hostInRoute53=True,
                                                          zoneDelegated=False, dnssec="sometimes")
    assert ("redcap:dnsQueryLogging = 'always': allowed: true or false; example: true"
            in problems(domain="example.org", hostInRoute53=True, zoneDelegated=False, dnsQueryLogging="always"))


# --- transitions ------------------------------------------------------------------------------

@pytest.mark.parametrize("phase", [{}, {"zoneDelegated": True}], ids=["phase-one", "phase-two"])
def test_turning_dnssec_and_query_logging_on_only_adds_their_own_resources(phase: dict[str, Any]) -> None:
    t = run_transition("prod", {**OFF, **phase}, phase)
    t.assert_safe()
    assert t.deletes == set() and t.replaces == set() and t.updates == set(), t.describe()
    # Phase one logs queries only; signing waits for the delegation (phase two).
    signing = {KEY, KSK, SIGNING} if phase else set()
    assert {type_ for type_, _ in t.creates} == (OWN_TYPES - {RECORD, KEY, KSK, SIGNING}) | signing
    assert t.after.one(ZONE_SECURITY).name == "redcap"


def test_turning_dnssec_off_takes_two_steps_ds_first() -> None:
    on, withdrawn, off = CHILD_ZONE, {**CHILD_ZONE, "dnssec": "dsWithdrawn"}, {**CHILD_ZONE, "dnssec": False}
    first = run_transition("prod", on, withdrawn)
    first.assert_safe()
    assert first.deletes == {(RECORD, "redcap-ds")} and first.creates == set() and first.replaces == set()
    second = run_transition("prod", withdrawn, off)
    second.assert_safe()
    assert second.deletes == {(KEY, "redcap-dnssec-key"), (KSK, "redcap-ksk"), (SIGNING, "redcap-dnssec")}
    assert second.creates == set() and second.replaces == set()


def test_variants_without_their_own_zone_carry_no_zone_security() -> None:
    run, _ = run_with_zone_lookups("prod", {"domain": "example.org", "subdomain": None,
                                            "hostInRoute53": "example.org", **NOT_OUR_ZONE})
    assert run.of_type(ZONE_SECURITY) == []
