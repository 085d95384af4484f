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
# Easy DKIM tokens SES would issue (deliberately unsorted: the program sorts them).
MOCK_DKIM_TOKENS = ("tokenccc3333", "tokenaaa1111", "tokenbbb2222")


def mock_zone_ids(region: str) -> tuple[str, str]:
    """AZ ids the mock account has in `region` (real ones look like use1-az1: a short region
    code, then the zone number; the mapping to AZ names differs per account)."""
    parts = region.split("-")
    code = parts[0] + "".join(p[0] for p in parts[1:-1]) + parts[-1]
    return f"{code}-az1", f"{code}-az2"


def mock_subnet_zones(region: str) -> dict[str, dict[str, str]]:
    """The awsx mock VPC's subnets: their AZ name and AZ id."""
    zones = mock_zone_ids(region)
    return {f"subnet-{tier}-{letter}": {"availabilityZone": f"{region}{letter}", "availabilityZoneId": zones[i]}
            for tier in ("public", "private", "isolated") for i, letter in enumerate("ab")}


def stack_reference_outputs(stack_name: str) -> dict[str, Any]:
    """Outputs a referenced stack (`org/project/stack`) exposes under mocks: its zone's name
    servers, derived from the stack name so tests can tell two references apart."""
    slug = stack_name.replace("/", "-")
    return {"nameServers": [f"ns-2.{slug}.awsdns.test", f"ns-1.{slug}.awsdns.test"]}


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
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    remote: bool = False
    provider: str = ""
    transforms: int = 0  # how many transforms the resource carries (the mock monitor does not run them)
    # ResourceOptions.aliases: URNs, or specs {name, type, stack, project, parent, noParent} ("" = own)
    aliases: list[Any] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    deleted_with: str = ""
    # ResourceOptions.custom_timeouts as the engine passes them to the provider ("" = its default)
    custom_timeouts: dict[str, str] = field(default_factory=dict)


@dataclass
class StackRun:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    config: dict[str, str]
    # Resources read rather than registered (StackReference, Resource.get): not in `resources`.
    reads: list[Recorded] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Recorded:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str, type_: Optional[str] = None) -> Recorded:
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
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
    region = inputs.get("region") or region  # pulumi-aws 7: a resource may live in another region
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
            # The provider's restore call (RestoreDBClusterFromSnapshot) does not send
            # EnableIAMDatabaseAuthentication, and RDS restores with it off.
            "iamDatabaseAuthenticationEnabled": (False if inputs.get("snapshotIdentifier")
                                                 else inputs.get("iamDatabaseAuthenticationEnabled")),
        }
    if type_ == "aws:iam/accessKey:AccessKey":
        return {"id": "AKIAMOCKACCESSKEY", "secret": MOCK_SECRET_VALUES[0],
                "sesSmtpPasswordV4": MOCK_SECRET_VALUES[2]}
    if type_ == "random:index/randomPassword:RandomPassword":
        return {"result": MOCK_SECRET_VALUES[1]}
    if type_ == "random:index/randomId:RandomId":
        return mock_random_id(name, inputs)
    if type_ == "random:index/randomString:RandomString":
        return {"result": "mockrandomstring"}
    if type_ in ("aws:iam/role:Role", "aws:iam/user:User", "aws:iam/policy:Policy"):
        kind = type_.split(":")[-1].lower()
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:{kind}/{inputs.get('name') or name}",
                "name": inputs.get("name") or name}
    if type_ == "aws:cloudwatch/logGroup:LogGroup":
        group = inputs.get("name") or f"{name}-0a1b2c"
        return {"arn": _arn("logs", f"log-group:{group}", region), "name": group}
    if type_ == "aws:acm/certificate:Certificate":
        domain = inputs.get("domainName", name)
        return {"arn": _arn("acm", f"certificate/{name}-0000-1111-2222-333344445555", region),
                "domainValidationOptions": [{
                    "domainName": domain, "resourceRecordName": f"_0a1b2c3d.{domain}.",
                    "resourceRecordType": "CNAME", "resourceRecordValue": f"_4e5f6a7b.{name}.acm-validations.aws."}]}
    if type_ == "aws:acm/certificateValidation:CertificateValidation":
        return {"certificateArn": inputs.get("certificateArn")}
    if type_ == "aws:route53/record:Record":
        return {"fqdn": inputs.get("name")}
    if type_ == "aws:sesv2/emailIdentity:EmailIdentity":
        identity = inputs.get("emailIdentity", name)
        out: dict[str, Any] = {"arn": _arn("ses", f"identity/{identity}", region),
                               "identityType": "EMAIL_ADDRESS" if "@" in identity else "DOMAIN"}
        if "@" not in identity:
            out["dkimSigningAttributes"] = {**(inputs.get("dkimSigningAttributes") or {}),
                                            "tokens": list(MOCK_DKIM_TOKENS)}
        return out
    if type_ == "aws:sesv2/configurationSet:ConfigurationSet":
        return {"arn": _arn("ses", f"configuration-set/{inputs.get('configurationSetName', name)}", region)}
    if type_ == "aws:guardduty/detector:Detector":
        return {"id": "mockdetector0123456789abcdef", "arn": _arn("guardduty", "detector/mockdetector", region)}
    if type_ == "aws:route53/zone:Zone":
        return {"zoneId": f"Z{name.upper().replace('-', '')[:12]}", "nameServers": [
            "ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk", "ns-3.awsdns-03.com", "ns-4.awsdns-04.net"]}
    if type_ == "aws:route53/keySigningKey:KeySigningKey":
        # key tag, algorithm 13 (ECDSA P-256 SHA-256), digest type 2 (SHA-256), digest
        return {"dsRecord": f"40523 13 2 {'0a1b2c3d' * 8}", "keyTag": 40523}
    if type_ == "aws:backup/vault:Vault":
        vault = inputs.get("name") or name
        return {"arn": _arn("backup", f"backup-vault:{vault}", region), "name": vault}
    if type_ in COMPUTE_OUTPUTS:
        return COMPUTE_OUTPUTS[type_](name, inputs, region)
    return {"arn": arn}


def mock_random_id(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A RandomId's value: fixed per logical name and keepers (a new value exactly where the
    provider would draw a new one), so two RandomIds never share a value by accident."""
    import base64
    import hashlib

    size = int(inputs.get("byteLength") or 4)
    seed = json.dumps([name, inputs.get("keepers") or {}], sort_keys=True).encode()
    raw = hashlib.sha256(seed).digest()[:size]
    return {"hex": raw.hex(), "b64Std": base64.b64encode(raw).decode(),
            "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("="), "dec": str(int.from_bytes(raw, "big"))}


def mock_invocation_result(inputs: dict[str, Any]) -> str:
    """What each of the program's functions answers when its invocation is created (the mocks see
    no previous input, so the upgrade functions answer as on a stage's first deployment)."""
    event = json.loads(inputs.get("input") or "{}")
    function = str(inputs.get("functionName") or "")
    if event.get("mode") == "smoke":  # a passing post-deploy smoke check
        checks = (("health", "/healthz", 200), ("redcap page", "/", 200),
                  ("cron refused without the secret", "/cron.php", 403), ("cron accepted with the secret", "/cron.php", 200))
        return json.dumps({"mode": "smoke", "site": event.get("siteUrl"), "ok": True, "checks": [
            {"name": n, "method": "GET", "path": p, "expected": st, "status": st, "ok": True, "ms": 50, "detail": ""}
            for n, p, st in checks]})
    if function.endswith("-upgrade-snapshot"):
        return json.dumps({"action": "create", "previousRelease": None, "release": event.get("release"),
                           "snapshotIdentifier": "", "status": "no-snapshot"})
    if function.endswith("-db-upgrade"):
        return json.dumps({"from": event.get("release"), "release": event.get("release"), "status": "current",
                           "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/redcap-upgrade/0a1b2c3d",
                           "to": event.get("release")})
    if function.endswith("-rollout-check"):
        serving = event.get("taskDefinition") or event.get("image")
        return json.dumps({"detail": "2 task(s) running", "runtime": event.get("runtime"), "serving": serving,
                           "status": "rolledOut"})
    if function.endswith("-db-iam-auth"):
        return json.dumps({"changed": True, "clusterIdentifier": event.get("clusterIdentifier"),
                           "iamDatabaseAuthenticationEnabled": True})
    return json.dumps({"imageTag": event.get("imageTag"), "status": "built"})


# Compute (issue 4): what the provider computes for the image pipeline, App Runner, ECS and EC2.
MOCK_APPRUNNER_VALIDATION_RECORDS = (
    # One for the domain and one for the name App Runner adds to its certificate; deliberately
    # unsorted and with a repeat: the program sorts and de-duplicates them.
    {"name": "_b2.2a57j78h.redcap.example.org.", "type": "CNAME", "value": "_v2.acm-validations.aws.",
     "status": "PENDING"},
    {"name": "_a1.redcap.example.org.", "type": "CNAME", "value": "_v1.acm-validations.aws.", "status": "PENDING"},
    {"name": "_a1.redcap.example.org.", "type": "CNAME", "value": "_v1.acm-validations.aws.", "status": "PENDING"},
)
# The Express service's AWS-managed endpoint and its managed (internal) load balancer.
MOCK_EXPRESS_ENDPOINT = "re-0a1b2c3d4e5f.ecs.{region}.on.aws"
MOCK_EXPRESS_LOAD_BALANCER = "loadbalancer/app/ecs-express-gateway-alb-0a1b2c3d/50dc6c495c0c9188"
# CloudFront's alias hosted zone (the same for every distribution).
CLOUDFRONT_ZONE_ID = "Z2FDTNDATAQYW2"
COMPUTE_OUTPUTS: dict[str, Callable[[str, dict[str, Any], str], dict[str, Any]]] = {
    "aws:ecr/repository:Repository": lambda name, inputs, region: {
        "arn": _arn("ecr", f"repository/{inputs.get('name', name)}", region), "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{inputs.get('name', name)}"},
    "aws:codebuild/project:Project": lambda name, inputs, region: {
        "arn": _arn("codebuild", f"project/{inputs.get('name', name)}", region)},
    "aws:lambda/function:Function": lambda name, inputs, region: {
        "arn": _arn("lambda", f"function:{inputs.get('name', name)}", region),
        "invokeArn": f"arn:aws:apigateway:{region}:lambda:path/functions/{inputs.get('name', name)}/invocations"},
    "aws:lambda/invocation:Invocation": lambda name, inputs, region: {"result": mock_invocation_result(inputs)},
    "aws:apprunner/service:Service": lambda name, inputs, region: {
        "arn": _arn("apprunner", f"service/{inputs.get('serviceName', name)}/0123456789abcdef", region),
        "serviceId": "0123456789abcdef", "serviceUrl": f"mock{name.replace('-', '')}.{region}.awsapprunner.com"},
    "aws:apprunner/customDomainAssociation:CustomDomainAssociation": lambda name, inputs, region: {
        "dnsTarget": f"mockredcapservice.{region}.awsapprunner.com",
        "certificateValidationRecords": [dict(r) for r in MOCK_APPRUNNER_VALIDATION_RECORDS]},
    "aws:lb/loadBalancer:LoadBalancer": lambda name, inputs, region: {
        "arn": _arn("elasticloadbalancing", f"loadbalancer/app/{inputs.get('name', name)}/50dc6c495c0c9188", region),
        "arnSuffix": f"app/{inputs.get('name', name)}/50dc6c495c0c9188", "zoneId": "Z35SXDOTRQ7X7K",
        "dnsName": f"{inputs.get('name', name)}-1234567890.{region}.elb.amazonaws.com"},
    "aws:lb/targetGroup:TargetGroup": lambda name, inputs, region: {
        "arn": _arn("elasticloadbalancing", f"targetgroup/{name}/73e2d6bc24d8a067", region),
        "arnSuffix": f"targetgroup/{name}/73e2d6bc24d8a067"},
    "aws:ecs/cluster:Cluster": lambda name, inputs, region: {
        "arn": _arn("ecs", f"cluster/{inputs.get('name', name)}", region)},
    "aws:ecs/service:Service": lambda name, inputs, region: {
        "arn": _arn("ecs", f"service/{str(inputs.get('cluster', 'default')).rsplit('/', 1)[-1]}/{inputs.get('name', name)}",
                    region)},
    "aws:ecs/taskDefinition:TaskDefinition": lambda name, inputs, region: {
        "arn": _arn("ecs", f"task-definition/{inputs.get('family', name)}:1", region), "revision": 1},
    "aws:ec2/instance:Instance": lambda name, inputs, region: {
        "id": "i-0123456789abcdef0", "arn": _arn("ec2", "instance/i-0123456789abcdef0", region),
        "privateIp": "10.0.2.10"},
    "aws:wafv2/webAcl:WebAcl": lambda name, inputs, region: {
        "arn": _arn("wafv2", f"{'regional' if inputs.get('scope', 'REGIONAL') == 'REGIONAL' else 'global'}/webacl/{name}-0a1b2c/"
                             f"a1b2c3d4-0000-1111-2222-333344445555", region)},
    "aws:ecs/expressGatewayService:ExpressGatewayService": lambda name, inputs, region: {
        "serviceArn": _arn("ecs", f"service/{inputs.get('cluster', 'default')}/{inputs.get('serviceName', name)}", region),
        "serviceRevisionArn": _arn("ecs", f"service-revision/{inputs.get('serviceName', name)}/1", region),
        "ingressPaths": [{"accessType": "PRIVATE", "endpoint": MOCK_EXPRESS_ENDPOINT.format(region=region)}]},
    "aws:cloudfront/vpcOrigin:VpcOrigin": lambda name, inputs, region: {
        "id": "vo_0mockvpcorigin", "arn": f"arn:aws:cloudfront::{ACCOUNT_ID}:vpcorigin/vo_0mockvpcorigin"},
    "aws:cloudfront/function:Function": lambda name, inputs, region: {
        "arn": f"arn:aws:cloudfront::{ACCOUNT_ID}:function/{inputs.get('name', name)}"},
    "aws:cloudfront/distribution:Distribution": lambda name, inputs, region: {
        "id": "E0MOCKDISTRIB", "arn": f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E0MOCKDISTRIB",
        "domainName": "d111111abcdef8.cloudfront.net", "hostedZoneId": CLOUDFRONT_ZONE_ID},
    "aws:s3/bucketObjectv2:BucketObjectv2": lambda name, inputs, region: {
        "versionId": f"v-{name}-0001", "etag": f'"{name}-etag"'},
    "aws:signer/signingProfile:SigningProfile": lambda name, inputs, region: {
        "arn": _arn("signer", f"/signing-profiles/{inputs.get('name', name)}", region),
        "versionArn": _arn("signer", f"/signing-profiles/{inputs.get('name', name)}/abcdEFGH12", region),
        "version": "abcdEFGH12"},
    # Signer names the signed copy after its job id, under the destination prefix.
    "aws:signer/signingJob:SigningJob": lambda name, inputs, region: {
        "jobId": f"{name}-job-0001", "signedObjects": [{"s3s": [{
            "bucket": inputs["destination"]["s3"]["bucket"],
            "key": f"{inputs['destination']['s3'].get('prefix', '')}{name}-job-0001.zip"}]}]},
    "docker:index/image:Image": lambda name, inputs, region: {
        "repoDigest": f"{str(inputs.get('imageName', name)).split(':')[0]}@sha256:{'ab' * 32}"},
}


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
        if args.typ == "pulumi:pulumi:StackReference":
            # The SDK reads a StackReference as a resource whose `outputs` hold the other stack's exports.
            return args.name, {"name": args.name, "outputs": stack_reference_outputs(args.name),
                               "secretOutputNames": []}
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
            return {"names": [f"{self.region}a", f"{self.region}b"], "zoneIds": list(mock_zone_ids(self.region))}
        if token == "aws:ec2/getSubnet:getSubnet":
            subnet = args.args.get("id", "")
            return {"id": subnet, "vpcId": "vpc-0mock", **mock_subnet_zones(self.region).get(subnet, {})}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            # Default: every type in every zone. Tests narrow it with call_overrides.
            types = [v for f in args.args.get("filters") or [] if f.get("name") == "instance-type"
                     for v in f.get("values") or []]
            locations = list(mock_zone_ids(self.region))
            return {"instanceTypes": [t for t in types for _ in locations], "locations":
                    [z for _ in types for z in locations], "locationTypes": ["availability-zone-id"] * (len(types) * len(locations)),
                    "id": self.region}
        if token == "aws:ec2/getRouteTables:getRouteTables":
            # Deliberately unsorted: the program must sort them.
            return {"ids": ["rtb-0c", "rtb-0a", "rtb-0b"]}
        if token == "aws:route53/getZone:getZone":
            zone = args.args.get("name", "example.org")
            return {"zoneId": "ZEXISTINGZONE", "name": zone, "id": "ZEXISTINGZONE",
                    "nameServers": ["ns-9.awsdns-09.org", "ns-8.awsdns-08.com"]}
        if token == "aws-native:ecs:getExpressGatewayService":
            service_arn = args.args.get("serviceArn", "")
            region = service_arn.split(":")[3] if service_arn.count(":") > 3 else self.region
            return {"serviceArn": service_arn, "endpoint": MOCK_EXPRESS_ENDPOINT.format(region=region),
                    "ecsManagedResourceArns": {"ingressPath": {
                        "loadBalancerArn": _arn("elasticloadbalancing", MOCK_EXPRESS_LOAD_BALANCER, region),
                        "listenerArn": _arn("elasticloadbalancing", "listener/app/ecs-express-gateway-alb/443", region),
                        "listenerRuleArn": _arn("elasticloadbalancing", "listener-rule/app/ecs-express-gateway-alb/1", region),
                        "targetGroupArns": [_arn("elasticloadbalancing", "targetgroup/ecs-express-tg/1", region)],
                        "loadBalancerSecurityGroups": ["sg-0managedalb"],
                        "certificateArn": _arn("acm", "certificate/express-managed", region)}}}
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0mockal2023", "imageId": "ami-0mockal2023"}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "mock-ecr-password", "proxyEndpoint": "https://mock.ecr"}
        if token == "aws:ssm/getParameter:getParameter":
            return {"value": "ami-0mockal2023", "name": args.args.get("name"), "type": "String"}
        if token == "aws:s3/getObject:getObject":
            return {"bucket": args.args.get("bucket"), "key": args.args.get("key"), "etag": '"9b2cf535f27731c974343645a3985328"',
                    "contentType": "application/zip", "body": ""}
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records the resource options that `Mocks.new_resource` cannot see."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []
        self.reads: list[Recorded] = []

    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().ReadResource(request)
        from pulumi.runtime import rpc

        registration = self.resources.get(response.urn)
        self.reads.append(Recorded(
            urn=response.urn, type=request.type, name=request.name, custom=True,
            inputs=_plain(rpc.deserialize_properties(request.properties)), id=request.id,
            outputs=_plain(dict(registration.state)) if registration else {}, parent=request.parent))
        return response

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
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            additional_secret_outputs=list(request.additionalSecretOutputs),
            delete_before_replace=request.deleteBeforeReplace,
            remote=request.remote,
            provider=request.provider,
            transforms=len(request.transforms),
            aliases=[_alias(a) for a in request.aliases] + list(request.aliasURNs),
            replace_on_changes=list(request.replaceOnChanges),
            deleted_with=request.deletedWith,
            custom_timeouts={k: getattr(request.customTimeouts, k) for k in ("create", "update", "delete")
                             if getattr(request.customTimeouts, k)},
        ))
        return response


def _alias(alias: Any) -> str | dict[str, Any]:
    """An alias as the program gave it: a URN, or a spec whose missing parts are the resource's own
    (resolved by tests/transitions.py, which knows the engine's URN scheme)."""
    if alias.urn:
        return alias.urn
    spec = alias.spec
    return {"name": spec.name, "type": spec.type, "stack": spec.stack, "project": spec.project,
            "parent": spec.parentUrn, "noParent": spec.noParent}


def _plain(value: Any) -> Any:
    """Deep copy without SDK objects (resource references become their URN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return getattr(value, "_mock_urn", repr(value))
    if isinstance(value, (pulumi.Asset, pulumi.Archive)):
        return _asset_fingerprint(value)
    return value


def _asset_fingerprint(value: Any) -> dict[str, Any]:
    """Assets as Pulumi compares them: by content, not by path or object identity."""
    import hashlib

    if isinstance(value, pulumi.FileAsset):
        return {"fileAsset": hashlib.sha256(Path(value.path).read_bytes()).hexdigest()}
    if isinstance(value, pulumi.StringAsset):
        return {"stringAsset": hashlib.sha256(value.text.encode()).hexdigest()}
    if isinstance(value, pulumi.AssetArchive):
        return {"assetArchive": {k: _plain(v) for k, v in sorted(value.assets.items())}}
    if isinstance(value, pulumi.FileArchive):
        root = Path(value.path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        return {"fileArchive": digest.hexdigest()}
    return {"asset": repr(value)}


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
                call_overrides: Optional[dict[str, Callable[[dict], dict]]] = None,
                stack_name: Optional[str] = None) -> StackRun:
    """Evaluate `__main__.py` with the config of `Pulumi.<stack>.yaml` (+ overrides) and return every
    registration and the stack outputs. `stack_name` runs it as another stack (the program's
    per-stage names and URNs follow it), as a copy of the stack file would be."""
    config, secret_keys = load_stack_config(stack, overrides, root)
    region = config.get("aws:region", "us-east-1")
    mocks = RecordingMocks(region, call_overrides)
    monitor = RecordingMonitor(mocks)

    pulumi_settings.set_root_resource(None)
    pulumi.runtime.set_all_config(config, secret_keys)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack_name or stack, preview=False, monitor=monitor)
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
    return StackRun(stack=stack_name or stack, resources=list(monitor.recorded), outputs=outputs,
                    secret_outputs=secret_outputs, config=config, reads=list(monitor.reads))


_RUN_CACHE: dict[str, StackRun] = {}


def cached_run(stack: str, overrides: Optional[dict[str, Any]] = None, *,
               stack_name: Optional[str] = None) -> StackRun:
    """run_program, evaluated once per (stack, overrides, stack_name) in this test session.

    For tests that only read the result. Tests that change the environment (monkeypatch) or that
    need a fresh evaluation (determinism) call run_program.
    """
    key = json.dumps([stack, overrides or {}, stack_name or stack], sort_keys=True, default=repr)
    if key not in _RUN_CACHE:
        _RUN_CACHE[key] = run_program(stack, overrides, stack_name=stack_name)
    return _RUN_CACHE[key]


def depends_on(run: StackRun, r: Recorded, urn: str) -> bool:
    """Whether `r` waits for `urn`: directly, through an input, or through what it depends on."""
    index = {x.urn: x for x in run.resources}
    seen, todo = set(), [r.urn]
    while todo:
        current = index.get(todo.pop())
        if current is None or current.urn in seen:
            continue
        seen.add(current.urn)
        deps = set(current.dependencies) | {d for ds in current.property_dependencies.values() for d in ds}
        if urn in deps:
            return True
        todo.extend(deps)
    return False


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
