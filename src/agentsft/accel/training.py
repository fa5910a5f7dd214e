"""The speed paths of a training run, decided once per model and device.

    keep_freed_memory(device)             # on CPU (glibc)
    packed, restore = start_packing(model, cfg.training.packing, device)
    share = shares_prefixes(model, packed, cfg.training.group_by_prefix)
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

from agentsft.accel.adapters import fast_adapters
from agentsft.accel.layers import fast_layers
from agentsft.accel.logits import trained_logits
from agentsft.accel.segments import (
    OWN_KERNEL, attention_note, packing_is_exact, sharing_is_exact, use_segment_attention,
)
from agentsft.hub import say

__all__ = ["fast_training", "keep_freed_memory", "shares_prefixes", "start_packing", "trained_logits"]


def start_packing(model: Any, wanted: bool | str, device: str = "cpu", fast: bool = True
                  ) -> tuple[bool, str | None]:
    """Padding-free batches where the model keeps packed examples apart (checked on two
    short examples); else padded batches, said once. Packed rows go through our attention
    where it fits the model and ``fast`` (``training.fast_path``), else through the model's
    own, which reads the rows' boundaries from the restarting position ids. Returns (packed,
    implementation to restore after training)."""
    if wanted == "auto":
        wanted = (not device.startswith("cuda")
                  or getattr(model.config, "_attn_implementation", None) in OWN_KERNEL)
        if not wanted:
            # QLoRA of a 7B-shaped Llama on an H100, 200 steps of batch 4: 1,340 tokens/s
            # packed (per-example SDPA) against 2,028 padded (bench/gpu_qlora.py).
            say("batches: padded (on a GPU without FlashAttention they were faster than "
                "packed rows; training.packing=true packs anyway)")
    if not wanted:
        return False, None
    restore = use_segment_attention(model) if fast else None
    if restore is None and (note := attention_note(model, fast)):
        say(note)
    if packing_is_exact(model):
        return True, restore
    if restore:
        model.set_attn_implementation(restore)
    say("note: this model's attention lets packed examples see each other; training on "
        "padded batches instead (training.packing=false silences this)")
    return False, None


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
