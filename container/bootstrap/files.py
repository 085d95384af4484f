"""Atomic, idempotent file writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import FileWriteError


def write_atomic(path: str | Path, content: str | bytes, mode: int) -> bool:
    """Write content to path via a temporary file and rename; return False if already identical.

    Identical content is left untouched (same inode and mtime), so a restart changes nothing.
    A reader never sees a half-written file: the rename is atomic within the directory. When
    the directory is not writable but the file is (e.g. /etc/msmtprc pre-created for
    www-data in a root-owned /etc), the file is rewritten in place instead; nothing reads it
    while the bootstrap runs, before the CMD starts.
    """
    # The image links database.php and /etc/msmtprc into a writable directory (the root
    # filesystem is read-only): the temporary file and the rename belong beside the target.
    path = Path(os.path.realpath(path))
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if path.is_file() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except PermissionError:
            if not (path.is_file() and os.access(path, os.W_OK)):
                raise
            _write_in_place(path, data, mode)
            return True
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def _write_in_place(path: Path, data: bytes, mode: int) -> None:
    # Restrict the mode before the content goes in, so a secret is never world-readable.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fchmod(fd, mode)
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(fd)
