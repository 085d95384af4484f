"""The real container image: built once per session from an assembled context (fixture REDCap
zip, the repository's configuration SQL, a test CA bundle) on the local Debian trixie base, run
against MariaDB and moto on loopback, and checked from the outside over HTTP and through
docker exec / inspect / save.

The end-to-end run uses DB_AUTH=password and DB_TLS=off (the local MariaDB has neither IAM nor
TLS); the IAM token include is checked inside the image against botocore directly.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import io
import json
import re
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import botocore.session
import pytest

from container.webtier.sizing import IMAGEMAGICK_MEMORY_MIB, MAX_WORKERS, RESERVE_MIB, WORKER_OVERHEAD_MIB
from container.context import WRITABLE_PATHS
from image_support import (LANGUAGE_CONTENT, LANGUAGE_FILE, MODULE_DIR, REDCAP_VERSION, BuiltImage, RunningApp,
                           docker, read_only_run_args, start_app, wait_http)
from overload_support import WebTier, burst, memory_stats, run_load, start_web_tier

pytestmark = pytest.mark.docker

VERSION_DIR = f"redcap_v{REDCAP_VERSION}"


@pytest.fixture(scope="session")
def app(image: BuiltImage, mariadb, moto_server) -> Iterator[RunningApp]:
    running = start_app(image.tag, mariadb, moto_server, extra_env={"PHP_TIMEZONE": "Europe/Berlin"})
    yield running
    running.stop()


def request(app: RunningApp | WebTier, path: str,
            headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One request without following redirects; header names lower-cased. Headers given as
    pairs may repeat a name."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=15)
    try:
        conn.putrequest(method, path, skip_host=any(name.lower() == "host" for name, _ in pairs))
        for name, value in pairs:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
    finally:
        conn.close()


def wait_for_log(app: RunningApp, needle: str, timeout: float = 10) -> list[str]:
    """Container log lines containing needle, waiting for them: Apache writes the access log
    after the response has gone out, and Docker copies container output asynchronously."""
    deadline = time.monotonic() + timeout
    while not (lines := [line for line in app.logs().splitlines() if needle in line]):
        assert time.monotonic() < deadline, f"{needle!r} did not appear in the container log"
        time.sleep(0.1)
    return lines


# --------------------------------------------------------------------------------------------
# Read-only root filesystem (ECS readonlyRootFilesystem)

def test_read_only_root_serves_and_survives_a_restart(image: BuiltImage, mariadb, moto_server) -> None:
    """The production filesystem: nothing writable but a tmpfs at each of WRITABLE_PATHS, which
    start empty as ECS's task volumes do, and start empty again after the restart."""
    app = start_app(image.tag, mariadb, moto_server, run_args=read_only_run_args())
    try:
        mounts = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", app.name).stdout)
        assert mounts["ReadonlyRootfs"] is True and sorted(mounts["Tmpfs"]) == sorted(WRITABLE_PATHS)
        for _ in range(2):
            assert request(app, "/healthz")[:3:2] == (200, "ok\n")
            status, _, body = request(app, "/")
            assert (status, body.strip()) == (200, f"REDCap fixture OK db={app.db_name} version={REDCAP_VERSION}")
            # The image itself cannot be changed, not even by root.
            denied = app.exec("sh", "-c", "touch /var/www/html/index.php /var/www/html/modules/x 2>&1; exit 0",
                              user="0").stdout
            assert denied.count("Read-only file system") == 2, denied
            docker("restart", app.name, timeout=180)
            wait_http(app.url + "/healthz", 120, container=app.name)
        assert "Traceback" not in app.logs()
    finally:
        app.stop()


def test_modules_folder_is_baked_into_the_image(app: RunningApp) -> None:
    listing = app.exec("find", f"/var/www/html/modules/{MODULE_DIR}", "-printf", "%P %u %m\n").stdout.split("\n")
    assert sorted(filter(None, listing)) == [" root 755", "config.json root 644"], listing


# --------------------------------------------------------------------------------------------
# HTTP

def test_health_endpoint(app: RunningApp) -> None:
    status, headers, body = request(app, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert headers["content-type"].startswith("text/plain")
    assert "set-cookie" not in headers and "x-powered-by" not in headers


def test_health_endpoint_needs_neither_php_nor_database(image: BuiltImage) -> None:
    """The CMD alone (no bootstrap, no database anywhere): /healthz is 200, the PHP page is not."""
    web = start_web_tier(image.tag)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=15)
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 500 and "REDCap fixture DB error" in r.read().decode()
    finally:
        web.stop()


@pytest.mark.parametrize("env,message", [
    ({"PORT": "80"}, "PORT must be a port number above 1024, got '80'"),
    ({"PORT": "8080x"}, "PORT must be a port number above 1024, got '8080x'"),
    ({"PORT": "18080", "TLS_PORT": "18080"}, "TLS_PORT must differ from PORT (18080)"),
    ({"PORT": "18080", "STATUS_PORT": "443"}, "STATUS_PORT must be a port number above 1024, got '443'"),
    ({"PORT": "8082"}, "STATUS_PORT must differ from PORT (8082)"),
    ({"PORT": "18080", "TLS_PORT": "18082", "STATUS_PORT": "18082"}, "TLS_PORT must differ from STATUS_PORT (18082)"),
    ({"PHP_MEMORY_LIMIT": "64M"},
     "PHP_MEMORY_LIMIT must be a size in M or G from 128M to 16G (example: 512M), got '64M'"),
    ({"REQUEST_TIMEOUT_SECONDS": "0"},
     "REQUEST_TIMEOUT_SECONDS must be an integer 1..86400 (example: 120), got '0'"),
    ({"TRUST_FORWARDED_HOST": "yes"}, "TRUST_FORWARDED_HOST must be true or false (example: true), got 'yes'"),
], ids=["privileged", "not-a-number", "same-as-tls", "status-privileged", "status-default-is-port",
        "status-same-as-tls", "php-memory-too-small", "no-request-timeout", "trust-forwarded-host-not-a-word"])
def test_ports_and_sizing_are_checked_before_apache_starts(image: BuiltImage, env: dict[str, str],
                                                           message: str) -> None:
    args = ["run", "--rm", "--network", "none", "--entrypoint", "/usr/local/bin/redcap-apache"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    r = docker(*args, image.tag, check=False)
    assert (r.returncode, r.stderr.strip()) == (64, f"redcap-apache: {message}")


def test_app_page_is_php_with_a_database_connection(app: RunningApp) -> None:
    status, headers, body = request(app, "/")
    assert status == 200, body
    # The fixture's index.php queries the database through database.php and mysqli; the
    # version comes from redcap_config, which the bootstrap's install step created.
    assert body.strip() == f"REDCap fixture OK db={app.db_name} version={REDCAP_VERSION}"
    assert "x-powered-by" not in headers


def test_old_version_urls_redirect_to_the_current_version(app: RunningApp) -> None:
    status, headers, _ = request(app, "/redcap_v13.7.2/DataEntry/image_view.php?id=5&doc_id_hash=ab%2Fc")
    assert status == 302
    assert headers["location"] == (f"http://127.0.0.1:{app.port}/{VERSION_DIR}/DataEntry/image_view.php"
                                   "?id=5&doc_id_hash=ab%2Fc")
    # Behind the load balancer: the scheme the client used, the host it asked for.
    status, headers, _ = request(app, "/redcap_v12.0.1/index.php",
                                 {"X-Forwarded-Proto": "https", "Host": "redcap.example.org"})
    assert (status, headers["location"]) == (302, f"https://redcap.example.org/{VERSION_DIR}/index.php")
    # Nonsense in X-Forwarded-Proto is not copied into the redirect.
    status, headers, _ = request(app, "/redcap_v12.0.1/", {"X-Forwarded-Proto": "javascript"})
    assert headers["location"].startswith("http://127.0.0.1:")
    # The current version is served, not redirected.
    status, _, body = request(app, f"/{VERSION_DIR}/VERSION")
    assert (status, body) == (200, REDCAP_VERSION + "\n")


# Express: Host is the internal load balancer's name, the site's own comes as X-Forwarded-Host.
INTERNAL_HOST = "internal-endpoint"
FORWARDED = {"Host": INTERNAL_HOST, "X-Forwarded-Host": "redcap.example.org", "X-Forwarded-Proto": "https"}
OLD_VERSION_PATH = "/redcap_v13.7.2/DataEntry/image_view.php?id=5"


def request_info(web: RunningApp | WebTier, headers: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict:
    """What PHP was told about the request (the fixture's request page)."""
    status, _, body = request(web, "/fixture_request.php", headers)
    assert status == 200, body
    return json.loads(body)


def test_forwarded_host_is_ignored_unless_trusted(app: RunningApp) -> None:
    """ECS, App Runner and the tunnel host (no TRUST_FORWARDED_HOST): a client's X-Forwarded-Host
    changes neither PHP's host nor the redirect, and PHP never sees the header."""
    info = request_info(app, FORWARDED)
    assert (info["HTTP_HOST"], info["SERVER_NAME"], info["forwarded_host_seen"]) == (INTERNAL_HOST, INTERNAL_HOST, False)
    status, headers, _ = request(app, OLD_VERSION_PATH, FORWARDED)
    assert (status, headers["location"]) == (302, f"https://{INTERNAL_HOST}/{VERSION_DIR}/DataEntry/image_view.php?id=5")
    assert "host name from X-Forwarded-Host" not in app.logs()


def test_behind_a_proxy_php_sees_the_clients_port_not_the_containers(app: RunningApp) -> None:
    """The load balancer (ECS), App Runner and CloudFront send X-Forwarded-Proto: PHP's port is
    then the scheme's default, so REDCap's own address carries no container port; a request
    without it (the tunnel host's port forwarding) keeps the port it names."""
    info = request_info(app, {"Host": "redcap.example.org", "X-Forwarded-Proto": "https"})
    assert (info["SERVER_PORT"], info["HTTPS"], info["base_url"]) == ("443", True, "https://redcap.example.org/")
    info = request_info(app, {"Host": "redcap.example.org", "X-Forwarded-Proto": "http"})
    assert (info["SERVER_PORT"], info["base_url"]) == ("80", "http://redcap.example.org/")
    info = request_info(app, {"Host": "localhost:8443"})
    assert (info["SERVER_PORT"], info["base_url"]) == ("8443", "http://localhost:8443/")


def test_trusted_forwarded_host_is_the_host_php_and_the_redirect_use(image: BuiltImage) -> None:
    """Express (TRUST_FORWARDED_HOST=true): a plain host name in X-Forwarded-Host is the host PHP
    sees, so REDCap's links and the old-version redirect name the site instead of the internal
    load balancer; anything else in the header is ignored. The CMD alone: no database needed."""
    web = start_web_tier(image.tag, env={"TRUST_FORWARDED_HOST": "true"})
    try:
        assert "; host name from X-Forwarded-Host" in web.logs()
        status, headers, _ = request(web, OLD_VERSION_PATH, FORWARDED)
        assert (status, headers["location"]) == (
            302, f"https://redcap.example.org/{VERSION_DIR}/DataEntry/image_view.php?id=5")
        assert request_info(web, FORWARDED) == {
            "HTTP_HOST": "redcap.example.org", "SERVER_NAME": "redcap.example.org", "SERVER_PORT": "443",
            "HTTPS": True, "forwarded_host_seen": False, "base_url": "https://redcap.example.org/"}
        # A port goes with it; without one, the port is the default of the client's scheme.
        info = request_info(web, {**FORWARDED, "X-Forwarded-Host": "redcap.example.org:8443"})
        assert (info["HTTP_HOST"], info["SERVER_NAME"], info["SERVER_PORT"], info["base_url"]) == (
            "redcap.example.org:8443", "redcap.example.org", "8443", "https://redcap.example.org:8443/")
        info = request_info(web, {"Host": INTERNAL_HOST, "X-Forwarded-Host": "redcap.example.org"})
        assert (info["SERVER_PORT"], info["base_url"]) == ("80", "http://redcap.example.org/")
        # Without the header, or with anything but a plain host name, the request's own Host.
        for bad in [[], [("X-Forwarded-Host", "evil.example/x")], [("X-Forwarded-Host", "evil.example x")],
                    [("X-Forwarded-Host", "evil.example:")], [("X-Forwarded-Host", "a.example, b.example")],
                    [("X-Forwarded-Host", "a.example"), ("X-Forwarded-Host", "b.example")]]:
            headers_sent = [("Host", INTERNAL_HOST), ("X-Forwarded-Proto", "https"), *bad]
            info = request_info(web, headers_sent)
            assert (info["HTTP_HOST"], info["SERVER_NAME"], info["forwarded_host_seen"]) == (
                INTERNAL_HOST, INTERNAL_HOST, False), bad
            status, headers, _ = request(web, OLD_VERSION_PATH, headers_sent)
            assert (status, headers["location"]) == (
                302, f"https://{INTERNAL_HOST}/{VERSION_DIR}/DataEntry/image_view.php?id=5"), bad
    finally:
        web.stop()


def test_no_directory_listing_and_private_paths(app: RunningApp) -> None:
    for path in (f"/{VERSION_DIR}/", f"/{VERSION_DIR}/Config/", "/languages/", "/modules/"):
        status, _, body = request(app, path)
        assert status in (403, 404), path
        assert "Index of" not in body and LANGUAGE_FILE not in body, path
    for path in ("/temp/", "/edocs/", "/database.php", "/temp/x.csv", "/.env"):
        status, _, body = request(app, path)
        assert status == 403, path
        assert "$password" not in body


def test_server_tokens_prod_and_security_headers(app: RunningApp) -> None:
    for path in ("/", "/healthz", "/no-such-page"):
        status, headers, body = request(app, path)
        assert headers["server"] == "Apache", path
        assert "Debian" not in body and "Apache/" not in body, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in headers
    _, headers, _ = request(app, "/healthz", {"X-Forwarded-Proto": "https"})
    assert headers["strict-transport-security"] == "max-age=31536000"
    status, _, _ = request(app, "/", method="TRACE")
    assert status == 405


def test_https_port_with_a_certificate_made_at_start(app: RunningApp, image: BuiltImage) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{app.tls_port}/healthz", context=ctx, timeout=10) as r:
        assert r.read() == b"ok\n"
    cert = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", app.tls_port)))
    on_disk = app.exec("openssl", "x509", "-outform", "DER", "-in", "/var/lib/redcap/tls/cert.pem", text=False)
    assert on_disk.stdout == cert
    key_mode = app.exec("stat", "-c", "%U %a", "/var/lib/redcap/tls/key.pem").stdout.split()
    assert key_mode == ["www-data", "600"]
    # No key or certificate in the image itself.
    empty = docker("run", "--rm", "--entrypoint", "ls", image.tag, "-A", "/var/lib/redcap/tls").stdout
    assert empty.strip() == ""


def test_access_log_has_forwarded_client_and_no_query_strings(app: RunningApp) -> None:
    request(app, "/index.php?s=SURVEYHASH123&secret=CRONSECRET456",
            {"X-Forwarded-For": "198.51.100.23", "User-Agent": "log-probe/1"})
    lines = wait_for_log(app, "log-probe/1")
    assert lines[-1].startswith("198.51.100.23 "), lines
    assert '"GET /index.php HTTP/1.1" 200' in lines[-1]
    logs = app.logs()
    assert "SURVEYHASH123" not in logs and "CRONSECRET456" not in logs
    assert "GET /healthz" not in logs, "health checks are not logged"


# --------------------------------------------------------------------------------------------
# the web tier: workers from the memory limit, overload, keep-alive, status page, graceful stop

def fpm_status(web: WebTier | RunningApp) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web.status_port}/fpm-status?json", timeout=10) as r:
        return json.loads(r.read())


def host_memtotal_mib() -> int:
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return kib // 1024


@pytest.mark.parametrize("memory_mib,env,workers,source", [
    (768, {}, 1, "cgroup"),
    (1280, {"PHP_MEMORY_LIMIT": "128M"}, 4, "cgroup"),
    (2048, {}, 4, "cgroup"),
    (4096, {}, 10, "cgroup"),
    (4096, {"PHP_MEMORY_LIMIT": "1G"}, 3, "cgroup"),
    # The platform's task size, when it is smaller than what the cgroup says.
    (4096, {"CONTAINER_MEMORY_MIB": "2048"}, 4, "CONTAINER_MEMORY_MIB"),
    # No limit at all (a tunnel host's docker run): the machine's memory.
    (None, {}, None, "MemTotal"),
], ids=["768m", "1280m-128M", "2g", "4g", "4g-1G", "task-size", "unlimited"])
def test_worker_count_follows_the_memory_limit(image: BuiltImage, memory_mib: int | None, env: dict[str, str],
                                               workers: int | None, source: str) -> None:
    """(memory - 352 MiB) // (memory_limit + 96 MiB) workers; queue 10 per worker; Apache threads
    twice the workers and queue, plus 64."""
    if workers is None:
        workers = min(MAX_WORKERS, (host_memtotal_mib() - RESERVE_MIB) // (256 + WORKER_OVERHEAD_MIB))
    web = start_web_tier(image.tag, memory_mib=memory_mib, env=env)
    try:
        status = fpm_status(web)
        line = next(line for line in web.logs().splitlines() if "web tier:" in line)
    finally:
        web.stop()
    assert (status["process manager"], status["total processes"]) == ("static", workers)
    assert f": {workers} PHP worker{'s' if workers > 1 else ''}, queue {10 * workers}, " \
           f"{22 * workers + 64} Apache threads;" in line
    assert f"({source}" in line


def test_overload_queues_every_request_and_kills_nothing(image: BuiltImage) -> None:
    """10x as many clients as workers, each request wanting half the memory_limit: every one is
    served (after waiting in the queue), no response is broken, the kernel kills nothing."""
    web = start_web_tier(image.tag, memory_mib=1280, cpus="1", env={"PHP_MEMORY_LIMIT": "128M"})
    try:
        assert fpm_status(web)["total processes"] == 4
        result = run_load(web.port, clients=40, seconds=6, mb=64, cpu_ms=20, timeout=60)
        stats = memory_stats(web.name)
        status = fpm_status(web)
    finally:
        web.stop()
    assert (result.broken, result.non_2xx) == (0, 0), (result.summary(), result.broken_examples)
    assert result.ok >= 40, result.summary()  # every client got at least one answer
    assert stats.oom_kills == 0
    # All four workers were busy at once, and together with the rest stayed well inside the limit
    # that 40 requests of 64 MiB at once would have blown.
    assert status["max active processes"] == 4
    assert stats.peak_bytes < 1280 * 2**20 * 0.75, stats


def test_requests_beyond_the_queue_get_a_fast_503(image: BuiltImage) -> None:
    """One worker, queue 10: of 16 requests at once, 11 are served, 5 get a 503 at once."""
    web = start_web_tier(image.tag, memory_mib=768, env={"PHP_MEMORY_LIMIT": "128M"})
    try:
        assert fpm_status(web)["total processes"] == 1
        result = burst(web.port, requests=16, mb=1, cpu_ms=0, sleep_ms=800, timeout=60)
    finally:
        web.stop()
    assert result.broken == 0, result.broken_examples
    assert result.statuses == {200: 11, 503: 5}, result.summary()
    assert result.slow_503 == 0
    # The served ones waited their turn: the last of them behind ten others.
    assert max(result.latencies) >= 11 * 0.8


def test_keepalive_outlasts_the_load_balancer_idle_timeout(image: BuiltImage) -> None:
    """Behind a load balancer (LB_IDLE_TIMEOUT_SECONDS) an idle connection stays open beyond
    Apache's default of 5 s; without one, Apache closes it after 5 s."""
    behind = start_web_tier(image.tag, env={"LB_IDLE_TIMEOUT_SECONDS": "4000"})
    alone = start_web_tier(image.tag)
    try:
        assert "keep-alive 4060 s" in behind.logs() and "keep-alive 5 s" in alone.logs()
        conns = {}
        for web in (behind, alone):
            conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
            conns[web.name] = conn
        time.sleep(7)
        for web, still_open in ((behind, True), (alone, False)):
            sock = conns[web.name].sock
            sock.setblocking(False)
            try:
                closed = sock.recv(1) == b""
            except BlockingIOError:
                closed = False
            sock.setblocking(True)
            assert closed is not still_open, web.name
        # The same connection, idle for 7 s, still serves the next request.
        conn = conns[behind.name]
        sock = conn.sock
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n" and conn.sock is sock
    finally:
        behind.stop()
        alone.stop()


def listening_addresses(app: RunningApp, port: int) -> set[str]:
    """Local addresses of the sockets listening on port (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in app.exec("cat", table).stdout.splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_status_page_only_on_loopback(app: RunningApp) -> None:
    status = fpm_status(app)
    assert status["pool"] == "redcap" and status["total processes"] >= 1
    assert {"active processes", "idle processes", "accepted conn", "max active processes"} <= set(status)
    # Never through the public entry: neither port the load balancer or a client can reach has it.
    for path in ("/fpm-status", "/fpm-status?json", "/fpm-status?full"):
        assert request(app, path)[0] == 404, path
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", app.tls_port, timeout=10, context=ctx)
    conn.request("GET", "/fpm-status")
    assert conn.getresponse().status == 404
    # Bound to 127.0.0.1 only (PORT to every address), so only the container itself reaches it.
    assert listening_addresses(app, app.status_port) == {"0100007F"}
    assert listening_addresses(app, app.port) & {"00000000", "00000000000000000000000000000000"}
    # The full view, which lists request URIs with their query strings, is refused.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{app.status_port}/fpm-status?json&full", timeout=10)
    assert info.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{app.status_port}/", timeout=10)
    assert info.value.code == 403


def test_graceful_stop_finishes_running_and_queued_requests(image: BuiltImage) -> None:
    """docker stop (SIGWINCH) while one request runs and two wait for the only worker: all three
    are answered in full, then the container exits 0."""
    web = start_web_tier(image.tag, memory_mib=768, env={"PHP_MEMORY_LIMIT": "128M"})
    try:
        assert fpm_status(web)["total processes"] == 1
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(burst, web.port, requests=1, mb=1, cpu_ms=0, sleep_ms=1500) for _ in range(3)]
            time.sleep(0.5)
            stop = pool.submit(docker, "stop", "-t", "30", web.name)
            results = [a.result() for a in answers]
            stop.result()
        state = json.loads(docker("inspect", web.name).stdout)[0]["State"]
        logs = web.logs()
    finally:
        web.stop()
    assert [(r.statuses, r.broken) for r in results] == [({200: 1}, 0)] * 3
    assert max(max(r.latencies) for r in results) >= 3 * 1.5
    assert "caught SIGWINCH, shutting down gracefully" in logs
    assert (state["Running"], state["ExitCode"], state["OOMKilled"]) == (False, 0, False)


def test_container_exits_when_php_fpm_dies(image: BuiltImage) -> None:
    """No PHP, no service: the container ends (so the platform replaces it) instead of answering
    every PHP request with an error while its health check stays green."""
    web = start_web_tier(image.tag)
    try:
        docker("exec", web.name, "sh", "-c", "kill -KILL $(cat /run/redcap/php-fpm.pid)")
        deadline = time.monotonic() + 30
        while web.running():
            assert time.monotonic() < deadline, "the container kept running without PHP-FPM"
            time.sleep(0.2)
        state = json.loads(docker("inspect", web.name).stdout)[0]["State"]
        logs = web.logs()
    finally:
        web.stop()
    assert state["ExitCode"] == 70
    assert "PHP-FPM exited (137); stopping Apache" in logs


# --------------------------------------------------------------------------------------------
# inside the running container

def test_processes_run_as_www_data(app: RunningApp, image: BuiltImage) -> None:
    config = json.loads(docker("image", "inspect", image.tag).stdout)[0]["Config"]
    assert config["User"] == "33:33"
    assert config["Entrypoint"] == ["python3", "-m", "bootstrap"]
    assert config["Cmd"] == ["/usr/local/bin/redcap-apache"]
    assert config["StopSignal"] == "SIGWINCH"
    # Every process, including PID 1 (the web tier, exec'd by the bootstrap), is uid 33 = www-data.
    out = app.exec("sh", "-c", "for s in /proc/[0-9]*/status; do "
                               "awk '/^Name:/{n=$2} /^Uid:/{print n, $2, $3}' $s; done").stdout
    procs = [line.split() for line in out.splitlines() if line.strip()]
    assert procs and all(uid == "33" and euid == "33" for _, uid, euid in procs), procs
    assert {"apache2", "php-fpm8.4"} <= {name for name, _, _ in procs}
    assert app.exec("cat", "/proc/1/comm").stdout.strip() == "redcap-web"
    # Both servers' main processes are children of PID 1, which passes the stop signal on.
    out = app.exec("sh", "-c", "for p in /proc/[0-9]*; do echo $(cat $p/comm) $(cut -d' ' -f4 $p/stat); done").stdout
    assert {"apache2", "php-fpm8.4"} <= {name for name, ppid in (line.split() for line in out.splitlines())
                                         if ppid == "1"}
    assert app.exec("id", "-un").stdout.strip() == "www-data"


def test_database_php_contents(app: RunningApp) -> None:
    text = app.exec("cat", "/var/www/html/database.php").stdout
    s = app.secrets
    assert f"$hostname = '127.0.0.1';" in text
    assert f"$port     = {app.env['DB_PORT']};" in text
    assert f"$db       = '{app.db_name}';" in text
    assert f"$username = '{app.app_user}';" in text
    assert f"$password = '{s.app_password}';" in text
    assert f"$salt = '{hashlib.sha256(s.salt.encode()).hexdigest()}';" in text
    assert "$db_ssl_verify_server_cert = false;" in text
    assert "$read_replica_hostname = '';" in text
    assert s.master_password not in text and s.salt not in text and s.s3_secret_key not in text
    # REDCap's path is a link into a writable directory: the root filesystem is read-only.
    assert app.exec("readlink", "/var/www/html/database.php").stdout.strip() == "/var/lib/redcap/conf/database.php"
    assert app.exec("stat", "-L", "-c", "%U %a", "/var/www/html/database.php").stdout.split() == ["www-data", "640"]


def test_writable_paths_are_only_what_redcap_writes(app: RunningApp) -> None:
    """Everything www-data can write, on the whole image filesystem, when the root is writable
    (`docker run` without --read-only). The image's volumes (WRITABLE_PATHS) are filesystems of
    their own: -xdev lists them, not their contents."""
    pruned = " -o ".join(f"-path {p}" for p in (
        "/proc", "/sys", "/dev", "'/var/tmp/*'", "'/var/www/html/edocs/*'"))
    out = app.exec("sh", "-c", f"find / -xdev \\( {pruned} \\) -prune -o -writable -print 2>/dev/null || true"
                   ).stdout.split()
    assert sorted(set(out)) == sorted([
        # The volumes: what the container writes, also with a read-only root (ECS).
        *WRITABLE_PATHS,
        # Links into /var/lib/redcap/conf, where the bootstrap writes database.php and msmtp's account.
        "/var/www/html/database.php", "/etc/msmtprc",
        # REDCap's local file storage (unused: files are in S3).
        "/var/www/html/edocs",
        # Writable only without --read-only: Apache's log and cache directories (it logs to
        # stdout), the lock directory above Apache's and the world-writable /var/tmp.
        "/var/log/apache2", "/var/cache/apache2/mod_cache_disk", "/run/lock", "/var/lock", "/var/tmp",
    ])
    # External modules come from the image only (container/README.md, "External modules").
    assert app.exec("stat", "-c", "%U %a", "/var/www/html/modules").stdout.split() == ["root", "755"]


def test_redcap_files_languages_ca_bundle_and_sql(app: RunningApp, image: BuiltImage) -> None:
    assert app.exec("cat", f"/var/www/html/languages/{LANGUAGE_FILE}").stdout == LANGUAGE_CONTENT
    assert app.exec("ls", "/var/www/html/languages").stdout.split() == [LANGUAGE_FILE]
    ctx = image.context
    assert app.exec("cat", "/usr/local/share/redcap/rds-ca-bundle.pem").stdout == \
        (ctx / "rds-ca-bundle.pem").read_text()
    assert app.exec("cat", "/etc/redcap/redcap-config.sql").stdout == (ctx / "redcap-config.sql").read_text()
    assert app.exec("cat", "/usr/local/share/redcap/rds_iam_auth.php").stdout == \
        (ctx / "rds_iam_auth.php").read_text()
    assert "Define REDCAP_VERSION redcap_v14.0.0" in \
        app.exec("cat", "/etc/apache2/conf-enabled/redcap-version.conf").stdout
    # Read-replica lag check bypassed at build time, so REDCap's code needs no write access.
    assert "$bypassReadReplicaLagCheck=true)" in \
        app.exec("cat", f"/var/www/html/{VERSION_DIR}/Config/init_functions.php").stdout
    # The zip itself never reaches the final image.
    assert app.exec("sh", "-c", "ls /tmp/redcap.zip /tmp/unpacked /out 2>&1 || true").stdout.count("No such") == 3


PHP_PROBE = r"""<?php
header('Content-Type: application/json');
error_log('php-error-log-probe');
$pdf = sys_get_temp_dir() . '/probe.pdf';
exec('gs -q -dSAFER -dBATCH -dNOPAUSE -sDEVICE=pdfwrite -o ' . escapeshellarg($pdf) . ' -c showpage');
$im = new Imagick();
$im->readImage($pdf);
unlink($pdf);
$ini = [];
foreach (['memory_limit', 'max_execution_time', 'max_input_time', 'upload_max_filesize', 'post_max_size',
          'max_input_vars', 'session.cookie_secure',
          'session.cookie_httponly', 'date.timezone', 'display_errors', 'expose_php', 'error_log',
          'opcache.enable', 'opcache.validate_timestamps', 'apc.enabled'] as $k) {
    $ini[$k] = ini_get($k);
}
echo json_encode([
    'sapi' => PHP_SAPI,
    'version' => PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION,
    'ext' => array_map('strtolower', get_loaded_extensions()),
    'gd_jpeg' => gd_info()['JPEG Support'] ?? false,
    'pdf_pages' => $im->getNumberImages(),
    'opcache' => opcache_get_status(false)['opcache_enabled'] ?? false,
    'apcu' => apcu_enabled(),
    'ini' => $ini,
    'sendmail' => ini_get('sendmail_path'),
    'https' => $_SERVER['HTTPS'] ?? null,
    'remote' => $_SERVER['REMOTE_ADDR'],
    'aws_region' => getenv('AWS_REGION'),
    'raise_memory_limit' => ini_set('memory_limit', '4G'),
    'raise_time_limit' => set_time_limit(600),
]);
"""


def test_php_under_php_fpm(app: RunningApp) -> None:
    """A probe page placed for the duration of the test (as root; REDCap's tree is read-only)."""
    probe = "zz-probe-" + hashlib.sha256(app.name.encode()).hexdigest()[:8] + ".php"
    docker("exec", "-i", "-u", "0", app.name, "sh", "-c", f"cat > /var/www/html/{probe}", input=PHP_PROBE)
    try:
        status, _, body = request(app, "/" + probe, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"})
    finally:
        app.exec("rm", "-f", f"/var/www/html/{probe}", user="0")
    assert status == 200, body
    info = json.loads(body)
    assert (info["sapi"], info["version"]) == ("fpm-fcgi", "8.4")
    for ext in ("mysqli", "gd", "zip", "curl", "xml", "dom", "mbstring", "intl", "imagick", "apcu",
                "zend opcache", "openssl", "json"):
        assert ext in info["ext"], ext
    assert info["gd_jpeg"] is True
    assert info["pdf_pages"] == 1, "ImageMagick policy must allow PDF"
    assert info["opcache"] is True and info["apcu"] is True
    assert info["ini"] == {
        # The defaults of PHP_MEMORY_LIMIT and REQUEST_TIMEOUT_SECONDS (the app runs without them).
        "memory_limit": "256M", "max_execution_time": "120", "max_input_time": "-1",
        "upload_max_filesize": "1000M", "post_max_size": "1000M", "max_input_vars": "100000",
        "session.cookie_secure": "1", "session.cookie_httponly": "1", "date.timezone": "Europe/Berlin",
        "display_errors": "", "expose_php": "", "error_log": "/dev/stdout",
        "opcache.enable": "1", "opcache.validate_timestamps": "0", "apc.enabled": "1",
    }
    assert info["sendmail"].startswith("/usr/sbin/sendmail")
    assert info["https"] == "on", "X-Forwarded-Proto: https from the load balancer sets HTTPS"
    assert info["remote"] == "203.0.113.5", "client address from X-Forwarded-For"
    # memory_limit is locked (the worker count counts on it); the time limit is not.
    assert (info["raise_memory_limit"], info["raise_time_limit"]) == (False, True)
    # rds_iam_auth.php reads AWS_* from the environment under PHP-FPM too.
    assert info["aws_region"] == app.env["AWS_REGION"]
    assert app.exec("readlink", "-f", "/usr/sbin/sendmail").stdout.strip().endswith("msmtp")
    assert wait_for_log(app, "php-error-log-probe"), "PHP errors reach the container log"


def test_iam_token_include_on_php_84_with_apcu(app: RunningApp) -> None:
    """The include in the image (PHP 8.4, APCu shared cache) gives botocore's token."""
    now = 1_767_225_600
    code = (
        "require '/usr/local/share/redcap/rds_iam_auth.php';"
        "$a = redcap_rds_auth_token('db.cluster-x.us-east-1.rds.amazonaws.com', 3306, 'redcap_user', 'us-east-1', "
        f"{now});"
        "$b = redcap_rds_auth_token('db.cluster-x.us-east-1.rds.amazonaws.com', 3306, 'redcap_user', 'us-east-1', "
        f"{now + 60});"
        "$info = apcu_cache_info();"
        "echo json_encode(['a' => $a, 'same' => $a === $b, 'entries' => count($info['cache_list'])]);"
    )
    r = app.exec("env", "AWS_ACCESS_KEY_ID=AKIAIMAGE", "AWS_SECRET_ACCESS_KEY=imagesecret",
                 "AWS_SESSION_TOKEN=imagetoken", "php", "-d", "apc.enable_cli=1", "-r", code)
    out = json.loads(r.stdout)
    session = botocore.session.Session()
    session.set_credentials("AKIAIMAGE", "imagesecret", "imagetoken")
    client = session.create_client("rds", region_name="us-east-1")
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=dt.datetime.fromtimestamp(now, dt.timezone.utc)):
        expected = client.generate_db_auth_token("db.cluster-x.us-east-1.rds.amazonaws.com", 3306, "redcap_user")
    assert out == {"a": expected, "same": True, "entries": 1}


def test_runtime_packages_only(image: BuiltImage) -> None:
    packages = docker("run", "--rm", "--entrypoint", "dpkg-query", image.tag, "-W", "-f", "${Package}\\n").stdout.split()
    dev = [p for p in packages if p.endswith("-dev") or p in ("gcc", "g++", "make", "cpp", "composer", "awscli")]
    assert dev == [], dev
    for needed in ("apache2", "php8.4-fpm", "ghostscript", "msmtp-mta", "ca-certificates",
                   "python3-boto3", "python3-pymysql", "php8.4-imagick", "php8.4-apcu"):
        assert needed in packages, needed
    assert "libapache2-mod-php8.4" not in packages, "PHP runs in PHP-FPM, not in Apache"
    tools = docker("run", "--rm", "--entrypoint", "sh", image.tag, "-c",
                   "command -v gcc cc make composer aws pip3 || true").stdout
    assert tools.strip() == "", f"build or AWS tools on PATH: {tools}"


def test_imagemagick_policy_file_is_present_and_allows_pdf(image: BuiltImage) -> None:
    policy = docker("run", "--rm", "--entrypoint", "cat", image.tag, "/etc/ImageMagick-7/policy.xml").stdout
    active = re.sub(r"<!--.*?-->", "", policy, flags=re.S)
    assert not re.search(r'rights="none"[^>]*pattern="[^"]*PDF', active)
    # The pixel cache in memory is part of a PHP worker's budget (webtier/sizing.py).
    assert f'name="memory" value="{IMAGEMAGICK_MEMORY_MIB}MiB"' in active
    assert 'name="map" value="128MiB"' in active


# --------------------------------------------------------------------------------------------
# secrets stay out of image metadata, layers, logs

def scan_tar(data: bytes, needles: list[bytes], where: str) -> list[str]:
    """Names of tar members (recursing into layer tars) whose content contains a needle."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for member in tf:
            if not member.isfile():
                continue
            content = tf.extractfile(member).read()
            if member.name.endswith(".tar") or member.name.startswith("blobs/"):
                try:
                    found += scan_tar(content, needles, f"{where}/{member.name}")
                    continue
                except tarfile.TarError:
                    pass
            found += [f"{where}/{member.name}: {n.decode()}" for n in needles if n in content]
    return found


@pytest.fixture(scope="module")
def saved_image(image: BuiltImage) -> bytes:
    """`docker save` of the image: its config and every layer, as the registry would get them."""
    return subprocess.run(["docker", "save", image.tag], capture_output=True, timeout=300, check=True).stdout


def test_no_secret_in_inspect_history_layers_or_logs(app: RunningApp, image: BuiltImage,
                                                     saved_image: bytes) -> None:
    values = app.secrets.values()
    inspect = docker("inspect", app.name).stdout + docker("image", "inspect", image.tag).stdout
    history = docker("history", "--no-trunc", image.tag).stdout
    logs = app.logs()
    for v in values:
        assert v not in inspect, "secret in docker inspect"
        assert v not in history, "secret in docker history"
        assert v not in logs, "secret in container logs"
    # The container's environment holds only ARNs and settings.
    env = json.loads(docker("inspect", app.name).stdout)[0]["Config"]["Env"]
    assert any(e.startswith("DB_SECRET_ID=arn:aws:secretsmanager:") for e in env)
    # Every layer of the image, byte for byte: no secret and no private key.
    assert scan_tar(saved_image, [v.encode() for v in values], "image") == []


PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----\r?\n[A-Za-z0-9+/=\r\n]{64,}-----END \1-----")


def test_no_private_key_in_the_image(saved_image: bytes) -> None:
    """Not even a throwaway one (the original shipped a self-signed key): the TLS key is made at
    container start. Only a complete PEM block in a non-ELF file counts."""
    found: list[str] = []

    def walk(data: bytes, where: str) -> None:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for member in tf:
                if not member.isfile():
                    continue
                content = tf.extractfile(member).read()
                if member.name.endswith("layer.tar"):
                    walk(content, f"{where}/{member.name}")
                # ELF libraries are skipped: GnuTLS embeds a known key for its FIPS self-test.
                elif not content.startswith(b"\x7fELF") and PRIVATE_KEY_PEM.search(content):
                    found.append(f"{where}/{member.name}")

    walk(saved_image, "image")
    assert found == []


# --------------------------------------------------------------------------------------------
# builds that must fail (the runtime stage comes from the layer cache, so these are quick)

def bad_zip(path: Path, members: dict[str, str]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize("members,message", [
    ({"redcap/index.php": "<?php", "redcap/database.php": "<?php"}, "redcap.zip has no redcap_vX.Y.Z directory"),
    ({"other/redcap_v14.0.0/x.php": "<?php"}, "redcap.zip has no top-level redcap/ directory"),
], ids=["no-version-dir", "no-redcap-dir"])
def test_build_fails_on_a_malformed_zip(image: BuiltImage, tmp_path: Path, members: dict[str, str],
                                        message: str) -> None:
    from container.context import assemble_context
    from image_support import BASE_IMAGE

    ctx_inputs = {"redcap_zip": bad_zip(tmp_path / "bad.zip", members), "languages_dir": None,
                  "config_sql": image.context / "redcap-config.sql", "ca_bundle": image.context / "rds-ca-bundle.pem"}
    ctx = assemble_context(tmp_path / "ctx", **ctx_inputs)
    r = subprocess.run(["docker", "build", "--force-rm", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", str(ctx)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert message in r.stdout + r.stderr


def test_build_fails_on_a_privileged_port(image: BuiltImage) -> None:
    from image_support import BASE_IMAGE

    r = subprocess.run(["docker", "build", "--force-rm", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                        "--build-arg", "PORT=443", str(image.context)], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "PORT must be a port number above 1024, got '443'" in r.stdout + r.stderr
