"""A bundled, dated table of the AWS on-demand list prices (USD) that a stage's fixed costs
depend on, for the regions the documentation deploys to.

Prices change: the date says when the table was compiled. US East (N. Virginia), US East (Ohio)
and US West (Oregon) share these list prices for every service below. Other regions are not in
the table (the estimate refuses them rather than guess); add a column here to estimate one.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

PRICES_DATE = "2026-12-01"
HOURS_PER_MONTH = 730  # AWS's own convention for monthly figures


@dataclass(frozen=True)
class Prices:
    aurora_acu_hour: float              # Aurora Serverless v2 (Aurora Standard), per ACU-hour
    nat_gateway_hour: float             # per NAT gateway-hour (data processed extra)
    public_ipv4_hour: float             # per public IPv4 address-hour (NAT EIPs, ALB nodes)
    interface_endpoint_hour: float      # per VPC interface endpoint ENI (one per AZ)-hour
    alb_hour: float                     # per application load balancer-hour (LCUs extra)
    fargate_vcpu_hour: float            # Linux/x86 per vCPU-hour
    fargate_gb_hour: float              # Linux/x86 per GB-hour
    fargate_storage_gb_hour: float      # ephemeral storage above the free 20 GB, per GB-hour
    apprunner_vcpu_hour: float          # active instances only
    apprunner_gb_hour: float            # provisioned and active instances
    kms_key_month: float
    secret_month: float                 # Secrets Manager, per secret
    waf_acl_month: float
    waf_rule_month: float               # a rule or a managed rule group
    alarm_metric_month: float           # standard resolution, per metric an alarm reads
    dashboard_month: float
    custom_metric_month: float
    hosted_zone_month: float
    ec2_t3_medium_hour: float           # the tunnel host's default type
    lambda_request: float               # per request
    lambda_gb_second: float             # x86
    eventbridge_api_destination_call: float


_US = Prices(
    aurora_acu_hour=0.12, nat_gateway_hour=0.045, public_ipv4_hour=0.005, interface_endpoint_hour=0.01,
    alb_hour=0.0225, fargate_vcpu_hour=0.04048, fargate_gb_hour=0.004445, fargate_storage_gb_hour=0.000111,
    apprunner_vcpu_hour=0.064, apprunner_gb_hour=0.007, kms_key_month=1.0, secret_month=0.40,
    waf_acl_month=5.0, waf_rule_month=1.0, alarm_metric_month=0.10, dashboard_month=3.0,
    custom_metric_month=0.30, hosted_zone_month=0.50, ec2_t3_medium_hour=0.0416, lambda_request=0.0000002,
    lambda_gb_second=0.0000166667, eventbridge_api_destination_call=0.0000002,
)

PRICES: Mapping[str, Prices] = MappingProxyType({"us-east-1": _US, "us-east-2": _US, "us-west-2": _US})

# What the estimate leaves out, because it grows with use rather than with the configuration.
EXCLUDED: tuple[str, ...] = (
    "data transfer out and NAT data processing",
    "load balancer capacity units (LCUs) and WAF requests",
    "storage: Aurora, S3, ECR images, CloudWatch Logs ingestion and retention",
    "Aurora I/O and backtrack change records",
    "App Runner active vCPU while requests run, Aurora ACUs above the minimum, tasks above the minimum",
    "CodeBuild build minutes, SES messages, GuardDuty, ECS Container Insights metrics",
    "KMS requests (including DNSSEC signing) and Route 53 queries (and their query logs)",
    "free tiers (Lambda, EventBridge Scheduler, an account's first three dashboards): not subtracted",
    "AWS Budgets (an account's first two budgets are free)",
)
