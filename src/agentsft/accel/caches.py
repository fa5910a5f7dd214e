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
from transformers.cache_utils import DynamicLayer

from agentsft.accel.logits import forward_takes
from agentsft.data.tokenize import common_prefix

SHARED_PREFIX = 64
"""Prompts sharing at least this many leading tokens take them from one cache."""
BOUNDARY = 8
"""A prompt whose first tokens but at most this many are another's counts as its prefix
(the last tokens of a prompt, ``assistant\\n`` say, may merge with what follows)."""


def cache_keyword(model: Any) -> str:
    """The argument a key/value cache is passed under: ``cache`` in the transformers that
    deprecate ``past_key_values`` (5.24 warns on every call with the old name), else
    ``past_key_values``."""
    return "cache" if forward_takes(model, "cache") else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The cache a forward pass returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def new_cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A DynamicCache holding ``layers`` (keys, values per layer), or empty."""
    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class GrowingLayer(DynamicLayer):
    """A cache layer written in place into buffers with room for more positions, where
    DynamicLayer concatenates (copies the whole cache) at every new token. Keys may be
    kept in float32, the precision :func:`~agentsft.attention.cached_attention` scores
    them in, so that it does not convert the whole cache at every step either (a decoding
    step of 16 rows over about 800 positions went from about 0.19 to 0.13 s)."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                 length: int = 0, room: int = 0, keys_dtype: torch.dtype | None = None):
        """``keys`` and ``values`` are the buffers; their first ``length`` positions hold
        the cache. Without them the layer starts empty and its first update makes buffers
        with ``room`` positions to spare, keys in ``keys_dtype`` (default: as given)."""
        super().__init__()
        self.room, self.keys_dtype = room, keys_dtype
        self.length = length
        if keys is not None and values is not None:
            self.dtype, self.device = values.dtype, values.device
            self.keys_dtype = keys.dtype
            self.buffers = (keys, values)
            self.is_initialized = True
            self.show()

    def show(self) -> None:
        self.keys = self.buffers[0][:, :, :self.length]
        self.values = self.buffers[1][:, :, :self.length]

    def refill(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        """New buffers holding ``keys`` and ``values`` with ``room`` to spare."""
        b, heads, n, d = keys.shape
        self.buffers = (keys.new_empty(b, heads, n + room, d, dtype=self.keys_dtype or keys.dtype),
                        values.new_empty(b, heads, n + room, values.shape[3]))
        self.buffers[0][:, :, :n] = keys
        self.buffers[1][:, :, :n] = values
        self.length = n
        self.is_initialized = True
        self.show()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[2]
        if not self.is_initialized:  # the first update, or after reset()
            self.dtype, self.device = value_states.dtype, value_states.device
            self.refill(key_states, value_states, self.room)
            return self.keys, self.values
        if self.length + n > self.buffers[0].shape[2]:  # out of room: twice as much
            self.refill(self.keys, self.values, self.length + n)
        self.buffers[0][:, :, self.length:self.length + n] = key_states
        self.buffers[1][:, :, self.length:self.length + n] = value_states
        self.length += n
        self.show()
        return self.keys, self.values

    def reset(self) -> None:
        super().reset()
        self.length = 0

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized:
            self.length = self.keys.shape[2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.is_initialized:
            self.refill(self.keys, self.values, 0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keeps the rows ``indices`` (rows leaving a batch), room included."""
        if self.is_initialized:
            self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
            self.show()


def growing_cache(layers: int, room: int, keys_dtype: torch.dtype | None = None) -> DynamicCache:
    """An empty cache of ``layers`` growing layers, each with ``room`` positions to spare
    past the first prompt it reads."""
    return cache_of([GrowingLayer(room=room, keys_dtype=keys_dtype) for _ in range(layers)])


def left_padded_cache(prefixes: list[list[tuple[torch.Tensor, torch.Tensor]]],
                      starts: list[int], width: int, room: int = 0,
                      keys_dtype: torch.dtype | None = None) -> DynamicCache:
    """A batch's cache of ``width`` positions: row i's prompt starts at ``starts[i]``
    (left padding) and the cache holds its positions up to ``width``, taken from
    ``prefixes[i]`` (zeros in the padding, which the attention mask hides). It has
    ``room`` for that many more positions before it must grow; ``keys_dtype``: the
    keys' dtype there (default: as in the prefixes)."""
    def stacked(layer: int, j: int) -> torch.Tensor:  # j: 0 keys, 1 values
        first = prefixes[0][layer][j]
        out = first.new_zeros(len(prefixes), first.shape[1], width + room, first.shape[3],
                              dtype=keys_dtype if j == 0 and keys_dtype else first.dtype)
        for i, (prefix, start) in enumerate(zip(prefixes, starts)):
            out[i, :, start:width] = prefix[layer][j][0, :, :width - start]
        return out
    return cache_of([GrowingLayer(stacked(layer, 0), stacked(layer, 1), width)
                     for layer in range(len(prefixes[0]))])


def cache_of(layers: list[GrowingLayer]) -> DynamicCache:
    """A DynamicCache made of these layers (transformers' generate takes it as is)."""
    cache = DynamicCache()
    cache.layers = layers
    return cache


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
