"""Email (issue 3): SES with and without a zone, SMTP credentials, bounces; GuardDuty on/off."""
from __future__ import annotations

import json

import pytest

import harness
from components import email as mail

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


@pytest.mark.parametrize("email, domain, sender, own_identity", [
    ("admin@example.org", None, "admin@example.org", True),
    ("admin@example.org", "redcap.example.org", "admin@example.org", True),
    ("admin@redcap.example.org", "redcap.example.org", "admin@redcap.example.org", False),
    ("admin@lab.redcap.example.org", "redcap.example.org", "admin@lab.redcap.example.org", False),
    ("admin@xredcap.example.org", "redcap.example.org", "admin@xredcap.example.org", True),
    (None, "redcap.example.org", "no-reply@redcap.example.org", False),
])
def test_sender_and_address_identity(email, domain, sender, own_identity) -> None:
    assert mail.sender_address(email, domain) == sender
    assert mail.address_identity_needed(email, domain) is own_identity


def test_smtp_policy_scoped_to_identities() -> None:
    doc = json.loads(mail.smtp_send_policy(["arn:b", "arn:a"], "arn:cs"))
    assert doc["Statement"] == [{"Sid": "SendFromRedcapIdentities", "Effect": "Allow",
                                 "Action": ["ses:SendEmail", "ses:SendRawEmail"],
                                 "Resource": ["arn:a", "arn:b", "arn:cs"]}]


# --- under mocks ---------------------------------------------------------------------------

def test_without_zone_an_address_identity(dev_run: harness.StackRun) -> None:
    run = dev_run
    identity = run.one(IDENTITY)
    assert identity.inputs == {"emailIdentity": "redcap-admin@example.org"}
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
    # prod's email is outside redcap.example.org, so it is verified as an address of its own.
    address = run.one(IDENTITY, "address")
    assert address.inputs["emailIdentity"] == "redcap-admin@example.org"
    assert run.outputs["sesIdentityArn"] == domain.outputs["arn"]


def test_bounces_to_encrypted_topic_and_identities_use_configuration_set(prod_run: harness.StackRun) -> None:
    run = prod_run
    config_set = run.one(CONFIG_SET)
    assert config_set.inputs["configurationSetName"] == "redcap-prod"
    for identity in run.of_type(IDENTITY):
        assert identity.inputs["configurationSetName"] == "redcap-prod"
        assert config_set.urn in identity.dependencies  # the set exists before an identity names it
    topic = run.one(TOPIC, "bounces")
    assert bounce_topics(run) == [topic]
    assert topic.inputs["kmsMasterKeyId"] == run.one("aws:kms/key:Key").outputs["arn"]
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
    assert secret.inputs["kmsKeyId"] == run.one("aws:kms/key:Key").outputs["arn"]
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
