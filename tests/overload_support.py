"""Load against the container on loopback: a closed-loop HTTP/1.1 load generator and the
container's memory and OOM counters.

Shared by tests/test_image.py (short overload runs) and benchmarks/overload.py. The load goes
only to 127.0.0.1, with a fixed number of clients for a fixed time; every response body is
checked, so a response cut off by a killed process counts as broken, not as served.
"""
from __future__ import annotations

import asyncio
import math
import re
import time
import json
import uuid
from dataclasses import dataclass, field

from image_support import docker, wait_http
from services import free_port

LOAD_PATH = "/fixture_load.php"
EXPECTED_BODY = "REDCap fixture load ok mb={mb} cpu_ms={cpu_ms} sleep_ms={sleep_ms}\n"


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # every answered request (any status)
    statuses: dict[int, int] = field(default_factory=dict)
    broken: int = 0  # no complete response: reset, cut off, wrong body, timeout
    broken_examples: list[str] = field(default_factory=list)
    slow_503: int = 0  # 503s that took longer than a second (the queue bound's are fast)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def summary(self) -> str:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(self.statuses.items()))
        return (f"{self.clients} clients {self.seconds:.0f}s: {self.throughput:.1f} req/s, "
                f"p50 {self.percentile(50):.2f}s p99 {self.percentile(99):.2f}s, "
                f"broken {self.broken}, non-2xx {self.non_2xx} [{statuses}]")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a status line")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", status_line)
    if m is None:
        raise ConnectionError(f"bad status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return int(m.group(1)), headers, body


async def _client(port: int, path: str, expected: bytes, deadline: float, timeout: float,
                  result: LoadResult, max_requests: int | None = None) -> None:
    reader = writer = None
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: overload\r\n\r\n".encode()
    sent = 0
    while time.monotonic() < deadline and (max_requests is None or sent < max_requests):
        sent += 1
        start = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            writer.write(request)
            await writer.drain()
            status, headers, body = await asyncio.wait_for(_read_response(reader), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            result.broken += 1
            if len(result.broken_examples) < 5:
                result.broken_examples.append(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        elapsed = time.monotonic() - start
        if status == 200 and body != expected:
            result.broken += 1
            if len(result.broken_examples) < 5:
                result.broken_examples.append(f"200 with body {body[:80]!r}")
        else:
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.latencies.append(elapsed)
            if status == 503 and elapsed > 1.0:
                result.slow_503 += 1
        if headers.get("connection", "").lower() == "close":
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run(port: int, path: str, expected: bytes, clients: int, seconds: float,
               timeout: float) -> LoadResult:
    result = LoadResult(clients=clients, seconds=seconds)
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(_client(port, path, expected, deadline, timeout, result) for _ in range(clients)))
    # Requests started before the deadline are waited for: the run lasts until the last one ends.
    result.seconds = time.monotonic() - start
    return result


def _run_coroutine(coro) -> LoadResult:
    """On a loop of its own, leaving the thread's current event loop alone (asyncio.run would
    unset it, which the Pulumi mocks of later tests in the same process rely on)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def load_path(mb: int, cpu_ms: int, sleep_ms: int = 0) -> tuple[str, bytes]:
    path = f"{LOAD_PATH}?mb={mb}&cpu_ms={cpu_ms}&sleep_ms={sleep_ms}"
    return path, EXPECTED_BODY.format(mb=mb, cpu_ms=cpu_ms, sleep_ms=sleep_ms).encode()


def run_load(port: int, *, clients: int, seconds: float, mb: int, cpu_ms: int, sleep_ms: int = 0,
             timeout: float = 120) -> LoadResult:
    """`clients` connections, each sending the next request as soon as it has its answer."""
    path, expected = load_path(mb, cpu_ms, sleep_ms)
    return _run_coroutine(_run(port, path, expected, clients, seconds, timeout))


def burst(port: int, *, requests: int, mb: int, cpu_ms: int, sleep_ms: int,
          timeout: float = 120) -> LoadResult:
    """`requests` requests at the same moment, one each, on their own connections."""
    path, expected = load_path(mb, cpu_ms, sleep_ms)

    async def run() -> LoadResult:
        result = LoadResult(clients=requests, seconds=0)
        start = time.monotonic()
        await asyncio.gather(*(_client(port, path, expected, start + timeout, timeout, result, max_requests=1)
                               for _ in range(requests)))
        result.seconds = time.monotonic() - start
        return result

    return _run_coroutine(run())


# --- the container -------------------------------------------------------------------------------

@dataclass
class WebTier:
    """The image's CMD alone (no bootstrap, no database) on host networking."""

    name: str
    port: int
    status_port: int

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def running(self) -> bool:
        return json.loads(docker("inspect", self.name).stdout)[0]["State"]["Running"]

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)


def start_web_tier(image: str, *, memory_mib: int | None = None, cpus: str | None = None,
                   env: dict[str, str] | None = None, wait: bool = True) -> WebTier:
    """`docker run` the CMD with optional memory and CPU limits (no swap beyond the memory)."""
    port, status_port = free_port(), free_port()
    web = WebTier(name=f"redcap-web-{uuid.uuid4().hex[:10]}", port=port, status_port=status_port)
    args = ["run", "-d", "--name", web.name, "--network", "host"]
    if memory_mib is not None:
        args += ["--memory", f"{memory_mib}m", "--memory-swap", f"{memory_mib}m"]
    if cpus is not None:
        args += ["--cpus", cpus]
    for k, v in {"PORT": str(port), "STATUS_PORT": str(status_port), **(env or {})}.items():
        args += ["-e", f"{k}={v}"]
    docker(*args, "--entrypoint", "/usr/local/bin/redcap-apache", image)
    if wait:
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", 60, container=web.name)
        except BaseException:
            web.stop()
            raise
    return web


# --- the container's memory ---------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryStats:
    peak_bytes: int
    limit_bytes: int | None
    oom_kills: int


def memory_stats(container: str) -> MemoryStats:
    """Peak memory and the kernel's OOM-kill count of the container's cgroup (v1 or v2)."""
    script = ("if [ -f /sys/fs/cgroup/cgroup.controllers ]; then "
              "echo v2; cat /sys/fs/cgroup/memory.peak /sys/fs/cgroup/memory.max; "
              "grep '^oom_kill ' /sys/fs/cgroup/memory.events; "
              "else echo v1; cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes "
              "/sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "grep '^oom_kill ' /sys/fs/cgroup/memory/memory.oom_control; fi")
    out = docker("exec", container, "sh", "-c", script).stdout.split()
    _version, peak, limit, _label, kills = out[:5]
    limit_bytes = int(limit) if limit.isdigit() and int(limit) < 1 << 62 else None
    return MemoryStats(peak_bytes=int(peak), limit_bytes=limit_bytes, oom_kills=int(kills))

