"""Email (issue 3): SES with and without a zone, SMTP credentials, bounces; GuardDuty on/off."""
from __future__ import annotations

import json

import pytest

import harness
from components import email as mail
from variants import VARIANTS

IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
MAIL_FROM = "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes"
CONFIG_SET = "aws:sesv2/configurationSet:ConfigurationSet"
DESTINATION = "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination"
RECORD = "aws:route53/record:Record"
TOPIC = "aws:sns/topic:Topic"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
DETECTOR = "aws:guardduty/detector:Detector"
FEATURE = "aws:guardduty/detectorFeature:DetectorFeature"


def bounce_topics(run: harness.StackRun) -> list[harness.Recorded]:
    """SNS topics of the Email component (compute has notification topics of its own)."""
    return [t for t in run.of_type(TOPIC) if t.parent.endswith("redcap:email:Email::redcap")]


def smtp_policy(run: harness.StackRun) -> dict:
    return json.loads(run.one("aws:iam/userPolicy:UserPolicy", "smtp").inputs["policy"])


# --- pure helpers --------------------------------------------------------------------------

def test_record_values() -> None:
    assert mail.dkim_record("abc", "redcap.example.org") == ("abc._domainkey.redcap.example.org",
                                                             "abc.dkim.amazonses.com")
    assert mail.mail_from_domain("redcap.example.org") == "mail.redcap.example.org"
    assert mail.mail_from_mx("eu-west-1") == "10 feedback-smtp.eu-west-1.amazonses.com"


@pytest.mark.parametrize("email, domain, sender_setting, sender, own_identity", [
    ("admin@example.org", None, None, "admin@example.org", True),
    # With a zone the sender lies in the DKIM-signed FQDN (DMARC alignment); email only notifies.
    ("admin@example.org", "redcap.example.org", None, "no-reply@redcap.example.org", False),
    ("admin@example.org", "redcap.example.org", "redcap@redcap.example.org", "redcap@redcap.example.org", False),
    ("admin@redcap.example.org", "redcap.example.org", None, "admin@redcap.example.org", False),
    ("admin@lab.redcap.example.org", "redcap.example.org", None, "admin@lab.redcap.example.org", False),
    ("admin@xredcap.example.org", "redcap.example.org", None, "no-reply@redcap.example.org", False),
    (None, "redcap.example.org", None, "no-reply@redcap.example.org", False),
])
def test_sender_and_address_identity(email, domain, sender_setting, sender, own_identity) -> None:
    assert mail.sender_address(email, domain, sender_setting) == sender
    assert mail.address_identity_needed(sender, domain) is own_identity


def test_a_sender_outside_the_domain_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="must lie in redcap.example.org"):
        mail.sender_address("admin@example.org", "redcap.example.org", "admin@example.org")


def test_smtp_policy_scoped_to_identities() -> None:
    doc = json.loads(mail.smtp_send_policy(["arn:b", "arn:a"], "arn:cs"))
    assert doc["Statement"] == [{"Sid": "SendFromRedcapIdentities", "Effect": "Allow",
                                 "Action": ["ses:SendEmail", "ses:SendRawEmail"],
                                 "Resource": ["arn:a", "arn:b", "arn:cs"]}]


# --- under mocks ---------------------------------------------------------------------------

def test_without_zone_an_address_identity(dev_run: harness.StackRun) -> None:
    run = dev_run
    identity = run.one(IDENTITY)
    # Shared with the other stages of the account (docs/email.md): no configuration set, kept on destroy.
    assert identity.inputs == {"emailIdentity": "redcap-admin@example.org"} and identity.retain_on_delete is True
    assert run.of_type(MAIL_FROM) == [] and run.of_type(RECORD) == []
    assert run.of_type(CONFIG_SET) == [] and bounce_topics(run) == []
    assert smtp_policy(run)["Statement"][0]["Resource"] == [identity.outputs["arn"]]
    assert run.outputs["senderAddress"] == "redcap-admin@example.org"
    assert run.outputs["sesIdentityArn"] == identity.outputs["arn"]


def test_with_zone_domain_identity_dkim_mail_from(prod_run: harness.StackRun) -> None:
    run = prod_run
    zone_id = run.one("aws:route53/zone:Zone").outputs["zoneId"]
    domain = run.one(IDENTITY, "domain")
    assert domain.inputs["emailIdentity"] == "redcap.example.org"
    assert domain.inputs["dkimSigningAttributes"] == {"nextSigningKeyLength": "RSA_2048_BIT"}
    dkim = sorted((r.inputs["name"], r.inputs["records"]) for r in run.of_type(RECORD) if "dkim" in r.name)
    assert dkim == [(f"{t}._domainkey.redcap.example.org", [f"{t}.dkim.amazonses.com"])
                    for t in sorted(harness.MOCK_DKIM_TOKENS)]
    assert all(r.inputs["type"] == "CNAME" and r.inputs["zoneId"] == zone_id
               for r in run.of_type(RECORD) if "dkim" in r.name)
    assert run.one(MAIL_FROM).inputs == {"emailIdentity": "redcap.example.org",
                                         "mailFromDomain": "mail.redcap.example.org",
                                         "behaviorOnMxFailure": "USE_DEFAULT_VALUE"}
    mx, spf = run.one(RECORD, "mail-from-mx"), run.one(RECORD, "mail-from-spf")
    assert (mx.inputs["name"], mx.inputs["type"], mx.inputs["records"]) == (
        "mail.redcap.example.org", "MX", ["10 feedback-smtp.us-east-1.amazonses.com"])
    assert (spf.inputs["name"], spf.inputs["type"], spf.inputs["records"]) == (
        "mail.redcap.example.org", "TXT", ["v=spf1 include:amazonses.com ~all"])
    # prod's email is outside redcap.example.org: it only receives notifications, REDCap sends
    # from inside the DKIM-signed domain, and no address identity exists.
    assert [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY)] == ["redcap.example.org"]
    assert run.outputs["senderAddress"] == "no-reply@redcap.example.org"
    assert run.outputs["sesIdentityArn"] == domain.outputs["arn"]


def test_bounces_to_encrypted_topic_and_identities_use_configuration_set(prod_run: harness.StackRun) -> None:
    run = prod_run
    config_set = run.one(CONFIG_SET)
    assert config_set.inputs["configurationSetName"] == "redcap-prod"
    domain = run.one(IDENTITY, "domain")
    assert domain.inputs["configurationSetName"] == "redcap-prod"
    assert config_set.urn in domain.dependencies  # the set exists before the identity names it
    topic = run.one(TOPIC, "bounces")
    assert bounce_topics(run) == [topic]
    assert topic.inputs["kmsMasterKeyId"] == run.one("aws:kms/key:Key", "redcap-key").outputs["arn"]
    destination = run.one(DESTINATION)
    assert destination.inputs["configurationSetName"] == "redcap-prod"
    assert destination.inputs["eventDestination"] == {
        "enabled": True, "matchingEventTypes": ["BOUNCE", "COMPLAINT"],
        "snsDestination": {"topicArn": topic.outputs["arn"]}}
    subscription = run.one("aws:sns/topicSubscription:TopicSubscription", "bounces")
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == ("email", "redcap-bounces@example.org")
    policy = json.loads(run.one("aws:sns/topicPolicy:TopicPolicy", "bounces").inputs["policy"])
    allow, deny = policy["Statement"]
    assert allow["Principal"] == {"Service": "ses.amazonaws.com"} and allow["Action"] == "sns:Publish"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": harness.ACCOUNT_ID,
                                                  "aws:SourceArn": config_set.outputs["arn"]}
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resources = smtp_policy(run)["Statement"][0]["Resource"]
    assert resources == sorted(i.outputs["arn"] for i in run.of_type(IDENTITY)) + [config_set.outputs["arn"]]
    assert "*" not in resources


def test_smtp_credentials_secret(prod_run: harness.StackRun) -> None:
    run = prod_run
    # No key in the program (and so none in state): the rotation function makes and rotates it.
    assert run.of_type("aws:iam/accessKey:AccessKey") == []
    assert run.one("aws:iam/user:User", "smtp").inputs["forceDestroy"] is True
    secret = run.one(SECRET, "smtp")
    assert secret.inputs["kmsKeyId"] == run.one("aws:kms/key:Key", "redcap-key").outputs["arn"]
    assert [v for v in run.of_type(SECRET_VERSION) if "smtp" in v.name] == []
    assert run.outputs["smtpCredentialsSecretArn"] == secret.outputs["arn"]


def test_email_inside_domain_needs_no_second_identity() -> None:
    run = harness.run_program("prod", {"email": "admin@redcap.example.org"})
    assert [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY)] == ["redcap.example.org"]
    assert run.outputs["senderAddress"] == "admin@redcap.example.org"


def test_zone_without_email_sends_from_no_reply() -> None:
    run = harness.run_program("prod", {"email": None, "bounceNotificationEmail": None})
    assert [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY)] == ["redcap.example.org"]
    assert run.outputs["senderAddress"] == "no-reply@redcap.example.org"
    assert run.of_type(CONFIG_SET) == [] and bounce_topics(run) == []
    assert "configurationSetName" not in run.one(IDENTITY).inputs


@pytest.mark.parametrize("enabled", [True, False])
def test_guard_duty(enabled: bool) -> None:
    run = harness.run_program("dev", {"guardDuty": enabled})
    if not enabled:
        assert run.of_type(DETECTOR) == [] and run.of_type(FEATURE) == []
        assert "guardDutyDetectorId" not in run.outputs
        return
    detector = run.one(DETECTOR)
    assert detector.inputs["enable"] is True
    features = {f.inputs["name"]: f.inputs for f in run.of_type(FEATURE)}
    assert set(features) == {"S3_DATA_EVENTS", "RDS_LOGIN_EVENTS"}
    assert all(f["status"] == "ENABLED" and f["detectorId"] == detector.id for f in features.values())
    assert run.outputs["guardDutyDetectorId"] == detector.id


# --- the sender lies in the DKIM-signed domain (DMARC alignment) -----------------------------

def _container_env(run: harness.StackRun) -> dict[str, str]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = json.loads(task.inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


def test_prod_sends_from_inside_its_dkim_domain_and_notifies_redcap_email() -> None:
    run = harness.cached_run("prod", {"zoneDelegated": True})  # phase two: the ECS service exists
    assert run.outputs["senderAddress"] == "no-reply@redcap.example.org"
    assert _container_env(run)["SMTP_EMAIL"] == "no-reply@redcap.example.org"
    # The SMTP user may send only as the domain identity (and through the configuration set).
    assert smtp_policy(run)["Statement"][0]["Resource"] == [run.one(IDENTITY, "domain").outputs["arn"],
                                                          run.one(CONFIG_SET).outputs["arn"]]


def test_sender_email_setting() -> None:
    run = harness.run_program("prod", {"senderEmail": "redcap@redcap.example.org", "zoneDelegated": True})
    assert run.outputs["senderAddress"] == "redcap@redcap.example.org"
    assert _container_env(run)["SMTP_EMAIL"] == "redcap@redcap.example.org"
    assert [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY)] == ["redcap.example.org"]


@pytest.mark.parametrize("variant_id", [v[0] for v in VARIANTS if v[0] != "delegation"])
def test_every_stage_with_a_domain_identity_sends_from_inside_it(variant_id: str) -> None:
    _, stack, overrides = next(v for v in VARIANTS if v[0] == variant_id)
    run = harness.cached_run(stack, overrides)
    domains = [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY) if "@" not in i.inputs["emailIdentity"]]
    sender = run.outputs["senderAddress"]
    if domains:
        assert any(mail.in_domain(sender, d) for d in domains), (sender, domains)
    else:
        assert [i.inputs["emailIdentity"] for i in run.of_type(IDENTITY)] == [sender]


def _settings_problem(**overrides) -> str:
    import settings

    base = {"redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "email": "redcap-admin@example.org"}
    raw = {f"redcap:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in {**base, **overrides}.items()}
    with pytest.raises(settings.SettingsError) as err:
        settings.load_settings(raw, stack="test", region="us-east-1")
    return str(err.value)


def test_sender_email_outside_the_dkim_domain_is_refused() -> None:
    text = _settings_problem(domain="example.org", subdomain="redcap", hostInRoute53=True,
                             senderEmail="redcap-admin@example.org")
    assert ("redcap:senderEmail = 'redcap-admin@example.org': allowed: an address at redcap.example.org or a "
            "subdomain of it (the SES domain identity, DKIM-signed, so DMARC aligns); "
            "example: redcap@redcap.example.org") in text


def test_sender_email_without_a_zone_is_refused() -> None:
    text = _settings_problem(senderEmail="redcap@redcap.example.org")
    assert ("redcap:senderEmail = 'redcap@redcap.example.org': allowed: a sender only with a Route53 zone "
            "(redcap:domain and hostInRoute53 true or a zone name), where it must lie in the DKIM-signed domain; "
            "without a zone REDCap sends as redcap:email; example: pulumi config rm redcap:senderEmail") in text
