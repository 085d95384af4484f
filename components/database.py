"""Database: Aurora Serverless v2 (MySQL 8.0 compatible) in the isolated subnets.

Encrypted with the stack key, IAM database authentication on, TLS required, backtrack and 30
days of backups, every log exported to an encrypted log group with retention. The master
password is managed by RDS in Secrets Manager (rotated by RDS, never in Pulumi state).

Clusters. The serving cluster is the stage's first one, or the one restored from
`db.dbSnapshotId`. A restore in place keeps the cluster it replaces (`previous`) in the program,
protected and running, until the operator lowers its protection and removes it (docs/restore.md):
Pulumi takes a removed resource's `protect` from the state, so a protected cluster can only leave
after an update that lowered it while it was still declared. Both clusters exist side by side, so
every per-cluster resource's logical name carries the snapshot it came from (`-from-<hash>`).

Names. A cluster is called `redcap-<stack>-<8 hex>`; the hex is a RandomId kept in state whose
keepers name the snapshot and, from the first time they differ from the values the cluster was
created with, every other input that makes RDS replace the cluster (KMS key, subnet group,
storage encryption, engine ...). A replacement therefore gets a new name instead of colliding
with the cluster it replaces, and the final snapshot `<identifier>-final` is unique per cluster.

Engine. AWS applies minor upgrades itself, so `engineVersion` is ignored after creation (no
drift). `engine_upgrade_to` makes one update a real engine upgrade (docs/upgrade.md).

Monitoring. Every instance has the same Performance Insights settings (encrypted with the stack
key) and, with `monitoring_interval` above 0, Enhanced Monitoring through a role RDS assumes
(AWS's AmazonRDSEnhancedMonitoringRole: writes to the RDSOSMetrics log group only); CloudWatch
Database Insights is a setting of the cluster and needs every instance configured alike.

Restores. The provider's RestoreDBClusterFromSnapshot call does not pass
EnableIAMDatabaseAuthentication, so a restored cluster starts with IAM authentication off. A
function (functions/rds_iam_auth.py) switches it on and waits until RDS reports it; the
endpoints the runtimes read wait for that function, so the containers reach a restored cluster
only once their IAM tokens work.

`pulumi destroy` behaviour comes from `removal_policy`:
- destroy: no final snapshot, automated backups deleted;
- snapshot: a final snapshot `<cluster>-final`, automated backups kept;
- retain: the cluster itself stays (dropped from state only).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import policies
from components.context import AwsContext
from components.lambdas import FunctionSpec, logged_function, write_logs

DATABASE_NAME = "redcap"
MASTER_USERNAME = "dbadmin"
APP_DB_USER = "redcap_user"
LOG_EXPORTS = ("audit", "error", "general", "slowquery")
CA_CERTIFICATE = "rds-ca-rsa2048-g1"
AUTO_PAUSE_SECONDS = 300
ENGINE = "aurora-mysql"
ENGINE_MODE = "provisioned"
# AWS's policy for the Enhanced Monitoring role, as the RDS User Guide prescribes.
ENHANCED_MONITORING_POLICY_SUFFIX = "service-role/AmazonRDSEnhancedMonitoringRole"


@dataclass(frozen=True)
class PreviousClusterArgs:
    """The cluster a restore in place replaces (None: the stage's first cluster)."""

    snapshot_id: Optional[str]
    protect: bool


@dataclass(frozen=True)
class DatabaseArgs:
    context: AwsContext
    engine_version: str
    readers: int
    snapshot_id: Optional[str]
    max_allowed_packet: int
    maintenance_window: Optional[str]
    min_acu: float
    max_acu: float
    backtrack_hours: float
    backup_retention_days: int
    log_retention_days: int
    removal_policy: Literal["destroy", "snapshot", "retain"]
    protect: bool
    kms_key_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    engine_upgrade_to: Optional[str] = None
    previous: Optional[PreviousClusterArgs] = None
    # Seconds between Enhanced Monitoring samples (0 = off), Performance Insights retention and
    # the cluster's Database Insights mode.
    monitoring_interval: int = 0
    performance_insights_retention_days: int = 7
    database_insights_mode: Literal["standard", "advanced"] = "standard"


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster of the program: where it came from and how it is protected."""

    snapshot_id: Optional[str]
    protect: bool
    serving: bool
    # The oldest cluster of the program keeps the names that stacks restored before two
    # clusters could coexist gave its identifier and log groups (no rename of a live cluster).
    legacy_names: bool


def cluster_specs(snapshot_id: Optional[str], protect: bool,
                  previous: Optional[PreviousClusterArgs]) -> list[ClusterSpec]:
    """The clusters to declare, oldest first."""
    specs = []
    if previous is not None:
        if previous.snapshot_id == snapshot_id:
            raise ValueError("the previous cluster must come from another snapshot than the serving one")
        specs.append(ClusterSpec(previous.snapshot_id, previous.protect, serving=False,
                                 legacy_names=previous.snapshot_id is not None))
    specs.append(ClusterSpec(snapshot_id, protect, serving=True,
                             legacy_names=previous is None and snapshot_id is not None))
    return specs


class Database(pulumi.ComponentResource):
    cluster_identifier: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    cluster_resource_id: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    master_secret_arn: pulumi.Output[str]
    final_snapshot_identifier: Optional[pulumi.Output[str]]
    previous_cluster_identifier: Optional[pulumi.Output[str]]
    database_name: str = DATABASE_NAME
    app_user: str = APP_DB_USER

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:database:Database", name, None, opts)
        ctx = args.context

        # A kept cluster (retain) still uses its subnet group and parameter group, and RDS refuses
        # to delete either while in use: they are kept with it.
        with_cluster = pulumi.ResourceOptions(parent=self, retain_on_delete=args.removal_policy == "retain")
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=args.subnet_ids,
            description="REDCap database: isolated subnets (no route to the internet)", opts=with_cluster)
        parameters = aws.rds.ClusterParameterGroup(
            f"{name}-parameters", family="aurora-mysql8.0",
            description="REDCap: TLS required, packet size, audit log",
            parameters=[aws.rds.ClusterParameterGroupParameterArgs(name=k, value=v, apply_method=m)
                        for k, v, m in cluster_parameters(args.max_allowed_packet)],
            opts=with_cluster)

        monitoring = self._monitoring_role(name, args, with_cluster) if args.monitoring_interval > 0 else None
        clusters = {spec: self._cluster(name, args, spec, subnet_group, parameters, monitoring)
                    for spec in cluster_specs(args.snapshot_id, args.protect, args.previous)}
        restored = {spec: c for spec, c in clusters.items() if spec.snapshot_id is not None}
        confirmed = self._iam_auth(name, args, restored) if restored else {}

        serving_spec = next(spec for spec in clusters if spec.serving)
        cluster = clusters[serving_spec]
        gate = confirmed.get(serving_spec)
        keep = args.removal_policy != "destroy"
        self.cluster_identifier = cluster.cluster_identifier
        self.cluster_arn = cluster.arn
        # Every cluster the stage holds, the one a restore retires included: it has data until removed.
        self.cluster_arns = [c.arn for c in clusters.values()]
        self.cluster_resource_id = cluster.cluster_resource_id
        self.endpoint = after(cluster.endpoint, gate)
        self.reader_endpoint = after(cluster.reader_endpoint, gate)
        self.port = cluster.port
        self.master_secret_arn = cluster.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None)
        self.final_snapshot_identifier = cluster.final_snapshot_identifier if keep else None
        self.previous_cluster_identifier = next(
            (c.cluster_identifier for spec, c in clusters.items() if not spec.serving), None)
        self.app_user_arn = pulumi.Output.all(ctx.partition, ctx.account_id, cluster.cluster_resource_id).apply(
            lambda a: db_connect_arn(a[0], ctx.region, a[1], a[2], APP_DB_USER))
        self.register_outputs({
            "clusterArn": self.cluster_arn,
            "endpoint": self.endpoint,
            "readerEndpoint": self.reader_endpoint,
            "masterSecretArn": self.master_secret_arn,
            "appUserArn": self.app_user_arn,
        })

    def _monitoring_role(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions
                         ) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
        """The role RDS assumes to write Enhanced Monitoring metrics, and its policy attachment
        (RDS checks the role's permissions when an instance starts using it)."""
        ctx = args.context
        role = aws.iam.Role(
            f"{name}-monitoring-role",
            assume_role_policy=ctx.account_id.apply(
                lambda a: policies.assume_role_policy("monitoring.rds.amazonaws.com", a)),
            description="RDS Enhanced Monitoring of the REDCap cluster's instances", opts=opts)
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring", role=role.name,
            policy_arn=ctx.partition.apply(lambda p: f"arn:{p}:iam::aws:policy/{ENHANCED_MONITORING_POLICY_SUFFIX}"),
            opts=opts)
        return role, attachment

    def _cluster(self, name: str, args: DatabaseArgs, spec: ClusterSpec, subnet_group: aws.rds.SubnetGroup,
                 parameters: aws.rds.ClusterParameterGroup,
                 monitoring: Optional[tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]]) -> aws.rds.Cluster:
        ctx = args.context
        tail = restore_suffix(spec.snapshot_id)
        restoring = spec.snapshot_id is not None
        keep = args.removal_policy != "destroy"
        retain = args.removal_policy == "retain"

        # What RDS replaces the cluster for, recorded once (ignore_changes keeps the first values)
        # so the identifier's keepers can tell a later change from the original inputs.
        identity = pulumi.Output.all(args.kms_key_arn, subnet_group.name).apply(
            lambda a: replacing_inputs(kms_key_id=a[0], subnet_group_name=a[1], restored=restoring))
        recorded = random.RandomId(
            f"{name}-identity{tail}", byte_length=1, keepers=identity,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["keepers"]))
        suffix = random.RandomId(
            f"{name}-suffix{tail}", byte_length=4,
            keepers=pulumi.Output.all(recorded.keepers, identity).apply(
                lambda a: identifier_keepers(spec.snapshot_id, a[0], a[1])),
            opts=pulumi.ResourceOptions(parent=self, aliases=legacy_aliases(f"{name}-suffix", spec)))
        identifier = suffix.hex.apply(lambda h: cluster_identifier(ctx.stack, h))

        # RDS would create these groups itself, unencrypted and kept forever; creating them first
        # gives them the stack key and a retention.
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-log-{kind}{tail}",
                name=identifier.apply(lambda i, k=kind: f"/aws/rds/cluster/{i}/{k}"),
                retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep,
                                            aliases=legacy_aliases(f"{name}-log-{kind}", spec)))
            for kind in LOG_EXPORTS
        ]

        upgrading = spec.serving and args.engine_upgrade_to is not None
        cluster = aws.rds.Cluster(
            f"{name}-cluster{tail}",
            cluster_identifier=identifier,
            engine=ENGINE,
            engine_mode=ENGINE_MODE,
            engine_version=args.engine_upgrade_to if upgrading else args.engine_version,
            # An engine upgrade is applied now, not in the next maintenance window.
            apply_immediately=True if upgrading else None,
            # Taken from the snapshot when restoring (RDS rejects changing them).
            database_name=None if restoring else DATABASE_NAME,
            master_username=None if restoring else MASTER_USERNAME,
            snapshot_identifier=spec.snapshot_id,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[args.security_group_id],
            db_cluster_parameter_group_name=parameters.name,
            backtrack_window=backtrack_seconds(args.backtrack_hours),
            backup_retention_period=args.backup_retention_days,
            preferred_maintenance_window=args.maintenance_window,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            serverlessv2_scaling_configuration=aws.rds.ClusterServerlessv2ScalingConfigurationArgs(
                min_capacity=args.min_acu, max_capacity=args.max_acu,
                seconds_until_auto_pause=AUTO_PAUSE_SECONDS if args.min_acu == 0 else None),
            copy_tags_to_snapshot=True,
            # Database Insights is the cluster's; it reads the instances' Performance Insights.
            database_insights_mode=args.database_insights_mode,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.kms_key_arn,
            performance_insights_retention_period=args.performance_insights_retention_days,
            deletion_protection=spec.protect,
            skip_final_snapshot=args.removal_policy == "destroy",
            final_snapshot_identifier=identifier.apply(final_snapshot_name) if keep else None,
            delete_automated_backups=not keep,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=log_groups, protect=spec.protect, retain_on_delete=retain,
                # AWS applies minor version upgrades itself: after creation the version is
                # AWS's to move, except in the one update that upgrades it on purpose.
                ignore_changes=[] if upgrading else ["engineVersion"]),
        )

        for index in range(args.readers + 1):
            aws.rds.ClusterInstance(
                f"{name}-{'writer' if index == 0 else f'reader-{index}'}{tail}",
                cluster_identifier=cluster.id,
                instance_class="db.serverless",
                engine=cluster.engine,
                engine_version=cluster.engine_version,
                promotion_tier=0 if index == 0 else 1,
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
                ca_cert_identifier=CA_CERTIFICATE,
                performance_insights_enabled=True,
                performance_insights_kms_key_id=args.kms_key_arn,
                performance_insights_retention_period=args.performance_insights_retention_days,
                monitoring_interval=args.monitoring_interval,
                monitoring_role_arn=monitoring[0].arn if monitoring is not None else None,
                # Instances follow the cluster's engine (an upgrade is a cluster operation).
                opts=pulumi.ResourceOptions(parent=self, protect=spec.protect, retain_on_delete=retain,
                                            ignore_changes=["engineVersion"],
                                            depends_on=[monitoring[1]] if monitoring is not None else None),
            )
        return cluster

    def _iam_auth(self, name: str, args: DatabaseArgs,
                  restored: Mapping[ClusterSpec, aws.rds.Cluster]) -> dict[ClusterSpec, aws.lambda_.Invocation]:
        """Switch IAM database authentication on for each restored cluster, once, and wait for it."""
        child = pulumi.ResourceOptions(parent=self)
        clusters = [restored[spec] for spec in sorted(restored, key=lambda s: restore_suffix(s.snapshot_id))]
        # Switching IAM authentication on takes minutes: Lambda's maximum timeout (the default).
        function = logged_function(f"{name}-iam-auth", args.context, FunctionSpec(
            function_name=f"redcap-{args.context.stack}-db-iam-auth", module="rds_iam_auth",
            description="Switches IAM database authentication on for a REDCap cluster restored from a snapshot",
            policy=lambda group_arn: pulumi.Output.all(group_arn, *[c.arn for c in clusters]).apply(
                lambda a: iam_auth_policy(log_group_arn=a[0], cluster_arns=a[1:])),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days),
            self, function_resource=f"{name}-iam-auth")
        # Once per cluster: a new cluster (new identifier) is a new input, an unchanged one
        # invokes nothing.
        return {
            spec: aws.lambda_.Invocation(
                f"{name}-iam-auth{restore_suffix(spec.snapshot_id)}", function_name=function.name,
                input=cluster.cluster_identifier.apply(lambda i: json.dumps({"clusterIdentifier": i}, sort_keys=True)),
                lifecycle_scope="CREATE_ONLY", opts=child)
            for spec, cluster in restored.items()
        }


def after(value: pulumi.Output[str], gate: Optional[aws.lambda_.Invocation]) -> pulumi.Output[str]:
    """`value`, available only once `gate` has run (a dependency for every consumer)."""
    if gate is None:
        return value
    return pulumi.Output.all(value, gate.result).apply(lambda a: a[0])


def replacing_inputs(*, kms_key_id: str, subnet_group_name: str, restored: bool) -> dict[str, str]:
    """The cluster inputs the provider marks ForceNew (hashicorp/terraform-provider-aws
    internal/service/rds/cluster.go) that this program sets, as the strings RandomId keepers take.
    Snapshot and identifier are left out: the snapshot has its own keeper, the identifier is
    what they name."""
    return {
        "databaseName": "" if restored else DATABASE_NAME,
        "dbSubnetGroupName": subnet_group_name,
        "engine": ENGINE,
        "engineMode": ENGINE_MODE,
        "kmsKeyId": kms_key_id,
        "masterUsername": "" if restored else MASTER_USERNAME,
        "storageEncrypted": "true",
    }


def identifier_keepers(snapshot_id: Optional[str], recorded: Optional[Mapping[str, str]],
                       current: Mapping[str, str]) -> dict[str, str]:
    """Keepers of the identifier's RandomId. `restoreFrom` alone while the replacing inputs are
    those the cluster was created with (so a stack created before they were tracked keeps its
    name); with a digest of them from the first change on, so a replacement gets a new name."""
    keepers = {"restoreFrom": snapshot_id or ""}
    if recorded is not None and dict(recorded) != dict(current):
        canonical = json.dumps(dict(current), sort_keys=True)
        keepers["replacedFor"] = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return keepers


def legacy_aliases(old_name: str, spec: ClusterSpec) -> Optional[list[pulumi.Alias]]:
    """The logical name a restored cluster's resource had when a stack held one cluster only."""
    if not spec.legacy_names or spec.snapshot_id is None:
        return None
    return [pulumi.Alias(name=old_name)]


def cluster_identifier(stack: str, suffix_hex: str) -> str:
    """`redcap-<stack>-<8 hex>`: at most 63 characters, letters, digits and single hyphens
    (RDS rejects consecutive hyphens and a trailing one)."""
    base = re.sub(r"-+", "-", "".join(c if c.isalnum() else "-" for c in f"redcap-{stack}".lower()))
    return f"{base[:54].strip('-')}-{suffix_hex}"


def restore_suffix(snapshot_id: Optional[str]) -> str:
    """Logical-name suffix of a cluster restored from a snapshot (as the original did).

    A restore in place keeps the replaced cluster declared next to the restored one, so their
    resources need distinct names. Stable: the same snapshot id gives the same suffix on every
    run; the stage's first cluster has none (no change for existing stacks).
    """
    if not snapshot_id:
        return ""
    return "-from-" + hashlib.sha1(snapshot_id.encode()).hexdigest()[:8]


def final_snapshot_name(identifier: str) -> str:
    return f"{identifier}-final"


def backtrack_seconds(hours: float) -> int:
    return int(round(hours * 3600))


def cluster_parameters(max_allowed_packet: int) -> list[tuple[str, str, str]]:
    """(name, value, apply method) of the cluster parameter group."""
    return [
        ("max_allowed_packet", str(max_allowed_packet), "immediate"),
        # Every client must use TLS (the IAM auth token travels as a password).
        ("require_secure_transport", "ON", "immediate"),
        # The audit export is empty unless the audit plugin logs something: connections and
        # schema/privilege changes, not queries (which would carry study data).
        ("server_audit_logging", "1", "immediate"),
        ("server_audit_events", "CONNECT,QUERY_DCL,QUERY_DDL", "immediate"),
    ]


def iam_auth_policy(*, log_group_arn: str, cluster_arns: Sequence[str]) -> str:
    return policies.document([
        write_logs(log_group_arn),
        policies.allow(["rds:DescribeDBClusters", "rds:ModifyDBCluster"], sorted(cluster_arns),
                       sid="EnableIamAuthentication"),
    ])


def db_connect_arn(partition: str, region: str, account_id: str, resource_id: str, user: str) -> str:
    """The resource of `rds-db:connect` for one database user of one cluster."""
    return f"arn:{partition}:rds-db:{region}:{account_id}:dbuser:{resource_id}/{user}"
