"""docs/domains.md, followed literally: every `bash` block of a section is run in order against
the committed stack files under mocks (`pulumi config set/rm` change the config, `pulumi up`
runs the program, `pulumi stack output` must name an output of the last run, `pulumi stack
init` takes the section's stack file from its `yaml` block). What each sequence must leave
behind is checked after it."""
from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

import harness
from settings import SettingsError

DOC = Path(__file__).resolve().parent.parent / "docs" / "domains.md"
RECORD = "aws:route53/record:Record"
SITE_RECORD = "redcap:dns:SiteRecord"
CERT_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
ASSOCIATION = "aws:apprunner/customDomainAssociation:CustomDomainAssociation"
KSK = "aws:route53/keySigningKey:KeySigningKey"
SIGNING = "aws:route53/hostedZoneDnsSec:HostedZoneDnsSec"
# Commands of the operator's own, outside Pulumi (checks, not changes).
OPERATOR_CHECKS = ("dig",)


def sections() -> dict[str, tuple[list[str], dict[str, dict[str, Any]]]]:
    """Heading -> (commands of its bash blocks in order, stack name -> config of its
    `# Pulumi.<stack>.yaml` blocks)."""
    found: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {}
    for part in re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        commands = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S)
                    for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        files = {m.group(1): yaml.safe_load(block)["config"] for block in re.findall(r"```yaml\n(.*?)```", body, flags=re.S)
                 if (m := re.match(r"# Pulumi\.(\w+)\.yaml", block))}
        found[title.strip()] = (commands, files)
    return found


@dataclass
class Operator:
    """The stacks as the commands leave them."""

    stack_files: dict[str, dict[str, Any]]  # stacks initialised from a yaml block: their config
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[tuple[str, harness.StackRun]] = field(default_factory=list)

    def last(self, stack: str) -> harness.StackRun:
        return next(run for name, run in reversed(self.runs) if name == stack)

    def config_of(self, stack: str, key: str) -> Any:
        if key in self.overrides.get(stack, {}):
            return self.overrides[stack][key]
        config, _ = harness.load_stack_config(stack)
        raw = config.get(f"redcap:{key}")
        return yaml.safe_load(raw) if raw is not None else None

    def run(self, command: str) -> None:
        words = shlex.split(command)
        assert words[0] in ("pulumi", *OPERATOR_CHECKS), f"docs/domains.md runs an unknown command: {command}"
        if words[0] != "pulumi":
            return
        stack = words[words.index("-s") + 1] if "-s" in words else None
        args = [w for i, w in enumerate(words[1:], 1) if w != "-s" and words[i - 1] != "-s"]
        match args:
            case ["config", "set", *rest]:
                path = rest[0] == "--path"
                key, value = rest[1:] if path else rest
                self.set(stack, key, value, path)
            case ["config", "rm", key]:
                self.overrides.setdefault(stack, {})[key.removeprefix("redcap:")] = None
            case ["up"]:
                assert stack is not None
                self.runs.append((stack, harness.run_program(
                    stack, {**self.stack_files.get(stack, {}), **self.overrides.get(stack, {})})))
            case ["stack", "output", name]:
                assert name in self.last(stack).outputs, f"{command}: the last `pulumi up` exported no {name}"
            case ["stack", "init", name]:
                assert name in self.stack_files, f"{command}: the section shows no Pulumi.{name}.yaml"
            case _:
                raise AssertionError(f"docs/domains.md runs a pulumi command this walk does not know: {command}")

    def set(self, stack: str | None, key: str, value: str, path: bool) -> None:
        assert stack is not None and key.startswith("redcap:"), key
        top, *nested = key.removeprefix("redcap:").split(".")
        if not path:
            self.overrides.setdefault(stack, {})[top] = value
            return
        current = copy.deepcopy(self.config_of(stack, top)) or {}
        target = current
        for part in nested[:-1]:
            target = target.setdefault(part, {})
        target[nested[-1]] = value
        self.overrides.setdefault(stack, {})[top] = current


def walk(title: str, monkeypatch: pytest.MonkeyPatch, start: dict[str, Any] | None = None) -> Operator:
    commands, files = sections()[title]
    assert commands, f"docs/domains.md: no commands under '## {title}'"
    operator = Operator(stack_files=files, overrides={"prod": dict(start or {})})
    # A StackReference reads the referenced stack's last outputs.
    monkeypatch.setattr(harness, "stack_reference_outputs",
                        lambda ref: dict(operator.last(ref.rsplit("/", 1)[-1]).outputs))
    for command in commands:
        operator.run(command)
    return operator


def prod_runs(operator: Operator) -> list[harness.StackRun]:
    return [run for name, run in operator.runs if name == "prod"]


def waits_for_dns(run: harness.StackRun) -> bool:
    return bool(run.of_type(CERT_VALIDATION) or run.of_type(ASSOCIATION))


def serves_the_fqdn(run: harness.StackRun, zone_id: str, fqdn: str = "redcap.example.org") -> bool:
    site = run.named("redcap-site", RECORD)
    return (site.parent == run.one(SITE_RECORD).urn and site.inputs["zoneId"] == zone_id
            and site.inputs["name"] == fqdn and run.outputs["siteUrl"] == f"https://{fqdn}")


def new_zone_id(run: harness.StackRun) -> str:
    return run.one("aws:route53/zone:Zone").outputs["zoneId"]


def check_new_zone(operator: Operator) -> None:
    first, second = prod_runs(operator)
    assert not waits_for_dns(first) and not first.of_type(SITE_RECORD) and first.outputs["nameServers"]
    # Signed from phase two (Route53 signs only a delegated zone); the DS is the parent operator's to publish.
    assert not first.of_type(KSK) and "dsRecord" not in first.outputs
    assert second.one(KSK) and second.outputs["dsRecord"] and not ds_records(second)
    assert serves_the_fqdn(second, new_zone_id(second))


def check_existing_zone(operator: Operator) -> None:
    (run,) = prod_runs(operator)
    assert not run.of_type("aws:route53/zone:Zone")
    assert serves_the_fqdn(run, "ZEXISTINGZONE", "example.org")


def check_child_zone(operator: Operator) -> None:
    (run,) = prod_runs(operator)
    delegation = run.named("redcap-delegation", RECORD)
    assert delegation.inputs["records"] == run.outputs["nameServers"]
    # prod signs its zone: the DS record goes next to the NS delegation, in the parent.
    assert [(r.inputs["zoneId"], r.inputs["name"]) for r in ds_records(run)] == [
        (delegation.inputs["zoneId"], "redcap.example.org")]
    assert delegation.urn in run.one(CERT_VALIDATION).dependencies
    assert serves_the_fqdn(run, new_zone_id(run))


def check_no_route53(operator: Operator) -> None:
    (run,) = prod_runs(operator)
    assert run.of_type(RECORD) == [] and not run.of_type(SITE_RECORD)
    assert run.one("aws:ecs/service:Service") and run.outputs["loadBalancerUrl"].startswith("https://")


def check_dnssec_off(operator: Operator) -> None:
    withdrawn, off = prod_runs(operator)
    assert withdrawn.one(KSK) and withdrawn.one(SIGNING) and not ds_records(withdrawn)
    assert not off.of_type(KSK) and not off.of_type(SIGNING)
    assert off.one("aws:route53/queryLog:QueryLog")  # query logging is a setting of its own


def ds_records(run: harness.StackRun) -> list[harness.Recorded]:
    return [r for r in run.of_type(RECORD) if r.inputs["type"] == "DS"]


def check_delegation_stack(operator: Operator) -> None:
    first, second = prod_runs(operator)
    assert not waits_for_dns(first)
    ns = {r.inputs["name"]: r.inputs["records"] for r in operator.last("dns").of_type(RECORD)}
    assert ns["redcap.example.org"] == first.outputs["nameServers"]
    assert serves_the_fqdn(second, new_zone_id(second))


def check_upgrade(operator: Operator) -> None:
    (run,) = prod_runs(operator)
    assert serves_the_fqdn(run, new_zone_id(run)) and run.one(CERT_VALIDATION)


# Heading -> (config the stage has before the section's first command, what must hold after).
WALKS: dict[str, tuple[dict[str, Any], Callable[[Operator], None]]] = {
    "Mode `true`: a new zone you delegate": ({}, check_new_zone),
    "Mode `<zone name>` without subdomain: records in an existing zone": ({}, check_existing_zone),
    "Mode `<zone name>` with subdomain: a delegated child zone": ({}, check_child_zone),
    "Mode `false`: no Route53": ({}, check_no_route53),
    "The delegation-only stack (parent zone in another account)": ({}, check_delegation_stack),
    # prod as a signed child zone, its DS in the parent.
    "DNSSEC and query logging": ({"hostInRoute53": "example.org", "zoneDelegated": None}, check_dnssec_off),
    # A stage deployed before zoneDelegated existed has none.
    "Upgrading a stage deployed before `zoneDelegated` existed": ({"zoneDelegated": None}, check_upgrade),
}


@pytest.mark.parametrize("title", sorted(WALKS))
def test_the_documented_sequence_works(title: str, monkeypatch: pytest.MonkeyPatch) -> None:
    start, check = WALKS[title]
    check(walk(title, monkeypatch, start))


def test_every_section_with_commands_is_walked() -> None:
    assert sorted(t for t, (commands, _) in sections().items() if commands) == sorted(WALKS)


def test_the_upgrade_stops_with_the_documented_message() -> None:
    quoted = re.search(r"with `(redcap:zoneDelegated = null: allowed: required with\s+hostInRoute53: true) \.\.\.`",
                       DOC.read_text())
    assert quoted, "docs/domains.md no longer quotes the upgrade message"
    with pytest.raises(SettingsError) as err:
        harness.run_program("prod", {"zoneDelegated": None})
    assert " ".join(quoted.group(1).split()) in str(err.value)
