"""Firewall: the WAFv2 web ACL in front of REDCap, its IP sets, WAF logging, and the cron shared
secret. REGIONAL scope (App Runner, ECS load balancer) in the stack's region, or CLOUDFRONT scope
(the Express runtime's distribution), which AWS accepts in us-east-1 only.

The rules are the original's (names, priorities, statements, actions; docs/waf.md has the
table), each built by a pure function below so tests compare them with the spec. Beyond the
original: IPv6 allow-list entries get their own IP set, the cron secret travels in a request
header instead of the query string (which ALB access logs record in full), requests are logged
to an encrypted CloudWatch log group with the cookie, authorization and cron headers redacted,
and individual SQLi sub-rules can be switched to count (REDCap calculated fields trip SQLi_BODY,
upstream #57).

With `surveys_exempt` (redcap:allowListScope allButSurveys) the country and IP rules do not
block REDCap's public survey endpoints (`SURVEY_PATH_PREFIX`, `SURVEY_RESOURCES_REGEX`); every
other rule applies to them as before. docs/waf.md lists what a participant can reach.

The component never associates the ACL: the compute component that owns the App Runner service
or the load balancer creates the `wafv2.WebAclAssociation` with `web_acl_arn` (the Express
runtime names it on its CloudFront distribution). With `external_web_acl_arn` that ARN is passed
through and no ACL of ours exists.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import policies
from components.context import AwsContext

# Rule names and priorities of the original (prototyping/constructs/Waf.ts); WAF evaluates by
# priority, the names show up in metrics, logs and the console.
COUNTRY_RULE = ("country-list", 10)
CRON_RULE = ("cron-execution", 20)
RATE_RULE = ("rate-filter", 30)
IP_RULE = ("ip-filter", 40)
MANAGED_RULE_GROUPS: tuple[tuple[str, int], ...] = (
    ("AWSManagedRulesAmazonIpReputationList", 200),
    ("AWSManagedRulesCommonRuleSet", 300),
    ("AWSManagedRulesKnownBadInputsRuleSet", 400),
    ("AWSManagedRulesSQLiRuleSet", 500),
)
# CommonRuleSet rules that block ordinary REDCap use (file uploads, rich-text fields, API
# clients without a User-Agent): counted, not blocked, as the original does since v1.1.2 (#87).
COMMON_RULES_TO_COUNT: tuple[str, ...] = (
    "CrossSiteScripting_BODY", "GenericRFI_BODY", "NoUserAgent_HEADER", "SizeRestrictions_BODY",
)
CRON_METRIC = "redcap-cron-exec"
CRON_PATH_SUFFIX = "cron.php"
# The header that carries the cron HMAC (the caller sends `X-Redcap-Cron-Secret: <HMAC>`). Header
# names are case-insensitive, and WAF compares a single_header's name case-insensitively.
CRON_HEADER = "x-redcap-cron-secret"
RATE_LIMIT = 3000           # requests per IP ...
RATE_WINDOW_SECONDS = 300   # ... per 5 minutes (the CloudFormation default the original relied on)
RESPONSE_BODY_KEY = "response"
RESPONSE_BODY = "<div> Access denied </div>"
BLOCKED_STATUS = 403
# Headers that carry REDCap session cookies, API/basic credentials and the cron HMAC: never
# written to logs.
REDACTED_HEADERS: tuple[str, ...] = ("authorization", "cookie", CRON_HEADER)
CRON_SECRET_LENGTH = 48
# REDCap's public survey surface (redcap_vX.Y.Z/Config/init_functions.php: APP_PATH_SURVEY is
# <webroot parent>/surveys/; a survey page's images, CSS, JavaScript and webpack bundles come from
# APP_PATH_WEBROOT/Resources/; its AJAX and file requests go through surveys/index.php
# ?__passthru=<file>, which REDCap restricts to a fixed list of survey files).
SURVEY_PATH_PREFIX = "/surveys/"
SURVEY_RESOURCES_REGEX = "^/redcap_v[0-9]+[.][0-9]+[.][0-9]+/Resources/"
# Percent-decode once, then resolve ./ ../ and repeated slashes - what Apache does before it maps
# the path - so /surveys/../ControlCenter/ is judged as /ControlCenter/, not as a survey.
PATH_NORMALISATION: tuple[tuple[int, str], ...] = ((0, "URL_DECODE"), (1, "NORMALIZE_PATH"))
CLOUDFRONT_REGION = "us-east-1"  # AWS accepts CLOUDFRONT-scope web ACLs (and their logs) only here
Scope = Literal["REGIONAL", "CLOUDFRONT"]


# --------------------------------------------------------------------------------------------
# Pure functions: the cron HMAC and one rule body per rule (snake_case pulumi input dicts)
# --------------------------------------------------------------------------------------------

def cron_search_string(secret: str) -> str:
    """hex(HMAC-SHA256(key=secret, msg=reversed secret)), byte for byte the original's value.

    The original reverses with JS `split('').reverse()` (UTF-16 code units), which equals
    Python's `[::-1]` for every character of the Basic Multilingual Plane.
    """
    return hmac.new(secret.encode("utf-8"), secret[::-1].encode("utf-8"), hashlib.sha256).hexdigest()


def visibility(metric_name: str, sampled: bool = True) -> dict[str, Any]:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric_name,
            "sampled_requests_enabled": sampled}


def _no_transformation() -> list[dict[str, Any]]:
    return [{"priority": 0, "type": "NONE"}]


def cron_path_match() -> dict[str, Any]:
    """The request path ends with cron.php (REDCap's cron entry point)."""
    return {"byte_match_statement": {
        "field_to_match": {"uri_path": {}},
        "positional_constraint": "ENDS_WITH",
        "search_string": CRON_PATH_SUFFIX,
        "text_transformations": _no_transformation(),
    }}


def _normalised_path() -> list[dict[str, Any]]:
    return [{"priority": priority, "type": kind} for priority, kind in PATH_NORMALISATION]


def survey_path_statements() -> list[dict[str, Any]]:
    """The public survey endpoints: the /surveys/ entry point (page, AJAX and file passthru) and
    the static files under /redcap_v<version>/Resources/ that a survey page loads."""
    return [
        {"byte_match_statement": {
            "field_to_match": {"uri_path": {}},
            "positional_constraint": "STARTS_WITH",
            "search_string": SURVEY_PATH_PREFIX,
            "text_transformations": _normalised_path(),
        }},
        {"regex_match_statement": {
            "field_to_match": {"uri_path": {}},
            "regex_string": SURVEY_RESOURCES_REGEX,
            "text_transformations": _normalised_path(),
        }},
    ]


def _not(statement: dict[str, Any]) -> dict[str, Any]:
    return {"not_statement": {"statement": statement}}


def _block_with_body() -> dict[str, Any]:
    return {"block": {"custom_response": {"response_code": BLOCKED_STATUS,
                                          "custom_response_body_key": RESPONSE_BODY_KEY}}}


def _exemptions(surveys_exempt: bool) -> list[dict[str, Any]]:
    """NOT(...) terms every allow-list rule ANDs in: cron.php always, the surveys on request.

    Each exemption is its own NOT term of the rule's AND - NOT(a) AND NOT(b) rather than
    NOT(a OR b) - which keeps every rule within the three statement levels the provider's
    `rules` schema supports."""
    terms = [_not(cron_path_match())]
    if surveys_exempt:
        terms.extend(_not(statement) for statement in survey_path_statements())
    return terms


def country_rule(countries: Sequence[str], surveys_exempt: bool = False) -> dict[str, Any]:
    """Block other countries, except cron.php (EventBridge calls it from unknown AWS addresses)
    and, with `surveys_exempt`, the public survey endpoints."""
    name, priority = COUNTRY_RULE
    return {
        "name": name,
        "priority": priority,
        "action": _block_with_body(),
        "statement": {"and_statement": {"statements": [
            _not({"geo_match_statement": {"country_codes": sorted(set(countries))}}),
            *_exemptions(surveys_exempt),
        ]}},
        "visibility_config": visibility(name),
    }


def cron_rule(search_string: pulumi.Input[str]) -> dict[str, Any]:
    """Block cron.php unless its cron header is exactly the HMAC."""
    name, priority = CRON_RULE
    return {
        "name": name,
        "priority": priority,
        "action": {"block": {}},
        "statement": {"and_statement": {"statements": [
            cron_path_match(),
            _not({"byte_match_statement": {
                "field_to_match": {"single_header": {"name": CRON_HEADER}},
                "positional_constraint": "EXACTLY",
                "search_string": search_string,
                "text_transformations": _no_transformation(),
            }}),
        ]}},
        "visibility_config": visibility(CRON_METRIC),
    }


def rate_rule() -> dict[str, Any]:
    name, priority = RATE_RULE
    return {
        "name": name,
        "priority": priority,
        "action": {"block": {}},
        "statement": {"rate_based_statement": {
            "aggregate_key_type": "IP",
            "limit": RATE_LIMIT,
            "evaluation_window_sec": RATE_WINDOW_SECONDS,
        }},
        "visibility_config": visibility(name),
    }


def ip_rule(ip_set_arns: Sequence[pulumi.Input[str]], surveys_exempt: bool = False) -> dict[str, Any]:
    """Block addresses in none of the allow-list IP sets (IPv4 and/or IPv6), except cron.php and,
    with `surveys_exempt`, the public survey endpoints.

    AND(NOT in-v4-set, NOT in-v6-set, NOT cron) rather than NOT(OR(...)): the same logic within
    the three statement levels the provider's `rules` schema supports.
    """
    if not ip_set_arns:
        raise ValueError("ip_rule needs at least one IP set")
    name, priority = IP_RULE
    return {
        "name": name,
        "priority": priority,
        "action": _block_with_body(),
        "statement": {"and_statement": {"statements": [
            *[_not({"ip_set_reference_statement": {"arn": arn}}) for arn in ip_set_arns],
            *_exemptions(surveys_exempt),
        ]}},
        "visibility_config": visibility(name),
    }


def managed_rule(group: str, priority: int, rules_to_count: Sequence[str] = ()) -> dict[str, Any]:
    """An AWS managed rule group, its own actions kept (override none) except the counted rules."""
    statement: dict[str, Any] = {"vendor_name": "AWS", "name": group}
    if rules_to_count:
        statement["rule_action_overrides"] = [
            {"name": rule, "action_to_use": {"count": {}}} for rule in sorted(set(rules_to_count))]
    name = f"AWS-{group}"
    return {
        "name": name,
        "priority": priority,
        "override_action": {"none": {}},
        "statement": {"managed_rule_group_statement": statement},
        "visibility_config": visibility(name),
    }


def managed_rules(sqli_rules_to_count: Sequence[str] = ()) -> list[dict[str, Any]]:
    counted = {"AWSManagedRulesCommonRuleSet": COMMON_RULES_TO_COUNT,
               "AWSManagedRulesSQLiRuleSet": tuple(sqli_rules_to_count)}
    return [managed_rule(group, priority, counted.get(group, ())) for group, priority in MANAGED_RULE_GROUPS]


def web_acl_rules(*, countries: Sequence[str], search_string: pulumi.Input[str],
                  ip_set_arns: Sequence[pulumi.Input[str]],
                  sqli_rules_to_count: Sequence[str] = (), surveys_exempt: bool = False) -> list[dict[str, Any]]:
    """Every rule of the ACL in priority order; the geo and IP rules only when their list is set."""
    rules: list[dict[str, Any]] = []
    if countries:
        rules.append(country_rule(countries, surveys_exempt))
    rules.append(cron_rule(search_string))
    rules.append(rate_rule())
    if ip_set_arns:
        rules.append(ip_rule(ip_set_arns, surveys_exempt))
    rules.extend(managed_rules(sqli_rules_to_count))
    return sorted(rules, key=lambda r: r["priority"])


def split_by_family(cidrs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(IPv4 CIDRs, IPv6 CIDRs), each sorted and de-duplicated; a WAF IP set holds one family."""
    v4 = sorted({c for c in cidrs if ipaddress.ip_network(c).version == 4})
    v6 = sorted({c for c in cidrs if ipaddress.ip_network(c).version == 6})
    return v4, v6


def redacted_fields() -> list[dict[str, Any]]:
    """Credentials and the cron HMAC (headers) and query strings, which carry survey hashes and
    record ids, never reach the WAF log."""
    return [{"single_header": {"name": header}} for header in REDACTED_HEADERS] + [{"query_string": {}}]


def log_delivery_policy(log_group_arn: str, account_id: str, partition: str, region: str) -> str:
    """CloudWatch Logs resource policy of the WAF log group: AWS's log delivery service may write
    it, on behalf of this account's deliveries only."""
    return policies.document([{
        "Sid": "WafLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"{log_group_arn}:log-stream:*"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                      "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:{region}:{account_id}:*"}},
    }])


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FirewallArgs:
    context: AwsContext
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    allowed_ips: tuple[str, ...] = ()
    allowed_countries: tuple[str, ...] = ()
    # Secret Output from redcap:cronSecret; None = generate one (pulumi-random, kept in state).
    cron_secret: Optional[pulumi.Output[str]] = None
    external_web_acl_arn: Optional[str] = None
    sqli_rules_to_count: tuple[str, ...] = ()
    # redcap:allowListScope allButSurveys: the allow-lists leave the public survey endpoints open.
    surveys_exempt: bool = False
    # CLOUDFRONT for a CloudFront distribution: the ACL, its IP sets and its logs live in us-east-1.
    scope: Scope = "REGIONAL"


def waf_region(scope: Scope, stack_region: str) -> str:
    """Where the ACL, IP sets and WAF log group are created."""
    return CLOUDFRONT_REGION if scope == "CLOUDFRONT" else stack_region


def waf_log_group_name(stack: str, scope: Scope, stack_region: str) -> str:
    """`aws-waf-logs-` (WAF delivers only there) + the stage; a CLOUDFRONT-scope group lives in
    us-east-1 for every stage of the account, so it also names the stage's region, and a
    runtime switch between scopes never reuses the old group's name before it is deleted."""
    base = f"aws-waf-logs-redcap-{stack}"
    return f"{base}-{stack_region}" if scope == "CLOUDFRONT" else base


class Firewall(pulumi.ComponentResource):
    web_acl_arn: pulumi.Output[str]
    # What the cron caller must send on GET /cron.php: header `cron_header` = `cron_search_string`.
    cron_header: str = CRON_HEADER
    cron_search_string: pulumi.Output[str]
    log_group_name: Optional[pulumi.Output[str]]
    scope: Scope

    def __init__(self, name: str, args: FirewallArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:firewall:Firewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.context

        secret = args.cron_secret if args.cron_secret is not None else random.RandomPassword(
            f"{name}-cron-secret",
            # Letters and digits only: safe to paste into any shell, config file or header.
            length=CRON_SECRET_LENGTH, special=False,
            opts=child).result
        self.cron_search_string = pulumi.Output.secret(pulumi.Output.from_input(secret).apply(cron_search_string))
        self.log_group_name = None
        self.scope = args.scope

        if args.external_web_acl_arn:
            # Somebody else's ACL (its rules, its logging): nothing of ours to create.
            self.web_acl_arn = pulumi.Output.from_input(args.external_web_acl_arn)
        else:
            self.web_acl_arn = self._web_acl(name, args, ctx, child)

        self.register_outputs({"webAclArn": self.web_acl_arn})

    def _web_acl(self, name: str, args: FirewallArgs, ctx: AwsContext,
                 child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        region = waf_region(args.scope, ctx.region)
        # A CLOUDFRONT-scope ACL of a stage elsewhere is created in us-east-1 through the
        # resources' own `region` (the stack's provider, credentials and default tags apply).
        where: dict[str, str] = {"region": region} if region != ctx.region else {}
        v4, v6 = split_by_family(args.allowed_ips)
        ip_set_arns: list[pulumi.Output[str]] = []
        for version, addresses in (("IPV4", v4), ("IPV6", v6)):
            if addresses:
                ip_set = aws.wafv2.IpSet(
                    f"{name}-allowed-{version.lower()}", scope=args.scope, ip_address_version=version,
                    addresses=addresses, description=f"REDCap {ctx.stack}: allowed {version} addresses",
                    **where, opts=child)
                ip_set_arns.append(ip_set.arn)

        acl = aws.wafv2.WebAcl(
            f"{name}-web-acl",
            scope=args.scope,
            description=f"REDCap {ctx.stack}",
            default_action={"allow": {}},
            custom_response_bodies=[{"key": RESPONSE_BODY_KEY, "content_type": "TEXT_HTML",
                                     "content": RESPONSE_BODY}],
            rules=web_acl_rules(countries=args.allowed_countries, search_string=self.cron_search_string,
                                ip_set_arns=ip_set_arns, sqli_rules_to_count=args.sqli_rules_to_count,
                                surveys_exempt=args.surveys_exempt),
            # Sampled requests off at ACL level, as the original; the WAF log has every request.
            visibility_config=visibility(f"redcap-{ctx.stack}-waf", sampled=False),
            **where,
            opts=child,
        )

        # A log group can only use a KMS key of its own region: a stage outside us-east-1 gets
        # a key there for its CLOUDFRONT-scope WAF log.
        log_key_arn = args.kms_key_arn if not where else self._log_key(name, ctx, region, child)
        group = aws.cloudwatch.LogGroup(
            f"{name}-waf-logs", name=waf_log_group_name(ctx.stack, args.scope, ctx.region),
            retention_in_days=args.log_retention_days, kms_key_id=log_key_arn, **where, opts=child)
        self.log_group_name = group.name
        # The log group's own delivery policy, in place before logging is switched on: otherwise
        # AWS appends to the account-wide CloudWatch Logs resource policy, whose size limit makes
        # the logging configuration fail once enough groups are listed in it.
        delivery = aws.cloudwatch.LogResourcePolicy(
            f"{name}-waf-logs-delivery", resource_arn=group.arn,
            policy_document=pulumi.Output.all(group.arn, ctx.account_id, ctx.partition).apply(
                lambda a: log_delivery_policy(a[0], a[1], a[2], region)),
            **where, opts=child)
        aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-waf-logging", resource_arn=acl.arn, log_destination_configs=[group.arn],
            redacted_fields=redacted_fields(), **where,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delivery]))
        return acl.arn

    def _log_key(self, name: str, ctx: AwsContext, region: str,
                 child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        key = aws.kms.Key(
            f"{name}-waf-log-key", description=f"REDCap {ctx.stack} ({ctx.region}): CloudFront WAF log in {region}",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=pulumi.Output.all(ctx.partition, ctx.account_id).apply(
                lambda a: policies.stack_key_policy(a[0], a[1], region)),
            region=region, opts=child)
        return key.arn
