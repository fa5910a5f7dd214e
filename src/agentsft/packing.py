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

Agent data repeats itself: the system prompt and tool schemas are most of each example
(about 700 of 820 tokens in examples/tools.jsonl) and are never trained. With our
attention, examples of a batch that begin with the same untrained tokens hold them once
in the row (:func:`shared_prefixes`); the rest of each example sees them, at the positions
it has alone. Same loss and gradients (test); a batch of four examples with one prompt
computes about a third of the tokens. ``training.group_by_prefix`` (on by default) also
batches such examples together when the data mixes a few prompts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from agentsft.attention import cached_attention, packed_causal_attention
from agentsft.caches import common_prefix
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
    each example, and the example boundaries (``cu_seq_lens``) for the attention.

    With ``share``, examples of the batch that begin with the same untrained tokens (the
    system prompt and tool schemas of agent data, most of each example) hold them once:
    the row is [shared prefix, rest of example 1, rest of example 2, ...], each rest at
    the positions it has in its example, and ``segment_context`` tells the attention which
    prefix each segment continues. Same loss, same gradients, fewer tokens computed. Only
    our attention (:func:`segment_sdpa`) reads ``segment_context``; train.py checks the
    model with :func:`sharing_is_exact` before it turns this on."""

    share: bool = False

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids, labels, positions, bounds, contexts = [], [], [], [0], []

        def add(tokens: list[int], targets: list[int], start: int, context: tuple[int, int]):
            ids.extend(tokens)
            # A segment's first token must not be trained as the continuation of the one
            # before it in the row: the loss shifts labels by one across the whole row.
            labels.extend([IGNORE_INDEX] + list(targets[1:]))
            positions.extend(range(start, start + len(tokens)))
            bounds.append(bounds[-1] + len(tokens))
            contexts.append(context)

        for length, members in shared_prefixes(rows) if self.share else [(0, [r]) for r in rows]:
            context = (0, 0)
            if length:
                add(members[0]["input_ids"][:length], members[0]["labels"][:length], 0, (0, 0))
                context = (bounds[-2], bounds[-1])
            for r in members:
                add(r["input_ids"][length:], r["labels"][length:], length, context)
        cu = torch.tensor(bounds, dtype=torch.int32)
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                 "position_ids": torch.tensor([positions]),
                 "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                 "max_length_q": longest, "max_length_k": longest}
        if any(a != b for a, b in contexts):
            batch["segment_context"] = torch.tensor(contexts, dtype=torch.int32)
        return batch


MIN_SHARED = 16
"""Shortest prefix worth holding once (each shared prefix is one more attention segment)."""


def shareable(row: dict[str, list[int]]) -> int:
    """How many leading tokens of an example another could share: none of them may be
    trained, nor predict a trained token (the shared copy predicts only what follows it
    in the row, and that is no example's own next token)."""
    trained = (i for i, t in enumerate(row["labels"]) if i and t != IGNORE_INDEX)
    return next(trained, len(row["labels"])) - 1


def shared_prefixes(rows: list[dict[str, list[int]]]) -> list[tuple[int, list[dict]]]:
    """Groups of a batch's examples with the length of the prefix they share (0: an
    example alone), in the order of each group's first example. Each example joins the
    group where it saves the most tokens."""
    groups: list[list] = []  # [shared length, members]
    for r in rows:
        best, saved, length, cap = None, 0, 0, shareable(r)
        for g in groups:
            n = min(g[0], cap, common_prefix(g[1][0]["input_ids"], r["input_ids"]))
            gain = len(g[1]) * n - (len(g[1]) - 1) * g[0]  # tokens saved, after - before
            if n >= MIN_SHARED and gain > saved:
                best, saved, length = g, gain, n
        if best is None:
            groups.append([cap, [r]])
        else:
            best[0] = length
            best[1].append(r)
    return [(n if len(members) > 1 else 0, members) for n, members in groups]


GROUP_KEY = 64
"""Examples whose first this-many tokens (all untrained) agree are batched together by
:class:`PrefixGroupedSampler`."""
MEGABATCH = 16
"""Batches regrouped together: a random slice of this many batches is reordered so that
examples beginning alike meet; the slices and the batches' order stay random."""


class PrefixGroupedSampler(torch.utils.data.Sampler):
    """A random order of the examples in which each batch's examples tend to begin alike,
    so that :class:`PackedCollator` holds their shared prompt once. Each epoch: a random
    permutation, cut into slices of ``MEGABATCH`` batches; in each slice the examples are
    grouped by their first ``GROUP_KEY`` untrained tokens (groups in order of first
    appearance, random within), cut into batches, and the batches shuffled. Data with one
    system prompt, or none alike, keeps a plain random order."""

    def __init__(self, rows: Any, batch_size: int):
        caps = [(r, shareable(r)) for r in rows]
        self.keys = [tuple(r["input_ids"][:min(cap, GROUP_KEY)]) if cap >= MIN_SHARED else i
                     for i, (r, cap) in enumerate(caps)]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[int]:
        seed = int(torch.empty((), dtype=torch.int64).random_())  # as RandomSampler draws
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.keys), generator=gen).tolist()
        size = self.batch_size * MEGABATCH
        for start in range(0, len(order), size):
            part = order[start:start + size]
            first: dict[Any, int] = {}
            for rank, i in enumerate(part):
                first.setdefault(self.keys[i], rank)
            part.sort(key=lambda i: first[self.keys[i]])
            batches = [part[j:j + self.batch_size] for j in range(0, len(part), self.batch_size)]
            full = len(part) // self.batch_size  # a short last batch stays last
            for b in torch.randperm(full, generator=gen).tolist() + list(range(full, len(batches))):
                yield from batches[b]


def token_counts(batch: dict[str, Any]) -> tuple[int, int]:
    """(tokens of the examples a collated batch holds, tokens the model runs on), padding
    left out of both. They differ where examples hold a shared prefix once: the examples'
    count has it once per example that continues it, as one by one would count it."""
    if "attention_mask" in batch:
        held = int(batch["attention_mask"].sum())
        return held, held
    held = batch["input_ids"].numel()
    if "segment_context" not in batch:
        return held, held
    contexts = [(a, b) for a, b in batch["segment_context"].tolist() if a != b]
    return held + sum(b - a for a, b in contexts) - sum(b - a for a, b in set(contexts)), held


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


def use_segment_attention(model: Any) -> str | None:
    """Switch ``model`` to ``segment_sdpa`` where it runs SDPA or eager attention; returns
    the implementation to restore afterwards (None when nothing changed)."""
    current = getattr(model.config, "_attn_implementation", None)
    if current not in ("sdpa", "eager"):
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


def close(got: torch.Tensor, want: torch.Tensor, tol: float) -> bool:
    """Within ``tol`` of the logits' scale: a leak or a lost context changes them by about
    that scale; rounding by far less."""
    return bool(((got - want).abs().max() / want.abs().max().clamp_min(1e-6)) < tol)


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


@torch.no_grad()
def sharing_is_exact(model: Any, tol: float = 0.02) -> bool:
    """Whether the model's attention lets examples share a prefix: two examples that begin
    with the same untrained tokens must get the same logits after them whether the prefix
    is held once or once each. A model that dropped ``segment_context`` on the way to its
    attention would have the second example's rest see nothing before it."""
    if getattr(model.config, "attention_dropout", 0) or \
            getattr(model.config, "_attn_implementation", None) != ATTENTION:
        return False  # our attention has no dropout; others do not read segment_context
    n = MIN_SHARED  # shared: the tokens before the one that predicts the first trained one
    prefix, b, c = probe_rows(model, n + 1, 5, 7)
    a, b = prefix + b, prefix + c
    twice = packed_logits(model, [a, b])
    once = packed_logits(model, [a, b], share=True, untrained=n + 1)
    if once.shape[0] != len(a) + len(b) - n:
        return False
    rest = torch.cat([twice[n:len(a)], twice[len(a) + n:]])
    return close(once[n:], rest, tol)


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
