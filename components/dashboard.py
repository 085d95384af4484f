"""The stage's CloudWatch dashboard and Logs Insights saved queries as data (pure functions over
plain names; components/operations.py resolves the names and creates the resources).

The dashboard shows what matters for the runtime in use: requests, errors and latency at the
public entry, tasks or instances, Aurora capacity and connections (and reader lag), WAF
allowed/blocked with the blocks per rule, cron calls, SES sending and reputation, the uptime
check, the image pipeline, and the state of every alarm.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

WIDTH, HEIGHT = 12, 6


@dataclass(frozen=True)
class DashboardFacts:
    stack: str
    region: str
    runtime: str                      # "apprunner", "ecs", "express", or "" (no app tier yet)
    namespace: str
    db_cluster: str
    db_readers: int
    service_name: str = ""            # App Runner service / ECS service
    service_id: str = ""              # App Runner only
    cluster_name: str = ""            # ECS only
    load_balancer: str = ""           # ECS and Express: ALB ARN suffix
    target_group: str = ""            # ECS: target group ARN suffix
    distribution_id: str = ""         # Express: the CloudFront distribution
    web_acl_global: bool = False      # a CLOUDFRONT-scope ACL: metrics in us-east-1, no Region
    web_acl_name: Optional[str] = None
    cron_rule: Optional[str] = None
    build_project: Optional[str] = None
    uptime: bool = False
    alarm_arns: tuple[str, ...] = field(default_factory=tuple)


def dashboard_name(stack: str) -> str:
    return f"redcap-{stack}"


def dashboard_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def _graph(title: str, metrics: list[list[Any]], region: str, *, stat: str = "Sum", period: int = 300,
           y_label: Optional[str] = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"title": title, "view": "timeSeries", "region": region, "stat": stat,
                                  "period": period, "metrics": metrics}
    if y_label:
        properties["yAxis"] = {"left": {"label": y_label, "showUnits": False}}
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": properties}


def _metric(namespace: str, name: str, dimensions: Sequence[tuple[str, str]], **options: Any) -> list[Any]:
    row: list[Any] = [namespace, name]
    for key, value in dimensions:
        row += [key, value]
    if options:
        row.append(options)
    return row


GLOBAL_REGION = "us-east-1"


def _express_widgets(f: DashboardFacts) -> list[dict[str, Any]]:
    cdn = [("DistributionId", f.distribution_id), ("Region", "Global")]
    lb = [("LoadBalancer", f.load_balancer)]
    svc = [("ClusterName", f.cluster_name), ("ServiceName", f.service_name)]
    return [
        _graph("Requests and error rates (CloudFront, the public entry)", [
            _metric("AWS/CloudFront", "Requests", cdn, label="requests", stat="Sum"),
            _metric("AWS/CloudFront", "5xxErrorRate", cdn, label="5xx percent", stat="Average", yAxis="right"),
            _metric("AWS/CloudFront", "4xxErrorRate", cdn, label="4xx percent", stat="Average", yAxis="right"),
        ], GLOBAL_REGION),
        _graph("Response time (seconds, Express-managed load balancer)", [
            _metric("AWS/ApplicationELB", "TargetResponseTime", lb, stat="p50", label="p50"),
            _metric("AWS/ApplicationELB", "TargetResponseTime", lb, stat="p99", label="p99"),
            _metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb, stat="Sum", label="5xx from REDCap",
                    yAxis="right"),
        ], f.region, stat="p99"),
        _graph("Tasks", [
            _metric("ECS/ContainerInsights", "RunningTaskCount", svc, label="running tasks"),
            _metric("ECS/ContainerInsights", "DesiredTaskCount", svc, label="desired tasks"),
        ], f.region, stat="Average", period=60),
        _graph("Task CPU and memory (percent)", [
            _metric("AWS/ECS", "CPUUtilization", svc, label="CPU"),
            _metric("AWS/ECS", "MemoryUtilization", svc, label="memory"),
        ], f.region, stat="Average", period=60),
    ]


def _site_widgets(f: DashboardFacts) -> list[dict[str, Any]]:
    if not f.runtime:
        return []
    if f.runtime == "express":
        return _express_widgets(f)
    if f.runtime == "ecs":
        lb = [("LoadBalancer", f.load_balancer)]
        tg = [("TargetGroup", f.target_group), ("LoadBalancer", f.load_balancer)]
        svc = [("ClusterName", f.cluster_name), ("ServiceName", f.service_name)]
        return [
            _graph("Requests and errors (load balancer)", [
                _metric("AWS/ApplicationELB", "RequestCount", lb, label="requests"),
                _metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb, label="5xx from REDCap"),
                _metric("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", lb, label="5xx from the load balancer"),
                _metric("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count", lb, label="4xx from REDCap"),
            ], f.region),
            _graph("Response time (seconds)", [
                _metric("AWS/ApplicationELB", "TargetResponseTime", lb, stat="p50", label="p50"),
                _metric("AWS/ApplicationELB", "TargetResponseTime", lb, stat="p99", label="p99"),
            ], f.region, stat="p99"),
            _graph("Tasks and targets", [
                _metric("ECS/ContainerInsights", "RunningTaskCount", svc, label="running tasks"),
                _metric("ECS/ContainerInsights", "DesiredTaskCount", svc, label="desired tasks"),
                _metric("AWS/ApplicationELB", "HealthyHostCount", tg, label="healthy targets"),
                _metric("AWS/ApplicationELB", "UnHealthyHostCount", tg, label="unhealthy targets"),
            ], f.region, stat="Average", period=60),
            _graph("Task CPU and memory (percent)", [
                _metric("AWS/ECS", "CPUUtilization", svc, label="CPU"),
                _metric("AWS/ECS", "MemoryUtilization", svc, label="memory"),
            ], f.region, stat="Average", period=60),
        ]
    svc = [("ServiceName", f.service_name), ("ServiceID", f.service_id)]
    return [
        _graph("Requests and errors (App Runner)", [
            _metric("AWS/AppRunner", "Requests", svc, label="requests"),
            _metric("AWS/AppRunner", "5xxStatusResponses", svc, label="5xx"),
            _metric("AWS/AppRunner", "4xxStatusResponses", svc, label="4xx"),
        ], f.region),
        _graph("Request latency (milliseconds)", [
            _metric("AWS/AppRunner", "RequestLatency", svc, stat="p50", label="p50"),
            _metric("AWS/AppRunner", "RequestLatency", svc, stat="p99", label="p99"),
        ], f.region, stat="p99"),
        _graph("Instances", [
            _metric("AWS/AppRunner", "ActiveInstances", svc, label="active instances"),
        ], f.region, stat="Maximum", period=60),
        _graph("Instance CPU and memory (percent)", [
            _metric("AWS/AppRunner", "CPUUtilization", svc, label="CPU"),
            _metric("AWS/AppRunner", "MemoryUtilization", svc, label="memory"),
        ], f.region, stat="Average", period=60),
    ]


def dashboard_body(f: DashboardFacts) -> str:
    widgets: list[dict[str, Any]] = []
    if f.alarm_arns:
        widgets.append({"type": "alarm", "width": 2 * WIDTH, "height": 3,
                        "properties": {"title": f"REDCap {f.stack}: alarms", "alarms": sorted(f.alarm_arns)}})
    widgets += _site_widgets(f)
    if f.uptime:
        widgets.append(_graph("Uptime check (1 = failed) and latency (ms)", [
            _metric(f.namespace, "UptimeCheckFailed", [], label="failed", stat="Maximum"),
            _metric(f.namespace, "UptimeLatency", [], label="latency ms", stat="Average", yAxis="right"),
        ], f.region, stat="Maximum"))
    cluster = [("DBClusterIdentifier", f.db_cluster)]
    writer = [("DBClusterIdentifier", f.db_cluster), ("Role", "WRITER")]
    widgets.append(_graph("Aurora capacity (ACUs) and utilisation", [
        _metric("AWS/RDS", "ServerlessDatabaseCapacity", cluster, label="ACUs (highest instance)", stat="Maximum"),
        _metric("AWS/RDS", "ACUUtilization", cluster, label="percent of maximum", stat="Maximum", yAxis="right"),
    ], f.region, stat="Maximum"))
    database = [_metric("AWS/RDS", "DatabaseConnections", writer, label="connections (writer)")]
    if f.db_readers > 0:
        database.append(_metric("AWS/RDS", "AuroraReplicaLagMaximum", writer, label="reader lag ms", yAxis="right"))
    widgets.append(_graph("Aurora connections" + (" and reader lag" if f.db_readers > 0 else ""), database,
                          f.region, stat="Maximum"))
    if f.web_acl_name is not None:
        waf_region = GLOBAL_REGION if f.web_acl_global else f.region
        acl = [("WebACL", f.web_acl_name), ("Rule", "ALL")] + ([] if f.web_acl_global else [("Region", f.region)])
        widgets.append(_graph("WAF: allowed and blocked", [
            _metric("AWS/WAFV2", "AllowedRequests", acl, label="allowed"),
            _metric("AWS/WAFV2", "BlockedRequests", acl, label="blocked"),
        ], waf_region))
        # Blocks per rule: every rule of this ACL, whatever rules the stage has.
        schema = "{AWS/WAFV2,Rule,WebACL}" if f.web_acl_global else "{AWS/WAFV2,Region,Rule,WebACL}"
        where = "" if f.web_acl_global else f" Region=\"{f.region}\""
        search = (f"SEARCH('{schema} MetricName=\"BlockedRequests\" WebACL=\"{f.web_acl_name}\"{where}', "
                  "'Sum', 300)")
        widgets.append(_graph("WAF: blocked by rule", [[{"expression": search, "id": "byrule", "label": ""}]],
                              waf_region))
    if f.cron_rule is not None:
        rule = [("RuleName", f.cron_rule)]
        widgets.append(_graph("Cron (cron.php calls)", [
            _metric("AWS/Events", "Invocations", rule, label="calls"),
            _metric("AWS/Events", "FailedInvocations", rule, label="failed"),
        ], f.region))
    widgets.append(_graph("SES: sending", [
        _metric("AWS/SES", "Send", [], label="sent"),
        _metric("AWS/SES", "Delivery", [], label="delivered"),
        _metric("AWS/SES", "Bounce", [], label="bounces"),
        _metric("AWS/SES", "Complaint", [], label="complaints"),
    ], f.region, period=3600))
    widgets.append(_graph("SES: reputation (fraction of mail)", [
        _metric("AWS/SES", "Reputation.BounceRate", [], label="bounce rate"),
        _metric("AWS/SES", "Reputation.ComplaintRate", [], label="complaint rate"),
    ], f.region, stat="Maximum", period=3600))
    if f.build_project is not None:
        project = [("ProjectName", f.build_project)]
        widgets.append(_graph("Image builds", [
            _metric("AWS/CodeBuild", "SucceededBuilds", project, label="succeeded"),
            _metric("AWS/CodeBuild", "FailedBuilds", project, label="failed"),
        ], f.region, period=3600))
    # Lay the widgets out two per row, in order.
    x = y = 0
    for widget in widgets:
        if x + widget["width"] > 2 * WIDTH:
            x, y = 0, y + HEIGHT
        widget["x"], widget["y"] = x, y
        x += widget["width"]
        if x >= 2 * WIDTH:
            x, y = 0, y + widget["height"]
    return json.dumps({"widgets": widgets}, sort_keys=True)


# --------------------------------------------------------------------------------------------
# Logs Insights saved queries
# --------------------------------------------------------------------------------------------

# The container's access log (container/apache/redcap.conf, LogFormat "redcap"):
#   %a %l %u %t "%m %U %H" %>s %O %D "%{User-Agent}i"   (%D: microseconds)
ACCESS_LOG_PARSE = ("parse @message /^(?<client>\\S+) \\S+ \\S+ \\[(?<time>[^\\]]+)\\] \"(?<method>\\S+) "
                    "(?<path>\\S+) [^\"]*\" (?<status>\\d{3}) (?<bytes>\\S+) (?<micros>\\d+)/")


@dataclass(frozen=True)
class SavedQuery:
    slug: str
    title: str
    source: str   # "app": the container's log; "waf": the web ACL's log
    query: str


def saved_queries(*, waf_logs: bool, app_logs: bool = True) -> list[SavedQuery]:
    queries = [] if not app_logs else [
        SavedQuery("5xx-by-path", "5xx by path", "app",
                   f"{ACCESS_LOG_PARSE}\n| filter status >= 500\n| stats count(*) as errors by path, status\n"
                   "| sort errors desc\n| limit 50"),
        SavedQuery("slowest-requests", "slowest requests", "app",
                   f"{ACCESS_LOG_PARSE}\n| filter ispresent(micros)\n| sort micros desc\n"
                   "| display @timestamp, method, path, status, micros / 1000 as ms\n| limit 50"),
        SavedQuery("php-fatal-errors", "PHP fatal errors", "app",
                   "fields @timestamp, @message\n| filter @message like /PHP Fatal error/\n"
                   "| sort @timestamp desc\n| limit 100"),
        SavedQuery("bootstrap-failures", "bootstrap failures", "app",
                   "fields @timestamp, @message\n| filter @message like /^bootstrap (ERROR|WARNING):/\n"
                   "| sort @timestamp desc\n| limit 100"),
    ]
    if waf_logs:
        queries.append(SavedQuery(
            "waf-blocks", "WAF blocks by rule and client", "waf",
            "fields terminatingRuleId, httpRequest.clientIp, httpRequest.country\n| filter action = \"BLOCK\"\n"
            "| stats count(*) as blocked by terminatingRuleId, httpRequest.clientIp, httpRequest.country\n"
            "| sort blocked desc\n| limit 50"))
    return queries


def query_name(stack: str, title: str) -> str:
    """Saved queries appear in the console's folder `redcap-<stack>`."""
    return f"redcap-{stack}/{title}"


# The metric filter on the container log that counts cron.php answers of 4xx and 5xx
# (space-delimited: the bracketed time and the quoted request line are one field each).
CRON_ERRORS_FILTER = "[client, ident, user, time, request=\"*/cron.php*\", status>=400, ...]"
