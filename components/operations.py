"""Operations: what tells a research-IT team that a stage needs them, and what keeps it cheap.

- Alarm topic: SNS, encrypted with the stack key (whose policy lets CloudWatch of this account
  use it, components/policies.py); the topic policy admits only this stage's alarms and refuses
  requests without TLS. The alarm address (redcap:operations.alarmEmail, else redcap:email) is
  subscribed like the stack's other topics (components/notifications.py).
- Alarms: components/alarms.py decides which, on what, with which thresholds; every alarm
  notifies on ALARM and on OK.
- Dashboard (components/dashboard.py) and Logs Insights saved queries.
- Site checks from outside the VPC (functions/site_check.py): one Lambda, not in the VPC,
  reading the cron header's value from a secret; EventBridge Scheduler runs it every
  `uptimeMinutes` (the uptime check and its metrics), and an aws.lambda_.Invocation runs it in
  smoke mode at the end of every `pulumi up` whose image or runtime settings changed (its
  triggers are exactly those two), so an unchanged update runs nothing and a failing site fails
  the update.
- Idle schedule: ECS and Express through two Application Auto Scaling scheduled actions on the
  service's scalable target; App Runner through two EventBridge Scheduler schedules that call PauseService
  and ResumeService with a role allowed only those on this service.
- Budget: an AWS Budget with actual and forecast alerts mailed to the alarm address.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import policies
from components.alarms import (AppRunnerMetrics, ExpressMetrics, FargateMetrics, StageMetrics, WAKE_GRACE_MINUTES,
                               alarm_name, alarm_specs, metric_queries, schedule_cron)
from components.apprunner import application_log_group, apprunner_ids
from components.context import AwsContext
from components.dashboard import (CRON_ERRORS_FILTER, DashboardFacts, dashboard_body, dashboard_name, dashboard_url,
                                  query_name, saved_queries)
from components.lambdas import FunctionSpec, logged_function, write_logs
from components.notifications import EmailSubscription, email_subscription
from components.rollout import settings_fingerprint
from components.secrets import encrypted_secret
from settings.operations import OperationsSettings

# Budget alerts: actual spend at these percentages of the limit, and a forecast above it.
BUDGET_ACTUAL_PERCENTS = (80, 100)
BUDGET_FORECAST_PERCENT = 100


@dataclass(frozen=True)
class AppRunnerTier:
    service_arn: pulumi.Input[str]
    service_url: pulumi.Input[str]        # https://<default domain>: reachable before any custom domain
    min_instances: int
    max_instances: int
    sizes: Mapping[str, Any]              # what the smoke check follows besides the environment
    # In place before the check runs (not the whole component: its custom domain's records may
    # still be written; the service itself is a dependency through the check's input).
    ready: Sequence[pulumi.Resource] = ()

    @staticmethod
    def of(service: Any, *, cpu: str, memory: str, concurrency: int, min_size: int, max_size: int) -> "AppRunnerTier":
        return AppRunnerTier(service_arn=service.service_arn, service_url=service.service_url, min_instances=min_size,
                             max_instances=max_size, ready=(service.waf_association,),
                             sizes={"cpu": cpu, "memory": memory, "concurrency": concurrency,
                                    "minSize": min_size, "maxSize": max_size})

    @property
    def entry_arn(self) -> pulumi.Input[str]:
        return self.service_arn


@dataclass(frozen=True)
class FargateTier:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    load_balancer_arn: pulumi.Input[str]
    load_balancer_dns_name: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    log_group_name: pulumi.Input[str]
    scaling_resource_id: pulumi.Input[str]  # service/<cluster>/<service>
    min_tasks: int
    max_tasks: int
    sizes: Mapping[str, Any]
    ready: Sequence[pulumi.Resource] = ()

    @staticmethod
    def of(service: Any, settings: Any) -> "FargateTier":
        """From a FargateService and its `ecs` settings block."""
        return FargateTier(
            cluster_name=service.cluster_name, service_name=service.service_name,
            load_balancer_arn=service.load_balancer_arn, load_balancer_dns_name=service.load_balancer_dns_name,
            target_group_arn=service.target_group_arn, log_group_name=service.log_group_name,
            scaling_resource_id=service.scaling_resource_id, min_tasks=settings.scaling.min_containers,
            max_tasks=settings.scaling.max_containers, sizes={"ecs": settings.model_dump(by_alias=True)},
            ready=(service,))

    @property
    def entry_arn(self) -> pulumi.Input[str]:
        return self.load_balancer_arn


@dataclass(frozen=True)
class ExpressTier:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    distribution_arn: pulumi.Input[str]
    distribution_id: pulumi.Input[str]
    distribution_url: pulumi.Input[str]   # https://<id>.cloudfront.net: reachable before any custom domain
    load_balancer_arn: pulumi.Input[str]  # the internal load balancer Express Mode manages
    log_group_name: pulumi.Input[str]
    min_tasks: int
    max_tasks: int
    sizes: Mapping[str, Any]
    ready: Sequence[pulumi.Resource] = ()

    @staticmethod
    def of(service: Any, settings: Any) -> "ExpressTier":
        """From an ExpressService and its `express` settings block."""
        return ExpressTier(
            cluster_name=service.cluster_name, service_name=service.service_name,
            distribution_arn=service.distribution_arn, distribution_id=service.distribution_id,
            distribution_url=service.distribution_url, load_balancer_arn=service.load_balancer_arn,
            log_group_name=service.log_group_name, min_tasks=settings.scaling.min_containers,
            max_tasks=settings.scaling.max_containers, sizes={"express": settings.model_dump(by_alias=True)},
            ready=(service,))

    @property
    def entry_arn(self) -> pulumi.Input[str]:
        return self.distribution_arn

    @property
    def scaling_resource_id(self) -> pulumi.Output[str]:
        """Express Mode scales its ECS service through Application Auto Scaling, as ECS does."""
        return pulumi.Output.all(self.cluster_name, self.service_name).apply(lambda a: f"service/{a[0]}/{a[1]}")


Tier = AppRunnerTier | FargateTier | ExpressTier


@dataclass(frozen=True)
class OperationsArgs:
    context: AwsContext
    settings: OperationsSettings
    # None while the stage has no public entry (an ECS stage before its new zone is delegated).
    tier: Optional[Tier]
    site_url: Optional[pulumi.Input[str]]  # what users open
    kms_key_arn: pulumi.Input[str]         # the stack key: alarm topic, log groups, the check secret
    log_retention_days: int
    cron_header: str
    cron_search_string: pulumi.Input[str]  # secret
    db_cluster_identifier: pulumi.Input[str]
    db_max_acu: float
    db_readers: int
    image_uri: pulumi.Input[str]
    # The container environment a smoke check follows (with the tier's sizes): any change re-runs it.
    runtime_environment: Optional[pulumi.Input[Mapping[str, str]]] = None
    alarm_email: Optional[str] = None
    subscribe_alarm_email: bool = True
    cron_rule_name: Optional[pulumi.Input[str]] = None
    cron_minutes: int = 0
    web_acl_arn: Optional[pulumi.Input[str]] = None
    web_acl_global: bool = False           # CLOUDFRONT scope (Express)
    waf_log_group_name: Optional[pulumi.Input[str]] = None
    build_project_name: Optional[pulumi.Input[str]] = None
    build_trigger_function_name: Optional[pulumi.Input[str]] = None
    certificate_arns: tuple[str, ...] = ()
    # Cost allocation tag (key, value) the budget counts; None: the whole account.
    budget_tag: Optional[tuple[str, str]] = None
    # What else must be in place before the smoke check runs (the web ACL).
    smoke_after: Sequence[pulumi.Resource] = ()


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def web_acl_name(arn: str) -> str:
    """arn:aws:wafv2:<region>:<account>:regional/webacl/<name>/<id> -> <name> (CloudWatch's WebACL)."""
    parts = arn.split("/")
    if len(parts) < 4 or parts[-3] != "webacl":
        raise ValueError(f"not a WAFv2 web ACL ARN: {arn}")
    return parts[-2]


def load_balancer_suffix(arn: str) -> str:
    """...:loadbalancer/app/<name>/<id> -> app/<name>/<id> (CloudWatch's LoadBalancer dimension)."""
    _, found, rest = arn.partition(":loadbalancer/")
    if not found:
        raise ValueError(f"not a load balancer ARN: {arn}")
    return rest


def target_group_suffix(arn: str) -> str:
    """...:targetgroup/<name>/<id> -> targetgroup/<name>/<id> (CloudWatch's TargetGroup dimension)."""
    _, found, rest = arn.partition(":targetgroup/")
    if not found:
        raise ValueError(f"not a target group ARN: {arn}")
    return f"targetgroup/{rest}"


def alarm_topic_policy(topic_arn: str, account_id: str, partition: str, region: str, stack: str) -> str:
    """Only this stage's alarms may publish, and only over TLS."""
    alarms = f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:redcap-{stack}-*"
    return policies.service_topic_policy(topic_arn, "AlarmsOfThisStage", "cloudwatch.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": account_id}, "ArnLike": {"aws:SourceArn": alarms}})


def check_policy(*, log_group_arn: str, secret_arn: str, kms_key_arn: str, namespace: str) -> str:
    return policies.document([
        write_logs(log_group_arn),
        policies.allow(["secretsmanager:GetSecretValue"], [secret_arn], sid="ReadCheckHeader"),
        policies.allow(["kms:Decrypt"], [kms_key_arn], sid="DecryptCheckHeader",
                       Condition={"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}),
        # PutMetricData has no resource type; the namespace condition is what scopes it.
        policies.allow(["cloudwatch:PutMetricData"], ["*"], sid="PublishCheckMetrics",
                       Condition={"StringEquals": {"cloudwatch:namespace": namespace}}),
    ])


def invoke_policy(function_arn: str) -> str:
    return policies.document([policies.allow(["lambda:InvokeFunction"], [function_arn], sid="RunSiteCheck")])


def pause_policy(service_arn: str) -> str:
    return policies.document([policies.allow(["apprunner:PauseService", "apprunner:ResumeService"], [service_arn],
                                             sid="IdleSchedule")])


def idle_schedule_json(settings: OperationsSettings) -> Optional[str]:
    schedule = settings.idle_schedule
    if schedule is None:
        return None
    return json.dumps({"timezone": schedule.timezone, "workdays": list(schedule.workdays), "start": schedule.start,
                       "end": schedule.end, "graceMinutes": WAKE_GRACE_MINUTES}, sort_keys=True)


def budget_notifications(address: str) -> list[dict[str, Any]]:
    actual = [{"comparison_operator": "GREATER_THAN", "notification_type": "ACTUAL", "threshold": percent,
               "threshold_type": "PERCENTAGE", "subscriber_email_addresses": [address]}
              for percent in BUDGET_ACTUAL_PERCENTS]
    forecast = {"comparison_operator": "GREATER_THAN", "notification_type": "FORECASTED",
                "threshold": BUDGET_FORECAST_PERCENT, "threshold_type": "PERCENTAGE",
                "subscriber_email_addresses": [address]}
    return actual + [forecast]


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

class Operations(pulumi.ComponentResource):
    alarm_topic_arn: pulumi.Output[str]
    alarm_names: list[str]
    dashboard_url: Optional[pulumi.Output[str]]
    uptime_function_name: Optional[pulumi.Output[str]]
    smoke_check: Optional[pulumi.Output[Any]]
    budget_name: Optional[pulumi.Output[str]]
    email_subscriptions: list[EmailSubscription]

    def __init__(self, name: str, args: OperationsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:operations:Operations", name, None, opts)
        ctx, ops = args.context, args.settings
        child = pulumi.ResourceOptions(parent=self)
        namespace = f"REDCap/{ctx.stack}"

        topic = self._alarm_topic(name, args)
        self.alarm_topic_arn = topic.arn
        self.email_subscriptions = []
        if args.alarm_email:
            self.email_subscriptions.append(email_subscription(
                f"{name}-alarms-email", topic=topic, address=args.alarm_email, purpose="CloudWatch alarms",
                subscribe=args.subscribe_alarm_email, parent=self))

        tier = args.tier
        checker: Optional[aws.lambda_.Function] = None
        self.uptime_function_name = None
        if tier is not None:
            # Every public entry has an uptime check (the policy pack requires it).
            check_secret = encrypted_secret(
                f"{name}-check-header", kms_key_arn=args.kms_key_arn,
                description="REDCap site checks: the cron header's value (lets the checks through the WAF)",
                value=args.cron_search_string, opts=child)
            checker = self._checker(name, args, tier, check_secret, namespace)
            self.uptime_function_name = checker.name
            self._uptime_schedule(name, args, checker)

        runtime_metrics: Optional[AppRunnerMetrics | FargateMetrics | ExpressMetrics] = None
        app_log_groups: list[pulumi.Output[str]] = []
        if isinstance(tier, FargateTier):
            lb_suffix = pulumi.Output.from_input(tier.load_balancer_arn).apply(load_balancer_suffix)
            tg_suffix = pulumi.Output.from_input(tier.target_group_arn).apply(target_group_suffix)
            runtime_metrics = FargateMetrics(
                cluster_name=tier.cluster_name, service_name=tier.service_name, load_balancer=lb_suffix,
                target_group=tg_suffix, min_tasks=tier.min_tasks)
            app_log_groups = [pulumi.Output.from_input(tier.log_group_name)]
        elif isinstance(tier, ExpressTier):
            runtime_metrics = ExpressMetrics(
                cluster_name=tier.cluster_name, service_name=tier.service_name,
                load_balancer=pulumi.Output.from_input(tier.load_balancer_arn).apply(load_balancer_suffix),
                min_tasks=tier.min_tasks)
            app_log_groups = [pulumi.Output.from_input(tier.log_group_name)]
        elif isinstance(tier, AppRunnerTier):
            ids = pulumi.Output.from_input(tier.service_arn).apply(apprunner_ids)
            runtime_metrics = AppRunnerMetrics(service_name=ids[0], service_id=ids[1])
            app_log_groups = [pulumi.Output.from_input(tier.service_arn).apply(application_log_group)]
        acl_name = (pulumi.Output.from_input(args.web_acl_arn).apply(web_acl_name)
                    if args.web_acl_arn is not None else None)

        if isinstance(tier, (FargateTier, ExpressTier)) and args.cron_rule_name is not None and args.cron_minutes > 0:
            aws.cloudwatch.LogMetricFilter(
                f"{name}-cron-errors", name=f"redcap-{ctx.stack}-cron-errors", log_group_name=tier.log_group_name,
                pattern=CRON_ERRORS_FILTER,
                metric_transformation={"name": "CronErrors", "namespace": namespace, "value": "1",
                                       "default_value": "0", "unit": "Count"},
                opts=child)

        stage = StageMetrics(
            stack=ctx.stack, region=ctx.region, runtime=runtime_metrics, db_cluster=args.db_cluster_identifier,
            db_max_acu=args.db_max_acu, db_readers=args.db_readers, uptime_minutes=ops.uptime_minutes,
            cron_rule=args.cron_rule_name, cron_minutes=args.cron_minutes, web_acl_name=acl_name,
            web_acl_global=args.web_acl_global,
            build_project=args.build_project_name, build_trigger_function=args.build_trigger_function_name,
            certificate_arns=args.certificate_arns, idle_schedule=ops.idle_schedule is not None,
            uptime_check=self.uptime_function_name)
        specs = alarm_specs(stage, ops)
        alarms = []
        for spec in specs:
            alarms.append(aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.id}", name=alarm_name(ctx.stack, spec.id),
                alarm_description=f"REDCap {ctx.stack}: {spec.summary} ({spec.unit}). What it means and what to do: "
                                  f"docs/operations.md#{spec.id.lower()}",
                comparison_operator=spec.comparison, threshold=spec.threshold,
                evaluation_periods=spec.evaluation_periods, datapoints_to_alarm=spec.evaluation_periods,
                metric_queries=metric_queries(spec, namespace), treat_missing_data=spec.treat_missing,
                alarm_actions=[topic.arn], ok_actions=[topic.arn], opts=child))
        self.alarm_names = [alarm_name(ctx.stack, spec.id) for spec in specs]

        self.dashboard_url = None
        if ops.dashboard:
            self.dashboard_url = self._dashboard(name, args, stage, alarms, namespace)
        self._saved_queries(name, args, app_log_groups)

        if ops.idle_schedule is not None and tier is not None:
            self._idle_schedule(name, args, tier)

        self.smoke_check = None
        if ops.smoke_check and tier is not None and checker is not None:
            self.smoke_check = self._smoke_check(name, args, tier, checker)

        self.budget_name = None
        if ops.monthly_budget_usd is not None and args.alarm_email:
            self.budget_name = self._budget(name, args)

        self.register_outputs({
            "alarmTopicArn": self.alarm_topic_arn,
            "dashboardUrl": self.dashboard_url,
            "smokeCheck": self.smoke_check,
            "budgetName": self.budget_name,
        })

    # -- alarm topic ------------------------------------------------------------------------

    def _alarm_topic(self, name: str, args: OperationsArgs) -> aws.sns.Topic:
        """Encrypted with the stack key, whose policy lets CloudWatch of this account use it."""
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=args.kms_key_arn,
                              display_name=f"REDCap {ctx.stack} alarms", opts=child)
        aws.sns.TopicPolicy(
            f"{name}-alarms-policy", arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, ctx.account_id, ctx.partition).apply(
                lambda a: alarm_topic_policy(a[0], a[1], a[2], ctx.region, ctx.stack)),
            opts=child)
        return topic

    # -- site checks ------------------------------------------------------------------------

    def _checker(self, name: str, args: OperationsArgs, tier: Tier, secret: aws.secretsmanager.Secret,
                 namespace: str) -> aws.lambda_.Function:
        variables: dict[str, pulumi.Input[str]] = {
            "SITE_URL": args.site_url, "CHECK_SECRET_ARN": secret.arn, "CHECK_HEADER": args.cron_header,
            "METRIC_NAMESPACE": namespace, "UPTIME_MINUTES": str(args.settings.uptime_minutes),
        }
        schedule = idle_schedule_json(args.settings)
        if schedule is not None:
            variables["IDLE_SCHEDULE"] = schedule
        # Outside the VPC on purpose: the checks reach the site as its users do, over the internet.
        # Lambda's maximum timeout (the default): a smoke check may wait for new tasks to come up.
        return logged_function(f"{name}-check", args.context, FunctionSpec(
            function_name=f"redcap-{args.context.stack}-site-check", module="site_check",
            description="REDCap uptime and post-deploy checks through the public entry",
            policy=lambda group_arn: pulumi.Output.all(group_arn, secret.arn, args.kms_key_arn).apply(
                lambda a: check_policy(log_group_arn=a[0], secret_arn=a[1], kms_key_arn=a[2], namespace=namespace)),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days, environment=variables,
            tags={"UptimeCheckOf": tier.entry_arn}), self, function_resource=f"{name}-site-check")

    def _uptime_schedule(self, name: str, args: OperationsArgs, checker: aws.lambda_.Function) -> None:
        ctx = args.context
        role = aws.iam.Role(
            f"{name}-uptime-role",
            assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("scheduler.amazonaws.com", a)),
            opts=pulumi.ResourceOptions(parent=self))
        invoke = aws.iam.RolePolicy(f"{name}-uptime-invoke", role=role.id, policy=checker.arn.apply(invoke_policy),
                                    opts=pulumi.ResourceOptions(parent=self))
        minutes = args.settings.uptime_minutes
        aws.scheduler.Schedule(
            f"{name}-uptime", name=f"redcap-{ctx.stack}-uptime",
            description="REDCap uptime check through the public entry",
            schedule_expression=f"rate({minutes} minute{'s' if minutes != 1 else ''})",
            flexible_time_window={"mode": "OFF"},
            target={"arn": checker.arn, "role_arn": role.arn, "input": json.dumps({"mode": "uptime"}),
                    # A missed check is made up by the next one.
                    "retry_policy": {"maximum_event_age_in_seconds": 60 * minutes, "maximum_retry_attempts": 0}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoke]))

    def _smoke_check(self, name: str, args: OperationsArgs, tier: Tier,
                     checker: aws.lambda_.Function) -> pulumi.Output[Any]:
        if isinstance(tier, FargateTier):
            # The site's name over the load balancer's own address: independent of DNS changes in this update.
            site, connect = args.site_url, tier.load_balancer_dns_name
        elif isinstance(tier, ExpressTier):
            site, connect = tier.distribution_url, None
        else:
            site, connect = tier.service_url, None
        event = pulumi.Output.all(site, connect).apply(
            lambda a: json.dumps({"mode": "smoke", "siteUrl": a[0], **({"connectHost": a[1]} if a[1] else {})},
                                 sort_keys=True))
        runtime = pulumi.Output.from_input({"environment": args.runtime_environment, **tier.sizes}).apply(
            settings_fingerprint)
        invocation = aws.lambda_.Invocation(
            f"{name}-smoke-check", function_name=checker.name, input=event,
            # Exactly the image and the runtime settings: a change of either runs the check, nothing else does.
            triggers={"image": args.image_uri, "runtimeSettings": runtime},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[checker, *tier.ready, *args.smoke_after]))
        return invocation.result.apply(lambda text: json.loads(text) if text else None)

    # -- dashboard and queries --------------------------------------------------------------

    def _dashboard(self, name: str, args: OperationsArgs, stage: StageMetrics,
                   alarms: list[aws.cloudwatch.MetricAlarm], namespace: str) -> pulumi.Output[str]:
        ctx = args.context
        rt = stage.runtime
        names: dict[str, pulumi.Input[Any]] = {"db": stage.db_cluster, "acl": stage.web_acl_name,
                                               "cron": stage.cron_rule, "build": stage.build_project}
        runtime = {FargateMetrics: "ecs", ExpressMetrics: "express", AppRunnerMetrics: "apprunner",
                   type(None): ""}[type(rt)]
        if isinstance(rt, FargateMetrics):
            names.update(service=rt.service_name, cluster=rt.cluster_name, lb=rt.load_balancer, tg=rt.target_group)
        elif isinstance(rt, ExpressMetrics):
            assert isinstance(args.tier, ExpressTier)
            names.update(service=rt.service_name, cluster=rt.cluster_name, lb=rt.load_balancer,
                         distribution=args.tier.distribution_id)
        elif isinstance(rt, AppRunnerMetrics):
            names.update(service=rt.service_name, service_id=rt.service_id)
        alarm_arns = pulumi.Output.all(*[a.arn for a in alarms])

        def body(values: dict[str, Any]) -> str:
            return dashboard_body(DashboardFacts(
                stack=ctx.stack, region=ctx.region, runtime=runtime,
                namespace=namespace, db_cluster=values["db"], db_readers=stage.db_readers,
                service_name=values.get("service") or "", service_id=values.get("service_id") or "",
                cluster_name=values.get("cluster") or "", load_balancer=values.get("lb") or "",
                target_group=values.get("tg") or "", distribution_id=values.get("distribution") or "",
                web_acl_name=values["acl"], web_acl_global=args.web_acl_global, cron_rule=values["cron"],
                build_project=values["build"], uptime=stage.uptime_check is not None,
                alarm_arns=tuple(values["alarms"])))

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard_name(ctx.stack),
            dashboard_body=pulumi.Output.all(**names, alarms=alarm_arns).apply(body),
            opts=pulumi.ResourceOptions(parent=self))
        return dashboard.dashboard_name.apply(lambda n: dashboard_url(ctx.region, n))

    def _saved_queries(self, name: str, args: OperationsArgs, app_log_groups: list[pulumi.Output[str]]) -> None:
        ctx = args.context
        groups = {"app": app_log_groups,
                  "waf": [pulumi.Output.from_input(args.waf_log_group_name)] if args.waf_log_group_name else []}
        for query in saved_queries(waf_logs=args.waf_log_group_name is not None, app_logs=bool(app_log_groups)):
            aws.cloudwatch.QueryDefinition(
                f"{name}-query-{query.slug}", name=query_name(ctx.stack, query.title), query_string=query.query,
                log_group_names=groups[query.source], opts=pulumi.ResourceOptions(parent=self))

    # -- idle schedule ----------------------------------------------------------------------

    def _idle_schedule(self, name: str, args: OperationsArgs, tier: Tier) -> None:
        schedule = args.settings.idle_schedule
        assert schedule is not None
        ctx = args.context
        wake, sleep = schedule_cron(schedule.start, schedule.workdays), schedule_cron(schedule.end, schedule.workdays)
        if isinstance(tier, (FargateTier, ExpressTier)):
            for action, cron, low, high in (("wake", wake, tier.min_tasks, tier.max_tasks), ("sleep", sleep, 0, 0)):
                aws.appautoscaling.ScheduledAction(
                    f"{name}-{action}", name=f"redcap-{ctx.stack}-{action}", service_namespace="ecs",
                    resource_id=tier.scaling_resource_id, scalable_dimension="ecs:service:DesiredCount",
                    schedule=cron, timezone=schedule.timezone,
                    scalable_target_action={"min_capacity": low, "max_capacity": high},
                    opts=pulumi.ResourceOptions(parent=self))
            return
        role = aws.iam.Role(
            f"{name}-idle-role",
            assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("scheduler.amazonaws.com", a)),
            opts=pulumi.ResourceOptions(parent=self))
        grant = aws.iam.RolePolicy(
            f"{name}-idle-policy", role=role.id,
            policy=pulumi.Output.from_input(tier.service_arn).apply(pause_policy),
            opts=pulumi.ResourceOptions(parent=self))
        for action, cron, api in (("wake", wake, "resumeService"), ("sleep", sleep, "pauseService")):
            aws.scheduler.Schedule(
                f"{name}-{action}", name=f"redcap-{ctx.stack}-{action}",
                description=f"REDCap {ctx.stack} idle schedule: {api} of the App Runner service",
                schedule_expression=cron, schedule_expression_timezone=schedule.timezone,
                flexible_time_window={"mode": "OFF"},
                target={"arn": f"arn:aws:scheduler:::aws-sdk:apprunner:{api}", "role_arn": role.arn,
                        "input": pulumi.Output.from_input(tier.service_arn).apply(
                            lambda arn: json.dumps({"ServiceArn": arn})),
                        "retry_policy": {"maximum_event_age_in_seconds": 3600, "maximum_retry_attempts": 3}},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]))

    # -- budget -----------------------------------------------------------------------------

    def _budget(self, name: str, args: OperationsArgs) -> pulumi.Output[str]:
        ctx, ops = args.context, args.settings
        assert ops.monthly_budget_usd is not None and args.alarm_email is not None
        filters = []
        if args.budget_tag is not None:
            key, value = args.budget_tag
            filters.append({"name": "TagKeyValue", "values": [f"user:{key}${value}"]})
        budget = aws.budgets.Budget(
            f"{name}-budget", name=f"redcap-{ctx.stack}", budget_type="COST",
            limit_amount=f"{ops.monthly_budget_usd:.2f}", limit_unit="USD", time_unit="MONTHLY",
            cost_filters=filters or None, notifications=budget_notifications(args.alarm_email),
            opts=pulumi.ResourceOptions(parent=self))
        return budget.name
