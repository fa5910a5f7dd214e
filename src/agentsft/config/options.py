"""The option groups of a run: small typed dataclasses, each field with its docstring.

    model:        which model, on which device, in which dtype
    lora:         adapter shape (LoRA and QLoRA)
    quantization: 4-bit / 8-bit loading (QLoRA; CUDA only)
    data:         files, template, loss policy, lengths
    training:     method, optimisation, schedule, logging, checkpoints
    eval:         evaluation and generation settings

Each group checks its values in ``__post_init__``; a bad one is a :class:`ConfigError`
that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from agentsft.config.secrets import redact
from agentsft.data.readers import FORMATS
from agentsft.data.templates import POLICIES, TEMPLATES
from agentsft.data.tokenize import TRUNCATION
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
    quant_storage: str | None = None
    """Dtype the 4-bit weights are packed in (bitsandbytes' ``bnb_4bit_quant_storage``). None:
    uint8, or the compute dtype under FSDP and DeepSpeed ZeRO-3, which must shard them with
    the other weights."""

    def __post_init__(self):
        self.compute_dtype = self.compute_dtype.removeprefix("torch.")
        if self.quant_storage is not None:
            self.quant_storage = self.quant_storage.removeprefix("torch.")
            choose("quantization.quant_storage", self.quant_storage,
                   ("uint8", "float32", "bfloat16", "float16"))
        choose("quantization.bits", self.bits, (None, 4, 8))
        choose("quantization.quant_type", self.quant_type, ("nf4", "fp4"))
        choose("quantization.compute_dtype", self.compute_dtype, ("float32", "bfloat16", "float16"))


SOURCE_KEYS = ("path", "weight", "split", "config", "revision")


def check_source(entry: dict, key: str) -> None:
    """One ``data.train`` entry written as an object: a path and how much of it to use."""
    for k in entry:
        if k not in SOURCE_KEYS:
            fail(f"{key}.{k}", "is not a source option", f"use {', '.join(SOURCE_KEYS)}")
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        fail(f"{key}.path", "is missing", "give the file, folder or hub dataset id")
    weight = entry.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        fail(f"{key}.weight", f"{weight!r} is not a positive number", "use e.g. 1, 2 or 0.5")
    for k in ("split", "config", "revision"):
        if entry.get(k) is not None and not isinstance(entry[k], str):
            fail(f"{key}.{k}", f"{entry[k]!r} is not a string", "use its name")


@dataclass
class DataOptions:
    train: list[str | dict] = field(default_factory=list)
    """Training data: JSON / JSONL, Parquet, Arrow, CSV or TSV files, dataset folders, hub
    dataset ids; or ``{path, weight, split, config, revision}`` to mix sources (weight 2:
    each conversation twice; 0.5: a seeded half)."""
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
    config: str | None = None
    """The configuration (subset) of a hub dataset."""
    split: str | None = None
    """Which split of a dataset: its only one, else ``train``, when not given."""
    revision: str | None = None
    """The revision of a hub dataset (branch, tag or commit)."""

    def __post_init__(self):
        for i, entry in enumerate(self.train):
            if isinstance(entry, dict):
                check_source(entry, f"data.train[{i}]")
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
    neftune_alpha: float = 0.0
    """NEFTune: uniform noise on the input embeddings while training, at most
    ``alpha / sqrt(L * d)`` for a token of an L-token example (the paper used 5 to 15);
    0: off. Each example draws its own noise, so batches do not share prompts with it on."""
    packing: bool | str = "auto"
    """Padding-free batches: each batch's examples concatenated into one row, attention
    kept within each example (checked before training; padded batches where the model
    cannot). Same loss and gradients as padded batches, without the padding's work.
    ``auto``: packed, except on a CUDA GPU with neither FlashAttention nor PyTorch's
    variable-length kernel (checked on the device), where padded batches were faster
    than examples one at a time (``bench/RESULTS.md``); ``true`` packs there too."""
    group_by_prefix: bool = True
    """With packed batches, batch examples that begin with the same untrained tokens (a
    system prompt and tool schemas) together, so that each batch computes them once: 38%
    fewer tokens computed on examples/tools.jsonl (seven prompts). Examples are regrouped
    only within random slices of 16 batches, and the batches are shuffled. ``false``: plain
    random batches (data with one prompt gets those anyway)."""
    group_by_length: bool = False
    """With padded batches (``packing: false``), batch examples of similar length together:
    far less padding when lengths vary, in a shuffled but different order."""
    fast_path: str = "auto"
    """agentsft's own kernels (packed-row attention, fused RMSNorm / SwiGLU / LoRA layers),
    each used only where a check shows it computes what the model does, else the model's
    own with one line saying why. ``off``: transformers' and PEFT's code throughout."""
    gradient_checkpointing: bool | str = "auto"
    """Recompute activations in the backward pass: less memory, about 30% slower.
    ``auto``: on a CUDA GPU, on only where a full batch's activations (``batch_size`` x
    ``data.max_length`` tokens, estimated from the model's shape) would not fit the memory
    left after loading the model, said in one line; off on CPU."""
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
        choose("training.fast_path", self.fast_path, ("auto", "off"))
        for key in ("packing", "gradient_checkpointing"):
            if isinstance(getattr(self, key), str) and getattr(self, key) != "auto":
                fail(f"training.{key}", f"{getattr(self, key)!r} is not auto, true or false",
                     "use one of those")
        for key in ("batch_size", "gradient_accumulation", "log_every", "save_every", "keep_last"):
            if getattr(self, key) < 1:
                fail(f"training.{key}", f"must be at least 1, got {getattr(self, key)}", "use 1 or more")
        for key in ("eval_every", "max_grad_norm", "weight_decay", "warmup_steps", "neftune_alpha"):
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
    """Every option of a run, in groups: model, lora, quantization, data, training, eval."""

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
