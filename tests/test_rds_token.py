"""container/rds_iam_auth.php, run by the host's php-cli, against botocore.

The token REDCap uses as its database password must be byte-for-byte what botocore's
generate_db_auth_token produces for the same credentials and time; the credentials must come
from the same sources in the same order as in the AWS SDKs (environment, container endpoint,
IMDSv2), and both credentials and tokens must be cached until shortly before they expire.
The credential endpoints are small HTTP servers on loopback that record every request.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import botocore.session
import pytest

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "container" / "rds_iam_auth.php"

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
HOST = "redcap-db.cluster-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com"
REGION = "eu-west-1"
USER = "redcap_user"


def php_binary() -> str:
    php = shutil.which("php")
    if php is None:
        pytest.fail("php-cli is not installed: apt-get install php-cli php-curl (scripts/test does)")
    return php


def botocore_token(host: str, port: int, user: str, region: str, key: str, secret: str,
                   token: str | None, now: int) -> str:
    """botocore's own token for fixed credentials, with its clock frozen at `now`."""
    session = botocore.session.Session()
    session.set_credentials(key, secret, token)
    client = session.create_client("rds", region_name=region)
    frozen = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        return client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)


def run_php(calls: list[dict], env: dict[str, str]) -> list[dict]:
    """Calls redcap_rds_auth_token once per entry, in ONE PHP process (so caches persist).

    Each result is {"token": ...} or {"error": message}.
    """
    driver = (
        "<?php\n"
        f"require {json.dumps(str(INCLUDE))};\n"
        "$out = [];\n"
        "foreach (json_decode($argv[1], true) as $c) {\n"
        "    try {\n"
        "        $out[] = ['token' => redcap_rds_auth_token($c['host'], $c['port'], $c['user'], $c['region'], $c['now'])];\n"
        "    } catch (Throwable $e) {\n"
        "        $out[] = ['error' => get_class($e) . ': ' . $e->getMessage()];\n"
        "    }\n"
        "}\n"
        "echo json_encode($out);\n"
    )
    # A clean environment: nothing from the machine running the tests may supply credentials.
    base = {"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true"}
    base.update(env)
    r = subprocess.run([php_binary(), "-d", "display_errors=stderr", "-r", driver.removeprefix("<?php\n"),
                        "--", json.dumps(calls)], capture_output=True, text=True, env=base, timeout=60)
    assert r.returncode == 0, f"php failed ({r.returncode}): {r.stderr}\n{r.stdout}"
    return json.loads(r.stdout)


def call(now: int = NOW, host: str = HOST, port: int = 3306, user: str = USER, region: str = REGION) -> dict:
    return {"host": host, "port": port, "user": user, "region": region, "now": now}


# --------------------------------------------------------------------------------------------
# loopback credential endpoints

@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Endpoint:
    """A loopback HTTP server; `routes` maps (method, path) to a handler returning (status, body)."""

    routes: dict[tuple[str, str], Callable[[Recorded], tuple[int, str]]]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def hits(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Endpoint]]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[tuple[str, str], Callable[[Recorded], tuple[int, str]]]) -> Endpoint:
        ep = Endpoint(routes=routes)

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                ep.requests.append(rec)
                handler = ep.routes.get((self.command, self.path))
                status, body = handler(rec) if handler else (404, "not found")
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = _serve  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        ep.url = f"http://127.0.0.1:{server.server_address[1]}"
        return ep

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def creds_json(key: str, secret: str, token: str, expires: int, **extra: str) -> str:
    return json.dumps({"AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
                       "Expiration": iso(expires), **extra})


IMDS_SESSION = "imds-session-token-123"
ROLE = "redcap-instance-role"


def imds_routes(body: Callable[[], str]) -> dict[tuple[str, str], Callable[[Recorded], tuple[int, str]]]:
    """IMDSv2 only: every GET without the session token from the PUT is refused (401)."""
    def put_token(r: Recorded) -> tuple[int, str]:
        ok = r.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "").isdigit()
        return (200, IMDS_SESSION) if ok else (400, "missing ttl")

    def guarded(answer: Callable[[], str]) -> Callable[[Recorded], tuple[int, str]]:
        def h(r: Recorded) -> tuple[int, str]:
            if r.headers.get("x-aws-ec2-metadata-token") != IMDS_SESSION:
                return 401, "IMDSv1 is disabled"
            return 200, answer()
        return h

    return {
        ("PUT", "/latest/api/token"): put_token,
        ("GET", "/latest/meta-data/iam/security-credentials/"): guarded(lambda: ROLE + "\n"),
        ("GET", f"/latest/meta-data/iam/security-credentials/{ROLE}"): guarded(body),
    }


# --------------------------------------------------------------------------------------------
# byte-for-byte equality with botocore

@pytest.mark.parametrize("host,port,user,region,token", [
    (HOST, 3306, USER, REGION, None),
    (HOST, 3306, USER, REGION, "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/="),
    ("redcap.cluster-ro-abc.us-east-1.rds.amazonaws.com", 13306, "redcap_app", "us-east-1", "tok"),
    ("db.example.internal", 443, "u", "ap-southeast-2", None),
    (HOST, 3306, "user.with-dash_and~tilde", REGION, "a b+c"),
    # botocore signs the host header from urlsplit().hostname, which is lower-cased, while
    # the returned URL keeps the spelling given (DB_HOST may be written in upper case).
    ("RedCap-DB.Cluster-C1A2B3.eu-west-1.rds.amazonaws.com", 3306, USER, REGION, None),
    ("RedCap-DB.Cluster-C1A2B3.eu-west-1.rds.amazonaws.com", 443, USER, REGION, "tok"),
])
def test_token_is_byte_identical_to_botocore(host: str, port: int, user: str, region: str,
                                             token: str | None) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+/="}
    if token is not None:
        env["AWS_SESSION_TOKEN"] = token
    [got] = run_php([call(host=host, port=port, user=user, region=region)], env)
    expected = botocore_token(host, port, user, region, env["AWS_ACCESS_KEY_ID"],
                              env["AWS_SECRET_ACCESS_KEY"], token, NOW)
    assert got == {"token": expected}


def test_session_token_is_part_of_the_signed_token() -> None:
    env = {"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_SESSION_TOKEN": "session/token+with=chars"}
    [with_token] = run_php([call()], env)
    assert "&X-Amz-Security-Token=session%2Ftoken%2Bwith%3Dchars&X-Amz-Signature=" in with_token["token"]
    env.pop("AWS_SESSION_TOKEN")
    [without] = run_php([call()], env)
    assert "X-Amz-Security-Token" not in without["token"]
    assert without["token"].split("X-Amz-Signature=")[1] != with_token["token"].split("X-Amz-Signature=")[1]


def test_token_shape() -> None:
    [got] = run_php([call()], {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"})
    t = got["token"]
    assert t.startswith(f"{HOST}:3306/?Action=connect&DBUser={USER}&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                        f"&X-Amz-Credential=AKID%2F20260101%2F{REGION}%2Frds-db%2Faws4_request"
                        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host")
    assert not t.startswith("https://")


# --------------------------------------------------------------------------------------------
# credential sources and their order

def test_environment_credentials_win_over_every_endpoint(endpoint: Callable[..., Endpoint]) -> None:
    container = endpoint({("GET", "/creds"): lambda r: (200, creds_json("ASIAC", "c", "t", NOW + 3600))})
    imds = endpoint(imds_routes(lambda: creds_json("ASIAI", "i", "t", NOW + 3600)))
    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "envsecret",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": container.url + "/creds",
           "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    [got] = run_php([call()], env)
    assert got == {"token": botocore_token(HOST, 3306, USER, REGION, "AKIAENV", "envsecret", None, NOW)}
    assert container.requests == [] and imds.requests == []


def test_container_endpoint_with_authorization_token(endpoint: Callable[..., Endpoint]) -> None:
    ep = endpoint({("GET", "/v2/credentials/abc"): lambda r: (
        (200, creds_json("ASIACONT", "contsecret", "conttoken", NOW + 3600))
        if r.headers.get("authorization") == "Bearer pod-identity" else (403, "denied"))})
    imds = endpoint(imds_routes(lambda: creds_json("ASIAI", "i", "t", NOW + 3600)))
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/v2/credentials/abc",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Bearer pod-identity",
           "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
    [got] = run_php([call()], env)
    assert got == {"token": botocore_token(HOST, 3306, USER, REGION, "ASIACONT", "contsecret", "conttoken", NOW)}
    assert ep.hits("GET", "/v2/credentials/abc") == 1
    assert imds.requests == [], "the container endpoint must be used before instance metadata"


def test_container_authorization_token_file(endpoint: Callable[..., Endpoint], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eks-pod-identity-token\n")
    ep = endpoint({("GET", "/creds"): lambda r: (
        (200, creds_json("ASIAFILE", "filesecret", "ft", NOW + 3600))
        if r.headers.get("authorization") == "eks-pod-identity-token" else (403, "denied"))})
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/creds",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored-when-a-file-is-given"}
    [got] = run_php([call()], env)
    assert got == {"token": botocore_token(HOST, 3306, USER, REGION, "ASIAFILE", "filesecret", "ft", NOW)}


def test_container_full_uri_must_not_leave_the_host() -> None:
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://198.51.100.7/creds"}
    [got] = run_php([call()], env)
    assert "FULL_URI must use https or a loopback" in got["error"]


def test_container_endpoint_failure_is_reported_without_values(endpoint: Callable[..., Endpoint]) -> None:
    ep = endpoint({("GET", "/creds"): lambda r: (500, "SecretAccessKey=leak")})
    [got] = run_php([call()], {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/creds"})
    assert "container credentials endpoint failed (HTTP 500" in got["error"]
    assert "leak" not in got["error"]


def test_imdsv2_session_token_flow(endpoint: Callable[..., Endpoint]) -> None:
    imds = endpoint(imds_routes(lambda: creds_json("ASIAIMDS", "imdssecret", "imdstoken", NOW + 6 * 3600,
                                                   Code="Success", Type="AWS-HMAC")))
    env = {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url + "/"}
    [got] = run_php([call()], env)
    assert got == {"token": botocore_token(HOST, 3306, USER, REGION, "ASIAIMDS", "imdssecret", "imdstoken", NOW)}
    assert [(r.method, r.path) for r in imds.requests] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", f"/latest/meta-data/iam/security-credentials/{ROLE}"),
    ]


def test_no_credentials_anywhere_is_a_clear_error() -> None:
    [got] = run_php([call()], {"AWS_EC2_METADATA_DISABLED": "true"})
    assert got["error"] == ("RuntimeException: RDS IAM auth: no AWS credentials "
                            "(environment, container endpoint or instance metadata)")


# --------------------------------------------------------------------------------------------
# caching

def test_credentials_and_token_are_cached_until_near_expiry(endpoint: Callable[..., Endpoint]) -> None:
    ep = endpoint({("GET", "/creds"): lambda r: (200, creds_json("ASIACACHE", "s", "t", NOW + 3600))})
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/creds"}
    results = run_php([
        call(NOW),
        call(NOW + 10),          # same token: still 890 s valid
        call(NOW + 599),         # 301 s left: still reused
        call(NOW + 601),         # 299 s left (< 300 s margin): signed again
        call(NOW + 3600 - 301),  # credentials 301 s from expiry: still cached
        call(NOW + 3600 - 299),  # credentials within the margin: fetched again
    ], env)
    tokens = [r["token"] for r in results]
    assert tokens[0] == tokens[1] == tokens[2] == botocore_token(HOST, 3306, USER, REGION, "ASIACACHE", "s", "t", NOW)
    assert tokens[3] == botocore_token(HOST, 3306, USER, REGION, "ASIACACHE", "s", "t", NOW + 601)
    assert ep.hits("GET", "/creds") == 2, "credentials fetched once, then again only near expiry"


def test_token_never_outlives_its_credentials(endpoint: Callable[..., Endpoint]) -> None:
    # Credentials expiring in 400 s: a token signed now is only usable for 400 s, so 150 s later
    # (250 s left < 300 s margin) both the credentials and the token must be renewed.
    served = iter([creds_json("ASIAONE", "s1", "t1", NOW + 400), creds_json("ASIATWO", "s2", "t2", NOW + 7200)])
    ep = endpoint({("GET", "/creds"): lambda r: (200, next(served))})
    first, second = run_php([call(NOW), call(NOW + 150)], {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/creds"})
    assert first["token"] == botocore_token(HOST, 3306, USER, REGION, "ASIAONE", "s1", "t1", NOW)
    assert second["token"] == botocore_token(HOST, 3306, USER, REGION, "ASIATWO", "s2", "t2", NOW + 150)


def test_cache_is_per_endpoint_and_user() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}
    a, b, c = run_php([call(), call(host="reader." + HOST), call(user="other_user")], env)
    assert len({a["token"], b["token"], c["token"]}) == 3
    assert b["token"] == botocore_token("reader." + HOST, 3306, USER, REGION, "AKID", "s", None, NOW)


def test_failed_refresh_keeps_still_valid_credentials(endpoint: Callable[..., Endpoint]) -> None:
    answers = iter([(200, creds_json("ASIAOLD", "old", "t", NOW + 3600))])
    ep = endpoint({("GET", "/creds"): lambda r: next(answers, (500, "endpoint down"))})
    first, during_outage, too_late = run_php(
        [call(NOW), call(NOW + 3600 - 200), call(NOW + 3600 - 30)],
        {"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.url + "/creds"})
    assert first["token"] == botocore_token(HOST, 3306, USER, REGION, "ASIAOLD", "old", "t", NOW)
    # 200 s left: the refresh fails, the cached credentials still sign (token bounded by them).
    assert during_outage["token"] == botocore_token(HOST, 3306, USER, REGION, "ASIAOLD", "old", "t", NOW + 3400)
    # 30 s left: no longer good enough, the endpoint's failure is reported.
    assert "container credentials endpoint failed (HTTP 500" in too_late["error"]
    assert ep.hits("GET", "/creds") == 3
