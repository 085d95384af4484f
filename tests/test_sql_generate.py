"""The configuration SQL generator (sql/generate.py): questions, validation, escaping, and the
generated file applied by the real bootstrap to a real MariaDB (a quote in a name must work)."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from fixtures.bootstrap_env import ROOT, Case, require_php
from sql import generate
from sql.generate import InvalidAnswer, main, render_sql, validate_base_url

PASSWORD = "Temp-Passw0rd-'quoted'"

FLAGS = [
    "--non-interactive",
    "--admin-first-name", "Seán",
    "--admin-last-name", "O'Brien",
    "--admin-email", "o'brien@example.org",
    "--api", "on",
    "--language", "japanese",
    "--stats", "off",
    "--s3-storage", "on",
    "--contact-email", "redcap-help@example.org",
    "--base-url", "redcap.example.org",
]


def run_main(argv, password: str | None = PASSWORD, answers=None, passwords=None):
    """main() with scripted prompts; returns (exit code, messages)."""
    messages: list[str] = []
    answers = list(answers or [])
    passwords = list(passwords or [])
    env = {} if password is None else {generate.PASSWORD_ENV: password}
    code = main(argv, ask=lambda prompt: answers.pop(0),
                ask_password=lambda prompt: passwords.pop(0), env=env, out=messages.append)
    return code, "\n".join(messages)


def test_generated_sql_applied_by_the_bootstrap(mariadb, moto_server, tmp_path):
    out_file = tmp_path / "redcap-config.sql"
    code, messages = run_main([*FLAGS, "--output", str(out_file)])
    assert code == 0, messages
    assert out_file.stat().st_mode & 0o777 == 0o600
    text = out_file.read_text()
    assert PASSWORD not in text and "MD5" not in text.upper().replace("SHA512", "")
    assert "'O''Brien'" in text

    case = Case(mariadb, moto_server, tmp_path / "case")
    case.env["REDCAP_CONFIG_SQL"] = str(out_file)
    result = case.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nobody can log in" not in result.stdout

    config = case.config()
    assert config["api_enabled"] == "1" and config["auto_report_stats"] == "0"
    assert config["language_global"] == "Japanese"
    assert config["auth_meth_global"] == "table"
    assert config["redcap_base_url"] == "https://redcap.example.org/"
    for field in ("homepage_contact_email", "project_contact_email"):
        assert config[field] == "redcap-help@example.org"
    # REDCap's From address is the stack's sender (SMTP_EMAIL), never the contact address.
    assert "from_email" not in text
    assert config["from_email"] == case.env["SMTP_EMAIL"] == "redcap@example.org"
    assert config["edoc_storage_option"] == "2"
    assert config["amazon_s3_bucket"] == case.env["S3_BUCKET"]
    assert config["amazon_s3_endpoint"] == "us-east-1"

    (user,) = case.query("SELECT user_firstname, user_lastname, user_email, super_user FROM "
                         "redcap_user_information WHERE username = 'site_admin'")
    assert user == ("Seán", "O'Brien", "o'brien@example.org", 1)
    ((hashed, salt, legacy, temp),) = case.query(
        "SELECT password, password_salt, legacy_hash, temp_pwd FROM redcap_auth "
        "WHERE username = 'site_admin'")
    assert (legacy, temp) == (0, 1) and len(salt) == 100
    # REDCap's check, computed by PHP itself: hash('sha512', $password . $salt).
    php = subprocess.run([require_php(), "-r", "echo hash('sha512', $argv[1] . $argv[2]);",
                          PASSWORD, salt], capture_output=True, text=True)
    assert php.stdout == hashed == hashlib.sha512((PASSWORD + salt).encode()).hexdigest()


def test_s3_off_and_optional_answers_empty(tmp_path):
    out_file = tmp_path / "c.sql"
    argv = [a for a in FLAGS]
    argv[argv.index("--s3-storage") + 1] = "off"
    argv[argv.index("--contact-email") + 1] = ""
    argv[argv.index("--base-url") + 1] = ""
    code, messages = run_main([*argv, "--output", str(out_file)])
    assert code == 0, messages
    text = out_file.read_text()
    assert "edoc_storage_option" not in text and ":s3_bucket" not in text
    assert "contact_email" not in text and "redcap_base_url" not in text
    assert "warning: S3 storage is off" in messages


INVALID = [
    ("--admin-first-name", "", "admin first name: got ''"),
    ("--admin-last-name", "a\nb", "admin last name: got 'a\\nb'"),
    ("--admin-email", "admin@localhost", "admin e-mail: got 'admin@localhost'"),
    ("--admin-email", "no-at-sign", "admin e-mail: got 'no-at-sign'"),
    ("--api", "maybe", "API: got 'maybe'; allowed: on or off"),
    ("--language", "Klingon", "language: got 'Klingon'; allowed: one of English, Arabic"),
    ("--stats", "2", "usage stats: got '2'"),
    ("--s3-storage", "s3", "S3 storage: got 's3'"),
    ("--contact-email", "help", "contact e-mail: got 'help'"),
    ("--base-url", "http://redcap.example.org", "base URL: got 'http://redcap.example.org'; "
                                                 "allowed: an https:// URL"),
    ("--base-url", "https://user:pw@redcap.example.org", "base URL: got"),
    ("--base-url", "https://redcap.example.org/?a=1", "base URL: got"),
    ("--base-url", "https://red cap", "base URL: got"),
]


@pytest.mark.parametrize("flag,value,expected", INVALID,
                         ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_invalid_answer_names_field_value_allowed_example(tmp_path, flag, value, expected):
    argv = list(FLAGS)
    argv[argv.index(flag) + 1] = value
    out_file = tmp_path / "c.sql"
    code, messages = run_main([*argv, "--output", str(out_file)])
    assert code == 2
    assert expected in messages
    assert "example: " in messages
    assert not out_file.exists()


def test_all_invalid_answers_in_one_error_and_password_never_echoed(tmp_path):
    code, messages = run_main(["--non-interactive", "--admin-email", "x", "--api", "?",
                               "--output", str(tmp_path / "c.sql")], password="short-Pw1")
    assert code == 2
    assert "error: 5 invalid answers:" in messages
    assert "admin temporary password: got '<hidden: 9 characters>'" in messages
    assert "short-Pw1" not in messages
    assert "REDCap site-admin first name: missing" in messages
    assert "REDCap site-admin last name: missing" in messages


def test_missing_password_source_non_interactive(tmp_path):
    code, messages = run_main([*FLAGS, "--output", str(tmp_path / "c.sql")], password=None)
    assert code == 2
    assert "admin temporary password: missing; allowed: --admin-password-file PATH or the " \
           "REDCAP_ADMIN_TEMP_PASSWORD environment variable" in messages


def test_interactive_questions_reask_on_invalid_answers(tmp_path):
    out_file = tmp_path / "c.sql"
    answers = ["Ada", "O'Brien", "not-an-email", "ada@example.org", "", "Spanish", "yes", "",
               "", "http://insecure.example.org", "https://redcap.example.org/redcap"]
    passwords = ["weak", PASSWORD, "different", PASSWORD, PASSWORD]
    code, messages = run_main(["--output", str(out_file)], password=None,
                              answers=answers, passwords=passwords)
    assert code == 0, messages
    assert "error: admin temporary password: got '<hidden: 4 characters>'" in messages
    assert "error: admin temporary password: the two entries differ" in messages
    assert "error: admin e-mail: got 'not-an-email'" in messages
    assert "error: base URL: got 'http://insecure.example.org'" in messages
    text = out_file.read_text()
    assert "('api_enabled', '0')" in text  # empty answer = default off
    assert "('auto_report_stats', '1')" in text
    assert "('language_global', 'Spanish')" in text
    assert "('edoc_storage_option', '2')" in text  # default on
    assert "('redcap_base_url', 'https://redcap.example.org/redcap/')" in text


def test_interactive_gives_up_after_three_invalid_answers(tmp_path):
    code, messages = run_main(["--output", str(tmp_path / "c.sql")], password=PASSWORD,
                              answers=["", "", ""])
    assert code == 2
    assert "no valid answer for 'REDCap site-admin first name' after 3 attempts" in messages


def test_languages_from_ini_directory(tmp_path):
    langs = tmp_path / "languages"
    langs.mkdir()
    (langs / "Japanese.ini").write_text("")
    (langs / "Portuguese.ini").write_text("")
    assert generate.available_languages(langs) == ("English", "Japanese", "Portuguese")
    argv = list(FLAGS)
    argv[argv.index("--language") + 1] = "Spanish"
    code, messages = run_main([*argv, "--languages-dir", str(langs),
                               "--output", str(tmp_path / "c.sql")])
    assert code == 2
    assert "language: got 'Spanish'; allowed: one of English, Japanese, Portuguese" in messages


def test_base_url_normalisation():
    assert validate_base_url("redcap.example.org") == "https://redcap.example.org/"
    assert validate_base_url("https://REDCAP.example.org:8443/a") == \
        "https://redcap.example.org:8443/a/"
    assert validate_base_url("") is None
    with pytest.raises(InvalidAnswer):
        validate_base_url("https://redcap.example.org/#frag")


def test_render_escapes_backslashes_and_quotes():
    answers = generate.Answers(
        admin_password=PASSWORD, admin_first_name="A\\'B", admin_last_name="x",
        admin_email="a@example.org", api_enabled=False, language="English",
        auto_report_stats=False, use_s3=True, contact_email=None, base_url=None)
    text = render_sql(answers, "salt")
    assert "user_firstname = 'A\\\\''B'" in text
    assert "PASSWORD" not in repr(answers) and "<hidden>" in repr(answers)


@pytest.mark.parametrize("how", [["sql/generate.py"], ["-m", "sql.generate"]])
def test_cli_entry_points(tmp_path, how):
    out_file = tmp_path / "c.sql"
    result = subprocess.run([sys.executable, *how, *FLAGS, "--admin-password-file", "-",
                             "--output", str(out_file)], cwd=ROOT, input=PASSWORD + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {out_file}" in result.stderr
    assert "'O''Brien'" in out_file.read_text()
