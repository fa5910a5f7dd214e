"""Loading what a run trained (or any model) for inference: base model, adapter (merged on
CPU), tokenizer and the agent template the run recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsft.accel.inference import merged_lora, prepare_for_decoding
from agentsft.config import DEFAULT_MODEL, ModelOptions
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.hub import (
    auto_dtype, load_model, load_tokenizer, recorded_run, resolve_device, torch_dtype, trained_folder,
)
from agentsft.inference.engine import Generator


def with_adapter(net: Any, folder: Path, merge: bool, device: str) -> Any:
    """``net`` with the adapter in ``folder``: merged into its weights (then in the inference
    dtype) where ``merge``, else as PEFT layers."""
    dtype = torch_dtype(auto_dtype(device))
    if merge and (merged := merged_lora(net, folder, dtype)) is not None:
        return merged
    from peft import PeftModel
    net = PeftModel.from_pretrained(net, str(folder))
    return net.merge_and_unload().to(dtype) if merge else net


def load_generator(model: str | None = None, adapter: str | Path | None = None,
                   device: str | None = None, template: str | None = None,
                   trust_remote_code: bool = False) -> Generator:
    """A Generator for a model, or for what a training run saved (``adapter``: a run
    directory or its final/ folder; its base model and template come from agentsft.json)."""
    folder = trained_folder(adapter) if adapter is not None else None
    info = recorded_run(folder) if folder is not None else {}
    is_adapter = folder is not None and (folder / "adapter_config.json").is_file()
    base = model or info.get("base_model") or DEFAULT_MODEL
    opts = ModelOptions(name=str(folder) if folder is not None and not is_adapter else base,
                        device=device or "auto", dtype="auto",
                        trust_remote_code=trust_remote_code or bool(info.get("trust_remote_code")),
                        revision=info.get("revision"))
    tokenizer = load_tokenizer(str(folder) if folder is not None else opts.name,
                               opts.trust_remote_code)
    device = resolve_device(opts.device)
    merge = is_adapter and device == "cpu"
    # On CPU an adapter is merged into the base (float32 sum, then the inference dtype):
    # unmerged, its 2 x 7 extra products per layer cost about a third of each decode step.
    net = load_model(opts, dtype="float32" if merge else None)
    if is_adapter:
        try:
            net = with_adapter(net, folder, merge, device)
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit {base} "
                                f"({str(e).strip().splitlines()[0][:200]}). Fix: pass --model with "
                                f"the model it was trained on") from None
    prepare_for_decoding(net, device)
    name = template or info.get("template") or "auto"
    return Generator(net, tokenizer, get_template(name, tokenizer))
