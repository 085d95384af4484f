"""Where the project's files are. Tests point RELEASES_DIR elsewhere (monkeypatch this module)."""
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
RELEASES_DIR = PROJECT_DIR / "releases"
