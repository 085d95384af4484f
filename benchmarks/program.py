"""Prints how long evaluating a stack under Pulumi's mocks takes (goal for prod: under 3 s).

    .venv/bin/python benchmarks/program.py [stack ...]   (default: prod)

Cold = a fresh interpreter importing pulumi, pulumi_aws and the program, then one evaluation
(what a single `pytest -k` run pays); warm = further evaluations in the same process.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5

CHILD = """
import sys, time, warnings
warnings.simplefilter("ignore")
start = time.perf_counter()
sys.path[:0] = [{root!r}, {tests!r}]
from harness import run_program
run = run_program({stack!r})
elapsed = time.perf_counter() - start
warm = []
for _ in range({runs}):
    t = time.perf_counter(); run_program({stack!r}); warm.append(time.perf_counter() - t)
print(elapsed, len(run.resources), *warm)
"""


def measure(stack: str) -> None:
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"), stack=stack, runs=RUNS)
    wall_start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - wall_start
    first, resources, *warm = out.split()
    warm_s = [float(w) for w in warm]
    median = statistics.median(warm_s)
    print(f"{stack}: {int(resources)} resources | process wall {wall:.2f} s | first evaluation incl. imports "
          f"{float(first):.2f} s (of which ~{float(first) - median:.2f} s one-time imports of pulumi_aws "
          f"modules) | warm median {median:.3f} s (min {min(warm_s):.3f}, max {max(warm_s):.3f}, n={RUNS})")


if __name__ == "__main__":
    for stack_name in sys.argv[1:] or ["prod"]:
        measure(stack_name)
