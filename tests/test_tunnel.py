"""The temporary tunnel host (components/tunnel.py), recorded for a stage with ec2ServerStack."""
from __future__ import annotations

import shlex

from compute_support import leaked_secrets, policy_of, run_variant, statements
from components.tunnel import port_forward_command, shutdown_minutes, user_data
from harness import run_program


def instance(run):
    return run.one("aws:ec2/instance:Instance")


def test_no_tunnel_host_without_ec2_server_stack():
    for variant in ("dev", "prod"):
        run = run_variant(variant)
        assert run.of_type("aws:ec2/instance:Instance") == [] and "ssmPortForward" not in run.outputs


def test_private_instance_imdsv2_encrypted_gp3_terminates_itself():
    run = run_variant("apprunner-cname")
    inputs = instance(run).inputs
    assert inputs["instanceType"] == "t3.medium" and inputs["ami"] == "ami-0mockal2023"
    assert inputs["subnetId"] == run.outputs["privateSubnetIds"][0]
    assert inputs["associatePublicIpAddress"] is False
    assert inputs["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 2}
    assert inputs["rootBlockDevice"] == {"volumeType": "gp3", "volumeSize": 20, "encrypted": True,
                                         "kmsKeyId": run.outputs["kmsKeyArn"], "deleteOnTermination": True}
    assert inputs["instanceInitiatedShutdownBehavior"] == "terminate"
    assert inputs["vpcSecurityGroupIds"] == [run.named("redcap-app").id]
    assert inputs["userDataReplaceOnChange"] is True
    assert instance(run).ignore_changes == ["ami"]  # a new AL2023 release does not replace a running host


def test_instance_type_from_settings():
    run = run_program("dev", {"ec2ServerStack": {"durationHours": 1, "instanceType": "m6i.large"}})
    assert instance(run).inputs["instanceType"] == "m6i.large"
    assert "shutdown -h +60 " in instance(run).inputs["userData"]


def test_user_data_runs_the_pinned_image_on_localhost_and_shuts_down_after_the_duration():
    run = run_variant("apprunner-cname")
    script = instance(run).inputs["userData"]
    lines = script.splitlines()
    assert lines[:3] == ["#!/bin/bash", "set -euo pipefail", "shutdown -h +150 'REDCap tunnel host: duration over'"]
    registry = run.outputs["ecrRepositoryUrl"].split("/")[0]
    assert (f"aws ecr get-login-password --region us-east-1 | docker login --username AWS --password-stdin {registry}"
            in lines)
    run_line = next(line for line in lines if line.startswith("docker run"))
    words = shlex.split(run_line)
    assert words[-1] == run.outputs["imageUri"]
    assert "127.0.0.1:8081:8081" in words and "TLS_PORT=8081" in words
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert env["DB_SECRET_ID"] == run.outputs["dbMasterSecretArn"] and env["DB_AUTH"] == "password"
    assert leaked_secrets(script) == []
    # No timestamp: the same config gives the same user data.
    assert script == user_data(region="us-east-1", image_uri=run.outputs["imageUri"],
                               environment={k: v for k, v in env.items() if k != "TLS_PORT"}, duration_hours=2.5)


def test_role_is_ssm_managed_with_the_runtime_contract_and_image_pull():
    run = run_variant("apprunner-cname")
    role = run.named("redcap-tunnel-role")
    trust = statements(policy_of(role, "assumeRolePolicy"))[0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert run.named("redcap-tunnel-ssm").inputs == {
        "role": role.outputs["name"], "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    assert policy_of(run.named("redcap-tunnel-runtime")) == policy_of(run.named("redcap-runtime"))
    pull = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-tunnel-pull")))}
    assert pull["PullImage"]["Resource"] == [run.one("aws:ecr/repository:Repository").outputs["arn"]]
    profile = run.one("aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == role.outputs["name"]
    assert instance(run).inputs["iamInstanceProfile"] == profile.outputs["name"]


def test_exports_the_exact_port_forwarding_command():
    run = run_variant("apprunner-cname")
    instance_id = instance(run).id
    assert run.outputs["tunnelInstanceId"] == instance_id
    assert run.outputs["ssmPortForward"] == (
        f"aws ssm start-session --target {instance_id} --document-name AWS-StartPortForwardingSession "
        "--parameters '{\"portNumber\":[\"8081\"],\"localPortNumber\":[\"8081\"]}' --region us-east-1")
    assert port_forward_command("i-1", "eu-west-1").endswith("--region eu-west-1")


def test_shutdown_minutes():
    assert shutdown_minutes(3) == 180 and shutdown_minutes(1.5) == 90 and shutdown_minutes(0.001) == 1


def test_the_instance_boots_only_after_all_its_role_grants_exist():
    """The container reads its secrets and the SSM agent registers right after boot: the
    runtime grants and the SSM policy must be attached before the instance is created, not
    just the image pull policy."""
    run = run_variant("apprunner-cname")
    dependencies = set(instance(run).dependencies)
    for grant in ("redcap-tunnel-runtime", "redcap-tunnel-pull", "redcap-tunnel-ssm", "redcap-tunnel-profile"):
        assert run.named(grant).urn in dependencies, grant
