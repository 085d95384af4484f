"""Cron (components/cron.py): EventBridge calls GET https://<host>/cron.php?secret=<HMAC>."""
from __future__ import annotations

import pytest

from compute_support import CRON_HMAC, leaked_secrets, policy_of, run_variant, statements
from components.cron import cron_endpoint, schedule_expression
from harness import Secret, run_program, unwrap_secrets
from components.firewall import cron_search_string


def test_cron_minutes_zero_creates_no_schedule():
    run = run_variant("dev")  # dev: cronMinutes 0
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


def test_the_secret_query_argument_is_the_waf_hmac_and_stays_secret():
    run = run_variant("prod")
    connection = run.one("aws:cloudwatch/eventConnection:EventConnection")
    auth = unwrap_secrets(connection.inputs["authParameters"])
    assert auth["invocationHttpParameters"]["queryStrings"] == [
        {"key": "secret", "value": CRON_HMAC, "isValueSecret": True}]
    assert leaked_secrets(connection.inputs) == []
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert leaked_secrets(destination.inputs) == [] and CRON_HMAC not in destination.inputs["invocationEndpoint"]


def test_a_configured_cron_secret_gives_its_hmac():
    run = run_program("prod", {"cronSecret": Secret("s3cr3t-from-config"), "zoneDelegated": True})
    auth = unwrap_secrets(run.one("aws:cloudwatch/eventConnection:EventConnection").inputs["authParameters"])
    assert auth["invocationHttpParameters"]["queryStrings"][0]["value"] == cron_search_string("s3cr3t-from-config")


def test_pure_helpers():
    assert schedule_expression(1) == "rate(1 minute)" and schedule_expression(15) == "rate(15 minutes)"
    with pytest.raises(ValueError):
        schedule_expression(0)
    assert cron_endpoint("https://abc.awsapprunner.com/") == "https://abc.awsapprunner.com/cron.php"
    assert cron_endpoint("redcap.example.org") == "https://redcap.example.org/cron.php"
