"""App Runner (components/apprunner.py): the service as recorded for dev with App Runner instead of its
express block (no domain), a stage with
its own zone (apex alias record) and one with a subdomain in an existing zone (CNAME)."""
from __future__ import annotations

import json

import pytest

from compute_support import policy_of, policy_violations, run_variant, statements
from components.apprunner import OPERATION_STATUSES, is_apex, validation_records
from harness import run_program


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


def test_own_zone_gets_the_association_validation_records_and_an_apex_alias():
    run = run_variant("apprunner-domain")
    association = run.one("aws:apprunner/customDomainAssociation:CustomDomainAssociation")
    assert association.inputs == {"domainName": "redcap.example.org", "serviceArn": service(run).outputs["arn"],
                                  "enableWwwSubdomain": False}
    zone_id = run.one("aws:route53/zone:Zone").outputs["zoneId"]
    site = run.named("redcap-site")
    assert site.inputs["type"] == "A" and site.inputs["name"] == "redcap.example.org" and site.inputs["zoneId"] == zone_id
    assert site.inputs["aliases"] == [{"name": association.outputs["dnsTarget"], "zoneId": "Z01915732ZBZKC8D32TPT",
                                       "evaluateTargetHealth": False}]
    validation = sorted((r.name, r.inputs["name"], r.inputs["records"]) for r in run.of_type("aws:route53/record:Record")
                        if r.name.startswith("redcap-domain-validation-"))
    assert validation == [
        ("redcap-domain-validation-0", "_a1.redcap.example.org.", ["_v1.acm-validations.aws."]),
        ("redcap-domain-validation-1", "_b2.redcap.example.org.", ["_v2.acm-validations.aws."]),
    ]
    assert run.outputs["customServiceUrl"] == run.outputs["siteUrl"] == "https://redcap.example.org"
    assert run.outputs["upgradeUrl"] == "https://redcap.example.org/upgrade.php"
    assert run.outputs["appRunnerServiceUrl"].startswith("https://") and "nameServers" in run.outputs


def test_subdomain_in_an_existing_zone_gets_a_cname():
    run = run_variant("apprunner-cname")
    site = run.named("redcap-site")
    association = run.one("aws:apprunner/customDomainAssociation:CustomDomainAssociation")
    assert (site.inputs["type"], site.inputs["name"], site.inputs["zoneId"]) == ("CNAME", "redcap.example.org",
                                                                                  "ZEXISTINGZONE")
    assert site.inputs["records"] == [association.outputs["dnsTarget"]]


def test_pure_helpers():
    assert is_apex("example.org", "example.org.") and not is_apex("redcap.example.org", "example.org")
    assert validation_records([{"name": "b", "type": "CNAME", "value": "2"}, {"name": "a", "value": "1"},
                               {"name": "a", "value": "1"}, {"name": "", "value": "x"}]) == [
        ("a", "CNAME", "1"), ("b", "CNAME", "2")]
