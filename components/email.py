"""Email: the SES identity REDCap sends from, the SMTP credentials of the container, and
bounce/complaint notifications.

- With a Route53 zone: a domain identity for the FQDN with Easy DKIM (the three CNAMEs are
  written into the zone; SES v2 verifies a domain through them) and MAIL FROM `mail.<fqdn>`
  with its MX and SPF records. In every zone mode the FQDN is the zone's own name or lies inside
  the zone, and only names under the FQDN are written, so an existing organisation zone
  (hostInRoute53 = '<zone>') keeps its own mail records untouched.
- The sender (msmtp `from`, REDCap's universal From) lies in the verified, DKIM-signed domain
  when there is a zone, so DMARC aligns: `sender` (redcap:senderEmail), else `email` when it lies
  in the domain, else `no-reply@<fqdn>`; `email` stays the notification address and needs no SES
  identity then. Without a zone the sender is `email`, an address identity of its own: its owner
  confirms the verification mail once.
  That address is the same in every stage, so its identity is shared on purpose: kept on
  destroy, without a stage's configuration set, and a further stage names it in
  `externalResources.sesIdentity` instead of creating it (docs/email.md).
- SMTP credentials: an IAM user allowed only ses:SendEmail / ses:SendRawEmail from our
  identities, and a secret encrypted with the stack key holding {"username", "password"}: the
  user's access key and its SES SMTP password, both made and rotated by components/rotation.py.
- `bounce_notification_email`: a configuration set whose BOUNCE and COMPLAINT events go to an
  encrypted SNS topic, with an e-mail subscription when `subscribe_emails`
  (components/notifications.py says why a stage may leave that to the operator); the domain
  identity uses the configuration set by default (an address identity never: it is shared).

A new SES account is in the sandbox (only verified recipients): docs/email.md explains the exit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.notifications import EmailSubscription, email_subscription
from components.secrets import rotated_key_user
from settings import covers

DKIM_TOKENS = 3  # Easy DKIM always issues three tokens
DNS_TTL = 1800
SEND_ACTIONS = ("ses:SendEmail", "ses:SendRawEmail")
BOUNCE_EVENTS = ("BOUNCE", "COMPLAINT")
SPF_RECORD = "v=spf1 include:amazonses.com ~all"


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def mail_from_domain(domain: str) -> str:
    return f"mail.{domain}"


def dkim_record(token: str, domain: str) -> tuple[str, str]:
    """(record name, CNAME value) of one Easy DKIM token."""
    return f"{token}._domainkey.{domain}", f"{token}.dkim.amazonses.com"


def mail_from_mx(region: str) -> str:
    return f"10 feedback-smtp.{region}.amazonses.com"


def in_domain(address: str, domain: str) -> bool:
    """True when the address is at the domain or one of its subdomains (covered by its identity)."""
    host = address.rpartition("@")[2].lower()
    return host == domain or host.endswith("." + domain)


def sender_address(email: Optional[str], domain: Optional[str], sender: Optional[str] = None) -> str:
    """The address REDCap sends as. With a domain identity it lies in that (DKIM-signed) domain:
    mail from outside it fails DMARC alignment, whatever SES accepts."""
    if domain:
        if sender is not None and not in_domain(sender, domain):
            raise ValueError(f"the sender {sender} must lie in {domain}, the DKIM-signed domain")
        if sender:
            return sender
        return email if email and in_domain(email, domain) else f"no-reply@{domain}"
    if email:
        return email
    raise ValueError("SES needs redcap:email or a domain with a Route53 zone")


def address_identity_needed(sender: str, domain: Optional[str]) -> bool:
    """Only a sender outside any domain identity (no zone) is an address identity of its own."""
    return not (domain and in_domain(sender, domain))


def smtp_send_policy(identity_arns: Sequence[str], configuration_set_arn: Optional[str]) -> str:
    """Send only from our identities. SES also authorises the configuration set a message uses."""
    resources = sorted(identity_arns) + ([configuration_set_arn] if configuration_set_arn else [])
    return policies.document([policies.allow(SEND_ACTIONS, resources, sid="SendFromRedcapIdentities")])


def bounce_topic_policy(topic_arn: str, account_id: str, configuration_set_arn: str) -> str:
    return policies.service_topic_policy(topic_arn, "SesPublishesEventsOfOurConfigurationSet", "ses.amazonaws.com",
                                         {"StringEquals": {"aws:SourceAccount": account_id,
                                                           "aws:SourceArn": configuration_set_arn}})


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmailArgs:
    context: AwsContext
    kms_key_arn: pulumi.Input[str]
    # The FQDN and the zone holding it; both None when there is no Route53 zone.
    domain: Optional[str] = None
    zone_id: Optional[pulumi.Input[str]] = None
    email: Optional[str] = None
    bounce_notification_email: Optional[str] = None
    # redcap:senderEmail: inside `domain` (settings check it).
    sender: Optional[str] = None
    # redcap:emailSubscriptions: subscribe bounce_notification_email to the bounce topic.
    subscribe_emails: bool = True
    # An SES identity that exists already (another stage's, or made by hand) and covers the sender:
    # sent with, never created or changed here.
    existing_identity: Optional[str] = None


def identity_arn(partition: str, region: str, account_id: str, identity: str) -> str:
    return f"arn:{partition}:ses:{region}:{account_id}:identity/{identity}"


class Email(pulumi.ComponentResource):
    sender_address: str
    identity_arn: pulumi.Output[str]
    identity_arns: pulumi.Output[list[str]]
    configuration_set_name: Optional[str]
    smtp_credentials_secret_arn: pulumi.Output[str]
    smtp_user_name: pulumi.Output[str]
    smtp_user_arn: pulumi.Output[str]
    bounce_topic_arn: Optional[pulumi.Output[str]]
    email_subscriptions: list[EmailSubscription]

    def __init__(self, name: str, args: EmailArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:email:Email", name, None, opts)
        if (args.domain is None) != (args.zone_id is None):
            raise ValueError("EmailArgs.domain and EmailArgs.zone_id go together")
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        self.sender_address = sender_address(args.email, args.domain, args.sender)

        self.configuration_set_name = None
        self.bounce_topic_arn = None
        self.email_subscriptions = []
        # Identities name the configuration set through the resource's output, so SES sees the
        # set created before an identity refers to it.
        configuration_set: Optional[aws.sesv2.ConfigurationSet] = None
        if args.bounce_notification_email:
            configuration_set = self._bounces(name, args, child)
        set_name = configuration_set.configuration_set_name if configuration_set else None
        configuration_set_arn = configuration_set.arn if configuration_set else None

        identities: list[aws.sesv2.EmailIdentity] = []
        if args.domain is not None and args.zone_id is not None:
            identities.append(self._domain_identity(name, args.domain, args.zone_id, set_name, ctx, child))
        arns: list[pulumi.Output[str]] = [i.arn for i in identities]
        if address_identity_needed(self.sender_address, args.domain):
            if args.existing_identity and covers(args.existing_identity, self.sender_address):
                arns.append(pulumi.Output.all(ctx.partition, ctx.account_id).apply(
                    lambda a: identity_arn(a[0], ctx.region, a[1], str(args.existing_identity))))
            else:
                # An address cannot carry the stage, so other stages may send with this identity
                # (docs/email.md): a destroy never deletes it, and it holds no configuration set of
                # this stage (SES rejects every message of an identity whose default set is gone).
                address = aws.sesv2.EmailIdentity(
                    f"{name}-address", email_identity=self.sender_address,
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
                arns.append(address.arn)
        self.identity_arn = arns[0]
        self.identity_arns = pulumi.Output.all(*arns).apply(sorted)

        self.smtp_credentials_secret_arn = self._smtp_user(name, args, configuration_set_arn, child)
        self.register_outputs({
            "senderAddress": self.sender_address,
            "identityArn": self.identity_arn,
            "smtpCredentialsSecretArn": self.smtp_credentials_secret_arn,
            "configurationSetName": self.configuration_set_name,
        })

    def _domain_identity(self, name: str, domain: str, zone_id: pulumi.Input[str],
                         configuration_set_name: Optional[pulumi.Output[str]], ctx: AwsContext,
                         child: pulumi.ResourceOptions) -> aws.sesv2.EmailIdentity:
        identity = aws.sesv2.EmailIdentity(
            f"{name}-domain", email_identity=domain,
            dkim_signing_attributes={"next_signing_key_length": "RSA_2048_BIT"},
            configuration_set_name=configuration_set_name, opts=child)
        tokens = identity.dkim_signing_attributes.apply(lambda attrs: sorted(attrs.tokens or []))
        # Three records by index (the count is fixed), never created inside an apply.
        for index in range(DKIM_TOKENS):
            token = tokens.apply(lambda t, i=index: t[i])
            aws.route53.Record(
                f"{name}-dkim-{index}", zone_id=zone_id, type="CNAME", ttl=DNS_TTL,
                name=token.apply(lambda t: dkim_record(t, domain)[0]),
                records=[token.apply(lambda t: dkim_record(t, domain)[1])],
                opts=child)
        aws.sesv2.EmailIdentityMailFromAttributes(
            f"{name}-mail-from", email_identity=identity.email_identity,
            mail_from_domain=mail_from_domain(domain), behavior_on_mx_failure="USE_DEFAULT_VALUE", opts=child)
        aws.route53.Record(
            f"{name}-mail-from-mx", zone_id=zone_id, name=mail_from_domain(domain), type="MX", ttl=DNS_TTL,
            records=[mail_from_mx(ctx.region)], opts=child)
        aws.route53.Record(
            f"{name}-mail-from-spf", zone_id=zone_id, name=mail_from_domain(domain), type="TXT", ttl=DNS_TTL,
            records=[SPF_RECORD], opts=child)
        return identity

    def _bounces(self, name: str, args: EmailArgs, child: pulumi.ResourceOptions) -> aws.sesv2.ConfigurationSet:
        ctx = args.context
        self.configuration_set_name = f"redcap-{ctx.stack}"
        configuration_set = aws.sesv2.ConfigurationSet(
            f"{name}-configuration-set", configuration_set_name=self.configuration_set_name, opts=child)
        topic = aws.sns.Topic(
            f"{name}-bounces", kms_master_key_id=args.kms_key_arn,
            display_name=f"REDCap {ctx.stack} e-mail bounces", opts=child)
        topic_policy = aws.sns.TopicPolicy(
            f"{name}-bounces-policy", arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, ctx.account_id, configuration_set.arn).apply(
                lambda a: bounce_topic_policy(a[0], a[1], a[2])),
            opts=child)
        assert args.bounce_notification_email is not None
        self.email_subscriptions.append(email_subscription(
            f"{name}-bounces-subscription", topic=topic, address=args.bounce_notification_email,
            purpose="SES bounces and complaints", subscribe=args.subscribe_emails, parent=self))
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-bounces-destination", configuration_set_name=configuration_set.configuration_set_name,
            event_destination_name="bounces-and-complaints",
            event_destination={"enabled": True, "matching_event_types": list(BOUNCE_EVENTS),
                               "sns_destination": {"topic_arn": topic.arn}},
            # SES may publish as soon as the destination exists: the topic must already let it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[topic_policy]))
        self.bounce_topic_arn = topic.arn
        return configuration_set

    def _smtp_user(self, name: str, args: EmailArgs, configuration_set_arn: Optional[pulumi.Output[str]],
                   child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        # The key and its SMTP password are made and rotated by components/rotation.py, never by Pulumi.
        user, secret = rotated_key_user(
            user=f"{name}-smtp-user", policy=f"{name}-smtp-send", secret=f"{name}-smtp-credentials",
            user_policy=pulumi.Output.all(self.identity_arns, configuration_set_arn).apply(
                lambda a: smtp_send_policy(a[0], a[1])),
            kms_key_arn=args.kms_key_arn, description="REDCap SES SMTP credentials (username, password) for msmtp",
            opts=child)
        self.smtp_user_name = user.name
        self.smtp_user_arn = user.arn
        return secret.arn

