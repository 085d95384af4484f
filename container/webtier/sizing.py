"""How many PHP workers the container can afford, and the queue, threads and timeouts around them.

Pure functions (the tests call them directly with made-up cgroup trees); ``plan_from_system``
is the only one that reads the real /sys and /proc.

The rule (container/README.md, "Sizing rule"):

    memory   = min(cgroup memory limit, CONTAINER_MEMORY_MIB, MemTotal)          MiB
    workers  = (memory - RESERVE_MIB) // (memory_limit + WORKER_OVERHEAD_MIB),  1..MAX_WORKERS
    queue    = QUEUE_PER_WORKER * workers     requests waiting for a worker, then a fast 503
    threads  = 2 * (workers + queue) + SPARE_THREADS

Every PHP worker may use its whole memory_limit at the same time as all the others (a burst of
exports), so the count is what fits in the worst case: the kernel never has to kill one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

MIB = 1024 * 1024

# Held by every container whatever its load: OPcache's shared memory (php/opcache.ini) and
# APCu's (php/redcap.ini), plus Apache (one process and its threads), the FPM master, the
# supervisor, kernel socket buffers and room for the page cache that the cgroup also charges.
OPCACHE_MIB = 192
APCU_MIB = 32
BASE_MIB = 128
RESERVE_MIB = OPCACHE_MIB + APCU_MIB + BASE_MIB

# A worker's memory beyond PHP's memory_limit: its own, outside PHP's allocator (libraries;
# about 10 MiB idle), and ImageMagick's in-memory pixel cache, which the image's policy caps at
# 64 MiB per process (larger images go to a disk cache).
IMAGEMAGICK_MEMORY_MIB = 64
WORKER_OVERHEAD_MIB = 32 + IMAGEMAGICK_MEMORY_MIB

# One Apache process holds every thread, and the proxy's connection limit to PHP-FPM is per
# process; beyond this many workers a container should be scaled out rather than up.
MAX_WORKERS = 128
QUEUE_PER_WORKER = 10
# Apache's threads: the PHP slots (workers + queue), as many again, and 64 more. Health checks,
# static files and the 503s of a burst as large again as the queue are answered without taking
# the last idle thread: with none left, the event MPM closes every idle keep-alive connection,
# one of which a load balancer may be about to use (a 502). An idle thread costs about 20 KiB.
SPARE_THREADS = 64

# Apache's KeepAliveTimeout is this much longer than the load balancer's idle timeout, so the
# load balancer is always the side that closes an idle connection (else: intermittent 502s).
KEEPALIVE_MARGIN_SECONDS = 60
# Without a load balancer's idle timeout to exceed: Apache's (and Debian's) default.
DEFAULT_KEEPALIVE_SECONDS = 5
# Apache waits for PHP-FPM this much longer than the request timeout (the wait includes the
# time in the queue).
PROXY_TIMEOUT_MARGIN_SECONDS = 30

DEFAULT_PHP_MEMORY_LIMIT = "256M"
# PHP-FPM's status page on 127.0.0.1 (redcap-apache applies the same default).
DEFAULT_STATUS_PORT = "8082"
DEFAULT_REQUEST_TIMEOUT_SECONDS = 120
MIN_PHP_MEMORY_MIB = 128
MAX_PHP_MEMORY_MIB = 16384

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 bytes with 4 KiB
# pages); anything this large is no limit.
UNLIMITED_BYTES = 1 << 62

# TRUST_FORWARDED_HOST: Apache takes the site's host name from X-Forwarded-Host
# (apache/common.conf) only when started with this Define.
FORWARDED_HOST_DEFINE = "REDCAP_TRUST_FORWARDED_HOST"
BOOLEAN_VALUES = {"true": True, "false": False}

PHP_SIZE_RE = re.compile(r"^([1-9][0-9]{0,5})([MG])$", re.IGNORECASE)
INT_RE = re.compile(r"^[0-9]{1,7}$")


@dataclass(frozen=True)
class Problem:
    """One invalid variable: the bootstrap and the CMD word it in their own error formats."""

    key: str
    value: str
    allowed: str
    example: str


@dataclass(frozen=True)
class WebSettings:
    php_memory_limit_mib: int
    request_timeout_seconds: int
    lb_idle_timeout_seconds: int | None
    container_memory_mib: int | None
    # Only behind a proxy that writes X-Forwarded-Host itself (Express's CloudFront function);
    # anywhere else a client could choose the host name REDCap puts into its links.
    trust_forwarded_host: bool = False

    def apache_defines(self) -> list[str]:
        """Apache arguments for the settings that are not numbers (the numbers are the plan's)."""
        return [f"-D{FORWARDED_HOST_DEFINE}"] if self.trust_forwarded_host else []


@dataclass(frozen=True)
class Plan:
    memory_mib: int
    memory_source: str
    php_memory_limit_mib: int
    workers: int
    # True when the memory does not cover even one worker's budget (one is started anyway).
    below_one_worker: bool
    queue: int
    apache_threads: int
    keepalive_seconds: int
    request_timeout_seconds: int
    proxy_timeout_seconds: int

    @property
    def php_slots(self) -> int:
        """Requests Apache hands to PHP-FPM at once: the running ones and the queued ones."""
        return self.workers + self.queue

    def environment(self) -> dict[str, str]:
        """What the Apache and PHP-FPM configuration files read (${...} in apache/, php/)."""
        return {
            "REDCAP_PHP_WORKERS": str(self.workers),
            "REDCAP_PHP_SLOTS": str(self.php_slots),
            "REDCAP_APACHE_THREADS": str(self.apache_threads),
            "REDCAP_KEEPALIVE_SECONDS": str(self.keepalive_seconds),
            "REDCAP_PROXY_TIMEOUT_SECONDS": str(self.proxy_timeout_seconds),
            "REDCAP_PHP_MEMORY_LIMIT": f"{self.php_memory_limit_mib}M",
            "REDCAP_PHP_MAX_EXECUTION_TIME": str(self.request_timeout_seconds),
        }

    def summary(self) -> str:
        floor = " (less than one worker's budget: one is started anyway)" if self.below_one_worker else ""
        return (f"memory {self.memory_mib} MiB ({self.memory_source}), PHP memory_limit "
                f"{self.php_memory_limit_mib}M: {self.workers} PHP worker{'s' if self.workers != 1 else ''}"
                f"{floor}, queue {self.queue}, {self.apache_threads} Apache threads; "
                f"keep-alive {self.keepalive_seconds} s, request timeout {self.request_timeout_seconds} s")


def parse_php_size_mib(text: str) -> int | None:
    """'256M' -> 256, '1G' -> 1024; None unless a whole number of M or G in the allowed range."""
    m = PHP_SIZE_RE.match(text.strip())
    if m is None:
        return None
    mib = int(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)
    return mib if MIN_PHP_MEMORY_MIB <= mib <= MAX_PHP_MEMORY_MIB else None


def _value(env: Mapping[str, str], key: str) -> str | None:
    """Empty counts as unset (platforms pass empty strings for undefined values)."""
    raw = env.get(key)
    return raw.strip() if raw is not None and raw.strip() else None


def _int(raw: str, low: int, high: int) -> int | None:
    if not INT_RE.match(raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def load_web_settings(env: Mapping[str, str]) -> tuple[WebSettings | None, list[Problem]]:
    """The web tier's variables of the runtime contract, validated; every problem is listed."""
    problems: list[Problem] = []

    raw_limit = _value(env, "PHP_MEMORY_LIMIT") or DEFAULT_PHP_MEMORY_LIMIT
    php_mib = parse_php_size_mib(raw_limit)
    if php_mib is None:
        problems.append(Problem("PHP_MEMORY_LIMIT", raw_limit,
                                f"a size in M or G from {MIN_PHP_MEMORY_MIB}M to {MAX_PHP_MEMORY_MIB // 1024}G",
                                "512M"))

    def number(key: str, low: int, high: int, example: str, default: int | None) -> int | None:
        raw = _value(env, key)
        if raw is None:
            return default
        value = _int(raw, low, high)
        if value is None:
            problems.append(Problem(key, raw, f"an integer {low}..{high}", example))
        return value

    timeout = number("REQUEST_TIMEOUT_SECONDS", 1, 86400, "120", DEFAULT_REQUEST_TIMEOUT_SECONDS)
    idle = number("LB_IDLE_TIMEOUT_SECONDS", 1, 86400, "4000", None)
    memory = number("CONTAINER_MEMORY_MIB", 256, 1048576, "4096", None)
    # Exactly these words: a near miss ("True", "yes") must not be guessed either way.
    raw_trust = _value(env, "TRUST_FORWARDED_HOST") or "false"
    trust = BOOLEAN_VALUES.get(raw_trust)
    if trust is None:
        problems.append(Problem("TRUST_FORWARDED_HOST", raw_trust, "true or false", "true"))
    if problems or php_mib is None or timeout is None or trust is None:
        return None, problems
    return WebSettings(php_memory_limit_mib=php_mib, request_timeout_seconds=timeout,
                       lb_idle_timeout_seconds=idle, container_memory_mib=memory,
                       trust_forwarded_host=trust), []


# --- the memory the container may use -----------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _limit_bytes(text: str | None) -> int | None:
    """A cgroup limit file's value in bytes; None for 'max', no limit, or unreadable."""
    if text is None:
        return None
    value = text.strip()
    if not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number < UNLIMITED_BYTES else None


def cgroup_memory_limit(cgroup_root: Path) -> tuple[int | None, str]:
    """(bytes or None, which cgroup version said so) for the container's own cgroup.

    v2: memory.max. v1: memory.limit_in_bytes, and memory.stat's hierarchical_memory_limit,
    which also covers a limit set on a parent (a task-level limit with no container limit).
    """
    if (cgroup_root / "cgroup.controllers").exists():
        return _limit_bytes(_read(cgroup_root / "memory.max")), "cgroup v2"
    v1 = cgroup_root / "memory"
    limits = [_limit_bytes(_read(v1 / "memory.limit_in_bytes"))]
    for line in (_read(v1 / "memory.stat") or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "hierarchical_memory_limit":
            limits.append(_limit_bytes(value))
    found = [b for b in limits if b is not None]
    return (min(found) if found else None), "cgroup v1"


def meminfo_total_bytes(meminfo: str | None) -> int | None:
    for line in (meminfo or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def effective_memory(cgroup_bytes: int | None, cgroup_label: str, container_mib: int | None,
                     meminfo_bytes: int | None) -> tuple[int, str]:
    """The smallest of the known limits, in MiB, and where it came from."""
    candidates: list[tuple[int, str]] = []
    if cgroup_bytes is not None:
        candidates.append((cgroup_bytes // MIB, f"{cgroup_label} limit"))
    if container_mib is not None:
        candidates.append((container_mib, "CONTAINER_MEMORY_MIB"))
    if meminfo_bytes is not None:
        candidates.append((meminfo_bytes // MIB, "MemTotal"))
    if not candidates:
        raise ValueError("no memory limit is known: no cgroup limit, CONTAINER_MEMORY_MIB or /proc/meminfo")
    return min(candidates)


# --- the plan -----------------------------------------------------------------------------------

def workers_for(memory_mib: int, php_memory_limit_mib: int) -> int:
    """PHP workers whose worst case fits in memory_mib (0 when not even one does)."""
    budget = php_memory_limit_mib + WORKER_OVERHEAD_MIB
    return max(0, min(MAX_WORKERS, (memory_mib - RESERVE_MIB) // budget))


def make_plan(settings: WebSettings, memory_mib: int, memory_source: str) -> Plan:
    fitting = workers_for(memory_mib, settings.php_memory_limit_mib)
    workers = max(1, fitting)
    queue = QUEUE_PER_WORKER * workers
    idle = settings.lb_idle_timeout_seconds
    return Plan(
        memory_mib=memory_mib,
        memory_source=memory_source,
        php_memory_limit_mib=settings.php_memory_limit_mib,
        workers=workers,
        below_one_worker=fitting == 0,
        queue=queue,
        apache_threads=2 * (workers + queue) + SPARE_THREADS,
        keepalive_seconds=idle + KEEPALIVE_MARGIN_SECONDS if idle is not None else DEFAULT_KEEPALIVE_SECONDS,
        request_timeout_seconds=settings.request_timeout_seconds,
        proxy_timeout_seconds=settings.request_timeout_seconds + PROXY_TIMEOUT_MARGIN_SECONDS,
    )


def plan_from_system(settings: WebSettings, cgroup_root: Path = Path("/sys/fs/cgroup"),
                     meminfo: Path = Path("/proc/meminfo")) -> Plan:
    cgroup_bytes, label = cgroup_memory_limit(cgroup_root)
    memory_mib, source = effective_memory(cgroup_bytes, label, settings.container_memory_mib,
                                          meminfo_total_bytes(_read(meminfo)))
    return make_plan(settings, memory_mib, source)
