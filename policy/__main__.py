"""Entry point the Pulumi CLI runs for `--policy-pack policy`. Keep it thin.

Constructing a PolicyPack starts the analyzer's gRPC server and blocks forever, which is why the
rules live in policy/rules.py (importable by tests) and only this file builds the pack.
"""
import sys
from pathlib import Path

# The CLI runs this file with policy/ as the working directory and sys.path[0]; the rules are
# imported as the `policy` package, exactly as the tests import them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.rules import PACK_NAME, POLICIES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
