"""E-mail subscriptions of the stack's SNS topics (SES bounces, App Runner operation results).

An SNS e-mail subscription exists only once its recipient clicks the link in the confirmation
mail. AWS deletes a subscription that is still unconfirmed after three days; a refresh (and so a
drift run) then finds it gone and drops it from the state, and the next `pulumi up` (or a drift
remediation, which is `pulumi up --refresh`) subscribes the address again and sends another
confirmation mail, every time. So a stage either subscribes its addresses and someone confirms
each mail (redcap:emailSubscriptions true, the default), or it creates the topics only and the
operator subscribes by hand, outside the stack's state (false): nothing then appears or vanishes
behind Pulumi's back. Either way the stack exports what there is to confirm or subscribe
(`emailSubscriptions`, docs/email.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class EmailSubscription:
    purpose: str
    address: str
    topic_arn: pulumi.Output[str]
    managed: bool  # True: the stack subscribes the address (and its owner must confirm)


def email_subscription(name: str, *, topic: aws.sns.Topic, address: str, purpose: str, subscribe: bool,
                       parent: pulumi.Resource) -> EmailSubscription:
    """Subscribe `address` to `topic` when `subscribe`; either way, describe what to confirm."""
    if subscribe:
        aws.sns.TopicSubscription(name, topic=topic.arn, protocol="email", endpoint=address,
                                  opts=pulumi.ResourceOptions(parent=parent))
    return EmailSubscription(purpose=purpose, address=address, topic_arn=topic.arn, managed=subscribe)


def subscription_row(purpose: str, address: str, topic_arn: str, managed: bool, region: str) -> dict[str, Any]:
    """One entry of the `emailSubscriptions` stack output."""
    row: dict[str, Any] = {"purpose": purpose, "address": address, "topicArn": topic_arn}
    if managed:
        row["confirm"] = ("click the link in the mail 'AWS Notification - Subscription Confirmation' within "
                          "3 days (docs/email.md)")
    else:
        row["subscribe"] = (f"aws sns subscribe --region {region} --topic-arn {topic_arn} --protocol email "
                            f"--notification-endpoint {address}")
    return row


def export_rows(subscriptions: Sequence[EmailSubscription], region: str) -> pulumi.Output[list[dict[str, Any]]]:
    """The `emailSubscriptions` stack output: every address to confirm or subscribe, by purpose."""
    rows = [pulumi.Output.from_input(s.topic_arn).apply(
        lambda arn, s=s: subscription_row(s.purpose, s.address, arn, s.managed, region)) for s in subscriptions]
    return pulumi.Output.all(*rows).apply(lambda found: sorted(found, key=lambda r: (r["purpose"], r["address"])))
