"""Credential settings: how often the IAM access keys REDCap needs are rotated."""
from __future__ import annotations

from typing import Any

from settings.common import Problem, _is_int

# CIS AWS Foundations (and most hospital security reviews) ask for access keys rotated every
# 90 days or sooner.
MAX_CREDENTIAL_ROTATION_DAYS = 90


def parse_rotation_days(value: Any) -> int:
    if not _is_int(value) or not 1 <= int(value) <= MAX_CREDENTIAL_ROTATION_DAYS:
        raise Problem(f"1 to {MAX_CREDENTIAL_ROTATION_DAYS} days between rotations of the S3 and SES SMTP access "
                      "keys (longer-lived keys are what the rotation exists to prevent)", "90")
    return int(value)


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "credentialRotationDays": "Days between automatic rotations of REDCap's S3 access key and the SES SMTP key (1 to 90; docs/security.md).",
}
