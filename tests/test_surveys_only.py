"""Surveys-only public access (redcap:allowListScope allButSurveys): the exact rule bodies, the
rule logic over sample requests from allowed and other addresses (tests/waf_eval.py), and the
same rules in every runtime's web ACL under mocks."""
from __future__ import annotations

from typing import Any

import pytest

import harness
from components import firewall as fw
from test_firewall import CRON_MATCH, camel, recorded_rules
from waf_eval import Request, UnmodelledRule, cron_secret_location, evaluate, normalize_path, priorities

V4_ARN, V6_ARN = "arn:ipset:v4", "arn:ipset:v6"
IP_SETS = {V4_ARN: ["203.0.113.0/24"], V6_ARN: ["2001:db8::/32"]}
SECRET = "survey-test-cron-secret"
HMAC = fw.cron_search_string(SECRET)
NORMALISED = [{"priority": 0, "type": "URL_DECODE"}, {"priority": 1, "type": "NORMALIZE_PATH"}]
SURVEY_PREFIX = {"byte_match_statement": {"field_to_match": {"uri_path": {}}, "positional_constraint": "STARTS_WITH",
                                          "search_string": "/surveys/", "text_transformations": NORMALISED}}
SURVEY_RESOURCES = {"regex_match_statement": {"field_to_match": {"uri_path": {}},
                                              "regex_string": "^/redcap_v[0-9]+[.][0-9]+[.][0-9]+/Resources/",
                                              "text_transformations": NORMALISED}}


# --- exact rule structure ------------------------------------------------------------------

def test_ip_rule_exempts_cron_and_the_survey_endpoints() -> None:
    assert fw.ip_rule([V4_ARN, V6_ARN], surveys_exempt=True)["statement"] == {"and_statement": {"statements": [
        {"not_statement": {"statement": {"ip_set_reference_statement": {"arn": V4_ARN}}}},
        {"not_statement": {"statement": {"ip_set_reference_statement": {"arn": V6_ARN}}}},
        {"not_statement": {"statement": CRON_MATCH}},
        {"not_statement": {"statement": SURVEY_PREFIX}},
        {"not_statement": {"statement": SURVEY_RESOURCES}},
    ]}}


def test_country_rule_exempts_cron_and_the_survey_endpoints() -> None:
    assert fw.country_rule(["US", "CA"], surveys_exempt=True)["statement"] == {"and_statement": {"statements": [
        {"not_statement": {"statement": {"geo_match_statement": {"country_codes": ["CA", "US"]}}}},
        {"not_statement": {"statement": CRON_MATCH}},
        {"not_statement": {"statement": SURVEY_PREFIX}},
        {"not_statement": {"statement": SURVEY_RESOURCES}},
    ]}}


def test_no_rule_nests_deeper_than_the_provider_allows() -> None:
    """The provider's `rules` schema takes three statement levels (rule_json would lose drift
    detection): AND -> NOT -> leaf."""
    def depth(statement: dict[str, Any]) -> int:
        ((kind, body),) = statement.items()
        if kind in ("and_statement", "or_statement"):
            return 1 + max(depth(s) for s in body["statements"])
        if kind == "not_statement":
            return 1 + depth(body["statement"])
        return 1
    rules = fw.web_acl_rules(countries=["US"], search_string=HMAC, ip_set_arns=[V4_ARN, V6_ARN], surveys_exempt=True)
    assert max(depth(r["statement"]) for r in rules) == 3


def test_priorities_do_not_change_with_the_scope() -> None:
    kwargs = {"countries": ["US"], "search_string": HMAC, "ip_set_arns": [V4_ARN]}
    expected = [("country-list", 10), ("cron-execution", 20), ("rate-filter", 30), ("ip-filter", 40)] + [
        (f"AWS-{g}", p) for g, p in fw.MANAGED_RULE_GROUPS]
    assert priorities(fw.web_acl_rules(**kwargs)) == expected
    assert priorities(fw.web_acl_rules(**kwargs, surveys_exempt=True)) == expected


@pytest.mark.parametrize("raw, normalised", [
    ("/surveys/", "/surveys/"), ("//surveys//index.php", "/surveys/index.php"), ("/surveys/./x", "/surveys/x"),
    ("/surveys/../ControlCenter/", "/ControlCenter/"), ("/a/b/../../c", "/c"), ("/../x", "/../x"),
])
def test_normalize_path_follows_the_aws_definition(raw: str, normalised: str) -> None:
    assert normalize_path(raw) == normalised


# --- the logic over sample requests --------------------------------------------------------

ALLOWED = {"ip": "203.0.113.10", "country": "US"}
ALLOWED_V6 = {"ip": "2001:db8::10", "country": "US"}
ELSEWHERE = {"ip": "198.51.100.20", "country": "DE"}   # in neither list
IN_US_ONLY = {"ip": "198.51.100.21", "country": "US"}  # allowed country, other address

# name -> (path, query): what a browser, an API client or EventBridge sends.
SAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    "survey page": ("/surveys/", {"s": "ABCD1234EF"}),
    "survey queue": ("/surveys/", {"sq": "QUEUE1234"}),
    "survey file download": ("/surveys/", {"__passthru": "DataEntry/file_download.php", "s": "ABCD1234EF"}),
    "survey asset": ("/redcap_v15.0.9/Resources/js/base.js", {}),
    "survey stylesheet": ("/redcap_v15.0.9/Resources/css/survey.css", {}),
    "login page": ("/", {}),
    "project page": ("/redcap_v15.0.9/index.php", {"pid": "12"}),
    "control center": ("/redcap_v15.0.9/ControlCenter/index.php", {}),
    "API": ("/api/", {}),
    "traversal from surveys": ("/surveys/../redcap_v15.0.9/ControlCenter/index.php", {}),
    "encoded traversal from surveys": ("/surveys/%2e%2e/redcap_v15.0.9/ControlCenter/index.php", {}),
    "traversal from resources": ("/redcap_v15.0.9/Resources/../ControlCenter/index.php", {}),
    "version directory without Resources": ("/redcap_v15.0.9/Surveys/index.php", {}),
}
SURVEY_SAMPLES = {"survey page", "survey queue", "survey file download", "survey asset", "survey stylesheet"}

ALLOW = ("ALLOW", None, 200)


def request(sample: str, source: dict[str, str], **extra: Any) -> Request:
    path, query = SAMPLES[sample]
    return Request(path=path, query=query, **source, **extra)


def cron_request(rules: list[dict[str, Any]], source: dict[str, str], secret: str | None) -> Request:
    """GET /cron.php as EventBridge sends it, the secret where the cron rule looks for it."""
    where, name = cron_secret_location(rules)
    values = {name: secret} if secret is not None else {}
    return Request(path="/cron.php", **source, query=values if where == "query" else {},
                   headers=values if where == "header" else {})


MODES: dict[str, dict[str, Any]] = {
    "open": {"countries": [], "ip_set_arns": []},
    "ips": {"countries": [], "ip_set_arns": [V4_ARN, V6_ARN]},
    "ips-surveys": {"countries": [], "ip_set_arns": [V4_ARN, V6_ARN], "surveys_exempt": True},
    "countries-surveys": {"countries": ["US"], "ip_set_arns": [], "surveys_exempt": True},
    "both": {"countries": ["US"], "ip_set_arns": [V4_ARN, V6_ARN]},
    "both-surveys": {"countries": ["US"], "ip_set_arns": [V4_ARN, V6_ARN], "surveys_exempt": True},
}


def rules_of(mode: str) -> list[dict[str, Any]]:
    return fw.web_acl_rules(search_string=HMAC, **MODES[mode])


def expected(mode: str, sample: str, source: dict[str, str]) -> tuple[str, str | None, int]:
    """The documented behaviour (docs/waf.md), written out independently of the rule bodies."""
    settings = MODES[mode]
    exempt = settings.get("surveys_exempt", False) and sample in SURVEY_SAMPLES
    if settings["countries"] and source["country"] not in settings["countries"] and not exempt:
        return ("BLOCK", "country-list", 403)
    allowed_ip = source["ip"] in (ALLOWED["ip"], ALLOWED_V6["ip"])
    if settings["ip_set_arns"] and not allowed_ip and not exempt:
        return ("BLOCK", "ip-filter", 403)
    return ALLOW


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("source", [ALLOWED, ALLOWED_V6, ELSEWHERE, IN_US_ONLY], ids=["allowed", "allowed-v6",
                                                                                   "elsewhere", "us-other-ip"])
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_sample_requests(mode: str, sample: str, source: dict[str, str]) -> None:
    decision = evaluate(rules_of(mode), request(sample, source), IP_SETS)
    assert (decision.action, decision.rule, decision.status) == expected(mode, sample, source)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("source", [ALLOWED, ELSEWHERE], ids=["allowed", "elsewhere"])
def test_cron_needs_the_secret_from_anywhere_and_nothing_else(mode: str, source: dict[str, str]) -> None:
    rules = rules_of(mode)
    assert evaluate(rules, cron_request(rules, source, HMAC), IP_SETS) == evaluate([], request("login page", source))
    for wrong in (None, "0" * 64, HMAC.upper()):
        decision = evaluate(rules, cron_request(rules, source, wrong), IP_SETS)
        assert (decision.action, decision.rule) == ("BLOCK", "cron-execution")


def test_the_rate_limit_still_applies_to_surveys() -> None:
    decision = evaluate(rules_of("both-surveys"), request("survey page", ELSEWHERE, over_rate_limit=True), IP_SETS)
    assert (decision.action, decision.rule) == ("BLOCK", "rate-filter")


def test_the_evaluator_refuses_what_it_does_not_model() -> None:
    rule = {"name": "x", "priority": 1, "action": {"block": {}},
            "statement": {"sqli_match_statement": {"field_to_match": {"body": {}}}}, "visibility_config": {}}
    with pytest.raises(UnmodelledRule):
        evaluate([rule], request("login page", ALLOWED))


# --- every runtime's web ACL under mocks ---------------------------------------------------

RUNTIMES = {
    "express": ("dev", {}),
    "apprunner": ("dev", {"express": None}),
    "ecs": ("prod", {"allowedCountries": None}),
}


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_runtime_gets_the_surveys_exemption(runtime: str) -> None:
    stack, overrides = RUNTIMES[runtime]
    run = harness.run_program(stack, {**overrides, "allowedIps": ["203.0.113.0/24", "2001:db8::/32"],
                                      "allowedCountries": ["US"], "allowListScope": "allButSurveys",
                                      "cronSecret": harness.Secret(SECRET)})
    rules = recorded_rules(run)
    sets = {s.inputs["ipAddressVersion"]: s for s in run.of_type("aws:wafv2/ipSet:IpSet")}
    arns = [sets["IPV4"].outputs["arn"], sets["IPV6"].outputs["arn"]]
    # (site_checks: every stage lets its uptime and smoke checks through the allow-lists)
    assert rules == camel(fw.web_acl_rules(countries=["US"], search_string=HMAC, ip_set_arns=arns,
                                           surveys_exempt=True, site_checks=True))
    ip_sets = {s.outputs["arn"]: s.inputs["addresses"] for s in sets.values()}
    for sample in SAMPLES:
        for source in (ALLOWED, ELSEWHERE, IN_US_ONLY):
            decision = evaluate(rules, request(sample, source), ip_sets)
            assert (decision.action, decision.rule, decision.status) == expected("both-surveys", sample, source), (
                sample, source)
    assert evaluate(rules, cron_request(rules, ELSEWHERE, HMAC), ip_sets).action == "ALLOW"
    assert evaluate(rules, cron_request(rules, ELSEWHERE, None), ip_sets).rule == "cron-execution"


def test_default_scope_keeps_surveys_behind_the_allow_lists() -> None:
    run = harness.run_program("dev", {"allowedIps": ["203.0.113.0/24"], "cronSecret": harness.Secret(SECRET)})
    rules = recorded_rules(run)
    ip_sets = {s.outputs["arn"]: s.inputs["addresses"] for s in run.of_type("aws:wafv2/ipSet:IpSet")}
    assert evaluate(rules, request("survey page", ELSEWHERE), ip_sets).rule == "ip-filter"
    assert evaluate(rules, request("survey page", ALLOWED), ip_sets).action == "ALLOW"
