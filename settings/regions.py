"""Region-dependent facts: one row per AWS region the program supports, looked up by name.

Every region-dependent default or check in the program reads this table (settings validation,
the log bucket policy, App Runner's alias records, the policy pack's backtrack rule), so a new
region, or a feature AWS adds to one, is one row to edit. docs/regions.md renders the table
(`render_markdown`; a test compares) with the sources and the date they were checked.

Standard library only: the policy pack loads this file by path, without the settings package
and its dependencies.

Columns:
- backtrack: Aurora MySQL backtrack is offered (AWS: "Backtracking an Aurora DB cluster",
  Region and version availability). Regions the AWS table does not list are treated as not
  offering it.
- app_runner_zone_id: App Runner runs here; the Route 53 hosted zone id of its service
  endpoints (alias records), from AWS General Reference "AWS App Runner endpoints and quotas".
  None: no App Runner in this region.
- ecs_express: the Express runtime runs here: ECS Express Mode for the tasks and CloudFront (a VPC
  origin and a CLOUDFRONT-scope web ACL) for its public entry. AWS documents Express Mode as a
  feature of ECS on Fargate without a Region list, so it is taken as offered wherever the table
  has a row; CloudFront does not serve AWS GovCloud (US), so those rows say no.
- elb_log_account: the regional Elastic Load Balancing account that writes ALB access logs
  (regions opened before August 2022). None: the region is newer and the logs are written by the
  service principal `logdelivery.elasticloadbalancing.amazonaws.com` instead (AWS: "Enable
  access logs for your Application Load Balancer", bucket policy).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

CHECKED_ON = "2026-12-01"
ELB_LOG_DELIVERY_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"


@dataclass(frozen=True)
class RegionFacts:
    name: str
    location: str
    backtrack: bool
    app_runner_zone_id: Optional[str]
    elb_log_account: Optional[str]
    ecs_express: bool

    @property
    def app_runner(self) -> bool:
        return self.app_runner_zone_id is not None

    def elb_log_principal(self, partition: str) -> dict[str, str]:
        """The bucket-policy principal that delivers this region's ALB access logs."""
        if self.elb_log_account is not None:
            return {"AWS": f"arn:{partition}:iam::{self.elb_log_account}:root"}
        return {"Service": ELB_LOG_DELIVERY_PRINCIPAL}


def _row(name: str, location: str, *, backtrack: bool = False, app_runner: Optional[str] = None,
         elb: Optional[str] = None, express: bool = True) -> tuple[str, RegionFacts]:
    return name, RegionFacts(name=name, location=location, backtrack=backtrack, app_runner_zone_id=app_runner,
                             elb_log_account=elb, ecs_express=express)


# Sorted by region name. Keep each row on one line.
REGIONS: Mapping[str, RegionFacts] = MappingProxyType(dict([
    _row("af-south-1", "Africa (Cape Town)", elb="098369216593"),
    _row("ap-east-1", "Asia Pacific (Hong Kong)", elb="754344448648"),
    _row("ap-east-2", "Asia Pacific (Taipei)"),
    _row("ap-northeast-1", "Asia Pacific (Tokyo)", backtrack=True, app_runner="Z08491812XW6IPYLR6CCA", elb="582318560864"),
    _row("ap-northeast-2", "Asia Pacific (Seoul)", backtrack=True, elb="600734575887"),
    _row("ap-northeast-3", "Asia Pacific (Osaka)", backtrack=True, elb="383597477331"),
    _row("ap-south-1", "Asia Pacific (Mumbai)", backtrack=True, app_runner="Z00855883LBHKTIC4ODF2", elb="718504428378"),
    _row("ap-south-2", "Asia Pacific (Hyderabad)"),
    _row("ap-southeast-1", "Asia Pacific (Singapore)", backtrack=True, app_runner="Z09819469CZ3KQ8PWMCL", elb="114774131450"),
    _row("ap-southeast-2", "Asia Pacific (Sydney)", backtrack=True, app_runner="Z03657752RA8799S0TI5I", elb="783225319266"),
    _row("ap-southeast-3", "Asia Pacific (Jakarta)", elb="589379963580"),
    _row("ap-southeast-4", "Asia Pacific (Melbourne)"),
    _row("ap-southeast-5", "Asia Pacific (Malaysia)"),
    _row("ap-southeast-6", "Asia Pacific (New Zealand)"),
    _row("ap-southeast-7", "Asia Pacific (Thailand)"),
    _row("ca-central-1", "Canada (Central)", backtrack=True, elb="985666609251"),
    _row("ca-west-1", "Canada West (Calgary)"),
    _row("eu-central-1", "Europe (Frankfurt)", backtrack=True, app_runner="Z0334911C2FDI2Q9M4FZ", elb="054676820928"),
    _row("eu-central-2", "Europe (Zurich)"),
    _row("eu-north-1", "Europe (Stockholm)", elb="897822967062"),
    _row("eu-south-1", "Europe (Milan)", elb="635631232127"),
    _row("eu-south-2", "Europe (Spain)"),
    _row("eu-west-1", "Europe (Ireland)", backtrack=True, app_runner="Z087551914Z2PCAU0QHMW", elb="156460612806"),
    _row("eu-west-2", "Europe (London)", backtrack=True, app_runner="Z098228427VC6B3IX76ON", elb="652711504416"),
    _row("eu-west-3", "Europe (Paris)", backtrack=True, app_runner="Z087117439MBKHYM69QS6", elb="009996457667"),
    _row("il-central-1", "Israel (Tel Aviv)"),
    _row("me-central-1", "Middle East (UAE)"),
    _row("me-south-1", "Middle East (Bahrain)", elb="076674570225"),
    _row("mx-central-1", "Mexico (Central)"),
    _row("sa-east-1", "South America (São Paulo)", elb="507241528517"),
    _row("us-east-1", "US East (N. Virginia)", backtrack=True, app_runner="Z01915732ZBZKC8D32TPT", elb="127311923021"),
    _row("us-east-2", "US East (Ohio)", backtrack=True, app_runner="Z0224347AD7KVHMLOX31", elb="033677994240"),
    _row("us-gov-east-1", "AWS GovCloud (US-East)", elb="190560391635", express=False),
    _row("us-gov-west-1", "AWS GovCloud (US-West)", elb="048591011584", express=False),
    _row("us-west-1", "US West (N. California)", backtrack=True, elb="027434742980"),
    _row("us-west-2", "US West (Oregon)", backtrack=True, app_runner="Z02243383FTQ64HJ5772Q", elb="797873946194"),
]))

SOURCES: tuple[tuple[str, str], ...] = (
    ("backtrack", "AWS, Amazon Aurora User Guide: \"Backtracking an Aurora DB cluster\", Region and version "
                  "availability (regions marked \"All versions\" for Aurora MySQL version 3); AWS Config rule "
                  "aurora-mysql-backtracking-enabled lists the same regions without it"),
    ("App Runner", "AWS General Reference: \"AWS App Runner endpoints and quotas\" (service endpoints and "
                   "Route 53 hosted zone ids); the same map is in terraform-provider-aws "
                   "internal/service/apprunner/hosted_zone_id_data_source.go"),
    ("ALB log delivery", "AWS, Elastic Load Balancing User Guide: \"Enable access logs for your Application "
                         "Load Balancer\" (regional ELB accounts for regions available before August 2022, "
                         "the log delivery service principal for newer ones); the account ids match "
                         "terraform-provider-aws internal/service/elb/service_account_data_source.go"),
    ("Express runtime", "AWS, Amazon ECS Developer Guide: the \"Amazon ECS Express Mode\" chapter documents "
                        "Express Mode as a feature of ECS on Fargate and names no Region list or exclusion (the "
                        "same chapter is published for the China Regions), so it is taken as offered in every "
                        "region of the table; the runtime's public entry is CloudFront, which AWS GovCloud (US) "
                        "does not offer (AWS GovCloud (US) User Guide: CloudFront lies outside the GovCloud "
                        "boundary and is set up with standard AWS credentials)"),
)


def lookup(region: str) -> Optional[RegionFacts]:
    """The row of `region`, or None when the program does not know the region."""
    return REGIONS.get(region)


def require(region: str) -> RegionFacts:
    """The row of `region`; settings validation has already rejected unknown regions."""
    facts = REGIONS.get(region)
    if facts is None:
        raise KeyError(f"{region} is not in the region table (settings/regions.py)")
    return facts


def names(predicate: Callable[[RegionFacts], bool] = lambda facts: True) -> list[str]:
    """Sorted region names whose row satisfies `predicate`."""
    return sorted(name for name, facts in REGIONS.items() if predicate(facts))


def render_markdown() -> str:
    """The table as docs/regions.md shows it."""
    yes_no = {True: "yes", False: "no"}
    lines = ["| region | location | Aurora backtrack | App Runner (alias hosted zone) | Express runtime "
             "| ALB access logs written by |",
             "|---|---|---|---|---|---|"]
    for name, facts in REGIONS.items():
        app_runner = f"yes (`{facts.app_runner_zone_id}`)" if facts.app_runner_zone_id else "no"
        elb = (f"ELB account `{facts.elb_log_account}`" if facts.elb_log_account
               else f"`{ELB_LOG_DELIVERY_PRINCIPAL}`")
        lines.append(f"| `{name}` | {facts.location} | {yes_no[facts.backtrack]} | {app_runner} "
                     f"| {yes_no[facts.ecs_express]} | {elb} |")
    return "\n".join(lines) + "\n"
