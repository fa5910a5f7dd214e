"""Config files (ours or the agent-framework layout), flags and ``--set`` overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from agentsft.config.agent_framework import from_agent_framework, is_agent_framework
from agentsft.config.options import Config, ConfigError
from agentsft.config.values import from_dict
from agentsft.files import write_text_atomically


class ConfigLoader(yaml.SafeLoader):
    """YAML as config values need it: only ``true`` and ``false`` are booleans (YAML 1.2),
    so ``fast_path: off`` stays the word it is; boolean keys still take yes/no/on/off."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def yaml_values(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader)


def read_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found. Fix: check the path") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror}). Fix: check the path") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml_values(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg}). Fix: correct the syntax") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)}). "
                          f"Fix: correct the syntax") from None


def load(path: str | Path | None = None, overrides: list[str] = (),
         config_name: str | None = None, flags: dict[str, Any] | None = None) -> Config:
    """A Config from a YAML / JSON file (ours or the agent-framework layout), then
    ``flags`` (``{"group.key": value}``), then ``group.key=value`` overrides, in order."""
    raw: dict[str, Any] = {}
    if path is not None:
        data = read_file(path)
        raw = from_agent_framework(data, config_name) if is_agent_framework(data) else (data or {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of option groups. "
                              f"Fix: write groups such as model:, data:, training:")
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    pairs = [(k, v) for k, v in (flags or {}).items() if v is not None]
    for key, value in pairs + [parse_override(item) for item in overrides]:
        group, name = key.split(".", 1)
        if not isinstance(raw.get(group), dict):
            raw[group] = {}
        raw[group][name] = value
    try:
        return from_dict(raw)
    except ConfigError as e:
        if path is not None and not str(e).startswith(str(path)):
            raise ConfigError(f"{path}: {e}") from None
        raise


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {item!r}: expected group.key=value. Fix: e.g. --set training.epochs=2")
    try:
        value = yaml_values(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value




def save(cfg: Config, path: Path) -> None:
    """The resolved config as YAML, secrets redacted, written atomically."""
    write_text_atomically(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))

