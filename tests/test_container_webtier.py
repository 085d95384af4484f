"""The web tier's sizing rule as pure functions: memory limits from cgroup v1 and v2 trees, the
platform's task size and /proc/meminfo; the worker count, queue, threads and timeouts; the
environment's validation; and that the numbers the rule assumes are the ones the configuration
files set. The real container runs are in tests/test_image.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from container.webtier.sizing import (
    APCU_MIB, FORWARDED_HOST_DEFINE, IMAGEMAGICK_MEMORY_MIB, MAX_WORKERS, OPCACHE_MIB, RESERVE_MIB,
    WORKER_OVERHEAD_MIB, Plan, WebSettings, cgroup_memory_limit, effective_memory, load_web_settings, make_plan,
    meminfo_total_bytes, parse_php_size_mib, plan_from_system, workers_for,
)

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = ROOT / "container"
GIB = 1024 ** 3
V1_UNLIMITED = "9223372036854771712\n"


def settings(php: int = 256, timeout: int = 120, idle: int | None = None, memory: int | None = None) -> WebSettings:
    return WebSettings(php_memory_limit_mib=php, request_timeout_seconds=timeout,
                       lb_idle_timeout_seconds=idle, container_memory_mib=memory)


def cgroup_v2(tmp_path: Path, memory_max: str) -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "memory.max").write_text(memory_max)
    return tmp_path


def cgroup_v1(tmp_path: Path, limit: str, hierarchical: str | None) -> Path:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(limit)
    stat = "cache 0\nrss 0\n" + (f"hierarchical_memory_limit {hierarchical}" if hierarchical else "")
    (tmp_path / "memory" / "memory.stat").write_text(stat)
    return tmp_path


@pytest.mark.parametrize("text,mib", [
    ("256M", 256), ("128M", 128), ("1G", 1024), ("512m", 512), ("16G", 16384), (" 2G ", 2048),
    ("127M", None), ("64M", None), ("17G", None), ("-1", None), ("0", None), ("268435456", None),
    ("256MB", None), ("1.5G", None), ("", None),
])
def test_php_sizes(text: str, mib: int | None) -> None:
    assert parse_php_size_mib(text) == mib


def test_cgroup_v2_limit_and_no_limit(tmp_path: Path) -> None:
    assert cgroup_memory_limit(cgroup_v2(tmp_path, "2147483648\n")) == (2 * GIB, "cgroup v2")
    assert cgroup_memory_limit(cgroup_v2(tmp_path, "max\n")) == (None, "cgroup v2")


@pytest.mark.parametrize("limit,hierarchical,expected", [
    ("1073741824\n", None, GIB),  # docker run --memory 1g
    # A task-level limit on the parent, none on the container itself (ECS without a container limit).
    (V1_UNLIMITED, str(4 * GIB), 4 * GIB),
    ("1073741824\n", str(4 * GIB), GIB),
    (V1_UNLIMITED, V1_UNLIMITED.strip(), None),
])
def test_cgroup_v1_limit_includes_the_parents(tmp_path: Path, limit: str, hierarchical: str | None,
                                              expected: int | None) -> None:
    assert cgroup_memory_limit(cgroup_v1(tmp_path, limit, hierarchical)) == (expected, "cgroup v1")


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    assert cgroup_memory_limit(tmp_path) == (None, "cgroup v1")


def test_meminfo() -> None:
    assert meminfo_total_bytes("MemTotal:        4028880 kB\nMemFree: 1 kB\n") == 4028880 * 1024
    assert meminfo_total_bytes("MemFree: 1 kB\n") is None and meminfo_total_bytes(None) is None


def test_the_smallest_known_limit_wins() -> None:
    assert effective_memory(4 * GIB, "cgroup v1", None, 16 * GIB) == (4096, "cgroup v1 limit")
    assert effective_memory(4 * GIB, "cgroup v2", 2048, 16 * GIB) == (2048, "CONTAINER_MEMORY_MIB")
    # A tunnel host smaller than the ECS task size it was given.
    assert effective_memory(None, "cgroup v1", 4096, 2 * GIB) == (2048, "MemTotal")
    with pytest.raises(ValueError, match="no memory limit is known"):
        effective_memory(None, "cgroup v2", None, None)


def test_plan_from_a_cgroup_tree(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\n")
    plan = plan_from_system(settings(), cgroup_v2(tmp_path, str(2 * GIB)), meminfo)
    assert (plan.memory_mib, plan.memory_source, plan.workers) == (2048, "cgroup v2 limit", 4)


@pytest.mark.parametrize("memory,php,workers", [
    # (memory - 352) // (memory_limit + 96)
    (512, 256, 0), (704, 256, 1), (1024, 256, 1), (2048, 256, 4), (3072, 256, 7), (4096, 256, 10),
    (8192, 256, 22), (4096, 512, 6), (4096, 1024, 3), (2048, 2048, 0), (1280, 128, 4),
    (120 * 1024, 256, MAX_WORKERS),
])
def test_worker_count(memory: int, php: int, workers: int) -> None:
    assert workers_for(memory, php) == workers
    assert RESERVE_MIB == 352 and WORKER_OVERHEAD_MIB == 96


def test_plan_numbers() -> None:
    plan = make_plan(settings(), 4096, "cgroup v1 limit")
    assert (plan.workers, plan.queue, plan.php_slots, plan.apache_threads) == (10, 100, 110, 284)
    assert (plan.keepalive_seconds, plan.request_timeout_seconds, plan.proxy_timeout_seconds) == (5, 120, 150)
    assert plan.below_one_worker is False
    assert plan.environment() == {
        "REDCAP_PHP_WORKERS": "10", "REDCAP_PHP_SLOTS": "110",
        "REDCAP_APACHE_THREADS": "284", "REDCAP_KEEPALIVE_SECONDS": "5", "REDCAP_PROXY_TIMEOUT_SECONDS": "150",
        "REDCAP_PHP_MEMORY_LIMIT": "256M", "REDCAP_PHP_MAX_EXECUTION_TIME": "120",
    }
    assert plan.summary() == ("memory 4096 MiB (cgroup v1 limit), PHP memory_limit 256M: 10 PHP workers, queue 100, "
                              "284 Apache threads; keep-alive 5 s, request timeout 120 s")


def test_behind_a_load_balancer_keepalive_outlasts_its_idle_timeout() -> None:
    plan = make_plan(settings(timeout=4000, idle=4000), 4096, "CONTAINER_MEMORY_MIB")
    assert (plan.keepalive_seconds, plan.proxy_timeout_seconds) == (4060, 4030)
    assert plan.environment()["REDCAP_PHP_MAX_EXECUTION_TIME"] == "4000"


def test_too_little_memory_still_starts_one_worker() -> None:
    plan = make_plan(settings(php=1024), 1024, "cgroup v2 limit")
    assert (plan.workers, plan.below_one_worker, plan.queue) == (1, True, 10)
    assert "(less than one worker's budget: one is started anyway)" in plan.summary()


def test_environment_defaults_and_empty_values() -> None:
    for env in ({}, {"PHP_MEMORY_LIMIT": "", "REQUEST_TIMEOUT_SECONDS": " ", "LB_IDLE_TIMEOUT_SECONDS": ""}):
        assert load_web_settings(env) == (settings(), [])
    assert load_web_settings({"PHP_MEMORY_LIMIT": "1G", "REQUEST_TIMEOUT_SECONDS": "4000",
                              "LB_IDLE_TIMEOUT_SECONDS": "4000", "CONTAINER_MEMORY_MIB": "4096"}) == (
        settings(php=1024, timeout=4000, idle=4000, memory=4096), [])


def test_every_invalid_variable_is_reported() -> None:
    parsed, problems = load_web_settings({"PHP_MEMORY_LIMIT": "64M", "REQUEST_TIMEOUT_SECONDS": "0",
                                          "LB_IDLE_TIMEOUT_SECONDS": "soon", "CONTAINER_MEMORY_MIB": "100",
                                          "TRUST_FORWARDED_HOST": "yes"})
    assert parsed is None
    assert [(p.key, p.value, p.allowed, p.example) for p in problems] == [
        ("PHP_MEMORY_LIMIT", "64M", "a size in M or G from 128M to 16G", "512M"),
        ("REQUEST_TIMEOUT_SECONDS", "0", "an integer 1..86400", "120"),
        ("LB_IDLE_TIMEOUT_SECONDS", "soon", "an integer 1..86400", "4000"),
        ("CONTAINER_MEMORY_MIB", "100", "an integer 256..1048576", "4096"),
        ("TRUST_FORWARDED_HOST", "yes", "true or false", "true"),
    ]


@pytest.mark.parametrize("value,trusted", [(None, False), ("", False), (" ", False), ("false", False),
                                           ("true", True), (" true ", True)])
def test_forwarded_host_is_trusted_only_when_told(value: str | None, trusted: bool) -> None:
    parsed, problems = load_web_settings({} if value is None else {"TRUST_FORWARDED_HOST": value})
    assert problems == [] and parsed is not None
    assert parsed.trust_forwarded_host is trusted
    # What Apache is started with: the Define that apache/common.conf's directives depend on.
    assert parsed.apache_defines() == ([f"-D{FORWARDED_HOST_DEFINE}"] if trusted else [])


@pytest.mark.parametrize("value", ["True", "TRUE", "yes", "1", "on", "no"])
def test_forwarded_host_words_are_exact(value: str) -> None:
    # A near miss is neither value: a typo must not silently trust (or distrust) the header.
    parsed, problems = load_web_settings({"TRUST_FORWARDED_HOST": value})
    assert parsed is None
    assert [(p.key, p.value, p.allowed) for p in problems] == [("TRUST_FORWARDED_HOST", value.strip(), "true or false")]


# --- the numbers the rule assumes are the ones the image sets -----------------------------------

def ini_value(path: Path, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}\s*=\s*(\S+)\s*$", path.read_text(), re.M)
    assert m, f"{key} not set in {path}"
    return m.group(1)


def test_reserve_matches_the_php_configuration() -> None:
    assert ini_value(CONTAINER / "php" / "opcache.ini", "opcache.memory_consumption") == str(OPCACHE_MIB)
    assert ini_value(CONTAINER / "php" / "redcap.ini", "apc.shm_size") == f"{APCU_MIB}M"
    dockerfile = (CONTAINER / "Dockerfile").read_text()
    assert f'(name="memory" value=")[^"]*"/\\1{IMAGEMAGICK_MEMORY_MIB}MiB"/' in dockerfile
    assert f"RESOURCETYPE_MEMORY) == {IMAGEMAGICK_MEMORY_MIB} * 1048576" in dockerfile


def test_configuration_files_read_exactly_the_plan_environment() -> None:
    """Every ${REDCAP_*} in apache/ and php/ is set by the plan, and everything the plan sets is used
    (REDCAP_VERSION is the build's Define, redcap-version.conf)."""
    used = set()
    for path in [*(CONTAINER / "apache").iterdir(), *(CONTAINER / "php").iterdir()]:
        used |= set(re.findall(r"\$\{(REDCAP_[A-Z_]+)\}", path.read_text())) - {"REDCAP_VERSION"}
    plan = make_plan(settings(), 4096, "test")
    assert isinstance(plan, Plan) and used == set(plan.environment())
