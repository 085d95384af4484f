"""Logging to stdout (container logs). Secret values are never passed to the logger."""
from __future__ import annotations

import logging
import sys


def setup_logging() -> logging.Logger:
    logger = logging.getLogger("bootstrap")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("bootstrap %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
