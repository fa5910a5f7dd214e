"""Packed rows on a CUDA GPU through PyTorch's own variable-length attention
(``torch.nn.attention.varlen``, FlashAttention's kernel inside PyTorch): one kernel call per
layer for the whole row, where a loop of per-example SDPA calls ran many small kernels (on
an H100 that loop made packed rows slower than padded batches, bench/RESULTS.md).

A segment that continues a shared prefix held elsewhere in the row sees that prefix's keys
first: its keys are gathered as [prefix, own] and its queries are the last ones of that
range (the kernel aligns a causal mask to the bottom right when there are more keys than
queries: checked, with the rest).

The kernel is used only for what :func:`check` proved on this device: each (dtype, query
heads, key/value heads, head size) is compared once, output and gradients, with and
without a shared prefix, against SDPA on each segment alone. Anything unchecked, or a
check that failed, goes through the per-segment loop, which is exact.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from typing import Any

import torch
import torch.nn.functional as F

from agentsft.accel.compare import close

PROVEN: dict[tuple, bool] = {}
"""(device, dtype, heads, kv_heads, head size) -> whether the kernel matched there."""
TOLERANCE = 0.02
"""Of the reference's largest value: a wrong mask or alignment is off by about that scale,
bf16 rounding by far less."""


def kernel() -> Any | None:
    """``varlen_attn`` of this torch (2.10 and newer), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def key(q: torch.Tensor, k: torch.Tensor) -> tuple:
    """The shape class a check covers: q (.., heads, T, d) and k (.., kv_heads, T, d)."""
    return (str(q.device), q.dtype, q.shape[-3], k.shape[-3], q.shape[-1])


def proven(q: torch.Tensor, k: torch.Tensor) -> bool:
    return PROVEN.get(key(q, k), False)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
              longest: int, scale: float | None,
              contexts: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention within each segment ``cu[i]:cu[i + 1]`` of a packed row: q (heads,
    T, d), k and v (kv_heads, T, d); returns (T, heads, d). ``contexts[i]`` (start, end),
    or (0, 0): a shared prefix segment i continues (an int tensor, (segments, 2))."""
    varlen = kernel()
    params = parameters(varlen)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # (T, heads, d)
    cu = cu.to(torch.int32)
    extra: dict[str, Any] = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    if "scale" in params:
        extra["scale"] = scale
    elif scale is not None:  # the kernel scales by d ** -0.5: fold the difference into q
        q = q * (scale * q.shape[-1] ** 0.5)
    if q.shape[1] != k.shape[1] and "enable_gqa" in params:
        extra["enable_gqa"] = True  # else FlashAttention's kernel takes fewer key/value heads itself
    cu_k, longest_k = cu, longest
    if contexts is not None:
        index, cu_k, longest_k = shared_keys(cu, contexts)
        k, v = k.index_select(0, index), v.index_select(0, index)
    return varlen(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu_k, longest, longest_k,
                  **extra)


@functools.cache
def parameters(function: Any) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


LAST_PLAN: list = [None, None]
"""The last row's (segment_context tensor, its key plan): every layer of a forward (and its
recomputation under checkpointing) reads the same row, so its plan is built, and the
boundaries read from the GPU, once. The tensor is held, so its identity cannot be reused."""


def shared_keys(cu: torch.Tensor, contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each segment's keys are, as [its shared prefix, its own]: the row positions to
    gather, the segments' cumulative key lengths (int32) and the longest."""
    if LAST_PLAN[0] is contexts:
        return LAST_PLAN[1]
    bounds, pairs = cu.tolist(), contexts.tolist()
    index, lengths = [], []
    for (s, e), (cs, ce) in zip(zip(bounds, bounds[1:]), pairs):
        index.extend(range(cs, ce))
        index.extend(range(s, e))
        lengths.append(ce - cs + e - s)
    cu_k = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    plan = (torch.tensor(index).to(cu.device), cu_k.to(cu.device), max(lengths))
    LAST_PLAN[:] = [contexts, plan]
    return plan


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bounds: list[int],
              scale: float | None, contexts: list[tuple[int, int]]) -> torch.Tensor:
    """The same attention, one SDPA call per segment with an explicit mask, in float32."""
    out = []
    for (s, e), (cs, ce) in zip(zip(bounds, bounds[1:]), contexts):
        ks = torch.cat([k[:, cs:ce], k[:, s:e]], dim=1).float()
        vs = torch.cat([v[:, cs:ce], v[:, s:e]], dim=1).float()
        n, c = e - s, ce - cs
        mask = torch.arange(c + n, device=q.device)[None, :] <= c + torch.arange(n, device=q.device)[:, None]
        out.append(F.scaled_dot_product_attention(
            q[:, s:e].float(), ks, vs, attn_mask=mask, scale=scale,
            enable_gqa=q.shape[0] != k.shape[0]).transpose(0, 1))
    return torch.cat(out)


def check(heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: str) -> str | None:
    """Compare the kernel with :func:`reference` on a small packed row (three segments, the
    last continuing the first as a shared prefix): output and the gradients of q, k and v.
    Records the result for :func:`proven`; returns why it cannot be used (None: it can)."""
    varlen = kernel()
    if varlen is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    gen = torch.Generator(device="cpu").manual_seed(0)
    bounds, contexts = [0, 24, 61, 90], [(0, 0), (0, 0), (0, 24)]
    q, k, v = (torch.randn(h, 90, head_dim, generator=gen).to(device, dtype).requires_grad_()
               for h in (heads, kv_heads, kv_heads))
    grad = torch.randn(90, heads, head_dim, generator=gen).to(device, dtype)
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    found = None
    for ctx in (None, contexts):
        try:
            got = attention(q, k, v, cu, 37, None, ctx and torch.tensor(ctx, dtype=torch.int32,
                                                                        device=device))
            got_grads = torch.autograd.grad(got, (q, k, v), grad)
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as e:
            found = f"its kernel refused {dtype} with {heads}/{kv_heads} heads of {head_dim} " \
                    f"({str(e).strip().splitlines()[0][:120]})"
            break
        want = reference(q, k, v, bounds, None, ctx or [(0, 0)] * 3)
        want_grads = torch.autograd.grad(want, (q, k, v), grad.float())
        if not all(close(a, b, TOLERANCE) for a, b in zip((got, *got_grads), (want, *want_grads))):
            found = (f"its output differed from SDPA's on {dtype} with {heads}/{kv_heads} heads "
                     f"of {head_dim}" + (" and a shared prefix" if ctx else ""))
            break
    PROVEN[key(q, k)] = found is None
    return found

