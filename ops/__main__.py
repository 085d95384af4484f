"""redcap-ops program: wiring only (settings -> one ManagedStack per redcap stack -> exports)."""
import sys
from pathlib import Path

# The CLI runs this file with ops/ as sys.path[0]; import our modules as the `ops` package (as the
# tests do), so they never collide with the redcap program's own top-level `settings` module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from ops.managed_stack import ManagedStack, ManagedStackArgs  # noqa: E402
from ops.settings import load_settings  # noqa: E402

settings = load_settings()

managed = {
    spec.name: ManagedStack(
        spec.name,
        ManagedStackArgs(organization=settings.organization, project=settings.redcap_project, spec=spec),
    )
    for spec in settings.stacks
}

pulumi.export("stacks", sorted(managed))
pulumi.export("autoRemediate", {spec.name: spec.auto_remediate for spec in settings.stacks})
