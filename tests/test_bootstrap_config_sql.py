"""The configuration SQL: statement splitting, named placeholders bound (never substituted),
once-per-database marker, all-or-nothing transaction, the read-replica patch, msmtp.
Which databases get the file at all: tests/test_bootstrap_existing_install.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.config_sql import (  # noqa: E402
    ConfigSqlError, configure, load_config_sql, split_statements,
)
from bootstrap.errors import DatabaseStepError  # noqa: E402
from bootstrap.msmtp import render_msmtprc  # noqa: E402
from bootstrap.sender import check_universal_from, sender_problems  # noqa: E402
from bootstrap.replica import (  # noqa: E402
    bypass_lag_check, bypass_lag_check_text, latest_version_dir, set_replica_flag,
)
from fixtures.bootstrap_env import DEFAULT_SQL, unique  # noqa: E402

VALUES = {"s3_bucket": "b", "s3_access_key_id": "AKIA", "s3_secret_access_key": "x'%y",
          "aws_region": "eu-west-1"}


def apply_fresh(conn, config, values=VALUES, installed_now=True):
    """The file as on a database whose REDCap this bootstrap has just installed."""
    return configure(conn, config, values, mode="onInstall", installed_now=installed_now).apply


def test_split_handles_quotes_comments_and_placeholders():
    text = """
    -- a comment; with :s3_bucket and 'quote
    # another ; :aws_region
    /* block ; :s3_bucket */
    UPDATE t SET a = 'x;y:s3_bucket''s \\' 50%' , b = :s3_bucket WHERE c = "REGION;";
    REPLACE INTO t VALUES (:aws_region, `we;ird`, :s3_bucket)
    """
    stmts = split_statements(text)
    assert [s.names for s in stmts] == [("s3_bucket",), ("aws_region", "s3_bucket")]
    assert stmts[0].sql == ("UPDATE t SET a = 'x;y:s3_bucket''s \\' 50%%' , b = %s "
                            "WHERE c = \"REGION;\"")
    assert stmts[1].sql == "REPLACE INTO t VALUES (%s, `we;ird`, %s)"


@pytest.mark.parametrize("text,message", [
    ("UPDATE t SET a = :nope", "unknown placeholder :nope"),
    ("UPDATE t SET a = 'open", "unterminated ' quote"),
    ("UPDATE t /* open", "unterminated /* comment"),
    ("DROP TABLE redcap_config", "statement 1 starts with DROP"),
    ("UPDATE t SET a=1; CREATE TABLE x (a INT)", "statement 2 starts with CREATE"),
    ("/*!40101 SET NAMES utf8 */", "conditional comments"),
])
def test_split_rejects(text, message):
    with pytest.raises(ConfigSqlError) as info:
        split_statements(text)
    assert message in str(info.value)


def test_default_sql_parses_with_s3_on():
    cfg = load_config_sql(str(DEFAULT_SQL))
    names = {n for s in cfg.statements for n in s.names}
    assert names == {"s3_bucket", "s3_access_key_id", "s3_secret_access_key", "aws_region"}
    text = DEFAULT_SQL.read_text()
    assert "('edoc_storage_option', '2')" in text and "('auth_meth_global', 'table')" in text
    assert "redcap_auth" not in text.split("-- Uploaded")[1], "no admin password by default"


def make_redcap_config(mariadb) -> str:
    db = mariadb.fresh_database(unique("cfg"))
    with mariadb.connect(db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE redcap_config (field_name VARCHAR(191) PRIMARY KEY, "
                    "value MEDIUMTEXT) ENGINE=InnoDB")
        cur.execute("INSERT INTO redcap_config VALUES ('api_enabled', '1'), ('x', 'REGION')")
    return db


def test_values_are_bound_not_substituted(mariadb, tmp_path):
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("REPLACE INTO redcap_config VALUES ('amazon_s3_secret', "
                   ":s3_secret_access_key);\n"
                   "REPLACE INTO redcap_config VALUES ('note', 'REGION :aws_region 100%');\n"
                   "REPLACE INTO redcap_config VALUES ('amazon_s3_endpoint', :aws_region);\n")
    with mariadb.connect(db) as conn:
        assert apply_fresh(conn, load_config_sql(str(sql))) is True
        with conn.cursor() as cur:
            cur.execute("SELECT field_name, value FROM redcap_config")
            rows = dict(cur.fetchall())
    assert rows["amazon_s3_secret"] == "x'%y"
    assert rows["note"] == "REGION :aws_region 100%"  # text inside quotes is never touched
    assert rows["amazon_s3_endpoint"] == "eu-west-1"
    assert rows["x"] == "REGION"


def test_failure_rolls_back_everything_and_leaves_no_marker(mariadb, tmp_path):
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("UPDATE redcap_config SET value = '0' WHERE field_name = 'api_enabled';\n"
                   "INSERT INTO no_such_table VALUES (:s3_secret_access_key);\n")
    with mariadb.connect(db) as conn:
        with pytest.raises(DatabaseStepError) as info:
            apply_fresh(conn, load_config_sql(str(sql)))
        assert "rolled back" in str(info.value)
        assert "x'%y" not in str(info.value)
        with conn.cursor() as cur:
            cur.execute("SELECT value FROM redcap_config WHERE field_name = 'api_enabled'")
            assert cur.fetchone() == ("1",)
            cur.execute("SELECT COUNT(*) FROM redcap_pulumi_state WHERE decision = 'applied'")
            assert cur.fetchone() == (0,)


def test_applied_once_even_under_no_backslash_escapes(mariadb, tmp_path):
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("REPLACE INTO redcap_config VALUES ('n', 'a\\\\b O''Brien');\n")
    with mariadb.connect(db) as conn:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        cfg = load_config_sql(str(sql))
        assert apply_fresh(conn, cfg) is True
        assert apply_fresh(conn, cfg, installed_now=False) is False
        with conn.cursor() as cur:
            cur.execute("SELECT value FROM redcap_config WHERE field_name = 'n'")
            assert cur.fetchone() == ("a\\b O'Brien",)


def from_email(mariadb, db) -> str | None:
    with mariadb.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'from_email'")
        row = cur.fetchone()
    return row[0] if row else None


def test_the_stack_sender_becomes_redcaps_from_address_over_the_files(mariadb, tmp_path):
    """REDCap sends From its universal From address: only the stack's sender passes SES and
    DMARC, so it wins over what the file says, in the file's transaction."""
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("REPLACE INTO redcap_config VALUES ('from_email', 'help@hospital.example');\n")
    cfg = load_config_sql(str(sql))
    with mariadb.connect(db) as conn:
        assert configure(conn, cfg, VALUES, mode="onInstall", installed_now=True,
                         sender="no-reply@redcap.example.org").apply
    assert from_email(mariadb, db) == "no-reply@redcap.example.org"
    # Applied once: a later start (another sender, say) does not write it again.
    with mariadb.connect(db) as conn:
        assert not configure(conn, cfg, VALUES, mode="onInstall", installed_now=False,
                             sender="other@redcap.example.org").apply
    assert from_email(mariadb, db) == "no-reply@redcap.example.org"


def test_without_mail_the_files_from_address_stays(mariadb, tmp_path):
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("REPLACE INTO redcap_config VALUES ('from_email', 'help@hospital.example');\n")
    with mariadb.connect(db) as conn:
        assert apply_fresh(conn, load_config_sql(str(sql)))
    assert from_email(mariadb, db) == "help@hospital.example"


def test_a_failed_file_leaves_the_from_address_alone(mariadb, tmp_path):
    db = make_redcap_config(mariadb)
    sql = tmp_path / "c.sql"
    sql.write_text("INSERT INTO no_such_table VALUES (1);\n")
    with mariadb.connect(db) as conn, pytest.raises(DatabaseStepError):
        configure(conn, load_config_sql(str(sql)), VALUES, mode="onInstall", installed_now=True,
                  sender="no-reply@redcap.example.org")
    assert from_email(mariadb, db) is None


SENDER = "no-reply@redcap.example.org"
NOT_SENDER = ("REDCap's universal From address (from_email) is {shown}, not SMTP_EMAIL "
              "no-reply@redcap.example.org, the stack's senderAddress: SES refuses mail From an "
              "address outside the stack's identities and receivers' DMARC checks fail outside its "
              "DKIM-signed domain; set it to no-reply@redcap.example.org in Control Center -> General "
              "Configuration -> \"Set a universal FROM email address\" (docs/email.md)")


@pytest.mark.parametrize("current, excluded, expected", [
    (SENDER, "", []),
    ("No-Reply@Redcap.Example.org", None, []),
    ("help@hospital.example", "", [NOT_SENDER.format(shown="'help@hospital.example'")]),
    ("", "", [NOT_SENDER.format(shown="not set (mail goes From each user's own address)")]),
    (None, None, [NOT_SENDER.format(shown="not set (mail goes From each user's own address)")]),
    (SENDER, "hospital.example\r\nuni.example\n", [
        "REDCap sends mail of users at hospital.example, uni.example From their own addresses "
        "(from_email_domain_exclude), which SES refuses or DMARC fails; empty that list in Control "
        "Center -> General Configuration -> \"Set a universal FROM email address\" (docs/email.md)"]),
])
def test_sender_problems(current, excluded, expected):
    assert sender_problems(current, excluded, SENDER) == expected


def test_start_check_reads_redcaps_setting(mariadb):
    """(The log lines themselves: tests/test_bootstrap_existing_install.py.)"""
    db = make_redcap_config(mariadb)
    with mariadb.connect(db) as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO redcap_config VALUES ('from_email', 'help@hospital.example'), "
                        "('from_email_domain_exclude', '')")
        conn.commit()
        assert check_universal_from(conn, SENDER) == [NOT_SENDER.format(shown="'help@hospital.example'")]
        with conn.cursor() as cur:
            cur.execute("UPDATE redcap_config SET value = %s WHERE field_name = 'from_email'", (SENDER,))
        conn.commit()
        assert check_universal_from(conn, SENDER) == []


def test_missing_placeholder_value_is_an_error(mariadb):
    db = make_redcap_config(mariadb)
    with mariadb.connect(db) as conn, pytest.raises(ConfigSqlError) as info:
        apply_fresh(conn, load_config_sql(str(DEFAULT_SQL)), {"s3_bucket": "b"})
    assert "no value for placeholders: s3_access_key_id" in str(info.value)


def test_replica_patch_is_idempotent(tmp_path):
    assert bypass_lag_check_text("f($bypassReadReplicaLagCheck=false)") == \
        "f($bypassReadReplicaLagCheck=true)"
    assert bypass_lag_check_text("x") is None
    for v in ("redcap_v9.10.2", "redcap_v14.0.0", "redcap_v14.0.10", "redcap_v13.99.1"):
        (tmp_path / v / "Config").mkdir(parents=True)
        (tmp_path / v / "Config" / "init_functions.php").write_bytes(
            b"<?php \xe9 function f($bypassReadReplicaLagCheck=false) {}")
    assert latest_version_dir(str(tmp_path)).name == "redcap_v14.0.10"
    assert bypass_lag_check(str(tmp_path)) is True
    target = tmp_path / "redcap_v14.0.10" / "Config" / "init_functions.php"
    assert target.read_bytes() == b"<?php \xe9 function f($bypassReadReplicaLagCheck=true) {}"
    assert bypass_lag_check(str(tmp_path)) is False


def test_msmtprc_never_from_localhost():
    rc = render_msmtprc("ap-northeast-1", "AKIA", "BPpw", "redcap@example.org")
    assert "host email-smtp.ap-northeast-1.amazonaws.com\nport 587\n" in rc
    assert "tls on\ntls_starttls on\n" in rc and "from redcap@example.org\n" in rc
    with pytest.raises(ValueError):
        render_msmtprc("us-east-1", "AKIA", "BPpw", "redcap@localhost")
    with pytest.raises(ValueError):
        render_msmtprc("us-east-1", "AKIA", "pw with space", "redcap@example.org")


def test_replica_flag_follows_the_reader(mariadb):
    db = make_redcap_config(mariadb)
    with mariadb.connect(db) as conn, conn.cursor() as cur:
        # A REDCap without read-replica support: a warning, no row invented, no failure.
        set_replica_flag(conn, "reader.example")
        cur.execute("SELECT COUNT(*) FROM redcap_config WHERE field_name = 'read_replica_enable'")
        assert cur.fetchone() == (0,)
        cur.execute("INSERT INTO redcap_config VALUES ('read_replica_enable', '0')")
        for reader, expected in (("reader.example", "1"), ("reader.example", "1"), (None, "0")):
            set_replica_flag(conn, reader)
            cur.execute("SELECT value FROM redcap_config WHERE field_name = 'read_replica_enable'")
            assert cur.fetchone() == (expected,)


def test_docs_show_the_from_address_lines_the_bootstrap_prints():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration-sql.md").read_text()
    (warning,) = sender_problems("redcap-help@hospital.example", "", SENDER)
    assert f"bootstrap WARNING: {warning}\n" in doc
    assert (f"bootstrap INFO: REDCap's universal From address (from_email) set to {SENDER} "
            "(SMTP_EMAIL)\n") in doc
