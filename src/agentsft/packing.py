"""How examples become batches: padded, or padding-free (concatenated into one row).

Agent data mixes short chats with long tool prompts, so a padded batch spends a large
share of its work on padding. Here a batch is one row holding its examples end to end,
with position ids restarting at each example and attention kept inside each example:

- our ``segment_sdpa`` attention runs causal SDPA once per example (the boundaries come
  from ``cu_seq_lens_q``); on this CPU that is about 2x faster than one masked SDPA over a
  padded batch, because a causal kernel skips the upper triangle and a mask cannot;
- FlashAttention-2/3 read the same boundaries (variable-length kernels);
- transformers' own ``sdpa``/``eager``/``flex`` build a block-diagonal mask from the
  restarting position ids.

A model whose attention does not go through transformers' attention interface (some
remote code) would let examples attend to each other; :func:`packing_is_exact` checks
the model on two short examples (packed in both orders) before training and the trainer
falls back to padded batches when the check fails. Nothing is contaminated silently.
On a CUDA GPU without FlashAttention, ``training.packing: auto`` pads: per-example SDPA
over packed rows measured slower there than padded batches (``bench/RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from agentsft.attention import cached_attention, packed_causal_attention
from agentsft.data.tokenize import IGNORE_INDEX

ATTENTION = "agentsft_segments"
"""Name our attention function is registered under in transformers."""
CACHED_QUERIES = 32
"""Generation on CPU: up to this many new queries over a cache (one per row while
decoding) attend through :func:`cached_attention`; prompts go through SDPA's kernel."""
OWN_KERNEL = ("flash_attention_2", "flash_attention_3")
"""Implementations that handle packed rows themselves, with variable-length kernels."""


@dataclass
class PadCollator:
    """Right-pads a batch to its longest row; padding is masked from attention and loss."""

    pad_id: int
    multiple_of: int = 1

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        longest = -(-longest // self.multiple_of) * self.multiple_of
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackedCollator:
    """Concatenates a batch's examples into one row: no padding, positions restarting at
    each example, and the example boundaries (``cu_seq_lens``) for the attention."""

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids, labels, positions, bounds = [], [], [], [0]
        for r in rows:
            n = len(r["input_ids"])
            ids += r["input_ids"]
            # An example's first token must not be trained as the continuation of the one
            # before it: the loss shifts labels by one across the whole row.
            labels += [IGNORE_INDEX] + list(r["labels"][1:])
            positions += range(n)
            bounds.append(bounds[-1] + n)
        cu = torch.tensor(bounds, dtype=torch.int32)
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions]),
                "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": longest, "max_length_k": longest}


def segment_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                 value: torch.Tensor, attention_mask: torch.Tensor | None,
                 dropout: float = 0.0, scaling: float | None = None,
                 cu_seq_lens_q: torch.Tensor | None = None, **kwargs: Any
                 ) -> tuple[torch.Tensor, None]:
    """Causal attention within each example of a packed row; transformers' SDPA otherwise
    (padded batches, generation with a cache)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    if (query.device.type == "cpu" and not torch.is_grad_enabled() and not dropout
            and query.shape[2] <= CACHED_QUERIES and query.shape[2] < key.shape[2]
            and query.shape[1] % key.shape[1] == 0
            and (query.shape[2] == 1 if attention_mask is None else
                 attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1)):
        mask = attention_mask[..., :key.shape[2]] if attention_mask is not None else None
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        return cached_attention(query, key, value, mask, scale), None
    if cu_seq_lens_q is None or query.shape[2] != key.shape[2]:
        if key.dtype != query.dtype:  # a cache holding keys in float32 for the path above
            key = key.to(query.dtype)
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one row, got {query.shape[0]}")
    bounds = cu_seq_lens_q.tolist()
    if query.device.type == "cpu" and not dropout and torch.is_grad_enabled():
        # Training on CPU: our attention on bf16 matrix products (see attention.py).
        return packed_causal_attention(query.squeeze(0), key.squeeze(0), value.squeeze(0),
                                       bounds, scaling).unsqueeze(0), None
    gqa = query.shape[1] != key.shape[1]
    out = [F.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True, scale=scaling,
        dropout_p=dropout, enable_gqa=gqa) for a, b in zip(bounds, bounds[1:])]
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``segment_sdpa`` available to every transformers model (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    AttentionInterface.register(ATTENTION, segment_sdpa)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # padded batches keep their masks


def use_segment_attention(model: Any) -> str | None:
    """Switch ``model`` to ``segment_sdpa`` where it runs SDPA or eager attention; returns
    the implementation to restore afterwards (None when nothing changed)."""
    current = getattr(model.config, "_attn_implementation", None)
    if current not in ("sdpa", "eager"):
        return None
    register()
    model.set_attn_implementation(ATTENTION)
    return current if model.config._attn_implementation == ATTENTION else None


@torch.no_grad()
def packing_is_exact(model: Any, tol: float = 0.02) -> bool:
    """Whether the model keeps packed examples apart: two short examples must get the same
    logits packed first as packed second. Second, an example would see the other's tokens
    if attention leaked, and sit at shifted positions if they did not restart; first, it
    sees neither. Both rows have the same shape, so the matrix products round alike; a
    comparison with each example run alone (other shapes) also measures rounding, which in
    bf16 through 32 layers of a 4-bit 7B-shaped model (H100) exceeded the tolerance and
    turned packing off. ``tol`` is relative to the logits' scale; a leak changes them by
    about that scale."""
    vocab = model.get_input_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, vocab, (n,), generator=gen).tolist() for n in (5, 7))
    device = next(model.parameters()).device

    def packed_logits(rows: list[list[int]]) -> torch.Tensor:
        batch = PackedCollator()([{"input_ids": r, "labels": r} for r in rows])
        batch.pop("labels")
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        # No KV cache, as in training: with one, transformers does not look for packing.
        return model(**batch, use_cache=False).logits[0].float()

    was_training = model.training
    model.eval()
    try:
        ab, ba = packed_logits([a, b]), packed_logits([b, a])
    finally:
        model.train(was_training)
    n, m = len(a), len(b)
    first = torch.cat([ab[:n], ba[:m]])  # a first, b first
    second = torch.cat([ba[m:], ab[n:]])  # a second, b second
    scale = first.abs().max().clamp_min(1e-6)
    return bool(((second - first).abs().max() / scale) < tol)


# ---------------------------------------------------------------------------
# What the loss needs from a batch: the logits at the positions that predict a trained token.


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward can apply its output head to chosen positions only."""
    import inspect
    for _ in range(3):  # accelerate / DDP and PEFT wrappers
        model = getattr(model, "module", model)
        model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def trained_logits(model: Any, batch: dict[str, Any], labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits (n, vocab) at the n positions whose next token is trained, those n target
    tokens, and the (batch, seq) mask of the positions. In agent data most tokens are
    prompt (about 9% are trained in examples/tools.jsonl), and the output head with a
    vocabulary-wide softmax at every position would be a large share of the work; where
    the model cannot skip positions, its full logits are sliced (same values)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position p predicts token p + 1
    targets = labels[:, 1:][keep[:, :-1]]
    if takes_logits_to_keep(model):
        logits = model(**batch, logits_to_keep=keep).logits
    else:
        logits = model(**batch).logits[keep]
    return logits.reshape(-1, logits.shape[-1]), targets, keep
