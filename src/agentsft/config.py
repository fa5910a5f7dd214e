"""Training configuration: small typed option groups, loaded from YAML or JSON.

    model:        which model, on which device, in which dtype
    lora:         adapter shape (LoRA and QLoRA)
    quantization: 4-bit / 8-bit loading (QLoRA; CUDA only)
    data:         files, template, loss policy, lengths
    training:     method, optimisation, schedule, logging, checkpoints
    eval:         evaluation and generation settings

Every key is checked: an unknown one is an error that names it and suggests
the closest valid key. Values are converted to the field's type, so ``"True"``
and ``"torch.bfloat16"`` (as the agent-framework configs wrote them) work.
The agent-framework ``model_configs.json`` layout is accepted and mapped.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentsft.errors import AgentsftError

DEFAULT_MODEL = "smollm2-135m-instruct"


class ConfigError(AgentsftError):
    """A configuration value or key that cannot be used; names the key and the fix."""


def fail(key: str, problem: str, fix: str) -> None:
    raise ConfigError(f"config key '{key}': {problem}. Fix: {fix}")


def choose(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        fail(key, f"{value!r} is not one of {', '.join(map(str, choices))}",
             f"use one of {', '.join(map(str, choices))}")


@dataclass
class ModelOptions:
    name: str = DEFAULT_MODEL
    """Hub id, local folder, or ``smollm2-135m-instruct`` (the packaged default)."""
    device: str = "auto"
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    dtype: str = "auto"
    """``auto`` (bf16 where the hardware runs it fast), ``float32``, ``bfloat16``, ``float16``."""
    trust_remote_code: bool = False
    """Let a hub model run its own code. Off unless asked for."""
    revision: str | None = None
    """Hub revision (branch, tag or commit)."""

    def __post_init__(self):
        self.dtype = self.dtype.removeprefix("torch.")
        choose("model.dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            fail("model.device", f"{self.device!r} is not a device", "use auto, cpu, cuda, cuda:N or mps")


@dataclass
class LoraOptions:
    r: int = 16
    """Rank of the update matrices."""
    alpha: int = 32
    """Scaling numerator: updates are scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on each adapted layer's input. 0 by default: on CPU the random masks took
    14% of a training step of the default model (measured), for a regulariser that
    short LoRA runs rarely need; 0.05 is a common choice on larger data."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or ``all-linear`` (every linear layer but the output head)."""
    bias: str = "none"
    """Train biases: ``none``, ``all`` or ``lora_only``."""

    def __post_init__(self):
        # "all-linear" is PEFT's keyword; anything else is a list of module names.
        modules = self.target_modules
        if isinstance(modules, str):
            modules = [m.strip() for m in modules.split(",") if m.strip()]
        self.target_modules = "all-linear" if modules == ["all-linear"] else modules
        if self.r < 1:
            fail("lora.r", f"rank must be positive, got {self.r}", "use e.g. 8, 16 or 64")
        if self.alpha < 1:
            fail("lora.alpha", f"must be positive, got {self.alpha}", "use e.g. 2 x lora.r")
        if not 0 <= self.dropout < 1:
            fail("lora.dropout", f"must be in [0, 1), got {self.dropout}", "use e.g. 0.05")
        choose("lora.bias", self.bias, ("none", "all", "lora_only"))


@dataclass
class QuantizationOptions:
    bits: int | None = None
    """Load the base model in 4 or 8 bits (bitsandbytes, CUDA). None: no quantization;
    ``training.method: qlora`` sets 4."""
    quant_type: str = "nf4"
    """4-bit data type: ``nf4`` or ``fp4``."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bits per parameter)."""
    compute_dtype: str = "bfloat16"
    """Dtype of the matrix products on dequantized weights."""

    def __post_init__(self):
        self.compute_dtype = self.compute_dtype.removeprefix("torch.")
        choose("quantization.bits", self.bits, (None, 4, 8))
        choose("quantization.quant_type", self.quant_type, ("nf4", "fp4"))
        choose("quantization.compute_dtype", self.compute_dtype, ("float32", "bfloat16", "float16"))


@dataclass
class DataOptions:
    train: list[str] = field(default_factory=list)
    """Training files (JSON / JSONL in any supported format)."""
    val: list[str] = field(default_factory=list)
    """Validation files. When empty, ``val_fraction`` of the training data is held out."""
    val_fraction: float = 0.1
    """Share of training conversations held out for validation (seeded); 0 disables it."""
    format: str = "auto"
    template: str = "auto"
    """Agent template: ``auto``, ``native``, ``hermes`` or ``msagent``."""
    policy: str = "assistant"
    """Loss policy: ``assistant``, ``last`` or ``all``."""
    max_length: int = 2048
    """Tokens per example; longer ones are dropped or truncated (``truncation``)."""
    truncation: str = "drop"
    skip_invalid: bool = False
    """Skip (count and list) invalid records instead of stopping at the first."""

    def __post_init__(self):
        from agentsft.data.readers import FORMATS
        from agentsft.data.templates import POLICIES, TEMPLATES
        from agentsft.data.tokenize import TRUNCATION
        choose("data.format", self.format, ("auto",) + FORMATS)
        choose("data.template", self.template, TEMPLATES)
        choose("data.policy", self.policy, POLICIES)
        choose("data.truncation", self.truncation, TRUNCATION)
        if not 0 <= self.val_fraction < 1:
            fail("data.val_fraction", f"must be in [0, 1), got {self.val_fraction}", "use e.g. 0.1")
        if self.max_length < 8:
            fail("data.max_length", f"{self.max_length} tokens is too short", "use e.g. 1024 or 2048")


@dataclass
class TrainingOptions:
    method: str = "lora"
    """``lora`` (default), ``qlora`` (4-bit base, CUDA) or ``full``."""
    output: str = ""
    """The run directory."""
    adapter: str | None = None
    """Continue training this adapter (a run directory or an adapter folder)."""
    epochs: float = 3.0
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``epochs``)."""
    batch_size: int = 4
    """Examples per device per micro-batch."""
    gradient_accumulation: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 2e-4
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None
    """Warm-up in steps (overrides ``warmup_ratio``)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    """Gradient clipping; 0 disables it."""
    packing: bool | str = "auto"
    """Padding-free batches: each batch's examples concatenated into one row, attention
    kept within each example (checked before training; padded batches where the model
    cannot). Same loss and gradients as padded batches, without the padding's work.
    ``auto``: packed, except on a CUDA GPU without FlashAttention, where padded batches
    were faster (``bench/RESULTS.md``); ``true`` packs there too."""
    group_by_prefix: bool = True
    """With packed batches, batch examples that begin with the same untrained tokens (a
    system prompt and tool schemas) together, so that each batch computes them once: 38%
    fewer tokens computed on examples/tools.jsonl (seven prompts). Examples are regrouped
    only within random slices of 16 batches, and the batches are shuffled. ``false``: plain
    random batches (data with one prompt gets those anyway)."""
    group_by_length: bool = False
    """With padded batches (``packing: false``), batch examples of similar length together:
    far less padding when lengths vary, in a shuffled but different order."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""
    precision: str = "auto"
    """``auto`` (bf16 where fast, else fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA)."""
    optimizer: str = "adamw_torch"
    seed: int = 42
    log_every: int = 5
    """Optimizer steps between log lines in metrics.jsonl."""
    eval_every: int = 25
    """Steps between validation runs (0: only once, at the end)."""
    save_every: int = 25
    """Steps between checkpoints."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    best_metric: str = "ppl"
    """Which validation metric picks the best checkpoint (lower is better): ``ppl`` or ``loss``."""

    def __post_init__(self):
        choose("training.method", self.method, ("lora", "qlora", "full"))
        choose("training.scheduler", self.scheduler, ("cosine", "linear", "constant"))
        choose("training.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        choose("training.best_metric", self.best_metric, ("ppl", "loss"))
        if isinstance(self.packing, str) and self.packing != "auto":
            fail("training.packing", f"{self.packing!r} is not auto, true or false",
                 "use one of those")
        for key in ("batch_size", "gradient_accumulation", "log_every", "save_every", "keep_last"):
            if getattr(self, key) < 1:
                fail(f"training.{key}", f"must be at least 1, got {getattr(self, key)}", "use 1 or more")
        for key in ("eval_every", "max_grad_norm", "weight_decay", "warmup_steps"):
            if (getattr(self, key) or 0) < 0:
                fail(f"training.{key}", f"cannot be negative, got {getattr(self, key)}", "use 0 or more")
        if self.learning_rate <= 0:
            fail("training.learning_rate", f"must be positive, got {self.learning_rate}", "use e.g. 2e-4")
        if self.max_steps is not None and self.max_steps < 1:
            fail("training.max_steps", f"must be at least 1, got {self.max_steps}", "omit it to train by epochs")
        if self.epochs <= 0:
            fail("training.epochs", f"must be positive, got {self.epochs}", "use e.g. 3")
        if not 0 <= self.warmup_ratio < 1:
            fail("training.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}", "use e.g. 0.03")


@dataclass
class EvalOptions:
    batch_size: int = 8
    """Examples per forward pass when validating."""
    max_new_tokens: int = 256
    """Generation limit for evaluation and chat."""
    tool_eval_every: int = 0
    """While training, every this many steps (and at the end) generate the assistant steps
    of a validation sample and log tool-call accuracy beside the loss; 0: off."""
    tool_eval_samples: int = 16
    """Validation conversations in that sample (a fixed, seeded choice)."""

    def __post_init__(self):
        if self.tool_eval_every < 0:
            fail("eval.tool_eval_every", f"must be 0 (off) or more, got {self.tool_eval_every}",
                 "use e.g. 25")
        for key in ("batch_size", "max_new_tokens", "tool_eval_samples"):
            if getattr(self, key) < 1:
                fail(f"eval.{key}", f"must be at least 1, got {getattr(self, key)}", "use 1 or more")


@dataclass
class Config:
    model: ModelOptions = field(default_factory=ModelOptions)
    lora: LoraOptions = field(default_factory=LoraOptions)
    quantization: QuantizationOptions = field(default_factory=QuantizationOptions)
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)

    def __post_init__(self):
        method, bits = self.training.method, self.quantization.bits
        if method == "qlora" and bits is None:
            self.quantization.bits = 4
        if method != "qlora" and bits is not None:
            fail("training.method", f"{method} loads the model unquantized, but quantization.bits "
                 f"is {bits}", "use --method qlora, or --set quantization.bits=null")

    def to_dict(self) -> dict[str, Any]:
        return redact(dataclasses.asdict(self))


GROUPS = {f.name: f.type for f in dataclasses.fields(Config)}


# ---------------------------------------------------------------------------
# Building a Config from nested dicts, with conversion and unknown-key errors.


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
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            unknown(f"{prefix}.{key}", [f"{prefix}.{k}" for k in hints])
        kwargs[key] = convert(value, hints[key], f"{prefix}.{key}")
    return cls(**kwargs)


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


# ---------------------------------------------------------------------------
# Files and overrides.


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
        return yaml.safe_load(text)
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
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


# Hub tokens are "hf_" and 34 letters or digits; shorter hf_ names (hf_datasets) are paths.
HF_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def redact(value: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """``value`` with the environment's hub token, and anything shaped like one, replaced."""
    if secrets is None:
        from agentsft.models import hf_token
        secrets = tuple(t for t in [hf_token()] if t)
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return HF_TOKEN_PATTERN.sub("hf_***", value)
    return value


def save(cfg: Config, path: Path) -> None:
    from agentsft.files import write_text_atomically
    write_text_atomically(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))


# ---------------------------------------------------------------------------
# The agent-framework layout: model_configs.json.

AF_TOP = {"config_name", "model_type", "pretrained_model_name_or_path", "local_model_path",
          "data_path", "device", "max_length", "fine_tune_config"}
AF_FINE_TUNE = {"lora_config", "training_args", "bnb_config", "continue_lora_finetuning",
                "max_seq_length"}
AF_LORA = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "bias": "bias",
           "target_modules": "target_modules", "task_type": None}
AF_TRAINING = {
    "num_train_epochs": "epochs", "max_steps": "max_steps",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation", "learning_rate": "learning_rate",
    "lr_scheduler_type": "scheduler", "warmup_ratio": "warmup_ratio", "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
    "gradient_checkpointing": "gradient_checkpointing", "optim": "optimizer", "seed": "seed",
    "logging_steps": "log_every", "eval_steps": "eval_every", "save_steps": "save_every",
    "save_total_limit": "keep_last", "output_dir": "output", "bf16": None, "fp16": None,
    "per_device_eval_batch_size": None,
}
AF_BNB = {"load_in_4bit": None, "load_in_8bit": None, "bnb_4bit_use_double_quant": "double_quant",
          "bnb_4bit_quant_type": "quant_type", "bnb_4bit_compute_dtype": "compute_dtype"}


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
