"""database.php rendering: a pure function, deterministic, escaped for PHP single-quoted
strings (checked by PHP itself), IAM and password modes, TLS and the reader endpoint."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "container"))

from bootstrap.database_php import (  # noqa: E402
    DatabasePhp, php_string, redcap_salt, render_database_php,
)
from bootstrap.files import write_atomic  # noqa: E402
from fixtures.bootstrap_env import require_php  # noqa: E402

IAM = DatabasePhp(host="w.cluster-x.us-east-1.rds.amazonaws.com", port=3306, db="redcap",
                  username="redcap_user", auth="iam", password=None, region="us-east-1",
                  tls="verify", salt_hex="ab" * 32, reader_host=None)


def php_eval(tmp_path: Path, content: str, expr: str, prelude: str = "") -> str:
    """Include the rendered file in PHP and print a JSON expression of its variables."""
    path = tmp_path / "database.php"
    path.write_text(content)
    code = f"{prelude} include {php_string(str(path))}; echo json_encode({expr});"
    result = subprocess.run([require_php(), "-r", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_salt_is_sha256_hex_of_the_secret():
    # As the original: DB_SALT_ALPHA=$(echo -n "$salt" | sha256sum)
    assert redcap_salt("abc") == hashlib.sha256(b"abc").hexdigest()
    assert redcap_salt("pa'ss€") == hashlib.sha256("pa'ss€".encode()).hexdigest()


def test_iam_mode_renders_token_call_and_verified_tls():
    php = render_database_php(IAM)
    assert "require_once '/usr/local/share/redcap/rds_iam_auth.php';" in php
    assert "$password = redcap_rds_auth_token($hostname, $port, $username, 'us-east-1');" in php
    assert "$db_ssl_ca     = '/usr/local/share/redcap/rds-ca-bundle.pem';" in php
    assert "$db_ssl_verify_server_cert = true;" in php
    assert "$read_replica_hostname = '';" in php
    # The token is computed for the bare host before REDCap's "host:port" form is set.
    assert php.index("redcap_rds_auth_token($hostname") < php.index("$hostname = $hostname . ':'")


def test_iam_mode_reader_gets_its_own_token():
    reader = "r.cluster-ro-x.us-east-1.rds.amazonaws.com"
    php = render_database_php(replace(IAM, reader_host=reader))
    assert ("$read_replica_password = redcap_rds_auth_token("
            "'r.cluster-ro-x.us-east-1.rds.amazonaws.com', $port, $username, 'us-east-1');") in php
    assert "$read_replica_username = $username;" in php


def test_iam_mode_runs_in_php(tmp_path):
    # A stand-in for the image's helper, so PHP evaluates the file for real.
    prelude = ("function redcap_rds_auth_token(string $h, int $p, string $u, string $r): string "
               "{ return \"token:$h:$p:$u:$r\"; }")
    content = render_database_php(replace(IAM, reader_host="reader.example")).replace(
        "require_once '/usr/local/share/redcap/rds_iam_auth.php';", "")
    out = json.loads(php_eval(tmp_path, content,
                              "[$hostname, $password, $read_replica_hostname, "
                              "$read_replica_password, $db, $username, $salt]", prelude))
    assert out == [
        "w.cluster-x.us-east-1.rds.amazonaws.com:3306",
        "token:w.cluster-x.us-east-1.rds.amazonaws.com:3306:redcap_user:us-east-1",
        "reader.example:3306",
        "token:reader.example:3306:redcap_user:us-east-1",
        "redcap", "redcap_user", "ab" * 32,
    ]


@pytest.mark.parametrize("password", [
    "plain", "it's", "back\\slash", "ends with \\", "\\'", "$dollar {$x} \"dq\"", "?>", "€ñ",
])
def test_password_mode_escaping_round_trips_through_php(tmp_path, password):
    cfg = replace(IAM, auth="password", password=password, tls="off", reader_host="r.example")
    php = render_database_php(cfg)
    assert "rds_iam_auth" not in php
    out = json.loads(php_eval(tmp_path, php, "[$password, $read_replica_password, $db_ssl_ca, "
                                             "$db_ssl_verify_server_cert]"))
    assert out == [password, password, "", False]


def test_lint_every_variant(tmp_path):
    php = require_php()
    for i, cfg in enumerate([IAM, replace(IAM, reader_host="r.example"),
                             replace(IAM, auth="password", password="x'y", tls="off")]):
        path = tmp_path / f"v{i}.php"
        path.write_text(render_database_php(cfg))
        result = subprocess.run([php, "-l", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_deterministic_and_unchanged_file_not_rewritten(tmp_path):
    assert render_database_php(IAM) == render_database_php(IAM)
    path = tmp_path / "database.php"
    assert write_atomic(path, render_database_php(IAM), 0o640) is True
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    assert write_atomic(path, render_database_php(IAM), 0o640) is False
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_link_is_written_through_beside_its_target(tmp_path):
    """The image links database.php into /var/lib/redcap/conf/ (the root filesystem is read-only):
    the temporary file and the rename happen in the target's directory, the link stays."""
    conf, webroot = tmp_path / "conf", tmp_path / "html"
    conf.mkdir()
    webroot.mkdir()
    (webroot / "database.php").symlink_to(conf / "database.php")
    webroot.chmod(0o555)  # as read-only as the image's web root, even for the owner
    try:
        assert write_atomic(webroot / "database.php", render_database_php(IAM), 0o640) is True
        assert (webroot / "database.php").is_symlink()
        assert (conf / "database.php").read_text() == render_database_php(IAM)
        assert (conf / "database.php").stat().st_mode & 0o777 == 0o640
        assert sorted(p.name for p in conf.iterdir()) == ["database.php"]  # no temporary file left
        assert sorted(p.name for p in webroot.iterdir()) == ["database.php"]
        assert write_atomic(webroot / "database.php", render_database_php(IAM), 0o640) is False
    finally:
        webroot.chmod(0o755)


def test_nul_is_refused():
    with pytest.raises(ValueError):
        php_string("a\x00b")


def test_repr_hides_secrets():
    cfg = replace(IAM, auth="password", password="hunter2-secret")
    assert "hunter2" not in repr(cfg) and "abab" not in repr(cfg)


def test_in_place_rewrite_when_directory_is_not_writable():
    """The image: /var/www/html and /etc belong to root, database.php and /etc/msmtprc to
    www-data. A non-root process rewrites such a file in place (mode first, then content)."""
    import os
    import shutil
    import tempfile

    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the write as an unprivileged user"
    assert os.geteuid() == 0, "this test drops to uid 65534 and must start as root"
    # pytest's tmp_path sits under a 0700 directory the unprivileged user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="redcap-bootstrap-"))
    try:
        _rewrite_as_nobody(setpriv, base)
    finally:
        shutil.rmtree(base)


def _rewrite_as_nobody(setpriv: str, base: Path) -> None:
    import os

    webroot = base / "html"
    webroot.mkdir()
    target = webroot / "database.php"
    target.write_text("<?php // stock\n")
    os.chown(target, 65534, 65534)
    target.chmod(0o644)
    base.chmod(0o755)
    webroot.chmod(0o755)  # root-owned: the unprivileged user cannot create files here
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from bootstrap.files import write_atomic;"
            "print(write_atomic(sys.argv[2], '<?php // new\\n', 0o640),"
            "      write_atomic(sys.argv[2], '<?php // new\\n', 0o640))")
    container = str(Path(__file__).resolve().parent.parent / "container")
    result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                             "/usr/bin/python3", "-B", "-c", code, container, str(target)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["True", "False"]
    assert target.read_text() == "<?php // new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in webroot.iterdir()) == ["database.php"]
