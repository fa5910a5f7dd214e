"""Key/value caches shared between prompts that start alike.

Stepwise evaluation asks for each step of a conversation, and each step's prompt starts
with the one before it; conversations often share a system turn with the tools. In
``examples/tools.jsonl`` the first 32 steps hold 24,452 prompt tokens of which 5,811 are
distinct prefixes, and on CPU reading the prompt is most of the work of a short answer.
:func:`prefix_plan` picks the prompts that others start with (donors); each donor is
read once, itself starting from the donor read before it where they share at least
``SHARED_PREFIX`` tokens, and every prompt's batch starts from its donor's cache.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

SHARED_PREFIX = 64
"""Prompts sharing at least this many leading tokens take them from one cache."""
BOUNDARY = 8
"""A prompt whose first tokens but at most this many are another's counts as its prefix
(the last tokens of a prompt, ``assistant\\n`` say, may merge with what follows)."""


def new_cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A DynamicCache holding ``layers`` (keys, values per layer), or empty."""
    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_padded_cache(prefixes: list[list[tuple[torch.Tensor, torch.Tensor]]],
                      starts: list[int], width: int) -> DynamicCache:
    """A batch's cache of ``width`` positions: row i's prompt starts at ``starts[i]``
    (left padding) and the cache holds its positions up to ``width``, taken from
    ``prefixes[i]`` (zeros in the padding, which the attention mask hides)."""
    def stacked(layer: int, j: int) -> torch.Tensor:  # j: 0 keys, 1 values
        first = prefixes[0][layer][j]
        out = first.new_zeros(len(prefixes), first.shape[1], width, first.shape[3])
        for i, (prefix, start) in enumerate(zip(prefixes, starts)):
            out[i, :, start:] = prefix[layer][j][0, :, :width - start]
        return out
    return new_cache([(stacked(layer, 0), stacked(layer, 1)) for layer in range(len(prefixes[0]))])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reused(previous: list[int], row: list[int]) -> int:
    """How many leading tokens of ``row`` are taken from the cache of ``previous`` when
    it is read right after it: their common start if at least ``SHARED_PREFIX`` tokens
    (never the row's last token), else none."""
    shared = min(common_prefix(previous, row), len(row) - 1)
    return shared if shared >= SHARED_PREFIX else 0


def prefix_plan(rows: list[list[int]]) -> list[tuple[int, int]]:
    """For each token row, (donor, n): the row whose cache it starts from and how many of
    its leading tokens that cache gives it (never its last token, which generation
    reads). Sorted, a row's extensions follow it: a row that is (to ``BOUNDARY`` tokens)
    the start of the next takes that one's donor, any other row is its own donor."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    plan = [(i, len(rows[i]) - 1) for i in range(len(rows))]
    for a, b in zip(reversed(order[:-1]), reversed(order[1:])):
        shared = common_prefix(rows[a], rows[b])
        if shared >= max(SHARED_PREFIX, len(rows[a]) - BOUNDARY):
            donor = plan[b][0]
            plan[a] = (donor, min(common_prefix(rows[a], rows[donor]), len(rows[a]) - 1))
    return plan


def tokens_to_read(rows: list[list[int]], plan: list[tuple[int, int]]) -> int:
    """Prompt tokens the model reads under ``plan``: each donor once (from the donor
    before it, in sorted order, where they share at least ``SHARED_PREFIX`` tokens), then
    each row's tokens past its cache."""
    donors = sorted({d for d, _ in plan}, key=lambda i: rows[i])
    total = sum(len(r) - n for r, (_, n) in zip(rows, plan))
    previous: list[int] = []
    for d in donors:
        total += len(rows[d]) - reused(previous, rows[d])
        previous = rows[d]
    return total
