"""The monthly cost of a stage at idle, computed from the resources the program registers for it
(under Pulumi's mocks: scripts/estimate-cost) and the bundled price table (costs/prices.py).

"At idle" is what the configuration alone costs: NAT gateways, endpoints, the load balancer, the
minimum tasks or instances, Aurora at its minimum ACUs, keys, secrets, the web ACL, alarms, the
dashboard, the site checks. Usage (requests, storage, data transfer) is excluded and listed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Protocol

from costs.prices import EXCLUDED, HOURS_PER_MONTH, PRICES, PRICES_DATE, Prices

MINUTES_PER_WEEK = 7 * 24 * 60
# The uptime check's run: about a second at 128 MB (it makes one HTTPS request).
CHECK_SECONDS, CHECK_GB = 1.0, 0.125


class Registered(Protocol):
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Line:
    resource: str
    what: str
    monthly: float
    app_tier: bool = False   # scaled by the idle schedule


@dataclass(frozen=True)
class Estimate:
    stack: str
    region: str
    lines: tuple[Line, ...]
    awake_fraction: float             # 1.0 without an idle schedule
    extras: tuple[tuple[str, float], ...]
    date: str = PRICES_DATE
    excluded: tuple[str, ...] = field(default=EXCLUDED)

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    @property
    def total_without_idle_schedule(self) -> float:
        if self.awake_fraction >= 1:
            return self.total
        return sum(line.monthly / self.awake_fraction if line.app_tier else line.monthly for line in self.lines)


class UnknownRegion(ValueError):
    pass


def prices_for(region: str) -> Prices:
    if region not in PRICES:
        raise UnknownRegion(f"no bundled prices for {region}; the table (costs/prices.py, {PRICES_DATE}) covers "
                            f"{', '.join(sorted(PRICES))}")
    return PRICES[region]


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how the engine marks a secret value


def _plain(value: Any) -> Any:
    """A value with the engine's secret wrapping removed (the estimate reads only its shape)."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return _plain(value.get("value"))
    return value


def _number(text: Any) -> float:
    match = re.search(r"[\d.]+", str(text))
    if not match:
        raise ValueError(f"no number in {text!r}")
    return float(match.group(0))


def _rate_minutes(expression: Optional[str]) -> Optional[float]:
    match = re.fullmatch(r"rate\((\d+) minutes?\)", expression or "")
    return float(match.group(1)) if match else None


def awake_fraction(resources: Iterable[Registered]) -> float:
    """The share of the week the idle schedule keeps the app tier up (1.0 without one), read
    from the site check's IDLE_SCHEDULE (the schedule the program deploys)."""
    for res in resources:
        schedule = ((res.inputs.get("environment") or {}).get("variables") or {}).get("IDLE_SCHEDULE")
        if res.type == "aws:lambda/function:Function" and schedule:
            data = json.loads(schedule)
            start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (data["start"], data["end"]))
            return len(data["workdays"]) * (end - start) / MINUTES_PER_WEEK
    return 1.0


def estimate(resources: list[Registered], *, stack: str, region: str) -> Estimate:
    p = prices_for(region)
    hours = HOURS_PER_MONTH
    awake = awake_fraction(resources)
    by_type: dict[str, list[Registered]] = {}
    for res in resources:
        by_type.setdefault(res.type, []).append(res)

    def of(type_: str) -> list[Registered]:
        return by_type.get(type_, [])

    lines: list[Line] = []
    for vpc in of("awsx:ec2:Vpc"):
        strategy = (vpc.inputs.get("natGateways") or {}).get("strategy", "OnePerAz")
        count = 1 if strategy == "Single" else int(vpc.inputs.get("numberOfAvailabilityZones", 2))
        lines.append(Line(vpc.name, f"{count} NAT gateway{'s' if count != 1 else ''} with public IPv4",
                          count * (p.nat_gateway_hour + p.public_ipv4_hour) * hours))
    for endpoint in of("aws:ec2/vpcEndpoint:VpcEndpoint"):
        if endpoint.inputs.get("vpcEndpointType") == "Interface":
            enis = len(endpoint.inputs.get("subnetIds") or [])
            lines.append(Line(endpoint.name, f"interface endpoint in {enis} AZs", enis * p.interface_endpoint_hour * hours))
    if of("aws:kms/key:Key"):
        keys = of("aws:kms/key:Key")
        lines.append(Line(", ".join(k.name for k in keys), f"{len(keys)} KMS key(s)", len(keys) * p.kms_key_month))
    secrets = [s.name for s in of("aws:secretsmanager/secret:Secret")]
    # Secrets AWS creates for us: the RDS-managed master password and each EventBridge connection's.
    secrets += [f"{c.name} (master password)" for c in of("aws:rds/cluster:Cluster") if c.inputs.get("manageMasterUserPassword")]
    secrets += [f"{c.name} (connection)" for c in of("aws:cloudwatch/eventConnection:EventConnection")]
    if secrets:
        lines.append(Line("secrets", f"{len(secrets)} Secrets Manager secrets", len(secrets) * p.secret_month))

    clusters = of("aws:rds/cluster:Cluster")
    min_acu = float((clusters[0].inputs.get("serverlessv2ScalingConfiguration") or {}).get("minCapacity", 0)) \
        if clusters else 0.0
    for instance in of("aws:rds/clusterInstance:ClusterInstance"):
        lines.append(Line(instance.name, f"Aurora Serverless v2 at its minimum {min_acu:g} ACU",
                          min_acu * p.aurora_acu_hour * hours))

    scaling = of("aws:apprunner/autoScalingConfigurationVersion:AutoScalingConfigurationVersion")
    for service in of("aws:apprunner/service:Service"):
        instances = int(scaling[0].inputs.get("minSize", 1)) if scaling else 1
        memory = _number((service.inputs.get("instanceConfiguration") or {}).get("memory", "2 GB"))
        lines.append(Line(service.name, f"App Runner: {instances} provisioned instance(s) of {memory:g} GB (idle)",
                          instances * memory * p.apprunner_gb_hour * hours * awake, app_tier=True))

    tasks = {t.inputs.get("family"): t for t in of("aws:ecs/taskDefinition:TaskDefinition")}
    for service in of("aws:ecs/service:Service"):
        task = next(iter(tasks.values()))
        count = int(service.inputs.get("desiredCount", 1))
        lines.append(Line(service.name, f"ECS Fargate: {count} task(s) of {_task_size(task)}",
                          count * _task_hour(task, p) * hours * awake, app_tier=True))

    for express in of("aws:ecs/expressGatewayService:ExpressGatewayService"):
        count = int(((express.inputs.get("scalingTargets") or [{}])[0]).get("minTaskCount", 1))
        size = _express_size(express)
        lines.append(Line(express.name, f"ECS Express: {count} task(s) of {size[0]:g} vCPU / {size[1]:g} GB",
                          count * (size[0] * p.fargate_vcpu_hour + size[1] * p.fargate_gb_hour) * hours * awake,
                          app_tier=True))
        # The internal load balancer Express Mode creates for it (no public addresses).
        lines.append(Line(f"{express.name} (load balancer)", "Express-managed internal load balancer",
                          p.alb_hour * hours))
    for alb in of("aws:lb/loadBalancer:LoadBalancer"):
        zones = len(alb.inputs.get("subnets") or [])
        lines.append(Line(alb.name, f"application load balancer with {zones} public IPv4",
                          (p.alb_hour + zones * p.public_ipv4_hour) * hours))
    for acl in of("aws:wafv2/webAcl:WebAcl"):
        rules = len(_plain(acl.inputs.get("rules")) or [])
        lines.append(Line(acl.name, f"web ACL with {rules} rules", p.waf_acl_month + rules * p.waf_rule_month))
    for zone in of("aws:route53/zone:Zone"):
        lines.append(Line(zone.name, "hosted zone", p.hosted_zone_month))

    alarm_metrics = sum(sum(1 for q in a.inputs.get("metricQueries") or [] if "metric" in q) or 1
                        for a in of("aws:cloudwatch/metricAlarm:MetricAlarm"))
    if alarm_metrics:
        alarms = len(of("aws:cloudwatch/metricAlarm:MetricAlarm"))
        lines.append(Line("alarms", f"{alarms} alarms reading {alarm_metrics} metrics",
                          alarm_metrics * p.alarm_metric_month))
    for dashboard in of("aws:cloudwatch/dashboard:Dashboard"):
        lines.append(Line(dashboard.name, "dashboard", p.dashboard_month))
    custom = _custom_metrics(resources)
    if custom:
        lines.append(Line("custom metrics", f"{custom} custom metrics", custom * p.custom_metric_month))

    for schedule in of("aws:scheduler/schedule:Schedule"):
        minutes = _rate_minutes(schedule.inputs.get("scheduleExpression"))
        if minutes:
            runs = hours * 60 / minutes
            lines.append(Line(schedule.name, f"{runs:,.0f} site check runs", runs * (
                p.lambda_request + CHECK_SECONDS * CHECK_GB * p.lambda_gb_second)))
    # Scheduled rules that call an API destination (cron.php) pay per call; the others invoke
    # functions whose runs are usage.
    destinations = {getattr(d, "outputs", {}).get("arn") for d in of("aws:cloudwatch/eventApiDestination:EventApiDestination")}
    calling = {t.inputs.get("rule") for t in of("aws:cloudwatch/eventTarget:EventTarget") if t.inputs.get("arn") in destinations}
    for rule in of("aws:cloudwatch/eventRule:EventRule"):
        minutes = _rate_minutes(rule.inputs.get("scheduleExpression"))
        if minutes and rule.inputs.get("name") in calling:
            calls = hours * 60 / minutes
            lines.append(Line(rule.name, f"{calls:,.0f} cron.php calls", calls * p.eventbridge_api_destination_call))

    return Estimate(stack=stack, region=region, lines=tuple(lines), awake_fraction=awake,
                    extras=tuple(_extras(resources, p, by_type)))


def _task_size(task: Registered) -> str:
    return f"{int(task.inputs['cpu']) / 1024:g} vCPU / {int(task.inputs['memory']) / 1024:g} GB"


def _task_hour(task: Registered, p: Prices) -> float:
    storage = float((task.inputs.get("ephemeralStorage") or {}).get("sizeInGib", 20))
    return (int(task.inputs["cpu"]) / 1024 * p.fargate_vcpu_hour + int(task.inputs["memory"]) / 1024 * p.fargate_gb_hour
            + max(0.0, storage - 20) * p.fargate_storage_gb_hour)


def _express_size(service: Registered) -> tuple[float, float]:
    """(vCPU, GB) of an Express service's tasks."""
    return int(service.inputs["cpu"]) / 1024, int(service.inputs["memory"]) / 1024


def _custom_metrics(resources: Iterable[Registered]) -> int:
    """Our own metrics: the uptime check's two (and AppTierExpected with an idle schedule), one per
    log metric filter."""
    count = 0
    for res in resources:
        if res.type == "aws:cloudwatch/logMetricFilter:LogMetricFilter":
            count += 1
        variables = (res.inputs.get("environment") or {}).get("variables") or {}
        if res.type == "aws:lambda/function:Function" and "METRIC_NAMESPACE" in variables:
            count += 3 if variables.get("IDLE_SCHEDULE") else 2
    return count


def _extras(resources: list[Registered], p: Prices, by_type: Mapping[str, list[Registered]]) -> list[tuple[str, float]]:
    hours = HOURS_PER_MONTH
    extras: list[tuple[str, float]] = []
    for task in by_type.get("aws:ecs/taskDefinition:TaskDefinition", []):
        extras.append((f"each task above the minimum ({_task_size(task)}), per month", _task_hour(task, p) * hours))
    for express in by_type.get("aws:ecs/expressGatewayService:ExpressGatewayService", []):
        cpu, memory = _express_size(express)
        extras.append((f"each task above the minimum ({cpu:g} vCPU / {memory:g} GB), per month",
                       (cpu * p.fargate_vcpu_hour + memory * p.fargate_gb_hour) * hours))
    for service in by_type.get("aws:apprunner/service:Service", []):
        config = service.inputs.get("instanceConfiguration") or {}
        cpu, memory = _number(config.get("cpu", "1 vCPU")), _number(config.get("memory", "2 GB"))
        extras.append((f"each App Runner instance above the minimum, provisioned ({memory:g} GB), per month",
                       memory * p.apprunner_gb_hour * hours))
        extras.append((f"each App Runner instance while it serves requests ({cpu:g} vCPU / {memory:g} GB), per hour",
                       cpu * p.apprunner_vcpu_hour + memory * p.apprunner_gb_hour))
    instances = len(by_type.get("aws:rds/clusterInstance:ClusterInstance", []))
    if instances:
        extras.append(("each Aurora ACU above the minimum, per instance, per month", p.aurora_acu_hour * hours))
    for instance in by_type.get("aws:ec2/instance:Instance", []):
        if instance.inputs.get("instanceType") == "t3.medium":
            extras.append(("the tunnel host (t3.medium) while it runs, per hour", p.ec2_t3_medium_hour))
    return extras


def render(e: Estimate) -> str:
    width = max([len(f"{line.resource}: {line.what}") for line in e.lines] + [len(w) for w, _ in e.extras] + [40])
    out = [f"Monthly cost estimate of stack {e.stack} in {e.region} (USD, on-demand list prices of {e.date}, "
           f"{HOURS_PER_MONTH} hours a month)", ""]
    for line in e.lines:
        out.append(f"  {line.resource + ': ' + line.what:<{width}}  {line.monthly:>9.2f}")
    out.append(f"  {'total at idle':<{width}}  {e.total:>9.2f}")
    if e.awake_fraction < 1:
        saving = e.total_without_idle_schedule - e.total
        out += ["", f"  The idle schedule keeps the app tier up {e.awake_fraction:.1%} of the week: it saves "
                    f"{saving:.2f} a month (without it: {e.total_without_idle_schedule:.2f})."]
    if e.extras:
        out += ["", "Above the minimum:"]
        out += [f"  {what:<{width}}  {amount:>9.2f}" for what, amount in e.extras]
    out += ["", "Not included (grows with use): " + "; ".join(e.excluded) + "."]
    return "\n".join(out) + "\n"
