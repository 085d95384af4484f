"""Builds the real REDCap image from an assembled context and runs it against loopback services.

Shared by tests/test_image.py and benchmarks/image.py. Nothing is assumed to exist except a
Docker engine and the local Debian trixie base (scripts/make-base-image); a missing piece is a
failure with a message that says how to get it.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from container.context import assemble_context, context_hash  # noqa: E402
from fixtures.redcap_fixture import build_fixture_zip  # noqa: E402
from services import MariaDB, MissingPrerequisite, MotoServer, docker_available, free_port  # noqa: E402

BASE_IMAGE = os.environ.get("REDCAP_TEST_BASE_IMAGE", "redcap-test/debian:trixie")
REDCAP_VERSION = "14.0.0"
LANGUAGE_FILE = "Deutsch.ini"
LANGUAGE_CONTENT = "; fixture language file\nhome = \"Startseite\"\n"
MODULE_DIR = "fixture_module_v1.0.0"


def docker(*args: str, check: bool = True, timeout: float = 120, input: bytes | None = None,
           text: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input, text=text)
    if check and r.returncode != 0:
        err = r.stderr if text else r.stderr.decode(errors="replace")
        raise RuntimeError(f"docker {' '.join(args[:3])} ... failed ({r.returncode}):\n{err[-3000:]}")
    return r


def make_ca_bundle(path: Path) -> Path:
    """A throwaway CA certificate standing in for the RDS CA bundle (its key is discarded)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "/dev/null", "-out", str(path), "-days", "30", "-subj", "/CN=Test RDS CA"],
        check=True, capture_output=True)
    return path


def config_sql_source() -> Path:
    """The generated sql/redcap-config.sql if present, else the shipped default."""
    for name in ("redcap-config.sql", "redcap-config.default.sql"):
        if (ROOT / "sql" / name).is_file():
            return ROOT / "sql" / name
    raise MissingPrerequisite("no sql/redcap-config.sql or sql/redcap-config.default.sql in the repository")


def build_inputs(workdir: Path, version: str = REDCAP_VERSION) -> dict[str, Path]:
    """The four build inputs: fixture zip, one language file (+ a file that must be ignored),
    the configuration SQL and a test CA bundle."""
    workdir.mkdir(parents=True, exist_ok=True)
    languages = workdir / "languages"
    languages.mkdir(exist_ok=True)
    (languages / LANGUAGE_FILE).write_text(LANGUAGE_CONTENT)
    (languages / "README.txt").write_text("not a language file\n")
    modules = workdir / "modules"
    (modules / MODULE_DIR).mkdir(parents=True, exist_ok=True)
    (modules / MODULE_DIR / "config.json").write_text('{"name": "Fixture module", "framework-version": 16}\n')
    (modules / "README.md").write_text("not a module\n")
    ca = workdir / "rds-ca-bundle.pem"
    if not ca.exists():
        make_ca_bundle(ca)
    return {
        "redcap_zip": build_fixture_zip(workdir / "zip", version),
        "languages_dir": languages,
        "modules_dir": modules,
        "config_sql": config_sql_source(),
        "ca_bundle": ca,
    }


@dataclass
class BuiltImage:
    tag: str
    context: Path
    seconds: float
    log: Path


def build_image(workdir: Path, base_image: str = BASE_IMAGE, container_dir: Path = ROOT / "container",
                repository: str = "redcap-test/redcap", version: str = REDCAP_VERSION) -> BuiltImage:
    """Assemble the context and `docker build` it (the layer cache makes a rebuild cheap).

    The tag is derived from the context hash, as the compute stack does. container_dir: another
    version of container/ (benchmarks/overload.py builds the previous web tier from git).
    """
    docker_available()
    if docker("image", "inspect", base_image, check=False).returncode != 0:
        raise MissingPrerequisite(f"base image {base_image} is missing: run scripts/make-base-image")
    inputs = build_inputs(workdir / "inputs", version)
    tag = f"{repository}:{context_hash(**inputs, container_dir=container_dir)[:16]}"
    ctx = assemble_context(workdir / "context", **inputs, container_dir=container_dir)
    log = workdir / "docker-build.log"
    start = time.monotonic()
    with log.open("w") as out:
        r = subprocess.run(["docker", "build", "--pull=false", "--build-arg", f"BASE_IMAGE={base_image}",
                            "-t", tag, str(ctx)], stdout=out, stderr=subprocess.STDOUT, timeout=1200)
    seconds = time.monotonic() - start
    if r.returncode != 0:
        raise RuntimeError(f"docker build failed ({r.returncode}); last lines of {log}:\n"
                           + log.read_text(errors="replace")[-4000:])
    return BuiltImage(tag=tag, context=ctx, seconds=seconds, log=log)


# --------------------------------------------------------------------------------------------

@dataclass
class AppSecrets:
    """Random per run, so that finding one anywhere can only mean it leaked from this run."""

    master_password: str = field(default_factory=lambda: "MasterPw-" + secrets.token_hex(12))
    app_password: str = field(default_factory=lambda: "AppPw-" + secrets.token_hex(12))
    salt: str = field(default_factory=lambda: "Salt-" + secrets.token_hex(12))
    s3_secret_key: str = field(default_factory=lambda: "S3Secret-" + secrets.token_hex(12))
    s3_access_key: str = field(default_factory=lambda: "AKIA" + secrets.token_hex(8).upper())

    def values(self) -> list[str]:
        return [self.master_password, self.app_password, self.salt, self.s3_secret_key,
                hashlib.sha256(self.salt.encode()).hexdigest()]


@dataclass
class RunningApp:
    name: str
    image: str
    port: int
    tls_port: int
    status_port: int
    db_name: str
    app_user: str
    secrets: AppSecrets
    env: dict[str, str]
    started_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def exec(self, *cmd: str, user: str | None = None, check: bool = True,
             text: bool = True) -> subprocess.CompletedProcess:
        args = ["exec"] + (["-u", user] if user else []) + [self.name, *cmd]
        return docker(*args, check=check, text=text)

    def stop(self) -> None:
        # -v: the image's declared volumes are anonymous volumes; they go with the container.
        docker("rm", "-f", "-v", self.name, check=False)


def prepare_backends(mariadb: MariaDB, moto: MotoServer, app_secrets: AppSecrets) -> dict[str, str]:
    """Database, master user and secrets in moto; returns the container environment."""
    suffix = uuid.uuid4().hex[:8]
    db_name = mariadb.fresh_database(f"redcap_{suffix}")
    master = f"master_{suffix}"
    with mariadb.connect() as conn, conn.cursor() as cur:
        # The RDS master user: may create users and grant on the REDCap database.
        cur.execute(f"CREATE USER '{master}'@'%%' IDENTIFIED BY %s", (app_secrets.master_password,))
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{master}'@'%' WITH GRANT OPTION")
    sm = moto.client("secretsmanager")

    def secret(name: str, value: str) -> str:
        return sm.create_secret(Name=f"{name}-{suffix}", SecretString=value)["ARN"]

    moto.client("s3").create_bucket(Bucket=f"redcap-app-{suffix}")
    return {
        "AWS_REGION": moto.region,
        "AWS_ENDPOINT_URL": moto.endpoint,
        # moto's dummy credentials for boto3 inside the container; not secrets.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(mariadb.port),
        "DB_NAME": db_name,
        "DB_SECRET_ID": secret("redcap-master", json.dumps(
            {"username": master, "password": app_secrets.master_password})),
        "DB_AUTH": "password",
        "DB_APP_USER": f"app_{suffix}",
        "DB_APP_SECRET_ID": secret("redcap-app", json.dumps(
            {"username": f"app_{suffix}", "password": app_secrets.app_password})),
        "DB_TLS": "off",
        "DB_SALT_SECRET_ID": secret("redcap-salt", app_secrets.salt),
        "S3_BUCKET": f"redcap-app-{suffix}",
        "S3_SECRET_ID": secret("redcap-s3", json.dumps(
            {"AccessKeyId": app_secrets.s3_access_key, "SecretAccessKey": app_secrets.s3_secret_key})),
        "BOOTSTRAP_DB_WAIT_SECONDS": "30",
    }


def wait_http(url: str, timeout: float, *, container: str | None = None) -> float:
    """Polls until url answers 200; returns the monotonic time it did. Fails early if the
    container exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if container is not None:
            state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip()
            if state != "true":
                logs = docker("logs", container, check=False)
                raise RuntimeError(f"container {container} exited before {url} answered 200:\n"
                                   + (logs.stdout + logs.stderr)[-4000:])
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


def app_environment(mariadb: MariaDB, moto: MotoServer,
                    extra_env: dict[str, str] | None = None) -> tuple[dict[str, str], AppSecrets]:
    """A complete container environment on a fresh database, and the secrets behind it."""
    app_secrets = AppSecrets()
    env = prepare_backends(mariadb, moto, app_secrets)
    # Host networking: every port free on this machine (the status port's default, 8082, may not be).
    env.update({"PORT": str(free_port()), "TLS_PORT": str(free_port()), "STATUS_PORT": str(free_port())})
    env.update(extra_env or {})
    return env, app_secrets


def run_detached(image: str, env: dict[str, str], prefix: str,
                 run_args: tuple[str, ...] = ()) -> tuple[str, float]:
    """`docker run -d` with host networking (MariaDB and moto listen on loopback).
    Returns the container name and the monotonic time just before the run."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    args = ["run", "-d", "--name", name, "--network", "host", *run_args]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    started = time.monotonic()
    docker(*args, image)
    return name, started


def read_only_run_args() -> tuple[str, ...]:
    """`docker run` arguments for the production filesystem: a read-only root and a tmpfs, owned
    by www-data as in the image, at exactly the paths the container writes (what ECS mounts)."""
    from container.context import WRITABLE_PATHS
    # The image's modes: sticky world-writable /tmp, Debian's session directory, private others.
    modes = {"/tmp": "1777", "/var/lib/php/sessions": "1733", "/run/apache2": "0755", "/run/lock/apache2": "0755"}
    args: list[str] = ["--read-only"]
    for path in WRITABLE_PATHS:
        owner = "" if path in ("/tmp", "/var/lib/php/sessions") else ",uid=33,gid=33"
        args += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode={modes.get(path, '0700')}{owner}"]
    return tuple(args)


def start_app(image: str, mariadb: MariaDB, moto: MotoServer, *, extra_env: dict[str, str] | None = None,
              wait_for: str | None = "/healthz", timeout: float = 120,
              run_args: tuple[str, ...] = ()) -> RunningApp:
    """`docker run` the image with host networking (MariaDB and moto listen on loopback)."""
    env, app_secrets = app_environment(mariadb, moto, extra_env)
    port, tls_port, status_port = int(env["PORT"]), int(env["TLS_PORT"]), int(env["STATUS_PORT"])
    name, started = run_detached(image, env, "redcap-test", run_args)
    app = RunningApp(name=name, image=image, port=port, tls_port=tls_port, status_port=status_port,
                     db_name=env["DB_NAME"],
                     app_user=env["DB_APP_USER"], secrets=app_secrets,
                     env=env, started_at=started)
    if wait_for is not None:
        try:
            wait_http(app.url + wait_for, timeout, container=name)
        except BaseException:
            app.stop()
            raise
    return app
