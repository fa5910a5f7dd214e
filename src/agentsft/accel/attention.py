"""Causal attention for CPU training, on plain batched matrix products.

PyTorch's CPU flash-attention kernel computes in float32 even for bf16 inputs: about
80 GFLOP/s here, where bf16 matrix products run at 190-400 GFLOP/s, and its backward
takes 2.5x its forward. Attention was 39% of a LoRA step of the default model on tool
data (4 examples of 760-950 tokens). This version:

- works through the queries in chunks, each against the keys up to its own end, so the
  masked upper triangle is hardly computed (only each chunk's diagonal block is masked);
- stacks the query heads that share a key/value head (grouped-query attention) into one
  matrix product instead of repeating keys and values;
- keeps the softmax probabilities for the backward pass (in the input dtype: half what
  eager attention keeps in float32; long sequences recompute them instead);
- in the backward pass, the softmax gradient ``p * (dp - delta)`` loses most of its bits
  when ``dp`` is rounded to bf16 before ``delta`` (nearly equal) is taken away; here
  ``delta`` joins the matrix product as two extra columns (its bf16 high and low parts)
  so the subtraction happens in the product's float32 accumulator. On a 12-step bf16 run
  of the tiny test model this took the gap to the float32 loss curve from 3.5% to 1.0%
  (the flash kernel: 1.2%). Zero columns take that product's inner size from 66 to 80:
  oneDNN ran the 66-wide one at 135-260 GFLOP/s in a profiled step, and a LoRA step of the
  default model (2,999 tokens, 8 interleaved pairs in one process) took 0.944x the time
  with 80 (median of the pairs' ratios).

Measured by ``bench/attention_speed.py`` (the default model's 9 query heads sharing 3
key/value heads, bf16, medians of 7): 950 tokens, forward 13.5 ms and backward 18.2 ms
against the flash kernel's 13.2 and 27.7 ms; 2,048 tokens, 50 and 71 ms against 48 and
109 ms. In a profiled LoRA step of the default model (4 tool examples, 3,314 tokens),
attention went from 4.1 s to about 2 s. In float32 it matches SDPA to 1e-5 (test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

CHUNK = 256
"""Query rows per chunk: 64-256 measured alike; larger chunks compute more of the mask."""
KEEP_BYTES = 64 * 2 ** 20
"""Probabilities up to this size per sequence and layer are kept for the backward pass
(a 2,600-token example of the default model); longer sequences recompute them, as the
flash kernel does (9 ms more per 950-token example and layer)."""


class CausalAttention(torch.autograd.Function):
    """Causal softmax attention within each segment of a packed row: q (heads, T, d), k
    and v (kv_heads, T, d) with heads a multiple of kv_heads, segments ``bounds`` (0, ...,
    T); returns (T, heads, d), the layout the output projection reads. One function for
    the whole row: per-example slices would each get a full-row zero gradient, summed."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                scale: float, bounds: tuple[int, ...],
                contexts: tuple[tuple[int, int], ...]) -> torch.Tensor:
        heads, _, d = q.shape
        k, v = k.contiguous(), v.contiguous()
        qs = (q * scale).view(k.shape[0], heads // k.shape[0], -1, d)
        out = torch.empty_like(qs)
        kept, keeps = [], []
        for (s, e), (cs, ce) in zip(zip(bounds, bounds[1:]), contexts):
            n, c = e - s, ce - cs
            keep = heads * n * (c + (n + CHUNK) / 2) * q.element_size() <= KEEP_BYTES
            keeps.append(keep)
            ks, vs = with_context(k, s, e, cs, ce), with_context(v, s, e, cs, ce)
            for a, b, rows in chunks(qs[:, :, s:e]):
                p = probabilities(rows, ks, c + a, c + b)
                out[:, :, s + a:s + b] = torch.bmm(p, vs[:, :c + b]).view(k.shape[0], -1, b - a, d)
                if keep:
                    kept.append(p)
        ctx.save_for_backward(qs, k, v, out, *kept)
        ctx.scale, ctx.bounds, ctx.contexts, ctx.keeps = scale, bounds, contexts, keeps
        return out.view(heads, -1, d).transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qs, k, v, out, *kept = ctx.saved_tensors
        kv, groups, _, d = qs.shape
        grad = grad.transpose(0, 1).reshape(qs.shape)
        dq = torch.empty_like(qs)
        # Keys and values collect a contribution from every later chunk: sum in float32.
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        pad = -(d + 2) % 16  # zero columns: the inner size a multiple of 16 (66 -> 80)
        v_aug = torch.cat([v, v.new_ones(kv, v.shape[1], 2), v.new_zeros(kv, v.shape[1], pad)], -1)
        kept = iter(kept)
        for (s, e), (cs, ce), keep in zip(zip(ctx.bounds, ctx.bounds[1:]), ctx.contexts, ctx.keeps):
            c = ce - cs
            ks, vs = with_context(k, s, e, cs, ce), with_context(v_aug, s, e, cs, ce)
            # A segment that also sees a shared context sums its key/value gradients apart,
            # then hands the context's part to the context's own rows.
            dks = dk.new_zeros(kv, c + e - s, d) if c else dk[:, s:e]
            dvs = dv.new_zeros(kv, c + e - s, d) if c else dv[:, s:e]
            for a, b, rows in chunks(qs[:, :, s:e]):
                p = next(kept) if keep else probabilities(rows, ks, c + a, c + b)
                g = grad[:, :, s + a:s + b].reshape(rows.shape)
                dvs[:, :c + b] += torch.bmm(p.transpose(1, 2), g)
                o = out[:, :, s + a:s + b].reshape(rows.shape)
                delta = (g.float() * o.float()).sum(-1, keepdim=True)
                hi = delta.to(g.dtype)
                g_aug = torch.cat([g, -hi, -(delta - hi.float()).to(g.dtype),
                                   g.new_zeros(*g.shape[:-1], pad)], -1)
                dscores = p * torch.bmm(g_aug, vs[:, :c + b].transpose(1, 2))
                dq[:, :, s + a:s + b] = torch.bmm(dscores, ks[:, :c + b]).view(kv, groups, b - a, d)
                dks[:, :c + b] += torch.bmm(dscores.transpose(1, 2), rows)
            if c:
                for full, part in ((dk, dks), (dv, dvs)):
                    full[:, cs:ce] += part[:, :c]
                    full[:, s:e] += part[:, c:]
        return ((dq * ctx.scale).view(kv * groups, -1, d), dk.to(k.dtype), dv.to(v.dtype),
                None, None, None)


def with_context(x: torch.Tensor, s: int, e: int, cs: int, ce: int) -> torch.Tensor:
    """The keys (or values) segment s..e attends to: its own, after those of its shared
    context cs..ce when it has one."""
    return x[:, s:e] if cs == ce else torch.cat([x[:, cs:ce], x[:, s:e]], 1)


def chunks(qs: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, end, rows) per chunk of queries; rows stacks the chunk's query heads of each
    key/value head: (kv_heads, groups * (end - start), d)."""
    kv, groups, n, d = qs.shape
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        yield a, b, qs[:, :, a:b].reshape(kv, groups * (b - a), d)


def probabilities(rows: torch.Tensor, k: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Softmax attention of the queries ``rows`` (positions a..b) over the keys up to b."""
    kv, stacked, _ = rows.shape
    scores = torch.bmm(rows, k[:, :b].transpose(1, 2)).view(kv, -1, b - a, b)
    above = torch.ones(b - a, b - a, dtype=torch.bool, device=rows.device).triu(1)
    scores[..., a:].masked_fill_(above, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, -1).view(kv, stacked, b)


def packed_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            bounds: list[int], scale: float | None = None,
                            contexts: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """Causal attention within each segment ``bounds[i]:bounds[i + 1]`` of a row: q
    (heads, T, d), k and v (kv_heads, T, d); returns (T, heads, d). ``contexts[i]``, a
    range (start, end) of the row or (0, 0), is a shared prefix segment i continues: its
    queries see all of those keys, as if they stood just before its own. Under autocast it
    runs in the autocast dtype, as SDPA would."""
    if q.shape[0] % k.shape[0]:
        raise ValueError(f"{q.shape[0]} query heads do not share {k.shape[0]} key/value heads")
    if bounds[0] != 0 or bounds[-1] != q.shape[1] or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"segment bounds {bounds} do not split a row of {q.shape[1]} tokens")
    contexts = [(0, 0)] * (len(bounds) - 1) if contexts is None else [tuple(c) for c in contexts]
    if len(contexts) != len(bounds) - 1 or any(not 0 <= a <= b <= q.shape[1] for a, b in contexts):
        raise ValueError(f"contexts {contexts} are not one range of the row per segment {bounds}")
    device = q.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    elif not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"query, key and value differ in dtype: {q.dtype}, {k.dtype}, {v.dtype}")
    with torch.autocast(device, enabled=False):  # one dtype throughout
        return CausalAttention.apply(q, k, v, q.shape[-1] ** -0.5 if scale is None else scale,
                                     tuple(bounds), tuple(contexts))


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     scale: float | None = None) -> torch.Tensor:
    """Causal attention of one sequence: q (heads, L, d), k and v (kv_heads, L, d);
    returns (heads, L, d)."""
    return packed_causal_attention(q, k, v, [0, q.shape[1]], scale).transpose(0, 1)


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of a few new queries over a key/value cache, for generation on CPU:
    q (B, heads, n, d), k and v (B, kv_heads, L, d), ``mask`` boolean (B, 1, n, L) with
    True where a query may look (None: everywhere); returns (B, n, heads, d). The query
    heads of each key/value head are stacked into one product, as in training; PyTorch's
    CPU SDPA kernel took 10 ms per layer for one new token of 16 rows with 800 cached
    positions."""
    b, heads, n, d = q.shape
    kv, length = k.shape[1], k.shape[2]
    groups = heads // kv
    rows = q.reshape(b * kv, groups * n, d).float()
    # Scores in float32 (bf16 scores of 20 are off by up to 0.06, which moves the
    # softmax by 6%); the probabilities then meet the values in bf16, as eager attention's do.
    scores = torch.bmm(rows, k.reshape(b * kv, length, d).float().transpose(1, 2)).mul_(scale)
    if mask is not None:  # the smallest float, not -inf: a row with nothing to see stays finite
        scores.view(b, kv, groups, n, length).masked_fill_(
            ~mask.unsqueeze(2), torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, -1).to(v.dtype)
    out = torch.bmm(probs, v.reshape(b * kv, length, d)).view(b, heads, n, d)
    return out.transpose(1, 2)
