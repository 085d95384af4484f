"""CrossGuard policy pack for redcap-pulumi.

The rules live in plain modules (`policy.model`, `policy.iam_documents`, `policy.rules`) so that
tests and the program-under-mocks harness can call them directly. `policy/__main__.py` is the only
file that constructs a `PolicyPack`, because constructing one starts a gRPC server and blocks.
"""
