"""Overload benchmark: the web tier at 1x, 3x and 10x its PHP worker count, beside the previous
prefork/mod_php configuration, measured the same way in the same run.

    .venv/bin/python benchmarks/overload.py [--sizes 2:4096,1:2048] [--levels 1,3,10]
        [--seconds 30] [--mb 48] [--cpu-ms 150] [--baseline-ref COMMIT]

For every size (vCPU:MiB, as Fargate's) and configuration, and for every level, a fresh
container runs with `--cpus` and `--memory` of that size (its CMD only: the fixture's load page
needs no database). N closed-loop clients on 127.0.0.1 request the fixture's load page (--mb of
PHP memory, --cpu-ms of CPU time per request) for --seconds, N = level x the web tier's worker
count for that size, the same N for both configurations. Printed per run: throughput (2xx per
second), p50/p99 latency, broken responses (reset, cut off, wrong body), non-2xx responses, the
container's peak memory and the kernel's OOM kills in its cgroup.

The baseline is container/ as of --baseline-ref (default: the last commit with the prefork
configuration), taken from git and built with the same fixture zip. It exists only here: the
production image has no trace of it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from image_support import BASE_IMAGE, build_image  # noqa: E402
from overload_support import memory_stats, run_load, start_web_tier  # noqa: E402
from container.webtier.sizing import DEFAULT_PHP_MEMORY_LIMIT, parse_php_size_mib, workers_for  # noqa: E402

# The last commit whose container/ ran Apache prefork with mod_php.
PREFORK_REF = "e02be7a21417d3b2ff8cf1293b215166f8e25201"


def baseline_container_dir(ref: str, dest: Path) -> Path:
    """container/ as of ref, extracted from git."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "container"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "container"


def measure(image: str, cpus: str, memory_mib: int, clients: int, seconds: float, mb: int,
            cpu_ms: int) -> dict:
    web = start_web_tier(image, memory_mib=memory_mib, cpus=cpus)
    try:
        result = run_load(web.port, clients=clients, seconds=seconds, mb=mb, cpu_ms=cpu_ms)
        # A killed PID 1 ends the container: then its cgroup's counters are gone with it.
        stats = memory_stats(web.name) if web.running() else None
    finally:
        web.stop()
    return {
        "result": result,
        "peak_mib": stats.peak_bytes / 1048576 if stats else None,
        "oom_kills": stats.oom_kills if stats else None,
    }


def row(size: str, config: str, m: dict) -> str:
    r = m["result"]
    peak = f"{m['peak_mib']:.0f}" if m["peak_mib"] is not None else "exited"
    kills = str(m["oom_kills"]) if m["oom_kills"] is not None else "container killed"
    return (f"| {size} | {config} | {r.clients} | {r.throughput:.1f} | {r.percentile(50):.2f} | "
            f"{r.percentile(99):.2f} | {r.broken} | {r.non_2xx} | {peak} | {kills} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2:4096,1:2048", help="vCPU:MiB pairs (default 2:4096,1:2048)")
    parser.add_argument("--levels", default="1,3,10", help="multiples of the worker count (default 1,3,10)")
    parser.add_argument("--seconds", type=float, default=30, help="load per run (default 30)")
    parser.add_argument("--mb", type=int, default=48, help="PHP memory per request, MiB (default 48)")
    parser.add_argument("--cpu-ms", type=int, default=150, help="CPU time per request, ms (default 150)")
    parser.add_argument("--baseline-ref", default=PREFORK_REF, help="commit of the prefork container/")
    parser.add_argument("--base-image", default=BASE_IMAGE)
    args = parser.parse_args()
    sizes = [(cpus, int(mib)) for cpus, mib in (s.split(":") for s in args.sizes.split(","))]
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="redcap-overload-") as tmp:
        current = build_image(Path(tmp) / "current", args.base_image)
        old_dir = baseline_container_dir(args.baseline_ref, Path(tmp))
        baseline = build_image(Path(tmp) / "baseline", args.base_image, container_dir=old_dir,
                               repository="redcap-test/redcap-prefork")
    php_mib = parse_php_size_mib(DEFAULT_PHP_MEMORY_LIMIT)
    assert php_mib is not None
    print(f"web tier {current.tag}; prefork baseline {baseline.tag} (container/ at {args.baseline_ref[:12]})")
    print(f"load page: {args.mb} MiB and {args.cpu_ms} ms CPU per request, {args.seconds:g} s per run\n")
    print("| size | configuration | clients | 2xx/s | p50 s | p99 s | broken | non-2xx | peak MiB | OOM kills |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cpus, mib in sizes:
        workers = max(1, workers_for(mib, php_mib))
        size = f"{cpus} vCPU / {mib / 1024:g} GB ({workers} workers)"
        for level in levels:
            for config, image in (("event + PHP-FPM", current.tag), ("prefork + mod_php", baseline.tag)):
                m = measure(image, cpus, mib, level * workers, args.seconds, args.mb, args.cpu_ms)
                print(row(size, f"{config}, {level}x", m), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
