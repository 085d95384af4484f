"""The stage's CloudWatch alarms as data: which alarms a stage gets, on which metrics, with which
thresholds and windows (pure functions; components/operations.py creates them, tests call these
directly). docs/operations.md has the table of every alarm: metric, threshold, period, why, and
what to do.

Every alarm is a metric-math alarm: the metrics it reads are filled where CloudWatch has no
data point (so "no requests" is 0, not "insufficient data"), and with an idle schedule the app
tier's alarms are gated on AppTierExpected, which the uptime check publishes: while the stage is
scaled to zero on purpose the alarm sees a quiet value and goes OK, and the first real failure
after the wake-up is a new transition that notifies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence

import pulumi

from settings.operations import ALARM_BY_ID, AlarmTuning, OperationsSettings

Comparison = Literal["GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold"]

# Below this many requests in a period the error rate is not judged (one failed request of
# three is not an outage).
MIN_REQUESTS_FOR_RATE = 20
# Minutes after the idle schedule's start during which the app tier may still be coming up.
WAKE_GRACE_MINUTES = 15
AWAKE_ID = "awake"
GLOBAL_METRICS_REGION = "us-east-1"  # where CloudFront and CLOUDFRONT-scope WAF metrics are
SIGNAL_ID = "signal"
ALARM_ID = "alarm"


@dataclass(frozen=True)
class MetricRef:
    """One CloudWatch metric as an alarm query reads it."""

    id: str
    namespace: str
    name: str
    dimensions: Mapping[str, pulumi.Input[str]]
    stat: str
    period: int


@dataclass(frozen=True)
class AlarmSpec:
    id: str
    summary: str
    metrics: tuple[MetricRef, ...]
    expression: str          # over the metric ids; the value the alarm compares
    comparison: Comparison
    threshold: float
    period: int
    evaluation_periods: int
    # What missing results count as (the expressions fill missing data already; this covers a
    # metric CloudWatch has never seen, e.g. a dead uptime checker).
    treat_missing: Literal["breaching", "notBreaching"] = "notBreaching"
    app_tier: bool = False   # gated by the idle schedule
    unit: str = ""

    @property
    def quiet_value(self) -> float:
        """A value that never breaches: what a gated alarm sees while the stage sleeps."""
        return self.threshold if self.comparison == "LessThanThreshold" else min(0.0, self.threshold - 1)


@dataclass(frozen=True)
class AppRunnerMetrics:
    service_name: pulumi.Input[str]
    service_id: pulumi.Input[str]


@dataclass(frozen=True)
class FargateMetrics:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    load_balancer: pulumi.Input[str]   # ARN suffix app/<name>/<id>
    target_group: pulumi.Input[str]    # ARN suffix targetgroup/<name>/<id>
    min_tasks: int
    log_metrics: bool = True           # the container log group is ours: metric filters exist


@dataclass(frozen=True)
class ExpressMetrics:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    load_balancer: pulumi.Input[str]   # the Express-managed load balancer's ARN suffix
    min_tasks: int


@dataclass(frozen=True)
class StageMetrics:
    """Everything the alarms point at, for one stage."""

    stack: str
    region: str
    runtime: Optional[AppRunnerMetrics | FargateMetrics | ExpressMetrics]   # None: no app tier yet
    db_cluster: pulumi.Input[str]
    db_max_acu: float
    db_readers: int
    uptime_minutes: int
    cron_rule: Optional[pulumi.Input[str]] = None
    cron_minutes: int = 0
    web_acl_name: Optional[pulumi.Input[str]] = None
    # A CLOUDFRONT-scope ACL (Express): its metrics are global, in us-east-1, without a Region.
    web_acl_global: bool = False
    build_project: Optional[pulumi.Input[str]] = None
    build_trigger_function: Optional[pulumi.Input[str]] = None
    certificate_arns: tuple[str, ...] = ()
    idle_schedule: bool = False
    uptime_check: Optional[pulumi.Input[str]] = None   # the checker's function name (metric source)

    @property
    def namespace(self) -> str:
        return custom_namespace(self.stack)


def custom_namespace(stack: str) -> str:
    """Our own metrics (uptime check, log metric filters) live in one namespace per stage."""
    return f"REDCap/{stack}"


def alarm_name(stack: str, alarm_id: str) -> str:
    return f"redcap-{stack}-{alarm_id}"


def aurora_max_connections(max_acu: float) -> int:
    """Aurora MySQL's default max_connections for an instance with the memory of `max_acu`
    (Serverless v2 derives it from the maximum ACU; 1 ACU ~ 2 GiB):
    GREATEST(log2(mem / 805306368) * 45, log2(mem / 8187281408) * 1000), per AWS's parameter
    formula. An estimate: the instance has a little less memory, so the real limit is at least
    this, and an alarm on it fires early rather than late."""
    memory = max_acu * 2 * 1024 ** 3
    return max(1, int(max(math.log2(memory / 805306368) * 45, math.log2(memory / 8187281408) * 1000)))


def _windows(kind_period: int, minutes: int) -> int:
    return max(1, math.ceil(minutes * 60 / kind_period))


def _threshold(tuning: AlarmTuning, default: float) -> float:
    return float(tuning.threshold if tuning.threshold is not None else default)


def _fill(metric_id: str, value: float | int) -> str:
    return f"FILL({metric_id}, {value:g})"


def alarm_specs(stage: StageMetrics, settings: OperationsSettings) -> list[AlarmSpec]:
    """The alarms of a stage, in catalogue order, without those switched off or not applicable."""
    built: dict[str, AlarmSpec] = {}
    rt = stage.runtime
    behind_load_balancer = isinstance(rt, (FargateMetrics, ExpressMetrics))

    def add(alarm_id: str, summary: str, metrics: Sequence[MetricRef], expression: str, comparison: Comparison,
            default_threshold: float, *, period: Optional[int] = None, scale: float = 1.0,
            treat_missing: Literal["breaching", "notBreaching"] = "notBreaching", app_tier: bool = False) -> None:
        kind, tuning = ALARM_BY_ID[alarm_id], settings.alarm(alarm_id)
        if not tuning.enabled:
            return
        period = period or kind.period_seconds
        minutes = tuning.minutes if tuning.minutes is not None else kind.default_minutes
        built[alarm_id] = AlarmSpec(
            id=alarm_id, summary=summary, metrics=tuple(metrics), expression=expression, comparison=comparison,
            threshold=_threshold(tuning, default_threshold) * scale, period=period,
            evaluation_periods=_windows(period, minutes), treat_missing=treat_missing,
            app_tier=app_tier and stage.idle_schedule, unit=kind.unit)

    # --- the site --------------------------------------------------------------------------
    if rt is None:
        pass  # no public entry yet (an ECS stage before its new zone is delegated)
    elif behind_load_balancer:
        assert isinstance(rt, (FargateMetrics, ExpressMetrics))
        # ECS: the stage's load balancer; Express: the one Express Mode manages behind CloudFront.
        lb = {"LoadBalancer": rt.load_balancer}
        requests = MetricRef("requests", "AWS/ApplicationELB", "RequestCount", lb, "Sum", 300)
        target_5xx = MetricRef("target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb, "Sum", 300)
        elb_5xx = MetricRef("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", lb, "Sum", 300)
        add("siteErrorRate", "5xx responses at the load balancer, percent of requests",
            [requests, target_5xx, elb_5xx],
            f"IF({_fill('requests', 0)} >= {MIN_REQUESTS_FOR_RATE}, 100 * ({_fill('target5xx', 0)} + "
            f"{_fill('elb5xx', 0)}) / {_fill('requests', 1)}, 0)",
            "GreaterThanThreshold", ALARM_BY_ID["siteErrorRate"].default_threshold or 0, app_tier=True)
        add("siteLatency", "p99 target response time at the load balancer, seconds",
            [MetricRef("latency", "AWS/ApplicationELB", "TargetResponseTime", lb, "p99", 300)],
            _fill("latency", 0), "GreaterThanThreshold", ALARM_BY_ID["siteLatency"].default_threshold or 0,
            app_tier=True)
        if isinstance(rt, FargateMetrics):
            # Express Mode manages its target groups itself (their ARNs are not known to the stack).
            add("unhealthyTargets", "targets the load balancer sees as unhealthy",
                [MetricRef("unhealthy", "AWS/ApplicationELB", "UnHealthyHostCount",
                           {"LoadBalancer": rt.load_balancer, "TargetGroup": rt.target_group}, "Maximum", 60)],
                _fill("unhealthy", 0), "GreaterThanThreshold", 0, app_tier=True)
        add("tasksBelowMinimum", "running ECS tasks of the service (Container Insights)",
            [MetricRef("running", "ECS/ContainerInsights", "RunningTaskCount",
                       {"ClusterName": rt.cluster_name, "ServiceName": rt.service_name}, "Minimum", 60)],
            _fill("running", 0), "LessThanThreshold", rt.min_tasks, app_tier=True)
    elif isinstance(rt, AppRunnerMetrics):
        service = {"ServiceName": rt.service_name, "ServiceID": rt.service_id}
        requests = MetricRef("requests", "AWS/AppRunner", "Requests", service, "Sum", 300)
        errors = MetricRef("errors5xx", "AWS/AppRunner", "5xxStatusResponses", service, "Sum", 300)
        add("siteErrorRate", "5xx responses of the App Runner service, percent of requests", [requests, errors],
            f"IF({_fill('requests', 0)} >= {MIN_REQUESTS_FOR_RATE}, 100 * {_fill('errors5xx', 0)} / "
            f"{_fill('requests', 1)}, 0)",
            "GreaterThanThreshold", ALARM_BY_ID["siteErrorRate"].default_threshold or 0, app_tier=True)
        # App Runner reports latency in milliseconds; the threshold is set in seconds.
        add("siteLatency", "p99 request latency of the App Runner service, seconds",
            [MetricRef("latency", "AWS/AppRunner", "RequestLatency", service, "p99", 300)],
            f"{_fill('latency', 0)} / 1000", "GreaterThanThreshold",
            ALARM_BY_ID["siteLatency"].default_threshold or 0, app_tier=True)

    if stage.uptime_check is not None:
        add("uptime", "failed uptime checks of the public entry (a missing check counts as failed)",
            [MetricRef("failed", stage.namespace, "UptimeCheckFailed", {}, "Maximum", stage.uptime_minutes * 60)],
            _fill("failed", 1), "GreaterThanOrEqualToThreshold", 1, period=stage.uptime_minutes * 60,
            treat_missing="breaching", app_tier=True)

    # --- cron ------------------------------------------------------------------------------
    if stage.cron_rule is not None and stage.cron_minutes > 0:
        rule = {"RuleName": stage.cron_rule}
        add("cronFailures", "cron.php calls EventBridge could not complete (non-2xx answers included)",
            [MetricRef("failed", "AWS/Events", "FailedInvocations", rule, "Sum", 300)],
            _fill("failed", 0), "GreaterThanOrEqualToThreshold", 1, app_tier=True)
        # At least one cron period per window, so a stage calling cron hourly is not "stopped"
        # between two calls.
        cron_period = max(300, stage.cron_minutes * 60)
        add("cronStopped", "cron.php calls made by the schedule",
            [MetricRef("calls", "AWS/Events", "Invocations", rule, "Sum", cron_period)],
            _fill("calls", 0), "LessThanThreshold", 1, period=cron_period, treat_missing="breaching",
            app_tier=True)
        if behind_load_balancer and getattr(rt, "log_metrics", True):
            add("cronErrors", "cron.php answered 4xx/5xx in the container's access log",
                [MetricRef("errors", stage.namespace, "CronErrors", {}, "Sum", 300)],
                _fill("errors", 0), "GreaterThanOrEqualToThreshold", 1, app_tier=True)

    # --- the database ----------------------------------------------------------------------
    cluster = {"DBClusterIdentifier": stage.db_cluster}
    writer = {"DBClusterIdentifier": stage.db_cluster, "Role": "WRITER"}
    add("dbCapacityAtMax", "Aurora capacity (ACUs), highest instance",
        [MetricRef("acu", "AWS/RDS", "ServerlessDatabaseCapacity", cluster, "Maximum", 300)],
        _fill("acu", 0), "GreaterThanOrEqualToThreshold", stage.db_max_acu)
    add("dbConnections", "connections to the writer, percent of the estimated max_connections",
        [MetricRef("connections", "AWS/RDS", "DatabaseConnections", writer, "Maximum", 300)],
        f"100 * {_fill('connections', 0)} / {aurora_max_connections(stage.db_max_acu)}",
        "GreaterThanOrEqualToThreshold", ALARM_BY_ID["dbConnections"].default_threshold or 0)
    if stage.db_readers > 0:
        add("dbReplicaLag", "highest reader lag behind the writer, milliseconds",
            [MetricRef("lag", "AWS/RDS", "AuroraReplicaLagMaximum", writer, "Maximum", 60)],
            _fill("lag", 0), "GreaterThanThreshold", ALARM_BY_ID["dbReplicaLag"].default_threshold or 0)

    # --- the edge and e-mail ---------------------------------------------------------------
    # A CLOUDFRONT-scope ACL reports in us-east-1 only, where an alarm of a stage elsewhere has no
    # topic to notify (docs/operations.md): then the dashboard shows it, no alarm watches it.
    if stage.web_acl_name is not None and (not stage.web_acl_global or stage.region == GLOBAL_METRICS_REGION):
        acl = {"WebACL": stage.web_acl_name, "Rule": "ALL"}
        if not stage.web_acl_global:
            acl["Region"] = stage.region
        add("wafBlockedSpike", "requests the web ACL blocked",
            [MetricRef("blocked", "AWS/WAFV2", "BlockedRequests", acl, "Sum", 300)],
            _fill("blocked", 0), "GreaterThanThreshold", ALARM_BY_ID["wafBlockedSpike"].default_threshold or 0)
    # SES publishes its reputation as fractions; the thresholds are set in percent.
    add("sesBounceRate", "SES bounce rate of the account in this region, percent",
        [MetricRef("rate", "AWS/SES", "Reputation.BounceRate", {}, "Maximum", 3600)],
        f"100 * {_fill('rate', 0)}", "GreaterThanOrEqualToThreshold",
        ALARM_BY_ID["sesBounceRate"].default_threshold or 0)
    add("sesComplaintRate", "SES complaint rate of the account in this region, percent",
        [MetricRef("rate", "AWS/SES", "Reputation.ComplaintRate", {}, "Maximum", 3600)],
        f"100 * {_fill('rate', 0)}", "GreaterThanOrEqualToThreshold",
        ALARM_BY_ID["sesComplaintRate"].default_threshold or 0)

    # --- the pipeline and certificates -----------------------------------------------------
    if stage.build_project is not None:
        add("imageBuildFailed", "failed CodeBuild image builds",
            [MetricRef("failed", "AWS/CodeBuild", "FailedBuilds", {"ProjectName": stage.build_project}, "Sum", 300)],
            _fill("failed", 0), "GreaterThanOrEqualToThreshold", 1)
    if stage.build_trigger_function is not None:
        add("buildTriggerErrors", "errors of the Lambda that starts and awaits image builds",
            [MetricRef("errors", "AWS/Lambda", "Errors", {"FunctionName": stage.build_trigger_function}, "Sum", 300)],
            _fill("errors", 0), "GreaterThanOrEqualToThreshold", 1)
    for index, arn in enumerate(stage.certificate_arns):
        # One alarm per certificate ACM cannot renew by itself (imported, or validated outside our zone).
        alarm_id = "certificateExpiry" if index == 0 else f"certificateExpiry{index + 1}"
        kind, tuning = ALARM_BY_ID["certificateExpiry"], settings.alarm("certificateExpiry")
        if not tuning.enabled:
            break
        minutes = tuning.minutes if tuning.minutes is not None else kind.default_minutes
        built[alarm_id] = AlarmSpec(
            id=alarm_id, summary=f"days until the certificate {arn} expires",
            metrics=(MetricRef("days", "AWS/CertificateManager", "DaysToExpiry", {"CertificateArn": arn},
                               "Minimum", 86400),),
            expression="days", comparison="LessThanThreshold",
            threshold=_threshold(tuning, kind.default_threshold or 0), period=86400,
            evaluation_periods=_windows(86400, minutes), unit=kind.unit)
    return list(built.values())


def metric_queries(spec: AlarmSpec, namespace: str) -> list[dict[str, Any]]:
    """The alarm's metric_queries (snake_case pulumi inputs): the metrics, the signal expression,
    and - for a gated alarm - the gate on AppTierExpected."""
    queries: list[dict[str, Any]] = [{
        "id": m.id,
        "metric": {"namespace": m.namespace, "metric_name": m.name, "dimensions": dict(m.dimensions),
                   "period": m.period, "stat": m.stat},
        "return_data": False,
    } for m in spec.metrics]
    if not spec.app_tier:
        queries.append({"id": ALARM_ID, "expression": spec.expression, "label": spec.summary, "return_data": True})
        return queries
    queries.append({
        "id": AWAKE_ID,
        "metric": {"namespace": namespace, "metric_name": "AppTierExpected", "dimensions": {},
                   "period": spec.period, "stat": "Minimum"},
        "return_data": False,
    })
    queries.append({"id": SIGNAL_ID, "expression": spec.expression, "label": spec.summary, "return_data": False})
    # Missing AppTierExpected counts as awake: a broken checker must not silence the alarms.
    queries.append({"id": ALARM_ID, "expression": f"IF({_fill(AWAKE_ID, 1)} < 1, {spec.quiet_value:g}, {SIGNAL_ID})",
                    "label": f"{spec.summary} (quiet while the idle schedule has the stage asleep)",
                    "return_data": True})
    return queries


def schedule_cron(clock: str, workdays: Sequence[str]) -> str:
    """`cron(min hour ? * DAYS *)`, the form EventBridge Scheduler and Application Auto Scaling
    share; evaluated in the schedule's time zone by both."""
    hours, minutes = clock.split(":")
    return f"cron({int(minutes)} {int(hours)} ? * {','.join(d.upper() for d in workdays)} *)"
