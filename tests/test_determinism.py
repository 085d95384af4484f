"""The same config must give the same resource inputs and options on every run: drift
detection and `pulumi preview --expect-no-changes` depend on it."""
from __future__ import annotations

import json

import pytest

from harness import StackRun, cached_run, run_program
from variants import IDS, VARIANTS


def fingerprint(run: StackRun) -> list[tuple]:
    return sorted((r.urn, json.dumps(r.inputs, sort_keys=True, default=str), r.protect, r.retain_on_delete,
                   tuple(r.ignore_changes), tuple(sorted(r.dependencies))) for r in run.resources)


@pytest.mark.parametrize("variant_id, stack, overrides", VARIANTS, ids=IDS)
def test_every_variant_is_deterministic(variant_id, stack, overrides):
    # One evaluation may come from earlier tests of the session; the other is always fresh.
    first, second = cached_run(stack, overrides), run_program(stack, overrides)
    assert first.resources, variant_id
    assert fingerprint(first) == fingerprint(second)
    assert first.outputs == second.outputs
