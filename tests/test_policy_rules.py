"""The CrossGuard rules in policy/rules.py, called directly (no pack server, no CLI).

One compliant stack that exercises every rule (the shapes the components must produce, in wire
format as the mocks record them: camelCase, floats, ids "<name>_id"), then one non-compliant
variant per way a rule can fail: each must be reported by exactly that rule, naming the resource.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy import rules
from policy.model import SECRET_SIG, SIG_KEY, UNKNOWN, Resource, normalize, refers_to
from policy.rules import WAIVERS, check_resource, check_stack, evaluate, violations_for

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "111111111111"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/key"


# ---------------------------------------------------------------------------------------------
# A compliant stack
# ---------------------------------------------------------------------------------------------


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Any, resources: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def tls_deny(bucket: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def arn_of(type_: str, name: str) -> str:
    if type_ == "aws:s3/bucket:Bucket":
        return f"arn:aws:s3:::{name}"
    service = type_.split(":")[1].split("/")[0]
    return f"arn:aws:{service}:eu-west-1:{ACCOUNT}:{name}"


def res(type_: str, name: str, /, **props: Any) -> Resource:
    """A resource as the mock harness records it: id '<name>_id', outputs echo inputs + arn."""
    outputs = {**props, "arn": arn_of(type_, name)}
    if type_ == "aws:s3/bucket:Bucket":
        outputs["bucket"] = name
    return Resource(type=type_, name=name, props=props, id=f"{name}_id", outputs=outputs)


def bucket_set(name: str, *, log_bucket: bool, extra_statements: tuple[dict[str, Any], ...] = ()) -> list[Resource]:
    sse = {"sseAlgorithm": "AES256"} if log_bucket else {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}
    return [
        res("aws:s3/bucket:Bucket", name, forceDestroy=False),
        res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-pab", bucket=f"{name}_id",
            blockPublicAcls=True, blockPublicPolicy=True, ignorePublicAcls=True, restrictPublicBuckets=True),
        res("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{name}-sse",
            bucket=f"{name}_id", rules=[{"applyServerSideEncryptionByDefault": sse, "bucketKeyEnabled": True}]),
        res("aws:s3/bucketPolicy:BucketPolicy", f"{name}-policy", bucket=f"{name}_id",
            policy=doc(tls_deny(name), *extra_statements)),
    ]


def uptime_set() -> list[Resource]:
    """The alarm topic, an uptime check of each public entry, its schedule and its alarm."""
    topic_arn = arn_of("aws:sns/topic:Topic", "alarms")
    checks = []
    for entry_type, entry in (("aws:apprunner/service:Service", "app"), ("aws:lb/loadBalancer:LoadBalancer", "alb"),
                              ("aws:cloudfront/distribution:Distribution", "express-cdn")):
        checks += [
            res("aws:lambda/function:Function", f"{entry}-check", tags={"UptimeCheckOf": arn_of(entry_type, entry)},
                environment={"variables": {"METRIC_NAMESPACE": f"REDCap/{entry}"}}),
            res("aws:scheduler/schedule:Schedule", f"{entry}-check-schedule",
                target={"arn": arn_of("aws:lambda/function:Function", f"{entry}-check")}),
            res("aws:cloudwatch/metricAlarm:MetricAlarm", f"{entry}-uptime", alarmActions=[topic_arn],
                metricQueries=[{"id": "failed", "metric": {"namespace": f"REDCap/{entry}",
                                                           "metricName": "UptimeCheckFailed"}},
                               {"id": "alarm", "expression": "FILL(failed, 1)", "returnData": True}]),
        ]
    return [
        res("aws:sns/topic:Topic", "alarms", kmsMasterKeyId=KEY_ARN),
        res("aws:sns/topicPolicy:TopicPolicy", "alarms-policy", arn=topic_arn, policy=doc(
            {"Effect": "Deny", "Principal": "*", "Action": ["sns:Publish", "sns:Subscribe"], "Resource": topic_arn,
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}})),
        *checks,
    ]


def compliant_stack() -> list[Resource]:
    log_delivery = allow("s3:PutObject", "arn:aws:s3:::access-logs/*", Principal={"Service": "logging.s3.amazonaws.com"},
                         Condition={"StringEquals": {"aws:SourceAccount": ACCOUNT}})
    elb_delivery = allow("s3:PutObject", "arn:aws:s3:::alb-logs/*",
                         Principal={"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})
    return [
        res("aws:kms/key:Key", "key", enableKeyRotation=True, deletionWindowInDays=30.0, policy=doc(
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
             "Action": "kms:*", "Resource": "*"})),
        res("aws:kms/key:Key", "signing-key", customerMasterKeySpec="RSA_2048", keyUsage="SIGN_VERIFY"),
        *bucket_set("app-bucket", log_bucket=False),
        *bucket_set("access-logs", log_bucket=True, extra_statements=(log_delivery,)),
        *bucket_set("alb-logs", log_bucket=True, extra_statements=(elb_delivery,)),
        res("aws:s3/bucketLogging:BucketLogging", "app-bucket-logging", bucket="app-bucket_id",
            targetBucket="access-logs_id", targetPrefix="app-bucket/"),
        res("aws:rds/cluster:Cluster", "aurora", engine="aurora-mysql", engineMode="provisioned",
            storageEncrypted=True, kmsKeyId=KEY_ARN, iamDatabaseAuthenticationEnabled=True,
            backtrackWindow=86400.0, backupRetentionPeriod=30.0, skipFinalSnapshot=False,
            enabledCloudwatchLogsExports=["audit", "error", "general", "slowquery"]),
        res("aws:rds/clusterInstance:ClusterInstance", "aurora-writer", clusterIdentifier="aurora_id",
            instanceClass="db.serverless", engine="aurora-mysql", publiclyAccessible=False,
            performanceInsightsEnabled=True, performanceInsightsKmsKeyId=KEY_ARN,
            performanceInsightsRetentionPeriod=7.0, monitoringInterval=60.0,
            monitoringRoleArn=f"arn:aws:iam::{ACCOUNT}:role/monitoring"),
        res("aws:rds/clusterInstance:ClusterInstance", "aurora-reader", clusterIdentifier="aurora_id",
            instanceClass="db.serverless", engine="aurora-mysql", publiclyAccessible=False,
            performanceInsightsEnabled=True, performanceInsightsKmsKeyId=KEY_ARN,
            performanceInsightsRetentionPeriod=7.0, monitoringInterval=60.0,
            monitoringRoleArn=f"arn:aws:iam::{ACCOUNT}:role/monitoring"),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "monitoring", role="monitoring-role_id",
            policyArn="arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"),
        res("aws:secretsmanager/secret:Secret", "db-salt", kmsKeyId=KEY_ARN),
        res("aws:cloudwatch/logGroup:LogGroup", "flow-logs", kmsKeyId=KEY_ARN, retentionInDays=60.0),
        res("aws:sns/topic:Topic", "bounces", kmsMasterKeyId=KEY_ARN),
        *uptime_set(),
        res("aws:lb/loadBalancer:LoadBalancer", "alb", loadBalancerType="application", internal=False,
            securityGroups=["alb-sg_id"], accessLogs={"bucket": "alb-logs_id", "enabled": True}),
        res("aws:ec2/securityGroup:SecurityGroup", "alb-sg", ingress=[
            {"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["0.0.0.0/0"]},
            {"protocol": "tcp", "fromPort": 80.0, "toPort": 80.0, "cidrBlocks": ["0.0.0.0/0"]},
        ]),
        res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "alb-https-v6",
            securityGroupId="alb-sg_id", ipProtocol="tcp", fromPort=443.0, toPort=443.0, cidrIpv6="::/0"),
        res("aws:ec2/securityGroup:SecurityGroup", "app-sg", ingress=[
            {"protocol": "tcp", "fromPort": 8080.0, "toPort": 8080.0, "securityGroups": ["alb-sg_id"]}]),
        res("aws:ec2/securityGroupRule:SecurityGroupRule", "db-from-app", type="ingress",
            securityGroupId="db-sg_id", protocol="tcp", fromPort=3306.0, toPort=3306.0,
            sourceSecurityGroupId="app-sg_id"),
        res("aws:ec2/instance:Instance", "tunnel", instanceType="t3.medium", associatePublicIpAddress=False,
            metadataOptions={"httpTokens": "required", "httpEndpoint": "enabled"},
            rootBlockDevice={"encrypted": True, "volumeSize": 20.0}),
        res("aws:ec2/launchTemplate:LaunchTemplate", "tunnel-template",
            metadataOptions={"httpTokens": "required"},
            blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"encrypted": True, "volumeSize": 20.0}}],
            networkInterfaces=[{"associatePublicIpAddress": "false"}]),
        res("aws:iam/policy:Policy", "app-s3", policy=doc(
            allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "arn:aws:s3:::app-bucket/*"))),
        res("aws:iam/rolePolicy:RolePolicy", "build-ecr", role="build-role_id", policy=doc(
            allow("ecr:GetAuthorizationToken", "*"),
            allow(["ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:UploadLayerPart"],
                  arn_of("aws:ecr/repository:Repository", "images")))),
        res("aws:iam/rolePolicy:RolePolicy", "ses-send", role="app-role_id", policy=doc(
            allow(["ses:SendEmail", "ses:SendRawEmail"], f"arn:aws:ses:eu-west-1:{ACCOUNT}:identity/example.org"))),
        res("aws:iam/userPolicy:UserPolicy", "redcap-s3-user", user="redcap_id", policy=doc(
            allow("s3:ListBucket", "arn:aws:s3:::app-bucket"))),
        res("aws:iam/role:Role", "tunnel-role",
            assumeRolePolicy=doc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                  "Action": "sts:AssumeRole"}),
            inlinePolicies=[{"name": "ssm", "policy": doc(allow(
                ["ssmmessages:CreateControlChannel", "ssmmessages:OpenDataChannel"], "*"))}],
            managedPolicyArns=["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "apprunner-ecr", role="access-role_id",
            policyArn="arn:aws:iam::aws:policy/service-role/AWSAppRunnerServicePolicyForECRAccess"),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "own-policy", role="app-role_id",
            policyArn=f"arn:aws:iam::{ACCOUNT}:policy/app-s3"),
        res("aws:apprunner/service:Service", "app", serviceName="redcap"),
        res("aws:wafv2/webAclAssociation:WebAclAssociation", "app-waf",
            resourceArn=arn_of("aws:apprunner/service:Service", "app"), webAclArn="acl-arn"),
        res("aws:wafv2/webAclAssociation:WebAclAssociation", "alb-waf",
            resourceArn=arn_of("aws:lb/loadBalancer:LoadBalancer", "alb"), webAclArn="acl-arn"),
        res("aws:ecr/repository:Repository", "images", imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="IMMUTABLE"),
        # The Express runtime: private tasks, its log group, and the distribution (with a web ACL)
        # whose VPC origin is the service's managed endpoint.
        res("awsx:ec2:Vpc", "vpc", cidrBlock="10.0.0.0/16",  # outputs echo inputs: the subnets it made
            publicSubnetIds=["subnet-public-a", "subnet-public-b"],
            privateSubnetIds=["subnet-private-a", "subnet-private-b"]),
        res("aws:cloudwatch/logGroup:LogGroup", "express-logs", name="/ecs/redcap-express", kmsKeyId=KEY_ARN,
            retentionInDays=731.0),
        res("aws:ecs/expressGatewayService:ExpressGatewayService", "express", serviceName="redcap",
            networkConfigurations=[{"subnets": ["subnet-private-a", "subnet-private-b"], "securityGroups": ["app-sg_id"]}],
            primaryContainer={"image": "repo:tag", "awsLogsConfigurations": [
                {"logGroup": "/ecs/redcap-express", "logStreamPrefix": "redcap"}]},
            executionRoleArn="exec", infrastructureRoleArn="infra",
            ingressPaths=[{"accessType": "PRIVATE", "endpoint": "re-1.ecs.eu-west-1.on.aws"}]),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "express-infrastructure", role="infra-role_id",
            policyArn="arn:aws:iam::aws:policy/service-role/AmazonECSInfrastructureRoleforExpressGatewayServices"),
        res("aws:cloudfront/distribution:Distribution", "express-cdn", webAclId="arn:aws:wafv2:us-east-1:global-acl",
            origins=[{"originId": "express", "domainName": "re-1.ecs.eu-west-1.on.aws",
                      "vpcOriginConfig": {"vpcOriginId": "vo_1"}}]),
        res("aws:codebuild/project:Project", "image-build", encryptionKey=KEY_ARN,
            environment={"privilegedMode": True, "computeType": "BUILD_GENERAL1_SMALL",
                         "image": "aws/codebuild/standard:7.0", "type": "LINUX_CONTAINER"},
            artifacts={"type": "NO_ARTIFACTS"}),
        # The data the stage keeps is backed up: the cluster and the versioned file bucket.
        res("aws:s3/bucketVersioning:BucketVersioning", "app-bucket-versioning", bucket="app-bucket_id",
            versioningConfiguration={"status": "Enabled"}),
        res("aws:backup/vault:Vault", "vault", kmsKeyArn=KEY_ARN),
        res("aws:backup/plan:Plan", "plan", rules=[
            {"ruleName": "daily", "targetVaultName": "redcap-prod-a1b2", "schedule": "cron(0 5 * * ? *)",
             "lifecycle": {"deleteAfter": 35.0}}]),
        res("aws:backup/selection:Selection", "selection", planId="plan_id", iamRoleArn="backup-role-arn",
            resources=[arn_of("aws:rds/cluster:Cluster", "aurora"), "arn:aws:s3:::app-bucket"]),
        # The IAM user's keys are made and rotated by a rotation function, never by the program.
        Resource(type="aws:iam/user:User", name="redcap", props={"name": "redcap-s3-user-1a2b", "path": "/redcap/"},
                 id="redcap-s3-user-1a2b", outputs={"name": "redcap-s3-user-1a2b",
                                                     "arn": f"arn:aws:iam::{ACCOUNT}:user/redcap/redcap-s3-user-1a2b"}),
        res("aws:lambda/function:Function", "key-rotation", environment={"variables": {
            "ROTATION_TARGETS": json.dumps({"arn:secret": {"kind": "s3", "userName": "redcap-s3-user-1a2b"}})}}),
        res("aws:secretsmanager/secretRotation:SecretRotation", "redcap-s3-rotation", secretId="arn:secret",
            rotationLambdaArn=arn_of("aws:lambda/function:Function", "key-rotation"),
            rotationRules={"automaticallyAfterDays": 90.0}),
        res("aws:ecs/taskDefinition:TaskDefinition", "task", containerDefinitions=json.dumps([
            {"name": "redcap", "image": "redcap:1", "readonlyRootFilesystem": True,
             "mountPoints": [{"sourceVolume": "w-tmp", "containerPath": "/tmp"}]}]), volumes=[{"name": "w-tmp"}]),
    ]


Stack = dict[str, Resource]
Mutation = Callable[[Stack], None]


def as_dict(resources: list[Resource]) -> Stack:
    return {r.name: r for r in resources}


def setp(name: str, **changes: Any) -> Mutation:
    """Set (or with None: delete) top-level inputs of one resource."""
    def mutate(stack: Stack) -> None:
        props = dict(stack[name].props)
        for key, value in changes.items():
            if value is None:
                props.pop(key, None)
            else:
                props[key] = value
        stack[name] = dataclasses.replace(stack[name], props=props)
    return mutate


def drop(name: str) -> Mutation:
    def mutate(stack: Stack) -> None:
        del stack[name]
    return mutate


def add(resource: Resource) -> Mutation:
    def mutate(stack: Stack) -> None:
        stack[resource.name] = resource
    return mutate


def variant(*mutations: Mutation) -> list[Resource]:
    stack = as_dict(compliant_stack())
    for mutation in mutations:
        mutation(stack)
    return list(stack.values())


# ---------------------------------------------------------------------------------------------
# The compliant stack passes; the only finding is the named waiver
# ---------------------------------------------------------------------------------------------


def test_compliant_stack_has_no_violations() -> None:
    assert violations_for(compliant_stack()) == []


def test_compliant_stack_uses_exactly_the_codebuild_waiver() -> None:
    report = evaluate(compliant_stack())
    assert [(v.rule, v.resource_name) for v, _ in report.waived] == [("codebuild-no-privileged", "image-build")]
    assert report.waived[0][1] == WAIVERS[("codebuild-no-privileged", "aws:codebuild/project:Project")]


def test_every_rule_is_exercised_by_the_compliant_stack() -> None:
    """Each rule has something to look at, so 'no violations' is not vacuous."""
    types = {r.type for r in compliant_stack()}
    checked = {
        rules.BUCKET_TYPES[0], rules.PUBLIC_ACCESS_BLOCK_TYPE, rules.SSE_TYPES[0], rules.BUCKET_POLICY_TYPE,
        rules.BUCKET_LOGGING_TYPES[0], rules.RDS_CLUSTER_TYPE, rules.RDS_CLUSTER_INSTANCE_TYPE, rules.KMS_KEY_TYPE,
        rules.SECRET_TYPE, rules.LOG_GROUP_TYPE, rules.SNS_TOPIC_TYPE, rules.SECURITY_GROUP_TYPE,
        rules.SG_INGRESS_RULE_TYPE, rules.SG_RULE_TYPE, rules.EC2_INSTANCE_TYPE, rules.LAUNCH_TEMPLATE_TYPE,
        rules.APPRUNNER_SERVICE_TYPE, rules.LOAD_BALANCER_TYPES[0], rules.WAF_ASSOCIATION_TYPE,
        rules.ECR_REPOSITORY_TYPE, rules.CODEBUILD_PROJECT_TYPE, rules.POLICY_ATTACHMENT_TYPES[0],
        rules.METRIC_ALARM_TYPE, rules.TOPIC_POLICY_TYPE, rules.LAMBDA_FUNCTION_TYPE, rules.SCHEDULE_TYPE,
        "aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy", "aws:iam/role:Role",
        rules.BACKUP_VAULT_TYPE, rules.BACKUP_PLAN_TYPE, rules.BACKUP_SELECTION_TYPE, rules.BUCKET_VERSIONING_TYPES[0],
        rules.IAM_USER_TYPE, rules.LAMBDA_FUNCTION_TYPE, rules.SECRET_ROTATION_TYPE,
    }
    assert checked <= types, checked - types


# ---------------------------------------------------------------------------------------------
# Every way each rule fails
# ---------------------------------------------------------------------------------------------

def _statement_policy(name: str, *statements: dict[str, Any]) -> Mutation:
    return setp(name, policy=doc(*statements))


VARIANTS: list[tuple[str, str, str, list[Mutation]]] = [
    # (case id, rule id, resource named in the violation, mutations)
    ("pab-missing", "s3-block-public-access", "app-bucket", [drop("app-bucket-pab")]),
    ("pab-flag-off", "s3-block-public-access", "app-bucket", [setp("app-bucket-pab", ignorePublicAcls=False)]),
    ("sse-missing", "s3-encryption", "app-bucket", [drop("app-bucket-sse")]),
    ("sse-s3-on-data-bucket", "s3-encryption", "app-bucket",
     [setp("app-bucket-sse", rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}])]),
    ("sse-aws-managed-key", "s3-encryption", "app-bucket",
     [setp("app-bucket-sse", rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}])]),
    ("sse-no-rules", "s3-encryption", "alb-logs", [setp("alb-logs-sse", rules=None)]),
    ("tls-policy-missing", "s3-deny-insecure-transport", "app-bucket", [drop("app-bucket-policy")]),
    ("tls-condition-true", "s3-deny-insecure-transport", "access-logs",
     [_statement_policy("access-logs-policy", {**tls_deny("access-logs"),
                                               "Condition": {"Bool": {"aws:SecureTransport": "true"}}})]),
    ("tls-deny-only-getobject", "s3-deny-insecure-transport", "alb-logs",
     [_statement_policy("alb-logs-policy", {**tls_deny("alb-logs"), "Action": "s3:GetObject"})]),
    ("role-policy-not-json", "iam-policy-json", "ses-send", [setp("ses-send", policy="{oops")]),
    ("trust-policy-not-json", "iam-policy-json", "tunnel-role", [setp("tunnel-role", assumeRolePolicy="[1]")]),
    ("logging-of-another-bucket", "s3-access-logging", "app-bucket", [setp("app-bucket-logging", bucket="alb-logs_id")]),
    ("logging-new-bucket", "s3-access-logging", "uploads", [
        add(res("aws:s3/bucket:Bucket", "uploads")),
        *[add(dataclasses.replace(r, name=r.name.replace("app-bucket", "uploads"),
                                  props=json.loads(json.dumps(r.props).replace("app-bucket", "uploads"))))
          for r in bucket_set("app-bucket", log_bucket=False)[1:]],
    ]),
    ("rds-unencrypted", "rds-storage-encrypted", "aurora", [setp("aurora", storageEncrypted=False)]),
    ("rds-encryption-default", "rds-storage-encrypted", "aurora", [setp("aurora", storageEncrypted=None)]),
    ("rds-no-cmk", "rds-storage-encrypted", "aurora", [setp("aurora", kmsKeyId=None)]),
    ("rds-iam-off", "rds-iam-auth", "aurora", [setp("aurora", iamDatabaseAuthenticationEnabled=False)]),
    ("rds-iam-default", "rds-iam-auth", "aurora", [setp("aurora", iamDatabaseAuthenticationEnabled=None)]),
    ("rds-backtrack-zero", "rds-backtrack", "aurora", [setp("aurora", backtrackWindow=0.0)]),
    ("rds-backtrack-default", "rds-backtrack", "aurora", [setp("aurora", backtrackWindow=None)]),
    ("rds-backups-one-day", "rds-backup-retention", "aurora", [setp("aurora", backupRetentionPeriod=1.0)]),
    ("rds-backups-default", "rds-backup-retention", "aurora", [setp("aurora", backupRetentionPeriod=None)]),
    ("rds-public-instance", "rds-not-public", "aurora-writer", [setp("aurora-writer", publiclyAccessible=True)]),
    ("rds-public-cluster", "rds-not-public", "aurora", [setp("aurora", publiclyAccessible=True)]),
    ("rds-log-exports", "rds-log-exports", "aurora", [setp("aurora", enabledCloudwatchLogsExports=["error"])]),
    ("rds-insights-off", "rds-monitoring", "aurora-writer", [setp("aurora-writer", performanceInsightsEnabled=False)]),
    ("rds-insights-default-key", "rds-monitoring", "aurora-writer",
     [setp("aurora-writer", performanceInsightsKmsKeyId=None)]),
    ("rds-monitoring-without-role", "rds-monitoring", "aurora-reader", [setp("aurora-reader", monitoringRoleArn=None)]),
    ("rds-monitoring-off-on-kept-data", "rds-monitoring", "aurora-writer",
     [setp("aurora-writer", monitoringInterval=0.0, monitoringRoleArn=None),
      setp("aurora-reader", monitoringInterval=0.0, monitoringRoleArn=None)]),
    ("rds-instances-monitored-differently", "rds-monitoring", "aurora", [setp("aurora-reader", monitoringInterval=15.0)]),
    ("kms-no-rotation", "kms-key-rotation", "key", [setp("key", enableKeyRotation=False)]),
    ("kms-rotation-default", "kms-key-rotation", "key", [setp("key", enableKeyRotation=None)]),
    ("secret-default-key", "secrets-kms", "db-salt", [setp("db-salt", kmsKeyId=None)]),
    ("log-group-default-key", "logs-kms", "flow-logs", [setp("flow-logs", kmsKeyId=None)]),
    ("log-group-forever", "logs-retention", "flow-logs", [setp("flow-logs", retentionInDays=None)]),
    ("log-group-zero", "logs-retention", "flow-logs", [setp("flow-logs", retentionInDays=0.0)]),
    ("sns-unencrypted", "sns-kms", "bounces", [setp("bounces", kmsMasterKeyId=None)]),
    ("imds-optional", "ec2-imdsv2", "tunnel", [setp("tunnel", metadataOptions={"httpTokens": "optional"})]),
    ("imds-default", "ec2-imdsv2", "tunnel", [setp("tunnel", metadataOptions=None)]),
    ("imds-template", "ec2-imdsv2", "tunnel-template", [setp("tunnel-template", metadataOptions=None)]),
    ("root-unencrypted", "ec2-ebs-encrypted", "tunnel", [setp("tunnel", rootBlockDevice={"encrypted": False})]),
    ("root-default", "ec2-ebs-encrypted", "tunnel", [setp("tunnel", rootBlockDevice=None)]),
    ("data-volume-unencrypted", "ec2-ebs-encrypted", "tunnel",
     [setp("tunnel", ebsBlockDevices=[{"deviceName": "/dev/sdf", "encrypted": False}])]),
    ("template-no-mappings", "ec2-ebs-encrypted", "tunnel-template", [setp("tunnel-template", blockDeviceMappings=None)]),
    ("template-unencrypted", "ec2-ebs-encrypted", "tunnel-template",
     [setp("tunnel-template", blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 20.0}}])]),
    ("public-ip", "ec2-no-public-ip", "tunnel", [setp("tunnel", associatePublicIpAddress=True)]),
    ("template-public-ip", "ec2-no-public-ip", "tunnel-template",
     [setp("tunnel-template", networkInterfaces=[{"associatePublicIpAddress": "true"}])]),
    ("policy-service-wildcard", "iam-no-wildcard-actions", "app-s3",
     [_statement_policy("app-s3", allow("s3:*", "arn:aws:s3:::app-bucket/*"))]),
    ("policy-prefix-wildcard", "iam-no-wildcard-actions", "redcap-s3-user",
     [_statement_policy("redcap-s3-user", allow(["s3:Get*"], "arn:aws:s3:::app-bucket/*"))]),
    ("policy-not-action", "iam-no-wildcard-actions", "ses-send",
     [_statement_policy("ses-send", {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::x"})]),
    ("inline-role-wildcard", "iam-no-wildcard-actions", "tunnel-role",
     [setp("tunnel-role", inlinePolicies=[{"name": "all", "policy": doc(allow("ssm:*", "arn:aws:ssm:::x"))}])]),
    ("bucket-policy-wildcard", "iam-no-wildcard-actions", "app-bucket-policy",
     [_statement_policy("app-bucket-policy", tls_deny("app-bucket"),
                        allow("s3:*", "arn:aws:s3:::app-bucket/*", Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))]),
    ("resource-star", "iam-no-wildcard-resources", "app-s3", [_statement_policy("app-s3", allow("s3:GetObject", "*"))]),
    ("resource-star-mixed", "iam-no-wildcard-resources", "build-ecr",
     [_statement_policy("build-ecr", allow(["ecr:GetAuthorizationToken", "ecr:PutImage"], "*"))]),
    ("ses-on-star", "iam-no-wildcard-resources", "ses-send", [_statement_policy("ses-send", allow("ses:SendEmail", "*"))]),
    ("not-resource", "iam-no-wildcard-resources", "redcap-s3-user",
     [_statement_policy("redcap-s3-user", {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::x"})]),
    ("public-bucket-policy", "iam-no-public-principal", "app-bucket-policy",
     [_statement_policy("app-bucket-policy", tls_deny("app-bucket"),
                        allow("s3:GetObject", "arn:aws:s3:::app-bucket/*", Principal="*"))]),
    ("public-trust", "iam-no-public-principal", "tunnel-role",
     [setp("tunnel-role", assumeRolePolicy=doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}))]),
    ("public-key-policy", "iam-no-public-principal", "key",
     [setp("key", policy=doc({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}))]),
    ("admin-attachment", "iam-managed-policies", "apprunner-ecr",
     [setp("apprunner-ecr", policyArn="arn:aws:iam::aws:policy/AdministratorAccess")]),
    ("role-managed-arn", "iam-managed-policies", "tunnel-role",
     [setp("tunnel-role", managedPolicyArns=["arn:aws:iam::aws:policy/PowerUserAccess"])]),
    ("ecr-no-scan", "ecr-scan-on-push", "images", [setp("images", imageScanningConfiguration={"scanOnPush": False})]),
    ("ecr-scan-default", "ecr-scan-on-push", "images", [setp("images", imageScanningConfiguration=None)]),
    ("codebuild-default-key", "codebuild-encrypted", "image-build", [setp("image-build", encryptionKey=None)]),
    ("codebuild-artifacts-plain", "codebuild-encrypted", "image-build",
     [setp("image-build", artifacts={"type": "S3", "encryptionDisabled": True})]),
    ("sg-ssh-world", "sg-world-ingress", "alb-sg",
     [setp("alb-sg", ingress=[{"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["0.0.0.0/0"]}])]),
    ("sg-range-world", "sg-world-ingress", "alb-sg",
     [setp("alb-sg", ingress=[{"protocol": "tcp", "fromPort": 80.0, "toPort": 443.0, "cidrBlocks": ["0.0.0.0/0"]}])]),
    ("sg-app-443-world", "sg-world-ingress", "app-sg",
     [setp("app-sg", ingress=[{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "ipv6CidrBlocks": ["::/0"]}])]),
    ("sg-rule-all-protocols", "sg-world-ingress", "db-from-app",
     [setp("db-from-app", protocol="-1", fromPort=0.0, toPort=0.0, cidrBlocks=["0.0.0.0/0"], sourceSecurityGroupId=None)]),
    ("ingress-rule-all", "sg-world-ingress", "alb-https-v6", [setp("alb-https-v6", ipProtocol="-1")]),
    ("lb-without-group", "sg-world-ingress", "alb-sg", [setp("alb", securityGroups=None)]),
    ("waf-missing-apprunner", "waf-association", "app", [drop("app-waf")]),
    ("waf-missing-alb", "waf-association", "alb", [drop("alb-waf")]),
    ("waf-other-target", "waf-association", "app", [setp("app-waf", resourceArn="arn:aws:apprunner:other")]),
    ("cloudfront-without-acl", "waf-association", "express-cdn", [setp("express-cdn", webAclId=None)]),
    ("express-without-distribution", "waf-association", "express", [drop("express-cdn")]),
    ("express-other-origin", "waf-association", "express",
     [setp("express-cdn", origins=[{"originId": "x", "domainName": "elsewhere.example.org"}])]),
    ("express-default-network", "express-tasks-private", "express", [setp("express", networkConfigurations=None)]),
    ("express-public-subnets", "express-tasks-private", "express",
     [setp("express", networkConfigurations=[{"subnets": ["subnet-public-a", "subnet-private-b"]}])]),
    ("express-logs-elsewhere", "express-logs-encrypted", "express",
     [setp("express", primaryContainer={"image": "repo:tag", "awsLogsConfigurations": [
         {"logGroup": "/aws/ecs/express-default", "logStreamPrefix": "ecs"}]})]),
    ("backup-vault-default-key", "backup-vault-kms", "vault", [setp("vault", kmsKeyArn=None)]),
    ("backup-cluster-not-selected", "backup-plan-coverage", "aurora",
     [setp("selection", resources=["arn:aws:s3:::app-bucket"])]),
    ("backup-bucket-not-selected", "backup-plan-coverage", "app-bucket",
     [setp("selection", resources=[arn_of("aws:rds/cluster:Cluster", "aurora")])]),
    ("backup-plan-without-rules", "backup-plan-coverage", "aurora", [setp("plan", rules=None)]),
    ("backup-no-selection", "backup-plan-coverage", "app-bucket", [drop("selection")]),
    ("access-key-in-the-program", "iam-access-key-rotation", "redcap-key",
     [add(res("aws:iam/accessKey:AccessKey", "redcap-key", user="redcap_id"))]),
    ("user-without-rotation", "iam-access-key-rotation", "redcap", [drop("redcap-s3-rotation")]),
    ("rotation-of-another-user", "iam-access-key-rotation", "redcap", [setp("key-rotation", environment={
        "variables": {"ROTATION_TARGETS": json.dumps({"arn:secret": {"userName": "someone-else"}})}})]),
    ("rotation-too-rare", "iam-access-key-rotation", "redcap-s3-rotation",
     [setp("redcap-s3-rotation", rotationRules={"automaticallyAfterDays": 365.0})]),
    ("alarm-topic-aws-key", "alarm-topic-encrypted", "alarms", [setp("alarms", kmsMasterKeyId="alias/aws/sns")]),
    ("alarm-topic-no-policy", "alarm-topic-encrypted", "alarms", [drop("alarms-policy")]),
    ("alarm-topic-allows-http", "alarm-topic-encrypted", "alarms",
     [setp("alarms-policy", policy=doc({"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                        "Action": "sns:Publish", "Resource": "x",
                                        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}))]),
    ("uptime-missing-alb", "uptime-check", "alb", [drop("alb-check"), drop("alb-check-schedule")]),
    ("uptime-other-entry", "uptime-check", "app",
     [setp("app-check", tags={"UptimeCheckOf": "arn:aws:apprunner:eu-west-1:111111111111:other"}),
      drop("app-check-schedule")]),
    ("uptime-unscheduled", "uptime-check", "app", [drop("app-check-schedule")]),
    ("uptime-no-alarm", "uptime-check", "alb", [drop("alb-uptime")]),
    ("uptime-alarm-without-actions", "uptime-check", "app", [setp("app-uptime", alarmActions=None)]),
    ("uptime-alarm-on-other-metric", "uptime-check", "app",
     [setp("app-uptime", metricQueries=[{"id": "m", "metric": {"namespace": "REDCap/app", "metricName": "Other"}}])]),
    ("task-root-writable", "ecs-read-only-root", "task",
     [setp("task", containerDefinitions=json.dumps([{"name": "redcap", "image": "redcap:1"}]))]),
    ("task-sidecar-root-writable", "ecs-read-only-root", "task", [setp("task", containerDefinitions=json.dumps([
        {"name": "redcap", "image": "redcap:1", "readonlyRootFilesystem": True},
        {"name": "sidecar", "image": "x:1", "readonlyRootFilesystem": False}]))]),
]


@pytest.mark.parametrize(("rule", "name", "mutations"), [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_each_noncompliant_variant_is_reported_by_its_rule(rule: str, name: str, mutations: list[Mutation]) -> None:
    found = violations_for(variant(*mutations))
    assert found, "expected a violation"
    assert {v.rule for v in found} == {rule}, [v.message for v in found]
    assert any(v.resource_name == name for v in found), [v.message for v in found]
    for v in found:
        assert f"'{v.resource_name}'" in v.message and v.resource_type in v.message


def test_every_rule_has_a_failing_variant() -> None:
    covered = {v[1] for v in VARIANTS} | {"codebuild-no-privileged"}  # tested below, without waivers
    assert covered == rules.RULE_IDS


def test_read_only_root_names_the_container_and_waits_for_unknown_definitions() -> None:
    found = violations_for(variant(setp("task", containerDefinitions=json.dumps([
        {"name": "redcap", "image": "redcap:1", "readonlyRootFilesystem": True}, {"name": "sidecar", "image": "x:1"}]))))
    assert [v.message for v in found] == [
        "aws:ecs/taskDefinition:TaskDefinition 'task': container 'sidecar' can change its image's files at run "
        "time; set readonlyRootFilesystem = true and mount a task volume where it must write"]
    assert violations_for(variant(setp("task", containerDefinitions=UNKNOWN))) == []


def test_messages_say_what_to_change() -> None:
    found = violations_for(variant(setp("aurora", iamDatabaseAuthenticationEnabled=False)))
    assert found[0].message == (
        "aws:rds/cluster:Cluster 'aurora': IAM database authentication is off; "
        "set iamDatabaseAuthenticationEnabled = true"
    )


def test_wildcard_resource_names_only_the_actions_that_are_not_exempt() -> None:
    found = violations_for(variant(_statement_policy("build-ecr", allow(["ecr:GetAuthorizationToken", "ecr:PutImage"], "*"))))
    assert len(found) == 1
    assert "allows ['ecr:PutImage'] on Resource" in found[0].message


def test_iam_action_names_are_case_insensitive_for_the_exemption_list() -> None:
    assert violations_for(variant(_statement_policy("build-ecr", allow("ECR:getAuthorizationToken", "*")))) == []


def test_deny_statements_may_use_wildcards() -> None:
    deny_all = {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}
    assert violations_for(variant(_statement_policy("app-s3", allow("s3:GetObject", "arn:aws:s3:::app-bucket/*"), deny_all))) == []


def test_public_principal_with_condition_is_allowed() -> None:
    scoped = allow("s3:PutObject", "arn:aws:s3:::access-logs/*", Principal="*",
                   Condition={"StringEquals": {"aws:SourceAccount": ACCOUNT}})
    assert violations_for(variant(_statement_policy("access-logs-policy", tls_deny("access-logs"), scoped))) == []


def test_customer_managed_policy_attachments_are_allowed() -> None:
    assert violations_for(variant(setp("apprunner-ecr", policyArn=f"arn:aws:iam::{ACCOUNT}:policy/anything"))) == []


def test_asymmetric_keys_need_no_rotation() -> None:
    assert check_resource(as_dict(compliant_stack())["signing-key"]) == []


def test_network_load_balancers_need_no_waf() -> None:
    nlb = res("aws:lb/loadBalancer:LoadBalancer", "nlb", loadBalancerType="network", internal=True)
    assert violations_for(variant(add(nlb))) == []


def test_log_buckets_are_recognised_from_every_log_source() -> None:
    """A bucket receiving flow logs / WAF logs is a log bucket: no access logging, SSE-S3 allowed."""
    for source in (
        res("aws:ec2/flowLog:FlowLog", "vpc-flow", logDestinationType="s3", logDestination="arn:aws:s3:::access-logs/vpc/"),
        res("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "waf-logs",
            logDestinationConfigs=["arn:aws:s3:::access-logs"], resourceArn="acl-arn"),
        res("aws:cloudtrail/trail:Trail", "trail", s3BucketName="access-logs"),
    ):
        stack = variant(drop("app-bucket-logging"), add(source))
        logged_to = [r for r in stack if r.name == "access-logs"][0]
        assert rules.is_log_bucket(logged_to, stack), source.name
    alone = variant(drop("app-bucket-logging"))
    assert not rules.is_log_bucket([r for r in alone if r.name == "access-logs"][0], [r for r in alone if r.name != "alb"])


def test_a_bucket_that_receives_no_logs_must_use_kms() -> None:
    found = violations_for(variant(drop("app-bucket-logging"), drop("alb-waf"), setp("alb", accessLogs=None)))
    rules_by_bucket = {(v.rule, v.resource_name) for v in found}
    assert ("s3-encryption", "access-logs") in rules_by_bucket
    assert ("s3-encryption", "alb-logs") in rules_by_bucket
    assert ("s3-access-logging", "access-logs") in rules_by_bucket


def test_v2_bucket_aliases_are_checked_too() -> None:
    legacy = Resource("aws:s3/bucketV2:BucketV2", "legacy", props={}, id="legacy_id")
    found = {v.rule for v in violations_for([legacy])}
    assert found == {"s3-block-public-access", "s3-encryption", "s3-deny-insecure-transport", "s3-access-logging"}


def test_awsx_load_balancer_is_an_entry_point_unless_its_child_is_present() -> None:
    def waf_findings(resources: list[Resource]) -> set[tuple[str, str]]:
        return {(v.rule, v.resource_name) for v in violations_for(resources) if v.rule == "waf-association"}

    awsx = Resource("awsx:lb:ApplicationLoadBalancer", "web", props={"securityGroups": ["alb-sg_id"]},
                    outputs={"loadBalancer": {"arn": "arn:aws:elasticloadbalancing:web"}}, urn="urn:awsx-web")
    assert waf_findings(variant(add(awsx))) == {("waf-association", "web")}
    # Every entry point also needs an uptime check; the awsx one has none here.
    assert {v.rule for v in violations_for(variant(add(awsx)))} == {"waf-association", "uptime-check"}
    association = res("aws:wafv2/webAclAssociation:WebAclAssociation", "web-waf",
                      resourceArn="arn:aws:elasticloadbalancing:web", webAclArn="acl-arn")
    assert waf_findings(variant(add(awsx), add(association))) == set()
    child = Resource("aws:lb/loadBalancer:LoadBalancer", "web-lb", props={"loadBalancerType": "application"},
                     outputs={"arn": "arn:aws:elasticloadbalancing:web-child"}, parent="urn:awsx-web")
    assert waf_findings(variant(add(awsx), add(child))) == {("waf-association", "web-lb")}


# ---------------------------------------------------------------------------------------------
# Waivers
# ---------------------------------------------------------------------------------------------


def test_codebuild_privileged_is_reported_without_the_waiver() -> None:
    found = violations_for(compliant_stack(), waivers={})
    assert [(v.rule, v.resource_name) for v in found] == [("codebuild-no-privileged", "image-build")]


def test_a_type_waiver_covers_only_its_rule() -> None:
    found = violations_for(variant(setp("image-build", encryptionKey=None)))
    assert [(v.rule, v.resource_name) for v in found] == [("codebuild-encrypted", "image-build")]


def test_a_name_pattern_waiver_covers_only_matching_names() -> None:
    waivers = {**WAIVERS, ("sns-kms", "bounce*"): "SES bounce topic published by a service without KMS access (test)"}
    stack = variant(setp("bounces", kmsMasterKeyId=None),
                    add(res("aws:sns/topic:Topic", "alerts")))
    found = violations_for(stack, waivers=waivers)
    assert [(v.rule, v.resource_name) for v in found] == [("sns-kms", "alerts")]


def test_every_waiver_names_a_rule_and_a_reason() -> None:
    rules.validate_waivers()
    for (rule_id, selector), reason in WAIVERS.items():
        assert rule_id in rules.RULE_IDS and selector and len(reason) >= 20


@pytest.mark.parametrize(
    ("waivers", "message"),
    [
        ({("no-such-rule", "aws:sns/topic:Topic"): "a reason that is long enough"}, "unknown rule"),
        ({("sns-kms", "aws:sns/topic:Topic"): "because"}, "reason of at least 20"),
        ({("sns-kms", ""): "a reason that is long enough"}, "empty selector"),
    ],
)
def test_bad_waivers_are_rejected(waivers: dict[tuple[str, str], str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.validate_waivers(waivers)


def test_built_in_exemptions_name_real_rules() -> None:
    assert set(rules.BUILT_IN_EXEMPTIONS) <= rules.RULE_IDS


# ---------------------------------------------------------------------------------------------
# Wire format: secrets, unknowns, property dependencies
# ---------------------------------------------------------------------------------------------


def test_secret_wrapped_values_are_unwrapped() -> None:
    wrapped = {SIG_KEY: SECRET_SIG, "value": doc(allow("s3:*", "arn:aws:s3:::x"))}
    policy = Resource("aws:iam/policy:Policy", "secret-policy", props={"policy": wrapped})
    assert [v.rule for v in check_resource(policy)] == ["iam-no-wildcard-actions"]


def test_unknown_values_are_not_violations() -> None:
    cluster = Resource("aws:rds/cluster:Cluster", "new", props={
        "engine": "aurora-mysql", "storageEncrypted": UNKNOWN_BOOLEAN_VALUE, "kmsKeyId": UNKNOWN_STRING_VALUE,
        "iamDatabaseAuthenticationEnabled": True, "backtrackWindow": 86400.0, "backupRetentionPeriod": 30.0,
        "enabledCloudwatchLogsExports": ["audit", "error", "general", "slowquery"]})
    assert cluster.props["kmsKeyId"] is UNKNOWN
    assert check_resource(cluster) == []
    policy = Resource("aws:iam/rolePolicy:RolePolicy", "later", props={"policy": UNKNOWN_STRING_VALUE})
    assert check_resource(policy) == []


def test_unparsable_policy_documents_are_reported_once() -> None:
    policy = Resource("aws:iam/policy:Policy", "broken", props={"policy": "{not json"})
    found = check_resource(policy)
    assert [v.rule for v in found] == ["iam-policy-json"]
    assert "the policy document in policy is not valid JSON" in found[0].message


def test_an_unparsable_bucket_policy_does_not_count_as_tls_deny() -> None:
    found = violations_for(variant(setp("app-bucket-policy", policy="{oops")))
    assert {(v.rule, v.resource_name) for v in found} == {
        ("iam-policy-json", "app-bucket-policy"), ("s3-deny-insecure-transport", "app-bucket")}


def test_references_match_through_property_dependencies_when_ids_are_unknown() -> None:
    """Preview of a new stack: the public access block's `bucket` is unknown, but the engine
    reports which resource it depends on."""
    bucket = Resource("aws:s3/bucket:Bucket", "fresh", urn="urn:bucket")
    block = Resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "fresh-pab",
                     props={"bucket": UNKNOWN_STRING_VALUE, "blockPublicAcls": True, "blockPublicPolicy": True,
                            "ignorePublicAcls": True, "restrictPublicBuckets": True},
                     property_dependencies={"bucket": ("urn:bucket",)})
    assert refers_to(block, "bucket", bucket)
    assert [v for v in check_stack([bucket, block]) if v.rule == "s3-block-public-access"] == []
    stranger = dataclasses.replace(block, property_dependencies={"bucket": ("urn:other",)})
    assert not refers_to(stranger, "bucket", bucket)


def test_references_match_by_bucket_name_and_arn() -> None:
    bucket = Resource("aws:s3/bucket:Bucket", "named", props={"bucket": "my-bucket"})
    by_name = Resource("x:y:Z", "n", props={"bucket": "my-bucket"})
    by_arn = Resource("x:y:Z", "a", props={"bucket": "arn:aws:s3:::my-bucket/prefix/"})
    assert refers_to(by_name, "bucket", bucket) and refers_to(by_arn, "bucket", bucket)


def test_normalize_handles_nested_secrets_and_unknowns() -> None:
    value = {"a": [{SIG_KEY: SECRET_SIG, "value": {"b": UNKNOWN_BOOLEAN_VALUE}}], "n": 1.0}
    assert normalize(value) == {"a": [{"b": UNKNOWN}], "n": 1.0}
    with pytest.raises(TypeError):
        bool(UNKNOWN)


# ---------------------------------------------------------------------------------------------
# The CrossGuard objects (built without starting a pack server)
# ---------------------------------------------------------------------------------------------


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def test_rules_module_exposes_one_mandatory_policy_per_rule() -> None:
    policies = rules.POLICIES
    assert [p.name for p in policies] == [r.id for r in rules.RULES]
    assert len({p.name for p in policies}) == len(policies)
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)
    stack_names = {r.id for r in rules.STACK_RULES}
    for policy in policies:
        expected = StackValidationPolicy if policy.name in stack_names else ResourceValidationPolicy
        assert isinstance(policy, expected), policy.name


def test_resource_policy_wrapper_reports_through_the_sdk_and_tolerates_unknowns() -> None:
    policy = next(p for p in rules.POLICIES if p.name == "rds-iam-auth")
    reported: list[tuple[str, Any]] = []
    props = unknown_checking_proxy({"engine": "aurora-mysql", "iamDatabaseAuthenticationEnabled": False,
                                    "kmsKeyId": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs("aws:rds/cluster:Cluster", props, "urn:db", "db", _opts(), None)
    policy.validate(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported == [("aws:rds/cluster:Cluster 'db': IAM database authentication is off; "
                         "set iamDatabaseAuthenticationEnabled = true", None)]


def test_resource_policy_wrapper_applies_waivers() -> None:
    policy = next(p for p in rules.POLICIES if p.name == "codebuild-no-privileged")
    reported: list[str] = []
    args = ResourceValidationArgs("aws:codebuild/project:Project",
                                  unknown_checking_proxy({"environment": {"privilegedMode": True}}),
                                  "urn:cb", "cb", _opts(), None)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    assert reported == []


def test_stack_policy_wrapper_uses_urn_dependencies() -> None:
    policy = next(p for p in rules.POLICIES if p.name == "waf-association")
    service = PolicyResource("aws:apprunner/service:Service", unknown_checking_proxy({"arn": UNKNOWN_STRING_VALUE}),
                             "urn:svc", "svc", _opts(), None, None, [], {})
    orphan = PolicyResource("aws:apprunner/service:Service", unknown_checking_proxy({"arn": "arn:orphan"}),
                            "urn:orphan", "orphan", _opts(), None, None, [], {})
    association = PolicyResource("aws:wafv2/webAclAssociation:WebAclAssociation",
                                 unknown_checking_proxy({"resourceArn": UNKNOWN_STRING_VALUE, "webAclArn": "acl"}),
                                 "urn:assoc", "assoc", _opts(), None, None, [service], {"resourceArn": [service]})
    reported: list[tuple[str, Any]] = []
    policy.validate(StackValidationArgs([service, orphan, association]),
                    lambda message, urn=None: reported.append((message, urn)))
    assert [urn for _, urn in reported] == ["urn:orphan"]
    assert "'orphan'" in reported[0][0]


def test_pack_entry_point_serves_every_policy() -> None:
    """Start policy/__main__.py the way the CLI does (a child process that prints its port), and
    ask the analyzer for its policies over gRPC; then stop it. Never imported in-process: building
    a PolicyPack blocks forever."""
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    # The CLI's pulumi-analyzer-policy-python runs `python -u -m pulumi.policy <engine> <pack dir>`
    # in the pack directory (with the pack's venv; here the test venv has the same packages).
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."], cwd=ROOT / "policy",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ""})
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().decode().strip()
        if not first_line.isdigit():
            process.kill()
            _, stderr = process.communicate(timeout=30)
            pytest.fail(f"the policy pack did not start: {first_line!r}\n{stderr.decode()}")
        port = int(first_line)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == rules.PACK_NAME
            assert sorted(p.name for p in info.policies) == sorted(rules.RULE_IDS)
            properties = struct_pb2.Struct()
            properties.update({"enableKeyRotation": False})
            response = stub.Analyze(analyzer_pb2.AnalyzeRequest(
                type="aws:kms/key:Key", properties=properties, urn="urn:key", name="key"), timeout=30)
            assert [d.policyName for d in response.diagnostics] == ["kms-key-rotation"]
            assert "'key'" in response.diagnostics[0].message
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_resources_build_from_what_the_mock_harness_records() -> None:
    bucket = Resource.from_mock("aws:s3/bucket:Bucket", "files", inputs={"forceDestroy": False},
                                outputs={"bucket": "files-0a1b2c", "arn": "arn:aws:s3:::files-0a1b2c"},
                                id="files-0a1b2c", options={"protect": True, "parent": "urn:storage"},
                                urn="urn:files")
    block = Resource.from_mock("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "files-pab",
                               inputs={"bucket": "files-0a1b2c"}, property_dependencies={"bucket": ["urn:files"]})
    assert bucket.parent == "urn:storage" and bucket.options["protect"] is True
    assert refers_to(block, "bucket", bucket)
    assert block.property_dependencies == {"bucket": ("urn:files",)}


def test_pack_metadata_and_requirements_match_the_test_venv() -> None:
    import yaml
    from importlib.metadata import version
    from packaging.requirements import Requirement

    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    assert pack["description"] and pack["version"]
    lines = [ln for ln in (ROOT / "policy" / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    for requirement in map(Requirement, lines):
        assert requirement.specifier.contains(version(requirement.name)), requirement
