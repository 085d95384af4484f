"""Image benchmark: image size, and the time from `docker run` to the first 200 on /healthz and
on the REDCap page, for a first start (empty database: the bootstrap installs REDCap) and for a
restart against the installed database.

    .venv/bin/python benchmarks/image.py [--runs N]

Builds the image the way tests/test_image.py does (the Docker layer cache makes this a no-op
when nothing changed), on the local Debian trixie base from scripts/make-base-image, against
MariaDB and moto started on loopback.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from image_support import BASE_IMAGE, app_environment, build_image, docker, run_detached, wait_http  # noqa: E402
from services import MariaDB, MotoServer  # noqa: E402


def time_to_200(image: str, env: dict[str, str], port: int) -> tuple[float, float]:
    """Seconds from `docker run` to the first 200 on /healthz, and on /."""
    name, start = run_detached(image, env, "redcap-bench")
    try:
        health = wait_http(f"http://127.0.0.1:{port}/healthz", 180, container=name) - start
        page = wait_http(f"http://127.0.0.1:{port}/", 180, container=name) - start
    finally:
        docker("rm", "-f", name, check=False)
    return health, page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per scenario (default 3)")
    parser.add_argument("--base-image", default=BASE_IMAGE)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redcap-bench-") as tmp:
        built = build_image(Path(tmp), args.base_image)
        info = json.loads(docker("image", "inspect", built.tag).stdout)[0]
        layers = len(info["RootFS"]["Layers"])
        print(f"image              {built.tag}")
        print(f"build (cached)     {built.seconds:.1f} s")
        print(f"image size         {info['Size'] / 1e6:.0f} MB ({layers} layers)")

        mariadb, moto = MariaDB.start(), MotoServer.start()
        try:
            first: list[tuple[float, float]] = []
            restart: list[tuple[float, float]] = []
            for _ in range(args.runs):
                # A fresh database per run: the first start installs REDCap's schema.
                env, _ = app_environment(mariadb, moto)
                first.append(time_to_200(built.tag, env, int(env["PORT"])))
                restart.append(time_to_200(built.tag, env, int(env["PORT"])))
        finally:
            mariadb.stop()
            moto.stop()

    def show(label: str, samples: list[tuple[float, float]]) -> None:
        health = [h for h, _ in samples]
        page = [p for _, p in samples]
        print(f"{label:<19}/healthz median {statistics.median(health):.2f} s (min {min(health):.2f}, "
              f"max {max(health):.2f}); app page median {statistics.median(page):.2f} s "
              f"(min {min(page):.2f}, max {max(page):.2f})  [{len(samples)} runs]")

    show("first start", first)
    show("restart", restart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
