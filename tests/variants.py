"""The stack variants every cross-cutting test runs: each committed stack file, plus generated
variants that switch on the optional parts. Each is (id, stack file, overrides)."""
from __future__ import annotations

from typing import Any

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
EXTERNAL_ACL = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"

# Stack files whose zone this stack creates carry zoneDelegated; the other domain modes take none.
NO_NEW_ZONE = {"zoneDelegated": None}

VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("dev", "dev", {}),
    # prod as committed: phase one of a new zone (zone and nameServers only, no ECS service yet).
    ("prod", "prod", {}),
    ("prod-delegated", "prod", {"zoneDelegated": True}),
    ("dev-apprunner-new-zone", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                       "zoneDelegated": False}),
    ("dev-apprunner-domain", "dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                     "zoneDelegated": True, "cronMinutes": 5}),
    ("dev-ecs-zone", "dev", {"domain": "redcap-dev.example.org", "hostInRoute53": True, "zoneDelegated": True,
                             "ecs": {}}),
    ("prod-existing-zone", "prod", {"domain": "example.org", "subdomain": None, "hostInRoute53": "example.org",
                                    **NO_NEW_ZONE}),
    ("prod-child-zone", "prod", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": "example.org",
                                 **NO_NEW_ZONE}),
    ("prod-no-route53-cert", "prod", {"hostInRoute53": False, "ecs": {"certificateArn": CERT}, **NO_NEW_ZONE}),
    ("prod-retain-readers", "prod", {"removalPolicy": "retain", "db": {"dbReaders": 3}}),
    ("prod-restore", "prod", {"db": {"dbSnapshotId": "redcap-prod-a1b2c3d4-final"}}),
    ("dev-tunnel", "dev", {"ec2ServerStack": {"durationHours": 4}}),
    ("dev-password-auth-allowlists", "dev", {"dbAuth": "password", "allowedIps": ["203.0.113.0/24", "2001:db8::/32"],
                                             "allowedCountries": ["US", "CA"], "wafSqliRulesToCount": ["SQLi_BODY"]}),
    ("dev-external-acl-guardduty", "dev", {"externalResources": {"wafWebAcl": EXTERNAL_ACL}, "guardDuty": True}),
    ("delegation", "dev", {"nsDelegation": {"domain": "example.org", "records": [
        {"name": "redcap", "fromStack": "acme/redcap/prod"},
        {"name": "dev.redcap", "nameServers": ["ns-1.awsdns-01.org", "ns-2.awsdns-02.com"]}]},
        "redCapS3Path": None, "email": None}),
]

IDS = [v[0] for v in VARIANTS]
