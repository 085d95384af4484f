"""The hardening every bucket of the stack gets, in one place: private (public access blocked,
ACLs off), encrypted by default, TLS-only, access-logged. Child names are `<bucket name>-<part>`.

`retain_on_delete` must match the bucket's own: each setting is a resource of its own, and
`pulumi destroy` would otherwise delete it from a bucket that is kept (leaving kept patient files
without their public access block, TLS-only policy or default encryption)."""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from components import policies


def settings_options(parent: pulumi.Resource, retain_on_delete: bool = False) -> pulumi.ResourceOptions:
    """Options of a bucket's settings resources: kept exactly when the bucket is kept."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=retain_on_delete)


def private_bucket(name: str, *, force_destroy: bool, parent: pulumi.Resource,
                   opts: Optional[pulumi.ResourceOptions] = None, retain_on_delete: bool = False) -> aws.s3.Bucket:
    """A bucket no one outside the account can read: public access blocked, ACLs disabled."""
    return private_bucket_with_settings(name, force_destroy=force_destroy, parent=parent, opts=opts,
                                        retain_on_delete=retain_on_delete)[0]


def private_bucket_with_settings(name: str, *, force_destroy: bool, parent: pulumi.Resource,
                                 opts: Optional[pulumi.ResourceOptions] = None,
                                 retain_on_delete: bool = False) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
    """private_bucket, and its settings resources (for a log bucket whose deliveries must wait
    for them: AWS checks ownership and policy when a delivery is configured)."""
    bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=opts or pulumi.ResourceOptions(parent=parent))
    child = settings_options(parent, retain_on_delete)
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=child)
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child)
    return bucket, [public_access, ownership]


def encrypt_with_key(name: str, bucket: aws.s3.Bucket, kms_key_arn: pulumi.Input[str],
                     parent: pulumi.Resource, retain_on_delete: bool = False) -> None:
    """SSE-KMS with the stack key; the bucket key keeps KMS calls (and cost) down."""
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id,
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn),
            bucket_key_enabled=True)],
        opts=settings_options(parent, retain_on_delete))


def tls_only(name: str, bucket: aws.s3.Bucket, parent: pulumi.Resource, retain_on_delete: bool = False) -> None:
    aws.s3.BucketPolicy(
        f"{name}-policy", bucket=bucket.id,
        policy=bucket.arn.apply(lambda arn: policies.document([policies.deny_insecure_transport(arn)])),
        opts=settings_options(parent, retain_on_delete))


def log_access(name: str, bucket: aws.s3.Bucket, log_bucket: pulumi.Input[str], prefix: str,
               parent: pulumi.Resource, retain_on_delete: bool = False) -> None:
    """Server access logs to the stack's log bucket, under `s3-access/<prefix>/`."""
    aws.s3.BucketLogging(
        f"{name}-logging", bucket=bucket.id, target_bucket=log_bucket, target_prefix=f"s3-access/{prefix}/",
        opts=settings_options(parent, retain_on_delete))
