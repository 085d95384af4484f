"""Run the whole Pulumi program under mocks, the way `pulumi up` would run it for one stack.

- Config = `Pulumi.yaml` defaults + `Pulumi.<stack>.yaml` + overrides, flattened the way the
  CLI hands it to the program (objects and lists as JSON strings; `secure:` values replaced by
  placeholders and marked secret).
- Every resource registration is recorded with its inputs (camelCase wire names, numbers as
  floats), the id and outputs the mock returned, and its options (protect, retainOnDelete,
  ignoreChanges, parent, dependencies, ...), which `Mocks.new_resource` alone cannot see.
- Mocks run with preview=False: an output the mock does not provide is None, never unknown, so
  assertions inside applies always run.
"""
from __future__ import annotations

import asyncio
import copy
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "redcap"
ACCOUNT_ID = "123456789012"
SECRET_PLACEHOLDER = "mock-secret-value-from-stack-file"

# Object keys whose values are secrets in the mock world: tests search program inputs for them.
MOCK_SECRET_VALUES = ("mock-access-key-secret", "mock-random-password-0123456789", "mock-smtp-password")


def stack_files(root: Path = ROOT) -> list[str]:
    """Names of the stacks that have a `Pulumi.<stack>.yaml` in the project folder."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _flatten_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def load_stack_config(stack: str, overrides: Optional[dict[str, Any]] = None,
                      root: Path = ROOT) -> tuple[dict[str, str], list[str]]:
    """Merged, flattened config and the list of secret keys, as the CLI would give them."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    config: dict[str, Any] = {}
    for key, spec in (project.get("config") or {}).items():
        full = key if ":" in key else f"{project['name']}:{key}"
        if isinstance(spec, dict) and ("type" in spec or "default" in spec or "description" in spec):
            if "default" in spec:
                config[full] = spec["default"]
        else:
            config[full] = spec
    stack_file = root / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        config.update((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {})
    secret_keys: list[str] = []
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = copy.deepcopy(value)
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            flat[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, Secret):
            flat[key] = value.value
            secret_keys.append(key)
        else:
            flat[key] = _flatten_value(value)
    return flat, sorted(secret_keys)


@dataclass(frozen=True)
class Secret:
    """An override value that the CLI would hold encrypted (`pulumi config set --secret`)."""

    value: str


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    id: Optional[str] = None
    outputs: dict[str, Any] = field(default_factory=dict)
    protect: Optional[bool] = None
    retain_on_delete: Optional[bool] = None
    ignore_changes: list[str] = field(default_factory=list)
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    remote: bool = False
    provider: str = ""


@dataclass
class StackRun:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    config: dict[str, str]

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Recorded:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Recorded:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def children_of(self, parent: Recorded) -> list[Recorded]:
        return [r for r in self.resources if r.parent == parent.urn]

    def by_urn(self, urn: str) -> Recorded:
        return next(r for r in self.resources if r.urn == urn)

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


# --------------------------------------------------------------------------------------------
# Mocks
# --------------------------------------------------------------------------------------------

def _arn(service: str, resource: str, region: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"


def _service_of(type_: str) -> str:
    # aws:rds/cluster:Cluster -> rds
    return type_.split(":")[1].split("/")[0] if type_.startswith("aws:") else "mock"


# Per-type outputs a real provider computes. Values are fixed, so two runs give the same result.
def _computed_outputs(type_: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    arn = _arn(_service_of(type_), f"{name}", region)
    if type_ == "aws:kms/key:Key":
        return {"arn": _arn("kms", f"key/{name}-key-id", region), "keyId": f"{name}-key-id"}
    if type_ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"{name}-bucket-0a1b2c"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com"}
    if type_ == "aws:rds/cluster:Cluster":
        ident = inputs.get("clusterIdentifier") or name
        return {
            "arn": _arn("rds", f"cluster:{ident}", region),
            "endpoint": f"{ident}.cluster-c0ffee.{region}.rds.amazonaws.com",
            "readerEndpoint": f"{ident}.cluster-ro-c0ffee.{region}.rds.amazonaws.com",
            "clusterResourceId": "cluster-MOCKRESOURCEID",
            "port": 3306,
            "engine": inputs.get("engine"),
            "engineVersion": inputs.get("engineVersion"),
            "masterUserSecrets": [{"secretArn": _arn("secretsmanager", f"secret:rds!cluster-{ident}-AbCdEf", region),
                                   "secretStatus": "active", "kmsKeyId": inputs.get("masterUserSecretKmsKeyId")}],
        }
    if type_ == "aws:iam/accessKey:AccessKey":
        return {"id": "AKIAMOCKACCESSKEY", "secret": MOCK_SECRET_VALUES[0],
                "sesSmtpPasswordV4": MOCK_SECRET_VALUES[2]}
    if type_ == "random:index/randomPassword:RandomPassword":
        return {"result": MOCK_SECRET_VALUES[1]}
    if type_ == "random:index/randomId:RandomId":
        return {"hex": "a1b2c3d4", "b64Std": "obLD1A==", "b64Url": "obLD1A", "dec": "2712847316"}
    if type_ == "random:index/randomString:RandomString":
        return {"result": "mockrandomstring"}
    if type_ in ("aws:iam/role:Role", "aws:iam/user:User", "aws:iam/policy:Policy"):
        kind = type_.split(":")[-1].lower()
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:{kind}/{inputs.get('name') or name}",
                "name": inputs.get("name") or name}
    if type_ == "aws:cloudwatch/logGroup:LogGroup":
        group = inputs.get("name") or f"{name}-0a1b2c"
        return {"arn": _arn("logs", f"log-group:{group}", region), "name": group}
    if type_ == "aws:route53/zone:Zone":
        return {"zoneId": f"Z{name.upper().replace('-', '')[:12]}", "nameServers": [
            "ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk", "ns-3.awsdns-03.com", "ns-4.awsdns-04.net"]}
    return {"arn": arn}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, call_overrides: Optional[dict[str, Callable[[dict], dict]]] = None):
        self.region = region
        self.call_overrides = call_overrides or {}
        self.registrations: dict[str, tuple[str, dict]] = {}
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "awsx:ec2:Vpc":
            # awsx is a remote component: no children exist under mocks, and echoing its inputs
            # back breaks typed outputs. Return only the ids the program uses.
            state = {
                "vpcId": "vpc-0mock",
                "publicSubnetIds": ["subnet-public-a", "subnet-public-b"],
                "privateSubnetIds": ["subnet-private-a", "subnet-private-b"],
                "isolatedSubnetIds": ["subnet-isolated-a", "subnet-isolated-b"],
            }
            return f"{args.name}-id", state
        if not args.custom:
            return None, {}
        state = dict(args.inputs)
        state.update(_computed_outputs(args.typ, args.name, args.inputs, self.region))
        resource_id = state.get("id") or f"{args.name}-id"
        state.pop("id", None)
        if args.typ == "aws:s3/bucket:Bucket":
            resource_id = state["bucket"]
        state.setdefault("name", args.inputs.get("name") or args.name)
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token in self.call_overrides:
            return self.call_overrides[args.token](dict(args.args))
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock", "userId": "AIDAMOCK"}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws"}
        if token == "aws:index/getRegion:getRegion":
            return {"region": self.region, "name": self.region, "endpoint": f"ec2.{self.region}.amazonaws.com"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": [f"{self.region}a", f"{self.region}b"], "zoneIds": ["use1-az1", "use1-az2"]}
        if token == "aws:ec2/getRouteTables:getRouteTables":
            # Deliberately unsorted: the program must sort them.
            return {"ids": ["rtb-0c", "rtb-0a", "rtb-0b"]}
        if token == "aws:elb/getServiceAccount:getServiceAccount":
            return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}
        if token == "aws:route53/getZone:getZone":
            zone = args.args.get("name", "example.org")
            return {"zoneId": "ZEXISTINGZONE", "name": zone, "id": "ZEXISTINGZONE",
                    "nameServers": ["ns-9.awsdns-09.org", "ns-8.awsdns-08.com"]}
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0mockal2023", "imageId": "ami-0mockal2023"}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "mock-ecr-password", "proxyEndpoint": "https://mock.ecr"}
        if token == "aws:ssm/getParameter:getParameter":
            return {"value": "ami-0mockal2023", "name": args.args.get("name"), "type": "String"}
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records the resource options that `Mocks.new_resource` cannot see."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        from pulumi.runtime import rpc

        inputs = rpc.deserialize_properties(request.object)
        registration = self.resources.get(response.urn)
        self.recorded.append(Recorded(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=request.custom,
            inputs=_plain(inputs),
            id=registration.id if registration else None,
            outputs=_plain(dict(registration.state)) if registration else {},
            protect=request.protect if request.HasField("protect") else None,
            retain_on_delete=request.retainOnDelete if request.HasField("retainOnDelete") else None,
            ignore_changes=list(request.ignoreChanges),
            parent=request.parent,
            dependencies=list(request.dependencies),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            delete_before_replace=request.deleteBeforeReplace,
            remote=request.remote,
            provider=request.provider,
        ))
        return response


def _plain(value: Any) -> Any:
    """Deep copy without SDK objects (resource references become their URN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return getattr(value, "_mock_urn", repr(value))
    return value


def unwrap_secrets(value: Any) -> Any:
    """Inputs marked secret arrive wrapped in {sig: ..., value: ...}; return the plain value."""
    sig = "4dabf18193072939515e22adb298388d"
    if isinstance(value, dict):
        if sig in value:
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def is_secret_input(value: Any) -> bool:
    return isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value


# --------------------------------------------------------------------------------------------
# Running the program
# --------------------------------------------------------------------------------------------

def run_program(stack: str, overrides: Optional[dict[str, Any]] = None, *,
                root: Path = ROOT,
                call_overrides: Optional[dict[str, Callable[[dict], dict]]] = None) -> StackRun:
    """Evaluate `__main__.py` for `stack` and return every registration and the stack outputs."""
    config, secret_keys = load_stack_config(stack, overrides, root)
    region = config.get("aws:region", "us-east-1")
    mocks = RecordingMocks(region, call_overrides)
    monitor = RecordingMonitor(mocks)

    pulumi_settings.set_root_resource(None)
    pulumi.runtime.set_all_config(config, secret_keys)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    @pulumi.runtime.test
    def evaluate():
        runpy.run_path(str(root / "__main__.py"), run_name="__main__")

    evaluate()

    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    stack_resource = pulumi_settings.get_root_resource()
    exported = dict(getattr(stack_resource, "outputs", {}) or {})

    @pulumi.runtime.test
    def resolve():
        async def collect() -> None:
            for name in sorted(exported):
                out = pulumi.Output.from_input(exported[name])
                outputs[name] = await out.future()
                if await out.is_secret():
                    secret_outputs.add(name)

        return asyncio.ensure_future(collect())

    resolve()
    return StackRun(stack=stack, resources=list(monitor.recorded), outputs=outputs,
                    secret_outputs=secret_outputs, config=config)


def all_strings(value: Any) -> Iterable[str]:
    """Every string anywhere in a nested value (for 'no secret appears in ...' checks)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from all_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from all_strings(v)
