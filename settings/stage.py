"""StageSettings: every `redcap:` key of a stack, and the rules across keys."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from container.webtier.sizing import DEFAULT_PHP_MEMORY_LIMIT, parse_php_size_mib
from settings import paths, regions
from settings.common import (APPRUNNER_SIZES, SQLI_RULE_NAMES, Problem, _CrossProblems, _DOCKER_TAG_RE, covers,
                             _LABELS_RE, _LOCAL_VERSION_RE, _Model, _as_list, _is_int, _normalise_size, parse_bool,
                             parse_cidr, parse_country, parse_dns_name, parse_email, parse_log_retention,
                             parse_s3_path, parse_timezone, version_from_zip_name)
from settings.application import ConfigurationSqlMode, UpgradeSettings, parse_configuration_sql
from settings.backup import BackupSettings
from settings.compute import EcsSettings, ExpressSettings, TunnelSettings
from settings.credentials import parse_rotation_days
from settings.database import DbSettings
from settings.dns import NsDelegation
from settings.edge import ExternalResources
from settings.operations import OperationsSettings


RemovalPolicyName = Literal["destroy", "snapshot", "retain"]
AllowListScope = Literal["all", "allButSurveys"]


class StageSettings(_Model):
    """Every `redcap:` key. Field aliases are the config key names (an interface: keep them)."""

    stack: str
    region: str
    red_cap_local_version: Optional[str] = Field(None, alias="redCapLocalVersion")
    red_cap_s3_path: Optional[str] = Field(None, alias="redCapS3Path")
    deploy_tag: Optional[str] = Field(None, alias="deployTag")
    allowed_ips: tuple[str, ...] = Field((), alias="allowedIps")
    allowed_countries: tuple[str, ...] = Field((), alias="allowedCountries")
    allow_list_scope: AllowListScope = Field("all", alias="allowListScope")
    domain: Optional[str] = None
    subdomain: Optional[str] = None
    host_in_route53: bool | str = Field(True, alias="hostInRoute53")
    zone_delegated: Optional[bool] = Field(None, alias="zoneDelegated")
    dnssec: bool | Literal["dsWithdrawn"] = False
    dns_query_logging: bool = Field(False, alias="dnsQueryLogging")
    email: Optional[str] = None
    sender_email: Optional[str] = Field(None, alias="senderEmail")
    bounce_notification_email: Optional[str] = Field(None, alias="bounceNotificationEmail")
    php_timezone: str = Field("UTC", alias="phpTimezone")
    php_memory_limit: str = Field(DEFAULT_PHP_MEMORY_LIMIT, alias="phpMemoryLimit")
    port: int = 8080
    cpu: str = "2 vCPU"
    memory: str = "4 GB"
    app_runner_concurrency: int = Field(10, alias="appRunnerConcurrency")
    app_runner_min_size: int = Field(1, alias="appRunnerMinSize")
    app_runner_max_size: int = Field(2, alias="appRunnerMaxSize")
    ecs: Optional[EcsSettings] = None
    express: Optional[ExpressSettings] = None
    has_cron_secret: bool = Field(False, alias="cronSecret")
    has_db_salt: bool = Field(False, alias="dbSalt")
    cron_minutes: int = Field(1, alias="cronMinutes")
    db: DbSettings = DbSettings()
    db_auth: Literal["iam", "password"] = Field("iam", alias="dbAuth")
    ec2_server_stack: Optional[TunnelSettings] = Field(None, alias="ec2ServerStack")
    general_log_retention: Optional[int] = Field(None, alias="generalLogRetention")
    external_resources: ExternalResources = Field(ExternalResources(), alias="externalResources")
    nat_gateways: Literal["onePerAz", "single"] = Field("onePerAz", alias="natGateways")
    removal_policy: RemovalPolicyName = Field("snapshot", alias="removalPolicy")
    deletion_protection: Optional[bool] = Field(None, alias="deletionProtection")
    image_build: Literal["codebuild", "local"] = Field("codebuild", alias="imageBuild")
    guard_duty: bool = Field(False, alias="guardDuty")
    email_subscriptions: bool = Field(True, alias="emailSubscriptions")
    ns_delegation: Optional[NsDelegation] = Field(None, alias="nsDelegation")
    app_bucket_versioning: bool = Field(True, alias="appBucketVersioning")
    waf_sqli_rules_to_count: tuple[str, ...] = Field((), alias="wafSqliRulesToCount")
    configuration_sql: ConfigurationSqlMode = Field("onInstall", alias="configurationSql")
    backup: BackupSettings = BackupSettings()
    credential_rotation_days: int = Field(90, alias="credentialRotationDays")
    operations: OperationsSettings = OperationsSettings()
    upgrade: UpgradeSettings = UpgradeSettings()

    # --- single-value rules ------------------------------------------------------------------

    @field_validator("red_cap_local_version", mode="before")
    @classmethod
    def _local(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        if not _LOCAL_VERSION_RE.match(str(v)):
            raise Problem("redcapX.Y.Z, naming releases/redcapX.Y.Z.zip in the project folder",
                          "redcap15.0.9")
        if not (paths.RELEASES_DIR / f"{v}.zip").is_file():
            raise Problem(f"a zip that exists: put your REDCap release at releases/{v}.zip "
                          "(or use redCapS3Path)", "redcap15.0.9")
        return str(v)

    _s3 = field_validator("red_cap_s3_path", mode="before")(
        lambda v: None if v is None else "s3://" + "/".join(parse_s3_path(str(v))))

    @field_validator("deploy_tag", mode="before")
    @classmethod
    def _tag(cls, v: Any) -> Optional[str]:
        if v is not None and not _DOCKER_TAG_RE.match(str(v)):
            raise Problem("a Docker tag: letters, digits, _ . - up to 128 characters", "15.0.9-hotfix1")
        return v

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _ips(cls, v: Any) -> tuple[str, ...]:
        return tuple(parse_cidr(str(x)) for x in _as_list(v, "[203.0.113.0/24, 2001:db8::/32]"))

    @field_validator("allowed_countries", mode="before")
    @classmethod
    def _countries(cls, v: Any) -> tuple[str, ...]:
        return tuple(parse_country(str(x)) for x in _as_list(v, "[US, CA]"))

    @field_validator("allow_list_scope", mode="before")
    @classmethod
    def _scope(cls, v: Any) -> str:
        if v not in ("all", "allButSurveys"):
            raise Problem("all (the allow-lists cover every path) or allButSurveys (REDCap's public "
                          "survey pages are reachable from anywhere)", "allButSurveys")
        return v

    _domain = field_validator("domain", mode="before")(
        lambda v: None if v in (None, "") else parse_dns_name(str(v)))

    @field_validator("subdomain", mode="before")
    @classmethod
    def _subdomain(cls, v: Any) -> Optional[str]:
        if v in (None, ""):
            return None
        if not _LABELS_RE.match(str(v).lower()):
            raise Problem("one or more DNS labels placed before domain", "redcap")
        return str(v).lower()

    @field_validator("dnssec", mode="before")
    @classmethod
    def _dnssec(cls, v: Any) -> bool | str:
        if v == "dsWithdrawn":
            return v
        try:
            return parse_bool(v)
        except Problem:
            raise Problem("true (sign the zone), false (unsigned) or dsWithdrawn (still signed, DS record "
                          "removed from the parent zone: the first of the two steps that turn DNSSEC off, "
                          "docs/domains.md)", "true") from None

    _query_logging = field_validator("dns_query_logging", mode="before")(parse_bool)

    @field_validator("host_in_route53", mode="before")
    @classmethod
    def _route53(cls, v: Any) -> bool | str:
        if isinstance(v, bool) or str(v).lower() in ("true", "false"):
            return parse_bool(v)
        try:
            return parse_dns_name(str(v))
        except Problem:
            raise Problem("true (create a zone), false (no Route53) or the name of an existing "
                          "hosted zone", "example.org") from None

    _email = field_validator("email", "sender_email", "bounce_notification_email", mode="before")(
        lambda v: None if v is None else parse_email(str(v)))
    _tz = field_validator("php_timezone", mode="before")(lambda v: parse_timezone(str(v)))

    @field_validator("php_memory_limit", mode="before")
    @classmethod
    def _php_memory(cls, v: Any) -> str:
        # The container's own rule (container/webtier/sizing.py), so both accept the same values.
        mib = parse_php_size_mib(str(v))
        if mib is None:
            raise Problem("PHP memory_limit per request, 128M to 16G (a number with M or G)", "512M")
        return f"{mib}M"

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> int:
        if not _is_int(v) or not 1025 <= int(v) <= 65535:
            raise Problem("1025 to 65535 (Apache runs as www-data, so no privileged ports)", "8080")
        return int(v)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> str:
        text = _normalise_size(str(v), "vcpu", "vCPU")
        if text not in APPRUNNER_SIZES:
            raise Problem("App Runner cpu " + ", ".join(APPRUNNER_SIZES), "2 vCPU")
        return text

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str:
        text = _normalise_size(str(v), "gb", "GB")
        if not any(text in mems for mems in APPRUNNER_SIZES.values()):
            raise Problem("App Runner memory 0.5, 1, 2, 3, 4, 6, 8, 10 or 12 GB", "4 GB")
        return text

    @field_validator("app_runner_concurrency", mode="before")
    @classmethod
    def _concurrency(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 200:
            raise Problem("1 to 200 concurrent requests per instance", "10")
        return int(v)

    @field_validator("app_runner_min_size", "app_runner_max_size", mode="before")
    @classmethod
    def _sizes(cls, v: Any) -> int:
        if not _is_int(v) or not 1 <= int(v) <= 25:
            raise Problem("1 to 25 instances", "2")
        return int(v)

    @field_validator("cron_minutes", mode="before")
    @classmethod
    def _cron(cls, v: Any) -> int:
        if not _is_int(v) or not 0 <= int(v) <= 1440:
            raise Problem("0 (no schedule) to 1440 minutes", "1")
        return int(v)

    @field_validator("db_auth", mode="before")
    @classmethod
    def _auth(cls, v: Any) -> str:
        if v not in ("iam", "password"):
            raise Problem("iam or password", "iam")
        return v

    _retention = field_validator("general_log_retention", mode="before")(
        lambda v: None if v is None else parse_log_retention(v))

    @field_validator("nat_gateways", mode="before")
    @classmethod
    def _nat(cls, v: Any) -> str:
        if v not in ("onePerAz", "single"):
            raise Problem("onePerAz or single", "single")
        return v

    @field_validator("removal_policy", mode="before")
    @classmethod
    def _removal(cls, v: Any) -> str:
        if v not in ("destroy", "snapshot", "retain"):
            raise Problem("destroy, snapshot or retain", "snapshot")
        return v

    @field_validator("image_build", mode="before")
    @classmethod
    def _build(cls, v: Any) -> str:
        if v not in ("codebuild", "local"):
            raise Problem("codebuild or local", "codebuild")
        return v

    _bools = field_validator("deletion_protection", "guard_duty", "email_subscriptions", "has_cron_secret", "has_db_salt",
                             "app_bucket_versioning", "zone_delegated", mode="before")(
        lambda v: None if v is None else parse_bool(v))

    _configuration_sql = field_validator("configuration_sql", mode="before")(
        lambda v: parse_configuration_sql(v))

    @field_validator("waf_sqli_rules_to_count", mode="before")
    @classmethod
    def _sqli(cls, v: Any) -> tuple[str, ...]:
        names = tuple(str(x) for x in _as_list(v, "[SQLi_BODY]"))
        for name in names:
            if name not in SQLI_RULE_NAMES:
                raise Problem("rule names of AWSManagedRulesSQLiRuleSet: " + ", ".join(SQLI_RULE_NAMES),
                              "[SQLi_BODY]")
        return tuple(sorted(set(names)))

    _rotation = field_validator("credential_rotation_days", mode="before")(lambda v: parse_rotation_days(v))

    # --- region-dependent defaults ----------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _region_defaults(cls, data: Any) -> Any:
        """db.backtrackHours unset in a region without Aurora backtrack: 0 there (the default 24
        would make the cluster creation fail). Set explicitly, it is checked below instead."""
        if not isinstance(data, dict):
            return data
        facts = regions.lookup(str(data.get("region") or ""))
        db = data.get("db", {})
        if facts is not None and not facts.backtrack and isinstance(db, dict) and "backtrackHours" not in db:
            data = {**data, "db": {**db, "backtrackHours": 0}}
        return data

    # --- rules across keys -------------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_rules(self) -> "StageSettings":
        problems: list[tuple[str, Any, Problem]] = []
        if self.ns_delegation is not None:
            # A delegation stack writes NS records only; anything else would be silently unused.
            return self
        if (self.red_cap_local_version is None) == (self.red_cap_s3_path is None):
            both = self.red_cap_local_version is not None
            problems.append(("redCapLocalVersion/redCapS3Path",
                             "both set" if both else "neither set",
                             Problem("exactly one REDCap source: redCapLocalVersion (releases/<v>.zip) "
                                     "or redCapS3Path", "redCapS3Path: my-redcap-releases/redcap15.0.9.zip")))
        elif self.deploy_tag is None and self.redcap_version is None:
            problems.append(("redCapS3Path", self.red_cap_s3_path,
                             Problem("a zip named redcapX.Y.Z.zip so the version (image tag) can be read, "
                                     "or set redcap:deployTag", "s3://my-redcap-releases/redcap15.0.9.zip")))
        if self.memory not in APPRUNNER_SIZES[self.cpu]:
            problems.append(("memory", self.memory,
                             Problem(f"for cpu {self.cpu}: " + ", ".join(APPRUNNER_SIZES[self.cpu]),
                                     "cpu: 2 vCPU, memory: 4 GB")))
        if self.app_runner_min_size > self.app_runner_max_size:
            problems.append(("appRunnerMinSize", self.app_runner_min_size,
                             Problem("appRunnerMinSize <= appRunnerMaxSize", "appRunnerMinSize: 1")))
        if self.subdomain and not self.domain:
            problems.append(("subdomain", self.subdomain,
                             Problem("a subdomain only together with redcap:domain", "domain: example.org")))
        if isinstance(self.host_in_route53, str) and self.domain and not (
                self.domain == self.host_in_route53 or self.domain.endswith("." + self.host_in_route53)):
            problems.append(("hostInRoute53", self.host_in_route53,
                             Problem(f"an existing zone that contains domain {self.domain}",
                                     f"hostInRoute53: {self.domain}")))
        problems.extend(self._zone_delegated_problems())
        problems.extend(self._zone_security_problems())
        if self.ecs is not None and not self.has_zone and self.ecs.certificate_arn is None:
            problems.append(("ecs", "no Route53 zone and no ecs.certificateArn",
                             Problem("ECS serves HTTPS only, so it needs redcap:domain with hostInRoute53 "
                                     "true or a zone name, or ecs.certificateArn",
                                     "domain: redcap.example.org, hostInRoute53: true")))
        if self.ecs is not None and self.ecs.certificate_arn and not self.domain:
            problems.append(("ecs.certificateArn", self.ecs.certificate_arn,
                             Problem("a certificate together with redcap:domain (the name it is for)",
                                     "domain: redcap.example.org")))
        if self.ecs is not None and self.express is not None:
            problems.append(("ecs/express", "both set",
                             Problem("one runtime: an ecs block (ECS Fargate behind your own load balancer) or "
                                     "an express block (ECS Express Mode behind CloudFront), not both",
                                     "express: {}")))
        if self.express is not None and self.domain and not self.has_zone and self.express.certificate_arn is None:
            problems.append(("express", "domain without a Route53 zone or express.certificateArn",
                             Problem("for redcap:domain on Express, hostInRoute53 true or a zone name (the "
                                     "certificate is validated there), or express.certificateArn (an ACM "
                                     "certificate in us-east-1)", "hostInRoute53: true")))
        if self.express is not None and self.express.certificate_arn and not self.domain:
            problems.append(("express.certificateArn", self.express.certificate_arn,
                             Problem("a certificate together with redcap:domain (the name it is for)",
                                     "domain: redcap.example.org")))
        acl = self.external_resources.waf_web_acl
        if acl and (":global/webacl/" in acl) != (self.express is not None):
            problems.append(("externalResources.wafWebAcl", acl,
                             Problem("with express a CLOUDFRONT-scope ACL (arn:aws:wafv2:us-east-1:<account>:"
                                     "global/webacl/...), otherwise a REGIONAL one in the stack's region",
                                     "arn:aws:wafv2:us-east-1:123456789012:global/webacl/site/"
                                     "a1b2c3d4-5678-90ab-cdef-111122223333")))
        if self.allow_list_scope == "allButSurveys" and not (self.allowed_ips or self.allowed_countries):
            problems.append(("allowListScope", self.allow_list_scope,
                             Problem("allButSurveys together with allowedIps or allowedCountries (without a "
                                     "list there is nothing to exempt the surveys from)",
                                     "allowedIps: [203.0.113.0/24]")))
        if not self.has_zone and self.email is None:
            problems.append(("email", None,
                             Problem("an SES identity: redcap:email, or redcap:domain with a Route53 zone",
                                     "email: redcap-admin@example.org")))
        problems.extend(self._region_problems())
        problems.extend(self._sender_problems())
        problems.extend(self._shared_identity_problems())
        if self.external_resources.waf_web_acl and (self.allowed_ips or self.allowed_countries):
            problems.append(("allowedIps/allowedCountries", "set with externalResources.wafWebAcl",
                             Problem("no allow-lists when an external web ACL is used (they would be "
                                     "ignored); put them in that ACL", "allowedIps: []")))
        problems.extend(self._backup_problems())
        problems.extend(self._operations_rules())
        if problems:
            raise _CrossProblems(problems)
        return self

    def _operations_rules(self) -> list[tuple[str, Any, Problem]]:
        ops = self.operations
        problems: list[tuple[str, Any, Problem]] = []
        if ops.monthly_budget_usd is not None and ops.alarm_email is None and self.email is None:
            problems.append(("operations.alarmEmail", None,
                             Problem("an address for the budget's alerts: redcap:operations.alarmEmail, or "
                                     "redcap:email (the default)", "operations: {alarmEmail: redcap-ops@example.org}")))
        if ops.idle_schedule is not None and self.protect_data:
            problems.append(("operations.idleSchedule", "with deletion protection",
                             Problem("an idle schedule only on a stage without deletion protection (a stage that "
                                     "protects its data is production, which stays up); set "
                                     "redcap:deletionProtection false for a test stage that keeps data",
                                     "deletionProtection: false")))
        return problems

    def _zone_delegated_problems(self) -> list[tuple[str, Any, Problem]]:
        """A zone this stack creates is unreachable until somebody delegates it, so the stage
        says which side of that it is on. No default: a stage that already serves its site from
        such a zone must not lose its certificate and site record by upgrading the program."""
        new_zone = bool(self.domain) and self.host_in_route53 is True
        if new_zone and self.zone_delegated is None:
            return [("zoneDelegated", None, Problem(
                "required with hostInRoute53: true - false for the first `pulumi up` of a new zone (it creates "
                "the zone and exports nameServers; delegate the FQDN to them), true once that delegation is in "
                "place and for a stage that already serves its site (docs/domains.md)",
                "pulumi config set redcap:zoneDelegated false"))]
        if not new_zone and self.zone_delegated is not None:
            return [("zoneDelegated", self.zone_delegated, Problem(
                "only together with redcap:domain and hostInRoute53: true (a zone this stack creates and "
                "somebody else delegates); an existing zone is live already, a child zone is delegated by the "
                "stack itself, and false has no zone",
                "pulumi config rm redcap:zoneDelegated"))]
        return []

    def _zone_security_problems(self) -> list[tuple[str, Any, Problem]]:
        """DNSSEC and query logging are set up on the zone this stack creates; an existing zone is
        somebody else's to sign and log."""
        if self.creates_zone:
            return []
        return [(key, value, Problem(
            "only for a zone this stack creates (redcap:domain with hostInRoute53: true, or a zone name "
            "together with redcap:subdomain); an existing zone is signed and logged by whoever manages it",
            f"pulumi config rm redcap:{key}"))
            for key, value in (("dnssec", self.dnssec), ("dnsQueryLogging", self.dns_query_logging))
            if value is not False]

    def _shared_identity_problems(self) -> list[tuple[str, Any, Problem]]:
        """The address identity is shared by the stages (docs/email.md): it carries no configuration
        set, and a stage that names it must send as an address it covers."""
        problems = []
        if self.bounce_notification_email and not self.has_zone:
            problems.append(("bounceNotificationEmail", self.bounce_notification_email,
                             Problem("bounce and complaint events of the stage's own domain identity, so "
                                     "redcap:domain with a Route53 zone (an address identity is shared by the "
                                     "stages and carries no configuration set; SES returns its bounces to "
                                     "redcap:email itself)", "domain: redcap.example.org, hostInRoute53: true")))
        shared = self.external_resources.ses_identity
        if shared and self.has_zone:
            problems.append(("externalResources.sesIdentity", shared,
                             Problem("only without a Route53 zone: with one, the stage sends from its own "
                                     "domain identity", "hostInRoute53: false")))
        elif shared and not (self.email and covers(shared, self.email)):
            problems.append(("externalResources.sesIdentity", shared,
                             Problem(f"an identity that covers redcap:email ({self.email or 'not set'}): that "
                                     "address or its domain", "sesIdentity: redcap-admin@example.org")))
        return problems

    def _backup_problems(self) -> list[tuple[str, Any, Problem]]:
        backup, problems = self.backup, []
        if self.backup_enabled and not self.app_bucket_versioning:
            why = ("backup.enabled is true" if backup.enabled else
                   f"backups are on by default because removalPolicy {self.removal_policy} keeps the data")
            problems.append(("appBucketVersioning", False, Problem(
                f"true while backups are on ({why}; AWS Backup backs up versioned buckets only): set "
                "appBucketVersioning: true, or turn the backups off with backup.enabled: false",
                "appBucketVersioning: true")))
        if backup.copy_to_region is not None and backup.copy_to_region == self.region:
            problems.append(("backup.copyToRegion", backup.copy_to_region, Problem(
                f"a region other than the stack's ({self.region}): a copy in the same region does not survive "
                "the loss of that region", "us-west-2")))
        if backup.vault_lock is not None and self.removal_policy == "destroy":
            problems.append(("backup.vaultLock", backup.vault_lock.mode, Problem(
                "no vault lock with removalPolicy destroy (`pulumi destroy` must delete the vault and its "
                "recovery points, which a lock forbids); use removalPolicy snapshot or retain", "removalPolicy: snapshot")))
        return problems

    def _sender_problems(self) -> list[tuple[str, Any, Problem]]:
        """senderEmail must lie in the DKIM-signed domain (the FQDN's SES identity), or DMARC fails."""
        if self.sender_email is None:
            return []
        if not self.has_zone or self.fqdn is None:
            return [("senderEmail", self.sender_email,
                     Problem("a sender only with a Route53 zone (redcap:domain and hostInRoute53 true or a zone "
                             "name), where it must lie in the DKIM-signed domain; without a zone REDCap sends as "
                             "redcap:email", "pulumi config rm redcap:senderEmail"))]
        host = self.sender_email.rpartition("@")[2].lower()
        if host != self.fqdn and not host.endswith("." + self.fqdn):
            return [("senderEmail", self.sender_email,
                     Problem(f"an address at {self.fqdn} or a subdomain of it (the SES domain identity, "
                             "DKIM-signed, so DMARC aligns)", f"redcap@{self.fqdn}"))]
        return []

    def _region_problems(self) -> list[tuple[str, Any, Problem]]:
        """What the stack's region does not offer (settings/regions.py)."""
        if not self.region:
            return []  # reported by the loader
        facts = regions.lookup(self.region)
        if facts is None:
            return [("aws:region", self.region,
                     Problem("a region of the region table settings/regions.py (docs/regions.md): "
                             + ", ".join(regions.names()), "pulumi config set aws:region eu-west-1"))]
        problems: list[tuple[str, Any, Problem]] = []
        if self.runtime == "apprunner" and not facts.app_runner:
            problems.append(("aws:region", self.region,
                             Problem(f"App Runner is not offered in {self.region}: there, run on ECS Express Mode "
                                     "(an express block) or ECS Fargate (an ecs block); App Runner (neither "
                                     "block) runs in " + ", ".join(regions.names(lambda f: f.app_runner)),
                                     "redcap:express: {}, or aws:region: eu-west-1")))
        if self.runtime == "express" and not facts.ecs_express:
            problems.append(("express", f"in region {self.region}",
                             Problem("a region where the Express runtime runs: every region of the table but "
                                     + ", ".join(regions.names(lambda f: not f.ecs_express))
                                     + " (its public entry is CloudFront, which AWS GovCloud (US) does not offer; "
                                     "docs/regions.md); use an ecs block there", "aws:region: us-east-1")))
        if self.db.backtrack_hours > 0 and not facts.backtrack:
            problems.append(("db.backtrackHours", self.db.backtrack_hours,
                             Problem(f"0 in {self.region}, where Aurora backtrack is not offered (leave it "
                                     "unset there: it then defaults to 0); backtrack regions: "
                                     + ", ".join(regions.names(lambda f: f.backtrack)), "0")))
        return problems

    # --- derived values ----------------------------------------------------------------------

    @property
    def redcap_version(self) -> Optional[str]:
        if self.red_cap_local_version:
            return self.red_cap_local_version.removeprefix("redcap")
        if self.red_cap_s3_path:
            return version_from_zip_name(self.red_cap_s3_path)
        return None

    @property
    def release(self) -> str:
        """The REDCap release the stage runs, as the upgrade snapshot and database upgrade see it:
        the version from the zip's name, else deployTag (the settings require one of them)."""
        return str(self.redcap_version or self.deploy_tag)

    @property
    def upgrade_snapshot(self) -> bool:
        """A snapshot before each new REDCap version: its own setting, else whether the stage keeps
        its data (a destroy stage would otherwise leave snapshots behind)."""
        if self.upgrade.snapshot is not None:
            return self.upgrade.snapshot
        return self.keep_data_on_destroy

    @property
    def enhanced_monitoring_seconds(self) -> int:
        """db.monitoring.enhancedMonitoringSeconds, else 60 for stages that keep data, 0 otherwise."""
        seconds = self.db.monitoring.enhanced_monitoring_seconds
        if seconds is not None:
            return seconds
        return 60 if self.keep_data_on_destroy else 0

    @property
    def image_tag_prefix(self) -> str:
        """The readable part of the image tag; the build adds the content hash."""
        return self.deploy_tag or str(self.redcap_version)

    @property
    def fqdn(self) -> Optional[str]:
        if not self.domain:
            return None
        return f"{self.subdomain}.{self.domain}" if self.subdomain else self.domain

    @property
    def has_zone(self) -> bool:
        return bool(self.domain) and self.host_in_route53 is not False

    @property
    def creates_zone(self) -> bool:
        """hostInRoute53 true, or a zone name with a subdomain (a child zone the stack delegates)."""
        return bool(self.domain) and (self.host_in_route53 is True or
                                      (isinstance(self.host_in_route53, str) and bool(self.subdomain)))

    @property
    def dnssec_mode(self) -> Literal["off", "signing", "dsWithdrawn"]:
        if self.dnssec == "dsWithdrawn":
            return "dsWithdrawn"
        return "signing" if self.dnssec else "off"

    @property
    def protect_data(self) -> bool:
        """RDS deletion protection and Pulumi `protect` on the data resources."""
        if self.deletion_protection is not None:
            return self.deletion_protection
        return self.removal_policy != "destroy"

    @property
    def previous_cluster_protected(self) -> bool:
        """Protection of the cluster a restore in place replaces: its own setting, else the stage's."""
        previous = self.db.previous_cluster
        if previous is not None and previous.deletion_protection is not None:
            return previous.deletion_protection
        return self.protect_data

    @property
    def keep_data_on_destroy(self) -> bool:
        """snapshot/retain keep the key, buckets and salt so the final snapshot stays usable."""
        return self.removal_policy != "destroy"

    @property
    def backup_enabled(self) -> bool:
        """AWS Backup runs by default on stages that keep their data."""
        if self.backup.enabled is not None:
            return self.backup.enabled
        return self.keep_data_on_destroy

    @property
    def uses_ecs(self) -> bool:
        return self.ecs is not None

    @property
    def alarm_email(self) -> Optional[str]:
        return self.operations.alarm_email or self.email

    @property
    def uses_express(self) -> bool:
        return self.express is not None

    @property
    def runtime(self) -> Literal["apprunner", "ecs", "express"]:
        """Which compute component runs REDCap."""
        if self.ecs is not None:
            return "ecs"
        return "express" if self.express is not None else "apprunner"

    @property
    def surveys_exempt_from_allow_lists(self) -> bool:
        return self.allow_list_scope == "allButSurveys"

    def log_retention(self, default_days: int) -> int:
        return self.general_log_retention or default_days

# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "dbSalt": "Secret. The salt a new stage starts with: the old stage's when restoring or migrating into a new stack (docs/restore.md). Used only when the salt secret is created; REDCap's salt never changes afterwards.",
    "generalLogRetention": "Retention of every log group, in days or a name like `one_year`. Unset: per resource.",
    "natGateways": "`onePerAz` (resilient) or `single` (cheaper).",
    "removalPolicy": "What `pulumi destroy` leaves: `destroy` nothing, `snapshot` a final DB snapshot plus key, buckets and salt, `retain` the cluster too (docs/destroy.md).",
    "deletionProtection": "RDS deletion protection and Pulumi `protect` on the data. Unset: true unless removalPolicy is destroy.",
    "appBucketVersioning": "Keep earlier versions of REDCap's files in the bucket.",
}
