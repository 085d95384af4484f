"""Wiring only: stage settings -> components -> exports. No resource logic here."""
import pulumi

import settings as stage
from components.context import AwsContext
from components.database import Database, DatabaseArgs
from components.network import Network, NetworkArgs
from components.storage import Storage, StorageArgs

config, secrets = stage.from_pulumi()
context = AwsContext.lookup(region=config.region, stack=config.stack)

storage = Storage("redcap", StorageArgs(
    context=context,
    keep_on_destroy=config.keep_data_on_destroy,
    protect=config.protect_data,
    versioning=config.app_bucket_versioning,
    alb_access_logs=config.uses_ecs,
))

network = Network("redcap", NetworkArgs(
    context=context,
    nat_gateways=config.nat_gateways,
    flow_log_retention_days=config.log_retention(60),
    kms_key_arn=storage.kms_key_arn,
))

database = Database("redcap", DatabaseArgs(
    context=context,
    engine_version=config.db.engine_version,
    readers=config.db.db_readers,
    snapshot_id=config.db.db_snapshot_id,
    max_allowed_packet=config.db.max_allowed_packet,
    maintenance_window=config.db.preferred_maintenance_window,
    min_acu=config.db.scaling.min_capacity_acu,
    max_acu=config.db.scaling.max_capacity_acu,
    backtrack_hours=config.db.backtrack_hours,
    backup_retention_days=config.db.backup_retention_days,
    log_retention_days=config.log_retention(365),
    removal_policy=config.removal_policy,
    protect=config.protect_data,
    kms_key_arn=storage.kms_key_arn,
    subnet_ids=network.isolated_subnet_ids,
    security_group_id=network.database_security_group_id,
))

pulumi.export("vpcId", network.vpc_id)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("isolatedSubnetIds", network.isolated_subnet_ids)
pulumi.export("dbClusterIdentifier", database.cluster_identifier)
pulumi.export("dbEndpoint", database.endpoint)
pulumi.export("dbReaderEndpoint", database.reader_endpoint)
pulumi.export("dbMasterSecretArn", database.master_secret_arn)
if database.final_snapshot_identifier is not None:
    pulumi.export("dbFinalSnapshotIdentifier", database.final_snapshot_identifier)
pulumi.export("appBucketName", storage.app_bucket_name)
pulumi.export("logBucketName", storage.log_bucket_name)
pulumi.export("kmsKeyArn", storage.kms_key_arn)
