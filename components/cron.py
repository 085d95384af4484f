"""Cron: EventBridge calls REDCap's cron.php every `cronMinutes` minutes.

REDCap's own per-server cron misbehaves when the service runs several instances, so the call is
made from outside: an API destination `GET https://<host>/cron.php` on a rate() rule. The
request carries `?secret=<HMAC of the cron secret>`, the value the WAF's cron rule requires.
That query argument is kept in the EventBridge connection's invocation parameters marked
secret (EventBridge stores it in a Secrets Manager secret of its own), so the
HMAC never appears in the API destination's endpoint. The connection still needs an
authorization; REDCap checks none, so it is an API-key header with a fixed non-secret value.

App Runner is called at its default URL (the custom domain may not resolve yet); ECS at the
custom domain (its certificate is for that name only). cronMinutes 0: no rule at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import AwsContext
from components.firewall import CRON_QUERY_ARGUMENT

CRON_PATH = "/cron.php"


@dataclass(frozen=True)
class CronArgs:
    context: AwsContext
    host: pulumi.Input[str]
    search_string: pulumi.Input[str]
    minutes: int
    runtime_kind: str  # "apprunner" or "ecs": names and descriptions only


def schedule_expression(minutes: int) -> str:
    if minutes < 1:
        raise ValueError("cron minutes must be at least 1 for a schedule")
    return f"rate({minutes} minute{'s' if minutes != 1 else ''})"


def cron_endpoint(host: str) -> str:
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    return f"https://{host}{CRON_PATH}"


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
                f"{name}-connection", name=f"redcap-{ctx.stack}-cron",
                description="Connection to REDCap cron.php",
                authorization_type="API_KEY",
                auth_parameters={
                    "api_key": {"key": "X-Redcap-Cron", "value": "eventbridge"},
                    "invocation_http_parameters": {"query_strings": [{
                        "key": CRON_QUERY_ARGUMENT, "value": pulumi.Output.secret(args.search_string),
                        "is_value_secret": True}]},
                },
                # EventBridge keeps this in its own secret under an AWS-owned key: the stack key's
                # policy does not grant EventBridge the DescribeKey a customer key would need.
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
            aws.iam.RolePolicy(f"{name}-invoke", role=role.id, policy=destination.arn.apply(invoke_policy), opts=child)
            rule = aws.cloudwatch.EventRule(
                f"{name}-schedule", name=f"redcap-{ctx.stack}-cron",
                description="Runs REDCap's cron.php", schedule_expression=schedule_expression(args.minutes),
                opts=child)
            aws.cloudwatch.EventTarget(
                f"{name}-target", rule=rule.name, arn=destination.arn, role_arn=role.arn,
                # A missed minute is made up by the next call: no retries piling up.
                retry_policy={"maximum_event_age_in_seconds": 60, "maximum_retry_attempts": 0},
                opts=child)
            self.rule_name = rule.name

        self.register_outputs({"endpoint": self.endpoint})
