"""Loading the model of a run: base weights, then the method (LoRA, QLoRA, full, or an
adapter continued), in the dtype and precision the device runs fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from agentsft.config import DEFAULT_MODEL, Config
from agentsft.errors import AgentsftError
from agentsft.hub import RUN_FILE, fast_bf16, load_model, resolve_device, say, trained_folder


def adapter_folder(path: str) -> Path:
    """The LoRA adapter of a run directory (its final/) or of an adapter folder."""
    folder = trained_folder(path)
    if not (folder / "adapter_config.json").is_file():
        raise AgentsftError(f"{folder} holds a fully fine-tuned model, not a LoRA adapter. Fix: "
                            f"train on it as the model (--model {folder}) instead of --adapter")
    return folder


def weights_dtype(cfg: Config, device: str) -> str:
    """A frozen LoRA base lives in bf16 when training runs in bf16 (no per-step casts of
    its weights); trained weights stay float32: PEFT keeps adapters in float32, autocast
    runs their products in bf16 and the optimizer updates float32 masters."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    if cfg.training.method == "lora" and precision_flags(cfg, device)["bf16"]:
        return "bfloat16"
    return "float32"


def adapter_base(folder: Path) -> str | None:
    """The base model an adapter was trained on, as recorded beside it."""
    for name, key in ((RUN_FILE, "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            value = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if value:
            return value
    return None


def build_model(cfg: Config) -> Any:
    device = resolve_device(cfg.model.device)
    quant = cfg.quantization if cfg.training.method == "qlora" or cfg.quantization.bits else None
    model = load_model(cfg.model, quant, dtype=weights_dtype(cfg, device))
    model.config.use_cache = False  # no KV cache while training
    if cfg.training.method == "full":
        if cfg.training.adapter:
            raise AgentsftError("training.adapter continues a LoRA adapter, which full fine-tuning "
                                "does not use. Fix: use --method lora, or drop --adapter")
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    if quant is not None:
        # Checkpointing is the Trainer's (non-reentrant, from training_arguments); PEFT's
        # would enable it a second time, through a call transformers 5 deprecates.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.training.adapter:
        folder = adapter_folder(cfg.training.adapter)
        say(f"continuing the adapter in {folder}")
        try:
            return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit {cfg.model.name} "
                                f"({str(e).strip().splitlines()[0][:200]}). Fix: pass --model with "
                                f"the model it was trained on") from None
    lo = cfg.lora
    lora = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, bias=lo.bias,
                      target_modules=lo.target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear)})
        raise AgentsftError(f"lora.target_modules={lo.target_modules!r} does not fit this model "
                            f"({str(e).splitlines()[0]}). Fix: use all-linear or some of "
                            f"{', '.join(names)}") from None


def precision_flags(cfg: Config, device: str) -> dict[str, bool]:
    p = cfg.training.precision
    if p == "auto":
        p = "bf16" if fast_bf16(device) else ("fp16" if device.startswith("cuda") else "fp32")
    if p == "fp16" and not device.startswith("cuda"):
        raise AgentsftError("training.precision fp16 needs a CUDA GPU. Fix: use bf16 or fp32")
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def compute_dtype(cfg: Config, device: str) -> torch.dtype | None:
    """The dtype mixed precision computes in (None: the weights' own, fp32 training)."""
    flags = precision_flags(cfg, device)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else None


def use_adapter_base(cfg: Config) -> None:
    """Continue an adapter on the model it was trained on: its recorded base replaces the
    default model; a different explicit --model is kept, with a note."""
    recorded = adapter_base(adapter_folder(cfg.training.adapter))
    if recorded is None or recorded == cfg.model.name:
        return
    if cfg.model.name == DEFAULT_MODEL:
        say(f"continuing on the adapter's base model, {recorded}")
        cfg.model.name = recorded
    else:
        say(f"note: the adapter was trained on {recorded}; continuing it on {cfg.model.name}")


def say_parameters(model: Any, cfg: Config) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"model: {cfg.model.name} ({cfg.training.method}), {trainable:,} of {total:,} "
        f"parameters trained ({100 * trainable / total:.2f}%)")


def checkpointing(cfg: Config, model: Any, device: str) -> bool:
    """``training.gradient_checkpointing`` for this run. ``auto``: off on CPU; on a CUDA GPU,
    on only where a full batch's activations and the trained weights' optimizer state would
    not fit in 80% of the memory free after loading the model, said in one line."""
    want = cfg.training.gradient_checkpointing
    if want != "auto":
        return bool(want)
    if not device.startswith("cuda"):
        return False
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    tokens = cfg.training.batch_size * cfg.data.max_length
    need = activation_bytes(model.config, tokens, cfg.training.method != "full" and cfg.lora.dropout > 0)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if need is None:
        say("gradient checkpointing: on (the model's shape does not tell its activations' size; "
            "training.gradient_checkpointing=false turns it off)")
        return True
    need += trained * 16  # float32 weights, gradients and two Adam moments
    on = need > 0.8 * free
    say(f"gradient checkpointing: {'on' if on else 'off'} (a batch of {tokens:,} tokens needs about "
        f"{need / 2**30:.1f} GB, {'more' if on else 'less'} than 80% of the {free / 2**30:.1f} GB "
        f"free; training.gradient_checkpointing={'false' if on else 'true'} turns it "
        f"{'off' if on else 'on'})")
    return on


def activation_bytes(config: Any, tokens: int, dropout: bool = False) -> int | None:
    """Estimated bytes a bf16 decoder with LoRA on every linear layer keeps for its backward
    pass over ``tokens`` tokens (None where the config lacks its shape): per layer and token
    40 h + 8 kv + 14 i bytes (width h, key/value width kv, MLP width i), and 3 (6 h + i) more
    for LoRA's dropout (a copy and a mask of each adapted layer's input). Fitted to what
    autograd saves for Llama-shaped layers (tests/test_gpu_paths.py measures it: within 0.8
    to 1.3 of the saved bytes)."""
    config = getattr(config, "text_config", None) or config
    h = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not (h and layers and heads):
        return None
    inner = getattr(config, "intermediate_size", None) or 4 * h
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    per = 40 * h + 8 * kv + 14 * inner + (3 * (6 * h + inner) if dropout else 0)
    return tokens * layers * per
