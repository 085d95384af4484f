"""Edge settings: resources managed elsewhere (an external web ACL), WAF and e-mail keys."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator

from settings.common import Problem, _WAF_ACL_ARN_RE, _WAF_GLOBAL_ACL_ARN_RE, _Model, parse_dns_name, parse_email


class ExternalResources(_Model):
    waf_web_acl: Optional[str] = Field(None, alias="wafWebAcl")
    ses_identity: Optional[str] = Field(None, alias="sesIdentity")

    @field_validator("ses_identity", mode="before")
    @classmethod
    def _ses_identity(cls, v: Any) -> Optional[str]:
        if v is None:
            return None
        text = str(v).strip()
        try:
            return parse_email(text).lower() if "@" in text else parse_dns_name(text)
        except Problem:
            raise Problem("a verified SES identity of this account and region: an e-mail address or a domain",
                          "redcap-admin@example.org") from None

    @field_validator("waf_web_acl", mode="before")
    @classmethod
    def _arn(cls, v: Any) -> Optional[str]:
        if v is not None and not (_WAF_ACL_ARN_RE.match(str(v)) or _WAF_GLOBAL_ACL_ARN_RE.match(str(v))):
            raise Problem("a REGIONAL WAFv2 web ACL ARN (a CLOUDFRONT-scope one in us-east-1 for express)",
                          "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/my-acl/"
                          "a1b2c3d4-5678-90ab-cdef-111122223333")
        return v


# What each key means (docs/settings.md is generated from the models and these tables).
DESCRIPTIONS: dict[str, str] = {
    "allowedIps": "WAF allow-list: IPv4 and IPv6 CIDRs (a bare address means one host). Empty: everyone.",
    "allowedCountries": "WAF geo allow-list: ISO 3166-1 alpha-2 codes. Empty: every country.",
    "allowListScope": "`all`: allowedIps and allowedCountries cover every path; `allButSurveys`: REDCap's public survey pages and their static files are reachable from anywhere (docs/waf.md).",
    "email": "Operator address: App Runner notifications; without a Route53 zone also the SES identity and sender address.",
    "senderEmail": "With a Route53 zone: the address REDCap sends as, inside the DKIM-signed FQDN (docs/email.md). Unset: `email` if it lies in the FQDN, else `no-reply@<fqdn>`.",
    "bounceNotificationEmail": "Receives SES bounce and complaint notifications of the domain identity (needs a Route53 zone).",
    "emailSubscriptions": "`true`: the stack subscribes `bounceNotificationEmail` and (App Runner) `email` to their SNS topics; confirm each mail within 3 days. `false`: topics only, subscribe by hand (docs/email.md). Stage output `emailSubscriptions` lists them.",
    "externalResources": "Resources managed elsewhere.",
    "externalResources.wafWebAcl": "Associate this WAFv2 web ACL instead of creating one: REGIONAL scope, or CLOUDFRONT scope (`arn:aws:wafv2:us-east-1:<account>:global/webacl/...`) with `express`.",
    "externalResources.sesIdentity": "Without a Route53 zone: send with this existing SES identity (`email` or its domain, made by another stage or by hand) instead of creating one (docs/email.md).",
    "guardDuty": "Enable a GuardDuty detector (one per account and region).",
    "wafSqliRulesToCount": "Rules of AWSManagedRulesSQLiRuleSet to only count (e.g. `SQLi_BODY`, which REDCap calculated fields trigger).",
}
