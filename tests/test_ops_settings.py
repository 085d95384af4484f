"""ops/settings.py: validation of the redcap-ops configuration (pure, no Pulumi runtime)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from ops.managed_stack import session_name
from ops.settings import OpsSettings, SettingsError, parse_settings

VALID_STACK = {
    "name": "dev",
    "repoUrl": "https://github.com/my-org/redcap-pulumi.git",
    "branch": "main",
    "repoDir": ".",
    "awsOidcRoleArn": "arn:aws:iam::111111111111:role/pulumi-deployments",
    "driftCron": "0 */6 * * *",
    "autoRemediate": True,
}


def config(*stacks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"organization": "my-org", "stacks": list(stacks or [VALID_STACK]), **extra}


def stack(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(VALID_STACK)
    result.update(changes)
    return result


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw)
    return str(caught.value)


def test_valid_config_parses_with_defaults() -> None:
    settings = parse_settings(config(stack(name="dev"), stack(name="prod", autoRemediate=False)))
    assert isinstance(settings, OpsSettings)
    assert settings.redcap_project == "redcap"
    assert [s.name for s in settings.stacks] == ["dev", "prod"]
    assert settings.stacks[0].git_branch == "refs/heads/main"
    assert settings.stacks[1].auto_remediate is False


def test_auto_remediate_defaults_to_false_and_repo_dir_to_repository_root() -> None:
    raw = stack()
    del raw["autoRemediate"], raw["repoDir"]
    spec = parse_settings(config(raw)).stacks[0]
    assert spec.auto_remediate is False
    assert spec.repo_dir is None


def test_prod_with_auto_remediate_is_rejected_with_the_reason() -> None:
    message = problems(config(stack(name="prod", autoRemediate=True)))
    assert "redcap-ops:stacks[0]: stack 'prod' must not auto-remediate drift" in message
    assert "set autoRemediate: false" in message


def test_only_the_stack_named_prod_is_detect_only() -> None:
    settings = parse_settings(config(stack(name="prod-eu", autoRemediate=True)))
    assert settings.stacks[0].auto_remediate is True


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"awsOidcRoleArn": "arn:aws:iam::1:user/me"}, "stacks[0].awsOidcRoleArn: 'arn:aws:iam::1:user/me' is not an IAM role ARN"),
        ({"repoUrl": "github.com/x"}, "stacks[0].repoUrl: 'github.com/x' is not a git URL"),
        ({"driftCron": "0 * * *"}, "stacks[0].driftCron: '0 * * *' is not a 5-field cron expression"),
        ({"branch": "bad branch"}, "stacks[0].branch: 'bad branch' is not a branch name"),
        ({"repoDir": "../elsewhere"}, "stacks[0].repoDir: '../elsewhere' must be a folder inside the repository"),
        ({"name": "has space"}, "stacks[0].name: 'has space' is not a stack name"),
        ({"autoRemedy": True}, "stacks[0].autoRemedy: is not a known setting"),
    ],
)
def test_each_invalid_field_is_named_with_its_key(changes: dict[str, Any], expected: str) -> None:
    assert f"redcap-ops:{expected}" in problems(config(stack(**changes)))


def test_missing_required_keys_are_listed_together() -> None:
    raw = stack()
    del raw["awsOidcRoleArn"], raw["driftCron"]
    message = problems({"stacks": [raw]})
    assert "redcap-ops:organization: is required" in message
    assert "redcap-ops:stacks[0].awsOidcRoleArn: is required" in message
    assert "redcap-ops:stacks[0].driftCron: is required" in message


def test_empty_and_duplicate_stack_lists_are_rejected() -> None:
    assert "redcap-ops:stacks:" in problems({"organization": "o", "stacks": []})
    assert "listed more than once: ['dev']" in problems(config(stack(), stack()))


def test_session_name_fits_the_aws_limit() -> None:
    assert session_name("redcap", "prod") == "pulumi-deployments-redcap-prod"
    assert len(session_name("p" * 60, "s" * 60)) == 64
