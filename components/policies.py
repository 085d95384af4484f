"""Pure builders of IAM, key and bucket policy documents (JSON strings with sorted keys).

Sorted keys and fixed statement order keep the documents byte-identical across runs, so a
`pulumi preview` after an unchanged config shows no diff.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence


def document(statements: Iterable[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def allow(actions: Sequence[str], resources: Sequence[str], sid: str | None = None,
          **extra: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
    if sid:
        statement["Sid"] = sid
    statement.update(extra)
    return statement


# Services whose documentation shows `aws:SourceAccount` in the trust policy of their service
# role. A condition on a key the service does not send evaluates to false and makes the role
# unusable, and AWS publishes no complete list, so the condition goes only where it is documented
# (not for ec2, lambda and App Runner, whose roles are only usable by this account's resources).
SOURCE_ACCOUNT_IN_TRUST = frozenset({
    "vpc-flow-logs.amazonaws.com", "codebuild.amazonaws.com", "ecs-tasks.amazonaws.com",
    "events.amazonaws.com", "scheduler.amazonaws.com",
    # RDS User Guide, Enhanced Monitoring: "Protecting against the confused deputy problem".
    "monitoring.rds.amazonaws.com",
})


def assume_role_policy(service: str, account_id: str | None = None) -> str:
    """Trust policy for an AWS service; where the service documents it, only on behalf of this
    account (guards against the confused-deputy problem)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account_id and service in SOURCE_ACCOUNT_IN_TRUST:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
    return document([statement])


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def service_topic_policy(topic_arn: str, sid: str, service: str, condition: dict[str, Any]) -> str:
    """An SNS topic that one AWS service may publish to, under `condition` (which names our
    account and the publishing resource), and only over TLS."""
    return document([
        {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": condition,
        },
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ])


# What an account that receives copies of our recovery points needs on the key that encrypts
# them (AWS Backup cross-account copy; AWS re:Post "Resolve cross-account copy error ... access
# the given key ID").
CROSS_ACCOUNT_COPY_ACTIONS = (
    "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext", "kms:GenerateDataKeyWithoutPlaintext", "kms:ListGrants",
    "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RevokeGrant",
)


def cross_account_copy_statement(partition: str, accounts: Sequence[str]) -> dict[str, Any]:
    """Lets the (root of the) destination accounts of backup copies use the key; their IAM decides
    further, as ours does here."""
    return {
        "Sid": "BackupCopiesToOtherAccounts",
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in sorted(set(accounts))]},
        "Action": sorted(CROSS_ACCOUNT_COPY_ACTIONS),
        "Resource": "*",  # In a key policy, "*" means this key only.
    }


def stack_key_policy(partition: str, account_id: str, region: str,
                     backup_copy_accounts: Sequence[str] = ()) -> str:
    """Key policy of the stack's KMS key.

    IAM in this account decides who uses the key (the account-root statement, as AWS's default
    key policy). AWS services that encrypt on our behalf without an IAM role of ours get
    narrow statements: CloudWatch Logs (log groups of this account and region only), the
    services that publish to our encrypted SNS topics (SES and CloudWatch alarms for this
    account; EventBridge, whose requests carry no source account).
    The database's recovery points stay encrypted with this key (AWS Backup does not re-encrypt
    Aurora backups), so accounts that receive copies of them must be allowed to use it.
    """
    root = f"arn:{partition}:iam::{account_id}:root"
    others = [a for a in backup_copy_accounts if a != account_id]
    return document([
        {
            "Sid": "AccountAdministersKeyThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",  # AWS's default key policy: delegates every decision to IAM.
            "Resource": "*",  # In a key policy, "*" means this key only.
        },
        {
            "Sid": "CloudWatchLogsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": sorted(["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*",
                              "kms:ReEncrypt*"]),
            "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:*"}},
        },
        {
            "Sid": "PublishersToEncryptedTopics",
            "Effect": "Allow",
            "Principal": {"Service": "ses.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
        {
            # No aws:SourceAccount/SourceArn here: EventBridge's requests to KMS for an encrypted
            # target topic carry neither (AWS documents them as unsupported for this delivery), so
            # such a condition would drop every notification silently. Who may publish is decided
            # by each topic's policy, which admits only this stack's rules (aws:SourceArn).
            "Sid": "EventBridgeToEncryptedTopics",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
        },
        {
            "Sid": "CloudWatchAlarmsToEncryptedTopics",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    ] + ([cross_account_copy_statement(partition, others)] if others else []))
