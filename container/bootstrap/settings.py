"""Environment contract of the container (/work/notes/container-contract.md, container/README.md).

``load_settings(env)`` validates every variable and raises ONE ConfigError listing each missing
or malformed one (name, offending value, what is allowed, an example), before anything is
fetched or written. Secret *values* never pass through here: only the ARNs that name them.
"""
from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Mapping

from webtier.sizing import (DEFAULT_PHP_MEMORY_LIMIT, DEFAULT_REQUEST_TIMEOUT_SECONDS, DEFAULT_STATUS_PORT,
                            load_web_settings)

from .errors import ConfigError, problem

# Names are an interface: the Pulumi program sets them, the Dockerfile/Apache side reads some.
REQUIRED_ENV: tuple[str, ...] = (
    "AWS_REGION",
    "DB_HOST",
    "DB_NAME",
    "DB_SECRET_ID",
    "DB_SALT_SECRET_ID",
    "S3_BUCKET",
    "S3_SECRET_ID",
)

# Optional variables and their defaults (None = no default; the feature is off when unset).
OPTIONAL_ENV: dict[str, str | None] = {
    "DB_PORT": "3306",
    "DB_AUTH": "iam",
    "DB_APP_USER": "redcap_user",
    "DB_APP_SECRET_ID": None,  # required when DB_AUTH=password, forbidden otherwise
    "DB_READER_HOST": None,
    "DB_TLS": "verify",
    "SES_CREDENTIALS_SECRET_ID": None,
    "SMTP_EMAIL": None,  # required when SES_CREDENTIALS_SECRET_ID is set
    # Initial site_admin password (plain-string secret), used only when the configuration SQL
    # is first applied to a database and that SQL created no site_admin login of its own.
    "REDCAP_ADMIN_SECRET_ID": None,
    # When the configuration SQL (and the initial site_admin login) may be applied; the stage
    # setting redcap:configurationSql, same values (docs/configuration-sql.md).
    "REDCAP_CONFIG_SQL_MODE": "onInstall",
    "PHP_TIMEZONE": "UTC",
    "PORT": "8080",
    "TLS_PORT": None,
    # The web tier (container/webtier, read by the CMD; checked here as well so that a mistake
    # is reported before anything is written).
    "STATUS_PORT": DEFAULT_STATUS_PORT,
    "PHP_MEMORY_LIMIT": DEFAULT_PHP_MEMORY_LIMIT,
    "REQUEST_TIMEOUT_SECONDS": str(DEFAULT_REQUEST_TIMEOUT_SECONDS),
    "LB_IDLE_TIMEOUT_SECONDS": None,
    "CONTAINER_MEMORY_MIB": None,
    # Only behind a proxy that writes X-Forwarded-Host itself (Express's CloudFront).
    "TRUST_FORWARDED_HOST": "false",
    "AWS_ENDPOINT_URL": None,
    # Operational knobs of the bootstrap itself (tests shrink the wait and move the paths).
    "BOOTSTRAP_DB_WAIT_SECONDS": "120",
    "REDCAP_ROOT": "/var/www/html",
    "REDCAP_CONFIG_SQL": "/etc/redcap/redcap-config.sql",
    "MSMTPRC_PATH": "/etc/msmtprc",
}

SHARE_DIR = "/usr/local/share/redcap"
RDS_CA_BUNDLE = f"{SHARE_DIR}/rds-ca-bundle.pem"
RDS_IAM_AUTH_PHP = f"{SHARE_DIR}/rds_iam_auth.php"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
DB_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
DB_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
SECRET_ARN_RE = re.compile(
    r"^arn:aws(?:-[a-z]+)*:secretsmanager:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):\d{12}"
    r":secret:[A-Za-z0-9/_+=.@-]{1,512}$"
)
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$"
)
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[^\s]*)?$")
TZ_RE = re.compile(r"^(?:UTC|[A-Za-z_]+(?:/[A-Za-z0-9_+-]+){1,2})$")

EXAMPLE_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redcap-db-AbCdEf"

# REDCAP_CONFIG_SQL_MODE. onInstall: only on a database whose REDCap this bootstrap installed;
# apply: also on a database where REDCap was already installed (once per file).
CONFIG_SQL_ON_INSTALL = "onInstall"
CONFIG_SQL_APPLY = "apply"
CONFIG_SQL_MODES = (CONFIG_SQL_ON_INSTALL, CONFIG_SQL_APPLY)
CONFIG_SQL_MODE_ALLOWED = (
    "onInstall (apply the configuration SQL only to a database on which this container "
    "installed REDCap) or apply (also to a database where REDCap was already installed, once "
    "per file)")


@dataclass(frozen=True)
class Settings:
    aws_region: str
    db_host: str
    db_port: int
    db_name: str
    db_secret_id: str
    db_auth: str  # "iam" or "password"
    db_app_user: str
    db_app_user_explicit: bool  # DB_APP_USER was set (else the default or the app secret wins)
    db_app_secret_id: str | None
    db_reader_host: str | None
    db_tls: str  # "verify" or "off"
    db_salt_secret_id: str
    s3_bucket: str
    s3_secret_id: str
    ses_secret_id: str | None
    smtp_email: str | None
    admin_secret_id: str | None
    config_sql_mode: str  # one of CONFIG_SQL_MODES
    php_timezone: str
    port: int
    tls_port: int | None
    aws_endpoint_url: str | None
    db_wait_seconds: float
    redcap_root: str
    config_sql_path: str
    msmtprc_path: str


def _get(env: Mapping[str, str], key: str) -> str | None:
    """Value of key, with empty or blank treated as unset (platforms pass empty strings)."""
    value = env.get(key)
    if value is None or value.strip() == "":
        return None
    return value


def _valid_timezone(name: str) -> bool:
    if not TZ_RE.match(name):
        return False
    zones = zoneinfo.available_timezones()
    # A slim image may lack tzdata; PHP has its own zone database, so the shape check suffices.
    return not zones or name in zones


def _int_in_range(raw: str, low: int, high: int) -> int | None:
    if not re.fullmatch(r"\d{1,6}", raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the environment; raise one ConfigError naming every problem."""
    problems: list[str] = []

    def required(key: str, pattern: re.Pattern[str], allowed: str, example: str) -> str:
        value = _get(env, key)
        if value is None:
            problems.append(problem(key, None, allowed, example))
            return ""
        if not pattern.match(value):
            problems.append(problem(key, value, allowed, example))
        return value

    def optional(key: str, pattern: re.Pattern[str], allowed: str, example: str) -> str | None:
        value = _get(env, key)
        if value is not None and not pattern.match(value):
            problems.append(problem(key, value, allowed, example))
        return value

    def choice(key: str, choices: tuple[str, ...]) -> str:
        value = _get(env, key) or str(OPTIONAL_ENV[key])
        if value not in choices:
            problems.append(problem(key, value, " or ".join(choices), choices[0]))
        return value

    def port_number(key: str, low: int, example: str) -> int | None:
        raw = _get(env, key) or OPTIONAL_ENV.get(key)
        if raw is None:
            return None
        value = _int_in_range(raw, low, 65535)
        if value is None:
            problems.append(problem(key, raw, f"an integer {low}..65535", example))
        return value

    arn_allowed = "a Secrets Manager secret ARN"
    host_allowed = "a DNS host name or IPv4 address"
    region = required("AWS_REGION", REGION_RE, "an AWS region name", "us-east-1")
    db_host = required("DB_HOST", HOST_RE, host_allowed,
                       "redcap.cluster-abc.us-east-1.rds.amazonaws.com")
    db_port = port_number("DB_PORT", 1, "3306")
    db_name = required("DB_NAME", DB_NAME_RE, "1-64 characters A-Z a-z 0-9 _", "redcap")
    db_secret_id = required("DB_SECRET_ID", SECRET_ARN_RE, arn_allowed, EXAMPLE_ARN)
    db_auth = choice("DB_AUTH", ("iam", "password"))
    app_user_raw = optional("DB_APP_USER", DB_USER_RE,
                            "1-32 characters A-Z a-z 0-9 _, not starting with a digit",
                            "redcap_user")
    db_app_secret_id = optional("DB_APP_SECRET_ID", SECRET_ARN_RE, arn_allowed, EXAMPLE_ARN)
    if db_auth == "password" and db_app_secret_id is None:
        problems.append(problem("DB_APP_SECRET_ID", None,
                                f"{arn_allowed}; required when DB_AUTH=password", EXAMPLE_ARN))
    if db_auth == "iam" and db_app_secret_id is not None:
        problems.append(problem("DB_APP_SECRET_ID", db_app_secret_id,
                                "unset when DB_AUTH=iam (IAM tokens replace the password)",
                                "DB_AUTH=password DB_APP_SECRET_ID=" + EXAMPLE_ARN))
    db_reader_host = optional("DB_READER_HOST", HOST_RE, host_allowed + " (only with readers)",
                              "redcap.cluster-ro-abc.us-east-1.rds.amazonaws.com")
    db_tls = choice("DB_TLS", ("verify", "off"))
    if db_auth == "iam" and db_tls == "off":
        # RDS accepts IAM tokens over TLS only, and the IAM user is created REQUIRE SSL.
        problems.append(problem("DB_TLS", db_tls, "verify when DB_AUTH=iam (IAM database "
                                "authentication works over TLS only)", "verify"))
    salt_id = required("DB_SALT_SECRET_ID", SECRET_ARN_RE, arn_allowed, EXAMPLE_ARN)
    bucket = required("S3_BUCKET", BUCKET_RE, "an S3 bucket name (3-63 a-z 0-9 . -)",
                      "prod-redcap-app-files")
    s3_secret_id = required("S3_SECRET_ID", SECRET_ARN_RE, arn_allowed, EXAMPLE_ARN)
    ses_secret_id = optional("SES_CREDENTIALS_SECRET_ID", SECRET_ARN_RE, arn_allowed,
                             EXAMPLE_ARN)
    smtp_email = _get(env, "SMTP_EMAIL")
    email_allowed = "an e-mail address in an SES-verified domain (never localhost)"
    if smtp_email is not None and not EMAIL_RE.match(smtp_email):
        problems.append(problem("SMTP_EMAIL", smtp_email, email_allowed, "redcap@example.org"))
    if ses_secret_id is not None and smtp_email is None:
        problems.append(problem("SMTP_EMAIL", None,
                                email_allowed + "; required with SES_CREDENTIALS_SECRET_ID",
                                "redcap@example.org"))
    admin_secret_id = optional("REDCAP_ADMIN_SECRET_ID", SECRET_ARN_RE, arn_allowed,
                               EXAMPLE_ARN)
    config_sql_mode = _get(env, "REDCAP_CONFIG_SQL_MODE") or CONFIG_SQL_ON_INSTALL
    if config_sql_mode not in CONFIG_SQL_MODES:
        # Exact spelling only: a near miss such as "Apply" must not silently mean onInstall,
        # and nothing but the exact word may reset a production site's settings.
        problems.append(problem("REDCAP_CONFIG_SQL_MODE", config_sql_mode,
                                CONFIG_SQL_MODE_ALLOWED, CONFIG_SQL_APPLY))
    tz = _get(env, "PHP_TIMEZONE") or "UTC"
    if not _valid_timezone(tz):
        problems.append(problem("PHP_TIMEZONE", tz, "an IANA time zone name", "Asia/Tokyo"))
    port = port_number("PORT", 1025, "8080")
    tls_port = port_number("TLS_PORT", 1025, "8081")
    if port is not None and tls_port is not None and port == tls_port:
        problems.append(problem("TLS_PORT", str(tls_port), "a port different from PORT", "8081"))
    status_port = port_number("STATUS_PORT", 1025, DEFAULT_STATUS_PORT)
    if status_port is not None and status_port in (port, tls_port):
        problems.append(problem("STATUS_PORT", str(status_port), "a port different from PORT and TLS_PORT",
                                DEFAULT_STATUS_PORT))
    problems.extend(problem(p.key, p.value, p.allowed, p.example) for p in load_web_settings(env)[1])
    endpoint = optional("AWS_ENDPOINT_URL", URL_RE, "an http(s) URL (tests only)",
                        "http://127.0.0.1:5000")
    wait_raw = _get(env, "BOOTSTRAP_DB_WAIT_SECONDS") or "120"
    wait = _int_in_range(wait_raw, 1, 3600)
    if wait is None:
        problems.append(problem("BOOTSTRAP_DB_WAIT_SECONDS", wait_raw, "an integer 1..3600", "120"))

    def path(key: str) -> str:
        value = _get(env, key) or str(OPTIONAL_ENV[key])
        if not value.startswith("/"):
            problems.append(problem(key, value, "an absolute path", str(OPTIONAL_ENV[key])))
        return value

    redcap_root = path("REDCAP_ROOT")
    config_sql = path("REDCAP_CONFIG_SQL")
    msmtprc = path("MSMTPRC_PATH")

    if problems:
        raise ConfigError(
            f"invalid container environment ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}; see container/README.md):\n  - "
            + "\n  - ".join(problems)
        )
    return Settings(
        aws_region=region,
        db_host=db_host,
        db_port=int(db_port or 3306),
        db_name=db_name,
        db_secret_id=db_secret_id,
        db_auth=db_auth,
        db_app_user=app_user_raw or str(OPTIONAL_ENV["DB_APP_USER"]),
        db_app_user_explicit=app_user_raw is not None,
        db_app_secret_id=db_app_secret_id,
        db_reader_host=db_reader_host,
        db_tls=db_tls,
        db_salt_secret_id=salt_id,
        s3_bucket=bucket,
        s3_secret_id=s3_secret_id,
        ses_secret_id=ses_secret_id,
        smtp_email=smtp_email,
        admin_secret_id=admin_secret_id,
        config_sql_mode=config_sql_mode,
        php_timezone=tz,
        port=int(port or 8080),
        tls_port=tls_port,
        aws_endpoint_url=endpoint,
        db_wait_seconds=float(wait or 120),
        redcap_root=redcap_root,
        config_sql_path=config_sql,
        msmtprc_path=msmtprc,
    )
