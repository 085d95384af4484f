"""The runtime contract (components/runtime.py): one environment and one role policy, used by App
Runner, ECS and the tunnel host alike; env var names exactly those of notes/container-contract.md."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import json

import pytest

from compute_support import (VARIANTS, compute_resources, invoke_schema_errors, leaked_secrets, policy_of,
                             resource_schema_errors, run_variant, run_variant_uncached, run_variant_with_calls,
                             statements)
from components.ecs import IDLE_TIMEOUT_SECONDS
from components.runtime import (app_runner_memory_mib, container_environment, environment_list, runtime_role_policy,
                                trusting_forwarded_host)
from container.webtier.sizing import load_web_settings

# notes/container-contract.md, "Environment variables (names are an interface)".
# The names the container's bootstrap reads are the contract: one source for both sides.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))
from bootstrap.settings import OPTIONAL_ENV, REQUIRED_ENV  # noqa: E402

CONTRACT_NAMES = set(REQUIRED_ENV) | set(OPTIONAL_ENV)
REQUIRED = set(REQUIRED_ENV)
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}"
BASE = dict(region="us-east-1", port=8080, php_timezone="UTC", db_auth="iam", db_host="db.example", db_port=3306,
            db_name="redcap", db_secret_id=SECRET_ARN.format("master"), db_app_user="redcap_user",
            db_salt_secret_id=SECRET_ARN.format("salt"), s3_bucket="files", s3_secret_id=SECRET_ARN.format("s3"))


def apprunner_env(run) -> dict[str, str]:
    service = run.one("aws:apprunner/service:Service")
    return service.inputs["sourceConfiguration"]["imageRepository"]["imageConfiguration"]["runtimeEnvironmentVariables"]


def ecs_env(run) -> dict[str, str]:
    definitions = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition").inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in definitions[0]["environment"]}


# -- pure -----------------------------------------------------------------------------------

def test_minimal_environment_has_exactly_the_required_and_explicit_defaults():
    env = container_environment(**BASE)
    assert set(env) == REQUIRED | {"DB_PORT", "DB_AUTH", "DB_APP_USER", "DB_TLS", "PHP_TIMEZONE", "PORT",
                                   "REDCAP_CONFIG_SQL_MODE"}
    assert env["REDCAP_CONFIG_SQL_MODE"] == "onInstall"
    assert set(env) <= CONTRACT_NAMES
    assert env["DB_TLS"] == "verify" and env["DB_AUTH"] == "iam" and list(env) == sorted(env)


def test_optional_parts_appear_only_when_given():
    env = container_environment(**BASE, db_reader_host="ro.example", ses_secret_id=SECRET_ARN.format("ses"),
                                smtp_email="redcap@example.org")
    assert env["DB_READER_HOST"] == "ro.example"
    assert env["SES_CREDENTIALS_SECRET_ID"] == SECRET_ARN.format("ses") and env["SMTP_EMAIL"] == "redcap@example.org"


@pytest.mark.parametrize("change, message", [
    (dict(db_auth="password"), "DB_APP_SECRET_ID goes with DB_AUTH=password"),
    (dict(db_app_secret_id=SECRET_ARN.format("app")), "DB_APP_SECRET_ID goes with DB_AUTH=password"),
    (dict(ses_secret_id=SECRET_ARN.format("ses")), "SES_CREDENTIALS_SECRET_ID and SMTP_EMAIL go together"),
    (dict(ses_secret_id=SECRET_ARN.format("ses"), smtp_email="redcap@localhost"), "not one at localhost"),
    (dict(port=80), "PORT must be above 1024"),
    (dict(php_memory_limit="64M"), "PHP_MEMORY_LIMIT must be a size in M or G from 128M to 16G, not '64M'"),
    (dict(memory_mib=128), "CONTAINER_MEMORY_MIB must be an integer 256..1048576, not '128'"),
    (dict(lb_idle_timeout_seconds=0), "LB_IDLE_TIMEOUT_SECONDS must be an integer 1..86400, not '0'"),
    (dict(config_sql_mode="Apply"), "REDCAP_CONFIG_SQL_MODE must be onInstall or apply, not 'Apply'"),
])
def test_combinations_the_container_would_refuse_fail_at_deploy_time(change, message):
    with pytest.raises(ValueError, match=message):
        container_environment(**{**BASE, **change})


def test_web_tier_sizing_appears_only_when_given():
    env = container_environment(**BASE, memory_mib=4096, php_memory_limit="512M", request_timeout_seconds=4000,
                                lb_idle_timeout_seconds=4000)
    assert {k: env[k] for k in ("CONTAINER_MEMORY_MIB", "PHP_MEMORY_LIMIT", "REQUEST_TIMEOUT_SECONDS",
                                "LB_IDLE_TIMEOUT_SECONDS")} == {
        "CONTAINER_MEMORY_MIB": "4096", "PHP_MEMORY_LIMIT": "512M", "REQUEST_TIMEOUT_SECONDS": "4000",
        "LB_IDLE_TIMEOUT_SECONDS": "4000"}
    assert set(env) <= CONTRACT_NAMES and list(env) == sorted(env)


@pytest.mark.parametrize("memory, mib", [("0.5 GB", 512), ("1 GB", 1024), ("4 GB", 4096), ("12 GB", 12288)])
def test_app_runner_memory_in_mib(memory, mib):
    assert app_runner_memory_mib(memory) == mib


def test_trusting_the_forwarded_host_adds_exactly_that_variable_which_the_container_reads():
    env = container_environment(**BASE)
    assert "TRUST_FORWARDED_HOST" not in env  # never part of the contract itself
    trusting = trusting_forwarded_host(env)
    assert trusting == {**env, "TRUST_FORWARDED_HOST": "true"} and list(trusting) == sorted(trusting)
    assert set(trusting) <= CONTRACT_NAMES
    # The container reads it as the one change: the same web tier, trusting the header.
    parsed, problems = load_web_settings(trusting)
    assert problems == [] and parsed == dataclasses.replace(load_web_settings(env)[0], trust_forwarded_host=True)


def test_environment_list_is_sorted_name_value_pairs():
    assert environment_list({"B": "2", "A": "1"}) == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_role_policy_reads_exactly_the_secrets_decrypts_via_secrets_manager_and_connects_as_the_app_user():
    document = json.loads(runtime_role_policy(
        secret_arns=[SECRET_ARN.format("b"), SECRET_ARN.format("a"), SECRET_ARN.format("a")],
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k", region="us-east-1",
        db_connect_arn="arn:aws:rds-db:us-east-1:123456789012:dbuser:cluster-X/redcap_user"))
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["ReadRuntimeSecrets"]["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert by_sid["ReadRuntimeSecrets"]["Resource"] == [SECRET_ARN.format("a"), SECRET_ARN.format("b")]
    assert by_sid["DecryptRuntimeSecrets"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    assert by_sid["ConnectAsAppUser"]["Resource"] == [
        "arn:aws:rds-db:us-east-1:123456789012:dbuser:cluster-X/redcap_user"]
    assert not any("*" in a for s in document["Statement"] for a in s["Action"])


def test_password_mode_has_no_iam_database_login():
    document = json.loads(runtime_role_policy(secret_arns=[SECRET_ARN.format("a")], kms_key_arn="k",
                                              region="us-east-1", db_connect_arn=None))
    assert [s["Sid"] for s in document["Statement"]] == ["ReadRuntimeSecrets", "DecryptRuntimeSecrets"]


# -- wired into the stacks --------------------------------------------------------------------

def test_dev_app_runner_environment_points_at_the_stack_resources():
    run = run_variant("dev-apprunner")
    env = apprunner_env(run)
    assert set(env) <= CONTRACT_NAMES and REQUIRED <= set(env)
    assert env["DB_SECRET_ID"] == run.outputs["dbMasterSecretArn"]
    assert env["DB_HOST"] == run.outputs["dbEndpoint"]
    assert env["S3_BUCKET"] == run.outputs["appBucketName"]
    assert env["S3_SECRET_ID"] == run.one("aws:secretsmanager/secret:Secret", "s3-credentials").outputs["arn"]
    assert env["DB_SALT_SECRET_ID"] == run.one("aws:secretsmanager/secret:Secret", "redcap-salt").outputs["arn"]
    assert env["SES_CREDENTIALS_SECRET_ID"] == run.outputs["smtpCredentialsSecretArn"]
    assert env["SMTP_EMAIL"] == run.outputs["senderAddress"] == "redcap-admin@example.org"
    assert env["AWS_REGION"] == "us-east-1" and env["DB_AUTH"] == "iam" and env["PORT"] == "8080"
    assert "DB_READER_HOST" not in env  # dev has no readers
    assert "DB_APP_SECRET_ID" not in env
    assert env["REDCAP_ADMIN_SECRET_ID"] == run.outputs["adminPasswordSecretArn"]
    assert env["REDCAP_ADMIN_SECRET_ID"] in statements(policy_of(run.named("redcap-runtime")))[0]["Resource"]
    # The web tier: the instance's memory, App Runner's fixed request timeout, no load balancer.
    assert (env["CONTAINER_MEMORY_MIB"], env["PHP_MEMORY_LIMIT"], env["REQUEST_TIMEOUT_SECONDS"]) == (
        "4096", "256M", "120")
    assert "LB_IDLE_TIMEOUT_SECONDS" not in env


def test_express_environment_sizes_the_web_tier_for_cloudfront_and_the_managed_load_balancer():
    express = run_variant("express").one("aws:ecs/expressGatewayService:ExpressGatewayService")
    env = {e["name"]: e["value"] for e in express.inputs["primaryContainer"]["environments"]}
    # Pulumi.dev.yaml's express block: 2 GB; CloudFront gives a request 60 s, and the managed
    # load balancer keeps idle connections its default 60 s (Apache keeps them 120 s).
    assert (env["CONTAINER_MEMORY_MIB"], env["REQUEST_TIMEOUT_SECONDS"], env["LB_IDLE_TIMEOUT_SECONDS"]) == (
        "2048", "60", "60")
    assert env["PHP_MEMORY_LIMIT"] == "256M"


def test_configuration_sql_modes_are_the_containers():
    from bootstrap.settings import CONFIG_SQL_MODES
    from components.runtime import CONFIG_SQL_MODES as PROGRAM_MODES
    from settings import CONFIGURATION_SQL_MODES

    assert PROGRAM_MODES == CONFIG_SQL_MODES == CONFIGURATION_SQL_MODES


def test_configuration_sql_setting_reaches_the_runtimes():
    assert apprunner_env(run_variant("dev-apprunner"))["REDCAP_CONFIG_SQL_MODE"] == "onInstall"
    assert ecs_env(run_variant("prod"))["REDCAP_CONFIG_SQL_MODE"] == "onInstall"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(VARIANTS, "dev-apply", ("dev", {"configurationSql": "apply", "express": None}))
        mp.setitem(VARIANTS, "express-apply", ("dev", {"configurationSql": "apply"}))
        mp.setitem(VARIANTS, "prod-apply", ("prod", {"configurationSql": "apply", "zoneDelegated": True}))
        assert apprunner_env(run_variant_uncached("dev-apply"))["REDCAP_CONFIG_SQL_MODE"] == "apply"
        assert ecs_env(run_variant_uncached("prod-apply"))["REDCAP_CONFIG_SQL_MODE"] == "apply"
        express = run_variant_uncached("express-apply").one("aws:ecs/expressGatewayService:ExpressGatewayService")
        assert {e["name"]: e["value"] for e in express.inputs["primaryContainer"]["environments"]}[
            "REDCAP_CONFIG_SQL_MODE"] == "apply"


def test_prod_ecs_environment_has_the_reader_and_the_timezone():
    run = run_variant("prod")
    env = ecs_env(run)
    assert set(env) <= CONTRACT_NAMES
    assert env["DB_READER_HOST"] == run.outputs["dbReaderEndpoint"]
    assert env["PHP_TIMEZONE"] == "America/New_York"
    # The web tier: the task's memory; keep-alive and request time follow the ALB's idle timeout.
    task = run.one("aws:ecs/taskDefinition:TaskDefinition")
    assert env["CONTAINER_MEMORY_MIB"] == task.inputs["memory"]
    assert env["LB_IDLE_TIMEOUT_SECONDS"] == env["REQUEST_TIMEOUT_SECONDS"] == str(IDLE_TIMEOUT_SECONDS)
    assert run.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"] == IDLE_TIMEOUT_SECONDS


def test_password_mode_gets_its_own_encrypted_app_user_secret():
    run = run_variant("apprunner-cname")
    env = apprunner_env(run)
    secret = run.one("aws:secretsmanager/secret:Secret", "db-app-secret")
    assert env["DB_AUTH"] == "password" and env["DB_APP_SECRET_ID"] == secret.outputs["arn"]
    assert secret.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"]
    value = run.one("aws:secretsmanager/secretVersion:SecretVersion", "db-app-secret-value")
    assert value.inputs["secretString"]["value"] and "4dabf18193072939515e22adb298388d" in value.inputs["secretString"]
    document = policy_of(run.named("redcap-runtime"))
    assert secret.outputs["arn"] in statements(document)[0]["Resource"]
    assert not any("rds-db:connect" in s["Action"] for s in statements(document))


@pytest.mark.parametrize("variant, role, grant", [
    ("dev-apprunner", "redcap-instance-role", "redcap-runtime"),
    ("prod", "redcap-task-role", "redcap-runtime"),
    ("apprunner-cname", "redcap-tunnel-role", "redcap-tunnel-runtime"),
    ("express", "redcap-task-role", "redcap-runtime"),
])
def test_every_runtime_role_carries_the_same_contract_policy(variant, role, grant):
    run = run_variant(variant)
    runtime = run.named(grant)
    assert runtime.inputs["role"] == run.named(role).id
    document = policy_of(runtime)
    secrets = statements(document)[0]["Resource"]
    assert run.outputs["dbMasterSecretArn"] in secrets and run.outputs["smtpCredentialsSecretArn"] in secrets
    assert not any("s3:" in a for s in statements(document) for a in s["Action"])  # REDCap uses its key pair


@pytest.mark.parametrize("variant", ["dev-apprunner", "prod", "apprunner-cname", "ecs-local", "express",
                                     "express-zone-tunnel"])
def test_no_secret_value_in_any_environment_task_definition_or_user_data(variant):
    run = run_variant(variant)
    carriers = (run.of_type("aws:apprunner/service:Service") + run.of_type("aws:ecs/taskDefinition:TaskDefinition")
                + run.of_type("aws:ec2/instance:Instance")
                + run.of_type("aws:ecs/expressGatewayService:ExpressGatewayService"))
    assert carriers
    for res in carriers:
        assert leaked_secrets(res.inputs) == [], res.name


def test_runtime_security_group_is_the_one_the_database_admits():
    run = run_variant("prod")
    app_sg = run.named("redcap-app")
    ingress = run.named("redcap-database-from-app")
    service = run.one("aws:ecs/service:Service")
    assert ingress.inputs["referencedSecurityGroupId"] == app_sg.id
    assert app_sg.id in service.inputs["networkConfiguration"]["securityGroups"]


# -- every argument as the installed pulumi-aws 7 declares it -----------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_compute_resource_inputs_are_pulumi_aws_7_arguments_of_the_declared_types(variant):
    """The mocks take any key and any value; AWS does not. Every nested key of every compute
    resource is an argument of its input type, and every scalar has the declared type."""
    resources = compute_resources(run_variant(variant))
    assert resources
    assert [e for res in resources for e in resource_schema_errors(res)] == []


@pytest.mark.parametrize("variant", ["dev-apprunner", "ecs-local", "express"])
def test_provider_function_calls_use_the_declared_argument_types(variant):
    _, calls = run_variant_with_calls(variant)
    assert any(token == "aws:s3/getObject:getObject" for token, _ in calls) == (variant in ("dev-apprunner", "express"))
    assert [e for token, args in calls for e in invoke_schema_errors(token, args)] == []
