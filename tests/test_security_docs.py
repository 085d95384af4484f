"""docs/security.md and the backup section of docs/destroy.md say what the code does: the JSON the
backup account must set, the state addresses of the released access keys, and every number."""
from __future__ import annotations

import json
import re
from pathlib import Path

from components import backup, image, policies, rotation, storage
from functions import rotate_access_key as rk
from harness import cached_run
from settings import StageSettings
from settings.credentials import MAX_CREDENTIAL_ROTATION_DAYS
from settings.backup import MIN_CHANGEABLE_FOR_DAYS

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "security.md").read_text()
EXAMPLE_ACCOUNT = "123456789012"


def json_blocks(text: str) -> list:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)]


def test_what_the_backup_account_sets_is_what_the_code_expects():
    statement, vault_policy = json_blocks(DOC)
    assert statement == backup.destination_key_statement("aws", EXAMPLE_ACCOUNT)
    assert vault_policy == json.loads(backup.destination_vault_access_policy("aws", EXAMPLE_ACCOUNT))
    # The stage's own key gives the backup account the same actions for the copies it receives.
    assert statement["Action"] == sorted(policies.CROSS_ACCOUNT_COPY_ACTIONS)


def test_the_state_addresses_to_forget_are_those_of_the_released_keys(prod_run):
    # The released components made `<component>-s3-key` and `<component>-smtp-key` beside their users.
    commands = re.findall(r"pulumi state delete --target-dependents -s prod '([^']+)'", DOC)
    expected = []
    for user, key in (("redcap-s3-user", "redcap-s3-key"), ("redcap-smtp-user", "redcap-smtp-key")):
        urn = prod_run.named(user, "aws:iam/user:User").urn
        expected.append(urn.replace(f"aws:iam/user:User::{user}", f"aws:iam/accessKey:AccessKey::{key}"))
    assert commands == expected
    assert prod_run.of_type("aws:iam/accessKey:AccessKey") == []  # hence: forget them before the upgrade
    for version in ("redcap-s3-credentials-value", "redcap-smtp-credentials-value"):
        assert f"`{version}`" in DOC


def test_the_documented_numbers_are_the_code_s():
    fields = StageSettings.model_fields
    assert fields["credential_rotation_days"].default == 90 == MAX_CREDENTIAL_ROTATION_DAYS
    assert "(default 90, at most 90)" in DOC
    assert rk.KEY_TEST_SECONDS == 300 and "retried for up to 5 minutes" in DOC
    assert rk.FAILED_ROTATION_SECONDS == 3600 and "older than an hour is a\nfailed rotation" in DOC
    assert rk.STALLED_FIRST_ROTATION_SECONDS == 600 and "giving a stalled one up after 10 minutes" in DOC
    assert rk.OVERDUE_SECONDS == 86400 and "still active a day\nafter the switch" in DOC
    assert rotation.RETIRE_SCHEDULE == "rate(15 minutes)" and "every 15 minutes" in DOC
    assert rk.ROLLOUT_LABEL_PREFIX == "redcap-rollout-since-" and "`redcap-rollout-since-<unix time>`" in DOC
    assert backup.DAILY_SCHEDULE == "cron(0 5 * * ? *)" and "every day at 05:00 UTC" in DOC
    assert backup.MONTHLY_SCHEDULE == "cron(0 5 1 * ? *)" and "the 1st of each month" in DOC
    assert fields["backup"].default.retention_days == 35 and "`retentionDays` (35)" in DOC
    assert MIN_CHANGEABLE_FOR_DAYS == 3 and "`changeableForDays` (at least 3)" in DOC
    assert storage.LOG_NONCURRENT_DAYS == 365 and "kept 365 days" in DOC
    assert image.SIGNING_PLATFORM == "AWSLambda-SHA384-ECDSA" and image.SIGNATURE_VALIDITY_MONTHS == 135
    assert "platform\n   `AWSLambda-SHA384-ECDSA`, signatures valid 135 months" in DOC
    for policy in backup.MANAGED_POLICIES:
        assert f"`{policy}`" in DOC


def test_the_prod_stage_is_the_one_the_guide_describes():
    run = cached_run("prod")
    rules = run.one("aws:backup/plan:Plan").inputs["rules"]
    assert [r["lifecycle"]["deleteAfter"] for r in rules] == [35.0, 365.0] and "(prod: 365)" in DOC
    destroy = (ROOT / "docs" / "destroy.md").read_text()
    assert "## Backups in AWS Backup" in destroy and "emptied and deleted (`force_destroy`)" in destroy
