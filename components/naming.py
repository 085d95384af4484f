"""Physical names that carry the stage: `redcap-<stack>`, cut to an AWS length limit without
losing uniqueness.

Two stages in one account must never share a physical name, so a name that has to be shortened
keeps a short hash of the full stack name: `redcap-research-production-east-1` and `...-east-2`
stay different under a 32-character limit. Names that fit are unchanged (`redcap-prod`).
"""
from __future__ import annotations

import hashlib
import re

HASH_LENGTH = 6


def stage_name(stack: str, limit: int, *, allowed: str = r"A-Za-z0-9-", lower: bool = False) -> str:
    """`redcap-<stack>` with every character outside `allowed` made a hyphen, at most `limit` long.

    Cut names end in `-<6 hex of sha256(stack)>`; no name ends in a hyphen or underscore.
    """
    name = re.sub(rf"[^{allowed}]", "-", f"redcap-{stack}")
    if lower:
        name = name.lower()
    if len(name) <= limit:
        return name.rstrip("-_")
    digest = hashlib.sha256(stack.encode()).hexdigest()[:HASH_LENGTH]
    return f"{name[:limit - HASH_LENGTH - 1].rstrip('-_')}-{digest}"
