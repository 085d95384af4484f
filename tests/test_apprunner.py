"""App Runner (components/apprunner.py): the service as recorded for dev with App Runner instead of its express block (no domain), a stage with
its own zone (FQDN at the zone apex) and one with a name below the apex of an existing zone. The
site record itself is the stack's SiteRecord (tests/test_dns.py), pointed at `site_alias`."""
from __future__ import annotations

import json

import pytest

from compute_support import policy_of, policy_violations, run_variant, statements
from components.apprunner import OPERATION_STATUSES, VALIDATION_RECORDS, validation_records
from harness import COMPUTE_OUTPUTS, MOCK_APPRUNNER_VALIDATION_RECORDS, run_program

RECORD = "aws:route53/record:Record"
ASSOCIATION = "aws:apprunner/customDomainAssociation:CustomDomainAssociation"


def service(run):
    return run.one("aws:apprunner/service:Service")


def test_service_runs_the_pinned_image_without_auto_deployments():
    run = run_variant("dev-apprunner")
    source = service(run).inputs["sourceConfiguration"]
    assert source["autoDeploymentsEnabled"] is False
    repository = source["imageRepository"]
    assert repository["imageRepositoryType"] == "ECR"
    assert repository["imageIdentifier"] == run.outputs["imageUri"] and not repository["imageIdentifier"].endswith(":latest")
    assert repository["imageConfiguration"]["port"] == "8080"
    assert source["authenticationConfiguration"]["accessRoleArn"] == run.named("redcap-access-role").outputs["arn"]


@pytest.mark.parametrize("variant", ["dev-apprunner", "apprunner-cname"])
def test_the_container_never_takes_the_host_from_x_forwarded_host(variant):
    # App Runner's proxy writes no X-Forwarded-Host of its own: a client's would reach REDCap.
    environment = service(run_variant(variant)).inputs["sourceConfiguration"]["imageRepository"][
        "imageConfiguration"]["runtimeEnvironmentVariables"]
    assert "PORT" in environment and "TRUST_FORWARDED_HOST" not in environment


def test_access_role_pulls_only_from_the_stack_repository():
    run = run_variant("dev-apprunner")
    role = run.named("redcap-access-role")
    trust = statements(policy_of(role, "assumeRolePolicy"))[0]
    assert trust["Principal"] == {"Service": "build.apprunner.amazonaws.com"}
    by_sid = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-access")))}
    assert by_sid["PullImage"]["Resource"] == [run.one("aws:ecr/repository:Repository").outputs["arn"]]
    assert by_sid["RegistryLogin"]["Action"] == ["ecr:GetAuthorizationToken"]


def test_instance_size_scaling_health_check_and_encryption_come_from_settings():
    run = run_variant("dev-apprunner")
    inputs = service(run).inputs
    assert inputs["instanceConfiguration"]["cpu"] == "2 vCPU" and inputs["instanceConfiguration"]["memory"] == "4 GB"
    assert inputs["instanceConfiguration"]["instanceRoleArn"] == run.named("redcap-instance-role").outputs["arn"]
    assert statements(policy_of(run.named("redcap-instance-role"), "assumeRolePolicy"))[0]["Principal"] == {
        "Service": "tasks.apprunner.amazonaws.com"}
    scaling = run.one("aws:apprunner/autoScalingConfigurationVersion:AutoScalingConfigurationVersion")
    assert (scaling.inputs["maxConcurrency"], scaling.inputs["minSize"], scaling.inputs["maxSize"]) == (10, 1, 2)
    assert inputs["autoScalingConfigurationArn"] == scaling.outputs["arn"]
    assert inputs["healthCheckConfiguration"]["protocol"] == "HTTP"
    assert inputs["healthCheckConfiguration"]["path"] == "/healthz"
    assert inputs["encryptionConfiguration"] == {"kmsKey": run.outputs["kmsKeyArn"]}


def test_scaling_settings_reach_the_configuration():
    run = run_program("dev", {"appRunnerConcurrency": 50, "appRunnerMinSize": 2, "appRunnerMaxSize": 5,
                              "cpu": "1 vCPU", "memory": "2 GB", "express": None})
    scaling = run.one("aws:apprunner/autoScalingConfigurationVersion:AutoScalingConfigurationVersion")
    assert (scaling.inputs["maxConcurrency"], scaling.inputs["minSize"], scaling.inputs["maxSize"]) == (50, 2, 5)
    assert service(run).inputs["instanceConfiguration"]["cpu"] == "1 vCPU"


def test_egress_goes_through_the_vpc_connector_on_the_private_subnets():
    run = run_variant("dev-apprunner")
    connector = run.one("aws:apprunner/vpcConnector:VpcConnector")
    assert connector.inputs["subnets"] == run.outputs["privateSubnetIds"]
    assert connector.inputs["securityGroups"] == [run.named("redcap-app").id]
    network = service(run).inputs["networkConfiguration"]
    assert network["egressConfiguration"] == {"egressType": "VPC", "vpcConnectorArn": connector.outputs["arn"]}
    assert network["ingressConfiguration"] == {"isPubliclyAccessible": True}


@pytest.mark.parametrize("variant", ["dev-apprunner", "apprunner-domain", "apprunner-cname"])
def test_waf_protects_the_service_and_the_policy_pack_passes(variant):
    run = run_variant(variant)
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert association.inputs["resourceArn"] == service(run).outputs["arn"]
    assert association.inputs["webAclArn"] == run.outputs["webAclArn"]
    assert policy_violations(run) == []


def test_operation_results_are_mailed_through_an_encrypted_topic():
    run = run_variant("dev-apprunner")
    rule = run.named("redcap-operations")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == {"source": ["aws.apprunner"],
                       "detail": {"serviceName": ["redcap-dev"], "operationStatus": list(OPERATION_STATUSES)}}
    assert len(OPERATION_STATUSES) == 8
    topic = run.one("aws:sns/topic:Topic", "notifications")
    assert topic.inputs["kmsMasterKeyId"] == run.outputs["kmsKeyArn"]
    target = run.named("redcap-operations-mail")
    assert target.inputs["arn"] == topic.outputs["arn"] and target.inputs["rule"] == rule.outputs["name"]
    # dev leaves the subscription to the operator (emailSubscriptions: false); by default the stack subscribes.
    assert run.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    subscribed = run_variant("apprunner-domain")
    subscription = subscribed.one("aws:sns/topicSubscription:TopicSubscription", "notifications-email")
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == ("email", "redcap-admin@example.org")
    assert subscription.inputs["topic"] == subscribed.one("aws:sns/topic:Topic", "notifications").outputs["arn"]
    publish = statements(policy_of(run.named("redcap-notifications-policy")))[0]
    assert publish["Principal"] == {"Service": "events.amazonaws.com"}
    assert publish["Condition"] == {"ArnEquals": {"aws:SourceArn": rule.outputs["arn"]}}


def test_without_a_zone_there_is_no_custom_domain():
    run = run_variant("dev-apprunner")
    assert run.of_type("aws:apprunner/customDomainAssociation:CustomDomainAssociation") == []
    assert run.outputs["siteUrl"] == run.outputs["appRunnerServiceUrl"] == f"https://{service(run).outputs['serviceUrl']}"
    assert "customServiceUrl" not in run.outputs


def validation(run):
    return sorted((r for r in run.of_type(RECORD) if r.name.startswith("redcap-domain-validation-")),
                  key=lambda r: r.name)


def test_own_zone_gets_the_association_and_its_validation_records_by_index():
    run = run_variant("apprunner-domain")
    association = run.one(ASSOCIATION)
    assert association.inputs == {"domainName": "redcap.example.org", "serviceArn": service(run).outputs["arn"],
                                  "enableWwwSubdomain": False}
    zone_id = run.one("aws:route53/zone:Zone").outputs["zoneId"]
    records = validation(run)
    # A fixed number, named by index: preview lists them before the association exists.
    assert VALIDATION_RECORDS == 2
    assert [r.name for r in records] == ["redcap-domain-validation-0", "redcap-domain-validation-1"]
    assert [(r.inputs["zoneId"], r.inputs["name"], r.inputs["type"], r.inputs["records"], r.inputs["ttl"])
            for r in records] == [
        (zone_id, "_a1.redcap.example.org.", "CNAME", ["_v1.acm-validations.aws."], 300),
        (zone_id, "_b2.2a57j78h.redcap.example.org.", "CNAME", ["_v2.acm-validations.aws."], 300),
    ]
    # App Runner's names for this association only: an existing record of that name is not taken over.
    assert all(r.inputs["allowOverwrite"] is False for r in records)
    assert all(r.parent == run.one("redcap:apprunner:AppRunnerService").urn for r in records)
    assert run.outputs["customServiceUrl"] == run.outputs["siteUrl"] == "https://redcap.example.org"
    assert run.outputs["upgradeUrl"] == "https://redcap.example.org/upgrade.php"
    assert run.outputs["appRunnerServiceUrl"].startswith("https://") and "nameServers" in run.outputs


@pytest.mark.parametrize("variant, zone_id", [("apprunner-domain", None), ("apprunner-cname", "ZEXISTINGZONE")])
def test_the_site_record_is_an_alias_to_app_runner_owned_by_the_site_record_component(variant, zone_id):
    run = run_variant(variant)
    association = run.one(ASSOCIATION)
    runtime = run.one("redcap:apprunner:AppRunnerService")
    assert not [r for r in run.children_of(runtime) if r.type == RECORD and not r.name.startswith("redcap-domain-")]
    site = run.named("redcap-site")
    assert site.parent == run.one("redcap:dns:SiteRecord").urn
    zone_id = zone_id or run.one("aws:route53/zone:Zone").outputs["zoneId"]
    # At the zone apex and below it alike: an alias A record to App Runner's regional zone.
    assert (site.inputs["type"], site.inputs["name"], site.inputs["zoneId"]) == ("A", "redcap.example.org", zone_id)
    assert site.inputs["aliases"] == [{"name": association.outputs["dnsTarget"], "zoneId": "Z01915732ZBZKC8D32TPT",
                                       "evaluateTargetHealth": False}]
    assert "ttl" not in site.inputs and "records" not in site.inputs


def test_the_association_waits_for_the_stacks_own_delegation():
    run = run_program("dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org",
                              "express": None})
    delegation = run.named("redcap-delegation")
    assert delegation.urn in run.one(ASSOCIATION).dependencies


def test_the_alias_points_at_the_regions_app_runner_zone_from_the_region_table():
    run = run_program("prod", {"ecs": None, "zoneDelegated": True, "aws:region": "eu-west-3"})
    assert run.named("redcap-site").inputs["aliases"][0]["zoneId"] == "Z087117439MBKHYM69QS6"


def test_pure_helpers():
    fqdn = "redcap.example.org"
    assert validation_records([dict(r) for r in MOCK_APPRUNNER_VALIDATION_RECORDS], fqdn) == [
        ("_a1.redcap.example.org.", "_v1.acm-validations.aws."),
        ("_b2.2a57j78h.redcap.example.org.", "_v2.acm-validations.aws.")]
    assert validation_records([{"name": "b", "type": "CNAME", "value": "2"}, {"name": "a", "value": "1"},
                               {"name": "a", "value": "1"}, {"name": "", "value": "x"}], fqdn) == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize("records, found", [([], "0 certificate-validation records for redcap.example.org (none)"),
                                            ([{"name": "a", "value": "1"}], "1 certificate-validation records"),
                                            ([{"name": n, "value": n} for n in "abc"], "3 certificate-validation")])
def test_any_other_number_of_validation_records_fails_loudly(records, found):
    with pytest.raises(ValueError) as err:
        validation_records(records, "redcap.example.org")
    assert found in str(err.value) and "this program writes exactly 2" in str(err.value)
    with pytest.raises(ValueError, match="only CNAME records are expected"):
        validation_records([{"name": "a", "type": "TXT", "value": "1"}, {"name": "b", "value": "2"}], "x.org")


def test_an_association_without_the_expected_records_fails_the_update_instead_of_writing_none(monkeypatch):
    monkeypatch.setitem(COMPUTE_OUTPUTS, ASSOCIATION, lambda name, inputs, region: {
        "dnsTarget": f"mockredcapservice.{region}.awsapprunner.com", "certificateValidationRecords": []})
    with pytest.raises(ValueError) as err:
        run_program("prod", {"ecs": None, "zoneDelegated": True})
    assert "App Runner returned 0 certificate-validation records for redcap.example.org" in str(err.value)
    assert "redcap-domain-validation-" in str(err.value)
