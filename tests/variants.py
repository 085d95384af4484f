"""The stack variants every cross-cutting test runs: each committed stack file, plus generated
variants that switch on the optional parts. Each is (id, stack file, overrides)."""
from __future__ import annotations

from typing import Any

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
EXTERNAL_ACL = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"
# A vault in a backup account of the same AWS Organization, and one in this account's other region.
BACKUP_ACCOUNT_VAULT = "arn:aws:backup:eu-central-1:210987654321:backup-vault:redcap-dr"
SAME_ACCOUNT_VAULT = "arn:aws:backup:us-west-2:123456789012:backup-vault:redcap-dr"
COMPLIANCE_LOCK = {"mode": "compliance", "minRetentionDays": 7, "maxRetentionDays": 3650, "changeableForDays": 3,
                   "acknowledgeIrreversible": True}

VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("dev", "dev", {}),
    ("prod", "prod", {}),
    ("dev-apprunner-domain", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                     "cronMinutes": 5}),
    ("dev-ecs-zone", "dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True, "ecs": {}}),
    ("prod-existing-zone", "prod", {"domain": "example.org", "subdomain": None, "hostInRoute53": "example.org"}),
    ("prod-child-zone", "prod", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org"}),
    ("prod-no-route53-cert", "prod", {"hostInRoute53": False, "ecs": {"certificateArn": CERT}}),
    ("prod-retain-readers", "prod", {"removalPolicy": "retain", "db": {"dbReaders": 3}}),
    ("prod-restore", "prod", {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final"}}),
    ("dev-tunnel", "dev", {"ec2ServerStack": {"durationHours": 4}}),
    ("dev-password-auth-allowlists", "dev", {"dbAuth": "password", "allowedIps": ["203.0.113.0/24", "2001:db8::/32"],
                                             "allowedCountries": ["US", "CA"], "wafSqliRulesToCount": ["SQLi_BODY"]}),
    ("dev-external-acl-guardduty", "dev", {"externalResources": {"wafWebAcl": EXTERNAL_ACL}, "guardDuty": True}),
    ("prod-backup-copies-compliance-lock", "prod", {"backup": {
        "retentionDays": 35, "monthlyRetentionDays": 365, "copyToRegion": "us-west-2",
        "copyToVaultArn": BACKUP_ACCOUNT_VAULT, "vaultLock": COMPLIANCE_LOCK}}),
    ("prod-retain-backup-governance-lock", "prod", {"removalPolicy": "retain", "credentialRotationDays": 30, "backup": {
        "copyToVaultArn": SAME_ACCOUNT_VAULT,
        "vaultLock": {"mode": "governance", "minRetentionDays": 1, "maxRetentionDays": 400}}}),
    ("dev-backup-on", "dev", {"backup": {"enabled": True, "retentionDays": 7}, "appBucketVersioning": True}),
    ("delegation", "dev", {"nsDelegation": {"domain": "example.org", "records": [
        {"name": "redcap", "fromStack": "acme/redcap/prod"},
        {"name": "dev.redcap", "nameServers": ["ns-1.awsdns-01.org", "ns-2.awsdns-02.com"]}]},
        "redCapS3Path": None, "email": None}),
]

IDS = [v[0] for v in VARIANTS]
