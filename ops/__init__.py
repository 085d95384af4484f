"""redcap-ops: a small Pulumi project that manages Pulumi Cloud settings of the redcap stacks."""
