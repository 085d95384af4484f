"""Stages deployed side by side into one account and region never share a physical identity, except
the deliberately shared ones in SHARED, each with the reason why sharing is safe (checked).

The stages are every committed stack and every generated variant (tests/variants.py), each run
under a stack name of its own (a copy of Pulumi.dev.yaml named `dev-tunnel` is a stage
`dev-tunnel`), plus stages whose long names agree in their first 25+ characters (AWS length limits
cut names). Stages of one account serve different sites: a variant whose site name an earlier
stage already serves gets a name of its own (one FQDN is one site, whatever the stage).
Each stage is evaluated once; pairs are compared in Python.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Callable, Optional

from harness import Recorded, StackRun, cached_run, load_stack_config, unwrap_secrets
from transitions import Identity, destroy, engine_view, format_identity, physical_identities, transition
from variants import VARIANTS

SES_IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
ADDRESS = "redcap-admin@example.org"

# Long stage names that agree in their first 30 characters (App Runner allows 40, 32 for its
# auto-scaling configurations; load balancers 32).
LONG_NAMES = ("research-production-frankfurt-1", "research-production-frankfurt-2")


def _fqdn(config: dict[str, str]) -> Optional[str]:
    domain, sub = config.get("redcap:domain"), config.get("redcap:subdomain")
    if not domain:
        return None
    return f"{sub}.{domain}" if sub else domain


def _own_site(stage: str, config: dict[str, str]) -> dict[str, Any]:
    """Overrides that give a stage a site name of its own, in the same hostInRoute53 mode."""
    if config.get("redcap:subdomain"):
        return {"subdomain": f"{config['redcap:subdomain']}-{stage}"}
    return {"domain": f"{stage}.{config['redcap:domain']}"}


def stages() -> list[tuple[str, str, dict[str, Any]]]:
    """(stage name, stack file, overrides) of every stage deployed into the one account."""
    wanted = [(vid, stack, overrides) for vid, stack, overrides in VARIANTS]
    wanted += [(LONG_NAMES[0], "dev", {}), (LONG_NAMES[1], "dev", {}),
               (LONG_NAMES[0] + "-e", "prod", {}), (LONG_NAMES[1] + "-e", "prod", {})]
    sites: set[str] = set()
    found = []
    for stage, stack, overrides in wanted:
        config, _ = load_stack_config(stack, overrides)
        fqdn = _fqdn(config)
        if fqdn in sites and not config.get("redcap:nsDelegation"):
            overrides = {**overrides, **_own_site(stage, config)}
            fqdn = _fqdn(load_stack_config(stack, overrides)[0])
        if fqdn:
            sites.add(fqdn)
        found.append((stage, stack, overrides))
    return found


STAGES = stages()


def stage_run(stage: str, stack: str, overrides: dict[str, Any]) -> StackRun:
    return cached_run(stack, overrides, stack_name=stage)


# --- the deliberately shared identities -------------------------------------------------------------

def _retained(run: StackRun, r: Recorded) -> bool:
    index = {x.urn: x for x in engine_view(run).resources}
    urn = r.urn
    while urn in index:
        if index[urn].retain_on_delete is not None:
            return bool(index[urn].retain_on_delete)
        urn = index[urn].parent
    return False


def _shared_address_identity_is_safe(owners: list[tuple[StackRun, Recorded]]) -> list[str]:
    problems = []
    for run, r in owners:
        if not _retained(run, r):
            problems.append(f"{run.stack}: {r.name} is deleted with its stage (retainOnDelete not set)")
        if unwrap_secrets(r.inputs.get("configurationSetName")):
            problems.append(f"{run.stack}: {r.name} uses configuration set {r.inputs['configurationSetName']}, "
                            "which is deleted with that stage")
    return problems


@dataclass(frozen=True)
class Shared:
    name: str
    matches: Callable[[Identity], bool]
    why: str
    safe: Callable[[list[tuple[StackRun, Recorded]]], list[str]]


SHARED: tuple[Shared, ...] = (
    Shared(
        name="SES address identity of redcap:email",
        matches=lambda identity: identity[0] == "ses-identity" and "@" in str(identity[2]),
        why=("An e-mail address cannot carry the stage: redcap:email is one mailbox for every stage, and SES "
             "keeps one identity per address, account and region. Each stage that creates it keeps it on "
             "destroy (retainOnDelete), so destroying one stage never deletes another stage's sender, and none "
             "attaches its configuration set (deleted with that stage, after which SES rejects every message "
             "from the identity). The first stage creates it; every further stage names it in "
             "externalResources.sesIdentity and creates nothing, so its first `pulumi up` does not fail with "
             "AlreadyExists (docs/email.md; test_a_second_stage_sends_with_the_existing_identity)."),
        safe=_shared_address_identity_is_safe,
    ),
)


def _owners(run: StackRun, identity: Identity) -> list[Recorded]:
    urns = physical_identities(run)[identity]
    return [r for r in engine_view(run).resources if r.urn in urns]


def test_stages_have_distinct_names_and_sites() -> None:
    names = [s for s, _, _ in STAGES]
    assert len(set(names)) == len(names)
    sites = [_fqdn(load_stack_config(stack, overrides)[0]) for _, stack, overrides in STAGES]
    served = [s for s in sites if s]
    assert len(set(served)) == len(served), "two stages serve one site name"


def test_two_stages_in_one_account_share_no_physical_identity() -> None:
    runs = {stage: stage_run(stage, stack, overrides) for stage, stack, overrides in STAGES}
    identities = {stage: physical_identities(run) for stage, run in runs.items()}
    problems: dict[str, set[str]] = {}
    allowed_seen: set[str] = set()
    for a, b in combinations(runs, 2):
        for identity in sorted(set(identities[a]) & set(identities[b]), key=repr):
            rule = next((s for s in SHARED if s.matches(identity)), None)
            label = format_identity(identity)
            if rule is None:
                problems.setdefault(label, set()).add(f"{a} + {b}")
                continue
            allowed_seen.add(rule.name)
            owners = [(runs[s], r) for s in (a, b) for r in _owners(runs[s], identity)]
            for problem in rule.safe(owners):
                problems.setdefault(f"{label} (shared: {rule.name})", set()).add(problem)
    assert not problems, "physical identities two stages would both own:\n" + "\n".join(
        f"  {label}: {', '.join(sorted(where))}" for label, where in sorted(problems.items()))
    # Every allow-list entry is needed: a stale one would hide nothing but mislead.
    assert allowed_seen == {s.name for s in SHARED}


def test_long_stage_names_keep_distinct_physical_names() -> None:
    def names(run: StackRun) -> dict[str, str]:
        keys = ("serviceName", "vpcConnectorName", "autoScalingConfigurationName", "name")
        return {r.type: next(unwrap_secrets(r.inputs[k]) for k in keys if r.inputs.get(k))
                for r in run.resources if r.type.startswith(("aws:apprunner/service", "aws:apprunner/vpc",
                                                             "aws:apprunner/auto", "aws:lb/loadBalancer"))}
    apprunner = [names(stage_run(s, "dev", {"express": None})) for s in LONG_NAMES]
    alb = [names(stage_run(s + "-e", "prod", {"zoneDelegated": True})) for s in LONG_NAMES]
    for a, b in (apprunner, alb):
        assert a.keys() == b.keys() and a
        for type_ in a:
            limit = 32 if type_.startswith(("aws:lb/", "aws:apprunner/autoScaling")) else 40
            assert a[type_] != b[type_] and len(a[type_]) <= limit and len(b[type_]) <= limit, (a[type_], b[type_])


def test_cut_names_keep_a_hash_of_the_stack_name() -> None:
    from components.naming import stage_name

    assert stage_name("prod", 32) == "redcap-prod"
    assert stage_name("qa_1", 40, allowed=r"A-Za-z0-9_-") == "redcap-qa_1"
    cut = [stage_name(s, 32, lower=True) for s in ("Research-Production-East-1", "research-production-east-2")]
    assert cut == ["redcap-research-productio-" + hashlib.sha256(b"Research-Production-East-1").hexdigest()[:6],
                   "redcap-research-productio-" + hashlib.sha256(b"research-production-east-2").hexdigest()[:6]]
    assert all(len(c) == 32 for c in cut)
    assert stage_name("a" * 24 + "-", 32) == "redcap-" + "a" * 24  # no trailing hyphen


def test_a_second_stage_sends_with_the_existing_identity() -> None:
    owner = stage_run("dev", "dev", {})
    second = stage_run("dev-second", "dev", {"externalResources": {"sesIdentity": ADDRESS}})
    assert [r.inputs["emailIdentity"] for r in owner.of_type(SES_IDENTITY)] == [ADDRESS]
    assert second.of_type(SES_IDENTITY) == []
    assert set(physical_identities(owner)).isdisjoint(physical_identities(second))
    arn = f"arn:aws:ses:us-east-1:123456789012:identity/{ADDRESS}"
    policy = json.loads(second.one("aws:iam/userPolicy:UserPolicy", "smtp").inputs["policy"])
    assert policy["Statement"][0]["Resource"] == [arn]
    assert (second.outputs["senderAddress"], second.outputs["sesIdentityArn"]) == (ADDRESS, arn)


def test_destroying_the_owner_keeps_the_shared_sender() -> None:
    owner = stage_run("dev", "dev", {})
    t = destroy(owner)
    assert (SES_IDENTITY, "redcap-address") in t.discards
    assert (SES_IDENTITY, "redcap-address") not in t.deletes
    # And a later `pulumi up` of the owner no longer creates it: it names it like any other stage.
    again = stage_run("dev", "dev", {"externalResources": {"sesIdentity": ADDRESS}})
    assert transition(owner, again).discards == {(SES_IDENTITY, "redcap-address")}
