"""Secrets from moto_server on loopback: each missing or malformed secret is one clear failure
that names the variable, the ARN and the key, never the value; nothing is written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.errors import ConfigError  # noqa: E402
from bootstrap.secrets import boto3_fetcher, load_secrets  # noqa: E402
from bootstrap.settings import load_settings  # noqa: E402
from fixtures.bootstrap_env import (  # noqa: E402
    MASTER_USER, Case, assert_no_secret_leak, create_secret,
)
from fixtures.redcap_fixture import STOCK_DATABASE_PHP  # noqa: E402


def failed(case: Case, code: int) -> str:
    result = case.run("touch", str(case.tmp / "cmd-ran"))
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out
    assert case.database_php.read_text() == STOCK_DATABASE_PHP, "nothing may be written"
    assert not case.msmtprc.exists() and not (case.tmp / "cmd-ran").exists()
    assert_no_secret_leak(out)
    return out


def test_secret_that_does_not_exist(case: Case):
    arn = case.env["S3_SECRET_ID"].replace("redcap-test", "absent")
    case.env["S3_SECRET_ID"] = arn
    out = failed(case, 3)
    assert f"cannot read secret {arn}: ResourceNotFoundException" in out


MALFORMED = [
    ("DB_SECRET_ID", "not json {", "<hidden: not JSON>"),
    ("DB_SECRET_ID", json.dumps(["a", "b"]), "JSON list"),
    ("DB_SECRET_ID", json.dumps({"username": MASTER_USER}), "key 'password': missing"),
    ("DB_APP_SECRET_ID", json.dumps({"username": "__APP__", "password": ""}),
     "key 'password': got '<hidden: empty or not a string>'"),
    ("S3_SECRET_ID", json.dumps({"AccessKeyId": "AKIA"}), "key 'SecretAccessKey': missing"),
    ("S3_SECRET_ID", json.dumps({"AccessKeyId": "AKIA", "SecretAccessKey": 5}),
     "key 'SecretAccessKey': got '<hidden: empty or not a string>'"),
    ("SES_CREDENTIALS_SECRET_ID", json.dumps({"password": "x"}), "key 'username': missing"),
    ("SES_CREDENTIALS_SECRET_ID", json.dumps({"username": "u", "password": "a b"}),
     "<hidden: contains whitespace>"),
    ("DB_SALT_SECRET_ID", "short", "<hidden: 5 characters>"),
]


@pytest.mark.parametrize("key,value,expected", MALFORMED,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(MALFORMED)])
def test_malformed_secret(case: Case, moto_server, monkeypatch, key, value, expected):
    """In process (boto3 against moto_server) for speed; the subprocess path is tested below."""
    case.env[key] = arn = create_secret(moto_server, value.replace("__APP__", case.app_user))
    for name, val in moto_server.env().items():
        monkeypatch.setenv(name, val)
    settings = load_settings(case.env)
    with pytest.raises(ConfigError) as info:
        load_secrets(settings, boto3_fetcher(settings))
    out = str(info.value)
    assert out.startswith("invalid secret contents (1 problem):")
    assert f"{key} ({arn})" in out
    assert expected in out
    assert "example: " in out
    assert_no_secret_leak(out)


def test_malformed_secrets_stop_the_start_with_exit_2(case: Case, moto_server):
    case.env["DB_SECRET_ID"] = create_secret(moto_server, "not json {")
    case.env["S3_SECRET_ID"] = create_secret(moto_server, json.dumps({"AccessKeyId": "A"}))
    out = failed(case, 2)
    assert "invalid secret contents (2 problems):" in out
    assert "<hidden: not JSON>" in out and "key 'SecretAccessKey': missing" in out


def test_app_user_mismatch_and_master_reuse(case: Case, moto_server):
    case.env["DB_APP_SECRET_ID"] = create_secret(
        moto_server, json.dumps({"username": "someone_else", "password": "pw"}))
    out = failed(case, 2)
    assert "DB_APP_USER: got" in out and "the username in DB_APP_SECRET_ID ('someone_else')" in out
    # The app user must never be the master user (ALTER USER would change the master).
    case.env["DB_APP_USER"] = MASTER_USER
    case.env["DB_APP_SECRET_ID"] = create_secret(
        moto_server, json.dumps({"username": MASTER_USER, "password": "pw"}))
    out = failed(case, 2)
    assert f"DB_APP_USER: got '{MASTER_USER}'; allowed: a user other than the master user" in out


def test_app_username_from_secret_when_db_app_user_unset(case: Case):
    del case.env["DB_APP_USER"]  # the app secret's username is then used
    result = case.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"$username = '{case.app_user}';" in case.database_php.read_text()
