"""The redcap policy rules: pure functions, a waiver table, and thin CrossGuard wrappers.

This replaces the original project's cdk-nag `AwsSolutionsChecks` gate (see docs/policy.md for the
rule-by-rule mapping). Two kinds of rules:

* resource rules look at one resource's wire-format inputs (`check_resource`);
* stack rules need several resources at once - a bucket and *its* public-access block, a load
  balancer and *its* WAF association - (`check_stack`). References between resources are matched
  through the engine's property dependencies (URNs; known even when ids are not, i.e. in a
  preview of new resources) and, failing that, through values (ids/ARNs/names, what the unit-test
  mocks and a real `up` provide). See `policy.model.refers_to`.

Values that are unknown during a preview (UNKNOWN) never produce a violation: an unknown
reference counts as "set", an unknown boolean cannot be judged and is judged again when the
policy runs during `pulumi up`, where the values are known.

`violations_for(resources)` runs everything and applies WAIVERS; `POLICIES` are the
pulumi_policy objects that `policy/__main__.py` hands to a PolicyPack. Building them does not
start a pack server, so tests may import this module.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import iam_documents as iam
from .model import (
    UNKNOWN,
    Resource,
    Violation,
    as_list,
    dig,
    identifiers,
    is_set,
    is_true,
    is_unknown,
    normalize,
    referrers,
    region_of,
    refers_to,
    true_or_unknown,
)

PACK_NAME = "redcap-policies"

# --------------------------------------------------------------------------------------------
# Resource type tokens (verified against pulumi-aws 7.51: the `super().__init__('aws:...')` of
# each class). The deprecated *V2 S3 aliases still exist in v7, so they are matched too.
# --------------------------------------------------------------------------------------------
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_LOGGING_TYPES = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
RDS_CLUSTER_TYPE = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE_TYPE = "aws:rds/clusterInstance:ClusterInstance"
RDS_INSTANCE_TYPE = "aws:rds/instance:Instance"
KMS_KEY_TYPE = "aws:kms/key:Key"
SECRET_TYPE = "aws:secretsmanager/secret:Secret"
LOG_GROUP_TYPE = "aws:cloudwatch/logGroup:LogGroup"
SNS_TOPIC_TYPE = "aws:sns/topic:Topic"
SECURITY_GROUP_TYPE = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS_RULE_TYPE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE_TYPE = "aws:ec2/securityGroupRule:SecurityGroupRule"
EC2_INSTANCE_TYPE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
APPRUNNER_SERVICE_TYPE = "aws:apprunner/service:Service"
EXPRESS_SERVICE_TYPE = "aws:ecs/expressGatewayService:ExpressGatewayService"
CLOUDFRONT_DISTRIBUTION_TYPE = "aws:cloudfront/distribution:Distribution"
AWSX_VPC_TYPE = "awsx:ec2:Vpc"
SUBNET_TYPE = "aws:ec2/subnet:Subnet"
LOAD_BALANCER_TYPES = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
AWSX_ALB_TYPE = "awsx:lb:ApplicationLoadBalancer"
WAF_ASSOCIATION_TYPE = "aws:wafv2/webAclAssociation:WebAclAssociation"
WAF_LOGGING_TYPE = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
FLOW_LOG_TYPE = "aws:ec2/flowLog:FlowLog"
CLOUDTRAIL_TYPE = "aws:cloudtrail/trail:Trail"
ECR_REPOSITORY_TYPE = "aws:ecr/repository:Repository"
CODEBUILD_PROJECT_TYPE = "aws:codebuild/project:Project"
IAM_USER_TYPE = "aws:iam/user:User"
ACCESS_KEY_TYPE = "aws:iam/accessKey:AccessKey"
SECRET_ROTATION_TYPE = "aws:secretsmanager/secretRotation:SecretRotation"
LAMBDA_FUNCTION_TYPE = "aws:lambda/function:Function"
BACKUP_VAULT_TYPE = "aws:backup/vault:Vault"
BACKUP_PLAN_TYPE = "aws:backup/plan:Plan"
ECS_TASK_DEFINITION_TYPE = "aws:ecs/taskDefinition:TaskDefinition"
BACKUP_SELECTION_TYPE = "aws:backup/selection:Selection"
BUCKET_VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
METRIC_ALARM_TYPE = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE_ALARM_TYPE = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
TOPIC_POLICY_TYPE = "aws:sns/topicPolicy:TopicPolicy"
SCHEDULE_TYPE = "aws:scheduler/schedule:Schedule"
CLOUDFRONT_DISTRIBUTION_TYPE = "aws:cloudfront/distribution:Distribution"
# The tag by which an uptime check (components/operations.py) names the public entry it checks,
# and the metric its alarm watches.
UPTIME_CHECK_TAG = "UptimeCheckOf"
UPTIME_METRIC = "UptimeCheckFailed"
POLICY_ATTACHMENT_TYPES = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)

# --------------------------------------------------------------------------------------------
# Named exceptions and thresholds (each with the reason; docs/policy.md repeats them).
# --------------------------------------------------------------------------------------------

# Actions that AWS's Service Authorization Reference lists WITHOUT any resource type: a policy
# can only grant them on Resource "*". Only these may appear in an Allow on "*".
WILDCARD_RESOURCE_ACTIONS: Mapping[str, str] = {
    "ecr:getauthorizationtoken": "registry login token is account-wide; ECR defines no resource for it",
    "sts:getcalleridentity": "returns the caller's own identity; STS defines no resource for it",
    "ecs:listservices": "lists a cluster's services; ECS defines no resource for it (the ecs:cluster condition scopes it)",
    "ssmmessages:createcontrolchannel": "Session Manager channel on the tunnel host; no resource type",
    "ssmmessages:createdatachannel": "Session Manager channel on the tunnel host; no resource type",
    "ssmmessages:opencontrolchannel": "Session Manager channel on the tunnel host; no resource type",
    "ssmmessages:opendatachannel": "Session Manager channel on the tunnel host; no resource type",
    "ec2messages:acknowledgemessage": "SSM agent message channel; no resource type",
    "ec2messages:deletemessage": "SSM agent message channel; no resource type",
    "ec2messages:failmessage": "SSM agent message channel; no resource type",
    "ec2messages:getendpoint": "SSM agent message channel; no resource type",
    "ec2messages:getmessages": "SSM agent message channel; no resource type",
    "ec2messages:sendreply": "SSM agent message channel; no resource type",
    "xray:puttracesegments": "X-Ray trace upload; no resource type",
    "xray:puttelemetryrecords": "X-Ray telemetry upload; no resource type",
    "cloudwatch:putmetricdata": "metric upload is scoped by the cloudwatch:namespace condition, not a resource",
    "secretsmanager:getrandompassword": "password generator used by rotation; no resource type",
    "ec2:describenetworkinterfaces": "EC2 Describe* actions support no resource-level permissions",
    "ec2:describesubnets": "EC2 Describe* actions support no resource-level permissions",
    "ec2:describesecuritygroups": "EC2 Describe* actions support no resource-level permissions",
    "ec2:describevpcs": "EC2 Describe* actions support no resource-level permissions",
    "ec2:describedhcpoptions": "EC2 Describe* actions support no resource-level permissions",
    "ec2:describeinstances": "EC2 Describe* actions support no resource-level permissions",
    "route53:listhostedzones": "account-wide listing; Route 53 defines no resource for it",
    "apprunner:listservices": "account-wide listing; App Runner defines no resource for it (the key rotation "
    "finds its service's generated ARN by name)",
    "ecs:describetaskdefinition": "ECS defines no resource type for DescribeTaskDefinition (the database "
    "upgrade reads which image a rollout ended on)",
    "ecs:listtasks": "listing a Fargate cluster's tasks is authorized on \"*\" (no container instance); the "
    "database-upgrade function narrows it with the ecs:cluster condition",
}

# AWS-managed policies (arn:aws:iam::aws:policy/<suffix>) that may be attached (cdk-nag IAM4).
# Each is the policy AWS documents for that exact purpose; anything else must be a customer
# policy whose statements the wildcard rules can see.
ALLOWED_MANAGED_POLICIES: Mapping[str, str] = {
    "AmazonSSMManagedInstanceCore": "Session Manager on the temporary tunnel host (AWS keeps the "
    "ssm/ssmmessages/ec2messages action list current)",
    "service-role/AWSAppRunnerServicePolicyForECRAccess": "App Runner access role that pulls the image "
    "from ECR, as App Runner documents",
    "service-role/AmazonECSTaskExecutionRolePolicy": "ECS task execution role: image pull and container "
    "log delivery, as ECS documents",
    "service-role/AmazonECSInfrastructureRoleforExpressGatewayServices": "ECS Express Mode infrastructure "
    "role: creates the service's load balancer, target groups, security groups, certificate, alarms and "
    "autoscaling, as ECS documents (AWS keeps the list of those actions current)",
    "service-role/AmazonRDSEnhancedMonitoringRole": "the role RDS assumes for Enhanced Monitoring, as the RDS "
    "User Guide prescribes: it can only create and write the RDS* log groups (RDSOSMetrics) and is trusted by "
    "monitoring.rds.amazonaws.com for this account only",
    "service-role/AWSLambdaBasicExecutionRole": "a Lambda function writing its own logs",
    "service-role/AWSLambdaVPCAccessExecutionRole": "a Lambda function in the VPC managing its network "
    "interfaces",
    "service-role/AWSBackupServiceRolePolicyForBackup": "AWS Backup's role for the stage's backup plan, as AWS Backup "
    "documents it (AWS keeps the list of snapshot, copy and KMS-grant actions current; a missing one fails silently)",
    "service-role/AWSBackupServiceRolePolicyForRestores": "AWS Backup's role restoring the stage's recovery points, as "
    "AWS Backup documents it",
    "AWSBackupServiceRolePolicyForS3Backup": "AWS Backup's role backing up the file bucket, as AWS Backup documents it",
    "AWSBackupServiceRolePolicyForS3Restore": "AWS Backup's role restoring the file bucket, as AWS Backup documents it",
}

MIN_BACKUP_RETENTION_DAYS = 7
# Longest an IAM access key may live (CIS AWS Foundations: 90 days).
MAX_ACCESS_KEY_AGE_DAYS = 90
# What the original exported (cdk-nag RDS16): all four Aurora MySQL log types.
REQUIRED_AURORA_MYSQL_LOG_EXPORTS = ("audit", "error", "general", "slowquery")
WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
WORLD_OPEN_PORTS = frozenset({80, 443})
KMS_SSE_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})
# Server access logs and ELB access logs can only be delivered to SSE-S3 buckets (AWS S3 and
# ELB docs), so a *log* bucket may use AES256 instead of a KMS key.
LOG_BUCKET_SSE_ALGORITHMS = KMS_SSE_ALGORITHMS | {"AES256"}


@dataclass(frozen=True)
class Rule:
    """A rule id, what it checks, and the check itself."""

    id: str
    description: str
    check: Callable[..., list[Violation]]
    stack: bool = False


# --------------------------------------------------------------------------------------------
# Resource rules
# --------------------------------------------------------------------------------------------


def _one(rule: str, res: Resource, ok: bool, problem: str) -> list[Violation]:
    return [] if ok else [Violation.of(rule, res, problem)]


def rds_storage_encrypted(res: Resource) -> list[Violation]:
    if res.type not in (RDS_CLUSTER_TYPE, RDS_INSTANCE_TYPE):
        return []
    found = _one(
        "rds-storage-encrypted", res, true_or_unknown(res.props.get("storageEncrypted")),
        "storage is not encrypted (Serverless v2 defaults to false); set storageEncrypted = true",
    )
    found += _one(
        "rds-storage-encrypted", res, is_set(res.props.get("kmsKeyId")),
        "no customer KMS key; set kmsKeyId to the stack's key ARN so snapshots stay under our key policy",
    )
    return found


def rds_iam_auth(res: Resource) -> list[Violation]:
    if res.type != RDS_CLUSTER_TYPE:
        return []
    return _one(
        "rds-iam-auth", res, true_or_unknown(res.props.get("iamDatabaseAuthenticationEnabled")),
        "IAM database authentication is off; set iamDatabaseAuthenticationEnabled = true",
    )


def _is_aurora_mysql(res: Resource) -> bool:
    return res.props.get("engine") == "aurora-mysql"


def _region_table() -> Any:
    """settings/regions.py, loaded by path: the pack runs without the settings package's
    dependencies, and the table must stay the one the program reads."""
    import importlib.util
    import sys
    from pathlib import Path

    module = sys.modules.get("settings.regions") or sys.modules.get("_redcap_region_table")
    if module is None:
        path = Path(__file__).resolve().parent.parent / "settings" / "regions.py"
        spec = importlib.util.spec_from_file_location("_redcap_region_table", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_redcap_region_table"] = module
        spec.loader.exec_module(module)
    return module


def backtrack_offered(region: str | None) -> bool:
    """False only for a region the table knows to have no Aurora backtrack."""
    if region is None:
        return True
    facts = _region_table().lookup(region)
    return facts is None or facts.backtrack


def rds_backtrack(res: Resource) -> list[Violation]:
    if res.type != RDS_CLUSTER_TYPE or not _is_aurora_mysql(res):
        return []
    window = res.props.get("backtrackWindow")
    ok = is_unknown(window) or (isinstance(window, (int, float)) and window > 0) \
        or not backtrack_offered(region_of(res))
    return _one(
        "rds-backtrack", res, ok,
        f"backtrack is off (backtrackWindow = {window!r}); set backtrackWindow to a number of seconds "
        "> 0 (86400 = 24 h; it can only be enabled when the cluster is created)",
    )


def rds_backup_retention(res: Resource) -> list[Violation]:
    if res.type not in (RDS_CLUSTER_TYPE, RDS_INSTANCE_TYPE):
        return []
    days = res.props.get("backupRetentionPeriod")
    ok = is_unknown(days) or (isinstance(days, (int, float)) and days >= MIN_BACKUP_RETENTION_DAYS)
    return _one(
        "rds-backup-retention", res, ok,
        f"automated backups are kept {days!r} days; set backupRetentionPeriod >= "
        f"{MIN_BACKUP_RETENTION_DAYS} (the original keeps 30)",
    )


def rds_not_public(res: Resource) -> list[Violation]:
    if res.type not in (RDS_CLUSTER_TYPE, RDS_CLUSTER_INSTANCE_TYPE, RDS_INSTANCE_TYPE):
        return []
    return _one(
        "rds-not-public", res, not is_true(res.props.get("publiclyAccessible")),
        "the database is publicly accessible; set publiclyAccessible = false (isolated subnets only)",
    )


def rds_log_exports(res: Resource) -> list[Violation]:
    if res.type != RDS_CLUSTER_TYPE or not _is_aurora_mysql(res):
        return []
    exports = res.props.get("enabledCloudwatchLogsExports")
    if is_unknown(exports):
        return []
    missing = [log for log in REQUIRED_AURORA_MYSQL_LOG_EXPORTS if log not in as_list(exports)]
    return _one(
        "rds-log-exports", res, not missing,
        f"log types {missing} are not exported to CloudWatch; add them to enabledCloudwatchLogsExports",
    )


def kms_key_rotation(res: Resource) -> list[Violation]:
    if res.type != KMS_KEY_TYPE:
        return []
    spec = res.props.get("customerMasterKeySpec")
    usage = res.props.get("keyUsage")
    # AWS rotates only symmetric encryption keys; asymmetric and HMAC keys cannot rotate.
    if spec not in (None, "SYMMETRIC_DEFAULT") or usage not in (None, "ENCRYPT_DECRYPT"):
        return []
    return _one(
        "kms-key-rotation", res, true_or_unknown(res.props.get("enableKeyRotation")),
        "automatic key rotation is off; set enableKeyRotation = true",
    )


def secrets_kms(res: Resource) -> list[Violation]:
    if res.type != SECRET_TYPE:
        return []
    return _one(
        "secrets-kms", res, is_set(res.props.get("kmsKeyId")),
        "the secret uses the AWS-managed key; set kmsKeyId to the stack's KMS key",
    )


def logs_kms(res: Resource) -> list[Violation]:
    if res.type != LOG_GROUP_TYPE:
        return []
    return _one(
        "logs-kms", res, is_set(res.props.get("kmsKeyId")),
        "log data is not encrypted with our key; set kmsKeyId to the stack's KMS key ARN "
        "(its key policy must allow logs.<region>.amazonaws.com)",
    )


def logs_retention(res: Resource) -> list[Violation]:
    if res.type != LOG_GROUP_TYPE:
        return []
    days = res.props.get("retentionInDays")
    ok = is_unknown(days) or (isinstance(days, (int, float)) and days > 0)
    return _one(
        "logs-retention", res, ok,
        "logs are kept forever; set retentionInDays (e.g. 365, or redcap:generalLogRetention)",
    )


def sns_kms(res: Resource) -> list[Violation]:
    if res.type != SNS_TOPIC_TYPE:
        return []
    return _one(
        "sns-kms", res, is_set(res.props.get("kmsMasterKeyId")),
        "the topic is not encrypted; set kmsMasterKeyId to the stack's KMS key (its key policy must "
        "allow the publishing service, e.g. ses.amazonaws.com / events.amazonaws.com)",
    )


def ec2_imdsv2(res: Resource) -> list[Violation]:
    if res.type not in (EC2_INSTANCE_TYPE, LAUNCH_TEMPLATE_TYPE):
        return []
    tokens = res.get("metadataOptions.httpTokens")
    return _one(
        "ec2-imdsv2", res, is_unknown(tokens) or tokens == "required",
        f"instance metadata allows IMDSv1 (httpTokens = {tokens!r}); set metadataOptions.httpTokens = "
        '"required"',
    )


def ec2_ebs_encrypted(res: Resource) -> list[Violation]:
    if res.type == EC2_INSTANCE_TYPE:
        found = _one(
            "ec2-ebs-encrypted", res, true_or_unknown(res.get("rootBlockDevice.encrypted")),
            "the root volume is not encrypted; set rootBlockDevice.encrypted = true",
        )
        for index, device in enumerate(as_list(res.props.get("ebsBlockDevices"))):
            found += _one(
                "ec2-ebs-encrypted", res, true_or_unknown(dig(device, "encrypted")),
                f"ebsBlockDevices[{index}] is not encrypted; set encrypted = true",
            )
        return found
    if res.type == LAUNCH_TEMPLATE_TYPE:
        mappings = [m for m in as_list(res.props.get("blockDeviceMappings")) if isinstance(m, dict)]
        if not mappings:
            return [Violation.of(
                "ec2-ebs-encrypted", res,
                "no blockDeviceMappings, so the root volume's encryption is left to the AMI; add a "
                "mapping for the root device with ebs.encrypted = true",
            )]
        found = []
        for index, mapping in enumerate(mappings):
            if mapping.get("ebs") is None:
                continue
            found += _one(
                "ec2-ebs-encrypted", res, true_or_unknown(dig(mapping, "ebs.encrypted")),
                f"blockDeviceMappings[{index}].ebs is not encrypted; set ebs.encrypted = true",
            )
        return found
    return []


def ec2_no_public_ip(res: Resource) -> list[Violation]:
    if res.type == EC2_INSTANCE_TYPE:
        return _one(
            "ec2-no-public-ip", res, not is_true(res.props.get("associatePublicIpAddress")),
            "the instance gets a public IP; set associatePublicIpAddress = false and reach it through "
            "SSM Session Manager in a private subnet",
        )
    if res.type == LAUNCH_TEMPLATE_TYPE:
        found = []
        for index, nic in enumerate(as_list(res.props.get("networkInterfaces"))):
            found += _one(
                "ec2-no-public-ip", res, not is_true(dig(nic, "associatePublicIpAddress")),
                f"networkInterfaces[{index}] associates a public IP; set associatePublicIpAddress = false",
            )
        return found
    return []


def _parsed_documents(documents: list[iam.Document]) -> list[tuple[iam.Document, dict[str, Any]]]:
    """Documents that parse; unparsable ones are reported once, by iam-policy-json."""
    parsed: list[tuple[iam.Document, dict[str, Any]]] = []
    for document in documents:
        try:
            body = iam.parse(document.body)
        except iam.PolicyDocumentError:
            continue
        if not is_unknown(body):
            parsed.append((document, body))
    return parsed


def iam_policy_json(res: Resource) -> list[Violation]:
    """A document nobody can parse cannot be checked (and AWS would reject it at deploy time)."""
    documents = {d.where: d for d in iam.permission_documents(res) + iam.principal_documents(res)}
    found = []
    for document in documents.values():
        try:
            iam.parse(document.body)
        except iam.PolicyDocumentError as exc:
            found.append(Violation.of(
                "iam-policy-json", res,
                f"the policy document in {document.where} {exc}; build it with json.dumps (or "
                "aws.iam.get_policy_document) so every rule can read it",
            ))
    return found


def _sid(statement: dict[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    return f"statement {sid!r}" if isinstance(sid, str) and sid else f"statement #{index}"


def iam_no_wildcard_actions(res: Resource) -> list[Violation]:
    found: list[Violation] = []
    for document, body in _parsed_documents(iam.permission_documents(res)):
        for index, statement in enumerate(iam.statements(body)):
            wild = iam.wildcard_actions(statement)
            if wild:
                found.append(Violation.of(
                    "iam-no-wildcard-actions", res,
                    f"{document.where} {_sid(statement, index)} allows wildcard actions {wild}; list the "
                    "exact actions needed (wildcard actions are never waived)",
                ))
    return found


def iam_no_wildcard_resources(res: Resource) -> list[Violation]:
    found: list[Violation] = []
    for document, body in _parsed_documents(iam.permission_documents(res)):
        for index, statement in enumerate(iam.statements(body)):
            if not iam.has_wildcard_resource(statement):
                continue
            not_allowed = [a for a in iam.actions(statement) if a.lower() not in WILDCARD_RESOURCE_ACTIONS]
            if not_allowed or not iam.actions(statement):
                found.append(Violation.of(
                    "iam-no-wildcard-resources", res,
                    f"{document.where} {_sid(statement, index)} allows {not_allowed or 'its actions'} on "
                    'Resource "*"; scope them to ARNs (only actions AWS defines without a resource type, '
                    "listed in WILDCARD_RESOURCE_ACTIONS, may use \"*\")",
                ))
    return found


def iam_no_public_principal(res: Resource) -> list[Violation]:
    found: list[Violation] = []
    for document, body in _parsed_documents(iam.principal_documents(res)):
        for index, statement in enumerate(iam.statements(body)):
            why = iam.public_principal(statement)
            if why:
                found.append(Violation.of(
                    "iam-no-public-principal", res,
                    f"{document.where} {_sid(statement, index)} allows everyone ({why}); name the "
                    "principal or add a Condition such as aws:SourceArn / aws:SourceAccount",
                ))
    return found


def _managed_policy_suffix(arn: Any) -> str | None:
    """'service-role/X' for arn:aws(-partition):iam::aws:policy/service-role/X, else None."""
    if not isinstance(arn, str) or ":iam::aws:policy/" not in arn:
        return None
    return arn.split(":iam::aws:policy/", 1)[1]


def iam_managed_policies(res: Resource) -> list[Violation]:
    if res.type in POLICY_ATTACHMENT_TYPES:
        arns = [res.props.get("policyArn")]
    elif res.type == iam.ROLE_TYPE:
        arns = as_list(res.props.get("managedPolicyArns"))
    else:
        return []
    found = []
    for arn in arns:
        suffix = _managed_policy_suffix(arn)
        if suffix is not None and suffix not in ALLOWED_MANAGED_POLICIES:
            found.append(Violation.of(
                "iam-managed-policies", res,
                f"attaches the AWS-managed policy {arn}, which is not in ALLOWED_MANAGED_POLICIES; "
                "write a customer policy with the exact actions and resources instead",
            ))
    return found


def ecr_scan_on_push(res: Resource) -> list[Violation]:
    if res.type != ECR_REPOSITORY_TYPE:
        return []
    return _one(
        "ecr-scan-on-push", res, true_or_unknown(res.get("imageScanningConfiguration.scanOnPush")),
        "images are not scanned; set imageScanningConfiguration.scanOnPush = true",
    )


def backup_vault_kms(res: Resource) -> list[Violation]:
    if res.type != BACKUP_VAULT_TYPE:
        return []
    return _one(
        "backup-vault-kms", res, is_set(res.props.get("kmsKeyArn")),
        "recovery points use the AWS-managed aws/backup key (which cannot be shared for cross-account copies); "
        "set kmsKeyArn to a customer KMS key",
    )


def codebuild_encrypted(res: Resource) -> list[Violation]:
    if res.type != CODEBUILD_PROJECT_TYPE:
        return []
    found = _one(
        "codebuild-encrypted", res, is_set(res.props.get("encryptionKey")),
        "build artifacts and logs use the AWS-managed key; set encryptionKey to the stack's KMS key ARN",
    )
    found += _one(
        "codebuild-encrypted", res, not is_true(res.get("artifacts.encryptionDisabled")),
        "artifact encryption is disabled; remove artifacts.encryptionDisabled",
    )
    return found


def codebuild_no_privileged(res: Resource) -> list[Violation]:
    if res.type != CODEBUILD_PROJECT_TYPE:
        return []
    return _one(
        "codebuild-no-privileged", res, not is_true(res.get("environment.privilegedMode")),
        "the build runs privileged (root on the build host); set environment.privilegedMode = false "
        "unless the project builds container images (then it needs a waiver)",
    )


def ecs_read_only_root(res: Resource) -> list[Violation]:
    if res.type != ECS_TASK_DEFINITION_TYPE:
        return []
    raw = res.props.get("containerDefinitions")
    if is_unknown(raw) or raw is None:
        return []  # computed at preview; checked again when it is known
    try:
        containers = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [Violation.of("ecs-read-only-root", res, "containerDefinitions is not valid JSON")]
    return [
        Violation.of("ecs-read-only-root", res,
                     f"container {c.get('name', index)!r} can change its image's files at run time; set "
                     "readonlyRootFilesystem = true and mount a task volume where it must write")
        for index, c in enumerate(as_list(containers))
        if not (isinstance(c, dict) and c.get("readonlyRootFilesystem") is True)
    ]


# --------------------------------------------------------------------------------------------
# Stack rules (relational)
# --------------------------------------------------------------------------------------------


def _of_types(resources: Sequence[Resource], types: Iterable[str]) -> list[Resource]:
    wanted = frozenset(types)
    return [r for r in resources if r.type in wanted]


def _log_destination_refs() -> list[tuple[tuple[str, ...], str]]:
    """(types, property path) pairs that name a bucket as a log destination."""
    return [
        (BUCKET_LOGGING_TYPES, "targetBucket"),
        (LOAD_BALANCER_TYPES, "accessLogs.bucket"),
        (LOAD_BALANCER_TYPES, "connectionLogs.bucket"),
        ((AWSX_ALB_TYPE,), "accessLogs.bucket"),
        ((FLOW_LOG_TYPE,), "logDestination"),
        ((WAF_LOGGING_TYPE,), "logDestinationConfigs"),
        ((CLOUDTRAIL_TYPE,), "s3BucketName"),
    ]


def is_log_bucket(bucket: Resource, resources: Sequence[Resource]) -> bool:
    """A bucket is a log bucket when some resource delivers logs into it."""
    return any(referrers(resources, types, path, bucket) for types, path in _log_destination_refs())


def s3_block_public_access(resources: Sequence[Resource]) -> list[Violation]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    found = []
    for bucket in _of_types(resources, BUCKET_TYPES):
        blocks = referrers(resources, (PUBLIC_ACCESS_BLOCK_TYPE,), "bucket", bucket)
        if not blocks:
            found.append(Violation.of(
                "s3-block-public-access", bucket,
                f"no {PUBLIC_ACCESS_BLOCK_TYPE} refers to this bucket; add one with bucket = this "
                f"bucket's id and {', '.join(flags)} all true",
            ))
            continue
        for block in blocks:
            off = [f for f in flags if not true_or_unknown(block.props.get(f))]
            if off:
                found.append(Violation.of(
                    "s3-block-public-access", bucket,
                    f"its public access block '{block.name}' leaves {off} off; set them to true",
                ))
    return found


def s3_encryption(resources: Sequence[Resource]) -> list[Violation]:
    found = []
    for bucket in _of_types(resources, BUCKET_TYPES):
        configs = referrers(resources, SSE_TYPES, "bucket", bucket)
        log_bucket = is_log_bucket(bucket, resources)
        allowed = LOG_BUCKET_SSE_ALGORITHMS if log_bucket else KMS_SSE_ALGORITHMS
        if not configs:
            found.append(Violation.of(
                "s3-encryption", bucket,
                f"no {SSE_TYPES[0]} refers to this bucket; add one with "
                'applyServerSideEncryptionByDefault.sseAlgorithm = "aws:kms" and the stack\'s kmsMasterKeyId',
            ))
            continue
        for config in configs:
            for index, rule in enumerate(as_list(config.props.get("rules")) or [None]):
                algorithm = dig(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
                key = dig(rule, "applyServerSideEncryptionByDefault.kmsMasterKeyId")
                if is_unknown(algorithm):
                    continue
                if algorithm not in allowed:
                    found.append(Violation.of(
                        "s3-encryption", bucket,
                        f"encryption configuration '{config.name}' rules[{index}] uses sseAlgorithm "
                        f"{algorithm!r}; use \"aws:kms\" with the stack's key"
                        + (" (or \"AES256\": log delivery requires SSE-S3)" if log_bucket else ""),
                    ))
                elif algorithm in KMS_SSE_ALGORITHMS and not is_set(key):
                    found.append(Violation.of(
                        "s3-encryption", bucket,
                        f"encryption configuration '{config.name}' rules[{index}] uses the AWS-managed "
                        "aws/s3 key; set applyServerSideEncryptionByDefault.kmsMasterKeyId to the stack's key",
                    ))
    return found


def _some_policy(policies: Sequence[Resource], holds: Callable[[Any], bool]) -> bool:
    """Whether the `policy` document of one of `policies` satisfies `holds` (a document that is
    unknown during a preview counts; an unparsable one does not)."""
    for policy in policies:
        try:
            body = iam.parse(policy.props.get("policy"))
        except iam.PolicyDocumentError:
            continue
        if is_unknown(body) or holds(body):
            return True
    return False


def s3_deny_insecure_transport(resources: Sequence[Resource]) -> list[Violation]:
    found = []
    for bucket in _of_types(resources, BUCKET_TYPES):
        policies = referrers(resources, (BUCKET_POLICY_TYPE,), "bucket", bucket)
        if not _some_policy(policies, iam.denies_insecure_transport):
            found.append(Violation.of(
                "s3-deny-insecure-transport", bucket,
                "no bucket policy denies plain-HTTP access; add a BucketPolicy statement "
                '{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [bucket ARN, '
                'bucket ARN + "/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}',
            ))
    return found


def s3_access_logging(resources: Sequence[Resource]) -> list[Violation]:
    found = []
    for bucket in _of_types(resources, BUCKET_TYPES):
        # Log buckets are out of scope: logging them would need another log bucket, forever
        # (the original suppressed cdk-nag S1 on them for the same reason).
        if is_log_bucket(bucket, resources):
            continue
        loggings = [
            r for r in referrers(resources, BUCKET_LOGGING_TYPES, "bucket", bucket)
            if is_set(r.props.get("targetBucket"))
        ]
        if not loggings:
            found.append(Violation.of(
                "s3-access-logging", bucket,
                f"server access logging is off; add a {BUCKET_LOGGING_TYPES[0]} with bucket = this "
                "bucket and targetBucket = the access-log bucket",
            ))
    return found


def _load_balancers(resources: Sequence[Resource]) -> list[Resource]:
    """Application load balancers: plain pulumi-aws ones and awsx ones.

    An awsx ALB is a single opaque resource under mocks, but in a real deployment its child
    aws:lb/loadBalancer is also present: the component is then skipped so it is not counted twice.
    """
    plain = [
        r for r in _of_types(resources, LOAD_BALANCER_TYPES)
        if r.props.get("loadBalancerType") in (None, "application")
    ]
    parents = {r.parent for r in plain}
    awsx = [r for r in _of_types(resources, (AWSX_ALB_TYPE,)) if r.urn not in parents]
    return plain + awsx


def _security_group_targets(rule: Resource, resources: Sequence[Resource]) -> list[Resource]:
    return [sg for sg in _of_types(resources, (SECURITY_GROUP_TYPE,)) if refers_to(rule, "securityGroupId", sg)]


def _is_load_balancer_group(sg: Resource, load_balancers: Sequence[Resource]) -> bool:
    return any(refers_to(lb, "securityGroups", sg) for lb in load_balancers)


@dataclass(frozen=True)
class _Ingress:
    where: str
    protocol: Any
    from_port: Any
    to_port: Any
    cidrs: tuple[str, ...]


def _ingresses(res: Resource) -> list[_Ingress]:
    """Normalise the three ways pulumi-aws expresses an ingress rule."""
    if res.type == SECURITY_GROUP_TYPE:
        return [
            _Ingress(f"ingress[{i}]", dig(r, "protocol"), dig(r, "fromPort"), dig(r, "toPort"),
                     tuple(as_list(dig(r, "cidrBlocks"))) + tuple(as_list(dig(r, "ipv6CidrBlocks"))))
            for i, r in enumerate(as_list(res.props.get("ingress"))) if isinstance(r, dict)
        ]
    if res.type == SG_INGRESS_RULE_TYPE:
        return [_Ingress("rule", res.props.get("ipProtocol"), res.props.get("fromPort"), res.props.get("toPort"),
                         tuple(c for c in (res.props.get("cidrIpv4"), res.props.get("cidrIpv6")) if c))]
    if res.type == SG_RULE_TYPE and res.props.get("type") == "ingress":
        return [_Ingress("rule", res.props.get("protocol"), res.props.get("fromPort"), res.props.get("toPort"),
                         tuple(as_list(res.props.get("cidrBlocks"))) + tuple(as_list(res.props.get("ipv6CidrBlocks"))))]
    return []


def _web_port_only(ingress: _Ingress) -> bool:
    """TCP on exactly port 80 or 443 (a range, or protocol -1/all, opens more)."""
    protocol = str(ingress.protocol).lower() if ingress.protocol is not None else ""
    if protocol not in ("tcp", "6"):
        return False
    return ingress.from_port == ingress.to_port and ingress.from_port in WORLD_OPEN_PORTS


def sg_world_ingress(resources: Sequence[Resource]) -> list[Violation]:
    load_balancers = _load_balancers(resources)
    found = []
    for res in _of_types(resources, (SECURITY_GROUP_TYPE, SG_INGRESS_RULE_TYPE, SG_RULE_TYPE)):
        groups = [res] if res.type == SECURITY_GROUP_TYPE else _security_group_targets(res, resources)
        for ingress in _ingresses(res):
            world = sorted(c for c in ingress.cidrs if isinstance(c, str) and c in WORLD_CIDRS)
            if not world:
                continue
            on_load_balancer = any(_is_load_balancer_group(g, load_balancers) for g in groups)
            if _web_port_only(ingress) and on_load_balancer:
                continue
            reason = (
                "it is not the security group of a load balancer" if _web_port_only(ingress)
                else f"protocol {ingress.protocol!r} ports {ingress.from_port!r}-{ingress.to_port!r} is more than tcp 80/443"
            )
            found.append(Violation.of(
                "sg-world-ingress", res,
                f"{ingress.where} opens {world} and {reason}; only a load balancer's group may accept "
                "the internet, on tcp 80/443 - narrow the CIDR or reference the source security group",
            ))
    return found


def _user_names(user: Resource) -> list[Any]:
    return [v for v in (user.props.get("name"), user.outputs.get("name")) if v is not None]


def _rotates_user(function: Resource, user: Resource) -> bool:
    """The rotation function names the user in its configuration (an unknown one counts)."""
    variables = function.get("environment.variables")
    if is_unknown(variables) or any(is_unknown(n) for n in _user_names(user)):
        return True
    values = [v for v in (variables or {}).values()] if isinstance(variables, Mapping) else []
    if any(is_unknown(v) for v in values):
        return True
    return any(isinstance(v, str) and isinstance(n, str) and f'"{n}"' in v for v in values for n in _user_names(user))


def iam_access_key_rotation(resources: Sequence[Resource]) -> list[Violation]:
    found = [Violation.of(
        "iam-access-key-rotation", key,
        "an access key made by the program never rotates, and its secret key lands in the stack's state; "
        "let a Secrets Manager rotation function create and rotate the user's keys instead",
    ) for key in _of_types(resources, (ACCESS_KEY_TYPE,))]
    functions = _of_types(resources, (LAMBDA_FUNCTION_TYPE,))
    rotations = _of_types(resources, (SECRET_ROTATION_TYPE,))
    for user in _of_types(resources, (IAM_USER_TYPE,)):
        rotating = [r for r in rotations
                    if any(refers_to(r, "rotationLambdaArn", f) and _rotates_user(f, user) for f in functions)]
        if not rotating:
            found.append(Violation.of(
                "iam-access-key-rotation", user,
                f"no {SECRET_ROTATION_TYPE} rotates this user's access keys; add one whose rotationLambdaArn is a "
                "function that rotates this user (components/rotation.py)",
            ))
            continue
        for rotation in rotating:
            days = rotation.get("rotationRules.automaticallyAfterDays")
            if not (is_unknown(days) or (isinstance(days, (int, float)) and 0 < days <= MAX_ACCESS_KEY_AGE_DAYS)):
                found.append(Violation.of(
                    "iam-access-key-rotation", rotation,
                    f"rotates the keys of {user.name} every {days!r} days; set rotationRules.automaticallyAfterDays "
                    f"to {MAX_ACCESS_KEY_AGE_DAYS} or less (redcap:credentialRotationDays)",
                ))
    return found


def _keeps_data(cluster: Resource) -> bool:
    """A cluster whose deletion leaves a final snapshot (removalPolicy snapshot or retain)."""
    skip = cluster.props.get("skipFinalSnapshot")
    return not is_unknown(skip) and not is_true(skip)


def _data_buckets(resources: Sequence[Resource]) -> list[Resource]:
    """Versioned buckets kept on destroy that are not log buckets: the ones holding files."""
    found = []
    for bucket in _of_types(resources, BUCKET_TYPES):
        if is_log_bucket(bucket, resources) or true_or_unknown(bucket.props.get("forceDestroy")):
            continue
        versioned = [v for v in referrers(resources, BUCKET_VERSIONING_TYPES, "bucket", bucket)
                     if dig(v.props, "versioningConfiguration.status") in ("Enabled", UNKNOWN)]
        if versioned:
            found.append(bucket)
    return found


def backup_plan_coverage(resources: Sequence[Resource]) -> list[Violation]:
    clusters = [c for c in _of_types(resources, (RDS_CLUSTER_TYPE,)) if _keeps_data(c)]
    if not clusters:
        return []
    plans = _of_types(resources, (BACKUP_PLAN_TYPE,))
    selections = [s for s in _of_types(resources, (BACKUP_SELECTION_TYPE,))
                  if any(refers_to(s, "planId", plan) and as_list(plan.props.get("rules")) for plan in plans)]
    found = []
    for target in clusters + _data_buckets(resources):
        if not any(refers_to(s, "resources", target) for s in selections):
            found.append(Violation.of(
                "backup-plan-coverage", target,
                f"the stage keeps its data, but no {BACKUP_SELECTION_TYPE} of a backup plan with rules covers this "
                "resource; add it to the plan's selection (redcap:backup)",
            ))
    return found


def _express_endpoints(service: Resource) -> set[str]:
    """The managed endpoint host names an Express service reports (ingressPaths[].endpoint)."""
    return {str(dig(path, "endpoint")) for path in as_list(service.outputs.get("ingressPaths"))
            if isinstance(path, dict) and isinstance(dig(path, "endpoint"), str)}


def _fronts(distribution: Resource, service: Resource) -> bool:
    """Is `service` an origin of `distribution`? Through the engine's property dependencies, or
    by the origin's domain name being the service's managed endpoint."""
    if service.urn in distribution.property_dependencies.get("origins", ()):
        return True
    names = {dig(origin, "domainName") for origin in as_list(distribution.props.get("origins"))}
    return bool(names & _express_endpoints(service)) or any(is_unknown(n) for n in names)


def waf_association(resources: Sequence[Resource]) -> list[Violation]:
    entry_points = _load_balancers(resources) + _of_types(resources, (APPRUNNER_SERVICE_TYPE,))
    found = []
    for target in entry_points:
        if not referrers(resources, (WAF_ASSOCIATION_TYPE,), "resourceArn", target):
            found.append(Violation.of(
                "waf-association", target,
                f"no {WAF_ASSOCIATION_TYPE} protects this entry point; add one with resourceArn = its "
                "ARN and webAclArn = the stack's web ACL (or redcap:externalResources.wafWebAcl)",
            ))
    distributions = _of_types(resources, (CLOUDFRONT_DISTRIBUTION_TYPE,))
    for distribution in distributions:
        if not is_set(distribution.props.get("webAclId")):
            found.append(Violation.of(
                "waf-association", distribution,
                "the distribution has no webAclId; set it to the stack's CLOUDFRONT-scope web ACL (or "
                "redcap:externalResources.wafWebAcl)",
            ))
    for service in _of_types(resources, (EXPRESS_SERVICE_TYPE,)):
        if not any(_fronts(d, service) and is_set(d.props.get("webAclId")) for d in distributions):
            found.append(Violation.of(
                "waf-association", service,
                "no CloudFront distribution with a web ACL has this Express service as its origin; its "
                "managed load balancer must be reached only through one (VPC origin, webAclId set)",
            ))
    return found


def _public_subnet_ids(resources: Sequence[Resource]) -> set[str]:
    """Subnets with a route to the internet that the stack knows: awsx VPCs' public subnets and
    plain subnets that give instances public IPs."""
    found: set[str] = set()
    for vpc in _of_types(resources, (AWSX_VPC_TYPE,)):
        found.update(s for s in as_list(vpc.outputs.get("publicSubnetIds")) if isinstance(s, str))
    for subnet in _of_types(resources, (SUBNET_TYPE,)):
        if is_true(subnet.props.get("mapPublicIpOnLaunch")):
            found.update(i for i in identifiers(subnet))
    return found


def express_tasks_private(resources: Sequence[Resource]) -> list[Violation]:
    """Express tasks (and so the managed load balancer, which shares their subnets) stay in
    subnets of ours without a route from the internet: without a network configuration Express
    uses the default VPC's public subnets and gives the tasks public IPs."""
    public = _public_subnet_ids(resources)
    found = []
    for service in _of_types(resources, (EXPRESS_SERVICE_TYPE,)):
        subnets = as_list(dig(service.props, "networkConfigurations.subnets"))
        if is_unknown(dig(service.props, "networkConfigurations")):
            continue
        if not subnets:
            found.append(Violation.of(
                "express-tasks-private", service,
                "no networkConfigurations.subnets: Express would use the default VPC's public subnets; set "
                "the stack's private subnets",
            ))
            continue
        exposed = sorted(s for s in subnets if isinstance(s, str) and s in public)
        if exposed:
            found.append(Violation.of(
                "express-tasks-private", service,
                f"networkConfigurations.subnets includes public subnets {exposed}: tasks would get public IPs "
                "and the load balancer would face the internet without the web ACL; use the private subnets",
            ))
    return found


def express_logs_encrypted(resources: Sequence[Resource]) -> list[Violation]:
    """The container log goes to a log group of this stack (which logs-kms checks), never to the
    group Express would otherwise create with AWS's default encryption."""
    groups = _of_types(resources, (LOG_GROUP_TYPE,))
    found = []
    for service in _of_types(resources, (EXPRESS_SERVICE_TYPE,)):
        target = dig(service.props, "primaryContainer.awsLogsConfigurations.logGroup")
        if is_unknown(target):
            continue
        ours = [g for g in groups if g.urn in service.property_dependencies.get("primaryContainer", ())
                or target in {g.props.get("name"), g.outputs.get("name")}]
        if not ours:
            found.append(Violation.of(
                "express-logs-encrypted", service,
                "primaryContainer.awsLogsConfigurations.logGroup is not a log group of this stack; point it at "
                "one encrypted with the stack's KMS key",
            ))
        elif not any(is_set(g.props.get("kmsKeyId")) and g.props.get("name") in (target, None) for g in ours):
            found.append(Violation.of(
                "express-logs-encrypted", service, f"its log group {target!r} has no kmsKeyId",
            ))
    return found


ALARM_ACTION_PATHS = ("alarmActions", "okActions", "insufficientDataActions")


def _denies_insecure_sns(document: Any) -> bool:
    """Deny sns:Publish (or sns:* / *) to everyone when aws:SecureTransport is false."""
    for statement in iam.statements(document):
        if statement.get("Effect") != "Deny" or statement.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        if not any(a.lower() in ("*", "sns:*", "sns:publish") for a in iam.actions(statement)):
            continue
        condition = statement.get("Condition")
        secure = dig(condition, "Bool.aws:SecureTransport") if isinstance(condition, dict) else None
        if secure is not None and str(secure).lower() == "false":
            return True
    return False


def alarm_topic_encrypted(resources: Sequence[Resource]) -> list[Violation]:
    """Alarm notifications say what is broken where: their topics are encrypted with a customer
    key and refuse plain-HTTP requests."""
    alarms = _of_types(resources, (METRIC_ALARM_TYPE, COMPOSITE_ALARM_TYPE))
    found = []
    for topic in _of_types(resources, (SNS_TOPIC_TYPE,)):
        if not any(refers_to(alarm, path, topic) for alarm in alarms for path in ALARM_ACTION_PATHS):
            continue
        key = topic.props.get("kmsMasterKeyId")
        if not is_set(key) or (isinstance(key, str) and key.endswith("alias/aws/sns")):
            # The AWS-managed aws/sns key's policy cannot be changed to let CloudWatch use it, so
            # alarms published to such a topic are dropped.
            found.append(Violation.of(
                "alarm-topic-encrypted", topic,
                f"alarms notify this topic but it is not encrypted with a customer key (kmsMasterKeyId = {key!r}); "
                "set it to the stack's KMS key, whose policy lets cloudwatch.amazonaws.com use it"))
        if not _some_policy(referrers(resources, (TOPIC_POLICY_TYPE,), "arn", topic), _denies_insecure_sns):
            found.append(Violation.of(
                "alarm-topic-encrypted", topic,
                "alarms notify this topic but no topic policy refuses requests without TLS; add a TopicPolicy "
                'statement {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Condition": '
                '{"Bool": {"aws:SecureTransport": "false"}}}'))
    return found


def _watches_uptime_metric(alarm: Resource, namespace: Any) -> bool:
    if alarm.props.get("metricName") == UPTIME_METRIC and alarm.props.get("namespace") == namespace:
        return True
    for query in as_list(alarm.props.get("metricQueries")):
        metric = dig(query, "metric")
        if isinstance(metric, dict) and metric.get("metricName") == UPTIME_METRIC and \
                (is_unknown(namespace) or metric.get("namespace") == namespace):
            return True
    return False


def uptime_check(resources: Sequence[Resource]) -> list[Violation]:
    """Every public entry is checked from outside, on a schedule, with an alarm: a function
    tagged UptimeCheckOf = the entry, a schedule that runs it, and an alarm on its metric."""
    entry_points = (_load_balancers(resources) + _of_types(resources, (APPRUNNER_SERVICE_TYPE,))
                    + _of_types(resources, (CLOUDFRONT_DISTRIBUTION_TYPE,)))
    functions = _of_types(resources, (LAMBDA_FUNCTION_TYPE,))
    alarms = _of_types(resources, (METRIC_ALARM_TYPE,))
    found = []
    for entry in entry_points:
        checks = [f for f in functions if refers_to(f, f"tags.{UPTIME_CHECK_TAG}", entry)]
        if not checks:
            found.append(Violation.of(
                "uptime-check", entry,
                f"nothing checks this public entry from outside; add an uptime check (a function tagged "
                f"{UPTIME_CHECK_TAG} = this entry's ARN, run on a schedule, with an alarm on {UPTIME_METRIC}: "
                "components/operations.py)"))
            continue
        for check in checks:
            if not referrers(resources, (SCHEDULE_TYPE,), "target.arn", check):
                found.append(Violation.of(
                    "uptime-check", entry,
                    f"its uptime check '{check.name}' runs on no schedule; add an aws:scheduler/schedule:Schedule "
                    "whose target.arn is the function"))
            namespace = dig(check.props, "environment.variables.METRIC_NAMESPACE")
            if not any(_watches_uptime_metric(a, namespace) and as_list(a.props.get("alarmActions"))
                       for a in alarms):
                found.append(Violation.of(
                    "uptime-check", entry,
                    f"no alarm with actions watches {UPTIME_METRIC} of its uptime check '{check.name}'; add a "
                    "MetricAlarm on that metric that notifies the alarm topic"))
    return found


def rds_monitoring(resources: Sequence[Resource]) -> list[Violation]:
    """Every Aurora instance has Performance Insights under a customer key; those of a cluster that
    keeps data have Enhanced Monitoring with a role; the instances of one cluster are monitored
    alike (Database Insights refuses a cluster whose instances differ)."""
    found = []
    clusters = _of_types(resources, (RDS_CLUSTER_TYPE,))
    for instance in _of_types(resources, (RDS_CLUSTER_INSTANCE_TYPE,)):
        props = instance.props
        if not true_or_unknown(props.get("performanceInsightsEnabled")):
            found.append(Violation.of("rds-monitoring", instance,
                                      "Performance Insights is off; set performanceInsightsEnabled = true"))
        elif not is_set(props.get("performanceInsightsKmsKeyId")):
            found.append(Violation.of("rds-monitoring", instance,
                                      "Performance Insights data (SQL text) is under AWS's default key; set "
                                      "performanceInsightsKmsKeyId to the stack's KMS key"))
        interval = props.get("monitoringInterval")
        if is_unknown(interval):
            continue
        if interval and not is_set(props.get("monitoringRoleArn")):
            found.append(Violation.of("rds-monitoring", instance,
                                      f"monitoringInterval = {interval!r} without monitoringRoleArn (RDS refuses it)"))
        owners = [c for c in clusters if refers_to(instance, "clusterIdentifier", c)]
        if not interval and any(_keeps_data(c) for c in owners):
            found.append(Violation.of("rds-monitoring", instance,
                                      "Enhanced Monitoring is off on a cluster that keeps data (skipFinalSnapshot is "
                                      "false); set monitoringInterval (60) and monitoringRoleArn"))
    for cluster in clusters:
        members = [i for i in _of_types(resources, (RDS_CLUSTER_INSTANCE_TYPE,))
                   if refers_to(i, "clusterIdentifier", cluster)]
        settings_seen = {(normalize(i.props.get("monitoringInterval")), normalize(i.props.get("performanceInsightsRetentionPeriod")))
                         for i in members}
        if any(is_unknown(v) for pair in settings_seen for v in pair):
            continue
        if len(settings_seen) > 1:
            found.append(Violation.of("rds-monitoring", cluster,
                                      f"its instances differ in (monitoringInterval, performanceInsightsRetentionPeriod): "
                                      f"{sorted(settings_seen, key=repr)}; Database Insights needs them alike"))
    return found


# --------------------------------------------------------------------------------------------
# Registry, waivers, and the entry points
# --------------------------------------------------------------------------------------------

RESOURCE_RULES: tuple[Rule, ...] = (
    Rule("rds-storage-encrypted", "Aurora/RDS storage is encrypted with a customer KMS key (cdk-nag RDS2).", rds_storage_encrypted),
    Rule("rds-iam-auth", "Aurora clusters use IAM database authentication (RDS6).", rds_iam_auth),
    Rule("rds-backtrack", "Aurora MySQL clusters have a backtrack window (RDS14).", rds_backtrack),
    Rule("rds-backup-retention", f"Automated backups are kept at least {MIN_BACKUP_RETENTION_DAYS} days.", rds_backup_retention),
    Rule("rds-not-public", "Databases are not publicly accessible (RDS2/RDS8 family).", rds_not_public),
    Rule("rds-log-exports", "Aurora MySQL exports audit, error, general and slowquery logs (RDS16).", rds_log_exports),
    Rule("kms-key-rotation", "Symmetric KMS keys rotate automatically (KMS5).", kms_key_rotation),
    Rule("secrets-kms", "Secrets Manager secrets use a customer KMS key.", secrets_kms),
    Rule("logs-kms", "CloudWatch log groups are encrypted with a customer KMS key.", logs_kms),
    Rule("logs-retention", "CloudWatch log groups have a retention period.", logs_retention),
    Rule("sns-kms", "SNS topics are encrypted with a KMS key (SNS2).", sns_kms),
    Rule("ec2-imdsv2", "EC2 instances and launch templates require IMDSv2 tokens.", ec2_imdsv2),
    Rule("ec2-ebs-encrypted", "EC2 root and data volumes are encrypted (EC26).", ec2_ebs_encrypted),
    Rule("ec2-no-public-ip", "EC2 instances get no public IP address.", ec2_no_public_ip),
    Rule("iam-policy-json", "Every IAM, resource, key and trust policy document is valid JSON.", iam_policy_json),
    Rule("iam-no-wildcard-actions", "Allow statements never use wildcard actions (IAM5).", iam_no_wildcard_actions),
    Rule("iam-no-wildcard-resources", 'Allow on Resource "*" only for actions AWS defines without resources (IAM5).', iam_no_wildcard_resources),
    Rule("iam-no-public-principal", "Resource, key and trust policies never allow everyone unconditionally.", iam_no_public_principal),
    Rule("iam-managed-policies", "Only allow-listed AWS-managed policies are attached (IAM4).", iam_managed_policies),
    Rule("ecr-scan-on-push", "ECR repositories scan images on push (ECR scan).", ecr_scan_on_push),
    Rule("backup-vault-kms", "AWS Backup vaults encrypt recovery points with a customer KMS key.", backup_vault_kms),
    Rule("codebuild-encrypted", "CodeBuild projects use a customer KMS key (CB4).", codebuild_encrypted),
    Rule("codebuild-no-privileged", "CodeBuild projects do not run privileged (CB3).", codebuild_no_privileged),
    Rule("ecs-read-only-root", "Every container of an ECS task definition has a read-only root filesystem.", ecs_read_only_root),
)

STACK_RULES: tuple[Rule, ...] = (
    Rule("s3-block-public-access", "Every bucket has a public access block with all four flags on (S2).", s3_block_public_access, stack=True),
    Rule("s3-encryption", "Every bucket has default encryption with the stack's KMS key (SSE-S3 allowed for log buckets).", s3_encryption, stack=True),
    Rule("s3-deny-insecure-transport", "Every bucket policy denies requests without TLS (S10).", s3_deny_insecure_transport, stack=True),
    Rule("s3-access-logging", "Every bucket except log buckets has server access logging (S1).", s3_access_logging, stack=True),
    Rule("sg-world-ingress", "Only a load balancer's security group is open to the internet, on tcp 80/443 (EC23).", sg_world_ingress, stack=True),
    Rule("waf-association", "Every App Runner service, application load balancer and CloudFront distribution has a WAF web ACL; every Express service is reached only through such a distribution.", waf_association, stack=True),
    Rule("express-tasks-private", "Express services run in the stack's private subnets (no public IPs, internal load balancer).", express_tasks_private, stack=True),
    Rule("express-logs-encrypted", "Express containers log to a KMS-encrypted log group of the stack.", express_logs_encrypted, stack=True),
    Rule("iam-access-key-rotation", f"No access key is made by the program; every IAM user's keys rotate at least every {MAX_ACCESS_KEY_AGE_DAYS} days (SMG4).", iam_access_key_rotation, stack=True),
    Rule("backup-plan-coverage", "A stage that keeps its data backs up the cluster and the file bucket with AWS Backup.", backup_plan_coverage, stack=True),
    Rule("alarm-topic-encrypted", "Topics that alarms notify are KMS-encrypted and refuse requests without TLS.", alarm_topic_encrypted, stack=True),
    Rule("uptime-check", "Every public entry has a scheduled uptime check from outside with an alarm.", uptime_check, stack=True),
    Rule("rds-monitoring", "Aurora instances have Performance Insights under a customer KMS key, Enhanced Monitoring with a role when the cluster keeps data, and the same settings on every instance of a cluster (RDS11).", rds_monitoring, stack=True),
)

RULES: tuple[Rule, ...] = RESOURCE_RULES + STACK_RULES
RULE_IDS: frozenset[str] = frozenset(r.id for r in RULES)

# Rule scopes that are part of the rule's definition rather than waivers; listed so that every
# exception is visible in one place (docs/policy.md repeats them).
BUILT_IN_EXEMPTIONS: Mapping[str, str] = {
    "s3-access-logging": "log buckets (targets of S3 access logs, ALB logs, flow logs, WAF logs, "
    "CloudTrail) do not log themselves: that would need another log bucket without end",
    "s3-encryption": "log buckets may use SSE-S3 (AES256): S3 server access logs and ELB access "
    "logs can only be delivered to SSE-S3 buckets",
    "iam-no-wildcard-resources": "actions in WILDCARD_RESOURCE_ACTIONS, which AWS defines without a "
    "resource type, may be granted on Resource \"*\"",
    "iam-managed-policies": "the AWS-managed policies in ALLOWED_MANAGED_POLICIES",
    "kms-key-rotation": "asymmetric and HMAC keys, which AWS cannot rotate",
}

# (rule id, selector) -> reason. A selector is either an exact resource type token ("aws:...")
# or an fnmatch pattern on the logical resource name. A waiver applies to nothing else.
WAIVERS: Mapping[tuple[str, str], str] = {
    ("codebuild-no-privileged", CODEBUILD_PROJECT_TYPE):
        "the program's only CodeBuild project builds the REDCap container image with docker, which "
        "needs privileged mode (the original suppressed cdk-nag CB3 for the same project); its "
        "source is our own S3 asset, not untrusted code",
}


_TYPE_TOKEN = re.compile(r"^[A-Za-z0-9-]+:[A-Za-z0-9/._-]*:[A-Za-z0-9]+$")


def _is_type_selector(selector: str) -> bool:
    """"aws:s3/bucket:Bucket" is a type token; anything else is a logical-name pattern."""
    return _TYPE_TOKEN.match(selector) is not None


def waiver_reason(
    violation: Violation, waivers: Mapping[tuple[str, str], str] = WAIVERS
) -> str | None:
    """The reason a violation is waived, or None when no waiver names it."""
    for (rule_id, selector), reason in waivers.items():
        if rule_id != violation.rule:
            continue
        if _is_type_selector(selector):
            if violation.resource_type == selector:
                return reason
        elif fnmatch.fnmatchcase(violation.resource_name, selector):
            return reason
    return None


def validate_waivers(waivers: Mapping[tuple[str, str], str] = WAIVERS) -> None:
    """Every waiver names an existing rule and has a real reason (raises ValueError otherwise)."""
    for (rule_id, selector), reason in waivers.items():
        if rule_id not in RULE_IDS:
            raise ValueError(f"waiver ({rule_id!r}, {selector!r}) names an unknown rule")
        if not selector:
            raise ValueError(f"waiver for {rule_id!r} has an empty selector")
        if not isinstance(reason, str) or len(reason.strip()) < 20:
            raise ValueError(f"waiver ({rule_id!r}, {selector!r}) needs a reason of at least 20 characters")


validate_waivers()


def check_resource(res: Resource) -> list[Violation]:
    """All resource-rule findings for one resource (waivers NOT applied)."""
    return [v for rule in RESOURCE_RULES for v in rule.check(res)]


def check_stack(resources: Iterable[Resource]) -> list[Violation]:
    """All stack-rule findings over a whole stack (waivers NOT applied)."""
    pool = list(resources)
    return [v for rule in STACK_RULES for v in rule.check(pool)]


@dataclass(frozen=True)
class Report:
    violations: list[Violation]
    waived: list[tuple[Violation, str]]


def evaluate(resources: Iterable[Resource], waivers: Mapping[tuple[str, str], str] = WAIVERS) -> Report:
    """Run every rule, split the findings into violations and waived ones (with the reason)."""
    pool = list(resources)
    findings = [v for res in pool for v in check_resource(res)] + check_stack(pool)
    violations: list[Violation] = []
    waived: list[tuple[Violation, str]] = []
    for finding in findings:
        reason = waiver_reason(finding, waivers)
        if reason is None:
            violations.append(finding)
        else:
            waived.append((finding, reason))
    return Report(violations, waived)


def violations_for(
    resources: Iterable[Resource], waivers: Mapping[tuple[str, str], str] = WAIVERS
) -> list[Violation]:
    """Everything that is wrong with a stack, after waivers. An empty list means compliant."""
    return evaluate(resources, waivers).violations


# --------------------------------------------------------------------------------------------
# CrossGuard wrappers (thin: convert the SDK's arguments, call the pure rule, report)
# --------------------------------------------------------------------------------------------


def _options_dict(opts: Any) -> dict[str, Any]:
    if opts is None:
        return {}
    return {
        "protect": getattr(opts, "protect", None),
        "ignore_changes": list(getattr(opts, "ignore_changes", None) or []),
        "parent": getattr(opts, "parent", None),
    }


def _provider_region(provider: Any) -> str | None:
    region = normalize(getattr(provider, "props", None) or {}).get("region")
    return region if isinstance(region, str) else None


def resource_from_validation_args(args: ResourceValidationArgs) -> Resource:
    return Resource(
        type=args.resource_type, name=args.name, urn=args.urn,
        props=normalize(args.props),
        options={**_options_dict(args.opts), "providerRegion": _provider_region(args.provider)},
    )


def resources_from_stack_args(args: StackValidationArgs) -> list[Resource]:
    """Stack validations see the engine's recorded properties (outputs; for bridged AWS resources
    they include the inputs and `id`/`arn`) plus URN dependencies."""
    converted = []
    for item in args.resources:
        props = normalize(item.props)
        raw_id = props.get("id")
        converted.append(Resource(
            type=item.resource_type, name=item.name, urn=item.urn, props=props, outputs=props,
            id=raw_id if isinstance(raw_id, str) else None,
            options=_options_dict(item.opts),
            parent=item.parent.urn if item.parent is not None else None,
            dependencies=tuple(d.urn for d in item.dependencies),
            property_dependencies={k: tuple(d.urn for d in v) for k, v in item.property_dependencies.items()},
        ))
    return converted


def _resource_validator(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for finding in rule.check(resource_from_validation_args(args)):
            if waiver_reason(finding) is None:
                report_violation(finding.message, None)
    return validate


def _stack_validator(rule: Rule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for finding in rule.check(resources_from_stack_args(args)):
            if waiver_reason(finding) is None:
                report_violation(finding.message, finding.urn)
    return validate


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    policies: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in RULES:
        if rule.stack:
            policies.append(StackValidationPolicy(
                name=rule.id, description=rule.description, validate=_stack_validator(rule),
                enforcement_level=EnforcementLevel.MANDATORY,
            ))
        else:
            policies.append(ResourceValidationPolicy(
                name=rule.id, description=rule.description, validate=_resource_validator(rule),
                enforcement_level=EnforcementLevel.MANDATORY,
            ))
    return policies


POLICIES = build_policies()

__all__ = [
    "BUILT_IN_EXEMPTIONS", "PACK_NAME", "POLICIES", "RULES", "RULE_IDS", "Report", "Resource", "Rule",
    "UNKNOWN", "Violation", "WAIVERS", "check_resource", "check_stack", "evaluate", "violations_for",
    "waiver_reason",
]
