"""ECS Fargate (components/ecs.py): prod once its zone is delegated (Route53 zone, certificate from
the Domain component) and a stage with a certificate ARN, no Route53, port 9090 and other
scaling settings. Phase one of a new zone (no ECS service yet) is in tests/test_dns.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from container.context import WRITABLE_PATHS

from compute_support import CERTIFICATE_ARN, policy_of, policy_violations, run_variant, statements
from harness import depends_on
from transitions import run_transition

INVOCATION = "aws:lambda/invocation:Invocation"
ROLLOUT_INVOCATION = "redcap-rollout-invocation"
LIVE = {"zoneDelegated": True}

ROOT = Path(__file__).resolve().parent.parent


def task_definition(run):
    return run.one("aws:ecs/taskDefinition:TaskDefinition")


def container(run):
    return json.loads(task_definition(run).inputs["containerDefinitions"])[0]


def test_cluster_has_container_insights():
    cluster = run_variant("prod").one("aws:ecs/cluster:Cluster")
    assert cluster.inputs["settings"] == [{"name": "containerInsights", "value": "enabled"}]


@pytest.mark.parametrize("variant, cpu, memory, port", [("prod", "2048", "4096", 8080), ("ecs-local", "1024", "2048", 9090)])
def test_task_definition_is_fargate_x86_with_settings_sizes(variant, cpu, memory, port):
    run = run_variant(variant)
    inputs = task_definition(run).inputs
    assert (inputs["cpu"], inputs["memory"]) == (cpu, memory)
    assert inputs["networkMode"] == "awsvpc" and inputs["requiresCompatibilities"] == ["FARGATE"]
    assert inputs["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    assert inputs["ephemeralStorage"] == {"sizeInGib": 21}
    assert inputs["taskRoleArn"] == run.named("redcap-task-role").outputs["arn"]
    assert inputs["executionRoleArn"] == run.named("redcap-execution-role").outputs["arn"]
    definition = container(run)
    assert definition["image"] == run.outputs["imageUri"] and ":latest" not in definition["image"]
    assert definition["portMappings"] == [{"containerPort": port, "hostPort": port, "protocol": "tcp"}]
    env = {e["name"]: e["value"] for e in definition["environment"]}
    assert env["PORT"] == str(port)
    # The internet-facing load balancer passes a client's own X-Forwarded-Host on: never trusted here.
    assert "TRUST_FORWARDED_HOST" not in env


@pytest.mark.parametrize("variant", ["prod", "ecs-local"])
def test_root_filesystem_is_read_only_with_a_task_volume_per_writable_path(variant):
    run = run_variant(variant)
    definition = container(run)
    assert definition["readonlyRootFilesystem"] is True
    # Bind mounts on the task's ephemeral storage (no host path, no EFS): they start from the
    # image's VOLUME content and vanish with the task.
    volumes = task_definition(run).inputs["volumes"]
    assert all(set(v) == {"name"} for v in volumes)
    mounts = {m["containerPath"]: m for m in definition["mountPoints"]}
    assert sorted(mounts) == sorted(WRITABLE_PATHS) == sorted([
        "/tmp", "/var/www/html/temp", "/var/lib/php/sessions", "/run/redcap", "/run/apache2", "/run/lock/apache2",
        "/var/lib/redcap/tls", "/var/lib/redcap/conf"])
    assert sorted(m["sourceVolume"] for m in mounts.values()) == sorted(v["name"] for v in volumes)
    assert not any(m["readOnly"] for m in mounts.values())


def test_the_dockerfile_declares_exactly_the_writable_paths_as_volumes():
    dockerfile = (ROOT / "container" / "Dockerfile").read_text()
    declared = [json.loads(line[len("VOLUME "):]) for line in dockerfile.splitlines() if line.startswith("VOLUME ")]
    assert declared == [list(WRITABLE_PATHS)]


def test_container_logs_go_to_an_encrypted_group_with_retention():
    run = run_variant("prod")
    group = run.named("redcap-container-logs")
    assert group.inputs["name"] == "/ecs/redcap-prod"
    assert group.inputs["retentionInDays"] == 731 and group.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"]
    options = container(run)["logConfiguration"]
    assert options["logDriver"] == "awslogs" and options["options"]["awslogs-group"] == "/ecs/redcap-prod"
    execution = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-execution")))}
    assert execution["WriteLogs"]["Resource"] == [f"{group.outputs['arn']}:*"]
    assert execution["PullImage"]["Resource"] == [run.one("aws:ecr/repository:Repository").outputs["arn"]]


def test_service_in_private_subnets_with_rollback_and_autoscaled_count():
    run = run_variant("prod")
    service = run.one("aws:ecs/service:Service")
    network = service.inputs["networkConfiguration"]
    assert network["subnets"] == run.outputs["privateSubnetIds"] and network["assignPublicIp"] is False
    assert sorted(network["securityGroups"]) == sorted([run.named("redcap-app").id, run.named("redcap-tasks").id])
    assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service.inputs["launchType"] == "FARGATE"
    assert service.inputs["taskDefinition"] == task_definition(run).outputs["arn"]
    assert service.inputs["desiredCount"] == 2 and service.ignore_changes == ["desiredCount"]
    target_group = run.one("aws:lb/targetGroup:TargetGroup")
    assert service.inputs["loadBalancers"] == [{"targetGroupArn": target_group.outputs["arn"],
                                                "containerName": "redcap", "containerPort": 8080}]


def test_alb_is_public_with_long_idle_timeout_dropped_headers_and_access_logs():
    run = run_variant("prod")
    alb = run.one("aws:lb/loadBalancer:LoadBalancer")
    inputs = alb.inputs
    assert inputs["internal"] is False and inputs["loadBalancerType"] == "application"
    assert inputs["subnets"] == run.outputs["publicSubnetIds"]
    assert inputs["idleTimeout"] == 4000 and inputs["dropInvalidHeaderFields"] is True
    assert inputs["accessLogs"] == {"bucket": run.outputs["logBucketName"], "prefix": "alb", "enabled": True}
    assert inputs["enableDeletionProtection"] is True  # prod protects its data
    assert run_variant("ecs-local").one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is False


def test_https_listener_uses_tls13_and_the_domain_certificate_http_only_redirects():
    run = run_variant("prod")
    https, http = run.named("redcap-https"), run.named("redcap-http")
    validation = run.one("aws:acm/certificateValidation:CertificateValidation")
    assert https.inputs["port"] == 443 and https.inputs["protocol"] == "HTTPS"
    assert https.inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https.inputs["certificateArn"] == validation.outputs["certificateArn"]
    assert https.inputs["defaultActions"] == [{"type": "forward",
                                               "targetGroupArn": run.one("aws:lb/targetGroup:TargetGroup").outputs["arn"]}]
    assert http.inputs["port"] == 80 and http.inputs["defaultActions"] == [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]


def test_a_given_certificate_arn_replaces_the_domain_certificate():
    run = run_variant("ecs-local")
    assert run.named("redcap-https").inputs["certificateArn"] == CERTIFICATE_ARN
    assert run.of_type("aws:acm/certificate:Certificate") == []
    assert run.of_type("aws:route53/record:Record") == []  # no zone: the operator points DNS at the ALB
    assert run.outputs["siteUrl"] == "https://redcap.example.org"
    assert run.outputs["loadBalancerUrl"].endswith(".elb.amazonaws.com")


@pytest.mark.parametrize("variant, port", [("prod", 8080), ("ecs-local", 9090)])
def test_target_group_checks_health_on_the_container_port(variant, port):
    target_group = run_variant(variant).one("aws:lb/targetGroup:TargetGroup")
    assert target_group.inputs["port"] == port and target_group.inputs["targetType"] == "ip"
    assert target_group.inputs["healthCheck"]["path"] == "/healthz"
    assert target_group.inputs["healthCheck"]["port"] == "traffic-port"
    # Long requests (up to the 4000 s idle timeout) drain instead of being cut at a deployment.
    assert target_group.inputs["deregistrationDelay"] == 3600


@pytest.mark.parametrize("variant, port", [("prod", 8080), ("ecs-local", 9090)])
def test_world_reaches_the_alb_on_80_and_443_only_and_the_alb_reaches_tasks_on_the_container_port(variant, port):
    run = run_variant(variant)
    alb_sg, tasks_sg = run.named("redcap-load-balancer"), run.named("redcap-tasks")
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    egress = run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    alb_in = sorted((r.inputs["fromPort"], r.inputs["toPort"], r.inputs.get("cidrIpv4")) for r in ingress
                    if r.inputs["securityGroupId"] == alb_sg.id)
    assert alb_in == [(80, 80, "0.0.0.0/0"), (443, 443, "0.0.0.0/0")]
    alb_out = [r.inputs for r in egress if r.inputs["securityGroupId"] == alb_sg.id]
    assert alb_out == [{"securityGroupId": alb_sg.id, "referencedSecurityGroupId": tasks_sg.id, "ipProtocol": "tcp",
                        "fromPort": port, "toPort": port, "description": "to the REDCap container port"}]
    tasks_in = [r.inputs for r in ingress if r.inputs["securityGroupId"] == tasks_sg.id]
    assert [(r["referencedSecurityGroupId"], r["fromPort"], r["toPort"]) for r in tasks_in] == [(alb_sg.id, port, port)]
    assert run.one("aws:lb/loadBalancer:LoadBalancer").inputs["securityGroups"] == [alb_sg.id]


@pytest.mark.parametrize("variant, bounds, targets", [
    ("prod", (2, 6), {"cpu": 70, "memory": 70, "requests": 200}),
    ("ecs-local", (1, 3), {"cpu": 60, "memory": 80, "requests": 100}),
])
def test_target_tracking_on_cpu_memory_and_requests(variant, bounds, targets):
    run = run_variant(variant)
    target = run.one("aws:appautoscaling/target:Target")
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == bounds
    assert target.inputs["resourceId"] == f"service/redcap-{run.stack}/redcap-{run.stack}"
    assert target.inputs["scalableDimension"] == "ecs:service:DesiredCount"
    for suffix, metric in (("cpu", "ECSServiceAverageCPUUtilization"), ("memory", "ECSServiceAverageMemoryUtilization"),
                           ("requests", "ALBRequestCountPerTarget")):
        policy = run.named(f"redcap-scale-on-{suffix}").inputs
        config = policy["targetTrackingScalingPolicyConfiguration"]
        assert policy["policyType"] == "TargetTrackingScaling" and config["targetValue"] == targets[suffix]
        assert config["predefinedMetricSpecification"]["predefinedMetricType"] == metric
    label = run.named("redcap-scale-on-requests").inputs["targetTrackingScalingPolicyConfiguration"][
        "predefinedMetricSpecification"]["resourceLabel"]
    alb, tg = run.one("aws:lb/loadBalancer:LoadBalancer"), run.one("aws:lb/targetGroup:TargetGroup")
    assert label == f"{alb.outputs['arnSuffix']}/{tg.outputs['arnSuffix']}"


@pytest.mark.parametrize("variant", ["prod", "ecs-local"])
def test_waf_on_the_alb_and_the_policy_pack_passes(variant):
    run = run_variant(variant)
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["resourceArn"] == run.one("aws:lb/loadBalancer:LoadBalancer").outputs["arn"]
    assert association.inputs["webAclArn"] == run.outputs["webAclArn"]
    assert policy_violations(run) == []


def test_site_record_points_at_the_alb_and_belongs_to_the_site_record_component():
    run = run_variant("prod")
    site = run.named("redcap-site")
    alb = run.one("aws:lb/loadBalancer:LoadBalancer")
    fargate = run.one("redcap:ecs:FargateService")
    assert site.parent == run.one("redcap:dns:SiteRecord").urn
    assert not [r for r in run.children_of(fargate) if r.type == "aws:route53/record:Record"]
    assert site.inputs["zoneId"] == run.one("aws:route53/zone:Zone").outputs["zoneId"]
    assert (site.inputs["name"], site.inputs["type"], site.inputs["allowOverwrite"]) == ("redcap.example.org", "A", False)
    assert site.inputs["aliases"] == [{"name": alb.outputs["dnsName"], "zoneId": alb.outputs["zoneId"],
                                       "evaluateTargetHealth": True}]
    # The name moves to the ALB once the ECS service exists, not before.
    assert run.one("aws:ecs/service:Service").urn in site.dependencies
    assert run.outputs["siteUrl"] == "https://redcap.example.org"
    assert run.outputs["loadBalancerUrl"] == f"https://{alb.outputs['dnsName']}"
    assert run.outputs["nameServers"] and run.outputs["upgradeUrl"] == "https://redcap.example.org/upgrade.php"
    assert "appRunnerServiceUrl" not in run.outputs and not run.of_type("aws:apprunner/service:Service")


# --- a rollout that never gets healthy fails `pulumi up` --------------------------------------------

@pytest.mark.parametrize("variant", ["prod", "ecs-local"])
def test_pulumi_up_waits_for_the_rollout_then_checks_it_ended_on_the_new_revision(variant):
    run = run_variant(variant)
    service = run.one("aws:ecs/service:Service")
    assert service.inputs["waitForSteadyState"] is True
    # Long enough for the circuit breaker to see 3 tasks fail after their grace period, and for
    # a healthy rollout's old tasks to drain: the provider's 20 minutes are not.
    assert service.custom_timeouts == {"create": "90m", "update": "90m"}
    invocation = run.named(ROLLOUT_INVOCATION, INVOCATION)
    group = run.named("redcap-container-logs")
    assert json.loads(invocation.inputs["input"]) == {
        "runtime": "ecs", "cluster": run.one("aws:ecs/cluster:Cluster").outputs["name"],
        "service": service.inputs["name"], "taskDefinition": service.inputs["taskDefinition"],
        "logGroup": group.outputs["name"]}
    assert "triggers" not in invocation.inputs  # the revision covers every setting of the task
    # After the service's update and its wait; invoked on create only (each revision replaces it).
    assert depends_on(run, invocation, service.urn) and "lifecycleScope" not in invocation.inputs
    function = run.named("redcap-rollout-function", "aws:lambda/function:Function")
    assert invocation.inputs["functionName"] == function.outputs["name"] == f"redcap-{run.stack}-rollout-check"
    assert function.inputs["handler"] == "rollout_check.handler" and function.inputs["timeout"] == 900
    assert "vpcConfig" not in function.inputs  # it reaches the ECS API, not the site
    assert run.outputs["rolloutCheck"] == {"detail": "2 task(s) running", "runtime": "ecs", "status": "rolledOut",
                                           "serving": service.inputs["taskDefinition"]}


def test_the_rollout_check_may_only_describe_this_service_and_write_its_log():
    run = run_variant("prod")
    document = policy_of(run.named("redcap-rollout-policy"))
    logs = run.named("redcap-rollout-logs", "aws:cloudwatch/logGroup:LogGroup")
    assert statements(document) == [
        {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [f"{logs.outputs['arn']}:*"]},
        {"Sid": "SeeTheRollout", "Effect": "Allow", "Action": ["ecs:DescribeServices"],
         "Resource": [run.one("aws:ecs/service:Service").outputs["arn"]]}]
    assert logs.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"] and logs.inputs["retentionInDays"] == 731


@pytest.mark.parametrize("change", [
    {"redCapS3Path": "my-redcap-releases/redcap15.1.0.zip"},   # a new release: a new image
    {"ecs": {"cpu": "4 vCPU", "memory": "8 GB"}},               # new sizes: a new revision of the same image
], ids=["new-release", "new-sizes"])
def test_every_new_revision_runs_the_check_after_the_service_has_rolled_it_out(change):
    t = run_transition("prod", LIVE, {**LIVE, **change})
    t.assert_safe()
    assert t.change(INVOCATION, ROLLOUT_INVOCATION).kind == "replace"
    order = [(s.op, s.type, s.name) for s in t.steps]
    service_step = order.index(("update", "aws:ecs/service:Service", "redcap-service"))
    check_step = order.index(("create-replacement", INVOCATION, ROLLOUT_INVOCATION))
    assert service_step < check_step
    # The old invocation goes at the end, with nothing to undo (CREATE_ONLY runs nothing on delete).
    assert ("delete-replaced", INVOCATION, ROLLOUT_INVOCATION) in order[check_step:]


@pytest.mark.parametrize("change", [{}, {"cronMinutes": 5}, {"ecs": {"scaling": {"maxContainers": 6}}}],
                         ids=["re-run", "other-setting", "autoscaling-bounds"])
def test_nothing_that_leaves_the_revision_alone_runs_the_check(change):
    t = run_transition("prod", LIVE, {**LIVE, **change})
    assert t.change(INVOCATION, ROLLOUT_INVOCATION).kind == "same"


def test_going_back_to_the_previous_release_rolls_it_out_and_checks_it_again():
    # docs/compute.md, "A deployment that never gets healthy": set the settings back, `pulumi up`.
    failed = {**LIVE, "redCapS3Path": "my-redcap-releases/redcap15.1.0.zip"}
    t = run_transition("prod", failed, LIVE)
    t.assert_safe()
    assert t.change("aws:ecs/service:Service", "redcap-service").kind == "update"
    assert t.change(INVOCATION, ROLLOUT_INVOCATION).kind == "replace"
    event = json.loads(t.after.named(ROLLOUT_INVOCATION, INVOCATION).inputs["input"])
    assert event["taskDefinition"] == t.after.one("aws:ecs/service:Service").inputs["taskDefinition"]
