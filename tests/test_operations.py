"""Operations under mocks, for each runtime and the operations variants: the alarm set, their
thresholds and the resources their dimensions name, the alarm topic (encrypted, TLS only,
subscribed), the dashboard (valid JSON naming only resources of the stack), the saved queries,
the uptime check and the post-deploy smoke check (runs exactly when the image or the runtime
settings change), the idle schedule and the budget; plus the pure helpers they are built from.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from components import alarms as al
from components import dashboard as db
from components import firewall as fw
from components.apprunner import apprunner_ids
from components.operations import load_balancer_suffix, target_group_suffix, web_acl_name
from functions import site_check as sc
from harness import ACCOUNT_ID, StackRun, cached_run, run_program
from settings.operations import OperationsSettings
from variants import IDLE_BERLIN, OPERATIONS_QUIET, OPERATIONS_TUNED, VARIANTS

VARIANT_BY_ID = {variant_id: (stack, overrides) for variant_id, stack, overrides in VARIANTS}

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
FUNCTION = "aws:lambda/function:Function"
SCHEDULE = "aws:scheduler/schedule:Schedule"
INVOCATION = "aws:lambda/invocation:Invocation"
ECS_DEV = {"domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": True, "ecs": {},
           "cronMinutes": 5}
# The committed prod stage creates its zone: its ECS service exists once the zone is delegated
# (docs/domains.md); "prod" below is that second phase.
DELEGATED = {"zoneDelegated": True}


def run_of(variant: str) -> StackRun:
    overrides = {
        "dev": ("dev", {"express": None}), "express": ("dev", {}), "prod": ("prod", DELEGATED),
        "tuned": ("dev", {"operations": OPERATIONS_TUNED}),
        "quiet": ("prod", {**DELEGATED, "operations": OPERATIONS_QUIET}),
        "prod-phase-one": ("prod", {}),
        "idle-apprunner": ("dev", {"express": None, "operations": {"idleSchedule": IDLE_BERLIN,
                                                                   "monthlyBudgetUsd": 150}}),
        "idle-ecs": ("dev", {"express": None, **ECS_DEV,
                             "operations": {"idleSchedule": {"timezone": "America/New_York"}}}),
        "idle-express": ("dev", {"operations": {"idleSchedule": IDLE_BERLIN}}),
    }[variant]
    return cached_run(*overrides)


def alarms_of(run: StackRun) -> dict[str, Any]:
    """The Operations component's alarms by id (other components may have alarms of their own)."""
    return {r.inputs["name"].split("-", 2)[2]: r for r in run.of_type(ALARM) if "redcap:operations:Operations" in r.urn}


def metrics_of(alarm: Any) -> dict[str, dict[str, Any]]:
    return {q["id"]: q["metric"] for q in alarm.inputs["metricQueries"] if "metric" in q}


def expression_of(alarm: Any) -> str:
    return next(q["expression"] for q in alarm.inputs["metricQueries"] if q.get("returnData"))


# "dev" below is the dev stage on App Runner ("express": None); "express" is the committed dev stage.

# --- the alarm set -------------------------------------------------------------------------------

def test_each_runtime_gets_its_alarms() -> None:
    app_runner = {"siteErrorRate", "siteLatency", "uptime", "dbCapacityAtMax", "dbConnections", "wafBlockedSpike",
                  "sesBounceRate", "sesComplaintRate", "imageBuildFailed", "buildTriggerErrors"}
    assert set(alarms_of(run_of("dev"))) == app_runner  # dev: cronMinutes 0, no readers
    # Express: the managed load balancer's errors and latency, and the service's tasks.
    assert set(alarms_of(run_of("express"))) == app_runner | {"tasksBelowMinimum"}
    assert set(alarms_of(run_of("prod"))) == app_runner | {
        "unhealthyTargets", "tasksBelowMinimum", "cronFailures", "cronStopped", "cronErrors", "dbReplicaLag"}
    assert "certificateExpiry" in alarms_of(cached_run(*VARIANT_BY_ID["prod-no-route53-cert"]))
    # Only the uptime check's alarm stays when everything else is switched off.
    assert set(alarms_of(run_of("quiet"))) == {"uptime"}
    assert run_of("prod").outputs["alarms"] == [f"redcap-prod-{a}" for a in alarms_in_catalogue_order(run_of("prod"))]


def alarms_in_catalogue_order(run: StackRun) -> list[str]:
    from settings.operations import ALARM_IDS

    return sorted(alarms_of(run), key=ALARM_IDS.index)


def test_before_its_zone_is_delegated_an_ecs_stage_watches_what_exists() -> None:
    """Phase one of a new zone (docs/domains.md): no ECS service, no public entry, so no site
    alarms, no uptime or smoke check; the database, e-mail, WAF and pipeline are watched."""
    run = run_of("prod-phase-one")
    assert run.of_type("aws:ecs/service:Service") == []
    assert set(alarms_of(run)) == {"dbCapacityAtMax", "dbConnections", "dbReplicaLag", "wafBlockedSpike",
                                   "sesBounceRate", "sesComplaintRate", "imageBuildFailed", "buildTriggerErrors"}
    assert run.of_type(FUNCTION) and not [f for f in run.of_type(FUNCTION) if f.name == "redcap-site-check"]
    assert "smokeCheck" not in run.outputs and [s.name for s in run.of_type(SCHEDULE)] == []
    titles = [w["properties"].get("title") for w in json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").inputs[
        "dashboardBody"])["widgets"]]
    assert "Aurora capacity (ACUs) and utilisation" in titles and not any("Requests" in t for t in titles if t)
    queries = {q.inputs["name"] for q in run.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")}
    assert queries == {"redcap-prod/WAF blocks by rule and client"}


def test_every_alarm_notifies_the_alarm_topic_on_alarm_and_ok() -> None:
    for variant in ("dev", "express", "prod", "idle-ecs"):
        run = run_of(variant)
        topic = run.named("redcap-alarms", TOPIC).outputs["arn"]
        for alarm_id, alarm in alarms_of(run).items():
            assert alarm.inputs["alarmActions"] == [topic] and alarm.inputs["okActions"] == [topic], alarm_id
            assert f"docs/operations.md#{alarm_id.lower()}" in alarm.inputs["alarmDescription"]
            assert alarm.inputs["datapointsToAlarm"] == alarm.inputs["evaluationPeriods"]
            assert sum(1 for q in alarm.inputs["metricQueries"] if q.get("returnData")) == 1


def test_ecs_alarm_dimensions_name_the_stacks_own_resources() -> None:
    run = run_of("prod")
    found = alarms_of(run)
    alb, tg = run.one("aws:lb/loadBalancer:LoadBalancer"), run.one("aws:lb/targetGroup:TargetGroup")
    assert metrics_of(found["siteErrorRate"])["requests"]["dimensions"] == {"LoadBalancer": alb.outputs["arnSuffix"]}
    assert metrics_of(found["unhealthyTargets"])["unhealthy"]["dimensions"] == {
        "LoadBalancer": alb.outputs["arnSuffix"], "TargetGroup": tg.outputs["arnSuffix"]}
    running = metrics_of(found["tasksBelowMinimum"])["running"]
    assert (running["namespace"], running["dimensions"]) == ("ECS/ContainerInsights", {
        "ClusterName": run.one("aws:ecs/cluster:Cluster").inputs["name"],
        "ServiceName": run.one("aws:ecs/service:Service").inputs["name"]})
    assert found["tasksBelowMinimum"].inputs["threshold"] == 2  # prod's minContainers
    assert found["tasksBelowMinimum"].inputs["comparisonOperator"] == "LessThanThreshold"
    cluster = run.one("aws:rds/cluster:Cluster").inputs["clusterIdentifier"]
    assert metrics_of(found["dbCapacityAtMax"])["acu"]["dimensions"] == {"DBClusterIdentifier": cluster}
    assert found["dbCapacityAtMax"].inputs["threshold"] == 8  # prod's maxCapacityAcu
    assert found["dbCapacityAtMax"].inputs["evaluationPeriods"] == 6  # 30 minutes of 5
    assert expression_of(found["dbConnections"]) == f"100 * FILL(connections, 0) / {al.aurora_max_connections(8)}"
    assert metrics_of(found["dbReplicaLag"])["lag"]["dimensions"] == {"DBClusterIdentifier": cluster, "Role": "WRITER"}
    rule = run.one("aws:cloudwatch/eventRule:EventRule", "schedule").inputs["name"]
    assert metrics_of(found["cronFailures"])["failed"]["dimensions"] == {"RuleName": rule}
    assert metrics_of(found["cronStopped"])["calls"]["dimensions"] == {"RuleName": rule}
    acl = web_acl_name(run.one("aws:wafv2/webAcl:WebAcl").outputs["arn"])
    assert metrics_of(found["wafBlockedSpike"])["blocked"]["dimensions"] == {
        "WebACL": acl, "Region": "us-east-1", "Rule": "ALL"}
    assert metrics_of(found["imageBuildFailed"])["failed"]["dimensions"] == {
        "ProjectName": run.one("aws:codebuild/project:Project").inputs["name"]}
    assert metrics_of(found["buildTriggerErrors"])["errors"]["dimensions"] == {
        "FunctionName": run.one(FUNCTION, "trigger").inputs["name"]}
    # cron.php errors come from a metric filter on the container's own log group.
    metric_filter = run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    assert metric_filter.inputs["logGroupName"] == run.one("aws:cloudwatch/logGroup:LogGroup", "container").inputs["name"]
    assert metric_filter.inputs["pattern"] == db.CRON_ERRORS_FILTER
    assert metric_filter.inputs["metricTransformation"]["namespace"] == metrics_of(found["cronErrors"])["errors"]["namespace"]


def test_apprunner_alarm_dimensions_name_the_service() -> None:
    run = run_of("dev")
    service = run.one("aws:apprunner/service:Service")
    name, service_id = apprunner_ids(service.outputs["arn"])
    assert (name, service_id) == (service.inputs["serviceName"], service.outputs["serviceId"])
    found = alarms_of(run)
    assert metrics_of(found["siteErrorRate"])["errors5xx"] == {
        "namespace": "AWS/AppRunner", "metricName": "5xxStatusResponses", "stat": "Sum", "period": 300,
        "dimensions": {"ServiceName": name, "ServiceID": service_id}}
    # App Runner reports milliseconds; the threshold is seconds.
    assert expression_of(found["siteLatency"]) == "FILL(latency, 0) / 1000"
    assert found["siteLatency"].inputs["threshold"] == 10


def test_thresholds_windows_and_off_switches_follow_the_settings() -> None:
    found = alarms_of(run_of("tuned"))
    assert "wafBlockedSpike" not in found
    assert (found["siteLatency"].inputs["threshold"], found["siteLatency"].inputs["evaluationPeriods"]) == (20, 6)
    assert (found["dbCapacityAtMax"].inputs["threshold"], found["dbCapacityAtMax"].inputs["evaluationPeriods"]) == (1.5, 12)
    # The uptime check runs every 10 minutes: one period per check, two checks in the default window.
    uptime = found["uptime"]
    assert metrics_of(uptime)["failed"]["period"] == 600 and uptime.inputs["evaluationPeriods"] == 1
    assert uptime.inputs["treatMissingData"] == "breaching" and expression_of(uptime) == "FILL(failed, 1)"
    defaults = alarms_of(run_of("dev"))["uptime"]
    assert metrics_of(defaults)["failed"]["period"] == 300 and defaults.inputs["evaluationPeriods"] == 2
    # SES rates are fractions in CloudWatch, percent in the settings.
    assert expression_of(found["sesBounceRate"]) == "100 * FILL(rate, 0)"
    assert found["sesBounceRate"].inputs["threshold"] == 5 and found["sesComplaintRate"].inputs["threshold"] == 0.1


def test_aurora_max_connections_estimate() -> None:
    # GREATEST(log2(mem/805306368)*45, log2(mem/8187281408)*1000), mem = 2 GiB per ACU.
    assert [al.aurora_max_connections(a) for a in (1, 2, 4, 8, 16, 64)] == [63, 108, 153, 1069, 2069, 4069]


# --- the alarm topic -------------------------------------------------------------------------------

def test_alarm_topic_is_encrypted_tls_only_and_for_this_stages_alarms() -> None:
    run = run_of("prod")
    key = run.one("aws:kms/key:Key", "redcap-key")
    topic = run.named("redcap-alarms", TOPIC)
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    policy = json.loads(run.named("redcap-alarms-policy", "aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    allow, deny = policy["Statement"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and allow["Action"] == "sns:Publish"
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}, "ArnLike": {
        "aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT_ID}:alarm:redcap-prod-*"}}
    assert (deny["Effect"], deny["Principal"], deny["Condition"]) == (
        "Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})
    # Every alarm name matches the pattern the policy admits.
    assert all(re.fullmatch(r"redcap-prod-\w+", a.inputs["name"]) for a in alarms_of(run).values())
    # The stack key lets CloudWatch encrypt for the topic (only for this account).
    publishers = next(s for s in json.loads(key.inputs["policy"])["Statement"]
                      if s["Sid"] == "CloudWatchAlarmsToEncryptedTopics")
    assert publishers["Principal"]["Service"] == "cloudwatch.amazonaws.com"
    assert publishers["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_alarm_address_is_subscribed_or_left_to_the_operator() -> None:
    run = run_of("prod")
    subscription = run.named("redcap-alarms-email", "aws:sns/topicSubscription:TopicSubscription")
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == ("email", "redcap-admin@example.org")
    rows = [r for r in run.outputs["emailSubscriptions"] if r["purpose"] == "CloudWatch alarms"]
    assert rows == [{"purpose": "CloudWatch alarms", "address": "redcap-admin@example.org",
                     "topicArn": run.named("redcap-alarms", TOPIC).outputs["arn"],
                     "confirm": "click the link in the mail 'AWS Notification - Subscription Confirmation' within "
                                "3 days (docs/email.md)"}]
    # dev leaves subscriptions to the operator (redcap:emailSubscriptions false): the output says how.
    by_hand = run_of("tuned")
    assert [s.name for s in by_hand.of_type("aws:sns/topicSubscription:TopicSubscription")] == []
    row = next(r for r in by_hand.outputs["emailSubscriptions"] if r["purpose"] == "CloudWatch alarms")
    assert row["address"] == "redcap-ops@example.org"  # operations.alarmEmail instead of redcap:email
    assert row["subscribe"] == (f"aws sns subscribe --region us-east-1 --topic-arn "
                                f"{by_hand.named('redcap-alarms', TOPIC).outputs['arn']} --protocol email "
                                "--notification-endpoint redcap-ops@example.org")


# --- dashboard and saved queries ------------------------------------------------------------------

def dashboard_names(widgets: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(namespace, dimension, value) of every metric row in the dashboard."""
    found = []
    for widget in widgets:
        for row in widget["properties"].get("metrics", []):
            plain = [x for x in row if not isinstance(x, dict)]
            for i in range(2, len(plain) - 1, 2):
                found.append((plain[0], plain[i], plain[i + 1]))
    return found


@pytest.mark.parametrize("variant", ["dev", "express", "prod", "idle-ecs"])
def test_dashboard_is_valid_and_names_only_the_stacks_resources(variant: str) -> None:
    run = run_of(variant)
    dashboard = run.one("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    widgets = body["widgets"]
    assert dashboard.inputs["dashboardName"] == f"redcap-{run.stack}"
    assert run.outputs["dashboardUrl"] == (f"https://us-east-1.console.aws.amazon.com/cloudwatch/home?region="
                                           f"us-east-1#dashboards/dashboard/redcap-{run.stack}")
    assert all(w["x"] + w["width"] <= 24 and w["type"] in ("metric", "alarm") for w in widgets)
    alarm_widget = next(w for w in widgets if w["type"] == "alarm")
    assert alarm_widget["properties"]["alarms"] == sorted(a.outputs["arn"] for a in alarms_of(run).values())
    known = {run.one("aws:rds/cluster:Cluster").inputs["clusterIdentifier"], "WRITER", "ALL", "us-east-1",
             web_acl_name(run.one("aws:wafv2/webAcl:WebAcl").outputs["arn"]),
             run.one("aws:codebuild/project:Project").inputs["name"]}
    known |= {r.inputs["name"] for r in run.of_type("aws:cloudwatch/eventRule:EventRule") if "name" in r.inputs}
    if run.of_type("aws:ecs/expressGatewayService:ExpressGatewayService"):
        known |= {"Global", run.one("aws:cloudfront/distribution:Distribution").id,
                  load_balancer_suffix(run.one("aws:cloudfront/vpcOrigin:VpcOrigin").inputs[
                      "vpcOriginEndpointConfig"]["arn"]),
                  run.one("aws:ecs/cluster:Cluster").inputs["name"],
                  run.one("aws:ecs/expressGatewayService:ExpressGatewayService").inputs["serviceName"]}
        titles = " ".join(w["properties"].get("title", "") for w in widgets)
        assert "CloudFront, the public entry" in titles
        assert {w["properties"]["region"] for w in widgets if "WAF" in w["properties"].get("title", "")} == {"us-east-1"}
    elif run.of_type("aws:lb/loadBalancer:LoadBalancer"):
        known |= {run.one("aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"],
                  run.one("aws:lb/targetGroup:TargetGroup").outputs["arnSuffix"],
                  run.one("aws:ecs/cluster:Cluster").inputs["name"], run.one("aws:ecs/service:Service").inputs["name"]}
        titles = " ".join(w["properties"].get("title", "") for w in widgets)
        assert "Tasks and targets" in titles and "App Runner" not in titles
    else:
        service = run.one("aws:apprunner/service:Service")
        known |= set(apprunner_ids(service.outputs["arn"]))
    names = dashboard_names(widgets)
    assert names and {value for _, _, value in names} <= known, {v for _, _, v in names} - known
    namespaces = {ns for ns, _, _ in names} | {w["properties"]["metrics"][0][0] for w in widgets
                                               if w["type"] == "metric" and not isinstance(w["properties"]["metrics"][0][0], dict)}
    assert f"REDCap/{run.stack}" in namespaces  # the uptime check's metrics


def test_no_dashboard_when_switched_off() -> None:
    run = run_of("tuned")
    assert run.of_type("aws:cloudwatch/dashboard:Dashboard") == [] and "dashboardUrl" not in run.outputs


def test_saved_queries_read_the_containers_log_and_the_waf_log() -> None:
    prod = run_of("prod")
    queries = {q.inputs["name"]: q.inputs for q in prod.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")}
    container = prod.one("aws:cloudwatch/logGroup:LogGroup", "container").inputs["name"]
    waf = prod.one("aws:cloudwatch/logGroup:LogGroup", "waf-logs").inputs["name"]
    assert {name: q["logGroupNames"] for name, q in queries.items()} == {
        "redcap-prod/5xx by path": [container], "redcap-prod/slowest requests": [container],
        "redcap-prod/PHP fatal errors": [container], "redcap-prod/bootstrap failures": [container],
        "redcap-prod/WAF blocks by rule and client": [waf]}
    dev = run_of("dev")
    name, service_id = apprunner_ids(dev.one("aws:apprunner/service:Service").outputs["arn"])
    groups = {q.inputs["logGroupNames"][0] for q in dev.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")}
    assert f"/aws/apprunner/{name}/{service_id}/application" in groups
    external = cached_run("dev", {"express": None, "externalResources": {"wafWebAcl": "arn:aws:wafv2:us-east-1:123456789012:regional/"
                                                                      "webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"}})
    titles = {q.inputs["name"] for q in external.of_type("aws:cloudwatch/queryDefinition:QueryDefinition")}
    assert "redcap-dev/WAF blocks by rule and client" not in titles  # the external ACL logs elsewhere
    # ... but its blocked requests are still watched, by the ACL's own name.
    assert metrics_of(alarms_of(external)["wafBlockedSpike"])["blocked"]["dimensions"]["WebACL"] == "site"


def test_access_log_parse_reads_the_containers_log_format() -> None:
    """The saved queries' parse pattern against lines in the container's LogFormat
    (container/apache/redcap.conf)."""
    pattern = re.compile(re.search(r"/(.*)/$", db.ACCESS_LOG_PARSE).group(1).replace("(?<", "(?P<"))
    line = '10.0.2.15 - - [01/Dec/2026:10:00:00 +0000] "GET /redcap_v15.0.9/index.php HTTP/1.1" 503 217 1834221 "Mozilla/5.0"'
    assert pattern.match(line).groupdict() == {"client": "10.0.2.15", "time": "01/Dec/2026:10:00:00 +0000",
                                               "method": "GET", "path": "/redcap_v15.0.9/index.php",
                                               "status": "503", "bytes": "217", "micros": "1834221"}
    assert pattern.match("bootstrap ERROR: database unreachable") is None


# --- uptime and smoke checks -----------------------------------------------------------------------

def test_uptime_check_runs_outside_the_vpc_on_a_schedule_with_least_privilege() -> None:
    run = run_of("prod")
    function = run.one(FUNCTION, "site-check")
    assert "vpcConfig" not in function.inputs  # outside the VPC, over the internet like users
    assert function.inputs["tags"]["UptimeCheckOf"] == run.one("aws:lb/loadBalancer:LoadBalancer").outputs["arn"]
    env = function.inputs["environment"]["variables"]
    secret = run.one("aws:secretsmanager/secret:Secret", "check-header")
    assert env == {"SITE_URL": run.outputs["siteUrl"], "CHECK_HEADER": fw.CRON_HEADER,
                   "CHECK_SECRET_ARN": secret.outputs["arn"], "METRIC_NAMESPACE": "REDCap/prod", "UPTIME_MINUTES": "5"}
    value = run.one("aws:secretsmanager/secretVersion:SecretVersion", "check-header")
    assert value.inputs["secretString"]["value"] == fw.cron_search_string("mock-random-password-0123456789")
    assert "4dabf18193072939515e22adb298388d" in value.inputs["secretString"]  # marked secret
    schedule = run.one(SCHEDULE, "uptime")
    assert schedule.inputs["scheduleExpression"] == "rate(5 minutes)"
    assert schedule.inputs["target"]["arn"] == function.outputs["arn"]
    assert json.loads(schedule.inputs["target"]["input"]) == {"mode": "uptime"}
    grants = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "check-policy").inputs["policy"])["Statement"]
    by_sid = {s["Sid"]: s for s in grants}
    assert by_sid["ReadCheckHeader"]["Resource"] == [secret.outputs["arn"]]
    assert by_sid["PublishCheckMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "REDCap/prod"}}
    invoke = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "uptime-invoke").inputs["policy"])["Statement"]
    assert invoke == [{"Sid": "RunSiteCheck", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                       "Resource": [function.outputs["arn"]]}]
    trust = json.loads(run.one("aws:iam/role:Role", "uptime-role").inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_smoke_check_targets_the_entry_and_follows_image_and_runtime_settings() -> None:
    prod = run_of("prod")
    invocation = prod.one(INVOCATION, "smoke")
    alb = prod.one("aws:lb/loadBalancer:LoadBalancer")
    assert json.loads(invocation.inputs["input"]) == {
        "mode": "smoke", "siteUrl": "https://redcap.example.org", "connectHost": alb.outputs["dnsName"]}
    assert set(invocation.inputs["triggers"]) == {"image", "runtimeSettings"}
    assert invocation.inputs["triggers"]["image"] == prod.outputs["imageUri"]
    # It runs after the service, its WAF association and the ACL are in place.
    for needed in (prod.one("aws:ecs/service:Service"), prod.one("aws:wafv2/webAclAssociation:WebAclAssociation"),
                   prod.one("aws:wafv2/webAcl:WebAcl")):
        assert needed.urn in invocation.dependencies
    assert prod.outputs["smokeCheck"]["ok"] is True and prod.outputs["smokeCheck"]["site"] == "https://redcap.example.org"
    dev = run_of("dev").one(INVOCATION, "smoke")
    assert json.loads(dev.inputs["input"]) == {"mode": "smoke", "siteUrl": run_of("dev").outputs["appRunnerServiceUrl"]}
    assert run_of("tuned").of_type(INVOCATION) != [] and "smokeCheck" not in run_of("tuned").outputs
    assert "redcap-smoke-check" not in [i.name for i in run_of("tuned").of_type(INVOCATION)]


def triggers(stack: str, overrides: dict[str, Any]) -> dict[str, str]:
    return cached_run(stack, overrides).one(INVOCATION, "smoke").inputs["triggers"]


@pytest.mark.parametrize("runtime, size_changes", [
    ({"express": None}, ({"memory": "6 GB"}, {"appRunnerConcurrency": 20})),
    ({}, ({"express": {"cpu": "2 vCPU", "memory": "4 GB"}},)),
    ({"express": None, **ECS_DEV}, ({"ecs": {"cpu": "1 vCPU", "memory": "2 GB"}},)),
], ids=["apprunner", "express", "ecs"])
def test_smoke_check_runs_exactly_when_the_image_or_runtime_settings_change(runtime, size_changes) -> None:
    base = triggers("dev", runtime)
    assert run_program("dev", runtime).one(INVOCATION, "smoke").inputs["triggers"] == base  # unchanged: no run
    for unrelated in ({"wafSqliRulesToCount": ["SQLi_BODY"], "generalLogRetention": 60},
                      {"operations": {"alarms": {"siteLatency": {"threshold": 30}}}}):
        assert triggers("dev", {**runtime, **unrelated}) == base
    new_image = triggers("dev", {**runtime, "deployTag": "15.0.9-hotfix1"})
    assert new_image["image"] != base["image"] and new_image["runtimeSettings"] == base["runtimeSettings"]
    for runtime_change in ({"phpTimezone": "Europe/Berlin"}, *size_changes):
        changed = triggers("dev", {**runtime, **runtime_change})
        assert changed["runtimeSettings"] != base["runtimeSettings"] and changed["image"] == base["image"]


# --- idle schedule -----------------------------------------------------------------------------------

def test_ecs_idle_schedule_scales_the_service_to_zero_outside_working_hours() -> None:
    run = run_of("idle-ecs")
    actions = {a.inputs["name"]: a.inputs for a in run.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")}
    target = run.one("aws:appautoscaling/target:Target")
    weekdays = "MON,TUE,WED,THU,FRI"
    assert actions == {
        "redcap-dev-wake": {"name": "redcap-dev-wake", "serviceNamespace": "ecs", "scalableDimension":
                            "ecs:service:DesiredCount", "resourceId": target.inputs["resourceId"],
                            "schedule": f"cron(0 7 ? * {weekdays} *)", "timezone": "America/New_York",
                            "scalableTargetAction": {"minCapacity": 1, "maxCapacity": 2}},
        "redcap-dev-sleep": {"name": "redcap-dev-sleep", "serviceNamespace": "ecs", "scalableDimension":
                             "ecs:service:DesiredCount", "resourceId": target.inputs["resourceId"],
                             "schedule": f"cron(0 19 ? * {weekdays} *)", "timezone": "America/New_York",
                             "scalableTargetAction": {"minCapacity": 0, "maxCapacity": 0}},
    }
    # The scheduled bounds are the schedule's, not drift: a `pulumi up` at night keeps the stage asleep.
    assert target.ignore_changes == ["minCapacity", "maxCapacity"]
    assert run_of("prod").one("aws:appautoscaling/target:Target").ignore_changes == []
    env = run.one(FUNCTION, "site-check").inputs["environment"]["variables"]
    assert json.loads(env["IDLE_SCHEDULE"]) == {"timezone": "America/New_York", "workdays": ["mon", "tue", "wed", "thu",
                                                "fri"], "start": "07:00", "end": "19:00",
                                                "graceMinutes": al.WAKE_GRACE_MINUTES}


def test_app_tier_alarms_go_quiet_while_the_stage_sleeps() -> None:
    found = alarms_of(run_of("idle-ecs"))
    app_tier = {"siteErrorRate", "siteLatency", "unhealthyTargets", "tasksBelowMinimum", "uptime", "cronFailures",
                "cronStopped", "cronErrors"}
    for alarm_id, alarm in found.items():
        gated = any(q["id"] == "awake" for q in alarm.inputs["metricQueries"])
        assert gated is (alarm_id in app_tier), alarm_id
    awake = metrics_of(found["tasksBelowMinimum"])["awake"]
    assert (awake["namespace"], awake["metricName"], awake["stat"]) == ("REDCap/dev", "AppTierExpected", "Minimum")
    # Below-threshold alarms see their threshold while asleep, the others 0: neither breaches.
    assert expression_of(found["tasksBelowMinimum"]) == "IF(FILL(awake, 1) < 1, 1, signal)"
    assert expression_of(found["siteErrorRate"]) == "IF(FILL(awake, 1) < 1, 0, signal)"
    assert expression_of(found["unhealthyTargets"]) == "IF(FILL(awake, 1) < 1, -1, signal)"
    assert not any(q["id"] == "awake" for a in alarms_of(run_of("prod")).values() for q in a.inputs["metricQueries"])


def test_apprunner_idle_schedule_pauses_and_resumes_the_service() -> None:
    run = run_of("idle-apprunner")
    service = run.one("aws:apprunner/service:Service").outputs["arn"]
    schedules = {s.inputs["name"]: s.inputs for s in run.of_type(SCHEDULE) if s.inputs["name"] != "redcap-dev-uptime"}
    assert {n: (s["scheduleExpression"], s["scheduleExpressionTimezone"], s["target"]["arn"],
                json.loads(s["target"]["input"])) for n, s in schedules.items()} == {
        "redcap-dev-wake": ("cron(30 7 ? * MON,TUE,WED,THU,FRI *)", "Europe/Berlin",
                            "arn:aws:scheduler:::aws-sdk:apprunner:resumeService", {"ServiceArn": service}),
        "redcap-dev-sleep": ("cron(0 18 ? * MON,TUE,WED,THU,FRI *)", "Europe/Berlin",
                             "arn:aws:scheduler:::aws-sdk:apprunner:pauseService", {"ServiceArn": service}),
    }
    grants = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "idle-policy").inputs["policy"])["Statement"]
    assert grants == [{"Sid": "IdleSchedule", "Effect": "Allow",
                       "Action": ["apprunner:PauseService", "apprunner:ResumeService"], "Resource": [service]}]
    role = run.one("aws:iam/role:Role", "idle-role")
    assert all(s["target"]["roleArn"] == role.outputs["arn"] for s in schedules.values())


def test_express_operations() -> None:
    """Express: the public entry is the CloudFront distribution (uptime tag, smoke URL); the site
    alarms read the load balancer Express Mode manages; the web ACL is CLOUDFRONT scope."""
    run = run_of("express")
    distribution = run.one("aws:cloudfront/distribution:Distribution")
    function = run.one(FUNCTION, "site-check")
    assert function.inputs["tags"]["UptimeCheckOf"] == distribution.outputs["arn"]
    assert function.inputs["environment"]["variables"]["SITE_URL"] == run.outputs["siteUrl"]
    assert json.loads(run.one(INVOCATION, "smoke").inputs["input"]) == {
        "mode": "smoke", "siteUrl": f"https://{distribution.outputs['domainName']}"}
    found = alarms_of(run)
    managed_lb = load_balancer_suffix(run.one("aws:cloudfront/vpcOrigin:VpcOrigin").inputs["vpcOriginEndpointConfig"]["arn"])
    assert metrics_of(found["siteErrorRate"])["requests"]["dimensions"] == {"LoadBalancer": managed_lb}
    service = run.one("aws:ecs/expressGatewayService:ExpressGatewayService")
    assert metrics_of(found["tasksBelowMinimum"])["running"]["dimensions"] == {
        "ClusterName": run.one("aws:ecs/cluster:Cluster").inputs["name"], "ServiceName": service.inputs["serviceName"]}
    # CLOUDFRONT-scope WAF metrics have no Region (and live in us-east-1, where dev is).
    assert metrics_of(found["wafBlockedSpike"])["blocked"]["dimensions"] == {
        "WebACL": web_acl_name(run.one("aws:wafv2/webAcl:WebAcl").outputs["arn"]), "Rule": "ALL"}
    # A stage elsewhere has no alarm topic in us-east-1 for it: the dashboard shows those metrics.
    stage = al.StageMetrics(stack="s", region="eu-west-1", runtime=al.ExpressMetrics("c", "s", "app/x/y", 1),
                            db_cluster="c", db_max_acu=2, db_readers=0, uptime_minutes=5, web_acl_name="acl",
                            web_acl_global=True)
    assert "wafBlockedSpike" not in [a.id for a in al.alarm_specs(stage, OperationsSettings())]
    assert "wafBlockedSpike" in [a.id for a in al.alarm_specs(
        al.StageMetrics(**{**stage.__dict__, "web_acl_global": False}), OperationsSettings())]
    metric_filter = run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter") if run.of_type(
        "aws:cloudwatch/logMetricFilter:LogMetricFilter") else None
    assert metric_filter is None  # dev calls no cron (cronMinutes 0)


def test_express_idle_schedule_scales_its_service() -> None:
    run = run_of("idle-express")
    service = run.one("aws:ecs/expressGatewayService:ExpressGatewayService")
    cluster = run.one("aws:ecs/cluster:Cluster").inputs["name"]
    actions = {a.inputs["name"]: a.inputs for a in run.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")}
    assert {n: (a["resourceId"], a["schedule"], a["timezone"], a["scalableTargetAction"]) for n, a in actions.items()} == {
        "redcap-dev-wake": (f"service/{cluster}/{service.inputs['serviceName']}",
                            "cron(30 7 ? * MON,TUE,WED,THU,FRI *)", "Europe/Berlin", {"minCapacity": 1, "maxCapacity": 2}),
        "redcap-dev-sleep": (f"service/{cluster}/{service.inputs['serviceName']}",
                             "cron(0 18 ? * MON,TUE,WED,THU,FRI *)", "Europe/Berlin", {"minCapacity": 0, "maxCapacity": 0}),
    }
    assert service.ignore_changes == ["scalingTargets"]
    assert run_of("express").one("aws:ecs/expressGatewayService:ExpressGatewayService").ignore_changes == []


# --- budget ---------------------------------------------------------------------------------------------

def test_budget_alerts_on_forecast_and_actual_spend_of_the_stage() -> None:
    run = run_of("idle-apprunner")
    budget = run.one("aws:budgets/budget:Budget").inputs
    assert (budget["name"], budget["budgetType"], budget["limitAmount"], budget["limitUnit"], budget["timeUnit"]) == (
        "redcap-dev", "COST", "150.00", "USD", "MONTHLY")
    assert budget["costFilters"] == [{"name": "TagKeyValue", "values": ["user:deployment$redcap-dev"]}]
    assert [(n["notificationType"], n["threshold"], n["subscriberEmailAddresses"]) for n in budget["notifications"]] == [
        ("ACTUAL", 80, ["redcap-admin@example.org"]), ("ACTUAL", 100, ["redcap-admin@example.org"]),
        ("FORECASTED", 100, ["redcap-admin@example.org"])]
    assert run.outputs["budgetName"] == "redcap-dev"
    assert run_of("prod").of_type("aws:budgets/budget:Budget") == []
    # Without the stack's deployment tag the budget counts the whole account.
    untagged = cached_run("dev", {"aws:defaultTags": None, "operations": {"monthlyBudgetUsd": 99}})
    assert "costFilters" not in untagged.one("aws:budgets/budget:Budget").inputs


# --- pure helpers --------------------------------------------------------------------------------------

def test_arn_parsers() -> None:
    assert load_balancer_suffix("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/a/b") == "app/a/b"
    assert target_group_suffix("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/c") == "targetgroup/t/c"
    assert web_acl_name("arn:aws:wafv2:us-east-1:1:regional/webacl/site/a1b2") == "site"
    assert apprunner_ids("arn:aws:apprunner:us-east-1:1:service/redcap-dev/0123") == ("redcap-dev", "0123")
    for bad in (lambda: web_acl_name("arn:aws:wafv2:x"), lambda: apprunner_ids("arn:aws:apprunner:x"),
                lambda: load_balancer_suffix("arn:aws:elasticloadbalancing:x:targetgroup/t/c")):
        with pytest.raises(ValueError):
            bad()


def test_schedule_cron() -> None:
    assert al.schedule_cron("07:05", ("mon", "sat")) == "cron(5 7 ? * MON,SAT *)"


def test_gated_metric_queries() -> None:
    spec = al.AlarmSpec(id="x", summary="s", metrics=(al.MetricRef("m", "NS", "M", {"D": "v"}, "Sum", 60),),
                        expression="FILL(m, 0)", comparison="GreaterThanOrEqualToThreshold", threshold=3, period=60,
                        evaluation_periods=2, app_tier=True)
    queries = al.metric_queries(spec, "REDCap/s")
    assert [q["id"] for q in queries] == ["m", "awake", "signal", "alarm"]
    assert queries[-1]["expression"] == "IF(FILL(awake, 1) < 1, 0, signal)" and queries[-1]["return_data"]
    plain = al.metric_queries(al.AlarmSpec(**{**spec.__dict__, "app_tier": False}), "REDCap/s")
    assert [q["id"] for q in plain] == ["m", "alarm"] and plain[-1]["expression"] == "FILL(m, 0)"


def test_alarm_specs_without_optional_parts() -> None:
    stage = al.StageMetrics(stack="s", region="us-east-1", runtime=al.AppRunnerMetrics("n", "i"), db_cluster="c",
                            db_max_acu=2, db_readers=0, uptime_minutes=5)
    assert [s.id for s in al.alarm_specs(stage, OperationsSettings())] == [
        "siteErrorRate", "siteLatency", "dbCapacityAtMax", "dbConnections", "sesBounceRate", "sesComplaintRate"]


def test_app_tier_expected_follows_the_schedule_in_its_time_zone() -> None:
    berlin = sc.Schedule("Europe/Berlin", ("mon", "tue", "wed", "thu", "fri"), "07:30", "18:00", grace_minutes=15)

    def at(text: str) -> bool:
        return sc.app_tier_expected(berlin, dt.datetime.fromisoformat(text))

    # Monday 2026-03-30 (summer time, UTC+2) and Monday 2026-03-23 (winter time, UTC+1).
    assert at("2026-03-30T05:45:00+00:00") and not at("2026-03-30T05:44:00+00:00")  # 07:45 local: start + grace
    assert at("2026-03-23T06:45:00+00:00") and not at("2026-03-23T06:44:00+00:00")
    assert at("2026-03-30T15:59:00+00:00") and not at("2026-03-30T16:00:00+00:00")  # 18:00 local: asleep
    assert not at("2026-03-28T10:00:00+00:00")  # Saturday
    assert sc.app_tier_expected(None, dt.datetime.now(dt.timezone.utc))
    minutes = sc.expected_minutes(berlin, dt.datetime.fromisoformat("2026-03-30T15:57:30+00:00"), 5)
    assert [(m.strftime("%H:%M"), up) for m, up in minutes] == [
        ("15:57", True), ("15:58", True), ("15:59", True), ("16:00", False), ("16:01", False), ("16:02", False)]
