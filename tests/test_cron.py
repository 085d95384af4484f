"""Cron (components/cron.py): EventBridge calls GET https://<host>/cron.php with the header
X-Redcap-Cron-Secret: <HMAC>, the value the WAF's cron rule requires."""
from __future__ import annotations

import json

import pytest

from compute_support import CRON_HMAC, leaked_secrets, policy_of, run_variant, statements
from components.cron import connection_name, cron_endpoint, schedule_expression
from harness import Secret, is_secret_input, run_program, unwrap_secrets
from components.firewall import cron_search_string


def test_cron_minutes_zero_creates_no_schedule():
    run = run_variant("dev-apprunner")  # dev: cronMinutes 0
    assert run.children_of(run.one("redcap:cron:Cron")) == []
    assert run.of_type("aws:cloudwatch/eventApiDestination:EventApiDestination") == []
    assert run.of_type("aws:cloudwatch/eventConnection:EventConnection") == []


def test_ecs_calls_the_custom_domain_every_minute():
    run = run_variant("prod")
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert destination.inputs["invocationEndpoint"] == "https://redcap.example.org/cron.php"
    assert destination.inputs["httpMethod"] == "GET"
    rule = run.named("redcap-cron-schedule")
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    target = run.named("redcap-cron-target")
    assert target.inputs["arn"] == destination.outputs["arn"] and target.inputs["rule"] == rule.outputs["name"]
    assert target.inputs["roleArn"] == run.named("redcap-cron-role").outputs["arn"]
    invoke = statements(policy_of(run.named("redcap-cron-invoke")))
    assert invoke == [{"Sid": "CallCron", "Effect": "Allow", "Action": ["events:InvokeApiDestination"],
                       "Resource": [destination.outputs["arn"]]}]


def test_app_runner_calls_its_default_url():
    run = run_variant("apprunner-domain")  # cronMinutes 5, custom domain present
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert destination.inputs["invocationEndpoint"] == f"{run.outputs['appRunnerServiceUrl']}/cron.php"
    assert run.named("redcap-cron-schedule").inputs["scheduleExpression"] == "rate(5 minutes)"


def test_the_cron_header_is_the_waf_hmac_and_stays_secret():
    run = run_variant("prod")
    connection = run.one("aws:cloudwatch/eventConnection:EventConnection")
    assert connection.inputs["authorizationType"] == "API_KEY"
    assert is_secret_input(connection.inputs["authParameters"])  # encrypted in state
    auth = unwrap_secrets(connection.inputs["authParameters"])
    assert auth == {"apiKey": {"key": "x-redcap-cron-secret", "value": CRON_HMAC}}
    assert leaked_secrets(connection.inputs) == []
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert leaked_secrets(destination.inputs) == [] and "?" not in destination.inputs["invocationEndpoint"]


def test_the_header_the_caller_sends_is_the_one_the_waf_checks_and_its_log_redacts():
    """One contract end to end: nothing of the secret in any URL (ALB access logs keep the request
    line, query string included), the WAF rule reads the header, the WAF log redacts it."""
    run = run_variant("prod")
    sent = unwrap_secrets(run.one("aws:cloudwatch/eventConnection:EventConnection").inputs["authParameters"])["apiKey"]
    rules = unwrap_secrets(run.one("aws:wafv2/webAcl:WebAcl").inputs["rules"])
    cron = next(r for r in rules if r["name"] == "cron-execution")
    checked = cron["statement"]["andStatement"]["statements"][1]["notStatement"]["statement"]["byteMatchStatement"]
    assert checked["fieldToMatch"] == {"singleHeader": {"name": sent["key"]}}
    assert checked["searchString"] == sent["value"] and checked["positionalConstraint"] == "EXACTLY"
    redacted = run.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration").inputs["redactedFields"]
    assert {"singleHeader": {"name": sent["key"]}} in redacted
    assert not [r for r in rules if "singleQueryArgument" in json.dumps(r)]


def test_the_connection_secret_is_encrypted_with_the_stack_key_tagged_for_eventbridge():
    run = run_variant("prod")
    key = run.one("aws:kms/key:Key", "redcap-key")
    assert run.one("aws:cloudwatch/eventConnection:EventConnection").inputs["kmsKeyIdentifier"] == key.outputs["arn"]
    assert key.inputs["tags"] == {"EventBridgeApiDestinations": "true"}
    # Without a schedule there is no connection, and the key carries no tag for it.
    assert "tags" not in run_variant("dev-apprunner").one("aws:kms/key:Key", "redcap-key").inputs


def test_the_header_connection_replaces_the_query_string_one():
    """UpdateConnection keeps the invocation parameters it is not sent: an existing stage's
    connection (redcap-<stack>-cron, which added ?secret=) is replaced by one of a new name, not
    updated, so no request carries the old query parameter afterwards."""
    connection = run_variant("prod").one("aws:cloudwatch/eventConnection:EventConnection")
    assert connection.inputs["name"] == "redcap-prod-cron-header" != "redcap-prod-cron"
    assert connection.name == "redcap-cron-connection"  # same URN: Pulumi replaces (create, then delete)
    assert len(connection_name("x" * 40)) <= 64


def test_the_first_call_waits_for_the_role_grant():
    run = run_variant("prod")
    assert run.named("redcap-cron-invoke").urn in run.named("redcap-cron-target").dependencies


def test_a_configured_cron_secret_gives_its_hmac():
    run = run_program("prod", {"cronSecret": Secret("s3cr3t-from-config"), "zoneDelegated": True})
    auth = unwrap_secrets(run.one("aws:cloudwatch/eventConnection:EventConnection").inputs["authParameters"])
    assert auth["apiKey"]["value"] == cron_search_string("s3cr3t-from-config")


def test_pure_helpers():
    assert schedule_expression(1) == "rate(1 minute)" and schedule_expression(15) == "rate(15 minutes)"
    with pytest.raises(ValueError):
        schedule_expression(0)
    assert cron_endpoint("https://abc.awsapprunner.com/") == "https://abc.awsapprunner.com/cron.php"
    assert cron_endpoint("redcap.example.org") == "https://redcap.example.org/cron.php"
