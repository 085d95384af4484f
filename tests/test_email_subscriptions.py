"""SNS e-mail subscriptions (components/notifications.py): what the stack subscribes, what it
asks the operator to confirm or subscribe, and that a stage whose drift is auto-remediated owns no
subscription AWS could delete behind its back (an unconfirmed one is deleted after three days;
each remediation would then subscribe it again and mail another confirmation)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import harness
from components.notifications import subscription_row

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
TOPIC = "aws:sns/topic:Topic"


def test_by_default_the_stack_subscribes_and_says_what_to_confirm(prod_run: harness.StackRun) -> None:
    run = prod_run
    confirm = ("click the link in the mail 'AWS Notification - Subscription Confirmation' within 3 days "
               "(docs/email.md)")
    bounces, alarms = run.one(TOPIC, "bounces"), run.one(TOPIC, "rotation-alarms")
    assert sorted((s.inputs["topic"], s.inputs["protocol"], s.inputs["endpoint"]) for s in run.of_type(SUBSCRIPTION)) == \
        sorted([(bounces.outputs["arn"], "email", "redcap-bounces@example.org"),
                (alarms.outputs["arn"], "email", "redcap-admin@example.org")])
    assert run.outputs["emailSubscriptions"] == [
        {"purpose": "SES bounces and complaints", "address": "redcap-bounces@example.org",
         "topicArn": bounces.outputs["arn"], "confirm": confirm},
        {"purpose": "access key rotation failures", "address": "redcap-admin@example.org",
         "topicArn": alarms.outputs["arn"], "confirm": confirm}]


def test_app_runner_notifications_too() -> None:
    run = harness.cached_run("prod", {"ecs": None, "cronMinutes": 5})
    rows = {r["purpose"]: r for r in run.outputs["emailSubscriptions"]}
    assert set(rows) == {"App Runner operation results", "SES bounces and complaints", "access key rotation failures"}
    assert rows["App Runner operation results"]["address"] == "redcap-admin@example.org"
    assert sorted(s.inputs["endpoint"] for s in run.of_type(SUBSCRIPTION)) == [
        "redcap-admin@example.org", "redcap-admin@example.org", "redcap-bounces@example.org"]


def test_without_stack_subscriptions_the_topics_stay_and_the_output_says_how_to_subscribe() -> None:
    run = harness.run_program("prod", {"ecs": None, "emailSubscriptions": False})
    assert run.of_type(SUBSCRIPTION) == []
    # Everything that publishes is still there: only the subscriptions are left to the operator.
    assert {t.name for t in run.of_type(TOPIC)} == {"redcap-bounces", "redcap-notifications", "redcap-rotation-alarms"}
    assert run.named("redcap-operations-mail").inputs["arn"] == run.one(TOPIC, "notifications").outputs["arn"]
    assert run.one("aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination")
    rows = {r["purpose"]: r for r in run.outputs["emailSubscriptions"]}
    bounces = run.one(TOPIC, "bounces").outputs["arn"]
    assert rows["SES bounces and complaints"] == {
        "purpose": "SES bounces and complaints", "address": "redcap-bounces@example.org", "topicArn": bounces,
        "subscribe": f"aws sns subscribe --region us-east-1 --topic-arn {bounces} --protocol email "
                     "--notification-endpoint redcap-bounces@example.org"}


def test_stages_whose_drift_is_auto_remediated_own_no_email_subscription() -> None:
    """ops/Pulumi.example.yaml auto-remediates dev: dev must not own a subscription that AWS may
    delete (then every remediation would re-subscribe and mail a new confirmation)."""
    ops = yaml.safe_load((ROOT / "ops" / "Pulumi.example.yaml").read_text())["config"]["redcap-ops:stacks"]
    remediated = [s["name"] for s in ops if s.get("autoRemediate")]
    assert remediated == ["dev"]
    for stack in remediated:
        run = harness.cached_run(stack)
        assert run.of_type(SUBSCRIPTION) == [], stack
        # Whatever topics it has, their addresses are listed with the command to subscribe by hand.
        assert all("subscribe" in r for r in run.outputs["emailSubscriptions"]), stack


def test_subscription_rows_are_pure() -> None:
    assert subscription_row("x", "a@example.org", "arn:t", False, "eu-west-1")["subscribe"] == (
        "aws sns subscribe --region eu-west-1 --topic-arn arn:t --protocol email --notification-endpoint a@example.org")
    assert "subscribe" not in subscription_row("x", "a@example.org", "arn:t", True, "eu-west-1")


def test_setting_is_validated() -> None:
    import settings

    raw = {"redcap:redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "redcap:email": "a@example.org",
           "redcap:emailSubscriptions": "sometimes"}
    with pytest.raises(settings.SettingsError) as err:
        settings.load_settings(raw, stack="test", region="us-east-1")
    assert "redcap:emailSubscriptions = 'sometimes': allowed: true or false; example: true" in str(err.value)
