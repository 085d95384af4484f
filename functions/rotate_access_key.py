"""Rotates the access keys of REDCap's IAM users (S3 file storage, SES SMTP), kept in Secrets Manager.

Pulumi never holds these keys: the secret starts empty, and every key - the first one too - is
made here. The function is invoked three ways:

1. By Secrets Manager, one step at a time ({"Step", "SecretId", "ClientRequestToken"}):
   createSecret  a new access key of the secret's user, stored as the AWSPENDING version (the
                 S3 secret as {"AccessKeyId", "SecretAccessKey"}, the SMTP secret as
                 {"username", "password"} with the SES SMTP password derived from the key);
   setSecret     nothing to set in IAM (a new key is active at once): checks that the pending
                 key is an active key of the user;
   testSecret    the pending key signs in as that user and does what REDCap does with it (lists
                 the file bucket; logs in to SES SMTP over STARTTLS), retried while IAM propagates;
   finishSecret  moves AWSCURRENT to the new version, marks the version with the time of that
                 move and, when an older key exists, redeploys the runtime (ECS
                 force-new-deployment / App Runner StartDeployment), because containers read the
                 secret at start only.
   The old key stays active throughout: a rotation that fails anywhere leaves it working.
2. Every 15 minutes ({"action": "retire"}): deletes a user's old keys once every container runs
   with the new one, i.e. once a deployment that started after the move has completed (or no
   runtime exists). It starts that deployment when none did, and raises - so the error alarm
   fires - when it failed or when an old key outlives the move by a day.
3. During `pulumi up` ({"action": "awaitCurrent", "secretId"}), by aws.lambda_.Invocation: waits
   until the secret holds a working key (starting a rotation when none is under way), so the
   runtime starts only once its credentials exist.

Each step is idempotent, as Secrets Manager retries steps. Configuration comes from the
environment: ROTATION_TARGETS (JSON: secret ARN -> {"kind": "s3" | "smtp", "userName",
"userArn", "bucket"}) and ROLLOUT (JSON: {"kind": "ecs", "cluster", "service"} |
{"kind": "apprunner", "service"} | {"kind": "none"}). Standard library and boto3 only; secret
values are never logged.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
# A staging label on the current version recording when it became current (Unix seconds):
# deployments that started after that moment run with the new key.
ROLLOUT_LABEL_PREFIX = "redcap-rollout-since-"
KEY_TEST_SECONDS = 300  # a new key can take minutes to work everywhere (IAM, SES SMTP)
RETRY_SECONDS = 5
OVERDUE_SECONDS = 24 * 3600
# A rotation runs its four steps in minutes; a pending version older than this is a failed one.
FAILED_ROTATION_SECONDS = 3600
# While `pulumi up` waits for the first key, a rotation is given up on sooner (the key test may
# retry for KEY_TEST_SECONDS).
STALLED_FIRST_ROTATION_SECONDS = 600
AWAIT_MARGIN_MS = 30_000
SMTP_PORT = 587

# SES SMTP password, version 4 (AWS SES developer guide, "Obtaining Amazon SES SMTP credentials"):
# HMAC-SHA256 chained over these fixed values, prefixed with the version byte, base64-encoded.
SMTP_DATE, SMTP_SERVICE, SMTP_TERMINAL, SMTP_MESSAGE, SMTP_VERSION = (
    "11111111", "ses", "aws4_request", "SendRawEmail", 0x04)

ECS_DONE = "COMPLETED"
APPRUNNER_DEPLOYS = frozenset({"START_DEPLOYMENT", "UPDATE_SERVICE", "CREATE_SERVICE", "RESUME_SERVICE"})
APPRUNNER_BUSY = frozenset({"PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS"})
# Rollout states (see rollout_state).
ABSENT, NOT_STARTED, IN_PROGRESS, COMPLETE, FAILED = "absent", "not-started", "in-progress", "complete", "failed"


class RotationError(RuntimeError):
    """A rotation step cannot go on; the old key keeps working."""


class KeyTestFailed(RotationError):
    """The pending key does not do what REDCap needs."""


class RolloutFailed(RotationError):
    """The redeployment after a rotation failed; the old key stays until one succeeds."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    secret_arn: str
    kind: str  # "s3" or "smtp"
    user_name: str
    user_arn: str
    bucket: Optional[str] = None


@dataclass(frozen=True)
class Rollout:
    kind: str  # "ecs", "apprunner" or "none"
    cluster: Optional[str] = None
    service: Optional[str] = None
    service_prefix: Optional[str] = None  # ecs without `service`: the ACTIVE service named so


@dataclass(frozen=True)
class Config:
    targets: dict[str, Target]
    rollout: Rollout
    region: str
    smtp_host: str
    smtp_port: int

    @staticmethod
    def from_env(env: dict[str, str]) -> "Config":
        region = env["AWS_REGION"]
        targets = {}
        for arn, spec in json.loads(env["ROTATION_TARGETS"]).items():
            if spec.get("kind") not in ("s3", "smtp"):
                raise ValueError(f"ROTATION_TARGETS[{arn}].kind must be s3 or smtp, not {spec.get('kind')!r}")
            if spec["kind"] == "s3" and not spec.get("bucket"):
                raise ValueError(f"ROTATION_TARGETS[{arn}] (s3) needs the bucket the key must reach")
            targets[arn] = Target(arn, spec["kind"], spec["userName"], spec["userArn"], spec.get("bucket"))
        rollout = json.loads(env.get("ROLLOUT") or '{"kind": "none"}')
        if rollout.get("kind") not in ("ecs", "apprunner", "none"):
            raise ValueError(f"ROLLOUT.kind must be ecs, apprunner or none, not {rollout.get('kind')!r}")
        # SES SMTP of this region, which is what the containers' msmtp uses. SMTP_ENDPOINT
        # (host:port) points the test of a new SMTP key elsewhere.
        host, _, port = (env.get("SMTP_ENDPOINT") or f"email-smtp.{region}.amazonaws.com:{SMTP_PORT}").rpartition(":")
        return Config(targets=targets, rollout=Rollout(rollout["kind"], rollout.get("cluster"), rollout.get("service"),
                                                        rollout.get("servicePrefix")),
                      region=region, smtp_host=host, smtp_port=int(port))

    def target(self, secret_id: str) -> Target:
        if secret_id in self.targets:
            return self.targets[secret_id]
        raise ValueError(f"{secret_id} is not a secret this function rotates (ROTATION_TARGETS)")


@dataclass
class Clients:
    secrets: Any
    iam: Any
    ecs: Any = None
    apprunner: Any = None
    # Clients signed with a pending key, to test it: (access key id, secret) -> boto3 Session.
    session_for: Callable[[str, str], Any] = field(
        default=lambda key_id, secret: boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret))
    smtp_login: Callable[[str, int, str, str], None] = field(default=lambda h, p, u, pw: smtp_login(h, p, u, pw))
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time

    @staticmethod
    def from_boto3() -> "Clients":
        return Clients(secrets=boto3.client("secretsmanager"), iam=boto3.client("iam"),
                       ecs=boto3.client("ecs"), apprunner=boto3.client("apprunner"))


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def _sign(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def smtp_password_v4(secret_access_key: str, region: str) -> str:
    """The SES SMTP password for an IAM secret access key in a region (version 4 algorithm)."""
    signature = _sign(("AWS4" + secret_access_key).encode("utf-8"), SMTP_DATE)
    for part in (region, SMTP_SERVICE, SMTP_TERMINAL, SMTP_MESSAGE):
        signature = _sign(signature, part)
    return base64.b64encode(bytes([SMTP_VERSION]) + signature).decode("ascii")


def secret_value(kind: str, key_id: str, secret: str, region: str) -> str:
    """The secret's JSON: the container contract for each kind of key."""
    if kind == "s3":
        return json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret}, sort_keys=True)
    return json.dumps({"username": key_id, "password": smtp_password_v4(secret, region)}, sort_keys=True)


def key_id_of(kind: str, value: Optional[dict[str, Any]]) -> Optional[str]:
    if not value:
        return None
    return value.get("AccessKeyId") if kind == "s3" else value.get("username")


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    return float(value)


def rollout_label(since: float) -> str:
    return f"{ROLLOUT_LABEL_PREFIX}{int(since)}"


def rollout_since(labels: Iterable[str]) -> Optional[int]:
    found = [int(l[len(ROLLOUT_LABEL_PREFIX):]) for l in labels
             if l.startswith(ROLLOUT_LABEL_PREFIX) and l[len(ROLLOUT_LABEL_PREFIX):].isdigit()]
    return max(found) if found else None


def classify_keys(keys: list[dict[str, Any]], current_key_id: Optional[str], current_created: Optional[float],
                  keep: set[str]) -> tuple[list[str], list[str]]:
    """(orphans, retiring) among a user's keys other than the current one and those in `keep`.

    An orphan was made after the current version (a createSecret that died before storing it)
    or while no version was current: no container can have read it, so it goes at once. A key
    older than the current version is the previous one, still used by containers that started
    before the switch: it retires once they are replaced."""
    orphans, retiring = [], []
    for key in sorted(keys, key=lambda k: k["AccessKeyId"]):
        key_id = key["AccessKeyId"]
        if key_id == current_key_id or key_id in keep:
            continue
        # IAM reports key creation in whole seconds: compare seconds (same second = retiring).
        if current_key_id is None or current_created is None or int(_epoch(key["CreateDate"])) > int(current_created):
            orphans.append(key_id)
        else:
            retiring.append(key_id)
    return orphans, retiring


def ecs_rollout_state(service: Optional[dict[str, Any]], since: float) -> str:
    """Whether every task of an ECS service started after `since`: one deployment left, newer
    than `since`, its rollout completed."""
    if service is None or service.get("status") in ("INACTIVE", "DRAINING"):
        return ABSENT
    deployments = service.get("deployments") or []
    after = [d for d in deployments if _epoch(d["createdAt"]) >= since]
    if not after:
        return NOT_STARTED
    if len(deployments) == 1 and deployments[0] in after:
        state = deployments[0].get("rolloutState")
        if state == ECS_DONE or (state is None and deployments[0].get("runningCount") == deployments[0].get(
                "desiredCount") and not deployments[0].get("pendingCount")):
            return COMPLETE
        if state == "FAILED":
            return FAILED
    return IN_PROGRESS


def apprunner_rollout_state(status: Optional[str], operations: list[dict[str, Any]], since: float) -> str:
    """Whether every App Runner instance started after `since`: the newest deploying operation
    since then succeeded and nothing is running. A paused service has no instance at all."""
    if status is None or status in ("DELETED", "CREATE_FAILED"):
        return ABSENT
    if status == "PAUSED":
        return COMPLETE
    if any(op.get("Status") in APPRUNNER_BUSY for op in operations):
        return IN_PROGRESS
    deploys = [op for op in operations if op.get("Type") in APPRUNNER_DEPLOYS and op.get("StartedAt") is not None
               and _epoch(op["StartedAt"]) >= since]
    if not deploys:
        return NOT_STARTED
    newest = max(deploys, key=lambda op: _epoch(op["StartedAt"]))
    return COMPLETE if newest.get("Status") == "SUCCEEDED" else FAILED


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------------------------
# The secret
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretState:
    stages: dict[str, list[str]]
    created: dict[str, float]
    current_version: Optional[str]
    current_value: Optional[dict[str, Any]]

    @property
    def current_created(self) -> Optional[float]:
        return self.created.get(self.current_version) if self.current_version else None

    @property
    def rollout_since(self) -> Optional[int]:
        return rollout_since(self.stages.get(self.current_version or "", []))

    def pending_versions(self) -> list[str]:
        """Versions of a rotation under way (AWSPENDING on a version that is not current)."""
        return sorted(v for v, labels in self.stages.items() if PENDING in labels and CURRENT not in labels)

    def stale_pending(self, now: float, older_than: float) -> list[str]:
        """Pending versions older than any rotation takes: what a failed rotation leaves."""
        return [v for v in self.pending_versions() if now - self.created.get(v, now) > older_than]


def get_value(c: Clients, secret_arn: str, **version: str) -> Optional[dict[str, Any]]:
    try:
        text = c.secrets.get_secret_value(SecretId=secret_arn, **version)["SecretString"]
    except ClientError as err:
        if _error_code(err) == "ResourceNotFoundException":
            return None  # no such version, or a version without a value yet
        raise
    return json.loads(text)


def read_state(c: Clients, secret_arn: str) -> SecretState:
    meta = c.secrets.describe_secret(SecretId=secret_arn)
    stages = {v: list(labels) for v, labels in (meta.get("VersionIdsToStages") or {}).items()}
    current = next((v for v, labels in sorted(stages.items()) if CURRENT in labels), None)
    created: dict[str, float] = {}
    if stages:
        versions = c.secrets.list_secret_version_ids(SecretId=secret_arn, IncludeDeprecated=True)
        created = {v["VersionId"]: _epoch(v["CreatedDate"]) for v in versions.get("Versions") or []
                   if v.get("CreatedDate") is not None}
    return SecretState(stages=stages, created=created, current_version=current,
                       current_value=get_value(c, secret_arn, VersionId=current) if current else None)


def abandon(c: Clients, target: Target, versions: list[str]) -> None:
    """Take AWSPENDING off the versions of failed rotations, so that a new one can start
    (Secrets Manager refuses to while a pending version exists). A key such a version holds was
    never current: the next settle_keys deletes it as an orphan."""
    for version in versions:
        LOG.info("abandoning the failed rotation of %s to version %s", target.secret_arn, version)
        move_label(c, target.secret_arn, PENDING, away_from=version)


def move_label(c: Clients, secret_arn: str, label: str, *, to: Optional[str] = None,
               away_from: Optional[str] = None) -> None:
    kwargs: dict[str, str] = {"SecretId": secret_arn, "VersionStage": label}
    if to:
        kwargs["MoveToVersionId"] = to
    if away_from:
        kwargs["RemoveFromVersionId"] = away_from
    c.secrets.update_secret_version_stage(**kwargs)


def list_keys(c: Clients, user_name: str) -> list[dict[str, Any]]:
    return list(c.iam.list_access_keys(UserName=user_name).get("AccessKeyMetadata") or [])


# --------------------------------------------------------------------------------------------
# The runtime that reads the secret
# --------------------------------------------------------------------------------------------

def _apprunner_arn(c: Clients, name: str) -> Optional[str]:
    token: Optional[str] = None
    while True:
        page = c.apprunner.list_services(**({"NextToken": token} if token else {}))
        for summary in page.get("ServiceSummaryList") or []:
            if summary.get("ServiceName") == name and summary.get("Status") != "DELETED":
                return str(summary["ServiceArn"])
        token = page.get("NextToken")
        if not token:
            return None


def _ecs_service_names(c: Clients, rollout: Rollout) -> list[str]:
    """The service to redeploy: the named one, or every service of the cluster whose name starts
    with the prefix (DescribeServices then tells which one is ACTIVE)."""
    if rollout.service:
        return [rollout.service]
    names, token = [], None
    while True:
        page = c.ecs.list_services(cluster=rollout.cluster, **({"nextToken": token} if token else {}))
        names += [arn.rsplit("/", 1)[-1] for arn in page.get("serviceArns") or []]
        token = page.get("nextToken")
        if not token:
            return sorted(n for n in names if rollout.service_prefix and n.startswith(rollout.service_prefix))


def _ecs_service(c: Clients, rollout: Rollout) -> Optional[dict[str, Any]]:
    try:
        names = _ecs_service_names(c, rollout)
        found = c.ecs.describe_services(cluster=rollout.cluster, services=names) if names else {}
    except ClientError as err:
        if _error_code(err) == "ClusterNotFoundException":
            return None
        raise
    services = found.get("services") or []
    if rollout.service:
        return services[0] if services else None
    active = [s for s in services if s.get("status") == "ACTIVE"]
    return active[0] if active else None


def rollout_state(c: Clients, rollout: Rollout, since: float) -> str:
    if rollout.kind == "ecs":
        return ecs_rollout_state(_ecs_service(c, rollout), since)
    if rollout.kind == "apprunner":
        arn = _apprunner_arn(c, str(rollout.service))
        if arn is None:
            return ABSENT
        status = c.apprunner.describe_service(ServiceArn=arn)["Service"].get("Status")
        operations = c.apprunner.list_operations(ServiceArn=arn, MaxResults=20).get("OperationSummaryList") or []
        return apprunner_rollout_state(status, operations, since)
    return ABSENT


def start_rollout(c: Clients, rollout: Rollout) -> bool:
    """Start a deployment that restarts every container; False when the runtime is busy (the
    next check starts it) or absent."""
    if rollout.kind == "ecs":
        service = _ecs_service(c, rollout)
        if service is None:
            return False
        try:
            c.ecs.update_service(cluster=rollout.cluster, service=service["serviceName"], forceNewDeployment=True)
        except ClientError as err:
            if _error_code(err) in ("ServiceNotFoundException", "ServiceNotActiveException", "ClusterNotFoundException"):
                return False
            raise
        LOG.info("started a deployment of ECS service %s/%s", rollout.cluster, service["serviceName"])
        return True
    if rollout.kind == "apprunner":
        arn = _apprunner_arn(c, str(rollout.service))
        if arn is None:
            return False
        try:
            c.apprunner.start_deployment(ServiceArn=arn)
        except ClientError as err:
            if _error_code(err) == "InvalidStateException":  # another operation is running
                LOG.info("App Runner service %s is busy; the next check starts its deployment", rollout.service)
                return False
            raise
        LOG.info("started a deployment of App Runner service %s", rollout.service)
        return True
    return False


def redeploy_hint(rollout: Rollout) -> str:
    if rollout.kind == "ecs":
        return (f"aws ecs update-service --cluster {rollout.cluster} --service {rollout.service} "
                "--force-new-deployment")
    return f"aws apprunner start-deployment --service-arn <arn of {rollout.service}>"


# --------------------------------------------------------------------------------------------
# Old keys
# --------------------------------------------------------------------------------------------

def settle_keys(c: Clients, target: Target, rollout: Rollout, state: SecretState, *,
                start: bool = True) -> list[str]:
    """Delete the keys no container can still use; return the ones that must wait."""
    keep: set[str] = set()
    for version in state.pending_versions():
        key_id = key_id_of(target.kind, get_value(c, target.secret_arn, VersionId=version))
        if key_id:
            keep.add(key_id)
    current_key = key_id_of(target.kind, state.current_value)
    orphans, retiring = classify_keys(list_keys(c, target.user_name), current_key, state.current_created, keep)
    for key_id in orphans:
        LOG.info("deleting %s of %s: made after the current version, never in use", key_id, target.user_name)
        c.iam.delete_access_key(UserName=target.user_name, AccessKeyId=key_id)
    since = state.rollout_since
    if not retiring:
        if since is not None:
            move_label(c, target.secret_arn, rollout_label(since), away_from=state.current_version)
        return []
    if since is None:
        # An older key but no recorded switch (a stage that had a key before rotation existed,
        # or a key made by hand): containers started before now may use it.
        since = int(c.now())
        move_label(c, target.secret_arn, rollout_label(since), to=state.current_version)
    status = rollout_state(c, rollout, since)
    if status == NOT_STARTED and start:
        start_rollout(c, rollout)
        status = rollout_state(c, rollout, since)
    if status in (COMPLETE, ABSENT):
        for key_id in retiring:
            LOG.info("deleting %s of %s: every container now runs with %s", key_id, target.user_name, current_key)
            c.iam.delete_access_key(UserName=target.user_name, AccessKeyId=key_id)
        move_label(c, target.secret_arn, rollout_label(since), away_from=state.current_version)
        return []
    if status == FAILED:
        raise RolloutFailed(
            f"the deployment that gives every container the new key of {target.user_name} failed; the old key "
            f"{', '.join(retiring)} stays active until one succeeds: fix the service and run {redeploy_hint(rollout)}")
    if c.now() - since > OVERDUE_SECONDS:
        raise RotationError(
            f"old key {', '.join(retiring)} of {target.user_name} is still active {int((c.now() - since) // 3600)} "
            f"hours after the switch: the deployment has not completed ({status}); check it, or run "
            f"{redeploy_hint(rollout)}")
    LOG.info("keeping %s of %s until the deployment completes (%s)", ", ".join(retiring), target.user_name, status)
    return retiring


# --------------------------------------------------------------------------------------------
# The four rotation steps
# --------------------------------------------------------------------------------------------

def _pending(c: Clients, target: Target, token: str) -> dict[str, Any]:
    value = get_value(c, target.secret_arn, VersionId=token, VersionStage=PENDING)
    if value is None:
        raise RotationError(f"{target.secret_arn} has no pending value for version {token}")
    return value


def create_secret(c: Clients, cfg: Config, target: Target, token: str) -> str:
    if get_value(c, target.secret_arn, VersionId=token, VersionStage=PENDING) is not None:
        return "exists"  # a retry after the value was stored
    state = read_state(c, target.secret_arn)
    waiting = settle_keys(c, target, cfg.rollout, state)
    if len(list_keys(c, target.user_name)) >= 2:
        raise RotationError(
            f"{target.user_name} already has two keys (IAM's limit); the older one {', '.join(waiting)} is still "
            "in use by containers started before the last rotation. This rotation is retried once it retires.")
    created = c.iam.create_access_key(UserName=target.user_name)["AccessKey"]
    try:
        c.secrets.put_secret_value(
            SecretId=target.secret_arn, ClientRequestToken=token, VersionStages=[PENDING],
            SecretString=secret_value(target.kind, created["AccessKeyId"], created["SecretAccessKey"], cfg.region))
    except Exception:
        # Never leave a key that nothing records.
        c.iam.delete_access_key(UserName=target.user_name, AccessKeyId=created["AccessKeyId"])
        raise
    LOG.info("created %s for %s as the pending version %s", created["AccessKeyId"], target.user_name, token)
    return "created"


def _active_key(c: Clients, target: Target, key_id: Optional[str]) -> bool:
    return any(k["AccessKeyId"] == key_id and k.get("Status") == "Active" for k in list_keys(c, target.user_name))


def set_secret(c: Clients, cfg: Config, target: Target, token: str) -> str:
    key_id = key_id_of(target.kind, _pending(c, target, token))
    if not _active_key(c, target, key_id):
        raise RotationError(f"pending key {key_id} is not an active key of {target.user_name}")
    return "set"


def _until_it_works(c: Clients, attempt: Callable[[], None], transient: Callable[[Exception], bool],
                    what: str) -> None:
    deadline = c.now() + KEY_TEST_SECONDS
    while True:
        try:
            attempt()
            return
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not transient(exc) or c.now() + RETRY_SECONDS > deadline:
                raise KeyTestFailed(f"{what}: {type(exc).__name__}: {exc}") from None
            LOG.info("%s not yet (%s); retrying", what, type(exc).__name__)
            c.sleep(RETRY_SECONDS)


def _transient_aws(exc: Exception) -> bool:
    """Errors a key that is valid but not yet propagated gives."""
    return isinstance(exc, ClientError) and _error_code(exc) in (
        "InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId",
        "UnrecognizedClientException")


def _transient_smtp(exc: Exception) -> bool:
    return isinstance(exc, (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected, socket.timeout,
                            ConnectionError))


def test_secret(c: Clients, cfg: Config, target: Target, token: str) -> str:
    value = _pending(c, target, token)
    key_id = key_id_of(target.kind, value)
    if target.kind == "s3":
        session = c.session_for(value["AccessKeyId"], value["SecretAccessKey"])

        def works() -> None:
            arn = session.client("sts", region_name=cfg.region).get_caller_identity()["Arn"]
            if arn != target.user_arn:
                raise KeyTestFailed(f"pending key {key_id} signs in as {arn}, not {target.user_arn}")
            session.client("s3", region_name=cfg.region).list_objects_v2(Bucket=target.bucket, MaxKeys=1)

        _until_it_works(c, works, _transient_aws, f"pending key {key_id} listing s3://{target.bucket}")
    else:
        if not _active_key(c, target, key_id):
            raise KeyTestFailed(f"pending SMTP user name {key_id} is not an active key of {target.user_name}")
        _until_it_works(c, lambda: c.smtp_login(cfg.smtp_host, cfg.smtp_port, value["username"], value["password"]),
                        _transient_smtp, f"SMTP login of {key_id} at {cfg.smtp_host}:{cfg.smtp_port}")
    LOG.info("pending key %s of %s works", key_id, target.user_name)
    return "tested"


def finish_secret(c: Clients, cfg: Config, target: Target, token: str) -> str:
    state = read_state(c, target.secret_arn)
    if state.current_version != token:
        _pending(c, target, token)
        old = state.current_version
        move_label(c, target.secret_arn, CURRENT, to=token, away_from=old)
        # The switch time in whole seconds, rounded up, and a wait until then: a deployment
        # that counts (created at or after it) started after the switch, never within its second.
        since = int(c.now()) + 1
        if state.rollout_since is not None:
            move_label(c, target.secret_arn, rollout_label(state.rollout_since), away_from=old)
        move_label(c, target.secret_arn, rollout_label(since), to=token)
        c.sleep(max(0.0, since - c.now()))
        LOG.info("version %s of %s is current", token, target.secret_arn)
    # Redeploys the runtime when an older key is still around, and retires it when nothing uses it.
    settle_keys(c, target, cfg.rollout, read_state(c, target.secret_arn))
    return "finished"


STEPS: dict[str, Callable[[Clients, Config, Target, str], str]] = {
    "createSecret": create_secret, "setSecret": set_secret, "testSecret": test_secret, "finishSecret": finish_secret,
}


def rotation_step(c: Clients, cfg: Config, event: dict[str, Any]) -> str:
    step, secret_id, token = event["Step"], event["SecretId"], event["ClientRequestToken"]
    if step not in STEPS:
        raise ValueError(f"unknown rotation step {step!r}")
    meta = c.secrets.describe_secret(SecretId=secret_id)
    target = cfg.target(meta["ARN"])
    if not meta.get("RotationEnabled"):
        raise RotationError(f"rotation is not enabled on {meta['ARN']}")
    labels = (meta.get("VersionIdsToStages") or {}).get(token)
    # A secret's first version is current as soon as it is stored, and keeps AWSPENDING until
    # the rotation ends: its steps still run. Current without pending: the rotation is over.
    if labels is not None and CURRENT in labels and PENDING not in labels:
        return "current"
    if labels is not None and PENDING not in labels:
        raise RotationError(f"version {token} of {meta['ARN']} is not pending rotation")
    if labels is None and step != "createSecret":
        raise RotationError(f"version {token} of {meta['ARN']} does not exist")
    LOG.info("%s for %s (version %s)", step, meta["ARN"], token)
    return STEPS[step](c, cfg, target, token)


# --------------------------------------------------------------------------------------------
# Scheduled retirement and the first key
# --------------------------------------------------------------------------------------------

def retire(c: Clients, cfg: Config) -> dict[str, list[str]]:
    """Every target: delete what may go; raise at the end if any needs an operator."""
    waiting, errors = {}, []
    for arn in sorted(cfg.targets):
        target = cfg.targets[arn]
        state = read_state(c, arn)
        stale = state.stale_pending(c.now(), FAILED_ROTATION_SECONDS)
        if stale:
            abandon(c, target, stale)
            errors.append(f"a rotation of {arn} failed (see this function's log group); the current key stays in "
                          "use and the next scheduled rotation tries again, or start one with "
                          f"`aws secretsmanager rotate-secret --secret-id {arn}`")
            state = read_state(c, arn)
        if state.pending_versions():
            continue  # a rotation is under way; its steps settle the keys
        try:
            waiting[arn] = settle_keys(c, target, cfg.rollout, state)
        except RotationError as err:
            errors.append(str(err))
    if errors:
        raise RotationError("; ".join(errors))
    return waiting


def await_current(c: Clients, cfg: Config, secret_id: str, remaining_ms: Callable[[], int]) -> dict[str, str]:
    """Return once the secret's current version holds an active key of its user."""
    target = cfg.target(secret_id)
    while True:
        state = read_state(c, target.secret_arn)
        key_id = key_id_of(target.kind, state.current_value)
        if key_id and _active_key(c, target, key_id):
            return {"status": "ready", "secretArn": target.secret_arn}
        stale = state.stale_pending(c.now(), STALLED_FIRST_ROTATION_SECONDS)
        if stale:
            abandon(c, target, stale)
            state = read_state(c, target.secret_arn)
        if not state.pending_versions():
            LOG.info("no current key in %s and no rotation under way: starting one", target.secret_arn)
            try:
                c.secrets.rotate_secret(SecretId=target.secret_arn)
            except ClientError as err:
                if _error_code(err) != "InvalidRequestException":  # one started meanwhile
                    raise
        if remaining_ms() - RETRY_SECONDS * 1000 < AWAIT_MARGIN_MS:
            raise RotationError(
                f"{target.secret_arn} still has no working key; its rotation failed or is slow: see this function's "
                "log group, fix the cause and run `pulumi up` again (it waits again and starts a rotation if none runs)")
        c.sleep(RETRY_SECONDS)


# --------------------------------------------------------------------------------------------
# SMTP and the entry point
# --------------------------------------------------------------------------------------------

def smtp_login(host: str, port: int, username: str, password: str, timeout: float = 15) -> None:
    """Log in the way msmtp does: STARTTLS with certificate verification, then AUTH."""
    context = ssl.create_default_context()
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise KeyTestFailed(f"{host}:{port} offers no STARTTLS; credentials are never sent in clear")
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.login(username, password)


def handler(event: dict[str, Any], context: Any) -> Any:
    cfg = Config.from_env(dict(os.environ))
    clients = Clients.from_boto3()
    if "Step" in event:
        return rotation_step(clients, cfg, event)
    action = event.get("action")
    if action == "retire":
        return retire(clients, cfg)
    if action == "awaitCurrent":
        return await_current(clients, cfg, str(event.get("secretId")), context.get_remaining_time_in_millis)
    raise ValueError(f"unknown event: keys {sorted(event)}")
