"""Storage: the stack's KMS key, the REDCap file bucket, its access-log bucket, REDCap's S3
user and the (empty) secret for its rotated key, and the salt secret.

The salt is generated once, or carried over from an earlier stage (`salt`); it is written when
its secret is created and never changed afterwards.

What `pulumi destroy` leaves depends on `keep_on_destroy`: with it, the key, both buckets and
the salt secret are dropped from state but kept in AWS (`retain_on_delete`), so a final database
snapshot (encrypted with the key, and useless without the salt REDCap hashed its data with)
stays restorable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components import buckets, policies
from components.context import AwsContext
from components.secrets import encrypted_secret, rotated_key_user
from settings import regions

# Lifecycle of the REDCap file bucket and its logs (as the original): files REDCap keeps for
# years but rarely reads move to cheaper classes; nothing expires.
TRANSITIONS = ((90, "STANDARD_IA"), (180, "INTELLIGENT_TIERING"))
# The access logs are the audit trail of who read which file: the log bucket is versioned, so a
# deleted or overwritten log stays recoverable (and the deletion visible) this long.
LOG_NONCURRENT_DAYS = 365
SALT_GENERATION_ARGS = ["length", "special", "upper", "lower", "numeric", "minLower", "minUpper",
                        "minNumeric", "minSpecial", "overrideSpecial"]


@dataclass(frozen=True)
class StorageArgs:
    context: AwsContext
    keep_on_destroy: bool
    protect: bool
    versioning: bool
    alb_access_logs: bool = False
    # The salt of an earlier stage (restore into a new stack, migration); None: generated.
    salt: Optional[pulumi.Input[str]] = None
    # EventBridge API destinations (cron) keep their connection secret under the stack key.
    key_for_api_destinations: bool = False
    # Accounts that receive copies of the backups: the key encrypting the database's recovery
    # points must let them use it.
    backup_copy_accounts: tuple[str, ...] = ()


class Storage(pulumi.ComponentResource):
    kms_key_arn: pulumi.Output[str]
    kms_key_id: pulumi.Output[str]
    app_bucket_name: pulumi.Output[str]
    app_bucket_arn: pulumi.Output[str]
    log_bucket_name: pulumi.Output[str]
    log_bucket_arn: pulumi.Output[str]
    s3_credentials_secret_arn: pulumi.Output[str]
    s3_user_name: pulumi.Output[str]
    s3_user_arn: pulumi.Output[str]
    salt_secret_arn: pulumi.Output[str]
    admin_password_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:storage:Storage", name, None, opts)
        ctx = args.context
        # Data that must survive `pulumi destroy` when the stage keeps its data.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=args.keep_on_destroy,
                                      protect=args.protect)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"REDCap {ctx.stack}: buckets, database, secrets and logs",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(ctx.partition, ctx.account_id).apply(
                lambda a: policies.stack_key_policy(a[0], a[1], ctx.region, args.backup_copy_accounts)),
            # EventBridge's API-destinations service-linked role may use only keys with this tag.
            tags={"EventBridgeApiDestinations": "true"} if args.key_for_api_destinations else None,
            opts=keep,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/redcap-{ctx.stack}", target_key_id=key.key_id,
                      opts=child)

        log_bucket, log_bucket_ready = self._log_bucket(name, args, keep)
        app_bucket = self._app_bucket(name, args, key, log_bucket_ready, keep)
        s3_secret = self._s3_credentials(name, key, app_bucket, child)
        salt_secret = self._salt(name, key, args)
        admin_secret = self._initial_admin_password(name, key, child)

        self.kms_key_arn = key.arn
        self.kms_key_id = key.key_id
        self.app_bucket_name = app_bucket.bucket
        self.app_bucket_arn = app_bucket.arn
        # Resolves after the bucket's policy, ownership and encryption: use it for every delivery.
        self.log_bucket_name = log_bucket_ready
        self.log_bucket_arn = log_bucket.arn
        self.s3_credentials_secret_arn = s3_secret.arn
        self.salt_secret_arn = salt_secret.arn
        self.admin_password_secret_arn = admin_secret.arn
        self.register_outputs({
            "kmsKeyArn": self.kms_key_arn,
            "appBucketName": self.app_bucket_name,
            "logBucketName": self.log_bucket_name,
            "s3CredentialsSecretArn": self.s3_credentials_secret_arn,
            "saltSecretArn": self.salt_secret_arn,
            "adminPasswordSecretArn": self.admin_password_secret_arn,
        })

    # -- buckets ----------------------------------------------------------------------------

    def _private_bucket(self, name: str, args: StorageArgs, keep: pulumi.ResourceOptions) -> aws.s3.Bucket:
        return self._private_bucket_with_settings(name, args, keep)[0]

    def _private_bucket_with_settings(self, name: str, args: StorageArgs, keep: pulumi.ResourceOptions,
                                      noncurrent_days: Optional[int] = None
                                      ) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
        """With `noncurrent_days` the bucket is always versioned and an overwritten or deleted
        object's earlier version is kept that long (delete markers left alone are cleaned up)."""
        bucket, settings = buckets.private_bucket_with_settings(
            name, force_destroy=not args.keep_on_destroy, parent=self, opts=keep,
            retain_on_delete=args.keep_on_destroy)
        versioning: list[pulumi.Resource] = []
        if noncurrent_days is not None:
            versioning.append(aws.s3.BucketVersioning(
                f"{name}-versioning", bucket=bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=buckets.settings_options(self, args.keep_on_destroy)))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="tiering", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                transitions=[aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(days=d, storage_class=c)
                             for d, c in TRANSITIONS],
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=7),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=noncurrent_days) if noncurrent_days is not None else None,
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True)
                if noncurrent_days is not None else None,
            )],
            # Versioning first: S3 then applies the noncurrent-version rule to a versioned bucket.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.keep_on_destroy, depends_on=versioning))
        return bucket, settings + versioning

    def _log_bucket(self, name: str, args: StorageArgs,
                    keep: pulumi.ResourceOptions) -> tuple[aws.s3.Bucket, pulumi.Output[str]]:
        """The access-log bucket and its name as an Output that resolves only once the bucket
        accepts deliveries (policy, ownership, encryption in place): AWS checks them when an ALB
        or a bucket's server access logging is pointed at it, so consumers that take the name
        from this Output are created after them."""
        ctx = args.context
        bucket, settings = self._private_bucket_with_settings(f"{name}-logs", args, keep,
                                                              noncurrent_days=LOG_NONCURRENT_DAYS)
        # Kept with the bucket (components/buckets.py says why).
        child = buckets.settings_options(self, args.keep_on_destroy)
        # S3 server access logs and ALB access logs can only be delivered to a bucket encrypted
        # with S3-managed keys (AWS rejects SSE-KMS targets), so this bucket uses SSE-S3.
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-logs-encryption", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"))],
            opts=child)
        facts = regions.require(ctx.region)
        policy = pulumi.Output.all(bucket.arn, ctx.account_id, ctx.partition).apply(
            lambda a: log_bucket_policy(a[0], a[1], a[2],
                                        facts.elb_log_principal(a[2]) if args.alb_access_logs else None))
        bucket_policy = aws.s3.BucketPolicy(f"{name}-logs-policy", bucket=bucket.id, policy=policy, opts=child)
        ready = pulumi.Output.all(bucket.bucket, *[r.id for r in (*settings, encryption, bucket_policy)]).apply(
            lambda a: a[0])
        return bucket, ready

    def _app_bucket(self, name: str, args: StorageArgs, key: aws.kms.Key, log_bucket_name: pulumi.Output[str],
                    keep: pulumi.ResourceOptions) -> aws.s3.Bucket:
        bucket = self._private_bucket(f"{name}-files", args, keep)
        kept = args.keep_on_destroy
        buckets.encrypt_with_key(f"{name}-files", bucket, key.arn, self, retain_on_delete=kept)
        buckets.tls_only(f"{name}-files", bucket, self, retain_on_delete=kept)
        buckets.log_access(f"{name}-files", bucket, log_bucket_name, "files", self, retain_on_delete=kept)
        # A stage that keeps its data always manages versioning with an explicit status, kept on
        # destroy: turning appBucketVersioning off is an update to Suspended (earlier versions
        # stay), and a destroy never suspends versioning of the bucket it leaves behind.
        if args.versioning or kept:
            aws.s3.BucketVersioning(
                f"{name}-files-versioning", bucket=bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                    status="Enabled" if args.versioning else "Suspended"),
                opts=buckets.settings_options(self, kept))
        return bucket

    # -- secrets ----------------------------------------------------------------------------

    def _s3_credentials(self, name: str, key: aws.kms.Key, bucket: aws.s3.Bucket,
                        child: pulumi.ResourceOptions) -> aws.secretsmanager.Secret:
        """REDCap's S3 integration takes an access key pair (it cannot use an instance role); the
        key is made and rotated by components/rotation.py, never by Pulumi."""
        user, secret = rotated_key_user(
            user=f"{name}-s3-user", policy=f"{name}-s3-user-policy", secret=f"{name}-s3-credentials",
            user_policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: redcap_s3_user_policy(a[0], a[1])),
            kms_key_arn=key.arn, description="REDCap S3 file storage: IAM access key pair (AccessKeyId, SecretAccessKey)",
            opts=child)
        self.s3_user_name = user.name
        self.s3_user_arn = user.arn
        return secret

    def _salt(self, name: str, key: aws.kms.Key, args: StorageArgs) -> aws.secretsmanager.Secret:
        """REDCap hashes with this salt: a restored database needs the same one."""
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=args.keep_on_destroy, protect=args.protect)
        # The salt must never change once REDCap has hashed with it: ignore the generation
        # parameters, so a salt generated once stays as it is.
        value = random.RandomPassword(
            f"{name}-salt-value", length=64, special=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, ignore_changes=SALT_GENERATION_ARGS))
        # Written once, when the secret is created: a salt given later (redcap:dbSalt) cannot
        # re-hash a database that already uses this one.
        return encrypted_secret(
            f"{name}-salt", kms_key_arn=key.arn,
            description="REDCap database salt (REDCap uses sha256 of this value); keep it with every snapshot",
            value=args.salt if args.salt is not None else value.result, opts=keep, write_once=True)

    def _initial_admin_password(self, name: str, key: aws.kms.Key,
                                child: pulumi.ResourceOptions) -> aws.secretsmanager.Secret:
        """REDCap's site_admin password on a new database: generated, never a known default, and
        temporary (REDCap asks for a new one at first login; container/README.md)."""
        value = random.RandomPassword(
            f"{name}-admin-password-value", length=24, special=False, min_upper=2, min_lower=2,
            min_numeric=2, opts=child)
        return encrypted_secret(
            f"{name}-admin-password", kms_key_arn=key.arn,
            description="REDCap site_admin initial (temporary) password, used once on a new database",
            value=value.result, opts=child)


def redcap_s3_user_policy(bucket_arn: str, key_arn: str) -> str:
    return policies.document([
        policies.allow(["s3:GetBucketLocation", "s3:ListBucket"], [bucket_arn], sid="ListFiles"),
        policies.allow(["s3:DeleteObject", "s3:GetObject", "s3:PutObject"], [f"{bucket_arn}/*"],
                       sid="ReadWriteFiles"),
        policies.allow(["kms:Decrypt", "kms:GenerateDataKey"], [key_arn], sid="UseBucketKey"),
    ])


def log_bucket_policy(bucket_arn: str, account_id: str, partition: str,
                      alb_log_principal: Optional[dict[str, str]]) -> str:
    statements = [
        policies.deny_insecure_transport(bucket_arn),
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/s3-access/*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    ]
    if alb_log_principal:
        # The region's writer of ALB logs (settings/regions.py): its regional ELB account in
        # regions opened before August 2022, the log-delivery service principal in newer ones;
        # only under the alb/ prefix of this account.
        sid = "AlbAccessLogsRegionalAccount" if "AWS" in alb_log_principal else "AlbAccessLogsDeliveryService"
        statements.append({"Sid": sid, "Effect": "Allow", "Principal": alb_log_principal, "Action": "s3:PutObject",
                           "Resource": f"{bucket_arn}/alb/AWSLogs/{account_id}/*"})
    return policies.document(statements)
