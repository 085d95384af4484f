"""Every stage-settings rule, valid and invalid, with the message the user sees."""
from __future__ import annotations

import json
from typing import Any

import pytest

import settings
from settings import SettingsError, load_settings

BASE = {"redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "email": "redcap-admin@example.org"}


def load(**overrides: Any) -> settings.StageSettings:
    values = {**BASE, **overrides}
    raw = {f"redcap:{k}": (v if isinstance(v, str) else json.dumps(v))
           for k, v in values.items() if v is not None}
    return load_settings(raw, stack="test", region="us-east-1")


def problems_of(**overrides: Any) -> str:
    with pytest.raises(SettingsError) as err:
        load(**overrides)
    return str(err.value)


def test_defaults_are_the_documented_ones():
    s = load()
    assert (s.port, s.cpu, s.memory, s.php_timezone) == (8080, "2 vCPU", "4 GB", "UTC")
    assert (s.app_runner_concurrency, s.app_runner_min_size, s.app_runner_max_size) == (10, 1, 2)
    assert (s.cron_minutes, s.db_auth, s.nat_gateways, s.removal_policy, s.image_build) == (
        1, "iam", "onePerAz", "snapshot", "codebuild")
    assert s.db.engine_version == "8.0.mysql_aurora.3.10.3"
    assert (s.db.db_readers, s.db.backtrack_hours, s.db.backup_retention_days) == (1, 24, 30)
    assert (s.db.scaling.min_capacity_acu, s.db.scaling.max_capacity_acu) == (0.5, 2.0)
    assert s.protect_data is True and s.keep_data_on_destroy is True
    assert s.redcap_version == "15.0.9" and s.image_tag_prefix == "15.0.9"
    assert s.host_in_route53 is True and s.has_zone is False and s.ecs is None


def test_message_names_key_value_allowed_and_example():
    text = problems_of(port=80)
    assert "redcap:port = '80'" in text
    assert "allowed: 1025 to 65535" in text
    assert "example: 8080" in text
    assert text.startswith("Invalid stage settings (1 problem); nothing was created:")


def test_several_wrong_keys_are_reported_at_once():
    text = problems_of(port=70000, phpTimezone="Mars/Olympus", allowedCountries=["XX"], natGateways="two",
                       db={"dbReaders": 16})
    assert "(5 problems)" in text
    for key in ("redcap:port", "redcap:phpTimezone", "redcap:allowedCountries", "redcap:natGateways",
                "redcap:db.dbReaders"):
        assert key in text


# --- allow-lists -------------------------------------------------------------------------------

@pytest.mark.parametrize("given, stored", [
    (["203.0.113.0/24"], ("203.0.113.0/24",)),
    (["2001:db8::/32"], ("2001:db8::/32",)),
    (["198.51.100.7"], ("198.51.100.7/32",)),
    (["2001:db8::1"], ("2001:db8::1/128",)),
])
def test_allowed_ips_accept_ipv4_and_ipv6(given, stored):
    assert load(allowedIps=given).allowed_ips == stored


@pytest.mark.parametrize("given, hint", [
    (["10.0.0.1/8"], "did you mean 10.0.0.0/8?"),
    (["2001:db8::1/32"], "did you mean 2001:db8::/32?"),
    (["not-an-ip"], "example: 203.0.113.0/24 or 2001:db8::/32"),
    (["10.0.0.0/33"], "allowed: an IPv4 or IPv6 CIDR"),
])
def test_allowed_ips_reject_bad_cidrs(given, hint):
    text = problems_of(allowedIps=given)
    assert "redcap:allowedIps" in text and hint in text


def test_allowed_ips_must_be_a_list():
    assert "redcap:allowedIps = '203.0.113.0/24': allowed: a YAML object or list" in problems_of(allowedIps="203.0.113.0/24")


def test_countries_are_iso_alpha2_and_normalised():
    assert load(allowedCountries=["us", "JP"]).allowed_countries == ("US", "JP")
    for bad in (["USA"], ["XX"], [""]):
        assert "allowed: ISO 3166-1 alpha-2 country codes; example: US, GB, JP" in problems_of(allowedCountries=bad)


# --- REDCap source -------------------------------------------------------------------------------

def test_exactly_one_redcap_source(tmp_path, monkeypatch):
    monkeypatch.setattr(settings.paths, "RELEASES_DIR", tmp_path)
    (tmp_path / "redcap15.0.9.zip").write_bytes(b"PK")
    both = problems_of(redCapLocalVersion="redcap15.0.9")
    assert "redcap:redCapLocalVersion/redCapS3Path = 'both set'" in both
    neither = problems_of(redCapS3Path=None)
    assert "redcap:redCapLocalVersion/redCapS3Path = 'neither set'" in neither
    assert "exactly one REDCap source" in neither


def test_local_version_needs_the_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(settings.paths, "RELEASES_DIR", tmp_path)
    text = problems_of(redCapS3Path=None, redCapLocalVersion="redcap15.0.9")
    assert "put your REDCap release at releases/redcap15.0.9.zip" in text
    (tmp_path / "redcap15.0.9.zip").write_bytes(b"PK")
    s = load(redCapS3Path=None, redCapLocalVersion="redcap15.0.9")
    assert s.redcap_version == "15.0.9"
    assert "allowed: redcapX.Y.Z" in problems_of(redCapS3Path=None, redCapLocalVersion="15.0.9")


@pytest.mark.parametrize("path, stored", [
    ("bucket-a/redcap15.0.9.zip", "s3://bucket-a/redcap15.0.9.zip"),
    ("s3://bucket-a/releases/redcap14.5.43.zip", "s3://bucket-a/releases/redcap14.5.43.zip"),
])
def test_s3_path_forms(path, stored):
    assert load(redCapS3Path=path).red_cap_s3_path == stored


@pytest.mark.parametrize("path", ["bucket-only", "s3://bucket-a/", "Bad_Bucket/redcap1.2.3.zip", "b/redcap.tar.gz"])
def test_s3_path_needs_bucket_and_zip_key(path):
    assert "allowed: an S3 bucket and object key of a .zip" in problems_of(redCapS3Path=path)


def test_version_from_zip_name_or_deploy_tag():
    text = problems_of(redCapS3Path="bucket-a/latest.zip")
    assert "a zip named redcapX.Y.Z.zip" in text and "or set redcap:deployTag" in text
    s = load(redCapS3Path="bucket-a/latest.zip", deployTag="15.0.9-site")
    assert s.image_tag_prefix == "15.0.9-site"
    assert "allowed: a Docker tag" in problems_of(deployTag="has space")


# --- database ----------------------------------------------------------------------------------

@pytest.mark.parametrize("window, stored", [
    ("Sun:23:45-Mon:00:15", "sun:23:45-mon:00:15"),
    ("sat:03:00-sat:04:30", "sat:03:00-sat:04:30"),
    ("Sun:23:00-Mon:23:00", "sun:23:00-mon:23:00"),
])
def test_maintenance_window_valid(window, stored):
    assert load(db={"preferredMaintenanceWindow": window}).db.preferred_maintenance_window == stored


@pytest.mark.parametrize("window", ["Sun:23:45", "Sun:23:45-Mon:00:10", "Xyz:01:00-Mon:02:00",
                                    "Sun:25:00-Mon:01:00", "Sun:01:00-Sun:01:00", "Sun:01:00-Tue:01:00"])
def test_maintenance_window_invalid(window):
    text = problems_of(db={"preferredMaintenanceWindow": window})
    assert "redcap:db.preferredMaintenanceWindow" in text
    assert "lasting 30 minutes to 24 hours" in text and "example: Sun:23:45-Mon:00:15" in text


@pytest.mark.parametrize("scaling", [{"minCapacityAcu": 0, "maxCapacityAcu": 1},
                                     {"minCapacityAcu": 0.5, "maxCapacityAcu": 256},
                                     {"minCapacityAcu": 2.5, "maxCapacityAcu": 2.5}])
def test_acu_valid(scaling):
    s = load(db={"scaling": scaling})
    assert (s.db.scaling.min_capacity_acu, s.db.scaling.max_capacity_acu) == (
        scaling["minCapacityAcu"], scaling["maxCapacityAcu"])


@pytest.mark.parametrize("scaling, expect", [
    ({"minCapacityAcu": 0.3}, "0 to 256 Aurora capacity units in steps of 0.5"),
    ({"maxCapacityAcu": 300}, "0 to 256 Aurora capacity units in steps of 0.5"),
    ({"minCapacityAcu": -1}, "0 to 256"),
    ({"minCapacityAcu": 4, "maxCapacityAcu": 2}, "minCapacityAcu <= maxCapacityAcu"),
    ({"minCapacityAcu": 0, "maxCapacityAcu": 0.5}, "maxCapacityAcu of at least 1"),
])
def test_acu_invalid(scaling, expect):
    assert expect in problems_of(db={"scaling": scaling})


def test_auto_pause_needs_aurora_3_08():
    text = problems_of(db={"engineVersion": "8.0.mysql_aurora.3.07.1", "scaling": {"minCapacityAcu": 0}})
    assert "8.0.mysql_aurora.3.08.0 or later when scaling.minCapacityAcu is 0" in text
    assert load(db={"engineVersion": "8.0.mysql_aurora.3.07.1"}).db.engine_version.endswith("3.07.1")


@pytest.mark.parametrize("version", ["5.7.mysql_aurora.2.11.2", "8.0.mysql_aurora.3.10", "8.0.32", "latest"])
def test_engine_version_is_aurora_mysql_3(version):
    assert "an Aurora MySQL 3 engine version" in problems_of(db={"engineVersion": version})


@pytest.mark.parametrize("readers, ok", [(0, True), (15, True), (16, False), (-1, False), (1.5, False), ("two", False)])
def test_readers_range(readers, ok):
    if ok:
        assert load(db={"dbReaders": readers}).db.db_readers == readers
    else:
        assert "a whole number of reader instances from 0 to 15" in problems_of(db={"dbReaders": readers})


@pytest.mark.parametrize("packet, ok", [("1073741824", True), (4194304, True), (1024, True),
                                         (1073741825, False), (512, False), ("4M", False), (4194305, False)])
def test_max_allowed_packet_bytes(packet, ok):
    if ok:
        assert load(db={"maxAllowedPacket": packet}).db.max_allowed_packet == int(packet)
    else:
        assert "bytes from 1024 to 1073741824, a multiple of 1024" in problems_of(db={"maxAllowedPacket": packet})


def test_backtrack_and_backups():
    s = load(db={"backtrackHours": 72, "backupRetentionDays": 35})
    assert (s.db.backtrack_hours, s.db.backup_retention_days) == (72, 35)
    assert "0 to 72 hours" in problems_of(db={"backtrackHours": 73})
    assert "1 to 35 days" in problems_of(db={"backupRetentionDays": 0})


def test_database_monitoring_defaults_follow_whether_the_stage_keeps_data():
    kept = load()
    assert (kept.enhanced_monitoring_seconds, kept.db.monitoring.performance_insights_retention_days,
            kept.db.monitoring.database_insights) == (60, 7, "standard")
    assert load(removalPolicy="destroy").enhanced_monitoring_seconds == 0
    assert load(removalPolicy="destroy", db={"monitoring": {"enhancedMonitoringSeconds": 5}}).enhanced_monitoring_seconds == 5
    assert load(db={"monitoring": {"enhancedMonitoringSeconds": 0}}).enhanced_monitoring_seconds == 0
    advanced = load(db={"monitoring": {"databaseInsights": "advanced", "performanceInsightsRetentionDays": 465}})
    assert (advanced.db.monitoring.database_insights, advanced.db.monitoring.performance_insights_retention_days) == (
        "advanced", 465)
    for days in (7, 31, 713, 731):
        assert load(db={"monitoring": {"performanceInsightsRetentionDays": days}}).db.monitoring.performance_insights_retention_days == days


def test_database_monitoring_messages():
    for bad in (2, 120, "often", True):
        assert ("redcap:db.monitoring.enhancedMonitoringSeconds = " in (text := problems_of(
            db={"monitoring": {"enhancedMonitoringSeconds": bad}})))
        assert ("allowed: 0 (off), 1, 5, 10, 15, 30 or 60 seconds between Enhanced Monitoring samples; "
                "example: 60") in text
    for bad in (0, 8, 30, 732, "week"):
        assert ("allowed: 7 (free), a multiple of 31 up to 713 (months), or 731 days of Performance Insights data; "
                "example: 7") in problems_of(db={"monitoring": {"performanceInsightsRetentionDays": bad}})
    assert ("redcap:db.monitoring.databaseInsights = 'Advanced': allowed: standard (free) or advanced (billed per "
            "ACU-hour; needs performanceInsightsRetentionDays of at least 465); example: standard") in problems_of(
        db={"monitoring": {"databaseInsights": "Advanced"}})
    assert ("redcap:db.monitoring.performanceInsightsRetentionDays = 434: allowed: at least 465 days with "
            "databaseInsights: advanced (RDS refuses the mode with less): 465, 496, ... 713 or 731; example: "
            "performanceInsightsRetentionDays: 465") in problems_of(
        db={"monitoring": {"databaseInsights": "advanced", "performanceInsightsRetentionDays": 434}})
    assert ("redcap:db.monitoring.interval = 60: unknown key; allowed: databaseInsights, enhancedMonitoringSeconds, "
            "performanceInsightsRetentionDays") in problems_of(db={"monitoring": {"interval": 60}})


def test_upgrade_block():
    s = load()
    assert (s.upgrade.snapshot, s.upgrade.database, s.upgrade_snapshot, s.release) == (None, False, True, "15.0.9")
    assert load(removalPolicy="destroy").upgrade_snapshot is False
    assert load(removalPolicy="destroy", upgrade={"snapshot": True}).upgrade_snapshot is True
    assert load(upgrade={"snapshot": False, "database": True}).upgrade_snapshot is False
    assert load(upgrade={"database": "true"}).upgrade.database is True
    # A zip whose name carries no version: the release is deployTag.
    assert load(redCapS3Path="my-redcap-releases/current.zip", deployTag="15.1.0-site2").release == "15.1.0-site2"
    assert "redcap:upgrade.database = 'yes': allowed: true or false; example: true" in problems_of(
        upgrade={"database": "yes"})
    assert "redcap:upgrade.snapshots = true: unknown key; allowed: database, snapshot" in problems_of(
        upgrade={"snapshots": True})
    assert ("redcap:upgrade = true: allowed: an object; example: pulumi config set --path redcap:upgrade.database "
            "true") in problems_of(upgrade=True)


def test_snapshot_id_forms():
    assert load(db={"dbSnapshotId": "rds:redcap-2026-11-01"}).db.db_snapshot_id == "rds:redcap-2026-11-01"
    arn = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:redcap-final-1a2b"
    assert load(db={"dbSnapshotId": arn}).db.db_snapshot_id == arn
    assert "an Aurora cluster snapshot identifier or ARN" in problems_of(db={"dbSnapshotId": "1 bad"})


def test_engine_upgrade_names_a_newer_version():
    s = load(db={"engineVersion": "8.0.mysql_aurora.3.10.3", "engineUpgradeTo": "8.0.mysql_aurora.3.11.0"})
    assert s.db.engine_upgrade_to == "8.0.mysql_aurora.3.11.0"
    assert load().db.engine_upgrade_to is None
    for older in ("8.0.mysql_aurora.3.10.3", "8.0.mysql_aurora.3.09.2"):
        text = problems_of(db={"engineVersion": "8.0.mysql_aurora.3.10.3", "engineUpgradeTo": older})
        assert (f"redcap:db.engineUpgradeTo = '{older}': allowed: a version newer than db.engineVersion "
                "8.0.mysql_aurora.3.10.3 (the version to upgrade the running cluster to; afterwards set "
                "engineVersion to it and remove engineUpgradeTo); example: 8.0.mysql_aurora.3.11.0") in text
    # Versions compare as numbers (3.9 before 3.10), and the format is the engine version's.
    assert "redcap:db.engineUpgradeTo" in problems_of(db={"engineVersion": "8.0.mysql_aurora.3.10.0",
                                                          "engineUpgradeTo": "8.0.mysql_aurora.3.09.9"})
    assert "an Aurora MySQL 3 engine version" in problems_of(db={"engineUpgradeTo": "8.4.mysql_aurora.4.00.0"})


def test_previous_cluster_only_during_a_restore():
    s = load(db={"dbSnapshotId": "redcap-prod-before", "previousCluster": {"deletionProtection": True}})
    assert s.db.previous_cluster.db_snapshot_id is None and s.previous_cluster_protected is True
    lowered = load(db={"dbSnapshotId": "redcap-prod-before", "previousCluster": {"deletionProtection": False}})
    assert lowered.previous_cluster_protected is False and lowered.protect_data is True
    assert load(db={"dbSnapshotId": "s2", "previousCluster": {}}, removalPolicy="destroy").previous_cluster_protected is False
    text = problems_of(db={"previousCluster": {"deletionProtection": True}})
    assert ('redcap:db.previousCluster = {"deletionProtection": true}: allowed: a previous cluster only during a '
            "restore in place, together with db.dbSnapshotId (the snapshot the new cluster is restored from); "
            "example: dbSnapshotId: redcap-prod-a1b2c3d4-before-upgrade, previousCluster: {deletionProtection: true}") in text
    text = problems_of(db={"dbSnapshotId": "s1", "previousCluster": {"dbSnapshotId": "s1"}})
    assert ("redcap:db.previousCluster.dbSnapshotId = 's1': allowed: the snapshot the cluster being replaced was "
            "restored from (omit it for the stage's first cluster), which is not db.dbSnapshotId; to restore the "
            "same snapshot again, copy it first (aws rds copy-db-cluster-snapshot) and restore the copy; "
            "example: previousCluster: {dbSnapshotId: redcap-prod-a1b2c3d4-before-upgrade}") in text
    assert "an Aurora cluster snapshot identifier or ARN" in problems_of(
        db={"dbSnapshotId": "s1", "previousCluster": {"dbSnapshotId": "1 bad"}})
    assert "redcap:db.previousCluster.keep = true: unknown key; allowed: dbSnapshotId, deletionProtection" in \
        problems_of(db={"dbSnapshotId": "s1", "previousCluster": {"keep": True}})


def test_db_salt_is_a_secret_checked_without_showing_it():
    assert load(dbSalt="Old-salt-of-32-characters-abcdef").has_db_salt is True
    assert load().has_db_salt is False
    for bad in ("short", " padded-salt-of-enough-length ", "line-one-of-salt\nline-two"):
        text = problems_of(dbSalt=bad)
        assert ("redcap:dbSalt = '[secret]': allowed: 16 to 1024 characters without leading or trailing white "
                "space (the old stage's salt, exactly as its secret holds it); example: "
                'pulumi config set --secret redcap:dbSalt "$OLD_SALT"') in text
        assert bad.strip() not in text


def test_unknown_nested_key_lists_the_known_ones():
    text = problems_of(db={"readers": 2})
    assert "redcap:db.readers = 2: unknown key; allowed: backtrackHours, backupRetentionDays, dbReaders" in text


# --- runtime -----------------------------------------------------------------------------------

def test_timezone_is_iana():
    assert load(phpTimezone="America/Chicago").php_timezone == "America/Chicago"
    assert "allowed: an IANA time zone name" in problems_of(phpTimezone="CST")


@pytest.mark.parametrize("given, stored", [("256M", "256M"), ("1G", "1024M"), ("512m", "512M"), ("128M", "128M"),
                                           ("16G", "16384M")])
def test_php_memory_limit(given, stored):
    assert load().php_memory_limit == "256M"
    assert load(phpMemoryLimit=given).php_memory_limit == stored


@pytest.mark.parametrize("bad", ["64M", "17G", "-1", "256", "256MB", "1.5G"])
def test_php_memory_limit_invalid(bad):
    assert (f"redcap:phpMemoryLimit = {bad!r}: allowed: PHP memory_limit per request, 128M to 16G "
            "(a number with M or G); example: 512M") in problems_of(phpMemoryLimit=bad)


@pytest.mark.parametrize("port, ok", [(1025, True), (65535, True), (8080, True), (1024, False), (65536, False), ("x", False)])
def test_port_range(port, ok):
    if ok:
        assert load(port=port).port == port
    else:
        assert "1025 to 65535" in problems_of(port=port)


@pytest.mark.parametrize("cpu, memory", [("0.25 vCPU", "0.5 GB"), ("1 vCPU", "3 GB"), ("4 vCPU", "12 GB"), ("2", "6")])
def test_app_runner_valid_pairs(cpu, memory):
    s = load(cpu=cpu, memory=memory)
    assert memory.split()[0] in s.memory and s.memory in settings.APPRUNNER_SIZES[s.cpu]


def test_app_runner_invalid_values_and_pairs():
    assert "App Runner cpu 0.25 vCPU, 0.5 vCPU, 1 vCPU, 2 vCPU, 4 vCPU" in problems_of(cpu="3 vCPU")
    assert "App Runner memory" in problems_of(memory="5 GB")
    assert "for cpu 2 vCPU: 4 GB, 6 GB" in problems_of(cpu="2 vCPU", memory="12 GB")


def test_app_runner_scaling():
    assert "1 to 200 concurrent requests" in problems_of(appRunnerConcurrency=0)
    assert "1 to 25 instances" in problems_of(appRunnerMaxSize=26)
    assert "appRunnerMinSize <= appRunnerMaxSize" in problems_of(appRunnerMinSize=3, appRunnerMaxSize=2)


ZONE = {"domain": "example.org", "subdomain": "redcap", "hostInRoute53": True, "zoneDelegated": True}


@pytest.mark.parametrize("cpu, memory, units, mib", [("2 vCPU", "4 GB", 2048, 4096), ("0.25 vCPU", "512", 256, 512),
                                                      ("16 vCPU", "120 GB", 16384, 122880), ("4096", "30 GB", 4096, 30720)])
def test_fargate_valid_pairs(cpu, memory, units, mib):
    s = load(**ZONE, ecs={"cpu": cpu, "memory": memory})
    assert (s.ecs.cpu, s.ecs.memory) == (units, mib)


def test_fargate_invalid():
    assert "Fargate CPU: 0.25, 0.5, 1, 2, 4, 8 or 16 vCPU" in problems_of(**ZONE, ecs={"cpu": "3 vCPU"})
    text = problems_of(**ZONE, ecs={"cpu": "1 vCPU", "memory": "16 GB"})
    assert "for 1 vCPU Fargate accepts memory 2 GB, 3 GB, 4 GB, 5 GB, 6 GB, 7 GB, 8 GB" in text


def test_fargate_scaling_bounds():
    s = load(**ZONE, ecs={"scaling": {"minContainers": 2, "maxContainers": 4}})
    assert (s.ecs.scaling.min_containers, s.ecs.scaling.max_containers) == (2, 4)
    assert "minContainers <= maxContainers" in problems_of(**ZONE, ecs={"scaling": {"minContainers": 3, "maxContainers": 2}})
    assert "a target utilisation from 10 to 95 percent" in problems_of(**ZONE, ecs={"scaling": {"cpuUtilization": 99}})
    assert "1 to 100000 requests" in problems_of(**ZONE, ecs={"scaling": {"requestsPerContainer": 0}})
    assert "a whole number of tasks from 1 to 100" in problems_of(**ZONE, ecs={"scaling": {"maxContainers": 0}})


def test_ecs_requires_a_zone_or_a_certificate():
    text = problems_of(ecs={})
    assert "ECS serves HTTPS only" in text and "redcap:ecs" in text
    text = problems_of(domain="example.org", hostInRoute53=False, ecs={})
    assert "ECS serves HTTPS only" in text
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    assert load(domain="example.org", hostInRoute53=False, ecs={"certificateArn": cert}).uses_ecs
    assert "an ACM certificate ARN" in problems_of(**ZONE, ecs={"certificateArn": "arn:aws:acm:bad"})


def test_ses_identity_must_exist():
    text = problems_of(email=None)
    assert "redcap:email = null: allowed: an SES identity: redcap:email, or redcap:domain with a Route53 zone" in text
    assert load(email=None, domain="example.org", zoneDelegated=False).has_zone
    assert "an SES identity" in problems_of(email=None, domain="example.org", hostInRoute53=False)


@pytest.mark.parametrize("address, ok", [("a@example.org", True), ("first.last+tag@sub.example.co.uk", True),
                                         ("no-at.example.org", False), ("a@b", False), ("a@-b.org", False)])
def test_email_syntax(address, ok):
    if ok:
        assert load(email=address, bounceNotificationEmail=address, domain="example.org",
                    zoneDelegated=False).bounce_notification_email == address
    else:
        assert "allowed: an e-mail address" in problems_of(email=address)


@pytest.mark.parametrize("value, days", [(365, 365), ("30", 30), ("one_year", 365), ("TWO_YEARS", 731), (3653, 3653)])
def test_log_retention_valid(value, days):
    assert load(generalLogRetention=value).general_log_retention == days


@pytest.mark.parametrize("value", [0, 2, 364, "forever"])
def test_log_retention_invalid(value):
    assert "(days) or a name like one_year" in problems_of(generalLogRetention=value)


@pytest.mark.parametrize("key, bad, allowed", [
    ("natGateways", "two", "onePerAz or single"),
    ("removalPolicy", "delete", "destroy, snapshot or retain"),
    ("imageBuild", "docker", "codebuild or local"),
    ("dbAuth", "token", "iam or password"),
    ("guardDuty", "yes", "true or false"),
    ("deletionProtection", "on", "true or false"),
])
def test_enum_keys(key, bad, allowed):
    text = problems_of(**{key: bad})
    assert f"redcap:{key} = '{bad}'" in text and f"allowed: {allowed}" in text


@pytest.mark.parametrize("value", ["onInstall", "apply"])
def test_configuration_sql_values(value):
    assert load().configuration_sql == "onInstall"
    assert load(configurationSql=value).configuration_sql == value


@pytest.mark.parametrize("bad", ["Apply", "always", "true", "on-install", ""])
def test_configuration_sql_is_spelled_exactly(bad):
    # apply resets a production site's login method: only the exact word means it.
    assert problems_of(configurationSql=bad) == (
        "Invalid stage settings (1 problem); nothing was created:\n"
        f"  - redcap:configurationSql = {bad!r}: allowed: onInstall (apply sql/redcap-config*.sql "
        "only to a database on which the container installed REDCap itself) or apply (also to a "
        "database where REDCap was already installed, e.g. migrated or restored: resets the "
        "settings the file sets and gives a site_admin without a table login the generated "
        "password; once per file); example: apply")


def test_deletion_protection_follows_removal_policy_unless_set():
    assert load(removalPolicy="destroy").protect_data is False
    assert load(removalPolicy="retain").protect_data is True
    assert load(removalPolicy="snapshot", deletionProtection=False).protect_data is False
    assert load(removalPolicy="destroy", deletionProtection=True).protect_data is True


def test_tunnel_host():
    s = load(ec2ServerStack={"durationHours": 8})
    assert (s.ec2_server_stack.duration_hours, s.ec2_server_stack.instance_type) == (8, "t3.medium")
    for hours in (0, 73, "x"):
        assert "redcap:ec2ServerStack.durationHours" in problems_of(ec2ServerStack={"durationHours": hours})
    assert "an EC2 instance type family.size" in problems_of(ec2ServerStack={"instanceType": "big"})
    for arm in ("t4g.medium", "m7gd.large", "c6gn.xlarge"):
        assert "an x86_64 instance type" in problems_of(ec2ServerStack={"instanceType": arm})
    for x86 in ("t3.medium", "m5.large", "g4dn.xlarge", "c7i.2xlarge"):
        assert load(ec2ServerStack={"instanceType": x86}).ec2_server_stack.instance_type == x86


def test_external_web_acl_arn():
    arn = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/site/a1b2c3d4-5678-90ab-cdef-111122223333"
    assert load(externalResources={"wafWebAcl": arn}).external_resources.waf_web_acl == arn
    global_arn = arn.replace("regional", "global")
    wrong_scope = ("allowed: with express a CLOUDFRONT-scope ACL (arn:aws:wafv2:us-east-1:<account>:global/webacl/...), "
                   "otherwise a REGIONAL one in the stack's region")
    assert f"redcap:externalResources.wafWebAcl = '{global_arn}': {wrong_scope}" in problems_of(
        externalResources={"wafWebAcl": global_arn})
    assert load(externalResources={"wafWebAcl": global_arn}, express={}).external_resources.waf_web_acl == global_arn
    assert wrong_scope in problems_of(externalResources={"wafWebAcl": arn}, express={})
    assert "a REGIONAL WAFv2 web ACL ARN (a CLOUDFRONT-scope one in us-east-1 for express)" in problems_of(
        externalResources={"wafWebAcl": global_arn.replace("us-east-1", "eu-west-1")}, express={})
    text = problems_of(externalResources={"wafWebAcl": arn}, allowedIps=["203.0.113.0/24"])
    assert "no allow-lists when an external web ACL is used" in text


def test_existing_ses_identity():
    assert load(externalResources={"sesIdentity": "Redcap-Admin@example.org"}).external_resources.ses_identity \
        == "redcap-admin@example.org"
    assert load(email="lab@redcap.example.org", externalResources={"sesIdentity": "example.org"}) \
        .external_resources.ses_identity == "example.org"
    assert ("redcap:externalResources.sesIdentity = 'not an identity': allowed: a verified SES identity of this "
            "account and region: an e-mail address or a domain; example: redcap-admin@example.org"
            in problems_of(externalResources={"sesIdentity": "not an identity"}))
    assert ("redcap:externalResources.sesIdentity = 'other@example.org': allowed: an identity that covers "
            "redcap:email (redcap-admin@example.org): that address or its domain; example: "
            "sesIdentity: redcap-admin@example.org" in problems_of(externalResources={"sesIdentity": "other@example.org"}))
    assert "covers redcap:email (redcap-admin@example.org)" in problems_of(externalResources={"sesIdentity": "xexample.org"})


def test_bounce_notifications_need_a_domain_identity():
    text = problems_of(bounceNotificationEmail="bounces@example.org")
    assert ("redcap:bounceNotificationEmail = 'bounces@example.org': allowed: bounce and complaint events of the "
            "stage's own domain identity, so redcap:domain with a Route53 zone" in text)
    assert "bounces@example.org" in problems_of(bounceNotificationEmail="bounces@example.org", domain="example.org",
                                                hostInRoute53=False)
    assert load(bounceNotificationEmail="bounces@example.org", domain="example.org", zoneDelegated=False).has_zone


def test_domains():
    s = load(domain="Example.ORG.", subdomain="redcap", zoneDelegated=True)
    assert (s.domain, s.fqdn, s.has_zone) == ("example.org", "redcap.example.org", True)
    assert "a DNS name of two or more labels" in problems_of(domain="localhost")
    assert "a subdomain only together with redcap:domain" in problems_of(subdomain="redcap")
    s = load(domain="redcap.example.org", hostInRoute53="example.org")
    assert s.host_in_route53 == "example.org"
    text = problems_of(domain="redcap.example.com", hostInRoute53="example.org")
    assert "an existing zone that contains domain redcap.example.com" in text
    assert load(domain="example.org", hostInRoute53="false").has_zone is False


def test_cron():
    assert load(cronMinutes=0).cron_minutes == 0
    assert "0 (no schedule) to 1440 minutes" in problems_of(cronMinutes=-1)
    assert load(cronSecret="anything").has_cron_secret is True


def test_sqli_count_rules():
    assert load(wafSqliRulesToCount=["SQLi_BODY", "SQLi_BODY"]).waf_sqli_rules_to_count == ("SQLi_BODY",)
    assert "rule names of AWSManagedRulesSQLiRuleSet" in problems_of(wafSqliRulesToCount=["SQLi_EVERYTHING"])


def test_ns_delegation():
    s = load(redCapS3Path=None, email=None, nsDelegation={
        "domain": "example.org",
        "records": [{"name": "redcap", "fromStack": "acme/redcap/prod"},
                    {"name": "dev.redcap", "nameServers": ["ns-1.awsdns-01.org", "ns-2.awsdns-02.com"]}]})
    assert s.ns_delegation.records[0].from_stack == "acme/redcap/prod"
    assert "exactly one of nameServers or fromStack" in problems_of(
        nsDelegation={"domain": "example.org", "records": [{"name": "redcap"}]})
    assert "a fully qualified stack name org/project/stack" in problems_of(
        nsDelegation={"domain": "example.org", "records": [{"name": "redcap", "fromStack": "prod"}]})
    assert "a non-empty list" in problems_of(nsDelegation={"domain": "example.org", "records": []})


# --- unknown keys ------------------------------------------------------------------------------

def test_unknown_top_level_key_suggests_the_right_one():
    text = problems_of(allowedIp=["203.0.113.0/24"])
    assert "redcap:allowedIp = '[\"203.0.113.0/24\"]': unknown key (did you mean redcap:allowedIps?)" in text


def test_region_is_required():
    with pytest.raises(SettingsError) as err:
        load_settings({"redcap:redCapS3Path": "b-1/redcap1.2.3.zip", "redcap:email": "a@example.org"},
                      stack="x", region=None)
    assert "aws:region = null: the AWS region must be set" in str(err.value)


def test_structured_value_must_be_json_object():
    with pytest.raises(SettingsError) as err:
        load_settings({**{f"redcap:{k}": v for k, v in BASE.items()}, "redcap:db": "{not json"},
                      stack="x", region="us-east-1")
    assert "redcap:db = '{not json': allowed: a YAML object or list" in str(err.value)


def test_every_key_is_documented_in_pulumi_yaml_or_settings_reference():
    """The contract is whole: every DESIGN.md key exists."""
    design_keys = {"redCapLocalVersion", "redCapS3Path", "deployTag", "allowedIps", "allowedCountries", "domain",
                   "subdomain", "hostInRoute53", "email", "bounceNotificationEmail", "phpTimezone", "port", "cpu",
                   "memory", "appRunnerConcurrency", "appRunnerMinSize", "appRunnerMaxSize", "ecs", "cronSecret",
                   "cronMinutes", "db", "dbAuth", "ec2ServerStack", "generalLogRetention", "externalResources",
                   "natGateways", "removalPolicy", "deletionProtection", "imageBuild", "guardDuty", "nsDelegation"}
    assert design_keys <= set(settings.KNOWN_KEYS)


def test_rules_across_keys_are_reported_with_single_key_problems():
    text = problems_of(port=80, email=None, cpu="1 vCPU", memory="6 GB")
    assert "(3 problems)" in text
    assert "redcap:port = '80'" in text
    assert "redcap:email = null: allowed: an SES identity" in text
    assert "redcap:memory = '6 GB': allowed: for cpu 1 vCPU" in text


def test_a_rule_across_keys_is_not_reported_when_its_input_is_already_wrong():
    # The bad domain is reported; "no SES identity" would only be a consequence of it.
    text = problems_of(email=None, domain="localhost")
    assert "redcap:domain = 'localhost'" in text
    assert "an SES identity" not in text
    assert "(1 problem)" in text


@pytest.mark.parametrize("stack, ok", [("prod", True), ("prod-eu_2", True), ("prod.eu", False), ("x" * 41, False)])
def test_stack_name_fits_aws_resource_names(stack, ok):
    raw = {f"redcap:{k}": v for k, v in BASE.items()}
    if ok:
        assert load_settings(raw, stack=stack, region="us-east-1").stack == stack
    else:
        with pytest.raises(SettingsError) as err:
            load_settings(raw, stack=stack, region="us-east-1")
        assert f"stack name = '{stack}': allowed: letters, digits, - and _" in str(err.value)


# --- Express (ECS Express Mode) and surveys-only allow-lists -----------------------------------

US_EAST_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"


def test_express_defaults_and_valid_values():
    s = load(express={})
    assert s.runtime == "express" and s.uses_express and not s.uses_ecs
    assert (s.express.cpu, s.express.memory) == (2048, 4096)
    scaling = s.express.scaling
    assert (scaling.min_containers, scaling.max_containers, scaling.metric, scaling.target) == (1, 2, "cpu", 70)
    assert scaling.api_metric == "AVERAGE_CPU"
    s = load(express={"cpu": "4 vCPU", "memory": "8 GB",
                      "scaling": {"minContainers": 2, "maxContainers": 5, "metric": "requests", "target": 300}})
    assert (s.express.cpu, s.express.memory, s.express.scaling.api_metric, s.express.scaling.target) == (
        4096, 8192, "REQUEST_COUNT_PER_TARGET", 300)
    assert load(express={"scaling": {"metric": "memory", "target": 80}}).express.scaling.api_metric == "AVERAGE_MEMORY"
    assert load().runtime == "apprunner" and load(**ZONE, ecs={}).runtime == "ecs"


@pytest.mark.parametrize("express, message", [
    ({"cpu": "8 vCPU", "memory": "16 GB"},
     "redcap:express = {\"cpu\": \"8 vCPU\", \"memory\": \"16 GB\"}: allowed: Express CPU: 0.25, 0.5, 1, 2 or 4 vCPU; "
     "example: {cpu: 2 vCPU, memory: 4 GB}"),
    ({"cpu": "4 vCPU", "memory": "16 GB"},
     "allowed: for 4 vCPU Express accepts memory 8 GB; example: {cpu: 2 vCPU, memory: 4 GB}"),
    ({"cpu": "3 vCPU"}, "redcap:express.cpu = '3 vCPU': allowed: Fargate CPU: 0.25, 0.5, 1, 2, 4, 8 or 16 vCPU"),
    ({"scaling": {"metric": "latency"}},
     "redcap:express.scaling.metric = 'latency': allowed: cpu, memory or requests; example: cpu"),
    ({"scaling": {"target": 99}},
     "allowed: for metric cpu a target utilisation from 10 to 95 percent; example: {metric: cpu, target: 70}"),
    ({"scaling": {"target": 0, "metric": "requests"}},
     "redcap:express.scaling.target = 0: allowed: a whole number: a percentage (cpu, memory) or requests per task "
     "per minute; example: 70"),
    ({"scaling": {"minContainers": 3, "maxContainers": 2}}, "allowed: minContainers <= maxContainers"),
    ({"scaling": {"maxContainers": 101}},
     "redcap:express.scaling.maxContainers = 101: allowed: a whole number of tasks from 1 to 100; example: 2"),
    ({"certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"},
     "allowed: an ACM certificate ARN in us-east-1 (CloudFront uses certificates from there only)"),
    ({"instances": 2}, "redcap:express.instances = 2: unknown key; allowed: certificateArn, cpu, memory, scaling"),
])
def test_express_invalid_values(express, message):
    assert message in problems_of(**ZONE, express=express)


def test_express_and_ecs_are_mutually_exclusive():
    text = problems_of(**ZONE, ecs={}, express={})
    assert ("redcap:ecs/express = 'both set': allowed: one runtime: an ecs block (ECS Fargate behind your own "
            "load balancer) or an express block (ECS Express Mode behind CloudFront), not both; "
            "example: express: {}") in text


def test_express_needs_no_domain_but_a_domain_needs_a_certificate():
    assert load(express={}).domain is None  # the CloudFront URL serves HTTPS
    assert load(**ZONE, express={}).has_zone
    assert load(domain="example.org", hostInRoute53="example.org", express={}).has_zone
    text = problems_of(domain="example.org", hostInRoute53=False, express={})
    assert ("redcap:express = 'domain without a Route53 zone or express.certificateArn': allowed: for "
            "redcap:domain on Express, hostInRoute53 true or a zone name (the certificate is validated there), "
            "or express.certificateArn (an ACM certificate in us-east-1); example: hostInRoute53: true") in text
    s = load(domain="example.org", hostInRoute53=False, express={"certificateArn": US_EAST_CERT})
    assert s.express.certificate_arn == US_EAST_CERT
    assert ("redcap:express.certificateArn = '" + US_EAST_CERT + "': allowed: a certificate together with "
            "redcap:domain (the name it is for)") in problems_of(express={"certificateArn": US_EAST_CERT})


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "eu-south-2", "mx-central-1"])
def test_express_runs_wherever_the_region_table_says(region):
    # eu-south-2 and mx-central-1 have no App Runner: Express must not be taken for App Runner there.
    raw = {f"redcap:{k}": v for k, v in BASE.items()} | {"redcap:express": "{}"}
    assert load_settings(raw, stack="test", region=region).uses_express


@pytest.mark.parametrize("region", ["us-gov-west-1", "us-gov-east-1"])
def test_express_is_refused_where_the_region_table_has_no_express_runtime(region):
    raw = {f"redcap:{k}": v for k, v in BASE.items()} | {"redcap:express": "{}"}
    with pytest.raises(SettingsError) as err:
        load_settings(raw, stack="test", region=region)
    assert str(err.value).splitlines()[1:] == [
        f"  - redcap:express = 'in region {region}': allowed: a region where the Express runtime runs: every "
        "region of the table but us-gov-east-1, us-gov-west-1 (its public entry is CloudFront, which AWS GovCloud "
        "(US) does not offer; docs/regions.md); use an ecs block there; example: aws:region: us-east-1"]


def test_express_outside_the_region_table_gets_the_unknown_region_message_only():
    raw = {f"redcap:{k}": v for k, v in BASE.items()} | {"redcap:express": "{}"}
    with pytest.raises(SettingsError) as err:
        load_settings(raw, stack="test", region="cn-north-1")
    text = str(err.value)
    assert "redcap:express" not in text
    assert "aws:region = 'cn-north-1': allowed: a region of the region table settings/regions.py" in text


def test_allow_list_scope():
    assert load().allow_list_scope == "all" and not load().surveys_exempt_from_allow_lists
    s = load(allowedIps=["203.0.113.0/24"], allowListScope="allButSurveys")
    assert s.surveys_exempt_from_allow_lists
    assert load(allowedCountries=["US"], allowListScope="allButSurveys").surveys_exempt_from_allow_lists
    assert ("redcap:allowListScope = 'staff': allowed: all (the allow-lists cover every path) or allButSurveys "
            "(REDCap's public survey pages are reachable from anywhere); example: allButSurveys") in problems_of(
        allowedIps=["203.0.113.0/24"], allowListScope="staff")
    assert ("redcap:allowListScope = 'allButSurveys': allowed: allButSurveys together with allowedIps or "
            "allowedCountries (without a list there is nothing to exempt the surveys from); "
            "example: allowedIps: [203.0.113.0/24]") in problems_of(allowListScope="allButSurveys")
