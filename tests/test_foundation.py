"""The foundation (network, storage, database) as registered by the whole program under mocks.

Every committed stack file runs unchanged; variants are built from overrides. Assertions are on
the camelCase inputs the engine would send to AWS and on the recorded resource options.
"""
from __future__ import annotations

import json

import pytest

from harness import (MOCK_SECRET_VALUES, StackRun, all_strings, is_secret_input, mock_random_id, run_program,
                     stack_files)
from settings import SettingsError

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
# The prod cluster's identifier under mocks: `redcap-prod-` and the hex the mock draws for its suffix.
PROD_CLUSTER = "redcap-prod-" + mock_random_id("redcap-suffix", {"byteLength": 4, "keepers": {"restoreFrom": ""}})["hex"]


@pytest.fixture(scope="module")
def dev() -> StackRun:
    return run_program("dev")


@pytest.fixture(scope="module")
def prod() -> StackRun:
    return run_program("prod")


def test_every_committed_stack_file_evaluates():
    names = stack_files()
    assert {"dev", "prod"} <= set(names)
    for name in names:
        run = run_program(name)
        assert len(run.of_type(CLUSTER)) == 1 or run.config.get("redcap:nsDelegation"), name


# --- network -----------------------------------------------------------------------------------

def test_vpc_layout_and_nat(dev, prod):
    for run, strategy in ((dev, "Single"), (prod, "OnePerAz")):
        vpc = run.one("awsx:ec2:Vpc")
        assert vpc.remote is True
        assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
        assert vpc.inputs["numberOfAvailabilityZones"] == 2
        assert vpc.inputs["natGateways"] == {"strategy": strategy}
        specs = {s["name"]: (s["type"], s["cidrBlocks"]) for s in vpc.inputs["subnetSpecs"]}
        assert specs == {
            "public": ("Public", ["10.0.0.0/24", "10.0.1.0/24"]),
            "private": ("Private", ["10.0.2.0/24", "10.0.3.0/24"]),
            "isolated": ("Isolated", ["10.0.4.0/24", "10.0.5.0/24"]),
        }


def test_flow_logs_all_traffic_to_an_encrypted_log_group_with_retention(dev, prod):
    for run, days in ((dev, 30), (prod, 731)):
        flow = run.one("aws:ec2/flowLog:FlowLog")
        assert flow.inputs["trafficType"] == "ALL"
        assert flow.inputs["vpcId"] == "vpc-0mock"
        group = next(r for r in run.of_type("aws:cloudwatch/logGroup:LogGroup") if r.name == "redcap-flow-logs")
        assert flow.inputs["logDestination"] == group.outputs["arn"]
        assert group.inputs["retentionInDays"] == days
        assert group.inputs["kmsKeyId"] == run.one(KEY, "redcap-key").outputs["arn"]
        role = run.one("aws:iam/role:Role", "flow-logs")
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
        policy = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", "flow-logs").inputs["policy"])
        assert policy["Statement"][0]["Resource"] == [group.outputs["arn"], group.outputs["arn"] + ":*"]


def test_endpoints(prod):
    endpoints = {r.name: r.inputs for r in prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    s3 = endpoints["redcap-s3"]
    assert s3["vpcEndpointType"] == "Gateway" and s3["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert s3["routeTableIds"] == ["rtb-0a", "rtb-0b", "rtb-0c"]  # sorted: stable inputs
    sm = endpoints["redcap-secretsmanager"]
    assert sm["vpcEndpointType"] == "Interface" and sm["privateDnsEnabled"] is True
    assert sm["serviceName"] == "com.amazonaws.us-east-1.secretsmanager"
    assert sm["subnetIds"] == ["subnet-private-a", "subnet-private-b"]


def test_database_reachable_only_from_the_app_security_group(prod):
    sgs = {r.name: r for r in prod.of_type("aws:ec2/securityGroup:SecurityGroup")}
    db_sg, app_sg = sgs["redcap-database"], sgs["redcap-app"]
    ingress = [r.inputs for r in prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.inputs["securityGroupId"] == db_sg.id]
    assert ingress == [{**ingress[0], "fromPort": 3306, "toPort": 3306, "ipProtocol": "tcp",
                        "referencedSecurityGroupId": app_sg.id}]
    assert "cidrIpv4" not in ingress[0] and "cidrIpv6" not in ingress[0]
    # No ingress from the world anywhere in the foundation.
    for rule in prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        assert rule.inputs.get("cidrIpv4") != "0.0.0.0/0" or rule.inputs["fromPort"] in (80, 443), rule.name
    # The app may leave only on web, SMTP submission and MySQL to the database.
    egress = [(r.inputs["fromPort"], r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") or "db-sg")
              for r in prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.inputs["securityGroupId"] == app_sg.id]
    assert sorted(egress) == sorted([(3306, "db-sg"), (443, "0.0.0.0/0"), (443, "::/0"), (80, "0.0.0.0/0"),
                                     (80, "::/0"), (587, "0.0.0.0/0"), (587, "::/0")])


# --- storage -----------------------------------------------------------------------------------

def test_one_rotating_kms_key(dev, prod):
    for run in (dev, prod):
        key = run.one(KEY, "redcap-key")
        assert key.inputs["enableKeyRotation"] is True
        policy = json.loads(key.inputs["policy"])
        sids = {s["Sid"] for s in policy["Statement"]}
        assert sids == {"AccountAdministersKeyThroughIam", "CloudWatchLogsOfThisAccount", "PublishersToEncryptedTopics",
                        "CloudWatchAlarmsToEncryptedTopics", "EventBridgeToEncryptedTopics"}
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        # EventBridge's KMS requests carry no aws:SourceAccount: a condition on it would drop every
        # notification to an encrypted topic; the topics' own policies admit only this stack's rules.
        assert by_sid["EventBridgeToEncryptedTopics"]["Principal"] == {"Service": "events.amazonaws.com"}
        assert "Condition" not in by_sid["EventBridgeToEncryptedTopics"]
        assert by_sid["PublishersToEncryptedTopics"]["Principal"] == {"Service": "ses.amazonaws.com"}
        assert by_sid["PublishersToEncryptedTopics"]["Condition"] == {
            "StringEquals": {"aws:SourceAccount": "123456789012"}}
        logs = next(s for s in policy["Statement"] if s["Sid"] == "CloudWatchLogsOfThisAccount")
        assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == \
            "arn:aws:logs:us-east-1:123456789012:*"


def _bucket_children(run: StackRun, bucket_name: str, type_: str) -> list[dict]:
    bucket = run.named(bucket_name, BUCKET)
    return [r.inputs for r in run.of_type(type_) if r.inputs.get("bucket") == bucket.id]


@pytest.mark.parametrize("bucket", ["redcap-files", "redcap-logs"])
def test_buckets_are_private_tls_only_and_tiered(prod, bucket):
    pab = _bucket_children(prod, bucket, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert pab and all(pab[0][k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                   "restrictPublicBuckets"))
    ownership = _bucket_children(prod, bucket, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership[0]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    policy = json.loads(_bucket_children(prod, bucket, "aws:s3/bucketPolicy:BucketPolicy")[0]["policy"])
    deny = next(s for s in policy["Statement"] if s.get("Sid") == "DenyInsecureTransport")
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    arn = prod.named(bucket, BUCKET).outputs["arn"]
    assert deny["Resource"] == [arn, f"{arn}/*"]
    rules = _bucket_children(prod, bucket, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0]["rules"]
    assert [(t["days"], t["storageClass"]) for t in rules[0]["transitions"]] == [
        (90, "STANDARD_IA"), (180, "INTELLIGENT_TIERING")]
    # Nothing current ever expires (the log bucket only clears delete markers left alone).
    assert rules[0].get("expiration") in (None, {"expiredObjectDeleteMarker": True})


def test_file_bucket_encrypted_with_the_stack_key_and_logged(prod):
    sse = _bucket_children(prod, "redcap-files",
                           "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0]
    rule = sse["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                           "kmsMasterKeyId": prod.one(KEY, "redcap-key").outputs["arn"]}
    assert rule["bucketKeyEnabled"] is True
    logging = _bucket_children(prod, "redcap-files", "aws:s3/bucketLogging:BucketLogging")[0]
    assert logging["targetBucket"] == prod.named("redcap-logs", BUCKET).id


def test_log_bucket_takes_s3_and_alb_logs_only_from_this_account(prod, dev):
    # AWS delivers server access and ALB logs only to SSE-S3 buckets.
    sse = _bucket_children(prod, "redcap-logs",
                           "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0]
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    statements = {s["Sid"]: s for s in json.loads(
        _bucket_children(prod, "redcap-logs", "aws:s3/bucketPolicy:BucketPolicy")[0]["policy"])["Statement"]}
    assert statements["S3ServerAccessLogs"]["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert statements["AlbAccessLogsRegionalAccount"]["Resource"].endswith("/alb/AWSLogs/123456789012/*")
    # dev runs Express, whose load balancer is AWS-managed and logs to no bucket of ours: no ALB log grants.
    dev_sids = {s["Sid"] for s in json.loads(
        _bucket_children(dev, "redcap-logs", "aws:s3/bucketPolicy:BucketPolicy")[0]["policy"])["Statement"]}
    assert dev_sids == {"DenyInsecureTransport", "S3ServerAccessLogs"}


def test_versioning_when_the_stage_asks(dev, prod):
    assert _bucket_children(prod, "redcap-files", "aws:s3/bucketVersioning:BucketVersioning")[0][
        "versioningConfiguration"] == {"status": "Enabled"}
    assert _bucket_children(dev, "redcap-files", "aws:s3/bucketVersioning:BucketVersioning") == []
    versioning = prod.one("aws:s3/bucketVersioning:BucketVersioning", "redcap-files")
    assert versioning.retain_on_delete is True  # a destroy never suspends the kept bucket's versioning


def test_turning_versioning_off_on_a_kept_stage_suspends_it():
    run = run_program("prod", {"appBucketVersioning": False, "backup": {"enabled": False}})
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning", "redcap-files")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Suspended"}


def test_redcap_s3_user_is_scoped_to_its_bucket_and_key(prod):
    policy = json.loads(prod.one("aws:iam/userPolicy:UserPolicy", "s3-user").inputs["policy"])
    arn = prod.named("redcap-files", BUCKET).outputs["arn"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ListFiles"]["Resource"] == [arn]
    assert by_sid["ReadWriteFiles"]["Resource"] == [f"{arn}/*"]
    assert by_sid["UseBucketKey"]["Resource"] == [prod.one(KEY, "redcap-key").outputs["arn"]]
    for s in policy["Statement"]:
        assert all("*" not in a for a in s["Action"])


def test_secrets_are_encrypted_and_their_values_marked_secret(prod):
    key_arn = prod.one(KEY, "redcap-key").outputs["arn"]
    for secret in prod.of_type(SECRET):
        assert secret.inputs["kmsKeyId"] == key_arn, secret.name
    versions = {r.name: r for r in prod.of_type(SECRET_VERSION)}
    # The S3 key is made by the rotation function: no key and no value of it in the program.
    assert "redcap-s3-credentials-value" not in versions and prod.of_type("aws:iam/accessKey:AccessKey") == []
    assert prod.one("aws:iam/user:User", "s3-user").inputs["forceDestroy"] is True
    assert is_secret_input(versions["redcap-salt-value"].inputs["secretString"])
    salt = prod.one("random:index/randomPassword:RandomPassword", "salt")
    assert salt.inputs["length"] == 64
    # Never regenerated by a change of parameters (an imported old salt stays).
    assert {"length", "special", "upper", "lower", "numeric"} <= set(salt.ignore_changes)


def test_no_secret_value_in_plain_inputs(dev, prod):
    for run in (dev, prod):
        for r in run.resources:
            plain = _strip_secret_inputs(r.inputs)
            for text in all_strings(plain):
                for value in MOCK_SECRET_VALUES:
                    assert value not in text, f"{r.type} {r.name} carries a secret in plain text"


def _strip_secret_inputs(value):
    if is_secret_input(value):
        return None
    if isinstance(value, dict):
        return {k: _strip_secret_inputs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secret_inputs(v) for v in value]
    return value


# --- database ----------------------------------------------------------------------------------

def test_cluster_security_settings(dev, prod):
    for run in (dev, prod):
        c = run.one(CLUSTER).inputs
        assert c["engine"] == "aurora-mysql" and c["engineMode"] == "provisioned"
        assert c["storageEncrypted"] is True and c["kmsKeyId"] == run.one(KEY, "redcap-key").outputs["arn"]
        assert c["iamDatabaseAuthenticationEnabled"] is True
        assert c["manageMasterUserPassword"] is True and "masterPassword" not in c
        assert c["masterUserSecretKmsKeyId"] == run.one(KEY, "redcap-key").outputs["arn"]
        assert c["backtrackWindow"] == 86400
        assert sorted(c["enabledCloudwatchLogsExports"]) == ["audit", "error", "general", "slowquery"]
        assert c["vpcSecurityGroupIds"] == [run.named("redcap-database", "aws:ec2/securityGroup:SecurityGroup").id]
        assert c["copyTagsToSnapshot"] is True
        subnets = run.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"]
        assert subnets == ["subnet-isolated-a", "subnet-isolated-b"]
        params = {p["name"]: p["value"] for p in
                  run.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs["parameters"]}
        assert params["max_allowed_packet"] == "1073741824"
        assert params["require_secure_transport"] == "ON"
        assert run.one(CLUSTER).ignore_changes == ["engineVersion"]


def test_cluster_log_groups_precreated_encrypted_with_retention(prod):
    ident = prod.one(CLUSTER).inputs["clusterIdentifier"]
    groups = {r.inputs["name"]: r for r in prod.of_type("aws:cloudwatch/logGroup:LogGroup")
              if r.inputs.get("name", "").startswith("/aws/rds/")}
    assert set(groups) == {f"/aws/rds/cluster/{ident}/{k}" for k in ("audit", "error", "general", "slowquery")}
    for g in groups.values():
        assert g.inputs["retentionInDays"] == 731 and g.inputs["kmsKeyId"] == prod.one(KEY, "redcap-key").outputs["arn"]
        assert g.urn in prod.one(CLUSTER).dependencies


def test_serverless_scaling_and_auto_pause(dev, prod):
    assert dev.one(CLUSTER).inputs["serverlessv2ScalingConfiguration"] == {
        "minCapacity": 0, "maxCapacity": 2, "secondsUntilAutoPause": 300}
    assert prod.one(CLUSTER).inputs["serverlessv2ScalingConfiguration"] == {"minCapacity": 0.5, "maxCapacity": 8}


def test_writer_and_readers(dev, prod):
    for run, readers in ((dev, 0), (prod, 1)):
        instances = run.of_type(INSTANCE)
        assert len(instances) == readers + 1
        assert sorted(i.name for i in instances) == sorted(["redcap-writer"] + [f"redcap-reader-{n}" for n in range(1, readers + 1)])
        for i in instances:
            assert i.inputs["instanceClass"] == "db.serverless"
            assert i.inputs["publiclyAccessible"] is False
            assert i.inputs["clusterIdentifier"] == run.one(CLUSTER).id
            assert i.ignore_changes == ["engineVersion"]


def test_backups_and_maintenance(dev, prod):
    assert dev.one(CLUSTER).inputs["backupRetentionPeriod"] == 7
    assert prod.one(CLUSTER).inputs["backupRetentionPeriod"] == 30
    assert prod.one(CLUSTER).inputs["preferredMaintenanceWindow"] == "sun:08:00-sun:08:30"
    assert "preferredMaintenanceWindow" not in dev.one(CLUSTER).inputs


def test_master_secret_and_endpoints_exported(prod):
    assert prod.outputs["dbMasterSecretArn"].startswith("arn:aws:secretsmanager:")
    assert prod.outputs["dbEndpoint"].endswith(".rds.amazonaws.com")
    assert prod.outputs["isolatedSubnetIds"] == ["subnet-isolated-a", "subnet-isolated-b"]
    assert prod.outputs["vpcId"] == "vpc-0mock"
    assert prod.outputs["appBucketName"] == prod.named("redcap-files", BUCKET).id


# --- destroy semantics ---------------------------------------------------------------------------

DATA = ((KEY, "redcap-key"), (BUCKET, "redcap-files"), (BUCKET, "redcap-logs"), (SECRET, "redcap-salt"))


def test_dev_destroy_removes_everything(dev):
    c = dev.one(CLUSTER)
    assert c.inputs["skipFinalSnapshot"] is True and "finalSnapshotIdentifier" not in c.inputs
    assert c.inputs["deleteAutomatedBackups"] is True and c.inputs["deletionProtection"] is False
    assert c.protect is False and c.retain_on_delete is False
    for type_, name in DATA:
        r = dev.one(type_, name)
        assert r.retain_on_delete is False and r.protect is False, r.name
    assert all(b.inputs["forceDestroy"] is True for b in dev.of_type(BUCKET))
    assert "dbFinalSnapshotIdentifier" not in dev.outputs


def test_prod_snapshot_keeps_a_unique_stable_final_snapshot(prod):
    c = prod.one(CLUSTER)
    suffix = prod.named("redcap-suffix", "random:index/randomId:RandomId")
    assert suffix.inputs["byteLength"] == 4 and suffix.inputs["keepers"] == {"restoreFrom": ""}
    assert c.inputs["clusterIdentifier"] == PROD_CLUSTER
    assert c.inputs["finalSnapshotIdentifier"] == f"{PROD_CLUSTER}-final"
    assert c.inputs["skipFinalSnapshot"] is False and c.inputs["deleteAutomatedBackups"] is False
    assert c.inputs["deletionProtection"] is True and c.protect is True
    assert c.retain_on_delete is False  # the cluster goes, its final snapshot stays
    for type_, name in DATA:
        r = prod.one(type_, name)
        assert r.retain_on_delete is True and r.protect is True, r.name
    # Data buckets stay; the image artifacts bucket holds only what the project folder reproduces.
    assert {b.name: b.inputs["forceDestroy"] for b in prod.of_type(BUCKET)} == {
        "redcap-files": False, "redcap-logs": False, "redcap-artifacts": True}
    assert prod.outputs["dbFinalSnapshotIdentifier"] == f"{PROD_CLUSTER}-final"


def test_retain_keeps_the_cluster_too():
    run = run_program("prod", {"removalPolicy": "retain"})
    c = run.one(CLUSTER)
    assert c.retain_on_delete is True and c.protect is True
    assert all(i.retain_on_delete is True for i in run.of_type(INSTANCE))
    assert c.inputs["finalSnapshotIdentifier"] == f"{PROD_CLUSTER}-final"


def test_lowering_deletion_protection_keeps_the_snapshot():
    """The documented destroy sequence: deletionProtection false + `pulumi up`, then destroy."""
    run = run_program("prod", {"deletionProtection": False})
    c = run.one(CLUSTER)
    assert c.inputs["deletionProtection"] is False and c.protect is False
    assert c.inputs["skipFinalSnapshot"] is False and c.inputs["finalSnapshotIdentifier"]
    for type_, name in DATA:
        r = run.one(type_, name)
        assert r.protect is False and r.retain_on_delete is True, r.name


def test_restore_from_snapshot_replaces_the_cluster_under_a_new_name():
    run = run_program("prod", {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final", "dbReaders": 1}})
    c = run.one(CLUSTER).inputs
    assert c["snapshotIdentifier"] == "redcap-prod-a1b2c3d4-final"
    assert "databaseName" not in c and "masterUsername" not in c
    [suffix] = [r for r in run.of_type("random:index/randomId:RandomId") if r.name.startswith("redcap-suffix")]
    assert suffix.inputs["keepers"] == {"restoreFrom": "redcap-prod-a1b2c3d4-final"}


# --- failure before anything is created ----------------------------------------------------------

def test_invalid_settings_register_nothing():
    with pytest.raises(SettingsError) as err:
        run_program("dev", {"port": 80, "bogusKey": "x"})
    text = str(err.value)
    assert "redcap:port = '80'" in text and "redcap:bogusKey" in text
    # The mock monitor recorded nothing: the error came before the first resource.
    from pulumi.runtime import settings as runtime_settings
    monitor = runtime_settings.get_monitor()
    assert [r for r in monitor.recorded] == []


# --- determinism -------------------------------------------------------------------------------

def _snapshot(run: StackRun) -> list[tuple]:
    return [(r.type, r.name, json.dumps(r.inputs, sort_keys=True, default=str), r.protect,
             r.retain_on_delete, tuple(r.ignore_changes)) for r in run.resources]


@pytest.mark.parametrize("stack, overrides", [
    ("dev", {}),
    ("prod", {}),
    ("prod", {"removalPolicy": "retain", "db": {"dbReaders": 3}}),
])
def test_same_config_gives_identical_inputs(stack, overrides):
    first, second = run_program(stack, overrides), run_program(stack, overrides)
    assert sorted(_snapshot(first)) == sorted(_snapshot(second))
    assert first.outputs == second.outputs


@pytest.mark.parametrize("removal", ["destroy", "snapshot", "retain"])
@pytest.mark.parametrize("protection", [True, False])
def test_every_removal_policy_and_protection_combination(removal, protection):
    """What `pulumi destroy` will do is fixed by these recorded inputs and options (docs/destroy.md)."""
    run = run_program("prod", {"removalPolicy": removal, "deletionProtection": protection})
    cluster = run.one(CLUSTER)
    keep = removal != "destroy"
    assert cluster.inputs["skipFinalSnapshot"] is (removal == "destroy")
    assert cluster.inputs.get("finalSnapshotIdentifier") == (f"{PROD_CLUSTER}-final" if keep else None)
    assert cluster.inputs["deleteAutomatedBackups"] is (not keep)
    assert cluster.inputs["deletionProtection"] is protection and cluster.protect is protection
    assert cluster.retain_on_delete is (removal == "retain")
    for instance in run.of_type(INSTANCE):
        assert instance.protect is protection and instance.retain_on_delete is (removal == "retain")
    for type_, name in DATA:
        r = run.one(type_, name)
        assert (r.retain_on_delete, r.protect) == (keep, protection), r.name
    for bucket in ("redcap-files", "redcap-logs"):
        assert run.named(bucket, BUCKET).inputs["forceDestroy"] is (not keep)
    assert ("dbFinalSnapshotIdentifier" in run.outputs) is keep


# --- what a kept bucket keeps --------------------------------------------------------------------

# Versioning is not among them: it follows appBucketVersioning, and turning that off must still
# suspend it (a kept BucketVersioning would only be dropped from state).
BUCKET_SETTINGS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                   "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                   "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                   "aws:s3/bucketPolicy:BucketPolicy",
                   "aws:s3/bucketLogging:BucketLogging",
                   "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")


def _settings_of(run: StackRun, bucket: str) -> list:
    return [r for r in run.resources if r.type in BUCKET_SETTINGS and r.name.startswith(f"{bucket}-")]


@pytest.mark.parametrize("removal", ["destroy", "snapshot", "retain"])
def test_a_kept_bucket_keeps_its_hardening(removal):
    """`pulumi destroy` deletes a bucket's separate settings resources even when the bucket itself
    is kept (retain_on_delete): the kept patient-file bucket would lose its public access block,
    TLS-only policy, KMS default encryption and ownership controls. Every such settings resource
    of a kept bucket is kept with it."""
    run = run_program("prod", {"removalPolicy": removal})
    keep = removal != "destroy"
    for bucket in ("redcap-files", "redcap-logs"):
        settings = _settings_of(run, bucket)
        assert {r.type for r in settings} >= set(BUCKET_SETTINGS) - {"aws:s3/bucketLogging:BucketLogging"}, bucket
        for r in settings:
            assert bool(r.retain_on_delete) is keep, (r.type, r.name)


# --- values AWS validates that mocks accept ---------------------------------------------------------

# EC2's character set for security group and rule descriptions (CreateSecurityGroup, IpRange,
# UserIdGroupPair): anything else, an apostrophe say, fails `pulumi up` with InvalidParameterValue.
SG_DESCRIPTION = r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]{0,255}"


def test_network_security_group_descriptions_use_the_characters_ec2_accepts(dev, prod):
    import re
    for run in (dev, prod):
        network = run.one("redcap:network:Network")
        for r in run.children_of(network):
            if r.type.startswith("aws:vpc/securityGroup") or r.type == "aws:ec2/securityGroup:SecurityGroup":
                assert re.fullmatch(SG_DESCRIPTION, r.inputs.get("description", "")), (r.name, r.inputs["description"])


def test_retain_keeps_what_the_kept_cluster_still_uses():
    """A kept cluster still uses its subnet group and cluster parameter group: RDS refuses to delete
    either while it is in use, so `pulumi destroy` with `removalPolicy: retain` would stop there
    (and again on every retry). They are kept with the cluster; with destroy/snapshot they go."""
    for removal, keep in (("retain", True), ("snapshot", False), ("destroy", False)):
        run = run_program("prod", {"removalPolicy": removal})
        for type_ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/clusterParameterGroup:ClusterParameterGroup"):
            assert bool(run.one(type_).retain_on_delete) is keep, (removal, type_)


def test_trust_policies_carry_source_account_only_where_the_service_sends_it():
    """A condition on a key the service does not send makes the role unusable."""
    from components.policies import SOURCE_ACCOUNT_IN_TRUST

    run = run_program("dev", {"ec2ServerStack": {"durationHours": 2}, "cronMinutes": 5})
    seen = set()
    for role in run.of_type("aws:iam/role:Role"):
        statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        service = statement["Principal"]["Service"]
        seen.add(service)
        has_condition = "Condition" in statement
        assert has_condition is (service in SOURCE_ACCOUNT_IN_TRUST), (role.name, service)
    assert {"ec2.amazonaws.com", "lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"} <= seen


def test_a_restore_creates_new_cluster_resources_with_the_configured_engine():
    """Not a replacement: a replaced cluster would keep the ignored engineVersion from state."""
    snapshot = "redcap-prod-a1b2c3d4-final"
    run = run_program("prod", {"db": {"dbSnapshotId": snapshot, "dbReaders": 1,
                                      "engineVersion": "8.0.mysql_aurora.3.10.3"}})
    import hashlib
    suffix = "-from-" + hashlib.sha1(snapshot.encode()).hexdigest()[:8]
    cluster = run.one(CLUSTER)
    assert cluster.name == f"redcap-cluster{suffix}"
    assert cluster.inputs["engineVersion"] == "8.0.mysql_aurora.3.10.3"
    assert sorted(i.name for i in run.of_type(INSTANCE)) == [f"redcap-reader-1{suffix}", f"redcap-writer{suffix}"]
    # Without a snapshot the names stay as they are (no change for existing stacks).
    assert run_program("prod").one(CLUSTER).name == "redcap-cluster"


def test_retain_keeps_the_network_the_kept_cluster_uses():
    from components.network import keep_database_subnets

    retained = run_program("prod", {"removalPolicy": "retain"})
    assert retained.one("awsx:ec2:Vpc").transforms == 1
    assert retained.named("redcap-database", "aws:ec2/securityGroup:SecurityGroup").retain_on_delete is True
    for removal in ("snapshot", "destroy"):
        run = run_program("prod", {"removalPolicy": removal})
        assert run.one("awsx:ec2:Vpc").transforms == 0
        assert run.named("redcap-database", "aws:ec2/securityGroup:SecurityGroup").retain_on_delete is False

    # The mock monitor does not run transforms, so call it as the engine would for awsx's children.
    def transformed(type_: str, name: str):
        import pulumi
        args = pulumi.ResourceTransformArgs(custom=True, type_=type_, name=name, props={"k": "v"},
                                            opts=pulumi.ResourceOptions(protect=False))
        return keep_database_subnets(args)

    for type_, name in (("aws:ec2/vpc:Vpc", "redcap-vpc"), ("aws:ec2/subnet:Subnet", "redcap-vpc-isolated-1")):
        result = transformed(type_, name)
        assert result.opts.retain_on_delete is True and result.props == {"k": "v"} and result.opts.protect is False
    for type_, name in (("aws:ec2/subnet:Subnet", "redcap-vpc-private-1"), ("aws:ec2/natGateway:NatGateway", "n")):
        assert transformed(type_, name) is None
