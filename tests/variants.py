"""The stack variants every cross-cutting test runs: each committed stack file, plus generated
variants that switch on the optional parts. Each is (id, stack file, overrides)."""
from __future__ import annotations

from typing import Any

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
CERT_SA_EAST_1 = "arn:aws:acm:sa-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
# The committed stages' db blocks without backtrackHours: unset, it defaults to 0 where Aurora
# has no backtrack (settings/regions.py).
PROD_DB_NO_BACKTRACK = {"engineVersion": "8.0.mysql_aurora.3.10.3", "dbReaders": 1, "maxAllowedPacket": 1073741824,
                        "preferredMaintenanceWindow": "Sun:08:00-Sun:08:30", "backupRetentionDays": 30,
                        "scaling": {"minCapacityAcu": 0.5, "maxCapacityAcu": 8}}
DEV_DB_NO_BACKTRACK = {"engineVersion": "8.0.mysql_aurora.3.10.3", "dbReaders": 0, "maxAllowedPacket": 1073741824,
                       "backupRetentionDays": 7, "scaling": {"minCapacityAcu": 0, "maxCapacityAcu": 2}}
EXTERNAL_ACL = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"
EXTERNAL_CLOUDFRONT_ACL = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"
ALLOW_LISTS = {"allowedIps": ["203.0.113.0/24", "2001:db8::/32"], "allowedCountries": ["US", "CA"]}
# A vault in a backup account of the same AWS Organization, and one in this account's other region.
BACKUP_ACCOUNT_VAULT = "arn:aws:backup:eu-central-1:210987654321:backup-vault:redcap-dr"
SAME_ACCOUNT_VAULT = "arn:aws:backup:us-west-2:123456789012:backup-vault:redcap-dr"
COMPLIANCE_LOCK = {"mode": "compliance", "minRetentionDays": 7, "maxRetentionDays": 3650, "changeableForDays": 3,
                   "acknowledgeIrreversible": True}
# Operations tuned, and as quiet as it goes (only the uptime check and its alarm stay: every
# public entry has one).
OPERATIONS_TUNED = {"alarmEmail": "redcap-ops@example.org", "uptimeMinutes": 10, "dashboard": False,
                    "smokeCheck": False, "alarms": {"siteLatency": {"threshold": 20, "minutes": 30},
                                                    "wafBlockedSpike": {"enabled": False},
                                                    "dbCapacityAtMax": {"threshold": 1.5, "minutes": 60}}}
OPERATIONS_QUIET = {"dashboard": False, "smokeCheck": False,
                    "alarms": {a: {"enabled": False} for a in (
                        "siteErrorRate", "siteLatency", "unhealthyTargets", "tasksBelowMinimum", "cronFailures",
                        "cronStopped", "cronErrors", "dbCapacityAtMax", "dbConnections", "dbReplicaLag",
                        "wafBlockedSpike", "sesBounceRate", "sesComplaintRate", "imageBuildFailed",
                        "buildTriggerErrors", "certificateExpiry")}}
IDLE_BERLIN = {"timezone": "Europe/Berlin", "workdays": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30",
               "end": "18:00"}

# Stack files whose zone this stack creates carry zoneDelegated; the other domain modes take none.
NO_NEW_ZONE = {"zoneDelegated": None}
# prod signs and logs the zone it creates; a stage without such a zone sets neither.
NOT_OUR_ZONE = {**NO_NEW_ZONE, "dnssec": None, "dnsQueryLogging": None}

# dev runs on Express (its stack file's express block); `"express": None` gives App Runner.
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("dev", "dev", {}),
    # prod as committed: phase one of a new zone (zone and nameServers only, no ECS service yet).
    ("prod", "prod", {}),
    ("prod-delegated", "prod", {"zoneDelegated": True}),
    ("dev-apprunner-new-zone", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                       "zoneDelegated": False, "express": None}),
    ("dev-apprunner-domain", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                     "zoneDelegated": True, "cronMinutes": 5, "express": None}),
    ("dev-ecs-zone", "dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": True,
                             "ecs": {}, "express": None}),
    ("dev-express-new-zone", "dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": False}),
    ("dev-express-zone", "dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": True,
                                 "cronMinutes": 5}),
    ("dev-express-existing-zone", "dev", {"domain": "redcap.example.org", "hostInRoute53": "example.org"}),
    ("dev-express-child-zone", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org"}),
    ("dev-express-no-route53-cert", "dev", {"domain": "redcap.example.org", "hostInRoute53": False,
                                            "express": {"certificateArn": CERT}}),
    ("dev-express-surveys-only", "dev", {**ALLOW_LISTS, "allowListScope": "allButSurveys", "cronMinutes": 1}),
    ("dev-express-external-acl", "dev", {"externalResources": {"wafWebAcl": EXTERNAL_CLOUDFRONT_ACL}}),
    ("prod-express-eu", "prod", {"aws:region": "eu-west-1", "ecs": None, "zoneDelegated": True, "express": {
        "cpu": "2 vCPU", "memory": "4 GB", "scaling": {"minContainers": 2, "maxContainers": 6, "metric": "requests",
                                                       "target": 200}}}),
    ("prod-ecs-surveys-only", "prod", {"allowedIps": ["198.51.100.0/24"], "allowListScope": "allButSurveys",
                                       "zoneDelegated": True}),
    ("dev-apprunner-surveys-only", "dev", {**ALLOW_LISTS, "allowListScope": "allButSurveys", "express": None}),
    ("prod-existing-zone", "prod", {"domain": "example.org", "subdomain": None, "hostInRoute53": "example.org",
                                    **NOT_OUR_ZONE}),
    ("prod-child-zone", "prod", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org",
                                 **NO_NEW_ZONE}),
    ("prod-no-route53-cert", "prod", {"hostInRoute53": False, "ecs": {"certificateArn": CERT},
                                      "bounceNotificationEmail": None, **NOT_OUR_ZONE}),
    ("prod-retain-readers", "prod", {"removalPolicy": "retain", "db": {"dbReaders": 3}}),
    ("prod-restore", "prod", {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final"}}),
    ("prod-restore-in-place", "prod", {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final",
                                              "previousCluster": {"deletionProtection": True}}}),
    ("dev-tunnel", "dev", {"ec2ServerStack": {"durationHours": 4}}),
    # REDCap's database upgrade after each new release, on each runtime (prod: ECS).
    ("prod-upgrade-database", "prod", {"zoneDelegated": True, "upgrade": {"database": True}}),
    ("dev-express-upgrade-all", "dev", {"upgrade": {"snapshot": True, "database": True}}),
    ("dev-apprunner-upgrade-all", "dev", {"express": None, "upgrade": {"snapshot": True, "database": True}}),
    ("dev-password-auth-allowlists", "dev", {"dbAuth": "password", "allowedIps": ["203.0.113.0/24", "2001:db8::/32"],
                                             "allowedCountries": ["US", "CA"], "wafSqliRulesToCount": ["SQLi_BODY"]}),
    ("dev-external-acl-guardduty", "dev", {"externalResources": {"wafWebAcl": EXTERNAL_ACL}, "guardDuty": True,
                                           "express": None}),
    # Regions without Aurora backtrack and without App Runner (ECS there): one opened after
    # August 2022 (ALB logs by the log-delivery principal), one older (a regional ELB account).
    ("prod-eu-south-2", "prod", {"aws:region": "eu-south-2", "db": PROD_DB_NO_BACKTRACK, "zoneDelegated": True}),
    # Express where App Runner is not offered: the runtime is Express, not App Runner, there.
    ("dev-express-eu-south-2", "dev", {"aws:region": "eu-south-2", "db": DEV_DB_NO_BACKTRACK}),
    ("dev-ecs-sa-east-1", "dev", {"aws:region": "sa-east-1", "db": DEV_DB_NO_BACKTRACK, "express": None,
                                  "ecs": {"certificateArn": CERT_SA_EAST_1},
                                  "domain": "redcap-dev.example.org", "hostInRoute53": False}),
    ("prod-backup-copies-compliance-lock", "prod", {"backup": {
        "retentionDays": 35, "monthlyRetentionDays": 365, "copyToRegion": "us-west-2",
        "copyToVaultArn": BACKUP_ACCOUNT_VAULT, "vaultLock": COMPLIANCE_LOCK}}),
    ("prod-retain-backup-governance-lock", "prod", {"removalPolicy": "retain", "credentialRotationDays": 30, "backup": {
        "copyToVaultArn": SAME_ACCOUNT_VAULT,
        "vaultLock": {"mode": "governance", "minRetentionDays": 1, "maxRetentionDays": 400}}}),
    ("dev-backup-on", "dev", {"backup": {"enabled": True, "retentionDays": 7}, "appBucketVersioning": True}),
    ("dev-operations-tuned", "dev", {"operations": OPERATIONS_TUNED}),
    ("prod-operations-quiet", "prod", {"zoneDelegated": True, "operations": OPERATIONS_QUIET}),
    ("dev-express-idle", "dev", {"operations": {"idleSchedule": IDLE_BERLIN}}),
    ("dev-apprunner-idle-budget", "dev", {"express": None, "operations": {"idleSchedule": IDLE_BERLIN,
                                                                          "monthlyBudgetUsd": 150}}),
    ("dev-ecs-idle-cron", "dev", {"express": None, "domain": "redcap-dev.example.org", "hostInRoute53": True,
                                  "zoneDelegated": True, "ecs": {},
                                  "cronMinutes": 5, "operations": {"idleSchedule": {"timezone": "America/New_York"}}}),
    ("delegation", "dev", {"nsDelegation": {"domain": "example.org", "records": [
        {"name": "redcap", "fromStack": "acme/redcap/prod"},
        {"name": "dev.redcap", "nameServers": ["ns-1.awsdns-01.org", "ns-2.awsdns-02.com"]}]},
        "redCapS3Path": None, "email": None}),
]

IDS = [v[0] for v in VARIANTS]
