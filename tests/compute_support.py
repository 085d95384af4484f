"""Stack runs shared by the compute tests (issue 4), evaluated once per test session.

Variants (besides the committed prod stack):
- dev-apprunner: the committed dev stack with App Runner instead of its express block (the file
  itself runs Express: the "express" variant, covered by tests/test_express.py);
- prod: the committed prod stack once its zone is delegated (`zoneDelegated: true`, phase two:
  certificate, ECS service and site record; the file itself is phase one, docs/domains.md);
- apprunner-domain: prod's zone (redcap.example.org, a zone of its own: apex alias record) with
  App Runner instead of ECS, delegated, cron every 5 minutes;
- apprunner-cname: dev with redcap.example.org in the existing zone example.org (below the zone
  apex, where the original wrote a CNAME), the tunnel host, and dbAuth password;
- ecs-local: ECS with a certificate ARN and no Route53, port 9090, imageBuild local from a fake
  releases/redcap15.0.9.zip (made in a temporary folder, never committed).
"""
from __future__ import annotations

import functools
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import pytest

import settings
from components.firewall import cron_search_string
from harness import MOCK_SECRET_VALUES, Recorded, StackRun, all_strings, run_program, unwrap_secrets
from policy.model import SIG_KEY, Resource
from policy.rules import violations_for

CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dev-apprunner": ("dev", {"express": None}),
    "prod": ("prod", {"zoneDelegated": True}),
    "apprunner-domain": ("prod", {"ecs": None, "cronMinutes": 5, "zoneDelegated": True}),
    "apprunner-cname": ("dev", {"domain": "redcap.example.org", "hostInRoute53": "example.org",
                                "ec2ServerStack": {"durationHours": 2.5}, "dbAuth": "password", "express": None}),
    "express": ("dev", {}),
    "express-zone-tunnel": ("dev", {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True,
                                    "zoneDelegated": True,
                                    "ec2ServerStack": {"durationHours": 2}, "cronMinutes": 3}),
    "express-eu-cert": ("prod", {"aws:region": "eu-west-1", "ecs": None, "hostInRoute53": False, "zoneDelegated": None,
                                 "dnssec": None, "dnsQueryLogging": None, "bounceNotificationEmail": None,
                                 "express": {"cpu": "4 vCPU", "memory": "8 GB", "certificateArn": CERTIFICATE_ARN,
                                             "scaling": {"minContainers": 2, "maxContainers": 4,
                                                         "metric": "requests", "target": 250}}}),
    "ecs-local": ("dev", {"express": None, "ecs": {"cpu": "1 vCPU", "memory": "2 GB", "certificateArn": CERTIFICATE_ARN,
                                  "scaling": {"minContainers": 1, "maxContainers": 3, "requestsPerContainer": 100,
                                              "cpuUtilization": 60, "memoryUtilization": 80}},
                          "domain": "redcap.example.org", "hostInRoute53": False, "port": 9090, "cronMinutes": 2,
                          "imageBuild": "local", "redCapS3Path": None, "redCapLocalVersion": "redcap15.0.9"}),
}
# The generated cron secret under mocks is the RandomPassword mock value.
CRON_HMAC = cron_search_string(MOCK_SECRET_VALUES[1])


def fake_releases() -> Path:
    """A releases/ folder with a tiny REDCap zip and an RDS CA bundle stand-in."""
    folder = Path(tempfile.mkdtemp(prefix="redcap-releases-"))
    with zipfile.ZipFile(folder / "redcap15.0.9.zip", "w") as archive:
        archive.writestr("redcap/index.php", "<?php echo 'fake REDCap';\n")
    (folder / "rds-ca-bundle.pem").write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    return folder


@functools.cache
def releases_dir() -> Path:
    return fake_releases()


def run_variant_uncached(variant: str, **kwargs: Any) -> StackRun:
    stack, overrides = VARIANTS[variant]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings.paths, "RELEASES_DIR", releases_dir())
        return run_program(stack, overrides, **kwargs)


@functools.cache
def run_variant(variant: str) -> StackRun:
    return run_variant_uncached(variant)


def policy_of(resource: Recorded, key: str = "policy") -> dict[str, Any]:
    return json.loads(unwrap_secrets(resource.inputs[key]))


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_documents(run: StackRun) -> Iterable[tuple[Recorded, dict[str, Any]]]:
    for res in run.of_type("aws:iam/rolePolicy:RolePolicy") + run.of_type("aws:iam/policy:Policy"):
        yield res, policy_of(res)


def policy_violations(run: StackRun) -> list[str]:
    resources = [Resource.from_mock(type=r.type, name=r.name, inputs=r.inputs, outputs=r.outputs, id=r.id,
                                    options={"parent": r.parent}, urn=r.urn, dependencies=r.dependencies)
                 for r in run.resources]
    return [f"{v.rule}: {v.resource_name}: {v.message}" for v in violations_for(resources)]


def secret_values() -> tuple[str, ...]:
    return (*MOCK_SECRET_VALUES, CRON_HMAC, "mock-ecr-password")


def plain_parts(value: Any) -> Any:
    """The value with every secret-wrapped part (encrypted in state) replaced by a marker."""
    if isinstance(value, dict):
        if SIG_KEY in value:
            return "<secret>"
        return {k: plain_parts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_parts(v) for v in value]
    return value


def leaked_secrets(value: Any) -> list[str]:
    """Secret values found in the plain (not secret-wrapped) parts of an input."""
    texts = list(all_strings(plain_parts(value)))
    return sorted({s for s in secret_values() for t in texts if s in t})



# -- inputs against the installed pulumi-aws 7 schema --------------------------------------------
# The mocks accept any key and any value: a misspelt nested key (`rollbak`) or a bool where the
# provider declares a string would pass every other test and fail only against AWS.

COMPUTE_COMPONENTS = ("redcap:image:", "redcap:runtime:", "redcap:apprunner:", "redcap:ecs:", "redcap:express:", "redcap:cron:",
                      "redcap:tunnel:")


def compute_resources(run: StackRun) -> list[Recorded]:
    """Custom resources below a compute component (image, runtime, App Runner, ECS, cron, tunnel)."""
    by_urn = {r.urn: r for r in run.resources}

    def in_compute(res: Recorded) -> bool:
        parent = by_urn.get(res.parent)
        while parent is not None:
            if parent.type.startswith(COMPUTE_COMPONENTS):
                return True
            parent = by_urn.get(parent.parent)
        return False

    return [r for r in run.resources if r.custom and in_compute(r)]


def _args_class(token: str) -> Any:
    import importlib
    import re
    import sys

    match = re.match(r"aws:([\w/]+)/\w+:(\w+)$", token)
    if not match:
        return None
    module = importlib.import_module("pulumi_aws." + match.group(1).replace("/", ".").replace("lambda", "lambda_"))
    resource = getattr(module, match.group(2))
    module = sys.modules[resource.__module__]
    # A resource whose args name collides with a nested input type calls them <Name>InitArgs.
    return getattr(module, f"{match.group(2)}InitArgs", None) or getattr(module, f"{match.group(2)}Args")


def _scalar_error(value: Any, typ: Any, path: str) -> list[str]:
    expected = {str: (str,), int: (int, float), float: (int, float), bool: (bool,)}[typ]
    wrong = not isinstance(value, expected) or (typ in (int, float) and isinstance(value, bool))
    return [f"{path}: {value!r} is not a {typ.__name__}"] if wrong else []


def schema_errors(value: Any, typ: Any, path: str) -> list[str]:
    """Keys unknown to the input type and scalars of another type, anywhere in `value`
    (camelCase wire names, as recorded)."""
    import collections.abc
    import typing

    from pulumi import _types

    typ = _types.unwrap_type(typ)
    if value is None or (isinstance(value, dict) and SIG_KEY in value):
        return []
    if typ in (str, int, float, bool):
        return _scalar_error(value, typ, path)
    origin = typing.get_origin(typ)
    if isinstance(value, list) and origin in (list, collections.abc.Sequence):
        (inner,) = typing.get_args(typ)
        return [e for i, v in enumerate(value) for e in schema_errors(v, inner, f"{path}[{i}]")]
    if isinstance(value, dict) and _types.is_input_type(typ):
        names = _types.input_type_types(typ)
        errors = []
        for key, item in value.items():
            if key not in names:
                errors.append(f"{path}.{key}: not an argument of {typ.__name__} (has {sorted(names)})")
            else:
                errors.extend(schema_errors(item, names[key], f"{path}.{key}"))
        return errors
    return []


def resource_schema_errors(res: Recorded) -> list[str]:
    cls = _args_class(res.type)
    return schema_errors(unwrap_secrets(res.inputs), cls, res.name) if cls is not None else []


def invoke_schema_errors(token: str, args: dict[str, Any]) -> list[str]:
    """Arguments of a pulumi-aws function call against the function's signature."""
    import importlib
    import inspect
    import re

    from pulumi import _types

    match = re.match(r"aws:(?:([\w/]+)/)?\w+:(\w+)$", token)
    if not match:
        return []
    module = importlib.import_module("pulumi_aws" + (f".{match.group(1).replace('/', '.')}" if match.group(1)
                                                     and match.group(1) != "index" else ""))
    function = getattr(module, re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(2)).lower())
    parameters = inspect.signature(function).parameters
    errors = []
    for key, value in args.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        if name not in parameters:
            errors.append(f"{token}({key}=...): not an argument")
        elif _types.unwrap_type(parameters[name].annotation) in (str, int, float, bool):
            errors.extend(_scalar_error(value, _types.unwrap_type(parameters[name].annotation), f"{token}({key})"))
    return errors


def run_variant_with_calls(variant: str) -> tuple[StackRun, list[tuple[str, dict[str, Any]]]]:
    """A fresh run of `variant` and every provider function call (token, arguments) it made."""
    import harness

    calls: list[tuple[str, dict[str, Any]]] = []
    original = harness.RecordingMocks.call

    def recording(self: Any, args: Any) -> Any:
        calls.append((args.token, dict(args.args)))
        return original(self, args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness.RecordingMocks, "call", recording)
        run = run_variant_uncached(variant)
    return run, calls
