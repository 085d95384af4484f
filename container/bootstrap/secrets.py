"""Secrets Manager reads (by ARN, with the container's role) and validation of their shapes.

Errors name the environment variable, the ARN and the missing/malformed JSON key, never a value.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .admin import MIN_ADMIN_PASSWORD_LENGTH, admin_password_problem
from .errors import ConfigError, SecretsError, problem
from .settings import SECRET_ARN_RE, Settings

# Expected JSON keys per secret (the contract's shapes).
USER_PASSWORD_KEYS = ("username", "password")
S3_KEYS = ("AccessKeyId", "SecretAccessKey")
MIN_SALT_LENGTH = 16

Fetch = Callable[[str], str]  # ARN -> SecretString


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # keep the password out of any accidental log line
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class Secrets:
    master: Credentials
    app: Credentials | None  # only with DB_AUTH=password
    salt: str
    s3_access_key_id: str
    s3_secret_access_key: str
    ses: Credentials | None  # only with SES_CREDENTIALS_SECRET_ID
    admin_password: str | None = None  # only with REDCAP_ADMIN_SECRET_ID

    def __repr__(self) -> str:
        return (f"Secrets(master={self.master!r}, app={self.app!r}, salt=<hidden>, "
                f"s3_access_key_id={self.s3_access_key_id!r}, s3_secret_access_key=<hidden>, "
                f"ses={self.ses!r}, admin_password="
                f"{'<hidden>' if self.admin_password is not None else None})")


def boto3_fetcher(settings: Settings) -> Fetch:
    """GetSecretValue through boto3 in each ARN's own region (ARNs must be read where they live)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    clients: dict[str, Any] = {}
    config = Config(connect_timeout=5, read_timeout=10,
                    retries={"max_attempts": 5, "mode": "standard"})

    def fetch(arn: str) -> str:
        match = SECRET_ARN_RE.match(arn)
        region = match.group("region") if match else settings.aws_region
        if region not in clients:
            clients[region] = boto3.client(
                "secretsmanager", region_name=region, config=config,
                endpoint_url=settings.aws_endpoint_url)
        try:
            response = clients[region].get_secret_value(SecretId=arn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise SecretsError(f"cannot read secret {arn}: {code}") from None
        except BotoCoreError as exc:
            raise SecretsError(f"cannot read secret {arn}: {type(exc).__name__}: {exc}") from None
        value = response.get("SecretString")
        if value is None:
            raise ConfigError(f"secret {arn} has no SecretString "
                              "(binary secrets are not supported)")
        return value

    return fetch


def parse_json_secret(env_key: str, arn: str, raw: str, keys: tuple[str, ...],
                      problems: list[str]) -> dict[str, str]:
    """Decode a JSON secret and check each key is a non-empty string; record problems."""
    example = "{" + ", ".join(f'"{k}": "..."' for k in keys) + "}"
    try:
        data = json.loads(raw)
    except ValueError:
        problems.append(problem(f"{env_key} ({arn})", "<hidden: not JSON>",
                                f"a JSON object with keys {', '.join(keys)}", example))
        return {}
    if not isinstance(data, dict):
        problems.append(problem(f"{env_key} ({arn})", f"<hidden: JSON {type(data).__name__}>",
                                f"a JSON object with keys {', '.join(keys)}", example))
        return {}
    out: dict[str, str] = {}
    for key in keys:
        value = data.get(key)
        if not isinstance(value, str) or value == "":
            shown = None if key not in data else "<hidden: empty or not a string>"
            problems.append(problem(f"{env_key} ({arn}) key {key!r}", shown,
                                    "a non-empty string", example))
        elif "\x00" in value or "\n" in value or "\r" in value:
            problems.append(problem(f"{env_key} ({arn}) key {key!r}",
                                    "<hidden: contains a NUL or line break>",
                                    "a single-line string", example))
        else:
            out[key] = value
    return out


def load_secrets(settings: Settings, fetch: Fetch) -> Secrets:
    """Read every secret the settings name; raise one ConfigError listing all shape problems."""
    problems: list[str] = []
    master = parse_json_secret("DB_SECRET_ID", settings.db_secret_id,
                               fetch(settings.db_secret_id), USER_PASSWORD_KEYS, problems)
    app: dict[str, str] | None = None
    if settings.db_auth == "password" and settings.db_app_secret_id:
        app = parse_json_secret("DB_APP_SECRET_ID", settings.db_app_secret_id,
                                fetch(settings.db_app_secret_id), USER_PASSWORD_KEYS, problems)
    salt = fetch(settings.db_salt_secret_id)
    if len(salt) < MIN_SALT_LENGTH:
        problems.append(problem(f"DB_SALT_SECRET_ID ({settings.db_salt_secret_id})",
                                f"<hidden: {len(salt)} characters>",
                                f"a plain string of at least {MIN_SALT_LENGTH} characters",
                                "a 32-character Secrets Manager random password"))
    s3 = parse_json_secret("S3_SECRET_ID", settings.s3_secret_id,
                           fetch(settings.s3_secret_id), S3_KEYS, problems)
    ses: dict[str, str] | None = None
    if settings.ses_secret_id:
        ses = parse_json_secret("SES_CREDENTIALS_SECRET_ID", settings.ses_secret_id,
                                fetch(settings.ses_secret_id), USER_PASSWORD_KEYS, problems)
        for key in USER_PASSWORD_KEYS:
            # msmtp reads one whitespace-separated token per value.
            if key in ses and any(c.isspace() for c in ses[key]):
                problems.append(problem(f"SES_CREDENTIALS_SECRET_ID ({settings.ses_secret_id}) "
                                        f"key {key!r}",
                                        "<hidden: contains whitespace>",
                                        "SES SMTP credentials (no whitespace)",
                                        '{"username": "AKIA...", "password": "BP..."}'))
    admin_password: str | None = None
    if settings.admin_secret_id:
        # Read and checked at every start while set, although used only on a new database:
        # this is the last point before anything is written, and checking every time makes
        # a broken secret fail the deployment that introduced it rather than the day a new
        # database appears.
        admin_password = fetch(settings.admin_secret_id)
        reason = admin_password_problem(admin_password)
        if reason is not None:
            problems.append(problem(f"REDCAP_ADMIN_SECRET_ID ({settings.admin_secret_id})",
                                    f"<hidden: {reason}>",
                                    f"a plain string of at least {MIN_ADMIN_PASSWORD_LENGTH} "
                                    "characters on one line",
                                    "a 24-character pulumi-random password"))
    if app and "username" in app:
        _check_app_username(settings, app["username"], problems)
    if master.get("username") and master.get("username") == _app_user_name(settings, app):
        problems.append(problem("DB_APP_USER", _app_user_name(settings, app),
                                "a user other than the master user in DB_SECRET_ID",
                                "redcap_user"))
    if problems:
        raise ConfigError(f"invalid secret contents ({len(problems)} problem"
                          f"{'s' if len(problems) > 1 else ''}):\n  - " + "\n  - ".join(problems))
    return Secrets(
        master=Credentials(master["username"], master["password"]),
        app=Credentials(app["username"], app["password"]) if app else None,
        salt=salt,
        s3_access_key_id=s3["AccessKeyId"],
        s3_secret_access_key=s3["SecretAccessKey"],
        ses=Credentials(ses["username"], ses["password"]) if ses else None,
        admin_password=admin_password,
    )


def _app_user_name(settings: Settings, app: dict[str, str] | None) -> str:
    if app and "username" in app and not settings.db_app_user_explicit:
        return app["username"]
    return settings.db_app_user


def _check_app_username(settings: Settings, username: str, problems: list[str]) -> None:
    from .settings import DB_USER_RE

    if not DB_USER_RE.match(username):
        problems.append(problem(f"DB_APP_SECRET_ID ({settings.db_app_secret_id}) key 'username'",
                                username, "1-32 characters A-Z a-z 0-9 _", "redcap_user"))
    elif settings.db_app_user_explicit and username != settings.db_app_user:
        problems.append(problem("DB_APP_USER", settings.db_app_user,
                                f"the username in DB_APP_SECRET_ID ({username!r}) or unset",
                                username))


def app_user_name(settings: Settings, secrets: Secrets) -> str:
    """The application DB user: DB_APP_USER, else the app secret's username, else the default."""
    if secrets.app is not None and not settings.db_app_user_explicit:
        return secrets.app.username
    return settings.db_app_user
