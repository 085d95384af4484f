"""Real services on loopback for the tests: a MariaDB server and a moto AWS API server.

Each is started by the test run itself (nothing is assumed to be running) and stopped at the
end. A missing binary is a test failure that says which package to install, never a skip.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class MissingPrerequisite(RuntimeError):
    """A tool the tests need is not installed; the message says how to get it."""


def require_binary(name: str, hint: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not path:
        raise MissingPrerequisite(f"'{name}' is not installed: {hint} (scripts/test installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s\n{tail}")


@dataclass
class MariaDB:
    """A throwaway MariaDB server: root without password on 127.0.0.1:<port>."""

    port: int
    datadir: Path
    proc: subprocess.Popen
    host: str = "127.0.0.1"
    user: str = "root"
    password: str = ""

    @classmethod
    def start(cls, extra_args: tuple[str, ...] = ()) -> "MariaDB":
        """extra_args: more mariadbd options (e.g. --ssl-cert/--ssl-key for a TLS server)."""
        install_db = require_binary("mariadb-install-db", "apt-get install mariadb-server")
        server = require_binary("mariadbd", "apt-get install mariadb-server")
        base = Path(tempfile.mkdtemp(prefix="redcap-mariadb-"))
        datadir = base / "data"
        subprocess.run(
            [install_db, "--no-defaults", f"--datadir={datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True,
        )
        port = free_port()
        log = base / "mariadb.log"
        proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={datadir}", "--user=root",
             "--bind-address=127.0.0.1", f"--port={port}", f"--socket={base}/mysql.sock",
             f"--pid-file={base}/mysql.pid", "--skip-log-bin", f"--log-error={log}",
             "--max-allowed-packet=64M", *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, 30, "mariadbd", proc, log)
        return cls(port=port, datadir=datadir, proc=proc)

    def connect(self, database: str | None = None, **kwargs):
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, autocommit=True, **kwargs)

    def fresh_database(self, name: str) -> str:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


@dataclass
class MotoServer:
    """moto_server on 127.0.0.1:<port>; `client(service)` gives a boto3 client bound to it."""

    port: int
    proc: subprocess.Popen
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> "MotoServer":
        exe = Path(sys.executable).with_name("moto_server")
        if not exe.exists():
            raise MissingPrerequisite("moto_server is not installed: pip install 'moto[server]'")
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
        wait_for_port(port, 30, "moto_server", proc, log)
        return cls(port=port, proc=proc)

    def env(self) -> dict[str, str]:
        """Environment that points AWS SDKs at this server with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def docker_available() -> None:
    """Fails with a clear message when no Docker engine answers."""
    docker = require_binary("docker", "apt-get install docker.io")
    r = subprocess.run([docker, "info"], capture_output=True, text=True)
    if r.returncode != 0:
        raise MissingPrerequisite(
            "no Docker engine answers `docker info`: start dockerd (scripts/provision-host does)\n"
            + r.stderr[-500:]
        )


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
