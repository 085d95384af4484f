"""A small evaluator of AWS WAFv2 rule logic, for the statements this project's web ACL uses.

It takes the rules exactly as the program builds them (snake_case from components.firewall, or
camelCase as the mocks record them) and decides what WAF would do with one request: rules in
priority order, the first terminating action wins, the default action is allow. It models what
the rules are about - paths, query arguments, headers, source address, country - and nothing
else: a rate-based statement matches only a request marked as over the rate, and AWS's managed
rule groups are taken not to match (the sample requests are ordinary REDCap traffic; what those
groups block is AWS's logic, not ours). Any other statement, field or text transformation is an
error, so a rule this evaluator does not understand can never pass a test by accident.

Text transformations follow AWS's definitions: URL_DECODE percent-decodes once; NORMALIZE_PATH
"removes multiple slashes, directory self-references, and directory back-references that are not
at the beginning of the input".
"""
from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence


class UnmodelledRule(ValueError):
    """A statement, field or transformation this evaluator does not model: never guessed."""


@dataclass(frozen=True)
class Request:
    path: str                                   # the URI path as the client sent it
    ip: str
    country: str                                # ISO 3166-1 alpha-2 of the source address
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    over_rate_limit: bool = False


@dataclass(frozen=True)
class Decision:
    action: str                                 # ALLOW or BLOCK
    rule: Optional[str]                         # the terminating rule; None = default action
    status: int                                 # what the client sees


def snake(value: Any) -> Any:
    """camelCase keys (recorded inputs) -> snake_case (the program's rule builders)."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


def normalize_path(path: str) -> str:
    """AWS WAF NORMALIZE_PATH."""
    collapsed = re.sub(r"/{2,}", "/", path)
    leading = collapsed.startswith("/")
    trailing = collapsed.endswith("/") and collapsed != "/"
    out: list[str] = []
    for part in collapsed.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not out:
                out.append("..")  # a back-reference at the beginning stays
            continue
        out.append(part)
    text = ("/" if leading else "") + "/".join(out)
    return text + "/" if trailing and not text.endswith("/") else text


TRANSFORMATIONS = {
    "NONE": lambda s: s,
    "URL_DECODE": lambda s: urllib.parse.unquote(s),
    "NORMALIZE_PATH": normalize_path,
    "LOWERCASE": str.lower,
}


def _transform(value: str, transformations: Sequence[Mapping[str, Any]]) -> str:
    for step in sorted(transformations, key=lambda t: t["priority"]):
        kind = step["type"]
        if kind not in TRANSFORMATIONS:
            raise UnmodelledRule(f"text transformation {kind}")
        value = TRANSFORMATIONS[kind](value)
    return value


def _field(request: Request, field_to_match: Mapping[str, Any]) -> Optional[str]:
    ((kind, spec),) = field_to_match.items()
    if kind == "uri_path":
        return request.path
    if kind == "single_query_argument":
        wanted = spec["name"].lower()  # WAF matches argument names case-insensitively
        return next((v for k, v in request.query.items() if k.lower() == wanted), None)
    if kind == "single_header":
        wanted = spec["name"].lower()
        return next((v for k, v in request.headers.items() if k.lower() == wanted), None)
    if kind == "query_string":
        return urllib.parse.urlencode(dict(request.query))
    raise UnmodelledRule(f"field to match {kind}")


def _byte_match(value: str, constraint: str, search: str) -> bool:
    return {
        "EXACTLY": value == search,
        "STARTS_WITH": value.startswith(search),
        "ENDS_WITH": value.endswith(search),
        "CONTAINS": search in value,
    }[constraint]


def matches(statement: Mapping[str, Any], request: Request, ip_sets: Mapping[str, Sequence[str]]) -> bool:
    ((kind, body),) = statement.items()
    if kind == "and_statement":
        return all(matches(s, request, ip_sets) for s in body["statements"])
    if kind == "or_statement":
        return any(matches(s, request, ip_sets) for s in body["statements"])
    if kind == "not_statement":
        return not matches(body["statement"], request, ip_sets)
    if kind == "byte_match_statement":
        value = _field(request, body["field_to_match"])
        # A missing query argument or header matches nothing.
        return value is not None and _byte_match(
            _transform(value, body["text_transformations"]), body["positional_constraint"], body["search_string"])
    if kind == "regex_match_statement":
        value = _field(request, body["field_to_match"])
        return value is not None and re.search(body["regex_string"],
                                               _transform(value, body["text_transformations"])) is not None
    if kind == "geo_match_statement":
        return request.country in body["country_codes"]
    if kind == "ip_set_reference_statement":
        address = ipaddress.ip_address(request.ip)
        return any(address in ipaddress.ip_network(cidr) for cidr in ip_sets[body["arn"]])
    if kind == "rate_based_statement":
        return request.over_rate_limit
    if kind == "managed_rule_group_statement":
        return False
    raise UnmodelledRule(f"statement {kind}")


def evaluate(rules: Sequence[Mapping[str, Any]], request: Request,
             ip_sets: Mapping[str, Sequence[str]] = {}) -> Decision:
    """What the web ACL (default action allow) does with `request`."""
    for rule in sorted((snake(r) for r in rules), key=lambda r: r["priority"]):
        if not matches(rule["statement"], request, ip_sets):
            continue
        if "override_action" in rule:  # a rule group: its own (here: no) actions decide
            continue
        action = rule["action"]
        if "block" in action:
            custom = (action["block"] or {}).get("custom_response")
            return Decision("BLOCK", rule["name"], int(custom["response_code"]) if custom else 403)
        if "allow" in action:
            return Decision("ALLOW", rule["name"], 200)
        # count: goes on with the next rule
    return Decision("ALLOW", None, 200)


def priorities(rules: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    return [(r["name"], r["priority"]) for r in sorted(rules, key=lambda r: r["priority"])]


def cron_secret_location(rules: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Where the cron rule expects the secret: ("query", name) or ("header", name)."""
    cron = next(r for r in (snake(x) for x in rules) if r["name"] == "cron-execution")
    negated = next(s["not_statement"]["statement"] for s in cron["statement"]["and_statement"]["statements"]
                   if "not_statement" in s)
    ((kind, spec),) = negated["byte_match_statement"]["field_to_match"].items()
    return ("query" if kind == "single_query_argument" else "header"), spec["name"]
