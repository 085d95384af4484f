"""Plain data model the policy rules work on.

Every rule in this pack is a pure function over `Resource` values. A `Resource` can be built from
three sources, and all three give the same shape (Pulumi *wire format*: camelCase keys, numbers as
floats, secrets possibly wrapped, unknown values as sentinel strings):

* the unit-test harness (pulumi.runtime.set_mocks): `MockResourceArgs.inputs` plus the id and
  outputs the mock returned and the recorded resource options;
* `pulumi_policy.ResourceValidationArgs` (one resource, inputs, during preview/up);
* `pulumi_policy.PolicyResource` inside a stack validation (outputs of every resource).

`normalize` turns all of those into plain dicts/lists: secrets are unwrapped (policies need the
value, never print it), CrossGuard's unknown-checking proxies are bypassed, and every "unknown
during preview" sentinel becomes the single `UNKNOWN` object so rules can treat it explicitly.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

# Pulumi's wire-format signature for a secret value: {SIG_KEY: SECRET_SIG, "value": ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# The sentinels the engine (and pulumi.runtime.rpc.UNKNOWN) use for values unknown at preview:
# boolean, number, string, array, asset, archive, object.
_UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
    "030794c1-ac77-496b-92df-f27374a8bd58",
    "e48ece36-62e2-4504-bad9-02848725956a",
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
})

# The class names of pulumi_policy's unknown-checking proxies. Matched by name so this module
# does not need pulumi_policy (the harness imports it without a policy runtime).
_PROXY_CLASS_NAMES = frozenset({"_DictProxy", "_ListProxy", "_DictSecretsProxy", "_ListSecretsProxy"})


class _Unknown:
    """Marker for a value that is not known yet (preview of a resource that does not exist)."""

    _instance: Optional["_Unknown"] = None

    def __new__(cls) -> "_Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        # Truthiness of an unknown is a bug in a rule; make it loud instead of silently False.
        raise TypeError("UNKNOWN has no truth value; test it with is_unknown()")


UNKNOWN = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def _unproxy(value: Any) -> Any:
    """Return the raw container behind a pulumi_policy proxy without triggering unknown checks."""
    if type(value).__name__ in _PROXY_CLASS_NAMES:
        return value["__target"]
    return value


def normalize(value: Any) -> Any:
    """Convert any wire-format value into plain Python data (see module docstring)."""
    value = _unproxy(value)
    if isinstance(value, str):
        return UNKNOWN if value in _UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        if value.get(SIG_KEY) == SECRET_SIG:
            return normalize(value.get("value"))
        return {str(k): normalize(value[k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [normalize(item) for item in value]
    if type(value).__name__ == "Secret" and hasattr(value, "value"):
        return normalize(value.value)
    return value


def dig(data: Any, path: str) -> Any:
    """Follow a dotted path ("rootBlockDevice.encrypted") through dicts; None when absent.

    A list along the way is looked into only when it has exactly one element: Terraform-bridged
    "MaxItemsOne" blocks are single objects in v7, but some older shapes still arrive as lists.
    """
    current = data
    for key in path.split("."):
        if is_unknown(current):
            return UNKNOWN
        if isinstance(current, list) and len(current) == 1:
            current = current[0]
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def as_list(value: Any) -> list[Any]:
    """IAM and bridged inputs accept either a scalar or a list; rules always iterate."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def is_true(value: Any) -> bool:
    """True for a real boolean true (or the string "true" some launch-template fields use)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def is_set(value: Any) -> bool:
    """A value is set when it is present and non-empty; an unknown value counts as set
    (during preview it is a reference to something that will exist, e.g. a key's ARN)."""
    if value is None:
        return False
    if isinstance(value, (str, list, dict)) and len(value) == 0:
        return False
    return True


def true_or_unknown(value: Any) -> bool:
    """For boolean requirements: unknown cannot be judged at preview and is checked at `up`."""
    return is_unknown(value) or is_true(value)


def make_urn(resource_type: str, name: str, stack: str = "stack", project: str = "project") -> str:
    return f"urn:pulumi:{stack}::{project}::{resource_type}::{name}"


@dataclass(frozen=True, eq=False)
class Resource:
    """One resource as the rules see it.

    `props` are the inputs in wire format (for a stack validation in a real `pulumi preview`
    they are the engine's recorded properties, which for bridged AWS resources contain the
    inputs). `outputs` and `id` come from the mock (tests) or the engine (stack validation) and
    are used only to match references between resources.
    """

    type: str
    name: str
    urn: str = ""
    props: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    id: Optional[str] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    parent: Optional[str] = None
    dependencies: tuple[str, ...] = ()
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "props", normalize(self.props or {}))
        object.__setattr__(self, "outputs", normalize(self.outputs or {}))
        object.__setattr__(self, "options", dict(self.options or {}))
        if not self.urn:
            object.__setattr__(self, "urn", make_urn(self.type, self.name))
        if self.parent is None and isinstance(self.options.get("parent"), str):
            object.__setattr__(self, "parent", self.options["parent"])
        object.__setattr__(self, "dependencies", tuple(self.dependencies or ()))
        object.__setattr__(
            self,
            "property_dependencies",
            {str(k): tuple(v) for k, v in (self.property_dependencies or {}).items()},
        )

    @classmethod
    def from_mock(
        cls,
        type: str,  # noqa: A002 - the harness's name for the type token
        name: str,
        inputs: Mapping[str, Any],
        outputs: Optional[Mapping[str, Any]] = None,
        id: Optional[str] = None,  # noqa: A002
        options: Optional[Mapping[str, Any]] = None,
        urn: str = "",
        dependencies: Iterable[str] = (),
        property_dependencies: Optional[Mapping[str, Iterable[str]]] = None,
    ) -> "Resource":
        """Build from what a mock-recording harness has: `MockResourceArgs.inputs`, the id and
        outputs the mock returned, and the recorded options (a `parent` URN is used for awsx)."""
        options = dict(options or {})
        parent = options.get("parent") or None
        return cls(
            type=type, name=name, urn=urn, props=inputs, outputs=outputs or {}, id=id, options=options,
            parent=parent if isinstance(parent, str) else None, dependencies=tuple(dependencies),
            property_dependencies={k: tuple(v) for k, v in (property_dependencies or {}).items()},
        )

    @property
    def label(self) -> str:
        """How messages name a resource: its type token and logical name."""
        return f"{self.type} '{self.name}'"

    def get(self, path: str) -> Any:
        return dig(self.props, path)


def region_of(res: Resource) -> Optional[str]:
    """The AWS region a resource lives in, when something says so: the provider's region (a
    CrossGuard resource validation passes it in the options), the resource's own `region`
    (pulumi-aws 7 records it), or the region field of its ARN."""
    for candidate in (res.options.get("providerRegion"), res.props.get("region"), res.outputs.get("region")):
        if isinstance(candidate, str) and candidate:
            return candidate
    for source in (res.outputs, res.props):
        arn = source.get("arn")
        if isinstance(arn, str) and arn.startswith("arn:"):
            parts = arn.split(":")
            if len(parts) > 3 and parts[3]:
                return parts[3]
    return None


def identifiers(res: Resource) -> frozenset[str]:
    """Every string another resource may use to refer to `res` (id, ARN, bucket name, ...)."""
    candidates: list[Any] = [res.id, res.urn]
    for source in (res.outputs, res.props):
        for key in ("id", "arn", "serviceArn"):
            candidates.append(source.get(key))
    if res.type in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        for source in (res.outputs, res.props):
            bucket_name = source.get("bucket")
            if isinstance(bucket_name, str):
                candidates.extend([bucket_name, f"arn:aws:s3:::{bucket_name}"])
        if isinstance(res.id, str):
            candidates.append(f"arn:aws:s3:::{res.id}")
    if res.type == "awsx:lb:ApplicationLoadBalancer":
        candidates.extend([dig(res.outputs, "loadBalancer.arn"), dig(res.outputs, "loadBalancer.id")])
    return frozenset(c for c in candidates if isinstance(c, str) and c)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for item in value for v in _strings(item)]
    return []


def refers_to(source: Resource, path: str, target: Resource) -> bool:
    """Does `source`'s property at `path` reference `target`?

    First choice is the engine's property dependencies (URNs), which are known even in a preview
    where the target's id is still unknown. Fallback: compare the property's value with the
    target's id / ARN / name (what the mocks and a real `up` give). ARN values may carry a
    "/prefix" suffix (flow-log or WAF-log destinations), which still points at the target.
    """
    top_level = path.split(".")[0]
    if target.urn in source.property_dependencies.get(top_level, ()):
        return True
    wanted = identifiers(target)
    for value in _strings(dig(source.props, path)):
        if value in wanted:
            return True
        if any(value.startswith(ident + "/") for ident in wanted if ident.startswith("arn:")):
            return True
    return False


def referrers(resources: Iterable[Resource], types: Iterable[str], path: str, target: Resource) -> list[Resource]:
    """All resources of `types` whose `path` refers to `target`."""
    wanted_types = frozenset(types)
    return [r for r in resources if r.type in wanted_types and refers_to(r, path, target)]


@dataclass(frozen=True)
class Violation:
    """One finding. `message` names the resource and says what to change."""

    rule: str
    resource_type: str
    resource_name: str
    urn: str
    message: str

    @classmethod
    def of(cls, rule: str, res: Resource, problem: str) -> "Violation":
        return cls(rule, res.type, res.name, res.urn, f"{res.label}: {problem}")
