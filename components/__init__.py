"""One ComponentResource per concern (DESIGN.md §1). Components take typed args, never pulumi.Config."""
