"""IAM policy documents: where they hide in pulumi-aws inputs, and how to read them.

Policy documents arrive as JSON strings (the `policy` input of aws:iam/policy:Policy,
aws:iam/rolePolicy:RolePolicy, aws:s3/bucketPolicy:BucketPolicy, ...), occasionally as an
already-decoded dict, and during a preview possibly as UNKNOWN (the JSON interpolates an ARN that
does not exist yet). Everything here is pure and works on normalised values.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from .model import UNKNOWN, Resource, as_list, is_unknown

# Identity policies (what a principal may do) and resource policies (who may use a resource).
# Key policies are deliberately absent from IDENTITY/RESOURCE: see KEY_POLICY_TYPES.
IDENTITY_POLICY_TYPES: dict[str, str] = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
RESOURCE_POLICY_TYPES: dict[str, str] = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:sns/topic:Topic": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
    "aws:secretsmanager/secret:Secret": "policy",
}
# In a KMS key policy "Resource": "*" means "this key", and AWS's default key policy grants
# kms:* to the account root so that IAM policies (checked above) can delegate. Wildcards there are
# therefore not findings; a public principal still is.
KEY_POLICY_TYPES: dict[str, str] = {
    "aws:kms/key:Key": "policy",
    "aws:kms/keyPolicy:KeyPolicy": "policy",
}
ROLE_TYPE = "aws:iam/role:Role"


class PolicyDocumentError(ValueError):
    """The document is not JSON or not an IAM policy shape."""


@dataclass(frozen=True)
class Document:
    """One policy document found on a resource; `where` names the input it came from."""

    where: str
    body: Any  # dict, or UNKNOWN during preview


def parse(value: Any) -> Any:
    """JSON string or dict -> dict; UNKNOWN stays UNKNOWN; anything else is an error."""
    if is_unknown(value):
        return UNKNOWN
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PolicyDocumentError(f"is not valid JSON ({exc.msg} at position {exc.pos})") from exc
        if not isinstance(decoded, dict):
            raise PolicyDocumentError("is JSON but not an object with a Statement list")
        return decoded
    raise PolicyDocumentError(f"has an unexpected type {type(value).__name__}")


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def _documents(res: Resource, table: dict[str, str]) -> list[Document]:
    key = table.get(res.type)
    if key is None:
        return []
    value = res.props.get(key)
    if value is None or value == "":
        return []
    return [Document(key, value)]


def identity_documents(res: Resource) -> list[Document]:
    """Identity policies of `res`, including a role's inline policies."""
    found = _documents(res, IDENTITY_POLICY_TYPES)
    if res.type == ROLE_TYPE:
        for index, inline in enumerate(as_list(res.props.get("inlinePolicies"))):
            if isinstance(inline, dict) and inline.get("policy") not in (None, ""):
                label = inline.get("name") if isinstance(inline.get("name"), str) else str(index)
                found.append(Document(f"inlinePolicies[{label}].policy", inline["policy"]))
    return found


def permission_documents(res: Resource) -> list[Document]:
    """Documents that grant permissions and are checked for wildcards."""
    return identity_documents(res) + _documents(res, RESOURCE_POLICY_TYPES)


def principal_documents(res: Resource) -> list[Document]:
    """Documents with a Principal element: resource, key and trust policies."""
    found = _documents(res, RESOURCE_POLICY_TYPES) + _documents(res, KEY_POLICY_TYPES)
    if res.type == ROLE_TYPE and res.props.get("assumeRolePolicy") not in (None, ""):
        found.append(Document("assumeRolePolicy", res.props["assumeRolePolicy"]))
    return found


def is_allow(statement: dict[str, Any]) -> bool:
    return statement.get("Effect") == "Allow"


def actions(statement: dict[str, Any]) -> list[str]:
    return [a for a in as_list(statement.get("Action")) if isinstance(a, str)]


def wildcard_actions(statement: dict[str, Any]) -> list[str]:
    """Actions of an Allow statement that use a wildcard ("*", "s3:*", "s3:Get*").

    NotAction in an Allow grants everything except the listed actions, so it counts as a
    wildcard too.
    """
    if not is_allow(statement):
        return []
    found = [a for a in actions(statement) if "*" in a]
    if "NotAction" in statement:
        found.append("NotAction")
    return found


def has_wildcard_resource(statement: dict[str, Any]) -> bool:
    """Allow statement on Resource "*" (or NotResource, which is "everything but")."""
    if not is_allow(statement):
        return False
    return "*" in as_list(statement.get("Resource")) or "NotResource" in statement


def _principal_is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any("*" in as_list(v) for v in principal.values())
    return False


def public_principal(statement: dict[str, Any]) -> Optional[str]:
    """Describe why an Allow statement is open to everyone, or None.

    A Condition (e.g. aws:SourceArn, aws:PrincipalOrgID) narrows "*" to something specific, so
    only unconditioned statements are findings.
    """
    if not is_allow(statement) or statement.get("Condition"):
        return None
    if _principal_is_everyone(statement.get("Principal")):
        return 'Principal "*" without a Condition'
    if "NotPrincipal" in statement:
        return "NotPrincipal in an Allow statement"
    return None


def _condition_is_false(value: Any) -> bool:
    return any(v is False or (isinstance(v, str) and v.lower() == "false") for v in as_list(value))


def denies_insecure_transport(document: dict[str, Any]) -> bool:
    """The S3 "enforce TLS" statement: Deny s3:* (or *) to everyone when aws:SecureTransport is false."""
    for statement in statements(document):
        if statement.get("Effect") != "Deny" or not _principal_is_everyone(statement.get("Principal")):
            continue
        if not any(a in ("*", "s3:*") for a in actions(statement)):
            continue
        condition = statement.get("Condition")
        if not isinstance(condition, dict):
            continue
        bool_block = condition.get("Bool")
        if isinstance(bool_block, dict) and _condition_is_false(bool_block.get("aws:SecureTransport")):
            return True
    return False
