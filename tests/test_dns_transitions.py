"""What `pulumi up` does to the site's DNS when a stage changes: a runtime switch both ways,
phase one -> phase two of a new zone, a domain added to a stage without one, and the upgrade of
stacks deployed when App Runner and ECS each wrote the site record themselves.

The plan is derived the way the engine works: resources are matched by URN or by one of the new
resource's aliases; unmatched new ones are created, unmatched old ones deleted after every
create and update; a Route53 record whose name or zone changes is replaced (create first,
delete last); any other change to a record is an update in place (the provider UPSERTs, or
DELETEs and CREATEs in one change batch when the type changes). The provider deletes a record by
zone, name and type, whatever created it (terraform-provider-aws
internal/service/route53/record.go), so a delete whose (zone, name, type) a live record holds
after the update removes that live record: the failure that a runtime switch used to cause.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pytest

import harness

RECORD = "aws:route53/record:Record"
SITE_RECORD = "redcap:dns:SiteRecord"
# Everything a user's request to the site passes through, and the records that prove the name.
SERVICE, ASSOCIATION = "aws:apprunner/service:Service", "aws:apprunner/customDomainAssociation:CustomDomainAssociation"
CERT, CERT_VALIDATION = "aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation"
LB, LISTENER, ECS_SERVICE = "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener", "aws:ecs/service:Service"
EXPRESS_SERVICE, DISTRIBUTION = "aws:ecs/expressGatewayService:ExpressGatewayService", "aws:cloudfront/distribution:Distribution"
SITE_TYPES = {RECORD, "aws:route53/zone:Zone", CERT, CERT_VALIDATION, SERVICE, ASSOCIATION, LB, LISTENER, ECS_SERVICE,
              EXPRESS_SERVICE, DISTRIBUTION}
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "site-record-before.json").read_text())
DELEGATED = {"zoneDelegated": True}
APP_RUNNER = {"ecs": None}
# The runtimes on prod's stack file (ECS), and what of each goes when the stage moves away from it:
# a certificate for the stack's region serves ECS and Express alike (prod is in us-east-1).
RUNTIMES = {"app-runner": APP_RUNNER, "ecs": {}, "express": {"ecs": None, "express": {}}}
GONE = {
    ("app-runner", "ecs"): {SERVICE, ASSOCIATION, RECORD},
    ("app-runner", "express"): {SERVICE, ASSOCIATION, RECORD},
    ("ecs", "app-runner"): {CERT, CERT_VALIDATION, RECORD, LB, LISTENER, ECS_SERVICE},
    ("ecs", "express"): {LB, LISTENER, ECS_SERVICE},
    ("express", "app-runner"): {CERT, CERT_VALIDATION, RECORD, EXPRESS_SERVICE, DISTRIBUTION},
    ("express", "ecs"): {EXPRESS_SERVICE, DISTRIBUTION},
}
SWITCHES = sorted(GONE)


@dataclass(frozen=True)
class State:
    """What a stack holds after an update: URN -> (type, inputs)."""

    resources: dict[str, tuple[str, dict[str, Any]]]
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def of_run(run: harness.StackRun) -> "State":
        return State({r.urn: (r.type, r.inputs) for r in run.resources},
                     {r.urn: r.aliases for r in run.resources if r.aliases})

    @staticmethod
    def of_fixture(stage: str) -> "State":
        return State({r["urn"]: (r["type"], r.get("inputs", {})) for r in BEFORE[stage]["resources"]})


def identity(inputs: dict[str, Any]) -> tuple[str, str, str]:
    """How Route53 (and the provider's delete) finds a record."""
    return inputs["zoneId"], str(inputs["name"]).rstrip(".").lower(), inputs["type"]


@dataclass
class Plan:
    creates: list[str]
    updates: dict[str, str]  # new URN -> old URN (the same, or an alias), inputs changed
    replaces: dict[str, str]
    deletes: list[str]
    moved: dict[str, str]  # new URN -> old URN matched through an alias
    after: State
    before: State

    def of_types(self, urns: Iterable[str], state: State, types: set[str] = SITE_TYPES) -> list[str]:
        return sorted(u for u in urns if state.resources[u][0] in types)

    def deleted_live_records(self) -> list[tuple[str, tuple[str, str, str]]]:
        """Deletes (and the delete half of replacements) that hit a record the stack holds after."""
        live = {identity(inputs) for _, (type_, inputs) in self.after.resources.items() if type_ == RECORD}
        gone = [*self.deletes, *self.replaces.values()]
        return sorted((urn, identity(self.before.resources[urn][1])) for urn in gone
                      if self.before.resources[urn][0] == RECORD
                      and identity(self.before.resources[urn][1]) in live)

    def created_over_existing(self) -> list[tuple[str, tuple[str, str, str]]]:
        """Creates (and the create half of replacements) of a record whose name another URN still
        holds at that moment: Route53 refuses them, or with allow_overwrite they take it over."""
        held = {identity(inputs): urn for urn, (type_, inputs) in self.before.resources.items() if type_ == RECORD}
        new = [*self.creates, *self.replaces]
        return sorted((urn, identity(self.after.resources[urn][1])) for urn in new
                      if self.after.resources[urn][0] == RECORD and identity(self.after.resources[urn][1]) in held
                      and held[identity(self.after.resources[urn][1])] != self.replaces.get(urn))


def plan(before: State, after: State) -> Plan:
    creates, deletes = [], set(before.resources)
    updates, replaces, moved = {}, {}, {}
    for urn, (type_, inputs) in after.resources.items():
        old: Optional[str] = urn if urn in before.resources else next(
            (a for a in after.aliases.get(urn, []) if a in before.resources), None)
        if old is None:
            creates.append(urn)
            continue
        deletes.discard(old)
        if old != urn:
            moved[urn] = old
        old_inputs = before.resources[old][1]
        if type_ == RECORD and old_inputs and (old_inputs["name"] != inputs["name"]
                                               or old_inputs["zoneId"] != inputs["zoneId"]):
            replaces[urn] = old
        elif old_inputs and old_inputs != inputs:
            updates[urn] = old
    return Plan(sorted(creates), updates, replaces, sorted(deletes), moved, after, before)


def transition(stack: str, before: dict[str, Any], after: dict[str, Any]) -> Plan:
    return plan(State.of_run(harness.cached_run(stack, before)), State.of_run(harness.cached_run(stack, after)))


def site(state: State) -> tuple[str, dict[str, Any]]:
    (urn, (_, inputs)), = [(u, v) for u, v in state.resources.items()
                           if v[0] == RECORD and u.endswith("$aws:route53/record:Record::redcap-site")]
    return urn, inputs


# --- runtime switch ---------------------------------------------------------------------------

@pytest.mark.parametrize("source, target", SWITCHES, ids=[f"{a}-to-{b}" for a, b in SWITCHES])
def test_a_runtime_switch_updates_the_one_site_record_in_place(source: str, target: str) -> None:
    moving = transition("prod", {**DELEGATED, **RUNTIMES[source]}, {**DELEGATED, **RUNTIMES[target]})
    old_urn, old = site(moving.before)
    new_urn, new = site(moving.after)
    assert old_urn == new_urn and moving.updates[new_urn] == old_urn
    assert identity(old) == identity(new) == (identity(old)[0], "redcap.example.org", "A")
    assert old["aliases"] != new["aliases"]  # the alias target moves to the other runtime
    assert moving.deleted_live_records() == [] and moving.created_over_existing() == []
    # The old runtime goes; nothing that still serves the site does.
    gone = {moving.before.resources[u][0] for u in moving.of_types(moving.deletes, moving.before)}
    assert gone == GONE[source, target]
    deleted_records = [moving.before.resources[u][1]["name"] for u in moving.deletes
                       if moving.before.resources[u][0] == RECORD]
    assert "redcap.example.org" not in deleted_records


# --- phases and enabling a domain ------------------------------------------------------------

def test_phase_one_to_phase_two_only_adds() -> None:
    delegated = transition("prod", {}, DELEGATED)
    assert delegated.deletes == [] and delegated.replaces == {} and delegated.moved == {}
    created = {delegated.after.resources[u][0] for u in delegated.creates}
    assert {"aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation",
            "aws:lb/loadBalancer:LoadBalancer", "aws:ecs/service:Service", SITE_RECORD} <= created
    assert delegated.created_over_existing() == []


@pytest.mark.parametrize("runtime, serves", [({"express": None}, {ASSOCIATION}), ({}, {CERT, CERT_VALIDATION})],
                         ids=["app-runner", "express"])
def test_enabling_a_domain_deletes_nothing_that_serves_the_site(runtime: dict, serves: set[str]) -> None:
    domain = {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True, **runtime}
    first = transition("dev", runtime, {**domain, "zoneDelegated": False})
    assert first.of_types(first.deletes, first.before) == [] and first.replaces == {}
    assert "aws:route53/zone:Zone" in {first.after.resources[u][0] for u in first.creates}
    assert not {SITE_RECORD, *serves} & {first.after.resources[u][0] for u in first.creates}
    second = transition("dev", {**domain, "zoneDelegated": False}, {**domain, "zoneDelegated": True})
    assert second.of_types(second.deletes, second.before) == [] and second.replaces == {}
    assert second.created_over_existing() == []
    assert {SITE_RECORD, *serves} <= {second.after.resources[u][0] for u in second.creates}


# --- upgrading stacks whose runtime owned the site record -------------------------------------

@pytest.mark.parametrize("stage, overrides, old_type", [
    ("ecs", DELEGATED, "A"),
    ("apprunner-apex", {**DELEGATED, **APP_RUNNER}, "A"),
    ("apprunner-below-apex", {"domain": "redcap.example.org", "hostInRoute53": "example.org", "express": None},
     "CNAME"),
])
def test_upgrading_moves_the_live_site_record_to_site_record_without_deleting_it(
        stage: str, overrides: dict, old_type: str) -> None:
    before = State.of_fixture(stage)
    upgrade = plan(before, State.of_run(harness.cached_run(BEFORE[stage]["stack"], overrides)))
    old_urn, old = site(before)
    new_urn, new = site(upgrade.after)
    assert upgrade.moved == {new_urn: old_urn} and upgrade.updates[new_urn] == old_urn
    assert new_urn.endswith("redcap:dns:SiteRecord$aws:route53/record:Record::redcap-site")
    assert old["type"] == old_type and new["type"] == "A"  # CNAME -> A is one change batch, in place
    assert (old["zoneId"], old["name"]) == (new["zoneId"], new["name"])
    assert (old["allowOverwrite"], new["allowOverwrite"]) == (True, False)
    # Nothing that serves or proves the name is created anew or deleted.
    assert upgrade.of_types(upgrade.deletes, before) == []
    assert upgrade.of_types(upgrade.creates, upgrade.after) == []
    assert upgrade.replaces == {} and upgrade.deleted_live_records() == [] and upgrade.created_over_existing() == []
    # App Runner's validation records keep their URNs and their names (sorted as before).
    for index in range(2 if stage.startswith("apprunner") else 0):
        urn = f"urn:pulumi:{BEFORE[stage]['stack']}::redcap::redcap:apprunner:AppRunnerService$" \
              f"aws:route53/record:Record::redcap-domain-validation-{index}"
        assert identity(before.resources[urn][1]) == identity(upgrade.after.resources[urn][1])


def test_the_planner_sees_the_failure_the_old_program_had() -> None:
    """The old program's App Runner -> ECS switch: two URNs for one name, the old one deleted last."""
    app_runner, ecs = State.of_fixture("apprunner-apex"), State.of_fixture("ecs")
    switch = plan(app_runner, ecs)
    assert [urn for urn, _ in switch.deleted_live_records()] == [
        "urn:pulumi:prod::redcap::redcap:apprunner:AppRunnerService$aws:route53/record:Record::redcap-site"]
    assert [urn for urn, _ in switch.created_over_existing()] == [
        "urn:pulumi:prod::redcap::redcap:ecs:FargateService$aws:route53/record:Record::redcap-site"]
