"""What `pulumi up` would do between two runs of the program: the state of run A, the program of run B.

The mocks accept anything and model nothing of the engine or of AWS, so a single run cannot show
that switching a setting deletes a live record or that a replacement hits "already exists". This
module derives, from two recorded runs (tests/harness.py), the steps the Pulumi engine would take
and what AWS would do with them.

Public API (everything else here is internal):

- `transition(before, after) -> Transition`
- `run_transition(stack_file, overrides_before, overrides_after, *, stack_name=None) -> Transition`
  runs the program twice (cached per session) and compares.
- `destroy(before) -> Transition`: what `pulumi destroy` does with that state.
- `Transition`
  - `.steps`: `Step(op, urn, detail)` in the order the engine runs them (see "Order" below);
    ops: create, update, create-replacement, delete-replaced, discard-replaced, delete, discard,
    refused-replace, refused-delete ("discard" = removed from state only, retainOnDelete).
  - `.creates`, `.updates`, `.replaces`, `.deletes`, `.discards`: sets of `(type, name)`;
    `.urns(op)` gives URNs. `.change(type, name)` gives the `Change` of one resource
    (kind, changed keys, keys that force the replacement, delete-before-replace or not).
  - `.refused`: steps the engine refuses (protect); `.collisions`: `Collision(kind, identity, urns, why)`.
  - `.assert_safe()`: raises AssertionError listing every refusal and collision, readably.
  - `.describe()`: the plan as text (what a `pulumi preview` would list).
- `engine_view(run)`: the run with the URNs the engine gives (the mock monitor's differ); steps and
  identities name resources by these URNs.
- `physical_identities(run) -> dict[identity, list[urn]]`: what AWS considers unique per account
  and region (or globally) for each recorded resource, e.g.
  `("route53-record", zone, "redcap.example.org", "A", "")` or `("ses-identity", region, address)`.
- `FORCE_NEW[type token]`: the camelCase inputs whose change replaces the resource (tests/force_new.py).

Writing a transition test (the docs' procedures are sequences of these):

    t = run_transition("prod", {}, {"ecs": None})        # prod switched from ECS to App Runner
    t.assert_safe()                                       # no refused delete, no collision
    assert ("aws:route53/record:Record", "redcap-site") not in t.deletes

    # a procedure step by step: the state after step 1 is the "before" of step 2
    first, second = harness.cached_run("prod", step1), harness.cached_run("prod", step2)
    transition(first, second).assert_safe()
    destroy(second).refused                               # what `pulumi destroy` would refuse

Model (and where each rule comes from):

- Matching: a URN in both runs is the same resource; an after-resource whose `aliases` (or its
  parent's aliases) name a before-URN takes that resource over. Otherwise: create / delete.
- Diff: inputs compared after `ignoreChanges` (the engine keeps the old value of an ignored path).
  An input that depends on a resource which is created or replaced in this update counts as changed
  unless that resource names itself (its name, hence ARN, comes from its inputs): ids, ARNs and
  random values of a new resource are new.
- Replacement: a change of a `FORCE_NEW` input (terraform-provider-aws `ForceNew`, which the bridged
  provider turns into replaces), of a `replaceOnChanges` path, or the provider's conditional rules
  (EC2 `userData` with `userDataReplaceOnChange`).
- Create-before-delete by default; delete-before-replace when the resource asks for it, or when the
  bridge decides it: pulumi-terraform-bridge `nameRequiresDeleteBeforeReplace` makes a replacement
  delete-before-replace when an auto-named `name` input was set explicitly (pulumi-aws
  provider/autonaming.go auto-names every resource's `name` input; `AUTO_NAMED` below).
- protect / retainOnDelete / deletedWith are the engine's: a resource's own value, else its
  parent's (pulumi/pulumi pkg/resource/deploy/source_eval.go `inheritFromParent`; the Python SDK
  also copies `protect` client-side, so the recording already carries it). A delete of a resource
  protected in the state is refused (DeleteStep: "unable to delete resource ... marked for
  protection"); a replacement is refused when the resource is protected in the state AND in the
  program (step_generator: "unprotecting and replacing in a single update" is allowed).
  retainOnDelete: the delete only drops the resource from state.
- Order: steps for registrations in program order (a topological order: a resource registers after
  the outputs it uses), deletes of removed resources and of replaced originals at the END, in
  reverse order of the old state; children before their parent component. A refused step stops
  `pulumi up` there: every step before it has already run.
- Collisions (AWS's view): (a) an identity owned by a removed URN and by a created one: the create
  runs first and hits "already exists", or (Route53 with allowOverwrite, settings that overwrite)
  succeeds, and the old resource's delete at the end then removes what the new one wrote - the
  provider's Route53 delete finds its record by zone+name+type(+set id), not by id; (b) a
  create-before-delete replacement that keeps its identity; (c) two live URNs with one identity.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional

from force_new import FORCE_NEW, conditional_replace_keys
from harness import Recorded, StackRun, cached_run, unwrap_secrets

__all__ = ["FORCE_NEW", "AUTO_NAMED", "Change", "Collision", "Step", "Transition", "destroy", "engine_view",
           "physical_identities", "run_transition", "transition"]

Identity = tuple

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


# --------------------------------------------------------------------------------------------
# Small helpers on URNs and options
# --------------------------------------------------------------------------------------------

def urn_type(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[3]


def _key(urn: str) -> tuple[str, str]:
    return urn_type(urn), urn_name(urn)


def _inherited(run_index: dict[str, Recorded], urn: str, attr: str) -> bool:
    """protect / retainOnDelete as the engine sees them: own value, else the parent's."""
    seen = set()
    while urn in run_index and urn not in seen:
        seen.add(urn)
        value = getattr(run_index[urn], attr)
        if value is not None:
            return bool(value)
        urn = run_index[urn].parent
    return False


_VIEWS: dict[int, tuple[StackRun, StackRun]] = {}


def _engine_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """The engine's URN: the parent's whole type chain (the root stack's excluded) + type + name."""
    chain = type_ if not parent or parent.split("::")[2] == ROOT_STACK_TYPE else f"{parent.split('::')[2]}${type_}"
    return f"urn:pulumi:{stack}::{project}::{chain}::{name}"


def engine_view(run: StackRun) -> StackRun:
    """The run with the URNs the engine gives. The mock monitor chains only the parent's last type
    and keeps the root stack's (`...::pulumi:pulumi:Stack$redcap:email:Email$aws:...`), so a
    change of a grandparent's type, or an alias spec, would not show; this view fixes that, and
    resolves alias specs the way the engine does (a missing part is the resource's own)."""
    if id(run) in _VIEWS and _VIEWS[id(run)][0] is run:
        return _VIEWS[id(run)][1]
    mapping: dict[str, str] = {}
    resources = []
    for r in run.resources:  # a parent registers before its children
        parent = mapping.get(r.parent, "")
        stack, project = r.urn.split("::")[0].removeprefix("urn:pulumi:"), r.urn.split("::")[1]
        urn = _engine_urn(stack, project, parent, r.type, r.name)
        mapping[r.urn] = urn
        aliases = []
        for alias in r.aliases:
            if isinstance(alias, str):
                aliases.append(alias)
                continue
            alias_parent = "" if alias["noParent"] else mapping.get(alias["parent"], alias["parent"]) or parent
            aliases.append(_engine_urn(alias["stack"] or stack, alias["project"] or project, alias_parent,
                                       alias["type"] or r.type, alias["name"] or r.name))
        resources.append(dataclasses.replace(
            r, urn=urn, parent=parent, aliases=aliases,
            dependencies=[mapping.get(d, d) for d in r.dependencies],
            property_dependencies={k: [mapping.get(d, d) for d in v] for k, v in r.property_dependencies.items()},
            deleted_with=mapping.get(r.deleted_with, r.deleted_with)))
    view = dataclasses.replace(run, resources=resources)
    _VIEWS[id(run)] = (run, view)
    return view


def _effective_aliases(after: dict[str, Recorded], urn: str) -> list[str]:
    """Explicit aliases, plus the URN the resource had under each alias of its parent chain."""
    r = after[urn]
    found = list(r.aliases)
    parent = r.parent
    if parent in after:
        for parent_alias in _effective_aliases(after, parent):
            chain = parent_alias.split("::")[2]
            prefix = "" if chain == ROOT_STACK_TYPE else chain + "$"
            head = urn.split("::")[:2]
            found.append("::".join(head + [prefix + r.type, r.name]))
    return found


# --------------------------------------------------------------------------------------------
# Auto-naming: which `name` inputs the bridge generates (and so, set explicitly, forces DBR)
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _sdk_has_optional_name(type_: str) -> bool:
    """pulumi-aws auto-names every resource's TF `name` argument unless it overrides the field
    (provider/autonaming.go); an auto-named input is optional in the SDK, an overridden required
    one (Route53 Record `name`) stays required."""
    if not type_.startswith("aws:"):
        return False
    module, _, cls = type_[len("aws:"):].partition(":")
    module = module.split("/")[0]
    try:
        mod = importlib.import_module(f"pulumi_aws.{module}_" if module in ("lambda",) else f"pulumi_aws.{module}")
        init = getattr(mod, cls)._internal_init
    except (ImportError, AttributeError):
        return False
    return "name" in inspect.signature(init).parameters and \
        "Missing required property 'name'" not in inspect.getsource(init)


class _AutoNamed(dict):
    """AUTO_NAMED[type] -> the auto-named input (for aws: types with an optional `name`)."""

    def __missing__(self, type_: str) -> Optional[str]:
        return "name" if _sdk_has_optional_name(type_) else None

    def get(self, type_: str, default: Any = None) -> Any:  # type: ignore[override]
        value = self[type_]
        return default if value is None else value


AUTO_NAMED: dict[str, Optional[str]] = _AutoNamed({
    # pulumi-aws overrides that auto-name another input (resources.go): the S3 bucket name.
    "aws:s3/bucket:Bucket": "bucket",
})


# --------------------------------------------------------------------------------------------
# Physical identities
# --------------------------------------------------------------------------------------------

# Collision policies: what AWS does when a second resource with the identity is created, and what
# the delete of either one removes.
UNIQUE = "unique"          # create fails "already exists"; delete removes only its own
UPSERT = "upsert"          # Route53 record: allowOverwrite upserts, otherwise create fails; delete finds by name
SETTING = "setting"        # a setting of another resource (put overwrites; delete removes the setting)
ADOPT = "adopt"            # create is an upsert/idempotent (PutRule, CreateTopic, PutMetricAlarm); delete removes
REVISION = "revision"      # same name makes a new revision (ECS family, App Runner configurations)
SNAPSHOT = "snapshot"      # a name taken when the resource is deleted (final snapshots) and kept after


@dataclass(frozen=True)
class IdentityRule:
    kind: str
    props: tuple[str, ...]           # inputs that make up the identity (after the scope)
    scope: str = "region"            # "region" (per account and region) or "global" (per account or world)
    policy: str = UNIQUE
    optional: tuple[str, ...] = ()   # props that may be absent (default "")
    lower: tuple[str, ...] = ()      # props AWS compares case-insensitively
    dns: tuple[str, ...] = ()        # DNS names: lower-case, no trailing dot


def _r(kind: str, *props: str, **kw: Any) -> IdentityRule:
    return IdentityRule(kind, tuple(props), **kw)


# One entry per type with a physical name the program (or a future component) can set. A type
# without an entry has no name AWS would refuse twice: ids are server-assigned (KMS keys, security
# groups without a name, instances, certificates) or Pulumi auto-names it with a random suffix.
# Route53 zones are deliberately absent: AWS allows several zones with one name (each gets its own
# id and name servers), so two stages' zones never collide; records inside them are keyed by zone.
IDENTITY_RULES: dict[str, IdentityRule] = {
    "aws:route53/record:Record": _r("route53-record", "zoneId", "name", "type", "setIdentifier", scope="global",
                                    policy=UPSERT, optional=("setIdentifier",), dns=("name",)),
    "aws:sesv2/emailIdentity:EmailIdentity": _r("ses-identity", "emailIdentity", lower=("emailIdentity",)),
    "aws:ses/emailIdentity:EmailIdentity": _r("ses-identity", "email", lower=("email",)),
    "aws:ses/domainIdentity:DomainIdentity": _r("ses-identity", "domain", lower=("domain",)),
    "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes":
        _r("ses-mail-from", "emailIdentity", policy=SETTING, lower=("emailIdentity",)),
    "aws:sesv2/emailIdentityPolicy:EmailIdentityPolicy": _r("ses-identity-policy", "emailIdentity", "policyName",
                                                             policy=SETTING),
    "aws:sesv2/configurationSet:ConfigurationSet": _r("ses-configuration-set", "configurationSetName"),
    "aws:ses/configurationSet:ConfigurationSet": _r("ses-configuration-set", "name"),
    "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination":
        _r("ses-event-destination", "configurationSetName", "eventDestinationName"),
    "aws:iam/role:Role": _r("iam-role", "name", scope="global", lower=("name",)),
    "aws:iam/user:User": _r("iam-user", "name", scope="global", lower=("name",)),
    "aws:iam/policy:Policy": _r("iam-policy", "name", scope="global"),
    "aws:iam/group:Group": _r("iam-group", "name", scope="global", lower=("name",)),
    "aws:iam/instanceProfile:InstanceProfile": _r("iam-instance-profile", "name", scope="global"),
    "aws:iam/rolePolicy:RolePolicy": _r("iam-role-policy", "role", "name", scope="global", policy=SETTING),
    "aws:iam/userPolicy:UserPolicy": _r("iam-user-policy", "user", "name", scope="global", policy=SETTING),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _r("iam-role-policy-attachment", "role", "policyArn",
                                                             scope="global", policy=SETTING),
    "aws:ecs/cluster:Cluster": _r("ecs-cluster", "name", policy=ADOPT),
    "aws:ecs/service:Service": _r("ecs-service", "cluster", "name"),
    # An Express service is an ECS service of its cluster: one namespace with the others.
    "aws:ecs/expressGatewayService:ExpressGatewayService": _r("ecs-service", "cluster", "serviceName"),
    # CloudFront functions are named per account (CloudFront is global).
    "aws:cloudfront/function:Function": _r("cloudfront-function", "name", scope="global"),
    "aws:ecs/taskDefinition:TaskDefinition": _r("ecs-task-family", "family", policy=REVISION),
    "aws:cloudwatch/logGroup:LogGroup": _r("log-group", "name"),
    "aws:lambda/function:Function": _r("lambda-function", "name"),
    "aws:cloudwatch/eventRule:EventRule": _r("events-rule", "eventBusName", "name", policy=ADOPT,
                                             optional=("eventBusName",)),
    "aws:cloudwatch/eventConnection:EventConnection": _r("events-connection", "name"),
    "aws:cloudwatch/eventApiDestination:EventApiDestination": _r("events-api-destination", "name"),
    "aws:scheduler/schedule:Schedule": _r("scheduler-schedule", "groupName", "name", optional=("groupName",)),
    "aws:scheduler/scheduleGroup:ScheduleGroup": _r("scheduler-group", "name"),
    "aws:s3/bucket:Bucket": _r("s3-bucket", "bucket", scope="global"),
    "aws:s3/bucketPolicy:BucketPolicy": _r("s3-bucket-policy", "bucket", scope="global", policy=SETTING),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _r("s3-public-access-block", "bucket", scope="global",
                                                                  policy=SETTING),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _r("s3-ownership-controls", "bucket", scope="global",
                                                                  policy=SETTING),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        _r("s3-default-encryption", "bucket", scope="global", policy=SETTING),
    "aws:s3/bucketVersioning:BucketVersioning": _r("s3-versioning", "bucket", scope="global", policy=SETTING),
    "aws:s3/bucketLogging:BucketLogging": _r("s3-logging", "bucket", scope="global", policy=SETTING),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration":
        _r("s3-lifecycle", "bucket", scope="global", policy=SETTING),
    "aws:s3/bucketObjectv2:BucketObjectv2": _r("s3-object", "bucket", "key", scope="global", policy=SETTING),
    "aws:rds/cluster:Cluster": _r("rds-cluster", "clusterIdentifier", lower=("clusterIdentifier",)),
    "aws:rds/clusterInstance:ClusterInstance": _r("rds-instance", "identifier", lower=("identifier",)),
    "aws:rds/instance:Instance": _r("rds-instance", "identifier", lower=("identifier",)),
    "aws:rds/clusterParameterGroup:ClusterParameterGroup": _r("rds-cluster-parameter-group", "name",
                                                               lower=("name",)),
    "aws:rds/parameterGroup:ParameterGroup": _r("rds-parameter-group", "name", lower=("name",)),
    "aws:rds/subnetGroup:SubnetGroup": _r("rds-subnet-group", "name", lower=("name",)),
    "aws:kms/alias:Alias": _r("kms-alias", "name"),
    "aws:apprunner/service:Service": _r("apprunner-service", "serviceName"),
    "aws:apprunner/vpcConnector:VpcConnector": _r("apprunner-vpc-connector", "vpcConnectorName", policy=REVISION),
    "aws:apprunner/autoScalingConfigurationVersion:AutoScalingConfigurationVersion":
        _r("apprunner-autoscaling", "autoScalingConfigurationName", policy=REVISION),
    "aws:apprunner/observabilityConfiguration:ObservabilityConfiguration":
        _r("apprunner-observability", "observabilityConfigurationName", policy=REVISION),
    "aws:apprunner/customDomainAssociation:CustomDomainAssociation": _r("apprunner-custom-domain", "domainName",
                                                                         dns=("domainName",)),
    "aws:wafv2/webAcl:WebAcl": _r("wafv2-web-acl", "scope", "name"),
    "aws:wafv2/ipSet:IpSet": _r("wafv2-ip-set", "scope", "name"),
    "aws:wafv2/ruleGroup:RuleGroup": _r("wafv2-rule-group", "scope", "name"),
    "aws:wafv2/webAclAssociation:WebAclAssociation": _r("wafv2-association", "resourceArn", policy=SETTING),
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": _r("wafv2-logging", "resourceArn",
                                                                            policy=SETTING),
    "aws:secretsmanager/secret:Secret": _r("secret", "name"),
    "aws:codebuild/project:Project": _r("codebuild-project", "name"),
    "aws:ecr/repository:Repository": _r("ecr-repository", "name"),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _r("ecr-lifecycle-policy", "repository", policy=SETTING),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": _r("ecr-repository-policy", "repository", policy=SETTING),
    "aws:sns/topic:Topic": _r("sns-topic", "name", policy=ADOPT),
    "aws:sns/topicPolicy:TopicPolicy": _r("sns-topic-policy", "arn", policy=SETTING),
    "aws:backup/vault:Vault": _r("backup-vault", "name"),
    "aws:backup/plan:Plan": _r("backup-plan", "name"),
    "aws:backup/vaultLockConfiguration:VaultLockConfiguration": _r("backup-vault-lock", "backupVaultName",
                                                                    policy=SETTING),
    # A log group's own policy (resourceArn) or an account-level one (policyName).
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": _r("logs-resource-policy", "resourceArn", "policyName",
                                                             policy=SETTING, optional=("resourceArn", "policyName")),
    # Route53 names a KSK within its zone; a zone has one signing state and one query-log config.
    "aws:route53/keySigningKey:KeySigningKey": _r("route53-ksk", "hostedZoneId", "name", scope="global"),
    "aws:route53/hostedZoneDnsSec:HostedZoneDnsSec": _r("route53-dnssec", "hostedZoneId", scope="global",
                                                          policy=SETTING),
    "aws:route53/queryLog:QueryLog": _r("route53-query-log", "zoneId", scope="global"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _r("cloudwatch-alarm", "name", policy=ADOPT),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": _r("cloudwatch-alarm", "alarmName", policy=ADOPT),
    "aws:cloudwatch/dashboard:Dashboard": _r("cloudwatch-dashboard", "dashboardName", scope="global", policy=ADOPT),
    "aws:cloudwatch/queryDefinition:QueryDefinition": _r("logs-query-definition", "name", policy=REVISION),
    "aws:budgets/budget:Budget": _r("budget", "name", scope="global"),
    "aws:lb/loadBalancer:LoadBalancer": _r("elb-load-balancer", "name", lower=("name",)),
    "aws:lb/targetGroup:TargetGroup": _r("elb-target-group", "name", lower=("name",)),
    "aws:lb/listener:Listener": _r("elb-listener", "loadBalancerArn", "port"),
    "aws:ec2/securityGroup:SecurityGroup": _r("ec2-security-group", "vpcId", "name"),
    "aws:guardduty/detector:Detector": _r("guardduty-detector"),
    "aws:guardduty/detectorFeature:DetectorFeature": _r("guardduty-feature", "detectorId", "name", policy=SETTING),
    "aws:appautoscaling/target:Target": _r("appautoscaling-target", "serviceNamespace", "resourceId",
                                           "scalableDimension", policy=ADOPT),
    "aws:appautoscaling/policy:Policy": _r("appautoscaling-policy", "serviceNamespace", "resourceId",
                                           "scalableDimension", "name", policy=ADOPT),
    "aws:appautoscaling/scheduledAction:ScheduledAction": _r("appautoscaling-scheduled-action", "serviceNamespace",
                                                             "resourceId", "name", policy=ADOPT),
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": _r("logs-metric-filter", "logGroupName", "name",
                                                         policy=ADOPT),
}

# Identities that stay taken after their owner is deleted (RDS refuses a second final snapshot
# with one name; the first one is kept on purpose).
SNAPSHOT_RULES: dict[str, IdentityRule] = {
    "aws:rds/cluster:Cluster": _r("rds-cluster-snapshot", "finalSnapshotIdentifier", policy=SNAPSHOT,
                                  lower=("finalSnapshotIdentifier",)),
    "aws:rds/instance:Instance": _r("rds-snapshot", "finalSnapshotIdentifier", policy=SNAPSHOT,
                                    lower=("finalSnapshotIdentifier",)),
}

KIND_POLICY: dict[str, str] = {rule.kind: rule.policy for rule in (*IDENTITY_RULES.values(), *SNAPSHOT_RULES.values())}


def _normalise(value: Any, prop: str, rule: IdentityRule) -> Any:
    value = unwrap_secrets(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        if prop in rule.dns:
            value = value.lower().rstrip(".")
        elif prop in rule.lower:
            value = value.lower()
    if isinstance(value, (list, dict)):
        value = json.dumps(value, sort_keys=True)
    return value


class _Identities:
    """physical_identities with the bookkeeping a transition needs: which resources name themselves
    (their ARN follows from their inputs) and which were new in this update (fresh values)."""

    def __init__(self, run: StackRun, fresh: frozenset[str] = frozenset(),
                 urn_map: Optional[dict[str, str]] = None):
        self.run = run
        self.index = {r.urn: r for r in run.resources}
        self.region = run.config.get("aws:region", "us-east-1")
        self.fresh = fresh
        self.urn_map = urn_map or {}
        self._names_itself: dict[str, bool] = {}

    def canonical(self, urn: str) -> str:
        return self.urn_map.get(urn, urn)

    def names_itself(self, urn: str) -> bool:
        """True when the resource's name (and so its ARN) comes from its own inputs. A revisioned
        type's ARN does not: every replacement registers the next revision under the same name."""
        if urn not in self._names_itself:
            self._names_itself[urn] = False  # cycles: not self-named
            r = self.index.get(urn)
            if r is None or not r.custom:
                self._names_itself[urn] = r is not None  # components pass their children's values through
            else:
                rule = IDENTITY_RULES.get(r.type)
                self._names_itself[urn] = bool(rule and rule.props and rule.policy != REVISION and all(
                    r.inputs.get(p) is not None or p in rule.optional for p in rule.props) and not any(
                    self._foreign_deps(r, p) for p in rule.props))
        return self._names_itself[urn]

    def _foreign_deps(self, r: Recorded, prop: str) -> list[str]:
        """Resources an input depends on whose outputs are not determined by their inputs (random
        values, server-assigned ids, auto-names), or that are new in this update."""
        deps = [d for d in r.property_dependencies.get(prop, []) if d in self.index and d != r.urn]
        return [d for d in deps if d in self.fresh or not self.names_itself(d)]

    def _value(self, r: Recorded, prop: str, rule: IdentityRule) -> Any:
        value = _normalise(r.inputs.get(prop), prop, rule)
        foreign = self._foreign_deps(r, prop)
        if not foreign:
            return value
        # The real value belongs to those resources' instances: the same only while they stay.
        return ("of", tuple(sorted((self.canonical(d), "new" if d in self.fresh else "") for d in foreign)), value)

    def of(self, r: Recorded) -> list[tuple[Identity, str]]:
        """(identity, policy) of one resource."""
        if not r.custom:
            return []
        found = []
        for rule in (IDENTITY_RULES.get(r.type), SNAPSHOT_RULES.get(r.type)):
            if rule is None:
                continue
            if any(r.inputs.get(p) is None and p not in rule.optional for p in rule.props):
                continue  # auto-named or not set: nothing AWS would refuse twice
            if rule.policy == SNAPSHOT and r.inputs.get("skipFinalSnapshot"):
                continue
            scope = self.region if rule.scope == "region" else "global"
            parts = tuple(self._value(r, p, rule) if r.inputs.get(p) is not None else "" for p in rule.props)
            found.append(((rule.kind, scope, *parts), rule.policy))
        return found

    def all(self) -> dict[Identity, list[str]]:
        found: dict[Identity, list[str]] = {}
        for r in self.run.resources:
            for identity, _ in self.of(r):
                found.setdefault(identity, []).append(self.canonical(r.urn))
        return found


def physical_identities(run: StackRun) -> dict[Identity, list[str]]:
    """Every physical identity of a run and the URNs that own it.

    An identity is `(kind, scope, *parts)`: scope is the region for names AWS keeps unique per
    account and region, "global" for per-account (IAM) or world-wide (S3) names. A part that comes
    from another resource whose name AWS or Pulumi assigns (a zone id, an auto-named bucket, a
    random suffix) is `("of", ((urn, ""),), mock value)`: the same only as long as that resource
    is, and never equal across two stacks (URNs carry the stack name).
    """
    return _Identities(engine_view(run)).all()


# --------------------------------------------------------------------------------------------
# The transition
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    op: str
    urn: str
    detail: str = ""

    @property
    def type(self) -> str:
        return urn_type(self.urn)

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    def __str__(self) -> str:
        return f"{self.op:<18} {self.type} {self.name}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Change:
    kind: str                        # create | update | replace | same | delete
    urn: str                         # the URN in the after run (the before run for deletes)
    old_urn: Optional[str] = None    # the URN in the before run (differs when taken over by an alias)
    keys: tuple[str, ...] = ()       # changed inputs
    replace_keys: tuple[str, ...] = ()
    delete_before_replace: bool = False


@dataclass(frozen=True)
class Collision:
    kind: str          # delete-removes-new | already-exists | replacement-already-exists | duplicate
    identity: Identity
    urns: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        return f"{self.kind}: {format_identity(self.identity)}: {self.why}"


def format_identity(identity: Identity) -> str:
    def part(p: Any) -> str:
        if isinstance(p, tuple) and p and p[0] == "of":
            owners = ", ".join(urn_name(u) + (" (new)" if new else "") for u, new in p[1])
            return f"{p[2]} [value of {owners}]"
        return str(p)
    kind, scope, *parts = identity
    return f"{kind} {' '.join(part(p) for p in parts)}" + (f" in {scope}" if scope != "global" else "")


@dataclass
class Transition:
    before: StackRun
    after: StackRun
    changes: dict[str, Change]
    steps: list[Step]
    refused: list[Step]
    collisions: list[Collision]
    _after_index: dict[str, Recorded] = field(repr=False, default_factory=dict)

    def urns(self, op: str) -> set[str]:
        """URNs of the steps with this op (create, update, create-replacement, delete, ...)."""
        return {s.urn for s in self.steps if s.op == op}

    def _keys(self, *ops: str) -> set[tuple[str, str]]:
        return {_key(s.urn) for s in self.steps if s.op in ops}

    @property
    def creates(self) -> set[tuple[str, str]]:
        return self._keys("create")

    @property
    def updates(self) -> set[tuple[str, str]]:
        return self._keys("update")

    @property
    def replaces(self) -> set[tuple[str, str]]:
        return {_key(c.urn) for c in self.changes.values() if c.kind == "replace"}

    @property
    def deletes(self) -> set[tuple[str, str]]:
        """Removed resources the provider deletes in AWS (not replaced originals, not discards)."""
        return self._keys("delete")

    @property
    def discards(self) -> set[tuple[str, str]]:
        """Removed resources dropped from state only (retainOnDelete): they stay in AWS."""
        return self._keys("discard")

    def change(self, type_: str, name: str) -> Change:
        found = [c for c in self.changes.values() if _key(c.urn) == (type_, name)]
        assert len(found) == 1, f"expected one {type_} {name} in the transition, found {len(found)}"
        return found[0]

    def problems(self) -> list[str]:
        lines = [f"refused: {s.op.removeprefix('refused-')} of {s.type} {s.name}: {s.detail}" for s in self.refused]
        if self.refused:
            first = min(self.steps.index(s) for s in self.refused)
            lines.append(f"pulumi up fails at step {first + 1}, after {first} step(s) already ran")
        lines.extend(f"collision: {c}" for c in self.collisions)
        return lines

    def assert_safe(self) -> None:
        problems = self.problems()
        if problems:
            raise AssertionError(f"{self.before.stack} -> {self.after.stack}: this update is not safe:\n  "
                                 + "\n  ".join(problems) + "\nplan:\n" + self.describe())

    def describe(self) -> str:
        return "\n".join(f"  {i + 1:3}. {s}" for i, s in enumerate(self.steps)) or "  (no changes)"


def _without(inputs: dict[str, Any], paths: Iterable[str], old: dict[str, Any]) -> dict[str, Any]:
    """The new inputs with every ignoreChanges path set back to its old value."""
    result = json.loads(json.dumps(inputs, default=str))
    for path in paths:
        parts = path.replace("[", ".").replace("]", "").split(".")
        new_node, old_node = result, old
        for part in parts[:-1]:
            new_node = new_node.get(part) if isinstance(new_node, dict) else None
            old_node = old_node.get(part) if isinstance(old_node, dict) else None
        if not isinstance(new_node, dict):
            continue
        last = parts[-1]
        if isinstance(old_node, dict) and last in old_node:
            new_node[last] = old_node[last]
        else:
            new_node.pop(last, None)
    return result


def _changed_paths(old: Any, new: Any, prefix: str = "") -> set[str]:
    """Dotted paths that differ (objects compared key by key, lists as a whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = set()
        for k in set(old) | set(new):
            found |= _changed_paths(old.get(k), new.get(k), f"{prefix}{k}.")
        return found
    return set() if old == new else {prefix.rstrip(".")}


def _forces_replacement(paths: set[str], force: Iterable[str]) -> set[str]:
    hits = set()
    for f in force:
        for p in paths:
            if p == f or p.startswith(f + ".") or f.startswith(p + "."):
                hits.add(f)
    return hits


def transition(before: StackRun, after: StackRun) -> Transition:
    """The steps `pulumi up` would run with the state of `before` and the program of `after`."""
    before, after = engine_view(before), engine_view(after)
    old = {r.urn: r for r in before.resources}
    new = {r.urn: r for r in after.resources}
    old_order = {r.urn: i for i, r in enumerate(before.resources)}

    # Matching URNs (aliases take a before-resource over).
    old_of: dict[str, str] = {}
    for urn in new:
        if urn in old:
            old_of[urn] = urn
        else:
            taken = next((a for a in _effective_aliases(new, urn) if a in old and a not in new), None)
            if taken is not None:
                old_of[urn] = taken
    claimed = set(old_of.values())
    removed = [u for u in old if u not in claimed]

    # Diffs, in program order so a resource sees whether what it depends on is new.
    changes: dict[str, Change] = {}
    fresh: set[str] = set()
    self_named = _Identities(after)
    for r in after.resources:
        if r.urn not in old_of:
            changes[r.urn] = Change("create", r.urn)
            fresh.add(r.urn)
            continue
        o = old[old_of[r.urn]]
        old_inputs = unwrap_secrets(o.inputs)
        new_inputs = _without(unwrap_secrets(r.inputs), r.ignore_changes, old_inputs)
        paths = _changed_paths(old_inputs, new_inputs)
        renewed = {prop for prop, deps in r.property_dependencies.items()
                   if any(d in fresh and not self_named.names_itself(d) for d in deps) and prop not in r.ignore_changes}
        paths |= renewed  # an id, ARN or random value of a new resource
        top = tuple(sorted({p.split(".")[0] for p in paths}))
        force = set(FORCE_NEW.get(r.type, ())) | set(r.replace_on_changes)
        replace = _forces_replacement(paths, force) | conditional_replace_keys(r.type, old_inputs, new_inputs, paths)
        if not r.custom or not top:
            changes[r.urn] = Change("same", r.urn, o.urn)
        elif replace:
            auto = AUTO_NAMED.get(r.type)
            bridge_dbr = bool(auto and r.inputs.get(auto) is not None and auto not in renewed and
                              unwrap_secrets(o.inputs.get(auto)) == unwrap_secrets(r.inputs.get(auto)))
            changes[r.urn] = Change("replace", r.urn, o.urn, top, tuple(sorted(replace)),
                                    r.delete_before_replace or bridge_dbr)
            fresh.add(r.urn)
        else:
            changes[r.urn] = Change("update", r.urn, o.urn, top)
    for urn in removed:
        changes[urn] = Change("delete", urn, urn)

    # Steps in engine order.
    steps: list[Step] = []
    refused: list[Step] = []
    end: list[tuple[int, Step]] = []

    def old_protect(urn: str) -> bool:
        return _inherited(old, urn, "protect")

    def old_retain(urn: str) -> bool:
        return _inherited(old, urn, "retain_on_delete")

    for r in after.resources:
        c = changes[r.urn]
        if c.kind == "create":
            steps.append(Step("create", r.urn))
        elif c.kind == "update":
            steps.append(Step("update", r.urn, "changed: " + ", ".join(c.keys)))
        elif c.kind == "replace":
            why = "replaced by: " + ", ".join(c.replace_keys)
            if old_protect(c.old_urn) and _inherited(new, r.urn, "protect"):
                step = Step("refused-replace", r.urn, f"protected ({why})")
                steps.append(step)
                refused.append(step)
                continue
            gone = Step("discard-replaced" if old_retain(c.old_urn) else "delete-replaced", c.old_urn, why)
            if c.delete_before_replace:
                steps.extend([gone, Step("create-replacement", r.urn, why + "; delete-before-replace")])
            else:
                steps.append(Step("create-replacement", r.urn, why))
                end.append((old_order[c.old_urn], gone))
    for urn in removed:
        r = old[urn]
        if r.deleted_with and r.deleted_with in removed:
            continue  # deletedWith: the engine skips it, its owner's delete takes it along
        if old_protect(urn):
            step = Step("refused-delete", urn, "protected in the state")
            refused.append(step)
        elif old_retain(urn):
            step = Step("discard", urn, "retainOnDelete: removed from state, kept in AWS")
        else:
            step = Step("delete", urn)
        end.append((old_order[urn], step))
    steps.extend(step for _, step in sorted(end, key=lambda e: -e[0]))

    urn_map = {o_urn: n_urn for n_urn, o_urn in old_of.items()}
    collisions = _collisions(before, after, changes, frozenset(fresh), urn_map, steps, old_retain)
    return Transition(before, after, changes, steps, refused, collisions, new)


def _collisions(before: StackRun, after: StackRun, changes: dict[str, Change], fresh: frozenset[str],
                urn_map: dict[str, str], steps: list[Step], old_retain: Callable[[str], bool]) -> list[Collision]:
    old_ids = _Identities(before, urn_map=urn_map)
    new_ids = _Identities(after, fresh=fresh)
    old_owned: dict[Identity, list[str]] = {}
    for r in before.resources:
        for identity, _ in old_ids.of(r):
            old_owned.setdefault(identity, []).append(r.urn)
    new_owned: dict[Identity, list[str]] = {}
    new_index = {r.urn: r for r in after.resources}
    for r in after.resources:
        for identity, _ in new_ids.of(r):
            new_owned.setdefault(identity, []).append(r.urn)
    gone_ops = {s.urn: s.op for s in steps if s.op in ("delete", "discard", "delete-replaced", "discard-replaced")}

    found: list[Collision] = []
    for identity, owners in new_owned.items():
        policy = KIND_POLICY[identity[0]]
        if len(owners) > 1:
            found.append(Collision("duplicate", identity, tuple(owners),
                                   "owned by " + " and ".join(urn_name(u) for u in owners) + " in one stack"))
        for n in owners:
            c = changes[n]
            if c.kind not in ("create", "replace"):
                continue
            overwrite = bool(unwrap_secrets(new_index[n].inputs.get("allowOverwrite")))
            for o in old_owned.get(identity, []):
                op = gone_ops.get(o)
                same_resource = c.kind == "replace" and c.old_urn == o
                if op is None or (same_resource and c.delete_before_replace and op == "delete-replaced"):
                    continue  # still live and unchanged (reported as a duplicate), or deleted first
                kept = op.startswith("discard")
                what = (f"{urn_name(n)} is a replacement of the same resource, created before the old one is "
                        f"deleted" if same_resource else f"{urn_name(n)} is created while {urn_name(o)} is "
                                                          f"deleted only at the end of the update")
                if policy == SNAPSHOT:
                    found.append(Collision("snapshot-name-reused", identity, (o, n),
                                           f"{urn_name(o)}'s final snapshot takes this name when it is deleted; "
                                           f"{urn_name(n)}'s own final snapshot would need it again"))
                elif policy == REVISION:
                    continue  # a new revision, then the old revision goes: fine
                elif kept and policy in (UNIQUE, UPSERT) and not (policy == UPSERT and overwrite):
                    found.append(Collision("already-exists", identity, (o, n),
                                           f"{urn_name(o)} is kept in AWS (retainOnDelete), so creating "
                                           f"{urn_name(n)} fails: it already exists"))
                elif kept:
                    continue  # overwritten/adopted and never deleted: the new owner has it
                elif policy == UNIQUE or (policy == UPSERT and not overwrite):
                    found.append(Collision("replacement-already-exists" if same_resource else "already-exists",
                                           identity, (o, n), f"{what}: the create fails, it already exists"))
                else:
                    how = {UPSERT: "writes the record (allowOverwrite)", SETTING: "writes the setting",
                           ADOPT: "adopts the existing one"}[policy]
                    found.append(Collision("delete-removes-new", identity, (o, n),
                                           f"{what}: {urn_name(n)} {how}, then the delete of {urn_name(o)} removes "
                                           f"it (the provider finds it by name, not by id)"))
    return found


def destroy(before: StackRun) -> Transition:
    """What `pulumi destroy` does with the state of `before`: every resource deleted (or, with
    retainOnDelete, dropped from state), in reverse order, refused where protected."""
    nothing = StackRun(stack=before.stack, resources=[], outputs={}, secret_outputs=set(), config=before.config)
    return transition(before, nothing)


# --------------------------------------------------------------------------------------------
# Convenience: two runs of the program
# --------------------------------------------------------------------------------------------

def run_transition(stack_file: str, overrides_before: Optional[dict[str, Any]] = None,
                   overrides_after: Optional[dict[str, Any]] = None, *,
                   stack_name: Optional[str] = None) -> Transition:
    """`pulumi up` of `Pulumi.<stack_file>.yaml` + overrides_after on a stack last updated with
    overrides_before. Both runs are cached for the session (harness.cached_run)."""
    before = cached_run(stack_file, overrides_before, stack_name=stack_name)
    after = cached_run(stack_file, overrides_after, stack_name=stack_name)
    return transition(before, after)
