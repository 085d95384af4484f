"""Compute settings: App Runner sizes, the `ecs` block (Fargate), the `express` block (ECS Express
Mode) and the tunnel host."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from settings.common import Problem, _ACM_ARN_RE, _GRAVITON_FAMILY_RE, _INSTANCE_TYPE_RE, _Model, _is_int


def task_count(v: Any) -> int:
    """A number of tasks (ecs.scaling and express.scaling bounds)."""
    if not _is_int(v) or not 1 <= int(v) <= 100:
        raise Problem("a whole number of tasks from 1 to 100", "2")
    return int(v)


class EcsScaling(_Model):
    min_containers: int = Field(1, alias="minContainers")
    max_containers: int = Field(2, alias="maxContainers")
    requests_per_container: int = Field(500, alias="requestsPerContainer")
    cpu_utilization: int = Field(70, alias="cpuUtilization")
    memory_utilization: int = Field(70, alias="memoryUtilization")

    _count = field_validator("min_containers", "max_containers", mode="before")(lambda v: task_count(v))

    @field_validator("requests_per_container", mode="before")
    @classmethod
    def _requests(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 100000:
            raise Problem("1 to 100000 requests per target per minute", "500")
        return int(v)

    @field_validator("cpu_utilization", "memory_utilization", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> int:
        if not _is_int(v) or not 10 <= int(v) <= 95:
            raise Problem("a target utilisation from 10 to 95 percent", "70")
        return int(v)

    @model_validator(mode="after")
    def _bounds(self) -> "EcsScaling":
        if self.min_containers > self.max_containers:
            raise Problem("minContainers <= maxContainers", "{minContainers: 1, maxContainers: 3}")
        return self


def fargate_cpu_units(value: Any) -> int:
    """'2 vCPU', '2', '2048' -> 2048 (Fargate CPU units)."""
    allowed = "Fargate CPU: 0.25, 0.5, 1, 2, 4, 8 or 16 vCPU"
    text = str(value).strip().lower().replace("vcpu", "").strip()
    try:
        number = float(text)
    except ValueError:
        raise Problem(allowed, "2 vCPU") from None
    units = int(number * 1024) if number <= 16 else int(number)
    if units not in (256, 512, 1024, 2048, 4096, 8192, 16384):
        raise Problem(allowed, "2 vCPU")
    return units


def fargate_memory_mib(value: Any) -> int:
    """'4 GB', '4096' -> 4096 (MiB)."""
    text = str(value).strip().lower()
    try:
        if text.endswith("gb"):
            return int(float(text[:-2]) * 1024)
        return int(text)
    except ValueError:
        raise Problem("Fargate memory in GB or MiB", "4 GB") from None


def fargate_memory_choices(cpu_units: int) -> list[int]:
    """The memory sizes (MiB) Fargate accepts for a CPU size."""
    if cpu_units == 256:
        return [512, 1024, 2048]
    if cpu_units == 512:
        return [1024 * g for g in range(1, 5)]
    if cpu_units == 1024:
        return [1024 * g for g in range(2, 9)]
    if cpu_units == 2048:
        return [1024 * g for g in range(4, 17)]
    if cpu_units == 4096:
        return [1024 * g for g in range(8, 31)]
    if cpu_units == 8192:
        return [1024 * g for g in range(16, 61, 4)]
    return [1024 * g for g in range(32, 121, 8)]


class _FargateTask(_Model):
    """CPU and memory of a Fargate task, as users write them (`2 vCPU`, `4 GB`)."""

    cpu: int = 2048
    memory: int = 4096

    _cpu = field_validator("cpu", mode="before")(lambda v: fargate_cpu_units(v))
    _memory = field_validator("memory", mode="before")(lambda v: fargate_memory_mib(v))


class EcsSettings(_FargateTask):
    scaling: EcsScaling = EcsScaling()
    certificate_arn: Optional[str] = Field(None, alias="certificateArn")

    @field_validator("certificate_arn", mode="before")
    @classmethod
    def _cert(cls, v: Any) -> Optional[str]:
        if v is not None and not _ACM_ARN_RE.match(str(v)):
            raise Problem("an ACM certificate ARN in the stack's region",
                          "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666")
        return v

    @model_validator(mode="after")
    def _pair(self) -> "EcsSettings":
        choices = fargate_memory_choices(self.cpu)
        if self.memory not in choices:
            gbs = ", ".join(f"{m / 1024:g} GB" for m in choices)
            raise Problem(f"for {self.cpu / 1024:g} vCPU Fargate accepts memory {gbs}",
                          "{cpu: 2 vCPU, memory: 4 GB}")
        return self


# ECS Express Mode task sizes (CreateExpressGatewayService: cpu a power of 2 from 256 to 4096
# units, memory 512 to 8192 MiB), within the Fargate pairs.
EXPRESS_MAX_CPU_UNITS = 4096
EXPRESS_MAX_MEMORY_MIB = 8192
# Express scaling metrics: the names users write -> the API's ExpressGatewayServiceScalingMetric.
EXPRESS_SCALING_METRICS: dict[str, str] = {
    "cpu": "AVERAGE_CPU",
    "memory": "AVERAGE_MEMORY",
    "requests": "REQUEST_COUNT_PER_TARGET",
}


class ExpressScaling(_Model):
    min_containers: int = Field(1, alias="minContainers")
    max_containers: int = Field(2, alias="maxContainers")
    metric: str = "cpu"
    target: int = 70

    _count = field_validator("min_containers", "max_containers", mode="before")(lambda v: task_count(v))

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, v: Any) -> str:
        if v not in EXPRESS_SCALING_METRICS:
            raise Problem("cpu, memory or requests", "cpu")
        return str(v)

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 100000:
            raise Problem("a whole number: a percentage (cpu, memory) or requests per task per minute",
                          "70")
        return int(v)

    @model_validator(mode="after")
    def _bounds(self) -> "ExpressScaling":
        if self.min_containers > self.max_containers:
            raise Problem("minContainers <= maxContainers", "{minContainers: 1, maxContainers: 3}")
        if self.metric in ("cpu", "memory") and not 10 <= self.target <= 95:
            raise Problem(f"for metric {self.metric} a target utilisation from 10 to 95 percent",
                          "{metric: cpu, target: 70}")
        return self

    @property
    def api_metric(self) -> str:
        return EXPRESS_SCALING_METRICS[self.metric]


class ExpressSettings(_FargateTask):
    scaling: ExpressScaling = ExpressScaling()
    certificate_arn: Optional[str] = Field(None, alias="certificateArn")

    @field_validator("certificate_arn", mode="before")
    @classmethod
    def _cert(cls, v: Any) -> Optional[str]:
        # CloudFront takes certificates from us-east-1 only.
        if v is not None and not (_ACM_ARN_RE.match(str(v)) and str(v).split(":")[3] == "us-east-1"):
            raise Problem("an ACM certificate ARN in us-east-1 (CloudFront uses certificates from there only)",
                          "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666")
        return v

    @model_validator(mode="after")
    def _size(self) -> "ExpressSettings":
        if self.cpu > EXPRESS_MAX_CPU_UNITS:
            raise Problem("Express CPU: 0.25, 0.5, 1, 2 or 4 vCPU", "{cpu: 2 vCPU, memory: 4 GB}")
        choices = [m for m in fargate_memory_choices(self.cpu) if m <= EXPRESS_MAX_MEMORY_MIB]
        if self.memory not in choices:
            gbs = ", ".join(f"{m / 1024:g} GB" for m in choices)
            raise Problem(f"for {self.cpu / 1024:g} vCPU Express accepts memory {gbs}",
                          "{cpu: 2 vCPU, memory: 4 GB}")
        return self


class TunnelSettings(_Model):
    duration_hours: float = Field(3, alias="durationHours")
    instance_type: str = Field("t3.medium", alias="instanceType")

    @field_validator("duration_hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> float:
        try:
            hours = float(v)
        except (TypeError, ValueError):
            hours = 0
        if not 1 <= hours <= 72:
            raise Problem("1 to 72 hours", "3")
        return hours

    @field_validator("instance_type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> str:
        if not _INSTANCE_TYPE_RE.match(str(v)):
            raise Problem("an EC2 instance type family.size", "t3.medium")
        if _GRAVITON_FAMILY_RE.match(str(v).split(".")[0]):
            raise Problem("an x86_64 instance type (the image is linux/amd64; Graviton types such as "
                          "t4g cannot run it)", "t3.medium")
        return str(v)


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "redCapLocalVersion": "Use `releases/<value>.zip` from the project folder (e.g. `redcap15.0.9`).",
    "redCapS3Path": "Use a REDCap zip already in S3: `bucket/key.zip` or `s3://bucket/key.zip`. Exactly one of the two sources.",
    "deployTag": "Readable part of the image tag instead of the version read from the zip name.",
    "phpTimezone": "PHP `date.timezone` (IANA name).",
    "phpMemoryLimit": "PHP `memory_limit` per request (`128M` to `16G`). The container runs as many PHP workers as fit its memory with this much each (container/README.md, \"Sizing rule\"): more per request, fewer at once.",
    "port": "Container HTTP port (Apache runs as www-data, so above 1024).",
    "cpu": "App Runner instance CPU (`0.25 vCPU` to `4 vCPU`).",
    "memory": "App Runner instance memory; must pair with `cpu`.",
    "appRunnerConcurrency": "App Runner concurrent requests per instance before scaling out.",
    "appRunnerMinSize": "App Runner minimum instances.",
    "appRunnerMaxSize": "App Runner maximum instances.",
    "ecs": "Present: run on ECS Fargate behind an HTTPS load balancer instead of App Runner.",
    "ecs.cpu": "Fargate task CPU (`0.25 vCPU` to `16 vCPU`, or CPU units).",
    "ecs.memory": "Fargate task memory (`4 GB` or MiB); must pair with `ecs.cpu`.",
    "ecs.certificateArn": "An existing ACM certificate for the FQDN (instead of one validated in a Route53 zone).",
    "ecs.scaling": "Target-tracking autoscaling of the ECS service.",
    "ecs.scaling.minContainers": "Minimum tasks.",
    "ecs.scaling.maxContainers": "Maximum tasks.",
    "ecs.scaling.requestsPerContainer": "Target requests per task per minute (ALB request count).",
    "ecs.scaling.cpuUtilization": "Target average CPU percent.",
    "ecs.scaling.memoryUtilization": "Target average memory percent.",
    "express": "Present: run on ECS Express Mode behind CloudFront (HTTPS without a domain) instead of App Runner (docs/compute.md).",
    "express.cpu": "Express task CPU (`0.25 vCPU` to `4 vCPU`, or CPU units).",
    "express.memory": "Express task memory (`4 GB` or MiB, at most 8 GB); must pair with `express.cpu`.",
    "express.certificateArn": "An existing ACM certificate in us-east-1 for the FQDN (instead of one validated in a Route53 zone).",
    "express.scaling": "Autoscaling of the Express service (one target-tracking metric).",
    "express.scaling.minContainers": "Minimum tasks.",
    "express.scaling.maxContainers": "Maximum tasks.",
    "express.scaling.metric": "`cpu` (average CPU percent), `memory` (average memory percent) or `requests` (requests per task per minute).",
    "express.scaling.target": "Target value of the metric: a percentage for cpu/memory (10 to 95), a request count for requests.",
    "cronSecret": "Secret for the cron.php HMAC (`pulumi config set --secret`). Unset: generated once and kept in state.",
    "cronMinutes": "Minutes between cron.php calls; 0 = no schedule (lets a 0-ACU database pause).",
    "ec2ServerStack": "Present: a temporary tunnel host reached through SSM port forwarding (docs/tunnel.md).",
    "ec2ServerStack.durationHours": "Hours before the host shuts itself down and terminates (1 to 72).",
    "ec2ServerStack.instanceType": "EC2 instance type.",
    "imageBuild": "Where the image is built: `codebuild` (in AWS) or `local` (Docker on this machine).",
}
