"""REDCap's database upgrade in the real image (Debian's PHP 8.4, the image's entrypoint): a
container of the 14.0.0 image installs REDCap against MariaDB; the one-off task of the 14.0.1
image (`upgrade-database` on a read-only root, as the Pulumi program runs it) upgrades the
database; a second task finds nothing to do."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from image_support import (REDCAP_VERSION, BuiltImage, RunningApp, build_image, docker, read_only_run_args,
                           start_app)

pytestmark = pytest.mark.docker

NEW_VERSION = "14.0.1"
RESULT_PREFIX = "upgrade result: "


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltImage, BuiltImage]:
    old = build_image(tmp_path_factory.mktemp("image-old"))
    new = build_image(tmp_path_factory.mktemp("image-new"), version=NEW_VERSION)
    return old, new


@pytest.fixture(scope="module")
def installed(images: tuple[BuiltImage, BuiltImage], mariadb, moto_server) -> Iterator[RunningApp]:
    running = start_app(images[0].tag, mariadb, moto_server)  # serves 14.0.0, REDCap installed
    yield running
    running.stop()


def upgrade_task(image: BuiltImage, app: RunningApp) -> tuple[int, str, dict]:
    # As the task runs it: a read-only root, writable only where the task's volumes are.
    args = ["run", "--rm", "--network", "host", *read_only_run_args()]
    for key, value in app.env.items():
        args += ["-e", f"{key}={value}"]
    r = docker(*args, image.tag, "upgrade-database", check=False, timeout=300)
    out = r.stdout + r.stderr
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    assert len(lines) == 1, out
    return r.returncode, out, json.loads(lines[0][len(RESULT_PREFIX):])


def version_in(mariadb, app: RunningApp) -> str:
    with mariadb.connect(app.db_name) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM redcap_config WHERE field_name = 'redcap_version'")
        return cur.fetchone()[0]


def test_the_new_image_upgrades_the_database_once(images, installed: RunningApp, mariadb) -> None:
    _, new = images
    assert version_in(mariadb, installed) == REDCAP_VERSION
    code, out, result = upgrade_task(new, installed)
    assert code == 0, out
    assert (result["status"], result["from"], result["to"]) == ("upgraded", REDCAP_VERSION, NEW_VERSION)
    assert version_in(mariadb, installed) == NEW_VERSION
    for secret in installed.secrets.values():
        assert secret not in out
    code, out, again = upgrade_task(new, installed)
    assert code == 0 and again["status"] == "current", out


def test_the_old_image_refuses_the_upgraded_database(images, installed: RunningApp, mariadb) -> None:
    old, new = images
    if version_in(mariadb, installed) != NEW_VERSION:
        assert upgrade_task(new, installed)[0] == 0
    code, out, result = upgrade_task(old, installed)
    assert code == 8 and result["status"] == "failed", out
    assert result["error"].startswith(f"the database is at REDCap {NEW_VERSION}, newer than this image's "
                                      f"{REDCAP_VERSION}")
