"""The temporary tunnel host (components/tunnel.py), recorded for a stage with ec2ServerStack."""
from __future__ import annotations

import shlex

import pytest

from compute_support import leaked_secrets, policy_of, run_variant, statements
from components.tunnel import choose_subnet, port_forward_command, shutdown_minutes, user_data
from harness import run_program


def instance(run):
    return run.one("aws:ec2/instance:Instance")


def test_no_tunnel_host_without_ec2_server_stack():
    for variant in ("express", "dev-apprunner", "prod"):
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


# --- the availability zone: by zone id, where EC2 offers the type ------------------------------

OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
SUBNET = "aws:ec2/getSubnet:getSubnet"
TUNNEL = {"ec2ServerStack": {"durationHours": 2, "instanceType": "m7i.large"}}


def offered_in(*zone_ids):
    return {OFFERINGS: lambda args: {"instanceTypes": ["m7i.large"] * len(zone_ids), "locations": list(zone_ids),
                                     "locationTypes": ["availability-zone-id"] * len(zone_ids), "id": "us-east-1"}}


def test_the_program_asks_ec2_where_the_type_is_offered_by_zone_id():
    calls = []
    answer = offered_in("use1-az1", "use1-az2")[OFFERINGS]

    def offerings(args):
        calls.append(args)
        return answer(args)

    run = run_program("dev", TUNNEL, call_overrides={OFFERINGS: offerings})
    assert calls == [{"locationType": "availability-zone-id",
                      "filters": [{"name": "instance-type", "values": ["m7i.large"]}]}]
    assert instance(run).inputs["subnetId"] == "subnet-private-a"  # the first private subnet when all offer it


def test_a_zone_without_the_type_is_skipped():
    run = run_program("dev", TUNNEL, call_overrides=offered_in("use1-az2"))
    assert instance(run).inputs["subnetId"] == "subnet-private-b"


def test_the_choice_goes_by_zone_id_not_zone_name():
    """Zone names map to other physical zones in each account: subnet-private-a is in
    us-east-1a, which is use1-az2 in this account."""
    swapped = {"subnet-private-a": ("us-east-1a", "use1-az2"), "subnet-private-b": ("us-east-1b", "use1-az1")}

    def subnet(args):
        name, zone_id = swapped[args["id"]]
        return {"id": args["id"], "availabilityZone": name, "availabilityZoneId": zone_id}

    run = run_program("dev", TUNNEL, call_overrides={**offered_in("use1-az1"), SUBNET: subnet})
    assert instance(run).inputs["subnetId"] == "subnet-private-b"


def test_no_zone_offers_the_type_fails_with_a_clear_message():
    with pytest.raises(Exception) as err:
        run_program("dev", TUNNEL, call_overrides=offered_in("use1-az6"))
    assert ("EC2 instance type m7i.large (redcap:ec2ServerStack.instanceType) is not offered in the availability "
            "zones of the private subnets (use1-az1, use1-az2); AWS offers it in use1-az6. Choose a type offered "
            "there, e.g. t3.medium or m6i.large") in str(err.value)


def test_choose_subnet():
    subnets = [("s-a", "z1"), ("s-b", "z2"), ("s-c", "z3")]
    assert choose_subnet(subnets, ["z3", "z2"], "t3.medium") == "s-b"
    assert choose_subnet(subnets, ["z1", "z2", "z3"], "t3.medium") == "s-a"
    with pytest.raises(ValueError, match="AWS offers it in no zone of this region"):
        choose_subnet(subnets, [], "x9.huge")


def test_docs_show_the_exact_failure():
    from pathlib import Path

    with pytest.raises(ValueError) as err:
        choose_subnet([("subnet-private-a", "use1-az1"), ("subnet-private-b", "use1-az2")], ["use1-az6"], "m7i.large")
    assert str(err.value) in (Path(__file__).resolve().parent.parent / "docs" / "tunnel.md").read_text()
