"""Renders the settings reference (docs/settings.md) from the settings models."""
from __future__ import annotations

import json
import types
import typing
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

import settings

HEADER = """# Stage settings reference

Generated from the `settings/` package by `scripts/settings-reference`; a test fails when this file and the
code disagree. Every key is a Pulumi config key in the `redcap:` namespace, set per stack in
`Pulumi.<stack>.yaml` or with `pulumi config set` (objects with `--path`, e.g.
`pulumi config set --path redcap:db.dbReaders 2`). Invalid values stop `pulumi up` before anything
is created, with one message per problem; unknown keys are errors too.

| key | type | default | meaning |
|---|---|---|---|
"""


# Keys whose stored form (CPU units, MiB) is not what users write.
DISPLAY: dict[str, tuple[Any, str]] = {
    "ecs.cpu": (str, "`2 vCPU`"),
    "ecs.memory": (str, "`4 GB`"),
    "express.cpu": (str, "`2 vCPU`"),
    "express.memory": (str, "`4 GB`"),
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _default(field: Any) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None or isinstance(value, BaseModel) or value == ():
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def rows(model: type[BaseModel] = settings.StageSettings, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    for name, field in model.model_fields.items():
        if model is settings.StageSettings and name in ("stack", "region"):
            continue
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        default = _default(field)
        if key in ("cronSecret", "dbSalt"):
            annotation, default = str, "generated once"
        if key in ("deletionProtection", "backup.enabled"):
            default = "true unless removalPolicy is destroy"
        if key in DISPLAY:  # values the user writes differ from the normalised ones
            annotation, default = DISPLAY[key]
        yield key, _type_name(annotation), default, settings.DESCRIPTIONS[key]
        # Objects get a row per field; lists of objects are described in their own row.
        candidates = (annotation,) if typing.get_origin(annotation) is not typing.Union and \
            typing.get_origin(annotation) is not types.UnionType else typing.get_args(annotation)
        nested = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            yield from rows(nested[0], f"{key}.")


def render_settings_reference() -> str:
    lines = [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in rows()]
    return HEADER + "\n".join(lines) + "\n"


REGIONS_DOC_TABLE_START = "## The table\n\n"
REGIONS_DOC_TABLE_END = "\n## Sources"


def render_regions_doc(current: str) -> str:
    """docs/regions.md with its table section regenerated from settings/regions.py."""
    from settings import regions

    start = current.index(REGIONS_DOC_TABLE_START) + len(REGIONS_DOC_TABLE_START)
    end = current.index(REGIONS_DOC_TABLE_END, start)
    return current[:start] + regions.render_markdown() + current[end:]
