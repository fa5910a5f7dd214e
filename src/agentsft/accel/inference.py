"""The speed paths of generation and scoring, decided per model and device.

- :func:`prepare_for_decoding`: on CPU, decoding over a cache goes through our attention
  (``attention.cached_attention``, 3x SDPA's speed here); elsewhere the model is unchanged.
- :func:`merged_lora`: a plain LoRA adapter merged into float32 base weights on loading;
  None (PEFT merges) for any other adapter.
- :func:`caches_are_plain`: whether a prompt's cache is the start of a longer prompt's, so
  prompts that start alike may be read once (the cache helpers below).
- :func:`decodes_with_float_keys`: whether a cache may hold its keys in float32.
- :func:`trained_logits` / :func:`takes_logits_to_keep`: the output head only where needed.
"""

from __future__ import annotations

from typing import Any

import torch

from agentsft.accel.adapters import merged_lora, weights_in
from agentsft.accel.caches import (
    GrowingLayer, cache_keyword, cache_of, growing_cache, layer_tensors, left_padded_cache, new_cache, prefix_plan,
    returned_cache, reused, tokens_to_read,
)
from agentsft.accel.logits import takes_logits_to_keep, trained_logits
from agentsft.accel.segments import ATTENTION, attention_note, use_segment_attention

__all__ = ["GrowingLayer", "attention_note", "cache_keyword", "cache_of", "caches_are_plain", "decodes_with_float_keys",
           "growing_cache", "layer_tensors", "left_padded_cache", "merged_lora", "new_cache",
           "prefix_plan", "prepare_for_decoding", "returned_cache", "reused",
           "takes_logits_to_keep", "tokens_to_read", "trained_logits", "weights_in"]


def prepare_for_decoding(model: Any, device: str) -> None:
    """On CPU, decode over the cache through our attention (3x SDPA's speed here), where it
    fits the model (:func:`attention_note` says where it does not)."""
    if device == "cpu":
        use_segment_attention(model)


def decodes_with_float_keys(model: Any) -> bool:
    """Whether decoding goes through our CPU attention, which scores keys in float32
    (so a cache may hold them that way)."""
    return (model.device.type == "cpu"
            and getattr(model.config, "_attn_implementation", None) == ATTENTION)


@torch.no_grad()
def caches_are_plain(model: Any, token_id: int) -> bool:
    """Whether the model's cache keeps every position of every layer (no sliding windows,
    no other state), so a prompt's cache is the start of a longer one's. Probed with one
    token in eval mode."""
    from transformers.cache_utils import DynamicLayer
    was_training = model.training
    model.eval()
    try:
        cache = returned_cache(model(input_ids=torch.tensor([[token_id]], device=model.device),
                                     use_cache=True))
        return all(type(layer) is DynamicLayer for layer in cache.layers)
    except (AttributeError, TypeError, ValueError):  # an older cache, or none
        return False
    finally:
        model.train(was_training)
