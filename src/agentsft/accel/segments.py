"""Attention over packed rows: each example of a row sees only itself (and, where examples
hold a shared prompt once, that prompt).

Our ``segment_sdpa`` attention, registered in transformers under :data:`ATTENTION`:

- runs causal attention once per example (the boundaries come from ``cu_seq_lens_q``); on
  this CPU that is about 2x faster than one masked SDPA over a padded batch, because a
  causal kernel skips the upper triangle and a mask cannot; while training on CPU it goes
  through our own kernel on bf16 products (``attention.py``);
- lets a segment continue a shared prefix held elsewhere in the row (``segment_context``,
  from :class:`~agentsft.data.collate.PackedCollator`);
- on a CUDA GPU, runs the whole row through PyTorch's variable-length kernel where
  ``varlen.check`` proved it on the model's head shapes (``varlen.py``), else the loop;
- decodes a few new queries over a cache on CPU through ``attention.cached_attention``;
- hands everything else to transformers' SDPA.

FlashAttention-2/3 read the same boundaries (variable-length kernels); transformers' own
``sdpa``/``eager``/``flex`` build a block-diagonal mask from the restarting position ids.
A model whose attention does not go through transformers' attention interface (some
remote code) would let examples attend to each other: :func:`packing_is_exact` checks the
model on two short examples (packed in both orders) before training, and
:func:`sharing_is_exact` checks that a prefix held once gives the same logits. Training
falls back to padded batches when a check fails. Nothing is contaminated silently.
On a CUDA GPU with neither FlashAttention nor PyTorch's varlen kernel, ``training.packing:
auto`` pads: per-example SDPA over packed rows measured slower there than padded batches
(``bench/RESULTS.md``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from agentsft.accel import varlen
from agentsft.accel.attention import cached_attention, packed_causal_attention
from agentsft.accel.compare import close
from agentsft.data.collate import MIN_SHARED, PackedCollator
from agentsft.data.tokenize import IGNORE_INDEX

ATTENTION = "agentsft_segments"
"""Name our attention function is registered under in transformers."""
CACHED_QUERIES = 32
"""Generation on CPU: up to this many new queries over a cache (one per row while
decoding) attend through :func:`cached_attention`; prompts go through SDPA's kernel."""
OWN_KERNEL = ("flash_attention_2", "flash_attention_3")
"""Implementations that handle packed rows themselves, with variable-length kernels."""


def segment_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                 value: torch.Tensor, attention_mask: torch.Tensor | None,
                 dropout: float = 0.0, scaling: float | None = None,
                 cu_seq_lens_q: torch.Tensor | None = None,
                 segment_context: torch.Tensor | None = None, **kwargs: Any
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
    if query.device.type == "cuda" and not dropout and varlen.proven(query, key):
        # One variable-length kernel call for the whole row (varlen.py), as checked.
        longest = kwargs.get("max_length_q") or int(cu_seq_lens_q.diff().max())
        return varlen.attention(query.squeeze(0), key.squeeze(0), value.squeeze(0),
                                cu_seq_lens_q, longest, scaling, segment_context).unsqueeze(0), None
    bounds = cu_seq_lens_q.tolist()
    if segment_context is not None and dropout:
        raise ValueError("attention dropout with shared prefixes: pack without sharing")
    if segment_context is not None or (query.device.type == "cpu" and not dropout
                                       and torch.is_grad_enabled()):
        # Training on CPU: our attention on bf16 matrix products (see attention.py); and
        # anywhere a segment continues a shared prefix, which SDPA per segment cannot see.
        contexts = segment_context.tolist() if segment_context is not None else None
        return packed_causal_attention(query.squeeze(0), key.squeeze(0), value.squeeze(0),
                                       bounds, scaling, contexts).unsqueeze(0), None
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


PROBE = "agentsft_probe"
"""Name of the attention function that records what a model passes to its attention."""
HARMLESS = {"dropout", "scaling", "position_ids", "use_cache", "cache_position",
            "output_attentions", "output_router_logits", "cu_seq_lens_q", "cu_seq_lens_k",
            "max_length_q", "max_length_k", "segment_context"}
"""Attention arguments ``segment_sdpa`` applies (dropout, scaling) or that do not change what
attention computes. Any other with a value (``sliding_window``, ``softcap``, ``s_aux``:
attention sinks, an argument of a newer architecture) means the model wants something our
attention does not do."""


def attention_misfit(model: Any) -> str | None:
    """Why ``segment_sdpa`` cannot stand in for this model's attention (None: it can). It
    replaces SDPA only, for causal attention that takes no argument beyond
    :data:`HARMLESS`: each layer's arguments are recorded on a three-token forward pass.
    Eager attention is never replaced (transformers picks it for what SDPA lacks, such as
    Gemma-2's soft-capping)."""
    current = getattr(model.config, "_attn_implementation", None)
    if current not in ("sdpa", "eager"):
        return f"the model runs {current} attention"
    found = attention_arguments(model)
    if found is None:
        return "its attention does not go through transformers' attention functions"
    named = ", ".join(f"{k}={v if isinstance(v, (bool, int, float)) else type(v).__name__}"
                      for k, v in found.items())
    if current == "eager":
        return ("the model runs eager attention, which agentsft never replaces"
                + (f"; it takes {named}" if named else ""))
    return f"its attention takes {named}, which agentsft's does not apply" if named else None


def attention_arguments(model: Any) -> dict[str, Any] | None:
    """The arguments beyond :data:`HARMLESS` that the model's layers pass to their attention
    function (``is_causal: False`` for a layer that is not causal), on three tokens; None
    where no layer called one (remote code with its own attention) or the model cannot
    switch to the recording function."""
    found: dict[str, Any] = {}
    calls = []

    def record(module: torch.nn.Module, query: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, None]:
        calls.append(1)
        if getattr(module, "is_causal", True) is not True:
            found.setdefault("is_causal", False)
        found.update((k, v) for k, v in kwargs.items()
                     if k not in HARMLESS and v is not None and k not in found)
        return torch.zeros_like(query).transpose(1, 2), None

    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask
    AttentionInterface.register(PROBE, record)
    AttentionMaskInterface.register(PROBE, sdpa_mask)
    current, was_training = model.config._attn_implementation, model.training
    try:
        model.set_attn_implementation(PROBE)
    except (ValueError, NotImplementedError, AttributeError):
        return None
    try:
        model.eval()
        with torch.no_grad():
            model(input_ids=torch.ones(1, 3, dtype=torch.long, device=model.device), use_cache=False)
    finally:
        model.set_attn_implementation(current)
        model.train(was_training)
    return found if calls else None


def attention_note(model: Any, fast: bool = True) -> str | None:
    """One line naming the attention the model runs where it is not ours, and why."""
    current = getattr(model.config, "_attn_implementation", None)
    if current == ATTENTION or current in OWN_KERNEL:
        return None
    why = attention_misfit(model) if fast else "fast_path is off"
    return f"attention: transformers' {current} ({why})"


def use_segment_attention(model: Any) -> str | None:
    """Switch ``model`` to ``segment_sdpa`` where it fits (:func:`attention_misfit`); returns
    the implementation to restore afterwards (None when nothing changed)."""
    current = getattr(model.config, "_attn_implementation", None)
    if current == ATTENTION or attention_misfit(model) is not None:
        return None
    register()
    model.set_attn_implementation(ATTENTION)
    return current if model.config._attn_implementation == ATTENTION else None


def packed_logits(model: Any, rows: list[list[int]], share: bool = False,
                  untrained: int = 0) -> torch.Tensor:
    """The model's logits (float32) of a packed row of ``rows``, in eval mode and without a
    KV cache, as in training (with one, transformers does not look for packing); with
    ``share``, the rows' first ``untrained`` tokens are untrained and may be held once."""
    device = next(model.parameters()).device
    collate = PackedCollator(share)
    batch = collate([{"input_ids": r, "labels": [IGNORE_INDEX] * untrained + r[untrained:]}
                     for r in rows])
    batch.pop("labels")
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        return model(**batch, use_cache=False).logits[0].float()
    finally:
        model.train(was_training)


def probe_rows(model: Any, *lengths: int) -> list[list[int]]:
    vocab = model.get_input_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


@torch.no_grad()
def packing_is_exact(model: Any, tol: float = 0.02) -> bool:
    """Whether the model keeps packed examples apart: two short examples must get the same
    logits packed first as packed second. Second, an example would see the other's tokens
    if attention leaked, and sit at shifted positions if they did not restart; first, it
    sees neither. Both rows have the same shape, so the matrix products round alike; a
    comparison with each example run alone (other shapes) also measures rounding, which in
    bf16 through 32 layers of a 4-bit 7B-shaped model (H100) exceeded the tolerance and
    turned packing off."""
    a, b = probe_rows(model, 5, 7)
    ab, ba = packed_logits(model, [a, b]), packed_logits(model, [b, a])
    n, m = len(a), len(b)
    first = torch.cat([ab[:n], ba[:m]])  # a first, b first
    second = torch.cat([ba[m:], ab[n:]])  # a second, b second
    return close(second, first, tol)


def sharing_is_exact(model: Any, tol: float = 0.02) -> bool:
    """Whether the model's attention lets examples share a prefix: two examples that begin
    with the same untrained tokens must get the same logits after them whether the prefix
    is held once or once each. A model that dropped ``segment_context`` on the way to its
    attention would have the second example's rest see nothing before it.

    Both passes run with gradients on, as training runs them, so that on CPU both go through
    our attention kernel. Without gradients the pass without shared prefixes took SDPA's
    kernel instead, and on the default model in bf16 the two kernels' rounding through 30
    layers (0.0206 of the logits' scale, against 0.0164 kernel against itself) failed the
    check: training silently stopped sharing prompts (transformers 5.25)."""
    if getattr(model.config, "attention_dropout", 0) or \
            getattr(model.config, "_attn_implementation", None) != ATTENTION:
        return False  # our attention has no dropout; others do not read segment_context
    n = MIN_SHARED  # shared: the tokens before the one that predicts the first trained one
    prefix, b, c = probe_rows(model, n + 1, 5, 7)
    a, b = prefix + b, prefix + c
    with torch.enable_grad():
        twice = packed_logits(model, [a, b]).detach()
        once = packed_logits(model, [a, b], share=True, untrained=n + 1).detach()
    if once.shape[0] != len(a) + len(b) - n:
        return False
    rest = torch.cat([twice[n:len(a)], twice[len(a) + n:]])
    return close(once[n:], rest, tol)
