"""Firewall (issue 3): the WAF rules against the spec table, the cron HMAC, IP sets, logging,
the generated cron secret and the external-ACL override, under mocks for dev/prod variants."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

import harness
from components import firewall as fw

WEB_ACL = "aws:wafv2/webAcl:WebAcl"
IP_SET = "aws:wafv2/ipSet:IpSet"
LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
EXTERNAL_ACL = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/corp-acl/a1b2c3d4-5678-90ab-cdef-111122223333"


# The original's table (seed-inventory §6.2): name, priority, metric, action.
SPEC = [
    ("country-list", 10, "country-list", "block-403-body"),
    ("cron-execution", 20, "redcap-cron-exec", "block"),
    ("rate-filter", 30, "rate-filter", "block"),
    ("ip-filter", 40, "ip-filter", "block-403-body"),
    ("AWS-AWSManagedRulesAmazonIpReputationList", 200, "AWS-AWSManagedRulesAmazonIpReputationList", "none"),
    ("AWS-AWSManagedRulesCommonRuleSet", 300, "AWS-AWSManagedRulesCommonRuleSet", "none"),
    ("AWS-AWSManagedRulesKnownBadInputsRuleSet", 400, "AWS-AWSManagedRulesKnownBadInputsRuleSet", "none"),
    ("AWS-AWSManagedRulesSQLiRuleSet", 500, "AWS-AWSManagedRulesSQLiRuleSet", "none"),
]
CRON_MATCH = {"byte_match_statement": {
    "field_to_match": {"uri_path": {}}, "positional_constraint": "ENDS_WITH", "search_string": "cron.php",
    "text_transformations": [{"priority": 0, "type": "NONE"}]}}


def camel(value: Any) -> Any:
    """snake_case input dicts -> the camelCase wire form the mocks record."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def all_rules(**kw: Any) -> dict[str, dict[str, Any]]:
    rules = fw.web_acl_rules(countries=kw.get("countries", ["US"]), search_string="abc",
                             ip_set_arns=kw.get("ip_set_arns", ["arn:v4"]),
                             sqli_rules_to_count=kw.get("sqli", ()))
    return {r["name"]: r for r in rules}


def plain_strings(value: Any) -> list[str]:
    """Every string of a recorded value outside secret-marked parts."""
    if harness.is_secret_input(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def recorded_rules(run: harness.StackRun) -> list[dict[str, Any]]:
    acl = run.one(WEB_ACL)
    assert harness.is_secret_input(acl.inputs["rules"]), "rules carry the cron HMAC: they must be secret"
    return harness.unwrap_secrets(acl.inputs["rules"])


# --- pure functions ------------------------------------------------------------------------

@pytest.mark.parametrize("secret, expected", [
    # Vectors computed independently with `printf %s <reversed> | openssl dgst -sha256 -hmac <secret>`.
    ("abc", "742b47e15d500fa92605b5fe48fd317623940cce3d2810c31c7633a8f59de7c1"),
    ("c-ron-secret1234567890", "d82a3acb521ae97aa8c1d3552451c8781969cf638754855e4bacdd693fb23b20"),
    ("a-ü", "a43f792c1e5eaa6e30261b459283cfc730c98633634796035446868568f70bbe"),
])
def test_cron_search_string_known_answers(secret: str, expected: str) -> None:
    assert fw.cron_search_string(secret) == expected


@pytest.mark.parametrize("name, priority, metric, action", SPEC)
def test_rule_name_priority_metric_action(name: str, priority: int, metric: str, action: str) -> None:
    rule = all_rules()[name]
    assert rule["priority"] == priority
    assert rule["visibility_config"] == {"cloudwatch_metrics_enabled": True, "metric_name": metric,
                                         "sampled_requests_enabled": True}
    if action == "none":
        assert rule["override_action"] == {"none": {}} and "action" not in rule
    elif action == "block":
        assert rule["action"] == {"block": {}}
    else:
        assert rule["action"] == {"block": {"custom_response": {"response_code": 403,
                                                                "custom_response_body_key": "response"}}}


def test_country_rule_body() -> None:
    assert fw.country_rule(["US", "CA", "US"])["statement"] == {"and_statement": {"statements": [
        {"not_statement": {"statement": {"geo_match_statement": {"country_codes": ["CA", "US"]}}}},
        {"not_statement": {"statement": CRON_MATCH}},
    ]}}


def test_cron_rule_body_exact_secret_match_in_the_header() -> None:
    # A header, never the query string: ALB access logs record the request line in full.
    assert fw.cron_rule("deadbeef")["statement"] == {"and_statement": {"statements": [
        CRON_MATCH,
        {"not_statement": {"statement": {"byte_match_statement": {
            "field_to_match": {"single_header": {"name": "x-redcap-cron-secret"}},
            "positional_constraint": "EXACTLY", "search_string": "deadbeef",
            "text_transformations": [{"priority": 0, "type": "NONE"}]}}}},
    ]}}


def test_rate_rule_body() -> None:
    assert fw.rate_rule()["statement"] == {"rate_based_statement": {
        "aggregate_key_type": "IP", "limit": 3000, "evaluation_window_sec": 300}}


def test_ip_rule_body_both_families_and_cron_exemption() -> None:
    assert fw.ip_rule(["arn:v4", "arn:v6"])["statement"] == {"and_statement": {"statements": [
        {"not_statement": {"statement": {"ip_set_reference_statement": {"arn": "arn:v4"}}}},
        {"not_statement": {"statement": {"ip_set_reference_statement": {"arn": "arn:v6"}}}},
        {"not_statement": {"statement": CRON_MATCH}},
    ]}}
    with pytest.raises(ValueError):
        fw.ip_rule([])


def test_managed_groups_and_overrides() -> None:
    rules = all_rules(sqli=["SQLi_QUERYARGUMENTS", "SQLi_BODY"])
    groups = {n: r["statement"]["managed_rule_group_statement"] for n, r in rules.items() if n.startswith("AWS-")}
    assert {n: (g["vendor_name"], g["name"]) for n, g in groups.items()} == {
        f"AWS-{g}": ("AWS", g) for g, _ in fw.MANAGED_RULE_GROUPS}
    counted = {n: [(o["name"], o["action_to_use"]) for o in g.get("rule_action_overrides", [])]
               for n, g in groups.items()}
    assert counted == {
        "AWS-AWSManagedRulesAmazonIpReputationList": [],
        "AWS-AWSManagedRulesCommonRuleSet": [(r, {"count": {}}) for r in (
            "CrossSiteScripting_BODY", "GenericRFI_BODY", "NoUserAgent_HEADER", "SizeRestrictions_BODY")],
        "AWS-AWSManagedRulesKnownBadInputsRuleSet": [],
        "AWS-AWSManagedRulesSQLiRuleSet": [("SQLi_BODY", {"count": {}}), ("SQLi_QUERYARGUMENTS", {"count": {}})],
    }


def test_optional_rules_absent_when_lists_empty() -> None:
    names = [r["name"] for r in fw.web_acl_rules(countries=[], search_string="x", ip_set_arns=[])]
    assert names == ["cron-execution", "rate-filter"] + [f"AWS-{g}" for g, _ in fw.MANAGED_RULE_GROUPS]


def test_split_by_family() -> None:
    assert fw.split_by_family(["2001:db8::/32", "203.0.113.0/24", "198.51.100.7/32", "203.0.113.0/24"]) == (
        ["198.51.100.7/32", "203.0.113.0/24"], ["2001:db8::/32"])


# --- under mocks ---------------------------------------------------------------------------

def test_dev_acl_without_allow_lists(dev_run: harness.StackRun) -> None:
    run = dev_run
    acl = run.one(WEB_ACL)
    # dev runs on Express: its ACL protects a CloudFront distribution; dev is in us-east-1 already.
    assert acl.inputs["scope"] == "CLOUDFRONT" and "region" not in acl.inputs
    assert acl.inputs["defaultAction"] == {"allow": {}}
    assert acl.inputs["customResponseBodies"] == [
        {"key": "response", "contentType": "TEXT_HTML", "content": "<div> Access denied </div>"}]
    assert acl.inputs["visibilityConfig"] == {"cloudwatchMetricsEnabled": True, "metricName": "redcap-dev-waf",
                                              "sampledRequestsEnabled": False}
    rules = recorded_rules(run)
    assert [(r["name"], r["priority"]) for r in rules] == [
        ("cron-execution", 20), ("rate-filter", 30)] + [(f"AWS-{g}", p) for g, p in fw.MANAGED_RULE_GROUPS]
    assert run.of_type(IP_SET) == []
    assert all(r["visibilityConfig"]["cloudwatchMetricsEnabled"] for r in rules)
    assert run.outputs["webAclArn"] == acl.outputs["arn"]


def test_prod_geo_rule_and_recorded_bodies_match_pure_functions(prod_run: harness.StackRun) -> None:
    run = prod_run
    rules = recorded_rules(run)
    search = fw.cron_search_string(harness.MOCK_SECRET_VALUES[1])  # prod has no cronSecret: generated
    expected = fw.web_acl_rules(countries=["US"], search_string=search, ip_set_arns=[])
    assert rules == camel(expected)
    assert rules[0]["name"] == "country-list"
    assert "ip-filter" not in [r["name"] for r in rules]


def test_ipv4_and_ipv6_allow_lists() -> None:
    run = harness.run_program("dev", {"allowedIps": ["2001:db8::/32", "203.0.113.0/24", "198.51.100.7"],
                                      "express": None})
    sets = {r.inputs["ipAddressVersion"]: r for r in run.of_type(IP_SET)}
    assert set(sets) == {"IPV4", "IPV6"}
    assert sets["IPV4"].inputs["addresses"] == ["198.51.100.7/32", "203.0.113.0/24"]
    assert sets["IPV6"].inputs["addresses"] == ["2001:db8::/32"]
    assert all(s.inputs["scope"] == "REGIONAL" for s in sets.values())
    ip_rule = next(r for r in recorded_rules(run) if r["name"] == "ip-filter")
    assert ip_rule == camel(fw.ip_rule([sets["IPV4"].outputs["arn"], sets["IPV6"].outputs["arn"]]))


def test_only_ipv6_list_gives_one_ipv6_set() -> None:
    run = harness.run_program("dev", {"allowedIps": ["2001:db8::/32"]})
    assert [s.inputs["ipAddressVersion"] for s in run.of_type(IP_SET)] == ["IPV6"]
    ip_rule = next(r for r in recorded_rules(run) if r["name"] == "ip-filter")
    assert len(ip_rule["statement"]["andStatement"]["statements"]) == 2


def test_waf_logging_encrypted_and_redacted(dev_run: harness.StackRun) -> None:
    run = harness.run_program("dev", {"generalLogRetention": None, "express": None})
    group = run.one(LOG_GROUP, "waf")
    assert group.inputs["name"] == "aws-waf-logs-redcap-dev"
    assert group.inputs["retentionInDays"] == 365
    assert group.inputs["kmsKeyId"] == run.one("aws:kms/key:Key", "redcap-key").outputs["arn"]
    logging = run.one(LOGGING)
    assert logging.inputs["resourceArn"] == run.one(WEB_ACL).outputs["arn"]
    assert logging.inputs["logDestinationConfigs"] == [group.outputs["arn"]]
    assert logging.inputs["redactedFields"] == [{"singleHeader": {"name": "authorization"}},
                                               {"singleHeader": {"name": "cookie"}},
                                               {"singleHeader": {"name": "x-redcap-cron-secret"}},
                                               {"queryString": {}}]
    assert dev_run.one(LOG_GROUP, "waf").inputs["retentionInDays"] == 30
    # A CLOUDFRONT-scope log group names the stage's region too (all such groups live in us-east-1).
    assert dev_run.one(LOG_GROUP, "waf").inputs["name"] == "aws-waf-logs-redcap-dev-us-east-1"


def test_generated_secret_is_stable_and_never_plain(dev_run: harness.StackRun) -> None:
    first, second = dev_run, harness.run_program("dev")
    secret = first.one(RANDOM_PASSWORD, "cron-secret")
    assert secret.inputs == {"length": 48, "special": False}  # no keepers: generated once, kept in state
    assert recorded_rules(first) == recorded_rules(second)
    cron = next(r for r in recorded_rules(first) if r["name"] == "cron-execution")
    negated = cron["statement"]["andStatement"]["statements"][1]["notStatement"]["statement"]
    assert negated["byteMatchStatement"]["searchString"] == fw.cron_search_string(harness.MOCK_SECRET_VALUES[1])
    hmac_value = fw.cron_search_string(harness.MOCK_SECRET_VALUES[1])
    for res in first.resources:
        plain = [s for s in plain_strings(res.inputs) if hmac_value in s or harness.MOCK_SECRET_VALUES[1] in s]
        assert not plain, f"{res.name} holds the cron secret in a plain input"
    assert not any(hmac_value in s for s in harness.all_strings(first.outputs))


def test_configured_cron_secret() -> None:
    run = harness.run_program("dev", {"cronSecret": harness.Secret("configured-cron-secret-42")})
    assert not [r for r in run.of_type(RANDOM_PASSWORD) if "cron" in r.name]
    cron = next(r for r in recorded_rules(run) if r["name"] == "cron-execution")
    negated = cron["statement"]["andStatement"]["statements"][1]["notStatement"]["statement"]
    assert negated["byteMatchStatement"]["searchString"] == fw.cron_search_string("configured-cron-secret-42")


def test_sqli_rules_to_count_setting() -> None:
    run = harness.run_program("prod", {"wafSqliRulesToCount": ["SQLi_QUERYARGUMENTS", "SQLi_BODY"]})
    sqli = next(r for r in recorded_rules(run) if r["name"] == "AWS-AWSManagedRulesSQLiRuleSet")
    assert sqli["statement"]["managedRuleGroupStatement"]["ruleActionOverrides"] == [
        {"name": "SQLi_BODY", "actionToUse": {"count": {}}},
        {"name": "SQLi_QUERYARGUMENTS", "actionToUse": {"count": {}}}]
    assert sqli["overrideAction"] == {"none": {}}


def test_external_web_acl_replaces_ours() -> None:
    run = harness.run_program("prod", {"externalResources": {"wafWebAcl": EXTERNAL_ACL}, "allowedCountries": None})
    for type_ in (WEB_ACL, IP_SET, LOGGING):
        assert run.of_type(type_) == []
    assert not [g for g in run.of_type(LOG_GROUP) if "waf" in g.name]
    assert run.outputs["webAclArn"] == EXTERNAL_ACL


# --- CLOUDFRONT scope (the Express runtime) --------------------------------------------------

def test_cloudfront_scope_of_a_stage_elsewhere_lives_in_us_east_1() -> None:
    run = harness.run_program("prod", {"aws:region": "eu-west-1", "ecs": None, "express": {},
                                       "allowedIps": ["203.0.113.0/24"]})
    acl, ip_set, logging = run.one(WEB_ACL), run.one(IP_SET), run.one(LOGGING)
    group = run.one(LOG_GROUP, "waf")
    key = run.named("redcap-waf-log-key")
    assert acl.inputs["scope"] == ip_set.inputs["scope"] == "CLOUDFRONT"
    for res in (acl, ip_set, logging, group, key):
        assert res.inputs["region"] == "us-east-1", res.name
    assert group.inputs["name"] == "aws-waf-logs-redcap-prod-eu-west-1"
    # A log group takes a KMS key of its own region: the stack key is in eu-west-1.
    assert group.inputs["kmsKeyId"] == key.outputs["arn"] != run.outputs["kmsKeyArn"]
    assert key.inputs["enableKeyRotation"] is True
    policy = json.loads(key.inputs["policy"])
    logs = next(s for s in policy["Statement"] if s["Sid"] == "CloudWatchLogsOfThisAccount")
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    distribution = run.one("aws:cloudfront/distribution:Distribution")
    assert distribution.inputs["webAclId"] == acl.outputs["arn"] == run.outputs["webAclArn"]


def test_regional_scope_stays_in_the_stack_region(prod_run: harness.StackRun) -> None:
    acl = prod_run.one(WEB_ACL)
    assert acl.inputs["scope"] == "REGIONAL" and "region" not in acl.inputs
    assert not [k for k in prod_run.of_type("aws:kms/key:Key") if "waf" in k.name]
