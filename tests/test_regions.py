"""The region table (settings/regions.py): its shape, the settings rules that read it, the
program in regions without Aurora backtrack and without App Runner, and the docs page."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import harness
from docs_reference import render_regions_doc
from policy.model import Resource
from policy.rules import rds_backtrack
from settings import SettingsError, load_settings, regions
from variants import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
BASE = {"redcap:redCapS3Path": "my-redcap-releases/redcap15.0.9.zip", "redcap:email": "redcap-admin@example.org"}
ECS = {"redcap:ecs": "{}", "redcap:domain": "redcap.example.org", "redcap:zoneDelegated": "true"}


def variant(variant_id: str) -> harness.StackRun:
    _, stack, overrides = next(v for v in VARIANTS if v[0] == variant_id)
    return harness.cached_run(stack, overrides)


def problems(raw: dict[str, str], region: str) -> str:
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, **raw}, stack="test", region=region)
    return str(err.value)


# --- the table -------------------------------------------------------------------------------

def test_rows_are_sorted_named_by_their_key_and_well_formed():
    assert list(regions.REGIONS) == sorted(regions.REGIONS)
    for name, facts in regions.REGIONS.items():
        assert facts.name == name and re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", name), name
        assert facts.app_runner_zone_id is None or re.fullmatch(r"Z[0-9A-Z]{10,32}", facts.app_runner_zone_id)
        assert facts.elb_log_account is None or re.fullmatch(r"\d{12}", facts.elb_log_account)
    with pytest.raises(TypeError):
        regions.REGIONS["xx-test-1"] = regions.REGIONS["us-east-1"]  # a frozen mapping


def test_lookup_api():
    assert regions.lookup("us-east-1").backtrack is True
    assert regions.lookup("nowhere-1") is None
    with pytest.raises(KeyError, match="not in the region table"):
        regions.require("nowhere-1")
    assert "eu-south-2" in regions.names(lambda f: not f.backtrack)
    assert regions.require("eu-west-3").app_runner is True and regions.require("eu-south-2").app_runner is False


def test_express_runtime_column():
    """Every commercial row runs the Express runtime; GovCloud has no CloudFront, its public entry.
    The settings read the column (tests/test_settings.py) and nothing else decides it."""
    assert regions.names(lambda f: not f.ecs_express) == ["us-gov-east-1", "us-gov-west-1"]
    assert all(isinstance(f.ecs_express, bool) for f in regions.REGIONS.values())
    settings_sources = "".join(p.read_text() for p in (ROOT / "settings").glob("*.py") if p.name != "regions.py")
    assert "us-gov-" not in settings_sources and "express_available" not in settings_sources


def test_alb_log_writer_per_region():
    # Before August 2022: the regional ELB account; newer regions: the log-delivery principal.
    assert regions.require("us-east-1").elb_log_principal("aws") == {"AWS": "arn:aws:iam::127311923021:root"}
    assert regions.require("us-gov-west-1").elb_log_principal("aws-us-gov") == {
        "AWS": "arn:aws-us-gov:iam::048591011584:root"}
    for newer in ("eu-south-2", "ap-south-2", "il-central-1", "me-central-1", "ca-west-1", "mx-central-1"):
        assert regions.require(newer).elb_log_principal("aws") == {
            "Service": "logdelivery.elasticloadbalancing.amazonaws.com"}, newer


def test_no_region_fact_is_hard_coded_outside_the_table():
    """Every region-dependent value comes from settings/regions.py: no hosted zone id or ELB
    account id of the table appears in program code."""
    facts = {v for f in regions.REGIONS.values() for v in (f.app_runner_zone_id, f.elb_log_account) if v}
    sources = [p for d in ("components", "settings", "policy") for p in (ROOT / d).glob("*.py")] + [ROOT / "__main__.py"]
    for path in sources:
        if path.name == "regions.py":
            continue
        text = path.read_text()
        assert not [v for v in facts if v in text], path
        assert "get_service_account" not in text, path


# --- settings --------------------------------------------------------------------------------

def test_unknown_region_is_rejected_with_the_table_named():
    text = problems({}, "xx-nowhere-1")
    assert "aws:region = 'xx-nowhere-1': allowed: a region of the region table settings/regions.py" in text
    assert "example: pulumi config set aws:region eu-west-1" in text


def test_app_runner_where_it_does_not_run():
    text = problems({}, "eu-south-2")
    assert ("aws:region = 'eu-south-2': allowed: App Runner is not offered in eu-south-2: there, run on ECS "
            "Express Mode (an express block) or ECS Fargate (an ecs block); App Runner (neither block) runs in "
            "ap-northeast-1, ap-south-1, ") in text
    assert "example: redcap:express: {}, or aws:region: eu-west-1" in text
    assert load_settings({**BASE, **ECS}, stack="test", region="eu-south-2").ecs is not None
    assert load_settings({**BASE, "redcap:express": "{}"}, stack="test", region="eu-south-2").uses_express


def test_backtrack_defaults_to_zero_where_aurora_has_none_and_an_explicit_value_is_an_error():
    assert load_settings({**BASE, **ECS}, stack="test", region="eu-south-2").db.backtrack_hours == 0
    assert load_settings({**BASE, "redcap:db": '{"dbReaders": 0}', **ECS}, stack="test",
                         region="sa-east-1").db.backtrack_hours == 0
    assert load_settings(BASE, stack="test", region="us-east-1").db.backtrack_hours == 24
    assert load_settings({**BASE, "redcap:db": '{"backtrackHours": 0}', **ECS}, stack="test",
                         region="eu-south-2").db.backtrack_hours == 0
    text = problems({"redcap:db": '{"backtrackHours": 24}', **ECS}, "eu-south-2")
    assert ("redcap:db.backtrackHours = 24.0: allowed: 0 in eu-south-2, where Aurora backtrack is not offered "
            "(leave it unset there: it then defaults to 0); backtrack regions: ap-northeast-1,") in text
    assert text.endswith("; example: 0")


# --- the program in such regions -------------------------------------------------------------

def test_program_in_a_region_without_backtrack_and_app_runner():
    run = variant("prod-eu-south-2")
    assert run.one("aws:rds/cluster:Cluster").inputs["backtrackWindow"] == 0
    assert run.of_type("aws:apprunner/service:Service") == [] and run.of_type("aws:ecs/service:Service")
    policy = json.loads(run.named("redcap-logs-policy").inputs["policy"])
    alb = next(s for s in policy["Statement"] if s["Sid"].startswith("AlbAccessLogs"))
    assert alb == {"Sid": "AlbAccessLogsDeliveryService", "Effect": "Allow",
                   "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                   "Action": "s3:PutObject",
                   "Resource": f"{run.named('redcap-logs').outputs['arn']}/alb/AWSLogs/{harness.ACCOUNT_ID}/*"}
    assert run.one("aws:ec2/vpcEndpoint:VpcEndpoint", "secretsmanager").inputs["serviceName"] == \
        "com.amazonaws.eu-south-2.secretsmanager"


def test_express_runs_in_a_region_without_app_runner_and_backtrack():
    run = variant("dev-express-eu-south-2")
    assert run.one("aws:rds/cluster:Cluster").inputs["backtrackWindow"] == 0
    assert run.one("aws:ecs/expressGatewayService:ExpressGatewayService")
    assert run.of_type("aws:apprunner/service:Service") == [] and run.of_type("aws:ecs/service:Service") == []
    # The CLOUDFRONT-scope ACL and its log group (with a key of that region) live in us-east-1.
    assert run.one("aws:wafv2/webAcl:WebAcl").inputs["region"] == "us-east-1"
    assert run.named("redcap-waf-log-key").inputs["region"] == "us-east-1"
    assert run.outputs["siteUrl"] == run.outputs["cloudFrontUrl"]


def test_program_in_an_older_region_without_backtrack_uses_its_elb_account():
    run = variant("dev-ecs-sa-east-1")
    assert run.one("aws:rds/cluster:Cluster").inputs["backtrackWindow"] == 0
    policy = json.loads(run.named("redcap-logs-policy").inputs["policy"])
    alb = next(s for s in policy["Statement"] if s["Sid"].startswith("AlbAccessLogs"))
    assert alb["Principal"] == {"AWS": "arn:aws:iam::507241528517:root"}


def test_the_program_asks_the_provider_no_elb_service_account():
    calls: list[str] = []
    original = harness.RecordingMocks.call

    def recording(self, args):
        calls.append(args.token)
        return original(self, args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness.RecordingMocks, "call", recording)
        _, stack, overrides = next(v for v in VARIANTS if v[0] == "prod-eu-south-2")
        harness.run_program(stack, overrides)
    assert "aws:elb/getServiceAccount:getServiceAccount" not in calls


def test_app_runner_apex_alias_uses_the_table_zone_of_the_region():
    # eu-west-3 was missing from the old fixed map: an apex domain there failed the program.
    run = harness.run_program("prod", {"ecs": None, "aws:region": "eu-west-3", "zoneDelegated": True})
    aliases = [a for r in run.of_type("aws:route53/record:Record") for a in r.inputs.get("aliases") or []]
    assert [a["zoneId"] for a in aliases] == ["Z087117439MBKHYM69QS6"]


def test_policy_accepts_no_backtrack_only_where_aurora_has_none():
    def cluster(region: str) -> Resource:
        return Resource.from_mock("aws:rds/cluster:Cluster", "db", {"engine": "aurora-mysql", "backtrackWindow": 0.0},
                                  {"arn": f"arn:aws:rds:{region}:{harness.ACCOUNT_ID}:cluster:db"})

    assert rds_backtrack(cluster("eu-south-2")) == []
    assert [v.rule for v in rds_backtrack(cluster("us-east-1"))] == ["rds-backtrack"]
    # A CrossGuard resource validation knows the region from the provider only.
    in_preview = Resource(type="aws:rds/cluster:Cluster", name="db", props={"engine": "aurora-mysql",
                                                                          "backtrackWindow": 0},
                          options={"providerRegion": "eu-south-2"})
    assert rds_backtrack(in_preview) == []


# --- docs ------------------------------------------------------------------------------------

def test_docs_page_lists_the_table_its_sources_and_the_date():
    text = (ROOT / "docs" / "regions.md").read_text()
    assert text == render_regions_doc(text), "docs/regions.md's table is stale: run scripts/settings-reference"
    assert regions.render_markdown() in text
    assert regions.CHECKED_ON in text
    for name, source in regions.SOURCES:
        assert f"- **{name}**: {source}." in text
