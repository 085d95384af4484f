"""Wiring only: stage settings -> components -> exports. No resource logic here."""
import pulumi

import settings as stage
from settings import paths
from components.backup import Backup, BackupArgs, VaultLockArgs
from components.context import AwsContext
from components.database import Database, DatabaseArgs, PreviousClusterArgs
from components.delegation import NsDelegation, NsDelegationArgs
from components.dns import (AliasTarget, Domain, DomainArgs, SiteRecord, SiteRecordArgs, ZoneSecurity,
                            ZoneSecurityArgs)
from components.email import Email, EmailArgs
from components.firewall import Firewall, FirewallArgs
from components.network import Network, NetworkArgs
from components.operations import AppRunnerTier, ExpressTier, FargateTier, Operations, OperationsArgs, Tier
from components.notifications import export_rows
from components.rotation import CredentialRotation, CredentialRotationArgs, RolloutTarget, RotatedCredential
from components.security import ThreatDetection
from components.storage import Storage, StorageArgs
from components.apprunner import AppRunnerArgs, AppRunnerService
from components.cron import Cron, CronArgs
from components.ecs import IDLE_TIMEOUT_SECONDS, FargateArgs, FargateService
from components.express import ORIGIN_READ_TIMEOUT_SECONDS, ExpressArgs, ExpressService
from components.image import Image, ImageArgs, config_sql_path
from components.runtime import (ALB_DEFAULT_IDLE_TIMEOUT_SECONDS, APP_RUNNER_REQUEST_TIMEOUT_SECONDS,
                                DatabaseAppLogin, RuntimeArgs, app_runner_memory_mib, runtime_contract)
from components.tunnel import TunnelArgs, TunnelHost
from components.rollout import DeployedVersion, RolloutCheck, RolloutCheckArgs
from components.upgrade import DatabaseUpgrade, DatabaseUpgradeArgs, UpgradeSnapshot, UpgradeSnapshotArgs

config, secrets = stage.from_pulumi()


def delegation_stack(ns_delegation: stage.NsDelegation) -> None:
    """redcap:nsDelegation: this stack writes NS records in the parent zone and nothing else."""
    delegation = NsDelegation("redcap", NsDelegationArgs(
        domain=ns_delegation.domain,
        records=ns_delegation.records,
    ))
    pulumi.export("delegatedNames", delegation.delegated_names)


def application_stack() -> None:
    """REDCap itself, in the order settings -> context -> storage -> network -> database -> edge
    -> compute -> exports."""
    context = AwsContext.lookup(region=config.region, stack=config.stack)

    storage = Storage("redcap", StorageArgs(
        context=context,
        keep_on_destroy=config.keep_data_on_destroy,
        protect=config.protect_data,
        versioning=config.app_bucket_versioning,
        alb_access_logs=config.uses_ecs,
        salt=secrets.db_salt,
        key_for_api_destinations=config.cron_minutes > 0,
        backup_copy_accounts=(stage.vault_arn_region_and_account(config.backup.copy_to_vault_arn)[1],)
        if config.backup_enabled and config.backup.copy_to_vault_arn else (),
    ))

    network = Network("redcap", NetworkArgs(
        context=context,
        nat_gateways=config.nat_gateways,
        flow_log_retention_days=config.log_retention(60),
        kms_key_arn=storage.kms_key_arn,
        keep_database_network=config.removal_policy == "retain",
    ))

    database = Database("redcap", DatabaseArgs(
        context=context,
        engine_version=config.db.engine_version,
        readers=config.db.db_readers,
        snapshot_id=config.db.db_snapshot_id,
        max_allowed_packet=config.db.max_allowed_packet,
        maintenance_window=config.db.preferred_maintenance_window,
        min_acu=config.db.scaling.min_capacity_acu,
        max_acu=config.db.scaling.max_capacity_acu,
        backtrack_hours=config.db.backtrack_hours,
        backup_retention_days=config.db.backup_retention_days,
        log_retention_days=config.log_retention(365),
        removal_policy=config.removal_policy,
        protect=config.protect_data,
        kms_key_arn=storage.kms_key_arn,
        subnet_ids=network.isolated_subnet_ids,
        security_group_id=network.database_security_group_id,
        engine_upgrade_to=config.db.engine_upgrade_to,
        monitoring_interval=config.enhanced_monitoring_seconds,
        performance_insights_retention_days=config.db.monitoring.performance_insights_retention_days,
        database_insights_mode=config.db.monitoring.database_insights,
        previous=PreviousClusterArgs(
            snapshot_id=config.db.previous_cluster.db_snapshot_id,
            protect=config.previous_cluster_protected,
        ) if config.db.previous_cluster is not None else None,
    ))

    lock = config.backup.vault_lock
    backup = Backup("redcap-backup", BackupArgs(
        context=context,
        kms_key_arn=storage.kms_key_arn,
        cluster_arns=database.cluster_arns,
        bucket_arn=storage.app_bucket_arn,
        retention_days=config.backup.retention_days,
        monthly_retention_days=config.backup.monthly_retention_days,
        copy_to_region=config.backup.copy_to_region,
        copy_to_vault_arn=config.backup.copy_to_vault_arn,
        vault_lock=VaultLockArgs(lock.mode, lock.min_retention_days, lock.max_retention_days,
                                 lock.changeable_for_days) if lock is not None else None,
        keep_on_destroy=config.keep_data_on_destroy,
        protect=config.protect_data,
    )) if config.backup_enabled else None

    # Edge (issue 3): WAF, domain, e-mail, threat detection.
    firewall = Firewall("redcap", FirewallArgs(
        context=context,
        kms_key_arn=storage.kms_key_arn,
        log_retention_days=config.log_retention(365),
        allowed_ips=config.allowed_ips,
        allowed_countries=config.allowed_countries,
        cron_secret=secrets.cron_secret,
        external_web_acl_arn=config.external_resources.waf_web_acl,
        sqli_rules_to_count=config.waf_sqli_rules_to_count,
        surveys_exempt=config.surveys_exempt_from_allow_lists,
        # Express is reached through CloudFront, whose web ACLs are CLOUDFRONT scope.
        scope="CLOUDFRONT" if config.uses_express else "REGIONAL",
    ))

    domain = Domain("redcap", DomainArgs(
        domain=config.domain,
        subdomain=config.subdomain,
        host_in_route53=config.host_in_route53,
        zone_delegated=bool(config.zone_delegated),
        certificate_region=certificate_region(),
        stack_region=config.region,
    )) if config.domain else None

    # DNSSEC and query logging of the zone this stack creates (settings allow nothing else).
    zone_security = ZoneSecurity("redcap", ZoneSecurityArgs(
        context=context,
        zone_id=domain.zone_id,
        fqdn=domain.fqdn,
        parent_zone_id=domain.parent_zone_id,
        dns_dependencies=domain.dns_dependencies,
        # Route53 refuses to sign a zone whose parent does not delegate to it yet
        # (HostedZonePartiallyDelegated): a new zone is signed from phase two on.
        dnssec=config.dnssec_mode if domain.ready else "off",
        query_logging=config.dns_query_logging,
        kms_key_arn=storage.kms_key_arn,
        log_retention_days=config.log_retention(365),
    )) if domain is not None and domain.zone_id is not None and (
        config.dnssec_mode != "off" or config.dns_query_logging) else None

    email = Email("redcap", EmailArgs(
        context=context,
        kms_key_arn=storage.kms_key_arn,
        domain=domain.fqdn if domain is not None and domain.zone_id is not None else None,
        zone_id=domain.zone_id if domain is not None else None,
        email=config.email,
        bounce_notification_email=config.bounce_notification_email,
        existing_identity=config.external_resources.ses_identity,
        sender=config.sender_email,
        subscribe_emails=config.email_subscriptions,
    ))

    threat_detection = ThreatDetection("redcap") if config.guard_duty else None

    # The S3 and SMTP keys are made and rotated here; the runtime reads the secrets once they hold one.
    rotation = CredentialRotation("redcap-rotation", CredentialRotationArgs(
        context=context,
        kms_key_arn=storage.kms_key_arn,
        rotation_days=config.credential_rotation_days,
        log_retention_days=config.log_retention(365),
        credentials=(
            RotatedCredential("s3", storage.s3_credentials_secret_arn, storage.s3_user_name, storage.s3_user_arn,
                              bucket=storage.app_bucket_name),
            RotatedCredential("smtp", email.smtp_credentials_secret_arn, email.smtp_user_name, email.smtp_user_arn),
        ),
        rollout=RolloutTarget.for_runtime(config.runtime, config.stack),
        alarm_email=config.email,
        subscribe_emails=config.email_subscriptions,
    ))

    # Compute (issue 4): image, runtime contract, App Runner or ECS, cron, tunnel host.
    languages_dir = paths.PROJECT_DIR / "languages"
    modules_dir = paths.PROJECT_DIR / "modules"
    image = Image("redcap", ImageArgs(
        context=context,
        build=config.image_build,
        tag_prefix=config.image_tag_prefix,
        port=config.port,
        kms_key_arn=storage.kms_key_arn,
        config_sql=config_sql_path(paths.PROJECT_DIR / "sql"),
        build_dir=paths.PROJECT_DIR / "build",
        redcap_zip=paths.RELEASES_DIR / f"{config.red_cap_local_version}.zip" if config.red_cap_local_version else None,
        redcap_s3_uri=config.red_cap_s3_path,
        languages_dir=languages_dir if languages_dir.is_dir() else None,
        modules_dir=modules_dir if modules_dir.is_dir() else None,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        log_bucket_name=storage.log_bucket_name,
        log_retention_days=config.log_retention(365),
        ca_bundle=paths.RELEASES_DIR / "rds-ca-bundle.pem" if (paths.RELEASES_DIR / "rds-ca-bundle.pem").is_file() else None,
    ))
    # A new REDCap release: the cluster's snapshot first (after the build), then the rollout.
    upgrade_snapshot = UpgradeSnapshot("redcap-upgrade-snapshot", UpgradeSnapshotArgs(
        context=context,
        release=config.release,
        cluster_identifier=database.cluster_identifier,
        cluster_arn=database.cluster_arn,
        kms_key_arn=storage.kms_key_arn,
        log_retention_days=config.log_retention(365),
        after=[image],
    )) if config.upgrade_snapshot else None
    image_uri = upgrade_snapshot.gate(image.image_uri) if upgrade_snapshot is not None else image.image_uri
    app_login = DatabaseAppLogin("redcap-db-app", username=database.app_user, kms_key_arn=storage.kms_key_arn) \
        if config.db_auth == "password" else None
    # The web tier sizes its PHP workers from the task's or instance's memory, and its request
    # time and keep-alive from what is in front of it (container/README.md, "Web tier").
    if config.express is not None:
        web_memory_mib, request_timeout_seconds = config.express.memory, ORIGIN_READ_TIMEOUT_SECONDS
        lb_idle_timeout_seconds: int | None = ALB_DEFAULT_IDLE_TIMEOUT_SECONDS
    elif config.ecs is not None:
        web_memory_mib, request_timeout_seconds = config.ecs.memory, IDLE_TIMEOUT_SECONDS
        lb_idle_timeout_seconds = IDLE_TIMEOUT_SECONDS
    else:
        web_memory_mib = app_runner_memory_mib(config.memory)
        request_timeout_seconds, lb_idle_timeout_seconds = APP_RUNNER_REQUEST_TIMEOUT_SECONDS, None
    runtime = runtime_contract(RuntimeArgs(
        context=context,
        port=config.port,
        php_timezone=config.php_timezone,
        db_auth=config.db_auth,
        db_host=database.endpoint,
        db_port=database.port,
        db_name=database.database_name,
        db_master_secret_arn=database.master_secret_arn,
        db_app_user=database.app_user,
        db_app_user_arn=database.app_user_arn,
        db_reader_host=database.reader_endpoint if config.db.db_readers > 0 else None,
        db_app_secret_arn=app_login.secret_arn if app_login is not None else None,
        salt_secret_arn=storage.salt_secret_arn,
        s3_bucket=storage.app_bucket_name,
        s3_secret_arn=rotation.ready_secret_arns["s3"],
        kms_key_arn=storage.kms_key_arn,
        security_group_id=network.app_security_group_id,
        ses_secret_arn=rotation.ready_secret_arns["smtp"],
        smtp_email=email.sender_address,
        admin_password_secret_arn=storage.admin_password_secret_arn,
        configuration_sql=config.configuration_sql,
        memory_mib=web_memory_mib,
        php_memory_limit=config.php_memory_limit,
        request_timeout_seconds=request_timeout_seconds,
        lb_idle_timeout_seconds=lb_idle_timeout_seconds,
    ))
    subscriptions = list(email.email_subscriptions) + rotation.email_subscriptions
    # The domain whose name the stack serves now: its zone is live (docs/domains.md, two phases).
    site_domain = domain if domain is not None and domain.ready and domain.zone_id is not None else None
    site_alias: AliasTarget | None = None
    service_url: pulumi.Output[str] | None = None
    custom_url: str | None = None
    cron_host: pulumi.Output[str] | None = None
    # What the database upgrade waits for: the runtime and its service (none in ECS's phase one).
    rollout: pulumi.Resource | None = None
    # What the stage's rollout check reads back (none in ECS's phase one either).
    rollout_target: DeployedVersion | None = None
    service_arn: pulumi.Output[str] | None = None
    service_cluster: pulumi.Output[str] | None = None
    runtime_kind = ""
    if config.express is not None:
        express = config.express
        service = ExpressService("redcap", ExpressArgs(
            context=context,
            image_uri=image_uri,
            repository_arn=image.repository_arn,
            runtime=runtime,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cpu=express.cpu,
            memory=express.memory,
            min_containers=express.scaling.min_containers,
            max_containers=express.scaling.max_containers,
            scaling_metric=express.scaling.api_metric,
            scaling_target=express.scaling.target,
            web_acl_arn=firewall.web_acl_arn,
            kms_key_arn=storage.kms_key_arn,
            log_retention_days=config.log_retention(731),
            # The custom name only once the zone is live (docs/domains.md); until then the
            # distribution's own name serves the site.
            fqdn=domain.fqdn if domain is not None and domain.ready else None,
            certificate_arn=express.certificate_arn or (domain.certificate_arn if domain is not None else None),
            capacity_scheduled=config.operations.idle_schedule is not None,
        ))
        service_url, custom_url = service.distribution_url, service.custom_url
        site_alias = service.site_alias if custom_url else None
        # The distribution's own name answers before the custom domain's DNS does.
        cron_host, runtime_kind = service.distribution_url, "express"
        rollout, service_arn, service_cluster = service, service.service_arn, service.cluster_name
        rollout_target = service.deployed
        pulumi.export("cloudFrontUrl", service.distribution_url)
        pulumi.export("expressServiceUrl", service.service_url)
        pulumi.export("expressClusterName", service.cluster_name)
        pulumi.export("expressServiceName", service.service_name)
        pulumi.export("expressLogGroup", service.log_group_name)
        pulumi.export("expressConsoleUrl", service.console_url)
        pulumi.export("expressDescribeCommand", service.describe_command)
    elif config.ecs is not None:
        ecs = config.ecs
        assert domain is not None  # settings require redcap:domain with an ecs block
        # The ALB serves HTTPS only: before the zone is delegated there is no certificate, so
        # phase one runs no ECS service at all (no plaintext path to REDCap, nothing waiting).
        certificate_arn = ecs.certificate_arn or domain.certificate_arn
        if domain.ready and certificate_arn is not None:
            fargate = FargateService("redcap", FargateArgs(
                context=context,
                image_uri=image_uri,
                repository_arn=image.repository_arn,
                runtime=runtime,
                vpc_id=network.vpc_id,
                public_subnet_ids=network.public_subnet_ids,
                private_subnet_ids=network.private_subnet_ids,
                cpu=ecs.cpu,
                memory=ecs.memory,
                min_containers=ecs.scaling.min_containers,
                max_containers=ecs.scaling.max_containers,
                requests_per_container=ecs.scaling.requests_per_container,
                cpu_utilization=ecs.scaling.cpu_utilization,
                memory_utilization=ecs.scaling.memory_utilization,
                certificate_arn=certificate_arn,
                web_acl_arn=firewall.web_acl_arn,
                log_bucket_name=storage.log_bucket_name,
                kms_key_arn=storage.kms_key_arn,
                log_retention_days=config.log_retention(731),
                deletion_protection=config.protect_data,
                fqdn=domain.fqdn,
                capacity_scheduled=config.operations.idle_schedule is not None,
            ))
            service_url, custom_url, site_alias = fargate.load_balancer_url, fargate.custom_url, fargate.site_alias
            # The certificate is for the FQDN only, so cron calls the custom domain.
            cron_host, runtime_kind = pulumi.Output.from_input(domain.fqdn), "ecs"
            rollout, service_arn, service_cluster = fargate, fargate.service_arn, fargate.cluster_name
            rollout_target = fargate.deployed
            pulumi.export("loadBalancerUrl", service_url)
            pulumi.export("ecsClusterName", fargate.cluster_name)
            pulumi.export("ecsServiceName", fargate.service_name)
    else:
        # The custom domain waits for the zone like the certificate does: App Runner would
        # validate it against a zone nobody can resolve yet.
        apprunner = AppRunnerService("redcap", AppRunnerArgs(
            context=context,
            image_uri=image_uri,
            repository_arn=image.repository_arn,
            runtime=runtime,
            private_subnet_ids=network.private_subnet_ids,
            cpu=config.cpu,
            memory=config.memory,
            max_concurrency=config.app_runner_concurrency,
            min_size=config.app_runner_min_size,
            max_size=config.app_runner_max_size,
            web_acl_arn=firewall.web_acl_arn,
            kms_key_arn=storage.kms_key_arn,
            fqdn=site_domain.fqdn if site_domain is not None else None,
            zone_id=site_domain.zone_id if site_domain is not None else None,
            domain_dependencies=site_domain.dns_dependencies if site_domain is not None else (),
            notification_email=config.email,
            subscribe_notification_email=config.email_subscriptions,
        ))
        service_url, custom_url, site_alias = apprunner.service_url, apprunner.custom_url, apprunner.site_alias
        subscriptions += apprunner.email_subscriptions
        # The default URL works before the custom domain's certificate is validated.
        cron_host, runtime_kind = apprunner.service_url, "apprunner"
        rollout, service_arn = apprunner, apprunner.service_arn
        rollout_target = apprunner.deployed
        pulumi.export("appRunnerServiceUrl", service_url)
    if rollout_target is not None:
        # One check for the stage whatever the runtime: `pulumi up` fails when a new version
        # never became healthy (components/rollout.py).
        rollout_check = RolloutCheck("redcap-rollout", RolloutCheckArgs(
            context=context, target=rollout_target, kms_key_arn=storage.kms_key_arn,
            log_retention_days=config.log_retention(731)))
        rollout = rollout_check
        pulumi.export("rolloutCheck", rollout_check.result)
    if site_domain is not None and site_domain.zone_id is not None and site_alias is not None:
        # One record for the site whatever the runtime (components/dns.py).
        SiteRecord("redcap", SiteRecordArgs(zone_id=site_domain.zone_id, fqdn=site_domain.fqdn, target=site_alias))
    cron: Cron | None = None
    if cron_host is not None:
        cron = Cron("redcap-cron", CronArgs(context=context, host=cron_host, search_string=firewall.cron_search_string,
                                     minutes=config.cron_minutes, runtime_kind=runtime_kind,
                                     kms_key_arn=storage.kms_key_arn))
    if config.upgrade.database and rollout is not None and service_arn is not None:
        db_upgrade = DatabaseUpgrade("redcap-db-upgrade", DatabaseUpgradeArgs(
            context=context,
            release=config.release,
            image_uri=image_uri,
            repository_arn=image.repository_arn,
            runtime=runtime,
            private_subnet_ids=network.private_subnet_ids,
            kms_key_arn=storage.kms_key_arn,
            log_retention_days=config.log_retention(365),
            runtime_kind=runtime_kind,
            service_arn=service_arn,
            service_cluster=service_cluster,
            db_cluster_identifier=database.cluster_identifier,
            backtrack=config.db.backtrack_hours > 0,
            snapshot_identifier=upgrade_snapshot.snapshot_identifier if upgrade_snapshot is not None else "",
            rollout=[rollout],
        ))
        pulumi.export("redcapDatabaseUpgrade", db_upgrade.result)
        pulumi.export("redcapUpgradeLogGroup", db_upgrade.log_group_name)
    if config.ec2_server_stack is not None:
        tunnel = TunnelHost("redcap-tunnel", TunnelArgs(
            context=context,
            instance_type=config.ec2_server_stack.instance_type,
            duration_hours=config.ec2_server_stack.duration_hours,
            subnet_ids=network.private_subnet_ids,
            image_uri=image_uri,
            repository_arn=image.repository_arn,
            runtime=runtime,
            kms_key_arn=storage.kms_key_arn,
        ))
        pulumi.export("tunnelInstanceId", tunnel.instance_id)
        pulumi.export("ssmPortForward", tunnel.port_forward_command)
    if custom_url or service_url is not None:
        site_url = pulumi.Output.from_input(custom_url or service_url)
        pulumi.export("siteUrl", site_url)
        pulumi.export("upgradeUrl", site_url.apply(lambda url: f"{url}/upgrade.php"))
    if custom_url:
        pulumi.export("customServiceUrl", custom_url)
    pulumi.export("imageUri", image.image_uri)
    pulumi.export("imageTag", image.tag)
    pulumi.export("ecrRepositoryUrl", image.repository_url)

    # Operations: alarms, dashboard, site checks, idle schedule, budget (docs/operations.md).
    tier: Tier | None = None  # none yet: an ECS stage before its new zone is delegated
    if config.express is not None:
        tier = ExpressTier.of(service, config.express)
    elif config.ecs is not None and service_url is not None:
        tier = FargateTier.of(fargate, config.ecs)
    elif config.ecs is None:
        tier = AppRunnerTier.of(apprunner, cpu=config.cpu, memory=config.memory, concurrency=config.app_runner_concurrency,
                                min_size=config.app_runner_min_size, max_size=config.app_runner_max_size)
    operations = Operations("redcap", OperationsArgs(
        context=context, settings=config.operations, tier=tier, site_url=custom_url or service_url,
        kms_key_arn=storage.kms_key_arn, log_retention_days=config.log_retention(365),
        cron_header=firewall.cron_header, cron_search_string=firewall.cron_search_string,
        db_cluster_identifier=database.cluster_identifier, db_max_acu=config.db.scaling.max_capacity_acu,
        db_readers=config.db.db_readers, image_uri=image.image_uri, runtime_environment=runtime.environment,
        alarm_email=config.alarm_email, subscribe_alarm_email=config.email_subscriptions,
        cron_rule_name=cron.rule_name if cron is not None else None, cron_minutes=config.cron_minutes,
        web_acl_arn=firewall.web_acl_arn, web_acl_global=config.uses_express,
        waf_log_group_name=firewall.log_group_name, build_project_name=image.build_project_name,
        build_trigger_function_name=image.build_trigger_function_name,
        certificate_arns=tuple(c for c in (config.ecs and config.ecs.certificate_arn,
                                           config.express and config.express.certificate_arn) if c),
        budget_tag=stage.budget_tag(), smoke_after=[firewall],
    ))
    subscriptions += operations.email_subscriptions
    pulumi.export("alarmTopicArn", operations.alarm_topic_arn)
    pulumi.export("alarms", operations.alarm_names)
    if operations.dashboard_url is not None:
        pulumi.export("dashboardUrl", operations.dashboard_url)
    if operations.smoke_check is not None:
        pulumi.export("smokeCheck", operations.smoke_check)
    if operations.budget_name is not None:
        pulumi.export("budgetName", operations.budget_name)

    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("publicSubnetIds", network.public_subnet_ids)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("isolatedSubnetIds", network.isolated_subnet_ids)
    pulumi.export("dbClusterIdentifier", database.cluster_identifier)
    pulumi.export("dbEndpoint", database.endpoint)
    pulumi.export("dbReaderEndpoint", database.reader_endpoint)
    pulumi.export("dbMasterSecretArn", database.master_secret_arn)
    if upgrade_snapshot is not None:
        # Before the last release change; "" until the stage's release first changes.
        pulumi.export("dbUpgradeSnapshotIdentifier", upgrade_snapshot.snapshot_identifier)
    if database.final_snapshot_identifier is not None:
        pulumi.export("dbFinalSnapshotIdentifier", database.final_snapshot_identifier)
    if database.previous_cluster_identifier is not None:
        pulumi.export("dbPreviousClusterIdentifier", database.previous_cluster_identifier)
    pulumi.export("appBucketName", storage.app_bucket_name)
    pulumi.export("logBucketName", storage.log_bucket_name)
    pulumi.export("kmsKeyArn", storage.kms_key_arn)
    pulumi.export("adminPasswordSecretArn", storage.admin_password_secret_arn)
    pulumi.export("webAclArn", firewall.web_acl_arn)
    if domain is not None:
        pulumi.export("domainName", domain.fqdn)
        if domain.name_servers is not None:
            # Delegate to these (docs/domains.md); a delegation stack reads them by this name.
            pulumi.export("nameServers", domain.name_servers)
    if zone_security is not None:
        if zone_security.ds_record is not None:
            # For the parent zone's operator when the stack does not write the delegation itself.
            pulumi.export("dsRecord", zone_security.ds_record)
        if zone_security.query_log_group_name is not None:
            pulumi.export("dnsQueryLogGroup", zone_security.query_log_group_name)
    pulumi.export("sesIdentityArn", email.identity_arn)
    pulumi.export("senderAddress", email.sender_address)
    pulumi.export("smtpCredentialsSecretArn", email.smtp_credentials_secret_arn)
    pulumi.export("s3CredentialsSecretArn", storage.s3_credentials_secret_arn)
    if backup is not None:
        pulumi.export("backupVaultArn", backup.vault_arn)
        pulumi.export("backupVaultName", backup.vault_name)
        pulumi.export("backupPlanId", backup.plan_id)
        pulumi.export("backupRoleArn", backup.role_arn)
        if backup.copy_vault_arn is not None:
            pulumi.export("backupCopyVaultArn", backup.copy_vault_arn)
    pulumi.export("credentialRotationFunctionName", rotation.function_name)
    pulumi.export("credentialRotationAlarmTopicArn", rotation.alarm_topic_arn)
    # What to confirm (or subscribe by hand) so notifications arrive: docs/email.md.
    pulumi.export("emailSubscriptions", export_rows(subscriptions, config.region))
    if threat_detection is not None:
        pulumi.export("guardDutyDetectorId", threat_detection.detector_id)


def certificate_region() -> str | None:
    """Where the Domain component validates a certificate for the FQDN: for ECS's load balancer
    in the stack's region, for Express's CloudFront distribution in us-east-1, none for App
    Runner (it makes its own) or when the stage brings its own certificate."""
    if config.ecs is not None and config.ecs.certificate_arn is None:
        return config.region
    if config.express is not None and config.express.certificate_arn is None and config.has_zone:
        return "us-east-1"
    return None


if config.ns_delegation is not None:
    delegation_stack(config.ns_delegation)
else:
    application_stack()
