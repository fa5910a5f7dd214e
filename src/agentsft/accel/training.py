"""The speed paths of a training run, decided once per model and device.

    keep_freed_memory(device)             # on CPU (glibc)
    packed, restore = start_packing(model, cfg.training.packing, device)
    share = shares_prefixes(model, packed, cfg.training.group_by_prefix)
    fused = fused_loss(model, device, fast, dtype)  # on a CUDA GPU: Liger's, where it fits
    with fast_training(model, autocast):
        trainer.train()                   # its loss calls trained_logits

Each decision checks the model and says, in one line, where a path steps aside.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from agentsft.accel import varlen
from agentsft.accel.adapters import fast_adapters
from agentsft.accel.layers import fast_layers
from agentsft.accel.logits import FusedLoss, fused_misfit, head_misfit, trained_logits
from agentsft.accel.segments import (
    OWN_KERNEL, attention_note, packing_is_exact, sharing_is_exact, use_segment_attention,
)
from agentsft.hub import say

__all__ = ["FusedLoss", "fast_training", "fused_loss", "keep_freed_memory", "shares_prefixes",
           "start_packing", "trained_logits"]


def start_packing(model: Any, wanted: bool | str, device: str = "cpu", fast: bool = True,
                  dtype: torch.dtype | None = None) -> tuple[bool, str | None]:
    """Padding-free batches where the model keeps packed examples apart (checked on two
    short examples); else padded batches, said once. Packed rows go through our attention
    where it fits the model and ``fast`` (``training.fast_path``), else through the model's
    own, which reads the rows' boundaries from the restarting position ids. On a CUDA GPU
    ours runs each row through PyTorch's variable-length kernel where it proves equal on the
    model's head shapes in ``dtype`` (the compute dtype); ``auto`` packs there only then, or
    under FlashAttention. Returns (packed, implementation to restore after training)."""
    if wanted is False:
        return False, None
    restore = use_segment_attention(model) if fast else None
    if restore is None and (note := attention_note(model, fast)):
        say(note)
    gpu = device.startswith("cuda")
    own = getattr(model.config, "_attn_implementation", None) in OWN_KERNEL
    fast_rows = own or (gpu and restore is not None and kernel_proven(model, dtype))
    if wanted == "auto" and gpu and not fast_rows:
        if restore:
            model.set_attn_implementation(restore)
        # QLoRA of a 7B-shaped Llama on an H100, 200 steps of batch 4: 1,340 tokens/s
        # packed (per-example SDPA) against 2,028 padded (bench/gpu_qlora.py).
        say("batches: padded (on a GPU, packed rows one example at a time were slower than "
            "padding; training.packing=true packs anyway)")
        return False, None
    if packing_is_exact(model):
        return True, restore
    if restore:
        model.set_attn_implementation(restore)
    say("note: this model's attention lets packed examples see each other; training on "
        "padded batches instead (training.packing=false silences this)")
    return False, None


def fused_loss(model: Any, device: str, fast: bool = True, dtype: torch.dtype | None = None
               ) -> FusedLoss | None:
    """On a CUDA GPU, the loss through Liger's fused linear cross-entropy where the model's
    logits are its output layer's product and the kernel matches the plain loss in the
    compute ``dtype`` (said in one line either way); None elsewhere: the output layer at
    the trained positions, then cross-entropy."""
    if not device.startswith("cuda") or not fast:
        return None
    dtype = dtype or next(model.parameters()).dtype
    why = head_misfit(model) or fused_misfit(dtype, str(next(model.parameters()).device))
    if why:
        say(f"loss: the output layer at the trained positions, then cross-entropy (Liger's "
            f"fused kernel: {why})")
        return None
    say("loss: Liger's fused linear cross-entropy at the trained positions (checked against "
        "the plain loss)")
    return FusedLoss(dtype)


def kernel_proven(model: Any, dtype: torch.dtype | None) -> bool:
    """Whether PyTorch's variable-length kernel computes our packed attention for this
    model's heads on its device (``varlen.check``), said in one line either way."""
    c = model.config
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    param = next(model.parameters())
    why = varlen.check(heads, getattr(c, "num_key_value_heads", None) or heads, head_dim,
                       dtype or param.dtype, str(param.device))
    say("attention: packed rows through PyTorch's variable-length kernel (checked against "
        "SDPA)" if why is None else f"attention: packed rows one example at a time ({why})")
    return why is None


def shares_prefixes(model: Any, packed: bool, group_by_prefix: bool, noisy: bool = False) -> bool:
    """Whether examples of a packed batch that begin with the same untrained tokens may
    hold them once (the model's attention must see the shared copy: checked; ``noisy``,
    NEFTune on: no, each example draws its own noise)."""
    if packed and noisy:
        say("batches: packed rows, each example's prompt its own (training.neftune_alpha: "
            "every example draws its own noise)")
        return False
    share = packed and sharing_is_exact(model)
    if share:
        say("batches: packed rows; examples of a batch that begin with the same untrained "
            "tokens (system prompt, tool schemas) hold them once"
            + (", and are batched together (training.group_by_prefix=false: plain random "
               "batches)" if group_by_prefix else ""))
    elif packed and group_by_prefix:
        say("note: this model's attention cannot see a prefix held once for several examples; "
            "batches keep a plain random order (training.group_by_prefix=false silences this)")
    return share


@contextlib.contextmanager
def fast_training(model: Any, autocast: torch.dtype | None, fast: bool = True) -> Iterator[None]:
    """Fused LoRA layers and fused RMSNorm / SwiGLU while training under ``autocast`` (a
    dtype or None), each where it applies, said in one line; everything is undone on exit.
    ``fast=False`` (``training.fast_path: off``): the model's and PEFT's own layers."""
    if not fast:
        say("layers: transformers' and PEFT's own (training.fast_path=off)")
        yield
        return
    with fast_adapters(model, autocast) as lora, fast_layers(model, autocast) as (fused, kept):
        if lora or fused or kept:
            say(layers_note(lora, fused, kept))
        yield


def layers_note(lora: int, fused: Counter[str], kept: set[str]) -> str:
    parts = [f"{n} {name}" for name, n in sorted(fused.items())]
    if lora:
        parts.append(f"{lora} LoRA layers")
    line = "layers: fused " + ", ".join(parts) if parts else "layers: none fused"
    if kept:
        line += (f"; {', '.join(sorted(kept))} kept {'its' if len(kept) == 1 else 'their'} "
                 f"own forward (it computes differently)")
    return line


def keep_freed_memory(device: str) -> None:
    """Let glibc keep the memory a training step frees for the next step. By default it
    hands large blocks back to the system as they are freed (and adapts only slowly), so
    the next step faults the same memory in again, and writing to fresh pages costs about
    1 s per GB on this machine's VM. Measured on a CPU LoRA run of the default model: step
    2's page faults went from 432k (1.7 GB) to 185k; the 4-step run took 37.6 s against
    42.6 s in one pair, but a third run took 43.2 s: within this machine's noise."""
    if device != "cpu" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave its allocator alone
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: up to 32 MB from the heap
    libc.mallopt(m_trim_threshold, 1 << 30)  # return the heap's top only past 1 GB free
    libc.mallopt(m_top_pad, 64 << 20)
