"""The container's runtime contract, built once for App Runner, ECS and the tunnel host.

`runtime_contract()` turns the components' outputs into exactly what every runtime of the
image needs (notes/container-contract.md):

- the environment: names of the contract, values that are endpoints, names and secret *ARNs*
  (the bootstrap reads the secrets at start; no secret value ever enters a task definition,
  a service configuration, user data or Pulumi state through this path);
- the policy of the runtime's role: read exactly those secrets, decrypt them with the stack
  key (only through Secrets Manager), `rds-db:connect` as the application user (IAM mode);
- the security group that may reach the database;
- what the container's web tier sizes itself by (container/README.md, "Web tier"): the task's or
  instance's memory, PHP's memory_limit, the platform's request timeout and, behind a load
  balancer, that load balancer's idle timeout.

REDCap reaches S3 with its own access key pair (its S3 integration cannot use a role), so the
role gets no S3 permission. With `dbAuth: password` the application user's password lives in a
secret of its own (`DatabaseAppLogin`), which the bootstrap uses to create that user.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

import pulumi
import pulumi_random as random

from components import policies
from components.context import AwsContext
from components.secrets import encrypted_secret
from container.webtier.sizing import load_web_settings

DEFAULT_DB_PORT = 3306
# App Runner ends every HTTP request after 120 s, reading the request and writing the response
# included (App Runner developer guide, "Developing application code for App Runner").
APP_RUNNER_REQUEST_TIMEOUT_SECONDS = 120
# An Application Load Balancer's idle timeout unless set otherwise (ELB guide, "Edit attributes
# for your Application Load Balancer"): Express Mode's managed load balancer keeps it.
ALB_DEFAULT_IDLE_TIMEOUT_SECONDS = 60
# REDCAP_CONFIG_SQL_MODE values (container/bootstrap/settings.py CONFIG_SQL_MODES).
CONFIG_SQL_MODES = ("onInstall", "apply")


@dataclass(frozen=True)
class RuntimeArgs:
    context: AwsContext
    port: int
    php_timezone: str
    db_auth: Literal["iam", "password"]
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[float]
    db_name: str
    db_master_secret_arn: pulumi.Input[str]
    db_app_user: str
    db_app_user_arn: pulumi.Input[str]
    salt_secret_arn: pulumi.Input[str]
    s3_bucket: pulumi.Input[str]
    s3_secret_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    # Set only when the cluster has readers (REDCap's read-replica mode).
    db_reader_host: Optional[pulumi.Input[str]] = None
    # Only with db_auth == "password".
    db_app_secret_arn: Optional[pulumi.Input[str]] = None
    # SES SMTP credentials and the sender address (Email.sender_address); msmtp is configured only
    # when both are set, and the sender is then also REDCap's universal From address wherever
    # the configuration SQL is applied (container/bootstrap/sender.py), so mail is From the
    # DKIM-signed domain and DMARC aligns.
    ses_secret_arn: Optional[pulumi.Input[str]] = None
    smtp_email: Optional[str] = None
    # site_admin's initial password, used once on a new database.
    admin_password_secret_arn: Optional[pulumi.Input[str]] = None
    # redcap:configurationSql: onInstall, or apply (also to a REDCap installation found).
    configuration_sql: str = "onInstall"
    # The web tier's sizing: memory of the task or App Runner instance (MiB), PHP's memory_limit
    # (phpMemoryLimit), the platform's request timeout, and the idle timeout of the load
    # balancer in front when there is one (ECS, Express). Unset: the container's defaults.
    memory_mib: Optional[int] = None
    php_memory_limit: Optional[str] = None
    request_timeout_seconds: Optional[int] = None
    lb_idle_timeout_seconds: Optional[int] = None


def app_runner_memory_mib(memory: str) -> int:
    """App Runner's instance memory as settings spell it ('4 GB', '0.5 GB') in MiB."""
    return int(float(memory.removesuffix("GB").strip()) * 1024)


@dataclass(frozen=True)
class RuntimeContract:
    environment: pulumi.Output[dict[str, str]]
    role_policy: pulumi.Output[str]
    secret_arns: pulumi.Output[list[str]]
    security_group_id: pulumi.Input[str]
    port: int

    def environment_list(self) -> pulumi.Output[list[dict[str, str]]]:
        """[{name, value}] sorted by name (ECS container definitions)."""
        return self.environment.apply(environment_list)


def container_environment(*, region: str, port: int, php_timezone: str, db_auth: str, db_host: str,
                          db_port: int, db_name: str, db_secret_id: str, db_app_user: str,
                          db_salt_secret_id: str, s3_bucket: str, s3_secret_id: str,
                          db_reader_host: Optional[str] = None, db_app_secret_id: Optional[str] = None,
                          ses_secret_id: Optional[str] = None, smtp_email: Optional[str] = None,
                          admin_secret_id: Optional[str] = None,
                          config_sql_mode: str = "onInstall", memory_mib: Optional[int] = None,
                          php_memory_limit: Optional[str] = None, request_timeout_seconds: Optional[int] = None,
                          lb_idle_timeout_seconds: Optional[int] = None) -> dict[str, str]:
    """The environment of the contract, sorted by name. Raises on combinations the container
    would refuse at start (better to fail at `pulumi up` than in a crash-looping service)."""
    if db_auth not in ("iam", "password"):
        raise ValueError(f"db_auth must be iam or password, not {db_auth!r}")
    if (db_auth == "password") != (db_app_secret_id is not None):
        raise ValueError("DB_APP_SECRET_ID goes with DB_AUTH=password and only with it")
    if (ses_secret_id is None) != (smtp_email is None):
        raise ValueError("SES_CREDENTIALS_SECRET_ID and SMTP_EMAIL go together")
    if smtp_email is not None and smtp_email.split("@")[-1].lower() == "localhost":
        raise ValueError("SMTP_EMAIL must be a real sender address, not one at localhost")
    if not 1024 < port <= 65535:
        raise ValueError(f"PORT must be above 1024 (the image runs as www-data), not {port}")
    if config_sql_mode not in CONFIG_SQL_MODES:
        raise ValueError(f"REDCAP_CONFIG_SQL_MODE must be onInstall or apply, not {config_sql_mode!r}")
    env = {
        "AWS_REGION": region,
        "DB_HOST": db_host,
        "DB_PORT": str(int(db_port)),
        "DB_NAME": db_name,
        "DB_SECRET_ID": db_secret_id,
        "DB_AUTH": db_auth,
        "DB_APP_USER": db_app_user,
        "DB_TLS": "verify",
        "DB_SALT_SECRET_ID": db_salt_secret_id,
        "S3_BUCKET": s3_bucket,
        "S3_SECRET_ID": s3_secret_id,
        "PHP_TIMEZONE": php_timezone,
        "PORT": str(port),
        # Explicit even at its default: the task definition shows whether this stage may
        # apply the configuration SQL to a REDCap installation it finds.
        "REDCAP_CONFIG_SQL_MODE": config_sql_mode,
    }
    if db_reader_host:
        env["DB_READER_HOST"] = db_reader_host
    if db_app_secret_id is not None:
        env["DB_APP_SECRET_ID"] = db_app_secret_id
    if ses_secret_id is not None and smtp_email is not None:
        env["SES_CREDENTIALS_SECRET_ID"] = ses_secret_id
        env["SMTP_EMAIL"] = smtp_email
    if admin_secret_id is not None:
        env["REDCAP_ADMIN_SECRET_ID"] = admin_secret_id
    web_tier = {"CONTAINER_MEMORY_MIB": memory_mib, "PHP_MEMORY_LIMIT": php_memory_limit,
                "REQUEST_TIMEOUT_SECONDS": request_timeout_seconds, "LB_IDLE_TIMEOUT_SECONDS": lb_idle_timeout_seconds}
    env.update({k: str(v) for k, v in web_tier.items() if v is not None})
    # The container's own rules for these (container/webtier/sizing.py).
    problems = load_web_settings(env)[1]
    if problems:
        raise ValueError("; ".join(f"{p.key} must be {p.allowed}, not {p.value!r}" for p in problems))
    return dict(sorted(env.items()))


def environment_list(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def trusting_forwarded_host(env: dict[str, str]) -> dict[str, str]:
    """The contract's environment for a container that the internet reaches only through a
    proxy that writes X-Forwarded-Host itself, from the viewer's Host (Express: CloudFront's
    function): the container then takes the site's host name from that header
    (container/README.md, TRUST_FORWARDED_HOST). Not part of the contract itself, which ECS,
    App Runner and the tunnel host use as it is: there a client's own X-Forwarded-Host would
    reach the container, and with it the host name of REDCap's password-reset and survey links."""
    return dict(sorted({**env, "TRUST_FORWARDED_HOST": "true"}.items()))


def runtime_role_policy(*, secret_arns: Sequence[str], kms_key_arn: str, region: str,
                        db_connect_arn: Optional[str]) -> str:
    """Least privilege of the runtime principal (App Runner instance role, ECS task role,
    tunnel host role)."""
    statements = [
        policies.allow(["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                       sorted(set(secret_arns)), sid="ReadRuntimeSecrets"),
        # The secrets are encrypted with the stack key; decrypting is allowed only on behalf
        # of Secrets Manager, not for anything else the key protects.
        policies.allow(["kms:Decrypt"], [kms_key_arn], sid="DecryptRuntimeSecrets",
                       Condition={"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}),
    ]
    if db_connect_arn:
        statements.append(policies.allow(["rds-db:connect"], [db_connect_arn], sid="ConnectAsAppUser"))
    return policies.document(statements)


def runtime_contract(args: RuntimeArgs) -> RuntimeContract:
    """Everything a runtime of the image needs, from the components' outputs."""
    ctx = args.context
    secret_inputs: list[pulumi.Input[str]] = [args.db_master_secret_arn, args.salt_secret_arn, args.s3_secret_arn]
    if args.db_app_secret_arn is not None:
        secret_inputs.append(args.db_app_secret_arn)
    if args.ses_secret_arn is not None:
        secret_inputs.append(args.ses_secret_arn)
    if args.admin_password_secret_arn is not None:
        secret_inputs.append(args.admin_password_secret_arn)
    secret_arns = pulumi.Output.all(*secret_inputs).apply(lambda arns: sorted(set(arns)))

    values: dict[str, Any] = {
        "db_host": args.db_host, "db_port": args.db_port, "db_secret_id": args.db_master_secret_arn,
        "db_salt_secret_id": args.salt_secret_arn, "s3_bucket": args.s3_bucket, "s3_secret_id": args.s3_secret_arn,
        "db_reader_host": args.db_reader_host, "db_app_secret_id": args.db_app_secret_arn,
        "ses_secret_id": args.ses_secret_arn, "admin_secret_id": args.admin_password_secret_arn,
    }
    environment = pulumi.Output.all(**values).apply(lambda v: container_environment(
        region=ctx.region, port=args.port, php_timezone=args.php_timezone, db_auth=args.db_auth,
        db_name=args.db_name, db_app_user=args.db_app_user, smtp_email=args.smtp_email,
        config_sql_mode=args.configuration_sql,
        memory_mib=args.memory_mib, php_memory_limit=args.php_memory_limit,
        request_timeout_seconds=args.request_timeout_seconds, lb_idle_timeout_seconds=args.lb_idle_timeout_seconds,
        db_port=int(v["db_port"] or DEFAULT_DB_PORT),
        **{k: v[k] for k in values if k != "db_port"}))

    role_policy = pulumi.Output.all(secret_arns, args.kms_key_arn, args.db_app_user_arn).apply(
        lambda a: runtime_role_policy(secret_arns=a[0], kms_key_arn=a[1], region=ctx.region,
                                      db_connect_arn=a[2] if args.db_auth == "iam" else None))
    return RuntimeContract(environment=environment, role_policy=role_policy, secret_arns=secret_arns,
                           security_group_id=args.security_group_id, port=args.port)


class DatabaseAppLogin(pulumi.ComponentResource):
    """`dbAuth: password`: the application user's credentials, JSON {username, password}, in a
    secret encrypted with the stack key. The password comes from pulumi-random (kept in state,
    encrypted); the container's bootstrap creates or updates the user with it."""

    secret_arn: pulumi.Output[str]

    def __init__(self, name: str, *, username: str, kms_key_arn: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:runtime:DatabaseAppLogin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Letters and digits only: no quoting issues anywhere the password travels.
        password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=child)
        secret = encrypted_secret(
            f"{name}-secret", kms_key_arn=kms_key_arn,
            description=f"REDCap database application user {username} (dbAuth: password)",
            value=password.result.apply(lambda p: json.dumps({"password": p, "username": username}, sort_keys=True)),
            opts=child)
        self.secret_arn = secret.arn
        self.register_outputs({"secretArn": self.secret_arn})
