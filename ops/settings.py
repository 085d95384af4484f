"""Validated configuration of the redcap-ops project.

Config keys (namespace `redcap-ops`):

* `organization`  - Pulumi Cloud organization that owns the redcap stacks (required);
* `redcapProject` - name of the redcap Pulumi project (default `redcap`);
* `stacks`        - list of objects, one per redcap stack to manage:
  `{name, repoUrl, branch, repoDir, awsOidcRoleArn, driftCron, autoRemediate}`.

Everything is validated before any resource is registered; every problem is reported at once
with the config key it belongs to. The one safety rule: the `prod` stack never auto-remediates
(drift remediation runs `pulumi up --refresh`, which may replace resources that hold patient
data; a human reviews prod drift).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAMESPACE = "redcap-ops"
PROTECTED_STACK = "prod"

_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_REPO_URL = re.compile(r"^(https://[^\s]+|git@[^\s:]+:[^\s]+)$")
_CRON_FIELD = re.compile(r"^[0-9*/,\-]+$")


class SettingsError(ValueError):
    """Invalid redcap-ops configuration; the message lists every problem with its config key."""


class StackSpec(BaseModel):
    """One redcap stack whose Pulumi Cloud deployment settings and drift schedule we manage."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(description="stack name in the redcap project, e.g. dev or prod")
    repo_url: str = Field(alias="repoUrl", description="git URL Pulumi Deployments clones")
    branch: str = Field(default="main", description="branch to deploy; stored as refs/heads/<branch>")
    repo_dir: Optional[str] = Field(default=None, alias="repoDir", description="folder of Pulumi.yaml")
    aws_oidc_role_arn: str = Field(alias="awsOidcRoleArn", description="IAM role assumed via Pulumi OIDC")
    drift_cron: str = Field(alias="driftCron", description="5-field cron for drift detection runs")
    auto_remediate: bool = Field(default=False, alias="autoRemediate")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _STACK_NAME.match(value):
            raise ValueError(f"{value!r} is not a stack name (letters, digits, _ . - ; e.g. 'dev')")
        return value

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        if not _REPO_URL.match(value):
            raise ValueError(
                f"{value!r} is not a git URL Pulumi Deployments can clone "
                "(e.g. 'https://github.com/my-org/redcap-pulumi.git')"
            )
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        short = value.removeprefix("refs/heads/")
        if not short or any(c in short for c in " ~^:?*[\\") or short.startswith("-"):
            raise ValueError(f"{value!r} is not a branch name (e.g. 'main')")
        return value

    @field_validator("repo_dir")
    @classmethod
    def _repo_dir(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be a folder inside the repository (e.g. '.' or 'infra')")
        return value

    @field_validator("aws_oidc_role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not _ROLE_ARN.match(value):
            raise ValueError(
                f"{value!r} is not an IAM role ARN (e.g. 'arn:aws:iam::123456789012:role/pulumi-deployments')"
            )
        return value

    @field_validator("drift_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                f"{value!r} is not a 5-field cron expression (minute hour day month weekday, "
                "e.g. '0 */6 * * *' = every six hours)"
            )
        return value

    @model_validator(mode="after")
    def _prod_is_detect_only(self) -> "StackSpec":
        if self.name == PROTECTED_STACK and self.auto_remediate:
            raise ValueError(
                "stack 'prod' must not auto-remediate drift (remediation runs `pulumi up --refresh` "
                "and may replace data-bearing resources); set autoRemediate: false and review prod "
                "drift by hand"
            )
        return self

    @property
    def git_branch(self) -> str:
        """Pulumi Deployments expects a full ref."""
        return self.branch if self.branch.startswith("refs/") else f"refs/heads/{self.branch}"


class OpsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    organization: str = Field(min_length=1)
    redcap_project: str = Field(default="redcap", alias="redcapProject", min_length=1)
    stacks: list[StackSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_stacks(self) -> "OpsSettings":
        names = [s.name for s in self.stacks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stacks are listed more than once: {duplicates}")
        return self


def _key(loc: tuple[Any, ...]) -> str:
    """('stacks', 1, 'autoRemediate') -> 'redcap-ops:stacks[1].autoRemediate'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return f"{NAMESPACE}:{text}" if text else NAMESPACE


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        message = "is required"
    elif error.get("type") == "extra_forbidden":
        message = "is not a known setting (check the spelling)"
    return f"{_key(tuple(error.get('loc', ())))}: {message}"


def parse_settings(raw: Mapping[str, Any]) -> OpsSettings:
    """Validate raw config values (keys without namespace) or raise SettingsError."""
    try:
        return OpsSettings.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "\n  - ".join(_describe(e) for e in exc.errors())
        raise SettingsError(f"invalid redcap-ops configuration:\n  - {problems}") from None


def load_settings() -> OpsSettings:
    """Read the `redcap-ops:*` keys from the stack config and validate them."""
    import pulumi  # imported here so parse_settings stays usable without a Pulumi runtime

    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for key in ("organization", "redcapProject"):
        value = config.get(key)
        if value is not None:
            raw[key] = value
    try:
        stacks = config.get_object("stacks")
    except pulumi.ConfigTypeError as exc:  # the value is not JSON
        raise SettingsError(f"{NAMESPACE}:stacks must be a list of objects ({exc})") from None
    if stacks is not None:
        raw["stacks"] = stacks
    return parse_settings(raw)
