"""ops/__main__.py under Pulumi mocks, with the config of ops/Pulumi.example.yaml.

The SDK never reads stack YAML itself, so the example stack file is loaded here, structured values
are JSON-encoded (what the CLI hands the program), and set_all_config is called before the run.
Mocks run with preview=False: in preview mode unknown outputs would silently skip assertions.
"""
from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path
from typing import Any, Optional

import pulumi
import pytest
import yaml
from pulumi.runtime.mocks import MockMonitor

from ops.settings import SettingsError

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
DEPLOYMENT_SETTINGS = "pulumiservice:index:DeploymentSettings"
DRIFT_SCHEDULE = "pulumiservice:index:DriftSchedule"
COMPONENT = "redcap-ops:index:ManagedStack"


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registration; echoes inputs as outputs (plus the provider-computed scheduleId)."""

    def __init__(self) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []
        self.monitor: Optional["DependencyMonitor"] = None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args)
        outputs = dict(args.inputs)
        if args.typ == DRIFT_SCHEDULE:
            outputs["scheduleId"] = f"{args.name}-schedule-id"
        return f"{args.name}_id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}

    def of_type(self, typ: str) -> dict[str, dict[str, Any]]:
        """Inputs by stack name (every ops resource has a `stack` input)."""
        return {a.inputs["stack"]: a.inputs for a in self.registered if a.typ == typ}


class DependencyMonitor(MockMonitor):
    """Also records each registration's URN and explicit dependencies (not in MockResourceArgs)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, list[str]] = {}
        self.urns: dict[str, str] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        self.dependencies[request.name] = list(request.dependencies)
        self.urns[request.name] = response.urn
        return response


def example_config() -> dict[str, Any]:
    document = yaml.safe_load((OPS / "Pulumi.example.yaml").read_text())
    return dict(document["config"])


def run_ops(config: dict[str, Any]) -> RecordingMocks:
    mocks = RecordingMocks()
    mocks.monitor = DependencyMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="redcap-ops", stack="example", preview=False, monitor=mocks.monitor)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        program_globals = runpy.run_path(str(OPS / "__main__.py"))
        managed = program_globals["managed"]
        # Await every child so all registrations happen before the assertions below.
        return pulumi.Output.all(*[m.drift_schedule.schedule_id for m in managed.values()],
                                 *[m.deployment_settings.id for m in managed.values()])

    program()
    return mocks


@pytest.fixture(scope="module")
def example_run() -> RecordingMocks:
    return run_ops(example_config())


def test_one_component_with_settings_and_schedule_per_stack(example_run: RecordingMocks) -> None:
    names = [s["name"] for s in example_config()["redcap-ops:stacks"]]
    assert sorted(a.name for a in example_run.registered if a.typ == COMPONENT) == sorted(names)
    assert sorted(example_run.of_type(DEPLOYMENT_SETTINGS)) == sorted(names)
    assert sorted(example_run.of_type(DRIFT_SCHEDULE)) == sorted(names)
    assert len(example_run.registered) == 3 * len(names)


def test_deployment_settings_carry_repo_branch_dir_and_oidc_role(example_run: RecordingMocks) -> None:
    config = example_config()
    for spec in config["redcap-ops:stacks"]:
        inputs = example_run.of_type(DEPLOYMENT_SETTINGS)[spec["name"]]
        assert inputs["organization"] == config["redcap-ops:organization"]
        assert inputs["project"] == config["redcap-ops:redcapProject"]
        git = inputs["sourceContext"]["git"]
        assert git["repoUrl"] == spec["repoUrl"]
        assert git["branch"] == f"refs/heads/{spec['branch']}"
        assert git["repoDir"] == spec["repoDir"]
        aws = inputs["operationContext"]["oidc"]["aws"]
        assert aws["roleARN"] == spec["awsOidcRoleArn"]
        assert aws["sessionName"] == f"pulumi-deployments-redcap-{spec['name']}"


def test_drift_schedules_carry_cron_and_remediation_flag(example_run: RecordingMocks) -> None:
    for spec in example_config()["redcap-ops:stacks"]:
        inputs = example_run.of_type(DRIFT_SCHEDULE)[spec["name"]]
        assert inputs["scheduleCron"] == spec["driftCron"]
        assert inputs["autoRemediate"] is spec["autoRemediate"]
        assert inputs["organization"] == "my-org" and inputs["project"] == "redcap"


def test_prod_is_detect_only(example_run: RecordingMocks) -> None:
    assert example_run.of_type(DRIFT_SCHEDULE)["prod"]["autoRemediate"] is False


def test_drift_schedule_depends_on_the_stack_deployment_settings(example_run: RecordingMocks) -> None:
    # Pulumi Cloud rejects a drift schedule for a stack without deployment settings.
    monitor = example_run.monitor
    assert monitor is not None
    for stack in ("dev", "prod"):
        settings_urn = monitor.urns[f"{stack}-deployment-settings"]
        assert settings_urn in monitor.dependencies[f"{stack}-drift-schedule"]
        assert "ManagedStack" in settings_urn  # parented to the stack's component


def test_full_ref_branch_and_missing_repo_dir_pass_through() -> None:
    config = example_config()
    stacks = copy.deepcopy(config["redcap-ops:stacks"])
    stacks[0]["branch"] = "refs/heads/release"
    del stacks[0]["repoDir"]
    config["redcap-ops:stacks"] = stacks
    run = run_ops(config)
    git = run.of_type(DEPLOYMENT_SETTINGS)[stacks[0]["name"]]["sourceContext"]["git"]
    assert git["branch"] == "refs/heads/release"
    assert "repoDir" not in git


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["redcap-ops:stacks"][1].update(autoRemediate=True),
         "redcap-ops:stacks[1]: stack 'prod' must not auto-remediate drift"),
        (lambda c: c["redcap-ops:stacks"][0].update(driftCron="every hour"),
         "redcap-ops:stacks[0].driftCron: 'every hour' is not a 5-field cron expression"),
        (lambda c: c.pop("redcap-ops:organization"), "redcap-ops:organization: is required"),
        (lambda c: c.update({"redcap-ops:stacks": "not json"}), "redcap-ops:stacks must be a list of objects"),
    ],
)
def test_invalid_config_fails_before_any_resource(change: Any, expected: str) -> None:
    config = copy.deepcopy(example_config())
    change(config)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="redcap-ops", stack="example", preview=False)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    with pytest.raises(SettingsError) as caught:
        runpy.run_path(str(OPS / "__main__.py"))
    assert expected in str(caught.value)
    assert mocks.registered == []


def test_project_file_and_requirements_match_the_test_venv() -> None:
    from importlib.metadata import version
    from packaging.requirements import Requirement

    project = yaml.safe_load((OPS / "Pulumi.yaml").read_text())
    assert project["name"] == "redcap-ops"
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    lines = [ln for ln in (OPS / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for requirement in map(Requirement, lines):
        assert requirement.specifier.contains(version(requirement.name)), requirement
