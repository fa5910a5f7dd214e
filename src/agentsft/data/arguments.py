"""A tool call's arguments checked against the tool's JSON schema, by ``jsonschema``, with
messages a model (or a person reading an eval report) can act on. Used by the toolkit
before a tool runs and by evaluation's "calls valid against the schema"."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["argument_errors", "closed_schema", "fits_schema", "in_schema_order"]


def in_schema_order(value: Any, schema: Any) -> Any:
    """``value`` with each object's keys in the order its schema lists the properties
    (keys the schema does not list follow, as they came), in nested objects and arrays
    too. Calls are rendered this way for training, so that a model learns the one order
    in which constrained decoding (llguidance) lets it write them."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        keys = [k for k in props if k in value] + [k for k in value if k not in props]
        return {k: in_schema_order(value[k], props.get(k)) for k in keys}
    if isinstance(value, list):
        return [in_schema_order(v, schema.get("items")) for v in value]
    return value


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` taking no keys beyond its properties at the top, unless it says
    otherwise (``additionalProperties``): a Python function fails on other keys anyway."""
    if schema.get("type", "object") == "object" and "additionalProperties" not in schema:
        return {**schema, "additionalProperties": False}
    return schema


def argument_errors(args: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What is wrong with ``args`` under the tool's JSON schema (empty: nothing), checked by
    ``jsonschema``. An object schema without ``additionalProperties`` takes no other keys:
    a Python function would fail on them anyway."""
    from jsonschema import Draft202012Validator
    if schema.get("type", "object") == "object" and "additionalProperties" not in schema:
        schema = {**schema, "additionalProperties": False}
    errors = Draft202012Validator(schema).iter_errors(args)
    return [message(e) for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])]


def message(error: Any) -> str:
    """One validation error in words the model can act on."""
    path = list(error.absolute_path)
    where = f"argument '{path[0]}'" + "".join(f"[{p}]" for p in path[1:]) if path else "the arguments"
    got = json.dumps(error.instance, ensure_ascii=False)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return "; ".join(f"{where} misses '{k}'" if path else f"missing required argument '{k}'"
                         for k in missing)
    if error.validator == "additionalProperties" and not path:
        props = error.schema.get("properties", {})
        return "; ".join(f"unknown argument '{k}' (expected: {', '.join(props) or 'none'})"
                         for k in error.instance if k not in props)
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where} must be {' or '.join(kinds)}, got {got}"
    if error.validator == "enum":
        return f"{where} must be one of {json.dumps(error.validator_value)}, got {got}"
    return f"{where}: {error.message}"


def fits_schema(name: str, arguments: Any, tools: Any) -> bool:
    """Whether a call names one of ``tools`` (objects with ``name`` and ``parameters``) and
    its arguments validate against that tool's schema."""
    schema = next((t.parameters for t in tools if t.name == name), None)
    return schema is not None and isinstance(arguments, dict) and not argument_errors(arguments, schema)
