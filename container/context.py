"""Assembles the REDCap image's Docker build context and names it by content.

The layout is the one fixed in notes/container-contract.md::

    Dockerfile and everything else under container/ except container/tests (and caches)
    redcap.zip            the REDCap release zip (top-level redcap/ directory)
    languages/            optional REDCap language .ini files (may be empty)
    modules/              optional REDCap external modules, one <name>_v<version>/ directory each
    redcap-config.sql     configuration SQL applied once per database
    rds-ca-bundle.pem     RDS CA bundle

Local builds, the tests and the compute stack (CodeBuild source, image tag) all use
``assemble_context``; ``context_hash`` gives the same sha256 for the same inputs, whatever
their timestamps or the directory they sit in, so equal inputs give an equal image tag.
Standard library only.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

CONTAINER_DIR = Path(__file__).resolve().parent

# Never part of the image: the container's own tests and interpreter or editor leftovers.
_EXCLUDED_DIRS = frozenset({"tests", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"})
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
_EXCLUDED_NAMES = frozenset({".DS_Store"})

# The only paths the running container writes (the Dockerfile's VOLUME line lists the same):
# the root filesystem is read-only on ECS and in tests/test_image.py's read-only run. /tmp:
# PHP uploads and ImageMagick's disk cache; REDCap's temp/; PHP sessions; PHP-FPM's sockets and
# pid (/run/redcap); Apache's pid, and its lock files (/var/run and /var/lock are links into
# /run); the TLS key made at start; database.php and the msmtp configuration, which the image
# links from /var/www/html/database.php and /etc/msmtprc into /var/lib/redcap/conf.
WRITABLE_PATHS = ("/tmp", "/var/www/html/temp", "/var/lib/php/sessions", "/run/redcap", "/run/apache2",
                  "/run/lock/apache2", "/var/lib/redcap/tls", "/var/lib/redcap/conf")

# Names the inputs take in the context; a container/ file of the same name would be ambiguous.
_INPUT_NAMES = frozenset({"redcap.zip", "languages", "modules", "redcap-config.sql", "rds-ca-bundle.pem"})

# REDCap finds an external module only in a directory named <prefix>_v<version> under modules/.
MODULE_DIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*_v[0-9]+(\.[0-9]+)*$")


def _container_files(container_dir: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, source) for every file of container/ that belongs in the context."""
    for root, dirs, files in os.walk(container_dir):
        dirs[:] = sorted(d for d in dirs if d not in _EXCLUDED_DIRS and not d.startswith("."))
        rel_root = Path(root).relative_to(container_dir)
        if rel_root == Path(".") and _INPUT_NAMES.intersection(dirs):
            raise ValueError(f"container/{sorted(_INPUT_NAMES.intersection(dirs))[0]}/ would shadow a build input")
        for name in sorted(files):
            if name in _EXCLUDED_NAMES or name.endswith(_EXCLUDED_SUFFIXES):
                continue
            if rel_root == Path(".") and name in _INPUT_NAMES:
                raise ValueError(f"container/{name} would shadow a build input of the same name")
            yield (rel_root / name).as_posix(), Path(root) / name


def _language_files(languages_dir: Path | None) -> Iterator[tuple[str, Path]]:
    if languages_dir is None:
        return
    if not languages_dir.is_dir():
        raise FileNotFoundError(f"languages_dir {languages_dir} is not a directory")
    for path in sorted(languages_dir.iterdir()):
        # REDCap language files are <Language>.ini; anything else has no place in the image.
        if path.is_file() and path.suffix == ".ini":
            yield f"languages/{path.name}", path


def _module_files(modules_dir: Path | None) -> Iterator[tuple[str, Path]]:
    """Every file of every module directory; anything else in modules/ (a README) stays out."""
    if modules_dir is None:
        return
    if not modules_dir.is_dir():
        raise FileNotFoundError(f"modules_dir {modules_dir} is not a directory")
    for module in sorted(p for p in modules_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not MODULE_DIR_NAME.match(module.name):
            raise ValueError(f"modules/{module.name}: an external module directory must be named "
                             "<prefix>_v<version> in lower case, e.g. modules/vizr_v1.2.3 (REDCap finds no other)")
        # The whole module (its own tests/ and languages/ too), without VCS and cache clutter.
        for root, dirs, files in os.walk(module):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            rel_root = Path(root).relative_to(modules_dir)
            for name in sorted(files):
                if name in _EXCLUDED_NAMES or name.endswith(_EXCLUDED_SUFFIXES):
                    continue
                yield f"modules/{(rel_root / name).as_posix()}", Path(root) / name


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def context_files(*, redcap_zip: Path, languages_dir: Path | None, config_sql: Path,
                  ca_bundle: Path, container_dir: Path = CONTAINER_DIR,
                  modules_dir: Path | None = None) -> dict[str, Path]:
    """Every file of the build context: relative posix path -> source path, sorted by path."""
    files = dict(_container_files(Path(container_dir)))
    files["redcap.zip"] = _require_file(redcap_zip, "REDCap zip")
    files["redcap-config.sql"] = _require_file(config_sql, "configuration SQL")
    files["rds-ca-bundle.pem"] = _require_file(ca_bundle, "RDS CA bundle")
    files.update(_language_files(Path(languages_dir) if languages_dir is not None else None))
    files.update(_module_files(Path(modules_dir) if modules_dir is not None else None))
    if "Dockerfile" not in files:
        raise FileNotFoundError(f"no Dockerfile in {container_dir}")
    return dict(sorted(files.items()))


def _is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def assemble_context(dest: Path, *, redcap_zip: Path, languages_dir: Path | None,
                     config_sql: Path, ca_bundle: Path,
                     container_dir: Path = CONTAINER_DIR, modules_dir: Path | None = None) -> Path:
    """Write the build context into ``dest`` (emptied first) and return ``dest``.

    File modes are normalised (0644, or 0755 for executables) so that the image does not depend
    on the umask or checkout of the machine that assembled it.
    """
    dest = Path(dest)
    files = context_files(redcap_zip=redcap_zip, languages_dir=languages_dir, config_sql=config_sql,
                          ca_bundle=ca_bundle, container_dir=container_dir, modules_dir=modules_dir)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # languages/ and modules/ exist even when empty: the Dockerfile copies them unconditionally.
    (dest / "languages").mkdir()
    (dest / "modules").mkdir()
    for rel, src in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        target.chmod(0o755 if _is_executable(src) else 0o644)
    return dest


def context_hash(*, redcap_zip: Path, languages_dir: Path | None, config_sql: Path,
                 ca_bundle: Path, container_dir: Path = CONTAINER_DIR, modules_dir: Path | None = None) -> str:
    """sha256 hex over every context file's path, executable bit and content, in path order.

    Lengths are included so that no two different contexts hash the same by shifting bytes
    between a name and a content.
    """
    files = context_files(redcap_zip=redcap_zip, languages_dir=languages_dir, config_sql=config_sql,
                          ca_bundle=ca_bundle, container_dir=container_dir, modules_dir=modules_dir)
    h = hashlib.sha256()
    for rel, src in files.items():
        name = rel.encode()
        mode = b"x" if _is_executable(src) else b"-"
        h.update(len(name).to_bytes(8, "big") + name + mode)
        h.update(src.stat().st_size.to_bytes(8, "big"))
        with src.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
