"""The agent-framework layout (``model_configs.json``), mapped onto our option groups."""

from __future__ import annotations

from typing import Any

from agentsft.config.options import GROUPS, ConfigError, fail
from agentsft.config.aliases import AF_BNB, AF_LORA, AF_TRAINING
from agentsft.config.values import convert, short, unknown

AF_TOP = {"config_name", "model_type", "pretrained_model_name_or_path", "local_model_path",
          "data_path", "device", "max_length", "fine_tune_config"}
AF_FINE_TUNE = {"lora_config", "training_args", "bnb_config", "continue_lora_finetuning",
                "max_seq_length"}
def is_agent_framework(data: Any) -> bool:
    entries = data if isinstance(data, list) else [data]
    return bool(entries) and all(isinstance(e, dict) for e in entries) and any(
        "model_type" in e or "pretrained_model_name_or_path" in e or "fine_tune_config" in e
        for e in entries)


def from_agent_framework(data: Any, config_name: str | None) -> dict[str, Any]:
    """Map one agent-framework model config entry onto our option groups."""
    entries = data if isinstance(data, list) else [data]
    names = [e.get("config_name") for e in entries]
    if config_name is not None:
        chosen = [e for e in entries if e.get("config_name") == config_name]
        if not chosen:
            raise ConfigError(f"no entry has config_name {config_name!r} (found: {names}). "
                              f"Fix: pass --config-name with one of them")
        entry = chosen[0]
    elif len(entries) == 1:
        entry = entries[0]
    else:
        raise ConfigError(f"the file holds {len(entries)} model configs ({names}). "
                          f"Fix: choose one with --config-name")
    check_keys(entry, AF_TOP, "")
    if entry.get("model_type", "huggingface") != "huggingface":
        fail("model_type", f"{entry['model_type']!r} cannot be fine-tuned here", 'use "huggingface"')
    out: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    name = entry.get("pretrained_model_name_or_path")
    local = entry.get("local_model_path")
    ft = entry.get("fine_tune_config") or {}
    check_keys(ft, AF_FINE_TUNE, "fine_tune_config.")
    continuing = convert(ft.get("continue_lora_finetuning", False), bool,
                         "fine_tune_config.continue_lora_finetuning")
    if continuing:
        if not local:
            fail("fine_tune_config.continue_lora_finetuning", "needs the saved adapter's folder",
                 "set local_model_path to the adapter (or run) folder")
        if ft.get("lora_config"):
            fail("fine_tune_config.lora_config", "is ignored when continuing an adapter (its own "
                 "config is used)", "remove lora_config or set continue_lora_finetuning to false")
        out["training"]["adapter"] = local
        if name:
            out["model"]["name"] = name
    elif local or name:
        out["model"]["name"] = local or name
    if entry.get("device") is not None:
        out["model"]["device"] = entry["device"]
    if entry.get("data_path") is not None:
        out["data"]["train"] = [entry["data_path"]]
    if entry.get("max_length") is not None:
        out["eval"]["max_new_tokens"] = entry["max_length"]
    if ft.get("max_seq_length") is not None:
        out["data"]["max_length"] = ft["max_seq_length"]
    for key, value in mapped(ft.get("lora_config"), AF_LORA, "fine_tune_config.lora_config."):
        out["lora"][key] = value
    if str((ft.get("lora_config") or {}).get("task_type", "CAUSAL_LM")).upper() != "CAUSAL_LM":
        fail("fine_tune_config.lora_config.task_type", "only CAUSAL_LM is supported", "use CAUSAL_LM")
    args = ft.get("training_args") or {}
    for key, value in mapped(args, AF_TRAINING, "fine_tune_config.training_args."):
        out["training"][key] = value
    flags = {f: convert(args[f], bool, f"fine_tune_config.training_args.{f}")
             for f in ("bf16", "fp16") if f in args}
    if flags:  # as TrainingArguments read them: both off means full precision
        out["training"]["precision"] = "bf16" if flags.get("bf16") else (
            "fp16" if flags.get("fp16") else "fp32")
    if "per_device_eval_batch_size" in args:
        out["eval"]["batch_size"] = args["per_device_eval_batch_size"]
    bnb = ft.get("bnb_config") or {}
    for key, value in mapped(bnb, AF_BNB, "fine_tune_config.bnb_config."):
        out["quantization"][key] = value
    for flag, bits in (("load_in_4bit", 4), ("load_in_8bit", 8)):
        if flag in bnb and convert(bnb[flag], bool, f"fine_tune_config.bnb_config.{flag}"):
            out["quantization"]["bits"] = bits
            out["training"]["method"] = "qlora"
    return {g: v for g, v in out.items() if v}


def check_keys(values: Any, allowed: set[str] | dict, prefix: str) -> None:
    if not isinstance(values, dict):
        fail(prefix.rstrip(".") or "entry", f"expected a mapping, got {short(values)}", "use an object")
    for key in values:
        if key not in allowed:
            unknown(f"{prefix}{key}", [f"{prefix}{k}" for k in allowed])


def mapped(values: dict | None, table: dict[str, str | None], prefix: str):
    """``(our_key, value)`` for each agent-framework key with a direct counterpart."""
    values = values or {}
    check_keys(values, table, prefix)
    for key, value in values.items():
        if table[key] is not None:
            yield table[key], value
