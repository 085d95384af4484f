"""ManagedStack: the Pulumi Cloud settings of one redcap stack.

For a stack it creates
* DeploymentSettings - where Pulumi Deployments gets the program (git repo, branch, folder) and
  how it gets AWS credentials (OIDC: a short-lived assume-role, no stored keys);
* DriftSchedule - when a drift run (`pulumi refresh --preview-only`) happens and whether drift is
  remediated (`pulumi up --refresh`). Prod is detect-only; ops/settings.py enforces that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_pulumiservice as pulumiservice

from ops.settings import StackSpec

TYPE_TOKEN = "redcap-ops:index:ManagedStack"


@dataclass(frozen=True)
class ManagedStackArgs:
    organization: str
    project: str
    spec: StackSpec


def session_name(project: str, stack: str) -> str:
    """Name of the assumed-role session, visible in CloudTrail; AWS allows at most 64 characters."""
    return f"pulumi-deployments-{project}-{stack}"[:64]


class ManagedStack(pulumi.ComponentResource):
    deployment_settings: pulumiservice.DeploymentSettings
    drift_schedule: pulumiservice.DriftSchedule

    def __init__(self, name: str, args: ManagedStackArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        self.deployment_settings = pulumiservice.DeploymentSettings(
            f"{name}-deployment-settings",
            organization=args.organization,
            project=args.project,
            stack=spec.name,
            source_context=pulumiservice.DeploymentSettingsSourceContextArgs(
                git=pulumiservice.DeploymentSettingsGitSourceArgs(
                    repo_url=spec.repo_url,
                    branch=spec.git_branch,
                    repo_dir=spec.repo_dir,
                ),
            ),
            operation_context=pulumiservice.DeploymentSettingsOperationContextArgs(
                oidc=pulumiservice.OperationContextOIDCArgs(
                    aws=pulumiservice.AWSOIDCConfigurationArgs(
                        role_arn=spec.aws_oidc_role_arn,
                        session_name=session_name(args.project, spec.name),
                    ),
                ),
            ),
            opts=child,
        )

        # A drift run needs the stack's deployment settings, so create those first.
        self.drift_schedule = pulumiservice.DriftSchedule(
            f"{name}-drift-schedule",
            organization=args.organization,
            project=args.project,
            stack=spec.name,
            schedule_cron=spec.drift_cron,
            auto_remediate=spec.auto_remediate,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment_settings]),
        )

        self.register_outputs({
            "stack": spec.name,
            "driftScheduleId": self.drift_schedule.schedule_id,
            "autoRemediate": spec.auto_remediate,
        })
