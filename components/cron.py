"""Cron: EventBridge calls REDCap's cron.php every `cronMinutes` minutes.

REDCap's own per-server cron misbehaves when the service runs several instances, so the call is
made from outside: an API destination `GET https://<host>/cron.php` on a rate() rule. The request
carries the header `X-Redcap-Cron-Secret: <HMAC of the cron secret>`, the value the WAF's cron
rule requires. A header, not a query argument: ALB access logs record the full request line,
query string included, and never request headers; the WAF log redacts the header.

The header is the connection's API-key authorization, so EventBridge keeps the HMAC in the
Secrets Manager secret it manages for the connection (the API key value is a sensitive field of
the EventBridge API, never returned), encrypted with the stack's KMS key; in Pulumi's state it
is a secret. EventBridge reads it with its API-destinations service-linked role, which may only
use keys tagged EventBridgeApiDestinations=true (the stack key carries the tag when cron runs).

App Runner is called at its default URL (the custom domain may not resolve yet); ECS at the
custom domain (its certificate is for that name only); Express at the distribution's
*.cloudfront.net name (it answers before the custom domain's DNS does). cronMinutes 0: no rule
at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.firewall import CRON_HEADER

CRON_PATH = "/cron.php"


@dataclass(frozen=True)
class CronArgs:
    context: AwsContext
    host: pulumi.Input[str]
    search_string: pulumi.Input[str]
    minutes: int
    runtime_kind: str  # "apprunner", "ecs" or "express": names and descriptions only
    # The stack key (tagged for EventBridge API destinations), for the connection's secret.
    kms_key_arn: Optional[pulumi.Input[str]] = None


def schedule_expression(minutes: int) -> str:
    if minutes < 1:
        raise ValueError("cron minutes must be at least 1 for a schedule")
    return f"rate({minutes} minute{'s' if minutes != 1 else ''})"


def cron_endpoint(host: str) -> str:
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    return f"https://{host}{CRON_PATH}"


def connection_name(stack: str) -> str:
    """At most 64 characters (EventBridge); the stack name has at most 40."""
    return f"redcap-{stack}-cron-header"


def connection_auth(search_string: pulumi.Input[str]) -> dict:
    """The connection's authorization: the cron header as an API key, its value secret."""
    return {"api_key": {"key": CRON_HEADER, "value": pulumi.Output.secret(search_string)}}


def invoke_policy(destination_arn: str) -> str:
    return policies.document([policies.allow(["events:InvokeApiDestination"], [destination_arn],
                                             sid="CallCron")])


class Cron(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    rule_name: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: CronArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:cron:Cron", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        self.endpoint = pulumi.Output.from_input(args.host).apply(cron_endpoint)
        self.rule_name = None

        if args.minutes > 0:
            connection = aws.cloudwatch.EventConnection(
                # A connection of its own name, not an update of the one that sent the secret as a
                # query string: UpdateConnection keeps invocation parameters it is not sent, so an
                # updated connection would go on adding `?secret=` (this name replaces it instead).
                f"{name}-connection", name=connection_name(ctx.stack),
                description="Connection to REDCap cron.php",
                authorization_type="API_KEY",
                auth_parameters=connection_auth(args.search_string),
                kms_key_identifier=args.kms_key_arn,
                opts=child)
            destination = aws.cloudwatch.EventApiDestination(
                f"{name}-destination", name=f"redcap-{ctx.stack}-{args.runtime_kind}-cron",
                description=f"Call cron on REDCap deployment {args.runtime_kind}",
                connection_arn=connection.arn, http_method="GET", invocation_endpoint=self.endpoint,
                invocation_rate_limit_per_second=1, opts=child)
            role = aws.iam.Role(
                f"{name}-role",
                assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("events.amazonaws.com", a)),
                opts=child)
            invoke = aws.iam.RolePolicy(f"{name}-invoke", role=role.id, policy=destination.arn.apply(invoke_policy),
                                        opts=child)
            rule = aws.cloudwatch.EventRule(
                f"{name}-schedule", name=f"redcap-{ctx.stack}-cron",
                description="Runs REDCap's cron.php", schedule_expression=schedule_expression(args.minutes),
                opts=child)
            aws.cloudwatch.EventTarget(
                f"{name}-target", rule=rule.name, arn=destination.arn, role_arn=role.arn,
                # A missed minute is made up by the next call: no retries piling up.
                retry_policy={"maximum_event_age_in_seconds": 60, "maximum_retry_attempts": 0},
                # The first call is made with the role: its grant must exist before the target.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[invoke]))
            self.rule_name = rule.name

        self.register_outputs({"endpoint": self.endpoint})
