"""ECS Express Mode (components/express.py) under mocks: the committed dev stack (no domain),
a stage with its own zone and the tunnel host, and a stage in eu-west-1 with a certificate ARN
and no Route53."""
from __future__ import annotations

import json
import shlex

import pytest

import harness
from compute_support import CERTIFICATE_ARN, policy_of, policy_violations, run_variant, statements
from components import express
from container.webtier.sizing import load_web_settings
from transitions import run_transition

SERVICE = "aws:ecs/expressGatewayService:ExpressGatewayService"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
VPC_ORIGIN = "aws:cloudfront/vpcOrigin:VpcOrigin"
RECORD = "aws:route53/record:Record"
# prod as committed is phase one of its new zone: no runtime serves the domain yet (docs/domains.md).
DELEGATED = {"zoneDelegated": True}


def service(run: harness.StackRun) -> harness.Recorded:
    return run.one(SERVICE)


def distribution(run: harness.StackRun) -> harness.Recorded:
    return run.one(DISTRIBUTION)


def suffix_of(run: harness.StackRun) -> str:
    """The service name's pulumi-random suffix as the mocks drew it."""
    return run.named("redcap-service-suffix", "random:index/randomId:RandomId").outputs["hex"]


def test_dev_runs_on_express_and_nothing_of_the_other_runtimes():
    run = run_variant("express")
    assert service(run)
    for other in ("aws:apprunner/service:Service", "aws:ecs/service:Service", "aws:lb/loadBalancer:LoadBalancer"):
        assert run.of_type(other) == [], other


def test_service_runs_the_pinned_image_with_the_runtime_contract_in_private_subnets():
    run = run_variant("express")
    inputs = service(run).inputs
    assert (inputs["cpu"], inputs["memory"]) == ("1024", "2048")  # Pulumi.dev.yaml: 1 vCPU, 2 GB
    container = inputs["primaryContainer"]
    assert container["image"] == run.outputs["imageUri"] and ":latest" not in container["image"]
    assert container["containerPort"] == 8080
    env = {e["name"]: e["value"] for e in container["environments"]}
    assert env["PORT"] == "8080" and env["DB_AUTH"] == "iam" and env["DB_HOST"] == run.outputs["dbEndpoint"]
    assert container["awsLogsConfigurations"] == [{"logGroup": "/ecs/redcap-dev-express", "logStreamPrefix": "redcap"}]
    assert inputs["healthCheckPath"] == "/healthz"
    network = inputs["networkConfigurations"]
    assert network == [{"subnets": run.outputs["privateSubnetIds"],
                        "securityGroups": [run.named("redcap-app").id, run.named("redcap-tasks").id]}]
    assert inputs["cluster"] == "redcap-dev-express" and inputs["serviceName"] == f"redcap-dev-{suffix_of(run)}"
    assert inputs["taskRoleArn"] == run.named("redcap-task-role").outputs["arn"]
    assert inputs["executionRoleArn"] == run.named("redcap-execution-role").outputs["arn"]
    assert inputs["infrastructureRoleArn"] == run.named("redcap-infrastructure-role").outputs["arn"]


def test_a_failed_rollout_fails_pulumi_up_and_roles_exist_before_the_service():
    run = run_variant("express")
    svc = service(run)
    assert svc.inputs["waitForSteadyState"] is True
    for policy in ("redcap-execution", "redcap-runtime", "redcap-infrastructure"):
        assert run.named(policy).urn in svc.dependencies, policy


def test_what_the_draining_service_still_uses_is_destroyed_drain_wait_after_it():
    """The provider's delete returns once the service is DRAINING; Express removes its load
    balancer, target groups and security groups only after the tasks stopped, with the
    infrastructure role. Pulumi deletes in reverse dependency order, so everything the Sleep
    depends on goes only after the Sleep's destroy delay, which starts after the service."""
    run = run_variant("express")
    drain = run.named("redcap-drain", "time:index/sleep:Sleep")
    assert drain.inputs == {"destroyDuration": "10m"} and express.DRAIN_WAIT == "10m"
    assert drain.urn in service(run).dependencies
    kept = {run.named(n).urn for n in ("redcap-execution", "redcap-runtime", "redcap-infrastructure", "redcap-tasks",
                                       "redcap-tasks-from-private-0", "redcap-tasks-from-private-1",
                                       "redcap-container-logs")} | {run.one("aws:ecs/cluster:Cluster").urn}
    assert kept <= set(drain.dependencies)
    # The roles themselves go after their policies, which go after the Sleep.
    for role, policy in (("redcap-execution-role", "redcap-execution"), ("redcap-task-role", "redcap-runtime"),
                         ("redcap-infrastructure-role", "redcap-infrastructure")):
        assert run.named(role).urn in run.named(policy).dependencies, role


def test_each_new_service_gets_its_own_name_and_is_created_before_the_old_one_goes():
    """A deleted service stays listed by ECS (DRAINING, then INACTIVE) and the provider refuses a
    name its cluster lists: a fixed name with delete-before-replace would fail right after the
    delete. The suffix is replaced with what replaces the service (the infrastructure role, the
    cluster), so the replacement has a new name and the site keeps running while it starts."""
    run = run_variant("express")
    svc, suffix = service(run), run.named("redcap-service-suffix", "random:index/randomId:RandomId")
    assert suffix.inputs["byteLength"] == 3
    assert suffix.inputs["keepers"] == {"infrastructureRoleArn": run.named("redcap-infrastructure-role").outputs["arn"],
                                        "cluster": "redcap-dev-express"}
    assert svc.inputs["serviceName"] == f"redcap-dev-{suffix.outputs['hex']}" and len(suffix.outputs["hex"]) == 6
    assert svc.property_dependencies["serviceName"] == [suffix.urn]
    assert not svc.delete_before_replace
    assert express.service_name("prod", "0f1e2d") == "redcap-prod-0f1e2d"
    assert len(express.service_name("x" * 300, "0f1e2d")) == 255


@pytest.mark.parametrize("variant, metric, target, bounds", [
    ("express", "AVERAGE_CPU", 70, (1, 2)), ("express-eu-cert", "REQUEST_COUNT_PER_TARGET", 250, (2, 4))])
def test_scaling_comes_from_settings(variant, metric, target, bounds):
    assert service(run_variant(variant)).inputs["scalingTargets"] == [{
        "autoScalingMetric": metric, "autoScalingTargetValue": target,
        "minTaskCount": bounds[0], "maxTaskCount": bounds[1]}]


def test_roles_execution_task_and_infrastructure():
    run = run_variant("express")
    trust = {name: json.loads(run.named(name).inputs["assumeRolePolicy"])["Statement"][0]
             for name in ("redcap-execution-role", "redcap-task-role", "redcap-infrastructure-role")}
    assert trust["redcap-execution-role"]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["redcap-task-role"]["Condition"] == {"StringEquals": {"aws:SourceAccount": harness.ACCOUNT_ID}}
    assert trust["redcap-infrastructure-role"]["Principal"] == {"Service": "ecs.amazonaws.com"}
    attachment = run.named("redcap-infrastructure")
    assert attachment.inputs["policyArn"] == (
        "arn:aws:iam::aws:policy/service-role/AmazonECSInfrastructureRoleforExpressGatewayServices")
    assert attachment.inputs["role"] == run.named("redcap-infrastructure-role").outputs["name"]
    execution = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-execution")))}
    group = run.named("redcap-container-logs")
    assert execution["WriteLogs"]["Resource"] == [f"{group.outputs['arn']}:*"]
    assert execution["PullImage"]["Resource"] == [run.one("aws:ecr/repository:Repository").outputs["arn"]]
    assert policy_of(run.named("redcap-runtime")) == policy_of(run_variant("dev-apprunner").named("redcap-runtime"))


def test_container_log_group_is_encrypted_and_not_the_ecs_runtimes():
    run = run_variant("express")
    group = run.named("redcap-container-logs")
    assert group.inputs["name"] == "/ecs/redcap-dev-express"  # ECS uses /ecs/redcap-dev
    assert group.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"] and group.inputs["retentionInDays"] == 30
    assert run.one("aws:ecs/cluster:Cluster").inputs == {
        "name": "redcap-dev-express", "settings": [{"name": "containerInsights", "value": "enabled"}]}
    assert run.outputs["expressLogGroup"] == "/ecs/redcap-dev-express"


def test_tasks_admit_the_container_port_from_the_private_subnets_only():
    run = run_variant("express")
    tasks = run.named("redcap-tasks")
    ingress = [r.inputs for r in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.inputs["securityGroupId"] == tasks.id]
    assert sorted((r["cidrIpv4"], r["fromPort"], r["toPort"], r["ipProtocol"]) for r in ingress) == [
        ("10.0.2.0/24", 8080, 8080, "tcp"), ("10.0.3.0/24", 8080, 8080, "tcp")]
    assert express.task_ingress_cidrs() == ["10.0.2.0/24", "10.0.3.0/24"]


def test_vpc_origin_reaches_the_managed_load_balancer_found_through_aws_native():
    run = run_variant("express")
    provider = next(r for r in run.resources if r.type == "pulumi:providers:aws-native")
    assert provider.inputs["region"] == "us-east-1"
    origin = run.one(VPC_ORIGIN)
    config = origin.inputs["vpcOriginEndpointConfig"]
    assert config["arn"] == f"arn:aws:elasticloadbalancing:us-east-1:{harness.ACCOUNT_ID}:" \
                            f"{harness.MOCK_EXPRESS_LOAD_BALANCER}"
    assert (config["originProtocolPolicy"], config["httpsPort"], config["originSslProtocols"]) == (
        "https-only", 443, {"items": ["TLSv1.2"], "quantity": 1})
    assert config["name"] == "redcap-dev-us-east-1-express"


def test_distribution_is_the_waf_protected_https_entry():
    run = run_variant("express")
    inputs = distribution(run).inputs
    assert inputs["webAclId"] == run.outputs["webAclArn"] == run.one("aws:wafv2/webAcl:WebAcl").outputs["arn"]
    (origin,) = inputs["origins"]
    assert origin["domainName"] == harness.MOCK_EXPRESS_ENDPOINT.format(region="us-east-1")
    assert origin["vpcOriginConfig"] == {"vpcOriginId": run.one(VPC_ORIGIN).id, "originReadTimeout": 60,
                                         "originKeepaliveTimeout": 60}
    behaviour = inputs["defaultCacheBehavior"]
    assert behaviour["viewerProtocolPolicy"] == "redirect-to-https"
    assert behaviour["allowedMethods"] == ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    assert behaviour["cachePolicyId"] == express.CACHING_DISABLED_POLICY_ID
    assert behaviour["originRequestPolicyId"] == express.ALL_VIEWER_EXCEPT_HOST_POLICY_ID
    function = run.one("aws:cloudfront/function:Function")
    assert behaviour["functionAssociations"] == [{"eventType": "viewer-request", "functionArn": function.outputs["arn"]}]
    assert function.inputs["code"] == express.FORWARDED_HOST_FUNCTION and function.inputs["publish"] is True
    assert inputs["viewerCertificate"] == {"cloudfrontDefaultCertificate": True} and "aliases" not in inputs
    assert run.outputs["siteUrl"] == run.outputs["cloudFrontUrl"] == "https://d111111abcdef8.cloudfront.net"
    assert run.outputs["upgradeUrl"] == "https://d111111abcdef8.cloudfront.net/upgrade.php"
    assert run.of_type(RECORD) == []  # no domain, no record


def test_outputs_name_the_next_commands():
    run = run_variant("express")
    arn = service(run).outputs["serviceArn"]
    name = f"redcap-dev-{suffix_of(run)}"
    assert run.outputs["expressServiceUrl"] == "https://" + harness.MOCK_EXPRESS_ENDPOINT.format(region="us-east-1")
    assert run.outputs["expressDescribeCommand"] == (
        f"aws ecs describe-express-gateway-service --region us-east-1 --service-arn {arn}")
    assert run.outputs["expressConsoleUrl"] == (
        f"https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/redcap-dev-express/services/{name}/"
        "health?region=us-east-1")
    assert (run.outputs["expressClusterName"], run.outputs["expressServiceName"]) == (
        "redcap-dev-express", name)


def test_cron_calls_the_distribution_with_the_secret():
    run = run_variant("express-zone-tunnel")
    destination = run.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert destination.inputs["invocationEndpoint"] == "https://d111111abcdef8.cloudfront.net/cron.php"
    assert destination.inputs["name"] == "redcap-dev-express-cron"
    assert run.one("aws:cloudwatch/eventRule:EventRule", "cron").inputs["scheduleExpression"] == "rate(3 minutes)"


def test_a_zone_gives_a_us_east_1_certificate_the_alias_and_the_site_record():
    run = run_variant("express-zone-tunnel")
    validation = run.one("aws:acm/certificateValidation:CertificateValidation")
    certificate = run.one("aws:acm/certificate:Certificate")
    assert certificate.inputs["domainName"] == "redcap.example.org"
    assert "region" not in certificate.inputs  # dev is in us-east-1 already
    inputs = distribution(run).inputs
    assert inputs["aliases"] == ["redcap.example.org"]
    assert inputs["viewerCertificate"] == {"acmCertificateArn": validation.outputs["certificateArn"],
                                           "sslSupportMethod": "sni-only", "minimumProtocolVersion": "TLSv1.2_2021"}
    site = run.named("redcap-site")
    assert site.parent == run.one("redcap:dns:SiteRecord").urn
    assert (site.inputs["name"], site.inputs["type"]) == ("redcap.example.org", "A")
    assert site.inputs["zoneId"] == run.one("aws:route53/zone:Zone").outputs["zoneId"]
    assert site.inputs["aliases"] == [{"name": "d111111abcdef8.cloudfront.net", "zoneId": harness.CLOUDFRONT_ZONE_ID,
                                       "evaluateTargetHealth": False}]
    assert site.inputs["allowOverwrite"] is False
    assert run.outputs["siteUrl"] == run.outputs["customServiceUrl"] == "https://redcap.example.org"


def test_a_stage_elsewhere_validates_its_certificate_in_us_east_1():
    run = harness.run_program("prod", {"aws:region": "eu-west-1", "ecs": None, "express": {}, "zoneDelegated": True})
    for type_ in ("aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation"):
        assert run.one(type_).inputs["region"] == "us-east-1", type_
    assert next(r for r in run.resources if r.type == "pulumi:providers:aws-native").inputs["region"] == "eu-west-1"
    assert run.outputs["siteUrl"] == "https://redcap.example.org"


def test_a_given_certificate_arn_and_no_route53():
    run = run_variant("express-eu-cert")
    assert run.of_type("aws:acm/certificate:Certificate") == [] and run.of_type(RECORD) == []
    inputs = distribution(run).inputs
    assert inputs["aliases"] == ["redcap.example.org"]
    assert inputs["viewerCertificate"]["acmCertificateArn"] == CERTIFICATE_ARN
    assert run.outputs["siteUrl"] == "https://redcap.example.org"
    assert (service(run).inputs["cpu"], service(run).inputs["memory"]) == ("4096", "8192")


def service_env(run: harness.StackRun) -> dict[str, str]:
    return {e["name"]: e["value"] for e in service(run).inputs["primaryContainer"]["environments"]}


def test_only_the_service_behind_cloudfront_takes_the_host_from_x_forwarded_host():
    """The service's container is told to trust X-Forwarded-Host, which CloudFront's function
    writes from the viewer's Host; the tunnel host of the same stage, reached on localhost with
    any header a user types, runs the same contract without it."""
    run = run_variant("express-zone-tunnel")
    env = service_env(run)
    assert env["TRUST_FORWARDED_HOST"] == "true"
    assert load_web_settings(env)[0].trust_forwarded_host is True  # the container's own reading
    run_line = next(line for line in run.one("aws:ec2/instance:Instance").inputs["userData"].splitlines()
                    if line.startswith("docker run"))
    tunnel_env = dict(w.split("=", 1) for w in shlex.split(run_line) if "=" in w and not w.startswith("-"))
    assert "TRUST_FORWARDED_HOST" not in tunnel_env
    # Otherwise the same contract, this one variable apart.
    assert {k: v for k, v in env.items() if k != "TRUST_FORWARDED_HOST"} == {
        k: v for k, v in tunnel_env.items() if k != "TLS_PORT"}
    assert list(env) == sorted(env)
    # The header the container trusts is the one the viewer-request function sets.
    behaviour = distribution(run).inputs["defaultCacheBehavior"]
    function = run.one("aws:cloudfront/function:Function")
    assert behaviour["functionAssociations"] == [{"eventType": "viewer-request", "functionArn": function.outputs["arn"]}]
    assert "request.headers['x-forwarded-host'] = {value: request.headers.host.value};" in function.inputs["code"]


def test_tunnel_host_runs_the_same_image_and_contract():
    run = run_variant("express-zone-tunnel")
    instance = run.one("aws:ec2/instance:Instance")
    assert instance.inputs["subnetId"] == run.outputs["privateSubnetIds"][0]
    assert "ssmPortForward" in run.outputs
    assert policy_of(run.named("redcap-tunnel-runtime")) == policy_of(run.named("redcap-runtime"))


@pytest.mark.parametrize("variant", ["express", "express-zone-tunnel", "express-eu-cert"])
def test_policy_pack_passes(variant):
    assert policy_violations(run_variant(variant)) == []


def test_physical_names_differ_from_the_ecs_runtimes():
    """Switching runtimes creates the new component's resources before deleting the old ones:
    none of Express's explicitly named resources may carry a name the ECS runtime uses."""
    def named_children(run: harness.StackRun, token: str) -> set[tuple[str, str]]:
        component = next(r for r in run.resources if r.type == token)
        return {(r.type, r.inputs["name"]) for r in run.children_of(component) if r.inputs.get("name")}

    ecs_names = named_children(run_variant("prod"), "redcap:ecs:FargateService")
    express_names = named_children(harness.run_program("prod", {"ecs": None, "express": {}, "zoneDelegated": True}),
                                   "redcap:express:ExpressService")
    assert ("aws:ecs/cluster:Cluster", "redcap-prod") in ecs_names
    assert ("aws:ecs/cluster:Cluster", "redcap-prod-express") in express_names
    assert not {n for _, n in ecs_names} & {n for _, n in express_names}


def test_pure_helpers():
    assert express.express_name("prod") == "redcap-prod-express"
    assert len(express.express_name("x" * 300)) == 255
    assert express.cloudfront_name("a" * 40, "ap-southeast-2", "express").endswith("-express")
    assert len(express.cloudfront_name("a" * 40, "ap-southeast-2", "express")) <= 64
    assert express.endpoint_of([{"accessType": "PRIVATE", "endpoint": "https://re-1.ecs.eu-west-1.on.aws/"}]) == \
        "re-1.ecs.eu-west-1.on.aws"
    with pytest.raises(ValueError, match="no ingress path endpoint"):
        express.endpoint_of([])
    with pytest.raises(ValueError, match="describe-express-gateway-service"):
        express._load_balancer_arn(None)


# --- runtime switches: nothing the new runtime creates takes a name the old one still holds ------

NAME_KEYS = ("name", "serviceName", "clusterName", "functionName", "bucket", "roleName")


def physical_names(run: harness.StackRun, urns: set[str]) -> set[tuple[str, str]]:
    """(type, explicit physical name) of the given resources; Route53 records by zone/name/type."""
    found = set()
    for res in run.resources:
        if res.urn not in urns or not res.custom:
            continue
        if res.type == RECORD:
            found.add((RECORD, f"{res.inputs.get('zoneId')}/{res.inputs.get('name')}/{res.inputs.get('type')}"))
            continue
        for key in NAME_KEYS:
            if isinstance(res.inputs.get(key), str):
                found.add((res.type, res.inputs[key]))
        config = res.inputs.get("vpcOriginEndpointConfig")
        if isinstance(config, dict) and config.get("name"):
            found.add((res.type, config["name"]))
    return found


@pytest.mark.parametrize("before, after", [
    (("dev", {"express": None}), ("dev", {})),                       # App Runner -> Express
    (("dev", {}), ("dev", {"express": None})),                       # Express -> App Runner
    (("dev", {}), ("dev", {"domain": "redcap-dev.example.org", "zoneDelegated": True})),  # without -> with a domain
    (("prod", DELEGATED), ("prod", {"ecs": None, "express": {}, **DELEGATED})),          # ECS -> Express
    (("prod", {"ecs": None, "express": {}, **DELEGATED}), ("prod", DELEGATED)),          # Express -> ECS
], ids=["apprunner-to-express", "express-to-apprunner", "express-adds-domain", "ecs-to-express", "express-to-ecs"])
def test_a_switch_creates_nothing_under_a_name_the_old_runtime_still_holds(before, after):
    a, b = harness.cached_run(*before), harness.cached_run(*after)
    a_urns, b_urns = {r.urn for r in a.resources}, {r.urn for r in b.resources}
    created = physical_names(b, b_urns - a_urns)
    deleted = physical_names(a, a_urns - b_urns)
    assert created & deleted == set()
    assert created & physical_names(a, a_urns & b_urns) == set()


# With a domain the one SiteRecord (components/dns.py) follows the runtime: an in-place update.
@pytest.mark.parametrize("stack, before, after, leaves_express", [
    ("dev", {"express": None}, {}, False),                       # App Runner -> Express
    ("dev", {}, {"express": None}, True),                        # Express -> App Runner
    ("dev", {}, {"domain": "redcap-dev.example.org", "zoneDelegated": True}, False),  # Express without -> with a domain
    ("prod", DELEGATED, {"ecs": None, "express": {}, **DELEGATED}, False),            # ECS -> Express
    ("prod", {"ecs": None, "express": {}, **DELEGATED}, DELEGATED, True),             # Express -> ECS
], ids=["apprunner-to-express", "express-to-apprunner", "express-adds-domain", "ecs-to-express", "express-to-ecs"])
def test_switches_are_safe_as_the_engine_would_run_them(stack, before, after, leaves_express):
    """What `pulumi up` does (tests/transitions.py): no collision, nothing protected deleted, no
    live record deleted; leaving Express deletes its service before the Sleep, and the roles it
    drains with after the Sleep."""
    t = run_transition(stack, before, after)
    t.assert_safe()
    deletes = [s for s in t.steps if s.op == "delete"]
    names = [(s.type, s.name) for s in deletes]
    if not leaves_express:
        assert (SERVICE, "redcap-service") not in names
        return
    service_at = names.index((SERVICE, "redcap-service"))
    drain_at = names.index(("time:index/sleep:Sleep", "redcap-drain"))
    infrastructure_at = names.index(("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "redcap-infrastructure"))
    assert service_at < drain_at < infrastructure_at
