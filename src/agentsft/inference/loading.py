"""Loading what a run trained (or any model) for inference: base model, adapter (merged on
CPU), tokenizer and the agent template the run recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agentsft.accel.inference import attention_note, merged_lora, prepare_for_decoding, weights_in
from agentsft.config import DEFAULT_MODEL, ModelOptions, QuantizationOptions
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.hub import (
    auto_dtype, load_model, load_tokenizer, recorded_run, resolve_device, say, torch_dtype,
    trained_folder,
)
from agentsft.inference.engine import Generator


def with_adapter(net: Any, folder: Path, merge: bool, dtype: torch.dtype, fast: bool = True) -> Any:
    """``net`` with the adapter in ``folder``: merged into its weights (then in ``dtype``)
    where ``merge`` (our float32 merge where it applies and ``fast``), else as PEFT layers."""
    if merge and fast and (merged := merged_lora(net, folder, dtype)) is not None:
        return merged
    from peft import PeftModel
    net = PeftModel.from_pretrained(net, str(folder))
    return weights_in(net.merge_and_unload(), dtype) if merge else net


def recorded_quantization(info: dict[str, Any], device: str) -> QuantizationOptions | None:
    """A QLoRA run is served on its quantized base, as it was trained, where that can load
    (CUDA); elsewhere the base loads unquantized, said in one line."""
    q = info.get("quantization") or ({"bits": info["quantization_bits"]}
                                      if info.get("quantization_bits") else None)
    if not q:
        return None
    if not device.startswith("cuda"):
        say(f"note: this run trained on a {q['bits']}-bit base, which needs a CUDA GPU; "
            f"loading the base unquantized on {device} (replies may differ slightly)")
        return None
    return QuantizationOptions(**{k: v for k, v in q.items() if v is not None})


def model_options(model: str | None, full_model: Path | None, info: dict[str, Any],
                  device: str | None, trust_remote_code: bool) -> ModelOptions:
    """Which weights answer: a fully fine-tuned run's own folder, else the explicit
    ``model``, else the base the run recorded (at its recorded revision), else the
    default model. An explicit model never takes the recorded revision."""
    name = str(full_model) if full_model is not None else (
        model or info.get("base_model") or DEFAULT_MODEL)
    return ModelOptions(name=name, device=device or "auto", dtype="auto",
                        trust_remote_code=trust_remote_code or bool(info.get("trust_remote_code")),
                        revision=None if model or full_model else info.get("revision"))


def tokenizer_source(folder: Path | None, base: str) -> str:
    """Where a run's tokenizer is: saved beside its weights (agentsft train does), else the
    base model's (a bare PEFT adapter folder has none)."""
    return str(folder) if folder is not None and (folder / "tokenizer_config.json").is_file() else base


def load_generator(model: str | None = None, adapter: str | Path | None = None,
                   device: str | None = None, template: str | None = None,
                   trust_remote_code: bool = False, dtype: str = "auto",
                   fast_path: str = "auto", constrain: bool = True) -> Generator:
    """A Generator for a model, or for what a training run saved (``adapter``: a run
    directory or its final/ folder; its base model, revision, quantization and template come
    from agentsft.json; an explicit ``model`` wins over the recorded base and its revision).
    ``fast_path="off"``: none of agentsft's own kernels or cache reuse, transformers' and
    PEFT's code throughout. ``constrain=False``: tool calls decoded freely (by default they
    are constrained to the offered tools and their schemas)."""
    folder = trained_folder(adapter) if adapter is not None else None
    info = recorded_run(folder) if folder is not None else {}
    is_adapter = folder is not None and (folder / "adapter_config.json").is_file()
    opts = model_options(model, folder if folder is not None and not is_adapter else None, info,
                         device, trust_remote_code)
    base = opts.name
    tokenizer = load_tokenizer(tokenizer_source(folder, opts.name), opts.trust_remote_code)
    device = resolve_device(opts.device)
    fast = fast_path != "off"
    quant = recorded_quantization(info, device)
    merge = is_adapter and device == "cpu"
    # On CPU an adapter is merged into the base (float32 sum, then the inference dtype):
    # unmerged, its 2 x 7 extra products per layer cost about a third of each decode step.
    wanted = auto_dtype(device) if dtype == "auto" else dtype
    net = load_model(opts, quant, dtype="float32" if merge else wanted)
    if is_adapter:
        try:
            net = with_adapter(net, folder, merge, torch_dtype(wanted), fast)
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit {base} "
                                f"({str(e).strip().splitlines()[0][:200]}). Fix: pass --model with "
                                f"the model it was trained on") from None
    if fast:
        prepare_for_decoding(net, device)
    if note := attention_note(net, fast):
        say(note)
    name = template or info.get("template") or "auto"
    return Generator(net, tokenizer, get_template(name, tokenizer), fast=fast, constrain=constrain)


def load_adapters(runs: dict[str, str | Path], model: str | None = None, device: str | None = None,
                  dtype: str = "auto", fast_path: str = "auto", constrain: bool = True,
                  template: str | None = None, with_base: bool = False) -> dict[str, tuple[Generator, str | None]]:
    """Several LoRA runs of one base in one model: the base loads once, each run's adapter
    is added under its name (unmerged: a batch may mix them, each row naming its own).
    Returns, per name, a Generator (the run's tokenizer and template) and the PEFT adapter
    that answers (None: the base itself, served as ``model`` where ``with_base``)."""
    from peft import PeftModel
    folders = {name: trained_folder(run) for name, run in runs.items()}
    infos = {name: recorded_run(f) for name, f in folders.items()}
    for name, f in folders.items():
        if not (f / "adapter_config.json").is_file():
            raise AgentsftError(f"run {name!r} ({f}) is a full fine-tune: it cannot share a base "
                                f"with other adapters. Fix: serve it alone")
    bases = {n: model or i.get("base_model") or DEFAULT_MODEL for n, i in infos.items()}
    if len(set(bases.values())) > 1:
        listed = ", ".join(f"{n}: {b}" for n, b in bases.items())
        raise AgentsftError(f"these runs were trained on different base models ({listed}). "
                            f"Fix: serve each base in its own process")
    first = next(iter(infos.values()))
    opts = model_options(model, None, first, device, False)
    device = resolve_device(opts.device)
    net = load_model(opts, recorded_quantization(first, device),
                     dtype=auto_dtype(device) if dtype == "auto" else dtype)
    names = list(folders)
    try:
        net = PeftModel.from_pretrained(net, str(folders[names[0]]), adapter_name=names[0])
        for name in names[1:]:
            net.load_adapter(str(folders[name]), adapter_name=name)
    except (RuntimeError, ValueError) as e:
        raise AgentsftError(f"an adapter does not fit {opts.name} "
                            f"({str(e).strip().splitlines()[0][:200]}). Fix: pass --model with "
                            f"the model they were trained on") from None
    net.eval()
    fast = fast_path != "off"
    if fast:
        prepare_for_decoding(net, device)
    if note := attention_note(net, fast):
        say(note)
    out: dict[str, tuple[Generator, str | None]] = {}
    for name, folder in folders.items():
        tokenizer = load_tokenizer(tokenizer_source(folder, opts.name), opts.trust_remote_code)
        chosen = template or infos[name].get("template") or "auto"
        out[name] = (Generator(net, tokenizer, get_template(chosen, tokenizer), fast=fast,
                               constrain=constrain), name)
    if with_base:
        tokenizer = load_tokenizer(opts.name, opts.trust_remote_code)
        out[str(model or opts.name)] = (Generator(net, tokenizer, get_template(template or "auto", tokenizer),
                                                  fast=fast, constrain=constrain), None)
    return out
