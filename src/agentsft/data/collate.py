"""How examples become batches: padded, or padding-free (concatenated into one row).

Agent data mixes short chats with long tool prompts, so a padded batch spends a large
share of its work on padding. :class:`PackedCollator` makes a batch one row holding its
examples end to end, with position ids restarting at each example and the boundaries
(``cu_seq_lens``) for the attention, which keeps each example to itself
(``accel/segments.py``; transformers' own attentions read the restarting positions).

Agent data repeats itself: the system prompt and tool schemas are most of each example
(about 700 of 820 tokens in examples/tools.jsonl) and are never trained. Examples of a
batch that begin with the same untrained tokens can hold them once in the row
(:func:`shared_prefixes`); the rest of each example sees them, at the positions it has
alone. Same loss and gradients (test); a batch of four examples with one prompt computes
about a third of the tokens. :class:`PrefixGroupedSampler` batches such examples together
when the data mixes a few prompts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from agentsft.data.tokenize import IGNORE_INDEX, common_prefix


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


def group_key(row: dict[str, list[int]]) -> int:
    """A digest of the row's first ``GROUP_KEY`` shareable tokens; 0 where too few are
    shareable. A collision only puts two rows in one group: the collator finds what they
    really share."""
    cap = shareable(row)
    return hash(tuple(row["input_ids"][:min(cap, GROUP_KEY)])) if cap >= MIN_SHARED else 0


class PrefixGroupedSampler(torch.utils.data.Sampler):
    """A random order of the examples in which each batch's examples tend to begin alike,
    so that :class:`PackedCollator` holds their shared prompt once. Each epoch: a random
    permutation, cut into slices of ``MEGABATCH`` batches; in each slice the examples are
    grouped by their first ``GROUP_KEY`` untrained tokens (groups in order of first
    appearance, random within), cut into batches, and the batches shuffled. Data with one
    system prompt, or none alike, keeps a plain random order."""

    def __init__(self, rows: Any, batch_size: int):
        keys = rows.group_keys() if hasattr(rows, "group_keys") else [group_key(r) for r in rows]
        self.keys = [int(k) or -1 - i for i, k in enumerate(keys)]  # a row alone: its own key
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
