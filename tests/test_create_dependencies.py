"""Resources that AWS checks against another resource's policy or grant when it creates them
(or that act with that grant as soon as they exist) depend on it, so one `pulumi up` that creates
or changes both never creates the dependent first.

Mocks accept any order; the engine orders by the dependencies a resource registers with
(`RegisterResourceRequest.dependencies`), which is what these tests read.
"""
from __future__ import annotations

import pytest

import harness

LB = "aws:lb/loadBalancer:LoadBalancer"
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KEY = "aws:kms/key:Key"

EXPRESS_SERVICE = "aws:ecs/expressGatewayService:ExpressGatewayService"
VPC_ORIGIN = "aws:cloudfront/vpcOrigin:VpcOrigin"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"

LOG_BUCKET_READY = [(BUCKET_POLICY, "redcap-logs-policy"), (OWNERSHIP, "redcap-logs-ownership"),
                    (SSE, "redcap-logs-encryption")]

# (variant, dependent (type, name), required (type, name) ..., why AWS needs the order)
PAIRS = [
    ("prod", (LB, "redcap-alb"), LOG_BUCKET_READY,
     "ELB writes a test object when access logs are enabled: Access Denied for bucket without the policy"),
    ("prod", (BUCKET_LOGGING, "redcap-files-logging"), LOG_BUCKET_READY,
     "S3 server access logging to a bucket with ACLs disabled is authorised by the target's policy"),
    ("prod", (BUCKET_LOGGING, "redcap-artifacts-logging"), LOG_BUCKET_READY,
     "the artifacts bucket logs to the same target"),
    ("prod", ("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "redcap-waf-logging"),
     [("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "redcap-waf-logs-delivery"), (LOG_GROUP, "redcap-waf-logs")],
     "WAF checks that log delivery may write the group, else it edits the account-wide policy"),
    ("prod", ("aws:ec2/flowLog:FlowLog", "redcap-flow-log"), [(ROLE_POLICY, "redcap-flow-logs-write")],
     "flow logs deliver with the role from the start"),
    ("prod", ("aws:codebuild/project:Project", "redcap-build"), [(ROLE_POLICY, "redcap-build-policy")],
     "CodeBuild checks the service role's VPC permissions when the project is created"),
    ("prod", ("aws:lambda/function:Function", "redcap-trigger"),
     [(ROLE_POLICY, "redcap-trigger-policy"), (LOG_GROUP, "redcap-trigger-logs")],
     "the function is invoked in the same update and logs to its own group"),
    ("prod", ("aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination", "redcap-bounces-destination"),
     [(TOPIC_POLICY, "redcap-bounces-policy")], "SES publishes as soon as the destination exists"),
    ("prod", ("aws:cloudwatch/eventTarget:EventTarget", "redcap-cron-target"), [(ROLE_POLICY, "redcap-cron-invoke")],
     "the first cron call is made with the role"),
    ("prod", ("aws:ecs/service:Service", "redcap-service"),
     [(ROLE_POLICY, "redcap-execution"), (ROLE_POLICY, "redcap-runtime"), ("aws:lb/listener:Listener", "redcap-https")],
     "tasks pull and read secrets at start; the target group must be behind a listener"),
    ("prod", ("aws:rds/cluster:Cluster", "redcap-cluster"),
     [(LOG_GROUP, f"redcap-log-{kind}") for kind in ("audit", "error", "general", "slowquery")],
     "RDS creates missing export groups itself, unencrypted and without retention"),
    ("dev-apprunner", ("aws:apprunner/service:Service", "redcap-service"),
     [(ROLE_POLICY, "redcap-access"), (ROLE_POLICY, "redcap-runtime")],
     "App Runner pulls the image with the access role while creating the service"),
    ("dev-apprunner", ("aws:cloudwatch/eventTarget:EventTarget", "redcap-operations-mail"),
     [(TOPIC_POLICY, "redcap-notifications-policy")], "EventBridge delivers as soon as the target exists"),
    ("dev", (EXPRESS_SERVICE, "redcap-service"),
     [(ROLE_POLICY, "redcap-execution"), (ROLE_POLICY, "redcap-runtime"), (ATTACHMENT, "redcap-infrastructure"),
      ("time:index/sleep:Sleep", "redcap-drain")],
     "Express pulls the image and reads the secrets with the task roles, and builds its load balancer with the "
     "infrastructure role, as soon as the service exists"),
    ("dev", (VPC_ORIGIN, "redcap-origin"), [(EXPRESS_SERVICE, "redcap-service")],
     "CloudFront checks that the origin's load balancer (Express's, found through the service) exists"),
    ("dev", (DISTRIBUTION, "redcap-distribution"),
     [(VPC_ORIGIN, "redcap-origin"), ("aws:wafv2/webAcl:WebAcl", "redcap-web-acl"),
      ("aws:cloudfront/function:Function", "redcap-forwarded-host")],
     "CloudFront checks the VPC origin, the CLOUDFRONT-scope web ACL and the published function when the "
     "distribution is created"),
    ("dev", ("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "redcap-waf-logging"),
     [("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "redcap-waf-logs-delivery"), (LOG_GROUP, "redcap-waf-logs")],
     "the same check for the CLOUDFRONT-scope ACL's log group in us-east-1"),
    ("dev-express-zone", (DISTRIBUTION, "redcap-distribution"),
     [("aws:acm/certificateValidation:CertificateValidation", "redcap-certificate-validation")],
     "CloudFront accepts an alias only with an issued us-east-1 certificate that covers it"),
    ("dev-express-zone", ("aws:route53/record:Record", "redcap-site"), [(DISTRIBUTION, "redcap-distribution")],
     "Route 53 checks that an alias record's CloudFront target exists"),
    ("dev-express-zone", ("aws:cloudwatch/eventTarget:EventTarget", "redcap-cron-target"),
     [(ROLE_POLICY, "redcap-cron-invoke")], "the first cron call is made with the role"),
    ("dev-tunnel", ("aws:ec2/instance:Instance", "redcap-tunnel-instance"),
     [(ROLE_POLICY, "redcap-tunnel-runtime"), (ROLE_POLICY, "redcap-tunnel-pull"),
      ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "redcap-tunnel-ssm")],
     "the container reads its secrets and the SSM agent registers at boot"),
]

# prod once its zone is delegated: the load balancer, ECS service and cron exist (docs/domains.md);
# "dev" is the committed dev stage: ECS Express Mode without a domain.
OVERRIDES = {"prod": ("prod", {"zoneDelegated": True}), "dev": ("dev", {}), "dev-apprunner": ("dev", {"express": None}),
             "dev-express-zone": ("dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                          "cronMinutes": 3, "zoneDelegated": True}),
             "dev-tunnel": ("dev", {"ec2ServerStack": {"durationHours": 4}})}


def run_of(variant: str) -> harness.StackRun:
    stack, overrides = OVERRIDES[variant]
    return harness.cached_run(stack, overrides)


@pytest.mark.parametrize("variant, dependent, required, why", PAIRS,
                         ids=[f"{p[0]}:{p[1][1]}" for p in PAIRS])
def test_dependent_waits_for_the_policy_aws_checks(variant, dependent, required, why):
    run = run_of(variant)
    resource = run.named(dependent[1], dependent[0])
    missing = [name for type_, name in required if run.named(name, type_).urn not in resource.dependencies]
    assert missing == [], f"{dependent[1]} must depend on {missing}: {why}"


@pytest.mark.parametrize("variant", sorted(OVERRIDES))
def test_everything_encrypted_with_the_stack_key_waits_for_the_key_and_its_policy(variant):
    """KMS checks the key policy when a log group, secret, topic, ... is created with the key: the
    policy is part of the key resource (no separate key policy that could come later), and every
    user of the key ARN depends on the key."""
    run = run_of(variant)
    key = run.one(KEY, "redcap-key")
    assert key.inputs["policy"] and run.of_type("aws:kms/keyPolicy:KeyPolicy") == []
    arn = key.outputs["arn"]
    users = [r for r in run.resources if r.custom and r is not key and arn in harness.all_strings(
        harness.unwrap_secrets(r.inputs))]
    assert len(users) > 10
    assert [r.name for r in users if key.urn not in r.dependencies] == []
