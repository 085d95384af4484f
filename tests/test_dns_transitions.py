"""What `pulumi up` does to the site's DNS when a stage changes (tests/transitions.py derives the
engine's steps and AWS's collisions): a runtime switch in every direction, phase one -> phase two
of a new zone, a domain added to a stage without one, and the upgrade of stacks deployed when App
Runner and ECS each wrote the site record themselves.

The provider deletes a record by zone, name and type, whatever created it (terraform-provider-aws
internal/service/route53/record.go), so two URNs for one name, the old one deleted last, remove
the live record: what a runtime switch used to do. A record's `name` and `zone_id` force a
replacement; a change of `type` is an update in place (one change batch: DELETE the old record
set, CREATE the new one).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import Recorded, StackRun
from transitions import Transition, run_transition, transition

RECORD = "aws:route53/record:Record"
SITE = (RECORD, "redcap-site")
SITE_RECORD = "redcap:dns:SiteRecord"
SERVICE, ASSOCIATION = "aws:apprunner/service:Service", "aws:apprunner/customDomainAssociation:CustomDomainAssociation"
CERT, CERT_VALIDATION = "aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation"
LB, LISTENER, ECS_SERVICE = "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener", "aws:ecs/service:Service"
EXPRESS_SERVICE, DISTRIBUTION = "aws:ecs/expressGatewayService:ExpressGatewayService", "aws:cloudfront/distribution:Distribution"
# Everything a user's request to the site passes through, and the records that prove the name.
SITE_TYPES = {RECORD, "aws:route53/zone:Zone", CERT, CERT_VALIDATION, SERVICE, ASSOCIATION, LB, LISTENER, ECS_SERVICE,
              EXPRESS_SERVICE, DISTRIBUTION}
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "site-record-before.json").read_text())
DELEGATED = {"zoneDelegated": True}
APP_RUNNER = {"ecs": None}
# The runtimes on prod's stack file (ECS), and what of each goes when the stage moves away from
# it; a certificate for the stack's region serves ECS and Express alike (prod is in us-east-1).
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


def types_of(keys: set[tuple[str, str]]) -> set[str]:
    return {type_ for type_, _ in keys if type_ in SITE_TYPES}


def record(run: StackRun, name: str) -> Recorded:
    return run.named(name, RECORD)


def assert_site_record_stays(t: Transition) -> None:
    """The one site record is updated in place: never created, replaced or deleted."""
    assert SITE in t.updates and SITE not in t.creates | t.replaces | t.deletes, t.describe()
    change = t.change(*SITE)
    assert change.kind == "update" and not {"name", "zoneId"} & set(change.keys), change


# --- runtime switch ---------------------------------------------------------------------------

@pytest.mark.parametrize("source, target", SWITCHES, ids=[f"{a}-to-{b}" for a, b in SWITCHES])
def test_a_runtime_switch_updates_the_one_site_record_in_place(source: str, target: str) -> None:
    t = run_transition("prod", {**DELEGATED, **RUNTIMES[source]}, {**DELEGATED, **RUNTIMES[target]})
    t.assert_safe()  # no refused step, no collision of physical names (Route53 zone/name/type among them)
    assert_site_record_stays(t)
    assert "aliases" in t.change(*SITE).keys  # the alias target moves to the other runtime
    # The old runtime goes (deletes run last); nothing that still serves the site does.
    assert types_of(t.deletes) == GONE[source, target]
    deleted = [t.before.named(name, RECORD).inputs["name"] for type_, name in t.deletes if type_ == RECORD]
    assert "redcap.example.org" not in deleted


# --- phases and enabling a domain ------------------------------------------------------------

def test_phase_one_to_phase_two_only_adds() -> None:
    t = run_transition("prod", {}, DELEGATED)
    t.assert_safe()
    assert t.deletes == set() and t.replaces == set()
    assert {CERT, CERT_VALIDATION, LB, ECS_SERVICE, RECORD} <= types_of(t.creates)
    assert (SITE_RECORD, "redcap") in t.creates and SITE in t.creates


@pytest.mark.parametrize("runtime, serves", [({"express": None}, {ASSOCIATION}), ({}, {CERT, CERT_VALIDATION})],
                         ids=["app-runner", "express"])
def test_enabling_a_domain_deletes_nothing_that_serves_the_site(runtime: dict, serves: set[str]) -> None:
    domain = {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True, **runtime}
    first = run_transition("dev", runtime, {**domain, "zoneDelegated": False})
    first.assert_safe()
    assert types_of(first.deletes) == set() and types_of(first.replaces) == set()
    assert "aws:route53/zone:Zone" in types_of(first.creates)
    assert not serves & types_of(first.creates) and SITE not in first.creates
    second = run_transition("dev", {**domain, "zoneDelegated": False}, {**domain, "zoneDelegated": True})
    second.assert_safe()
    assert second.deletes == set() and second.replaces == set()
    assert serves <= types_of(second.creates) and SITE in second.creates


# --- upgrading stacks whose runtime owned the site record -------------------------------------

UPGRADES = [
    ("ecs", DELEGATED, "redcap:ecs:FargateService"),
    ("apprunner-apex", {**DELEGATED, **APP_RUNNER}, "redcap:apprunner:AppRunnerService"),
    ("apprunner-below-apex", {"domain": "redcap.example.org", "hostInRoute53": "example.org", "express": None},
     "redcap:apprunner:AppRunnerService"),
]


def as_released(run: StackRun, stage: str, owner_type: str) -> StackRun:
    """The state of the same stage deployed by the previous program: no SiteRecord component, the
    site record a `redcap-site` child of the runtime, and every Route53 record of the runtime and
    the site with the inputs that program wrote (tests/fixtures/site-record-before.json)."""
    old = {r["urn"].rsplit("::", 1)[1]: r for r in BEFORE[stage]["resources"]
           if "$aws:route53/record:Record::" in r["urn"] and r["urn"].split("::")[2].startswith(owner_type)}
    owner = next(r for r in run.resources if r.type == owner_type)
    resources = []
    for r in run.resources:
        if r.type == SITE_RECORD:
            continue
        if r.type == RECORD and r.name in old:
            parent = owner.urn if r.name == "redcap-site" else r.parent
            urn = f"{r.urn.split('::')[0]}::{r.urn.split('::')[1]}::{owner_type}${RECORD}::{r.name}" \
                if r.name == "redcap-site" else r.urn
            r = dataclasses.replace(r, urn=urn, parent=parent, aliases=[], inputs=old[r.name]["inputs"])
        resources.append(r)
    return dataclasses.replace(run, resources=resources)


@pytest.mark.parametrize("stage, overrides, owner", UPGRADES, ids=[u[0] for u in UPGRADES])
def test_upgrading_moves_the_live_site_record_to_site_record_without_deleting_it(
        stage: str, overrides: dict, owner: str) -> None:
    after = harness.cached_run(BEFORE[stage]["stack"], overrides)
    before = as_released(after, stage, owner)
    t = transition(before, after)
    t.assert_safe()
    assert_site_record_stays(t)
    # Nothing that serves or proves the name is created anew, replaced or deleted.
    assert types_of(t.creates) == types_of(t.replaces) == types_of(t.deletes) == set()
    old, new = record(before, "redcap-site").inputs, record(after, "redcap-site").inputs
    assert (old["zoneId"], old["name"]) == (new["zoneId"], new["name"]) and new["type"] == "A"
    assert old["type"] == ("CNAME" if stage == "apprunner-below-apex" else "A")  # CNAME -> A: one change batch
    assert (old["allowOverwrite"], new["allowOverwrite"]) == (True, False)
    # App Runner's validation records keep their URNs and names (sorted as before).
    for index in range(2 if owner.startswith("redcap:apprunner") else 0):
        name = f"redcap-domain-validation-{index}"
        assert record(before, name).inputs["name"] == record(after, name).inputs["name"]
        assert (RECORD, name) not in t.creates | t.replaces | t.deletes


def test_the_planner_sees_the_failure_the_old_program_had() -> None:
    """The previous program's App Runner -> ECS switch: a second URN for the site's name, and the
    first one's delete at the end removes the record the second one wrote."""
    app_runner = as_released(harness.cached_run("prod", {**DELEGATED, **APP_RUNNER}), "apprunner-apex",
                             "redcap:apprunner:AppRunnerService")
    ecs = as_released(harness.cached_run("prod", DELEGATED), "ecs", "redcap:ecs:FargateService")
    t = transition(app_runner, ecs)
    site_collisions = [c for c in t.collisions if c.identity[0] == "route53-record" and "redcap.example.org" in c.identity]
    assert site_collisions, t.describe()
    assert any("AppRunnerService" in urn for c in site_collisions for urn in c.urns)
    assert any("FargateService" in urn for c in site_collisions for urn in c.urns)
