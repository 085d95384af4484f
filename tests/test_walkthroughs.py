"""The procedures of docs/restore.md, docs/migrating.md, docs/destroy.md and docs/upgrade.md,
followed literally.

Each procedure's commands are read out of the docs themselves: the fenced block after a
`<!-- walkthrough: NAME -->` marker. A small interpreter runs them against simulated stacks:

- `pulumi config set/rm/get` (with `--path` and `--secret`), `cp Pulumi.A.yaml Pulumi.B.yaml`
  and `pulumi stack init` change a stack's settings the way the CLI does;
- `pulumi up` evaluates the program under mocks with those settings and derives what the engine
  would do from the state left by the previous command (tests/transitions.py). The step fails
  when the engine would refuse a delete or a replacement of a protected resource, or when two
  resources claim one AWS name; the state afterwards keeps the old value of every ignored input,
  as the engine does;
- `pulumi destroy` deletes everything in the state, refused for what the state protects;
- `pulumi state unprotect URN` needs the URN in the state, `pulumi stack output NAME` an export;
- `aws`, `yarn` and file copies into releases/ are outside Pulumi: recorded, and their `$(...)`
  results come from the walkthrough's table of values (as do `<placeholders>`).

Anything else in a marked block fails the walkthrough, so a doc cannot show a command the test
does not understand. After every `pulumi up` the invariants below are checked too (a restored
cluster gets IAM authentication before a runtime reaches it).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

import settings
from components.database import restore_suffix
from harness import ROOT, Recorded, Secret, StackRun, cached_run, depends_on, run_program, unwrap_secrets
from transitions import Transition, physical_identities, transition

DOCS = ROOT / "docs"
WALKTHROUGH_DOCS = ("restore.md", "migrating.md", "destroy.md", "upgrade.md")
MARKER = re.compile(r"<!-- walkthrough: ([a-z0-9-]+) -->\s*\n```bash\n(.*?)```", re.S)

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
INVOCATION = "aws:lambda/invocation:Invocation"
KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RUNTIMES = ("aws:ecs/taskDefinition:TaskDefinition", "aws:apprunner/service:Service",
            "aws:ecs/expressGatewayService:ExpressGatewayService", "aws:ec2/instance:Instance")
DATA_TYPES = (CLUSTER, INSTANCE, KEY, BUCKET, SECRET, SECRET_VERSION, "random:index/randomPassword:RandomPassword")

# Inputs the provider declares Optional and Computed: leaving one out keeps the value in the
# state, it is no change (hashicorp/terraform-provider-aws internal/service/rds/cluster.go,
# apply_immediately).
OPTIONAL_COMPUTED = {CLUSTER: ("applyImmediately",)}

OLD_SALT = "Old-stage-salt-0123456789abcdefXYZ"
SNAPSHOT = "redcap-prod-0a1b2c3d-before-upgrade"
SECOND_SNAPSHOT = "redcap-prod-0a1b2c3d-2026-12-01"


# --------------------------------------------------------------------------------------------
# Reading the docs
# --------------------------------------------------------------------------------------------

def doc_blocks() -> dict[str, tuple[str, str]]:
    """NAME -> (doc, the block's text), for every marked block of the walkthrough docs."""
    found: dict[str, tuple[str, str]] = {}
    for doc in WALKTHROUGH_DOCS:
        for name, body in MARKER.findall((DOCS / doc).read_text()):
            assert name not in found, f"walkthrough block {name} is marked twice"
            found[name] = (doc, body)
    return found


def commands(block: str) -> list[str]:
    """The block's command lines: continuation lines joined, comments and blank lines dropped."""
    lines, current = [], ""
    for raw in block.splitlines():
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


# --------------------------------------------------------------------------------------------
# The simulated stacks
# --------------------------------------------------------------------------------------------

class WalkthroughFailed(AssertionError):
    pass


def empty_run(stack: str, config: dict[str, str]) -> StackRun:
    return StackRun(stack=stack, resources=[], outputs={}, secret_outputs=set(), config=config)


def stack_file_config(file: str) -> dict[str, Any]:
    path = ROOT / f"Pulumi.{file}.yaml"
    return copy.deepcopy((yaml.safe_load(path.read_text()) or {}).get("config") or {}) if path.exists() else {}


@dataclass
class Stack:
    name: str
    file: str                        # the Pulumi.<file>.yaml the program reads (its settings)
    config: dict[str, Any]           # every key of the stack file after the commands so far
    secret_keys: set[str] = field(default_factory=set)
    state: Optional[StackRun] = None
    kept: list[Recorded] = field(default_factory=list)   # left in AWS by a destroy (retainOnDelete)
    final_snapshots: list[str] = field(default_factory=list)

    def overrides(self) -> dict[str, Any]:
        base = stack_file_config(self.file)
        out: dict[str, Any] = {key: None for key in base if key not in self.config}
        for key, value in self.config.items():
            out[key] = Secret(value) if key in self.secret_keys else value
        return out


@dataclass
class Step:
    command: str
    transition: Optional[Transition] = None


class Workspace:
    """A project folder with stacks, as an operator's shell sees it."""

    def __init__(self, values: Optional[dict[str, str]] = None, releases: Optional[Path] = None):
        self.values = dict(values or {})     # <placeholders> and $(...) results of commands outside Pulumi
        self.stacks: dict[str, Stack] = {}
        self.files: set[str] = {p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")}
        self.vars: dict[str, str] = {}
        self.steps: list[Step] = []
        self.external: list[str] = []
        self.releases = releases

    # -- setting up ---------------------------------------------------------------------------

    def deployed(self, file: str, name: Optional[str] = None) -> Stack:
        """A stack created from Pulumi.<file>.yaml and brought up, unchanged since: a stack file in
        phase one of a new zone (zoneDelegated false) also through phase two, as docs/domains.md
        does once the zone is delegated, so the stage serves its site."""
        stack = Stack(name=name or file, file=file, config=stack_file_config(file))
        self.stacks[stack.name] = stack
        self.up(stack, "(first pulumi up)")
        if stack.config.get("redcap:zoneDelegated") is False:
            set_config(stack, "redcap:zoneDelegated", "true", path=False, secret=False)
            self.up(stack, "(pulumi up once the zone is delegated)")
        return stack

    # -- running a block ----------------------------------------------------------------------

    def run_block(self, name: str) -> None:
        doc, body = doc_blocks()[name]
        for line in commands(body):
            try:
                self.run_line(line)
            except WalkthroughFailed as err:
                raise WalkthroughFailed(f"{doc} [{name}]: `{line}` fails:\n{err}") from None

    def run_line(self, line: str) -> None:
        line = self._placeholders(line)
        for part in re.split(r"\s+&&\s+", line):
            self._run(part)

    def _placeholders(self, line: str) -> str:
        def value(match: re.Match) -> str:
            key = match.group(0)
            if key not in self.values:
                raise WalkthroughFailed(f"no value for the placeholder {key}")
            return self.values[key]
        return re.sub(r"<[a-z][a-z .-]*[a-z]>", value, line, flags=re.I)

    def _expand(self, text: str, assigning: Optional[str] = None) -> list[str]:
        """Shell words after $(...) and $VAR substitution (results are single words)."""
        results: list[str] = []

        def substitute(match: re.Match) -> str:
            results.append(self._capture(match.group(1), assigning))
            return f"\x00{len(results) - 1}\x00"

        text = re.sub(r"\$\(([^()]*)\)", substitute, text)

        def variable(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name not in self.vars:
                raise WalkthroughFailed(f"${name} is not set")
            results.append(self.vars[name])
            return f"\x00{len(results) - 1}\x00"

        text = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)", variable, text)
        words = shlex.split(text, comments=True)
        return [re.sub(r"\x00(\d+)\x00", lambda m: results[int(m.group(1))], w) for w in words]

    def _capture(self, command: str, assigning: Optional[str]) -> str:
        words = self._expand(command)
        if words[:1] == ["pulumi"]:
            return self._pulumi(words[1:], capture=True) or ""
        if assigning is not None and assigning in self.values:
            self.external.append(" ".join(words))
            return self.values[assigning]
        raise WalkthroughFailed(f"no value for the output of `{command}`")

    def _run(self, line: str) -> None:
        assignment = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if assignment:
            name, rest = assignment.groups()
            words = self._expand(rest, assigning=name)
            if len(words) != 1:
                raise WalkthroughFailed(f"cannot read the assignment {line}")
            self.vars[name] = words[0]
            return
        words = self._expand(line)
        if not words:
            return
        program, args = words[0], words[1:]
        if program == "pulumi":
            self._pulumi(args)
        elif program in ("aws", "yarn"):
            self.external.append(" ".join(words))
        elif program == "cp":
            self._copy(args)
        else:
            raise WalkthroughFailed(f"`{program}` is not a command the walkthroughs know")

    def _copy(self, args: list[str]) -> None:
        source, target = args
        pulumi_file = re.compile(r"^Pulumi\.([A-Za-z0-9_-]+)\.yaml$")
        if pulumi_file.match(source) and pulumi_file.match(target):
            from_file = pulumi_file.match(source).group(1)
            if from_file not in self.files:
                raise WalkthroughFailed(f"{source} does not exist")
            to_stack = pulumi_file.match(target).group(1)
            self.files.add(to_stack)
            if to_stack in self.stacks:  # the copy is that stack's settings file from now on
                self.stacks[to_stack].file = from_file
                self.stacks[to_stack].config = stack_file_config(from_file)
            return
        if target.rstrip("/") == "releases" and source.endswith(".zip") and self.releases is not None:
            with zipfile.ZipFile(self.releases / Path(source).name, "w") as archive:
                archive.writestr("redcap/index.php", "<?php echo 'downloaded REDCap';\n")
            return
        raise WalkthroughFailed(f"cannot simulate cp {' '.join(args)}")

    # -- pulumi -------------------------------------------------------------------------------

    def _stack(self, options: dict[str, str]) -> Stack:
        name = options.get("-s") or options.get("--stack")
        if name is None:
            raise WalkthroughFailed("every command in the docs names its stack (-s)")
        if name not in self.stacks:
            raise WalkthroughFailed(f"no stack {name} (pulumi stack init it first)")
        stack = self.stacks[name]
        if stack.name not in self.files:
            raise WalkthroughFailed(f"Pulumi.{stack.name}.yaml does not exist")
        return stack

    def _pulumi(self, args: list[str], capture: bool = False) -> Optional[str]:
        flags = {"--path", "--secret", "--yes", "-y", "--refresh", "--skip-preview"}
        options: dict[str, str] = {}
        positional: list[str] = []
        seen_flags: set[str] = set()
        it = iter(args)
        for word in it:
            if word in flags:
                seen_flags.add(word)
            elif word in ("-s", "--stack", "--policy-pack"):
                options[word] = next(it)
            elif word.startswith("-"):
                raise WalkthroughFailed(f"unknown option {word}")
            else:
                positional.append(word)
        verb = tuple(positional[:2])
        if positional[:1] == ["up"]:
            if options.get("--policy-pack") not in (None, "policy") or not (ROOT / "policy").is_dir():
                raise WalkthroughFailed("the policy pack is ./policy")
            self.up(self._stack(options), "pulumi " + " ".join(args))
        elif positional[:1] == ["destroy"]:
            self.destroy(self._stack(options), "pulumi " + " ".join(args))
        elif verb == ("config", "set"):
            key, value = positional[2], positional[3]
            stack = self._stack(options)
            set_config(stack, key, value, path="--path" in seen_flags, secret="--secret" in seen_flags)
        elif verb == ("config", "rm"):
            remove_config(self._stack(options), positional[2], path="--path" in seen_flags)
        elif verb == ("config", "get"):
            return get_config(self._stack(options), positional[2], path="--path" in seen_flags)
        elif verb == ("stack", "output"):
            stack = self._stack(options)
            name = positional[2]
            if stack.state is None or name not in stack.state.outputs:
                raise WalkthroughFailed(f"stack {stack.name} has no output {name}")
            value = stack.state.outputs[name]
            return value if isinstance(value, str) else json.dumps(value)
        elif verb == ("stack", "init"):
            name = positional[2]
            if name in self.stacks:
                raise WalkthroughFailed(f"stack {name} already exists")
            # The CLI keeps a stack's settings in Pulumi.<name>.yaml: an existing file is its settings.
            self.stacks[name] = Stack(name=name, file=name,
                                      config=stack_file_config(name) if name in self.files else {})
        elif verb == ("state", "unprotect"):
            self.unprotect(self._stack(options), positional[2])
        else:
            raise WalkthroughFailed(f"`pulumi {' '.join(args)}` is not a command the walkthroughs know")
        if capture:
            raise WalkthroughFailed(f"`pulumi {' '.join(args)}` prints nothing to capture")
        return None

    def evaluate(self, stack: Stack) -> StackRun:
        if self.releases is None:
            return cached_run(stack.file, stack.overrides(), stack_name=stack.name)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings.paths, "RELEASES_DIR", self.releases)
            return run_program(stack.file, stack.overrides(), stack_name=stack.name)

    def up(self, stack: Stack, command: str) -> Transition:
        program = self.evaluate(stack)
        before = stack.state or empty_run(stack.name, program.config)
        t = transition(before, keep_optional_computed(before, program))
        problems = t.problems()
        if problems:
            raise WalkthroughFailed("\n".join(problems) + "\nplan:\n" + t.describe())
        stack.state = applied(t)
        for check in INVARIANTS:
            check(stack.state)
        self.steps.append(Step(command, t))
        return t

    def destroy(self, stack: Stack, command: str) -> Transition:
        if stack.state is None:
            raise WalkthroughFailed(f"stack {stack.name} has nothing to destroy")
        t = transition(stack.state, empty_run(stack.name, stack.state.config))
        problems = t.problems()
        if problems:
            raise WalkthroughFailed("\n".join(problems) + "\nplan:\n" + t.describe())
        index = {r.urn: r for r in stack.state.resources}
        stack.kept = [index[s.urn] for s in t.steps if s.op == "discard"]
        stack.final_snapshots = [r.inputs["finalSnapshotIdentifier"] for r in stack.state.resources
                                 if r.type == CLUSTER and not r.inputs.get("skipFinalSnapshot")
                                 and r.urn in t.urns("delete")]
        stack.state = None
        self.steps.append(Step(command, t))
        return t

    def unprotect(self, stack: Stack, urn: str) -> None:
        if stack.state is None or urn not in {r.urn for r in stack.state.resources}:
            raise WalkthroughFailed(f"{urn} is not in the state of {stack.name}")
        stack.state = dataclasses.replace(stack.state, resources=[
            dataclasses.replace(r, protect=False) if r.urn == urn else r for r in stack.state.resources])

    def last(self, command_prefix: str) -> Transition:
        found = [s.transition for s in self.steps if s.command.startswith(command_prefix) and s.transition]
        return found[-1]


# --- settings as the CLI stores them -------------------------------------------------------------

def _key_path(key: str, path: bool) -> tuple[str, list[str]]:
    full = key if ":" in key else f"redcap:{key}"
    if not path:
        return full, []
    namespace, _, rest = full.partition(":")
    parts = rest.split(".")
    return f"{namespace}:{parts[0]}", parts[1:]


def _typed(value: str) -> Any:
    """`--path` stores true/false as booleans and whole numbers as numbers."""
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def set_config(stack: Stack, key: str, value: str, *, path: bool, secret: bool) -> None:
    top, parts = _key_path(key, path)
    if secret and parts:
        raise WalkthroughFailed("a secret goes into a top-level key")
    if not parts:
        stack.config[top] = value
    else:
        node = stack.config.setdefault(top, {})
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _typed(value)
    if secret:
        stack.secret_keys.add(top)


def remove_config(stack: Stack, key: str, *, path: bool) -> None:
    """Without --path, removing a key that is not set does nothing (as the CLI); a --path into
    something that is not there fails."""
    top, parts = _key_path(key, path)
    if not parts:
        stack.config.pop(top, None)
        return
    node = stack.config
    for part in [top, *parts][:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    last = [top, *parts][-1]
    if not isinstance(node, dict) or last not in node:
        raise WalkthroughFailed(f"configuration key {key} not found")
    del node[last]


def get_config(stack: Stack, key: str, *, path: bool) -> str:
    top, parts = _key_path(key, path)
    node: Any = stack.config
    for part in [top, *parts]:
        if not isinstance(node, dict) or part not in node:
            raise WalkthroughFailed(f"configuration key {key} not found")
        node = node[part]
    return node if isinstance(node, str) else json.dumps(node)


# --- what the engine leaves in the state ---------------------------------------------------------

def keep_optional_computed(before: StackRun, after: StackRun) -> StackRun:
    """The program's registrations as the provider sees them: an Optional+Computed input left
    out keeps its value from the state."""
    old = {r.urn: r for r in before.resources}
    resources = []
    for r in after.resources:
        kept = {k: old[r.urn].inputs[k] for k in OPTIONAL_COMPUTED.get(r.type, ())
                if r.urn in old and k in old[r.urn].inputs and k not in r.inputs}
        resources.append(dataclasses.replace(r, inputs={**r.inputs, **kept}) if kept else r)
    return dataclasses.replace(after, resources=resources)


def _reset(inputs: dict[str, Any], old: dict[str, Any], path: str) -> dict[str, Any]:
    parts = path.replace("[", ".").replace("]", "").split(".")
    result = copy.deepcopy(inputs)
    node, old_node = result, old
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        old_node = old_node.get(part) if isinstance(old_node, dict) else None
    if isinstance(node, dict):
        if isinstance(old_node, dict) and parts[-1] in old_node:
            node[parts[-1]] = copy.deepcopy(old_node[parts[-1]])
        else:
            node.pop(parts[-1], None)
    return result


def applied(t: Transition) -> StackRun:
    """The state after the update: the program's registrations, except that an ignored input of
    a resource that was updated or left alone keeps its old value (a replacement takes the
    program's, as the engine re-checks the program's inputs for it)."""
    old = {r.urn: r for r in t.before.resources}
    resources = []
    for r in t.after.resources:
        change = t.changes[r.urn]
        if change.kind in ("same", "update") and r.ignore_changes:
            inputs = r.inputs
            for path in r.ignore_changes:
                inputs = _reset(inputs, old[change.old_urn].inputs, path)
            r = dataclasses.replace(r, inputs=inputs)
        resources.append(r)
    return dataclasses.replace(t.after, resources=resources)


# --- invariants after every pulumi up ------------------------------------------------------------

def restored_clusters_have_iam_auth_before_the_runtime(state: StackRun) -> None:
    """Every restored cluster gets its IAM-auth confirmation, and the runtimes wait for the
    confirmation of the cluster they log in to (the serving one)."""
    invocations = {json.loads(unwrap_secrets(r.inputs["input"]))["clusterIdentifier"]: r
                   for r in state.resources if r.type == INVOCATION and "iam-auth" in r.name}
    serving = state.outputs.get("dbClusterIdentifier")
    for cluster in (r for r in state.resources if r.type == CLUSTER and r.inputs.get("snapshotIdentifier")):
        confirmation = invocations.get(cluster.inputs["clusterIdentifier"])
        if confirmation is None:
            raise WalkthroughFailed(f"restored cluster {cluster.name} has no IAM-auth confirmation")
        if cluster.inputs["clusterIdentifier"] != serving:
            continue
        for runtime in (r for r in state.resources if r.type in RUNTIMES):
            if not depends_on(state, runtime, confirmation.urn):
                raise WalkthroughFailed(f"{runtime.name} reaches {cluster.name} before IAM auth is on")


INVARIANTS: tuple[Callable[[StackRun], None], ...] = (restored_clusters_have_iam_auth_before_the_runtime,)


# --------------------------------------------------------------------------------------------
# Helpers for the assertions
# --------------------------------------------------------------------------------------------

def clusters(state: StackRun) -> dict[str, Recorded]:
    return {r.name: r for r in state.resources if r.type == CLUSTER}


def data_changes(t: Transition) -> set[tuple[str, str]]:
    """Data-bearing resources replaced or deleted by an update."""
    return {k for k in t.replaces | t.deletes if k[0] in DATA_TYPES}


# --------------------------------------------------------------------------------------------
# The docs' blocks are the procedures
# --------------------------------------------------------------------------------------------

# Each documented procedure: the marked blocks, in the order the docs give them.
PROCEDURES: dict[str, tuple[str, ...]] = {
    "backtrack": ("backtrack",),
    "recover a file": ("recover-file",),
    "restore in place": ("restore-snapshot-first", "restore-keep-and-restore", "restore-lower-previous",
                         "restore-remove-previous"),
    "restore in place again": ("restore-snapshot-first", "restore-name-the-restored-cluster",
                               "restore-keep-and-restore", "restore-lower-previous", "restore-remove-previous"),
    "restore into a new stack": ("restore-new-stack",),
    "migration": ("migrate-old-deployment", "migrate-new-stack", "migrate-files"),
    "destroy a protected stage": ("destroy-protected",),
    "upgrade REDCap from S3": ("upgrade-automatic", "upgrade-s3-zip", "upgrade-up", "upgrade-check"),
    "upgrade REDCap from a local zip": ("upgrade-local-zip", "upgrade-up", "upgrade-php"),
    "go back after a failed upgrade": ("upgrade-failed-backtrack",),
    "upgrade the engine": ("engine-check", "engine-upgrade", "engine-record"),
}


def follow(ws: Workspace, procedure: str) -> None:
    for block in PROCEDURES[procedure]:
        ws.run_block(block)


def test_every_marked_block_belongs_to_a_procedure():
    used = {b for blocks in PROCEDURES.values() for b in blocks}
    assert used == set(doc_blocks()), (f"marked but in no procedure: {sorted(set(doc_blocks()) - used)}; "
                                       f"in a procedure but not in the docs: {sorted(used - set(doc_blocks()))}")


def test_every_block_of_commands_in_these_docs_is_a_walkthrough():
    """A bash block that runs Pulumi in these docs is marked, so a test follows it."""
    for doc in WALKTHROUGH_DOCS:
        text = (DOCS / doc).read_text()
        marked = {body for _, body in MARKER.findall(text)}
        for body in re.findall(r"```bash\n(.*?)```", text, re.S):
            if re.search(r"(^|\s)pulumi (up|destroy|config|state|stack init)", body):
                assert body in marked, f"{doc}: a block of Pulumi commands without a walkthrough:\n{body}"


# --- restore in place ---------------------------------------------------------------------------

def test_restore_in_place_under_protection():
    ws = Workspace({"<snapshot to restore>": SNAPSHOT})
    prod = ws.deployed("prod")
    deployment = len([s for s in ws.steps if s.transition])
    first = clusters(prod.state)["redcap-cluster"]
    follow(ws, "restore in place")
    tail = restore_suffix(SNAPSHOT)

    restore, lower, remove = [s.transition for s in ws.steps if s.transition][deployment:]
    # 1. The restored cluster is created next to the protected one, which is not touched.
    assert (CLUSTER, f"redcap-cluster{tail}") in restore.creates
    assert restore.change(CLUSTER, "redcap-cluster").kind == "same" and not data_changes(restore)
    # 2. Lowering touches only the replaced cluster and its instances.
    assert lower.updates >= {(CLUSTER, "redcap-cluster")} and not data_changes(lower)
    assert {k for k in lower.updates if k[0] in DATA_TYPES} <= {(CLUSTER, "redcap-cluster"),
                                                                 (INSTANCE, "redcap-writer"), (INSTANCE, "redcap-reader-1")}
    # 3. It goes last, with its own final snapshot, and nothing of the restored cluster goes.
    assert (CLUSTER, "redcap-cluster") in remove.deletes
    assert {k for k in data_changes(remove)} == {(CLUSTER, "redcap-cluster"), (INSTANCE, "redcap-writer"),
                                                 (INSTANCE, "redcap-reader-1")}
    left = clusters(prod.state)
    assert list(left) == [f"redcap-cluster{tail}"]
    assert left[f"redcap-cluster{tail}"].protect is True
    assert first.inputs["finalSnapshotIdentifier"] != left[f"redcap-cluster{tail}"].inputs["finalSnapshotIdentifier"]
    assert prod.state.outputs["dbClusterIdentifier"] == left[f"redcap-cluster{tail}"].inputs["clusterIdentifier"]
    assert "dbPreviousClusterIdentifier" not in prod.state.outputs


def test_a_second_restore_in_place_replaces_the_restored_cluster():
    ws = Workspace({"<snapshot to restore>": SNAPSHOT})
    prod = ws.deployed("prod")
    follow(ws, "restore in place")
    ws.values["<snapshot to restore>"] = SECOND_SNAPSHOT
    follow(ws, "restore in place again")
    assert list(clusters(prod.state)) == [f"redcap-cluster{restore_suffix(SECOND_SNAPSHOT)}"]
    remove = ws.steps[-1].transition
    assert (CLUSTER, f"redcap-cluster{restore_suffix(SNAPSHOT)}") in remove.deletes


def test_without_keeping_the_old_cluster_the_restore_stops_after_the_site_moved():
    """What docs/restore.md used to say (set dbSnapshotId, pulumi up): the protected cluster leaves
    the program, its protect comes from the state, and the delete at the end is refused - after the
    containers were already redeployed against the new cluster."""
    ws = Workspace()
    prod = ws.deployed("prod")
    set_config(prod, "redcap:db.dbSnapshotId", SNAPSHOT, path=True, secret=False)
    with pytest.raises(WalkthroughFailed, match="refused: delete of aws:rds/cluster:Cluster redcap-cluster") as err:
        ws.up(prod, "pulumi up -s prod")
    plan = str(err.value).split("plan:")[1]
    assert plan.index("aws:ecs/taskDefinition:TaskDefinition") < plan.index("refused-delete")


def test_removing_the_old_cluster_before_lowering_its_protection_is_refused():
    ws = Workspace({"<snapshot to restore>": SNAPSHOT})
    ws.deployed("prod")
    ws.run_block("restore-snapshot-first")
    ws.run_block("restore-keep-and-restore")
    with pytest.raises(WalkthroughFailed, match="refused: delete of aws:rds/cluster:Cluster redcap-cluster"):
        ws.run_block("restore-remove-previous")


# --- restore into a new stack, migration ---------------------------------------------------------

def destroyed_prod(ws: Workspace) -> Stack:
    prod = ws.deployed("prod")
    outputs = dict(prod.state.outputs)
    follow(ws, "destroy a protected stage")
    salt = next(r for r in prod.kept if r.type == SECRET and r.name == "redcap-salt")
    files = next(r for r in prod.kept if r.type == BUCKET and r.name == "redcap-files")
    ws.values.update({
        "<old salt secret ARN>": salt.outputs["arn"],
        "<ARN of the final snapshot>": f"arn:aws:rds:us-east-1:123456789012:cluster-snapshot:{prod.final_snapshots[0]}",
        "<old file bucket>": files.outputs["bucket"],
        "OLD_SALT": OLD_SALT,
    })
    assert prod.final_snapshots == [outputs["dbFinalSnapshotIdentifier"]]
    return prod


def test_restore_into_a_new_stack_after_destroy():
    ws = Workspace()
    prod = destroyed_prod(ws)
    follow(ws, "restore into a new stack")
    prod2 = ws.stacks["prod2"]
    first = ws.last("pulumi up -s prod2")
    assert not first.updates and not first.replaces and not first.deletes  # one pulumi up, creates only
    cluster = prod2.state.one(CLUSTER)
    assert cluster.inputs["snapshotIdentifier"] == ws.values["<ARN of the final snapshot>"]
    salt = prod2.state.named("redcap-salt-value", SECRET_VERSION)
    assert unwrap_secrets(salt.inputs["secretString"]) == OLD_SALT
    assert prod2.state.config["aws:defaultTags"] and "redcap-prod2" in prod2.state.config["aws:defaultTags"]
    # Nothing the new stack names is what the destroyed stage left in AWS.
    kept = set(physical_identities(dataclasses.replace(prod2.state, resources=prod.kept)))
    assert not kept & set(physical_identities(prod2.state))
    assert "aws s3 sync" in " ".join(ws.external)


def test_migration_from_the_original_in_one_pulumi_up():
    ws = Workspace({"<old cluster>": "redcapstack-database-cluster", "<old salt secret>": "dbsalt-AbCdEf",
                    "<old app bucket>": "redcapstack-filestorage-bucket", "OLD_SALT": OLD_SALT})
    follow(ws, "migration")
    prod = ws.stacks["prod"]
    first = ws.last("pulumi up -s prod")
    assert not first.updates and not first.replaces and not first.deletes
    assert prod.state.one(CLUSTER).inputs["snapshotIdentifier"] == "redcap-migration"
    assert unwrap_secrets(prod.state.named("redcap-salt-value", SECRET_VERSION).inputs["secretString"]) == OLD_SALT
    assert any(c.startswith("aws s3 sync s3://redcapstack-filestorage-bucket s3://") for c in ws.external)


# --- destroy ---------------------------------------------------------------------------------------

def test_destroying_a_protected_stage():
    ws = Workspace()
    prod = ws.deployed("prod")
    cluster_before = prod.state.one(CLUSTER)
    follow(ws, "destroy a protected stage")
    lower, destroy = ws.last("pulumi up -s prod"), ws.last("pulumi destroy")
    assert not data_changes(lower)
    kept = {(r.type, r.name) for r in prod.kept}
    assert {(KEY, "redcap-key"), (BUCKET, "redcap-files"), (BUCKET, "redcap-logs"), (SECRET, "redcap-salt"),
            (SECRET_VERSION, "redcap-salt-value")} <= kept
    assert {n for t, n in kept if t == LOG_GROUP} >= {f"redcap-log-{k}" for k in ("audit", "error", "general", "slowquery")}
    assert (CLUSTER, "redcap-cluster") in destroy.deletes
    assert prod.final_snapshots == [cluster_before.inputs["finalSnapshotIdentifier"]]


def test_destroy_without_lowering_protection_is_refused():
    ws = Workspace()
    prod = ws.deployed("prod")
    with pytest.raises(WalkthroughFailed, match="refused: delete of"):
        ws.destroy(prod, "pulumi destroy -s prod")


# --- upgrades --------------------------------------------------------------------------------------

SNAPSHOT_INVOCATION = "redcap-upgrade-snapshot-invocation"
UPGRADE_INVOCATION = "redcap-db-upgrade-invocation"


def snapshot_taken(t: Transition) -> Optional[str]:
    """The snapshot functions/upgrade_snapshot.py takes in this update: the provider invokes a CRUD
    invocation with its new input and, under `tf.prev_input`, the input the state holds."""
    from functions import upgrade_snapshot

    change = t.change(INVOCATION, SNAPSHOT_INVOCATION)
    new = json.loads(t.after.named(SNAPSHOT_INVOCATION, INVOCATION).inputs["input"])
    if change.kind == "same":
        return None
    prev = json.loads(t.before.named(SNAPSHOT_INVOCATION, INVOCATION).inputs["input"]) if change.kind == "update" else None
    event = {**new, "tf": {"action": "update" if prev else "create", "prev_input": prev}}
    return upgrade_snapshot.planned_snapshot(upgrade_snapshot.Request.from_event(event, {"CLUSTER_IDENTIFIER": "c"}))


def rollout_after(t: Transition, first: str, then_type: str) -> bool:
    """Whether the step of `first` (a resource name) comes before every step of `then_type`."""
    order = [s for s in t.steps if s.op not in ("delete-replaced", "delete", "discard")]
    at = next(i for i, s in enumerate(order) if s.name == first)
    return all(i > at for i, s in enumerate(order) if s.type == then_type)


def test_redcap_upgrade_from_s3_snapshots_first_and_upgrades_the_database_after_the_rollout():
    ws = Workspace()
    prod = ws.deployed("prod")
    before = prod.state.outputs["imageTag"]
    follow(ws, "upgrade REDCap from S3")
    t = ws.last("pulumi up -s prod")
    assert not data_changes(t)
    assert before.startswith("15.0.9-") and prod.state.outputs["imageTag"].startswith("15.1.0-")
    # The snapshot: exactly this update's release change, named after both releases, before the rollout.
    attempt = prod.state.named("redcap-upgrade-snapshot-attempt").outputs["hex"]
    assert snapshot_taken(t) == f"redcap-prod-15-0-9-to-15-1-0-{attempt}"
    assert rollout_after(t, SNAPSHOT_INVOCATION, "aws:ecs/taskDefinition:TaskDefinition")
    # The database upgrade, switched on in the same update, runs after the rollout.
    assert t.change(INVOCATION, UPGRADE_INVOCATION).kind == "create"
    assert depends_on(prod.state, prod.state.named(UPGRADE_INVOCATION), prod.state.named("redcap-service").urn)
    assert "redcapDatabaseUpgrade" in prod.state.outputs and "dbUpgradeSnapshotIdentifier" in prod.state.outputs
    # The next `pulumi up` with the same release takes no snapshot and runs no upgrade.
    again = ws.up(prod, "pulumi up -s prod")
    assert snapshot_taken(again) is None and again.change(INVOCATION, UPGRADE_INVOCATION).kind == "same"


def test_redcap_upgrade_from_a_local_zip_snapshots_first_and_leaves_the_database_to_redcap():
    from compute_support import fake_releases

    ws = Workspace(releases=fake_releases())
    prod = ws.deployed("prod")
    follow(ws, "upgrade REDCap from a local zip")
    t = ws.last("pulumi up -s prod")
    assert not data_changes(t)
    assert prod.state.outputs["imageTag"].startswith("15.1.0-")
    assert snapshot_taken(t).startswith("redcap-prod-15-0-9-to-15-1-0-")
    assert not [r for r in prod.state.resources if r.name.startswith("redcap-db-upgrade")]


def test_after_a_failed_upgrade_backtrack_and_the_old_release_go_back_through_another_snapshot():
    ws = Workspace({"<time the upgrade task started>": "2026-11-30T09:15:00Z"})
    prod = ws.deployed("prod")
    follow(ws, "upgrade REDCap from S3")
    follow(ws, "go back after a failed upgrade")
    back = ws.last("pulumi up -s prod")
    assert not data_changes(back)
    assert prod.state.outputs["imageTag"].startswith("15.0.9-")
    assert snapshot_taken(back).startswith("redcap-prod-15-1-0-to-15-0-9-")
    assert back.change(INVOCATION, UPGRADE_INVOCATION).kind == "update"  # the task finds 15.0.9: current
    assert any(c.startswith("aws rds backtrack-db-cluster --db-cluster-identifier redcap-prod-")
               and c.endswith("--backtrack-to 2026-11-30T09:15:00Z") for c in ws.external)


def test_after_a_failed_upgrade_the_upgrade_snapshot_restores_in_place_under_protection():
    ws = Workspace()
    prod = ws.deployed("prod")
    follow(ws, "upgrade REDCap from S3")
    upgrade_snapshot = snapshot_taken(ws.last("pulumi up -s prod"))
    ws.values["<snapshot to restore>"] = upgrade_snapshot
    follow(ws, "restore in place")
    (cluster,) = clusters(prod.state).values()
    assert cluster.inputs["snapshotIdentifier"] == upgrade_snapshot and cluster.protect is True
    # The restored cluster is the one the next snapshot is taken of.
    assert prod.state.named("redcap-upgrade-snapshot-function").inputs["environment"]["variables"] == {
        "CLUSTER_IDENTIFIER": prod.state.outputs["dbClusterIdentifier"]}


def test_engine_upgrade_is_applied_and_then_recorded():
    ws = Workspace()
    prod = ws.deployed("prod")
    ws.run_block("engine-check")
    ws.run_block("engine-upgrade")
    upgrade = ws.last("pulumi up -s prod")
    change = upgrade.change(CLUSTER, "redcap-cluster")
    assert change.kind == "update" and "engineVersion" in change.keys and not data_changes(upgrade)
    assert prod.state.one(CLUSTER).inputs["engineVersion"] == "8.0.mysql_aurora.3.11.0"
    ws.run_block("engine-record")
    record = ws.last("pulumi up -s prod")
    assert not record.creates and not record.updates and not record.replaces and not record.deletes, record.describe()


def test_changing_only_engine_version_changes_nothing():
    """Why the upgrade needs its own key: engineVersion of a running cluster is AWS's to move."""
    ws = Workspace()
    prod = ws.deployed("prod")
    set_config(prod, "redcap:db.engineVersion", "8.0.mysql_aurora.3.11.0", path=True, secret=False)
    t = ws.up(prod, "pulumi up -s prod")
    assert t.change(CLUSTER, "redcap-cluster").kind == "same"
    assert prod.state.one(CLUSTER).inputs["engineVersion"] == "8.0.mysql_aurora.3.10.3"


def test_backtrack_and_file_recovery_read_existing_outputs():
    ws = Workspace({"<path of the file>": "edocs/42", "<key>": "edocs/42/report.pdf", "<version>": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"})
    ws.deployed("prod")
    follow(ws, "backtrack")
    follow(ws, "recover a file")
    assert all(c.startswith("aws ") for c in ws.external) and len(ws.external) == 5


# --- the interpreter itself -------------------------------------------------------------------------

def test_unknown_commands_and_missing_urns_fail():
    ws = Workspace()
    prod = ws.deployed("prod")
    with pytest.raises(WalkthroughFailed, match="not a command"):
        ws.run_line("rm -rf build")
    with pytest.raises(WalkthroughFailed, match="not in the state"):
        ws.run_line("pulumi state unprotect urn:pulumi:prod::redcap::aws:rds/cluster:Cluster::nothing -s prod")
    with pytest.raises(WalkthroughFailed, match="no output"):
        ws.run_line("pulumi stack output nothingLikeThis -s prod")
    with pytest.raises(WalkthroughFailed, match="no value for the placeholder"):
        ws.run_line("pulumi config set --path redcap:db.dbSnapshotId <some snapshot> -s prod")
    with pytest.raises(WalkthroughFailed, match="not found"):
        ws.run_line("pulumi config rm --path redcap:db.previousCluster -s prod")
    urn = prod.state.one(CLUSTER).urn
    ws.run_line(f"pulumi state unprotect {urn} -s prod")
    assert prod.state.one(CLUSTER).protect is False
