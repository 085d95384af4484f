"""The project's own files as the program hands them to Pulumi (assets, build contexts)."""
from __future__ import annotations

from pathlib import Path

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"


def project_relative(path: Path) -> str:
    """A path relative to the working directory (the project, under `pulumi up`) when it lies
    below it: the same checkout in another folder then gives the same program inputs."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)
