"""The delegation-only stack (issue 3): NS records in the parent zone and nothing else."""
from __future__ import annotations

from typing import Any

import harness
from components import delegation

RECORD = "aws:route53/record:Record"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
DELEGATION: dict[str, Any] = {"nsDelegation": {"domain": "Example.org", "records": [
    {"name": "redcap", "fromStack": "acme/redcap/prod"},
    {"name": "survey.lab", "nameServers": ["ns-b.example.net", "ns-a.example.net"]},
    {"name": "redcap-test", "fromStack": "acme/redcap/prod"},
    {"name": "redcap-dev", "fromStack": "acme/redcap/dev"},
]}}


def run_delegation(stack: str = "dev") -> tuple[harness.StackRun, list[dict]]:
    lookups: list[dict] = []

    def get_zone(args: dict) -> dict:
        lookups.append(args)
        return {"zoneId": "ZPARENTACCOUNT", "id": "ZPARENTACCOUNT", "name": args["name"]}

    run = harness.run_program(stack, DELEGATION, call_overrides={"aws:route53/getZone:getZone": get_zone})
    return run, lookups


def test_only_ns_records_are_registered() -> None:
    run, lookups = run_delegation()
    custom = [r for r in run.resources if r.custom]
    assert custom and all(r.type == RECORD and r.inputs["type"] == "NS" for r in custom)
    assert {r.type for r in run.resources if not r.custom} == {"redcap:delegation:NsDelegation"}
    assert [(a["name"], a.get("privateZone")) for a in lookups] == [("example.org", False)]
    assert run.outputs == {"delegatedNames": ["redcap-dev.example.org", "redcap-test.example.org",
                                              "redcap.example.org", "survey.lab.example.org"]}


def test_records_from_stacks_and_explicit_servers() -> None:
    run, _ = run_delegation()
    records = {r.inputs["name"]: r.inputs for r in run.of_type(RECORD)}
    prod = sorted(harness.stack_reference_outputs("acme/redcap/prod")["nameServers"])
    dev = sorted(harness.stack_reference_outputs("acme/redcap/dev")["nameServers"])
    assert records == {
        "redcap.example.org": {"zoneId": "ZPARENTACCOUNT", "name": "redcap.example.org", "type": "NS",
                               "ttl": 1800, "records": prod},
        "redcap-test.example.org": {"zoneId": "ZPARENTACCOUNT", "name": "redcap-test.example.org", "type": "NS",
                                    "ttl": 1800, "records": prod},
        "redcap-dev.example.org": {"zoneId": "ZPARENTACCOUNT", "name": "redcap-dev.example.org", "type": "NS",
                                   "ttl": 1800, "records": dev},
        "survey.lab.example.org": {"zoneId": "ZPARENTACCOUNT", "name": "survey.lab.example.org", "type": "NS",
                                   "ttl": 1800, "records": ["ns-a.example.net", "ns-b.example.net"]},
    }
    # One reference per stack, however many records read it.
    assert sorted((r.type, r.name) for r in run.reads) == [(STACK_REFERENCE, "acme/redcap/dev"),
                                                          (STACK_REFERENCE, "acme/redcap/prod")]


def test_prod_file_with_delegation_also_creates_nothing_else() -> None:
    run, _ = run_delegation("prod")
    assert {r.type for r in run.resources} == {"redcap:delegation:NsDelegation", RECORD}
    assert {r.type for r in run.reads} == {STACK_REFERENCE}


def test_app_stack_exports_what_the_delegation_stack_reads() -> None:
    run = harness.run_program("prod")
    assert delegation.NAME_SERVERS_OUTPUT in run.outputs
    assert run.outputs[delegation.NAME_SERVERS_OUTPUT] == sorted(run.one("aws:route53/zone:Zone").outputs["nameServers"])


def test_logical_names_are_unique_per_label() -> None:
    assert delegation.logical_name("survey.lab") == "ns-survey-lab"
    assert delegation.record_name("redcap", "example.org") == "redcap.example.org"
