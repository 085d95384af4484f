"""Environment validation of the start-time bootstrap: every missing or malformed variable is
reported in one error with its name, the bad value, what is allowed and an example, before
anything is fetched or written."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.errors import ConfigError  # noqa: E402
from bootstrap.settings import OPTIONAL_ENV, REQUIRED_ENV, load_settings  # noqa: E402
from fixtures.bootstrap_env import Case, assert_no_secret_leak  # noqa: E402
from fixtures.redcap_fixture import STOCK_DATABASE_PHP  # noqa: E402

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redcap-db-AbCdEf"

VALID = {
    "AWS_REGION": "us-east-1",
    "DB_HOST": "redcap.cluster-abc.us-east-1.rds.amazonaws.com",
    "DB_NAME": "redcap",
    "DB_SECRET_ID": ARN,
    "DB_SALT_SECRET_ID": ARN.replace("redcap-db", "salt"),
    "S3_BUCKET": "prod-redcap-app-files",
    "S3_SECRET_ID": ARN.replace("redcap-db", "s3"),
}


def errors_for(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


def test_contract_names():
    assert set(REQUIRED_ENV) == set(VALID)
    for name in ("DB_PORT", "DB_AUTH", "DB_APP_USER", "DB_APP_SECRET_ID", "DB_READER_HOST",
                 "DB_TLS", "SES_CREDENTIALS_SECRET_ID", "SMTP_EMAIL", "PHP_TIMEZONE", "PORT",
                 "TLS_PORT", "AWS_ENDPOINT_URL", "BOOTSTRAP_DB_WAIT_SECONDS",
                 "REDCAP_ADMIN_SECRET_ID", "REDCAP_CONFIG_SQL_MODE", "STATUS_PORT", "PHP_MEMORY_LIMIT",
                 "REQUEST_TIMEOUT_SECONDS", "LB_IDLE_TIMEOUT_SECONDS", "CONTAINER_MEMORY_MIB",
                 "TRUST_FORWARDED_HOST"):
        assert name in OPTIONAL_ENV


def test_defaults():
    s = load_settings(VALID)
    assert (s.db_port, s.db_auth, s.db_app_user, s.db_tls, s.php_timezone, s.port) == (
        3306, "iam", "redcap_user", "verify", "UTC", 8080)
    assert s.db_reader_host is None and s.ses_secret_id is None and s.tls_port is None
    assert s.redcap_root == "/var/www/html"
    assert s.config_sql_path == "/etc/redcap/redcap-config.sql"
    assert s.msmtprc_path == "/etc/msmtprc"
    assert s.db_wait_seconds == 120
    assert s.config_sql_mode == "onInstall"


def test_iam_authentication_needs_tls():
    # The IAM user is created REQUIRE SSL and RDS accepts IAM tokens over TLS only: with
    # DB_TLS=off the container would start "healthy" (the health check touches no database)
    # while every REDCap page fails to connect.
    message = errors_for({**VALID, "DB_TLS": "off"})
    assert "DB_TLS: got 'off'" in message and "DB_AUTH=iam" in message
    assert load_settings({**VALID, "DB_TLS": "off", "DB_AUTH": "password",
                          "DB_APP_SECRET_ID": ARN}).db_tls == "off"


@pytest.mark.parametrize("key", REQUIRED_ENV)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_each_missing_required_variable(key, value):
    env = dict(VALID)
    if value is None:
        del env[key]
    else:
        env[key] = value
    message = errors_for(env)
    assert f"{key}: missing; allowed: " in message
    assert "example: " in message
    assert "(1 problem;" in message


MALFORMED = [
    ("AWS_REGION", "US East", "an AWS region name"),
    ("DB_HOST", "db host;drop", "a DNS host name or IPv4 address"),
    ("DB_PORT", "33o6", "an integer 1..65535"),
    ("DB_PORT", "70000", "an integer 1..65535"),
    ("DB_NAME", "red-cap`", "1-64 characters"),
    ("DB_SECRET_ID", "redcap-db-secret", "a Secrets Manager secret ARN"),
    ("DB_AUTH", "token", "iam or password"),
    ("DB_APP_USER", "1user'", "1-32 characters"),
    ("DB_READER_HOST", "reader host", "a DNS host name or IPv4 address"),
    ("DB_TLS", "on", "verify or off"),
    ("DB_SALT_SECRET_ID", "arn:aws:s3:::bucket", "a Secrets Manager secret ARN"),
    ("S3_BUCKET", "Bad_Bucket", "an S3 bucket name"),
    ("S3_SECRET_ID", "arn:aws:secretsmanager:us-east-1:12:secret:x",
     "a Secrets Manager secret ARN"),
    ("SES_CREDENTIALS_SECRET_ID", "ses-secret", "a Secrets Manager secret ARN"),
    ("REDCAP_ADMIN_SECRET_ID", "redcap-admin-password", "a Secrets Manager secret ARN"),
    ("SMTP_EMAIL", "localhost", "never localhost"),
    ("SMTP_EMAIL", "redcap@localhost", "never localhost"),
    ("PHP_TIMEZONE", "Mars/Olympus", "an IANA time zone name"),
    ("PORT", "80", "an integer 1025..65535"),
    ("TLS_PORT", "443", "an integer 1025..65535"),
    ("AWS_ENDPOINT_URL", "ftp://x", "an http(s) URL"),
    ("BOOTSTRAP_DB_WAIT_SECONDS", "soon", "an integer 1..3600"),
    # The web tier's variables (container/webtier/sizing.py), checked here before anything is written.
    ("STATUS_PORT", "80", "an integer 1025..65535"),
    ("PHP_MEMORY_LIMIT", "64M", "a size in M or G from 128M to 16G"),
    ("PHP_MEMORY_LIMIT", "-1", "a size in M or G from 128M to 16G"),
    ("REQUEST_TIMEOUT_SECONDS", "2m", "an integer 1..86400"),
    ("LB_IDLE_TIMEOUT_SECONDS", "0", "an integer 1..86400"),
    ("CONTAINER_MEMORY_MIB", "4 GB", "an integer 256..1048576"),
    ("TRUST_FORWARDED_HOST", "yes", "true or false"),
    ("REDCAP_ROOT", "var/www/html", "an absolute path"),
    ("REDCAP_CONFIG_SQL", "redcap.sql", "an absolute path"),
    ("MSMTPRC_PATH", "msmtprc", "an absolute path"),
    ("REDCAP_CONFIG_SQL_MODE", "always", "onInstall ("),
]


@pytest.mark.parametrize("key,value,allowed", MALFORMED, ids=[f"{k}={v}" for k, v, _ in MALFORMED])
def test_each_malformed_variable(key, value, allowed):
    env = {**VALID, key: value}
    if key == "SMTP_EMAIL":
        env["SES_CREDENTIALS_SECRET_ID"] = ARN
    message = errors_for(env)
    assert f"{key}: got {value!r}; allowed: " in message
    assert allowed in message
    assert "example: " in message


def test_coupled_variables():
    # password mode needs the app secret; IAM mode must not have one (it would be ignored).
    assert "DB_APP_SECRET_ID: missing; allowed: a Secrets Manager secret ARN; required when " \
           "DB_AUTH=password" in errors_for({**VALID, "DB_AUTH": "password"})
    assert "DB_APP_SECRET_ID: got" in errors_for({**VALID, "DB_APP_SECRET_ID": ARN})
    # SES credentials need a sender address (the original fell back to `from localhost`).
    assert "SMTP_EMAIL: missing" in errors_for({**VALID, "SES_CREDENTIALS_SECRET_ID": ARN})
    assert "TLS_PORT: got '8080'; allowed: a port different from PORT" in errors_for(
        {**VALID, "TLS_PORT": "8080"})
    # The status page's default port, 8082, is taken by PORT or TLS_PORT.
    assert "STATUS_PORT: got '8082'; allowed: a port different from PORT and TLS_PORT; example: 8082" in \
        errors_for({**VALID, "PORT": "8082"})
    assert "STATUS_PORT: got '9000'; allowed: a port different from PORT and TLS_PORT" in errors_for(
        {**VALID, "TLS_PORT": "9000", "STATUS_PORT": "9000"})


def test_all_problems_in_one_error():
    env = {"DB_HOST": "bad host", "DB_TLS": "maybe"}
    message = errors_for(env)
    for key in ("AWS_REGION", "DB_HOST", "DB_NAME", "DB_SECRET_ID", "DB_SALT_SECRET_ID",
                "S3_BUCKET", "S3_SECRET_ID", "DB_TLS"):
        assert f"  - {key}: " in message
    assert "(8 problems;" in message


def test_valid_optional_values():
    s = load_settings({**VALID, "DB_PORT": "3307", "DB_AUTH": "password",
                       "DB_APP_SECRET_ID": ARN, "DB_READER_HOST": "10.0.0.7", "DB_TLS": "off",
                       "SES_CREDENTIALS_SECRET_ID": ARN, "SMTP_EMAIL": "o'brien@example.org",
                       "PHP_TIMEZONE": "Asia/Tokyo", "PORT": "8080", "TLS_PORT": "8081",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
                       "BOOTSTRAP_DB_WAIT_SECONDS": "5"})
    assert (s.db_port, s.db_auth, s.db_reader_host, s.tls_port, s.db_wait_seconds) == (
        3307, "password", "10.0.0.7", 8081, 5.0)
    assert s.db_app_user_explicit is False
    # Platforms pass empty strings for unset values: empty optional = unset.
    s = load_settings({**VALID, "DB_READER_HOST": "", "SES_CREDENTIALS_SECRET_ID": "",
                       "SMTP_EMAIL": "", "TLS_PORT": "", "REDCAP_ADMIN_SECRET_ID": ""})
    assert s.db_reader_host is None and s.ses_secret_id is None and s.tls_port is None
    assert s.admin_secret_id is None
    assert load_settings({**VALID, "REDCAP_ADMIN_SECRET_ID": ARN}).admin_secret_id == ARN
    # The web tier's variables as the ECS runtime sets them (read by the CMD, not kept here).
    load_settings({**VALID, "PHP_MEMORY_LIMIT": "1G", "REQUEST_TIMEOUT_SECONDS": "4000",
                   "LB_IDLE_TIMEOUT_SECONDS": "4000", "CONTAINER_MEMORY_MIB": "4096", "STATUS_PORT": "9000"})
    # ... and as the Express runtime sets them.
    load_settings({**VALID, "REQUEST_TIMEOUT_SECONDS": "60", "LB_IDLE_TIMEOUT_SECONDS": "60",
                   "TRUST_FORWARDED_HOST": "true"})


@pytest.mark.parametrize("value", ["onInstall", "apply", "", "  "])
def test_configuration_sql_mode(value):
    assert load_settings({**VALID, "REDCAP_CONFIG_SQL_MODE": value}).config_sql_mode == \
        (value.strip() or "onInstall")


@pytest.mark.parametrize("value", ["Apply", "APPLY", "on-install", "yes", "apply "])
def test_configuration_sql_mode_is_spelled_exactly(value):
    # Only the exact word may reset a production site's settings; a near miss is no default.
    assert errors_for({**VALID, "REDCAP_CONFIG_SQL_MODE": value}) == (
        "invalid container environment (1 problem; see container/README.md):\n"
        f"  - REDCAP_CONFIG_SQL_MODE: got {value!r}; allowed: onInstall (apply the "
        "configuration SQL only to a database on which this container installed REDCap) or "
        "apply (also to a database where REDCap was already installed, once per file); "
        "example: apply")


def test_subprocess_exits_2_before_anything_is_written(mariadb, moto_server, tmp_path):
    case = Case(mariadb, moto_server, tmp_path)
    case.env.pop("DB_NAME")
    case.env["DB_PORT"] = "port"
    case.env["SMTP_EMAIL"] = "postmaster@localhost"
    result = case.run("touch", str(tmp_path / "cmd-ran"))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "invalid container environment (3 problems" in out
    assert "DB_NAME: missing" in out and "DB_PORT: got 'port'" in out
    assert "SMTP_EMAIL: got 'postmaster@localhost'" in out
    assert "Traceback" not in out
    assert case.database_php.read_text() == STOCK_DATABASE_PHP
    assert not case.msmtprc.exists() and not (tmp_path / "cmd-ran").exists()
    assert_no_secret_leak(out)


def test_missing_config_sql_file_fails_before_writing(mariadb, moto_server, tmp_path):
    case = Case(mariadb, moto_server, tmp_path)
    case.env["REDCAP_CONFIG_SQL"] = str(tmp_path / "absent.sql")
    result = case.run()
    assert result.returncode == 5, result.stdout + result.stderr
    assert f"cannot read configuration SQL {tmp_path / 'absent.sql'} (REDCAP_CONFIG_SQL)" \
        in result.stdout
    assert case.database_php.read_text() == STOCK_DATABASE_PHP
