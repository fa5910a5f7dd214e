"""Building a Config from nested dicts: every key checked, every value converted.

Strings such as ``"True"``, ``"1e-4"`` or ``"torch.bfloat16"`` (as the agent-framework
configs wrote them) become the field's type; an unknown key is an error that names it and
suggests the closest valid one.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from typing import Any

from agentsft.config.aliases import ALIASES, SET_OTHERWISE
from agentsft.config.options import GROUPS, Config, ConfigError, fail


def group_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in GROUPS}


def from_dict(raw: dict[str, Any]) -> Config:
    """A Config from ``{group: {key: value}}``; every key checked, every value converted."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of groups, got {type(raw).__name__}. "
                          f"Fix: write groups such as model:, training:")
    classes = group_classes()
    groups = {}
    for name, values in raw.items():
        if name not in classes:
            unknown(name, list(classes))
        if values is None:
            values = {}
        if not isinstance(values, dict):
            fail(name, f"expected a mapping of options, got {short(values)}", f"write {name}: {{key: value}}")
        groups[name] = build(classes[name], values, name)
    return Config(**groups)


def build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """The option group ``cls`` from ``values``; Hugging Face's names for its keys
    (``save_steps`` for ``save_every``...) are accepted as aliases."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    given: dict[str, str] = {}  # our name -> the key that set it
    for key, value in values.items():
        name = our_name(prefix, key, hints)
        if name in given:
            fail(f"{prefix}.{key}", f"sets the same option as {prefix}.{given[name]}",
                 "give only one of them")
        given[name] = key
        kwargs[name] = convert(value, hints[name], f"{prefix}.{key}")
    return cls(**kwargs)


def our_name(prefix: str, key: str, hints: dict[str, Any]) -> str:
    if key in hints:
        return key
    if f"{prefix}.{key}" in SET_OTHERWISE:
        fail(f"{prefix}.{key}", "is Hugging Face's name for something agentsft sets another way",
             SET_OTHERWISE[f"{prefix}.{key}"])
    alias = ALIASES.get(prefix, {}).get(key)
    if alias is None:
        unknown(f"{prefix}.{key}", [f"{prefix}.{k}" for k in hints])
    return alias


def unknown(key: str, valid: list[str]) -> None:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
    raise ConfigError(f"config key '{key}' is unknown. Fix: {hint}")


TRUE, FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint``; strings such as ``"True"`` or ``"1e-4"`` are converted."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    spelled_null = isinstance(value, str) and value.lower() in ("none", "null") and str not in options
    if value is None or spelled_null:
        if type(None) in options:
            return None
        fail(key, "cannot be empty", "give it a value")
    for option in options:
        if option is type(None):
            continue
        try:
            return convert_one(value, option)
        except (TypeError, ValueError, OverflowError):
            continue
    fail(key, f"{short(value)} is not {' or '.join(type_name(o) for o in options if o is not type(None))}",
         "give a value of that type")


def convert_one(value: Any, option: Any) -> Any:
    if isinstance(option, types.UnionType):  # a list's items of several kinds
        for one in typing.get_args(option):
            try:
                return convert_one(value, one)
            except (TypeError, ValueError, OverflowError):
                continue
        raise TypeError("none of the kinds")
    if option is dict:
        if not isinstance(value, dict):
            raise TypeError("not an object")
        return dict(value)
    origin = typing.get_origin(option)
    if origin is list:
        (item,) = typing.get_args(option)
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise TypeError("not a list")
        return [convert_one(v, item) for v in items]
    if option is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ValueError("not a boolean")
    if option is int:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
            raise ValueError("not a whole number")
        return int(number)
    if option is float:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    if option is str:
        if isinstance(value, (dict, list)):
            raise TypeError("not a string")
        return str(value)
    raise TypeError(f"unsupported type {option}")


def type_name(option: Any) -> str:
    if typing.get_origin(option) is list:
        return "a list"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string"}.get(
        option, str(option))


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

