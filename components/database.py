"""Database: Aurora Serverless v2 (MySQL 8.0 compatible) in the isolated subnets.

Encrypted with the stack key, IAM database authentication on, TLS required, backtrack and 30
days of backups, every log exported to an encrypted log group with retention. The master
password is managed by RDS in Secrets Manager (rotated by RDS, never in Pulumi state).

`pulumi destroy` behaviour comes from `removal_policy`:
- destroy: no final snapshot, automated backups deleted;
- snapshot: a final snapshot named `<cluster>-final` (unique per cluster: the cluster name
  carries a random suffix kept in state), automated backups kept;
- retain: the cluster itself stays (dropped from state only).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.context import AwsContext

DATABASE_NAME = "redcap"
MASTER_USERNAME = "dbadmin"
APP_DB_USER = "redcap_user"
LOG_EXPORTS = ("audit", "error", "general", "slowquery")
CA_CERTIFICATE = "rds-ca-rsa2048-g1"
AUTO_PAUSE_SECONDS = 300


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


class Database(pulumi.ComponentResource):
    cluster_identifier: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    cluster_resource_id: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    master_secret_arn: pulumi.Output[str]
    final_snapshot_identifier: Optional[pulumi.Output[str]]
    database_name: str = DATABASE_NAME
    app_user: str = APP_DB_USER

    def __init__(self, name: str, args: DatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:database:Database", name, None, opts)
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)

        # A suffix kept in state: the cluster name (and so the final snapshot name) is unique per
        # cluster and stable across runs. A new snapshot to restore from makes a new cluster,
        # hence a new suffix, so create-before-delete never collides with the old name.
        suffix = random.RandomId(
            f"{name}-suffix", byte_length=4,
            keepers={"restoreFrom": args.snapshot_id or ""}, opts=child)
        identifier = suffix.hex.apply(lambda h: cluster_identifier(ctx.stack, h))

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

        keep = args.removal_policy != "destroy"
        # RDS would create these groups itself, unencrypted and kept forever; creating them first
        # gives them the stack key and a retention.
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-log-{kind}",
                name=identifier.apply(lambda i, k=kind: f"/aws/rds/cluster/{i}/{k}"),
                retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep))
            for kind in LOG_EXPORTS
        ]

        restoring = args.snapshot_id is not None
        cluster = aws.rds.Cluster(
            f"{name}-cluster{restore_suffix(args.snapshot_id)}",
            cluster_identifier=identifier,
            engine="aurora-mysql",
            engine_mode="provisioned",
            engine_version=args.engine_version,
            # Taken from the snapshot when restoring (RDS rejects changing them).
            database_name=None if restoring else DATABASE_NAME,
            master_username=None if restoring else MASTER_USERNAME,
            snapshot_identifier=args.snapshot_id,
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
            deletion_protection=args.protect,
            skip_final_snapshot=args.removal_policy == "destroy",
            final_snapshot_identifier=identifier.apply(final_snapshot_name) if keep else None,
            delete_automated_backups=not keep,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=log_groups, protect=args.protect,
                retain_on_delete=args.removal_policy == "retain",
                # AWS applies minor version upgrades itself; the config names the minimum.
                ignore_changes=["engineVersion"]),
        )

        for index in range(args.readers + 1):
            aws.rds.ClusterInstance(
                f"{name}-{'writer' if index == 0 else f'reader-{index}'}{restore_suffix(args.snapshot_id)}",
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
                performance_insights_retention_period=7,
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect,
                                            retain_on_delete=args.removal_policy == "retain",
                                            ignore_changes=["engineVersion"]),
            )

        self.cluster_identifier = cluster.cluster_identifier
        self.cluster_arn = cluster.arn
        self.cluster_resource_id = cluster.cluster_resource_id
        self.endpoint = cluster.endpoint
        self.reader_endpoint = cluster.reader_endpoint
        self.port = cluster.port
        self.master_secret_arn = cluster.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None)
        self.final_snapshot_identifier = cluster.final_snapshot_identifier if keep else None
        self.app_user_arn = pulumi.Output.all(ctx.partition, ctx.account_id, cluster.cluster_resource_id).apply(
            lambda a: db_connect_arn(a[0], ctx.region, a[1], a[2], APP_DB_USER))
        self.register_outputs({
            "clusterArn": self.cluster_arn,
            "endpoint": self.endpoint,
            "readerEndpoint": self.reader_endpoint,
            "masterSecretArn": self.master_secret_arn,
            "appUserArn": self.app_user_arn,
        })


def cluster_identifier(stack: str, suffix_hex: str) -> str:
    """`redcap-<stack>-<8 hex>`: at most 63 characters, letters, digits and single hyphens
    (RDS rejects consecutive hyphens and a trailing one)."""
    base = re.sub(r"-+", "-", "".join(c if c.isalnum() else "-" for c in f"redcap-{stack}".lower()))
    return f"{base[:54].strip('-')}-{suffix_hex}"


def restore_suffix(snapshot_id: Optional[str]) -> str:
    """Logical-name suffix of a cluster restored from a snapshot (as the original did).

    Restoring makes new resources rather than replacing the old ones: a replacement would keep the
    ignored `engineVersion` from state, and a snapshot newer than that version cannot be restored
    (the original's #99). Stable: the same snapshot id gives the same suffix on every run.
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


def db_connect_arn(partition: str, region: str, account_id: str, resource_id: str, user: str) -> str:
    """The resource of `rds-db:connect` for one database user of one cluster."""
    return f"arn:{partition}:rds-db:{region}:{account_id}:dbuser:{resource_id}/{user}"
