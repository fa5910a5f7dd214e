"""Tiny random checkpoints of the architectures users bring, each with its own features made
to bite: a sliding window shorter than the examples, soft-caps small enough to saturate,
multipliers far from one, layers without RoPE. 2 layers, width 64, the real tokenizer."""

from __future__ import annotations

from pathlib import Path

WINDOW = 8
"""Sliding windows: tool examples run to hundreds of tokens."""

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
              initializer_range=0.2,  # 0.02 caps logits near +-1.3 at width 64
              tie_word_embeddings=True)

ROPE = {"rope_type": "default", "rope_theta": 10000.0}
"""GPT-OSS defaults to YaRN scaled for 128k positions, which warns at 2048."""

# name: (config class, its features, the same with the features off)
ARCHITECTURES: dict[str, tuple[str, dict, dict]] = {
    "llama": ("LlamaConfig", {}, {}),
    "qwen2-sliding": ("Qwen2Config",
                      dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
                      dict(use_sliding_window=False)),
    "qwen3": ("Qwen3Config", {}, {}),
    "mistral-sliding": ("MistralConfig", dict(sliding_window=WINDOW), dict(sliding_window=None)),
    "gemma": ("GemmaConfig", {}, {}),
    "gemma2": ("Gemma2Config",
               dict(attn_logit_softcapping=1.0, final_logit_softcapping=3.0,
                    sliding_window=WINDOW, query_pre_attn_scalar=4),
               dict(attn_logit_softcapping=None, final_logit_softcapping=3.0,
                    sliding_window=WINDOW, query_pre_attn_scalar=4)),
    "gemma3-text": ("Gemma3TextConfig",
                    dict(layer_types=["sliding_attention", "full_attention"],
                         sliding_window=WINDOW, query_pre_attn_scalar=4),
                    dict(layer_types=["full_attention", "full_attention"],
                         query_pre_attn_scalar=4)),
    "granite": ("GraniteConfig",
                dict(attention_multiplier=0.6, residual_multiplier=0.5, logits_scaling=2.0,
                     embedding_multiplier=3.0),
                dict(attention_multiplier=0.25)),
    "phi3": ("Phi3Config", {}, {}),
    "smollm3": ("SmolLM3Config", dict(no_rope_layers=[1, 0]), dict(no_rope_layers=[1, 1])),
    "gpt-oss": ("GptOssConfig",
                dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=WINDOW,
                     layer_types=["sliding_attention", "full_attention"], rope_parameters=ROPE),
                dict(num_local_experts=4, num_experts_per_tok=2, rope_parameters=ROPE,
                     layer_types=["full_attention", "full_attention"])),
}
FEATURED = [name for name, (_, on, off) in ARCHITECTURES.items() if on != off]
"""Architectures whose features the tests turn off, to show the comparison notices."""


def config_of(name: str, tokenizer, features: bool = True):
    import transformers
    cls, on, off = ARCHITECTURES[name]
    return getattr(transformers, cls)(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **COMMON, **(on if features else off))


def build(name: str, folder: Path, tokenizer) -> Path:
    """A random checkpoint of architecture ``name`` saved in ``folder`` with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_of(name, tokenizer), dtype=torch.float32)
    with torch.no_grad():  # norms start at one (Gemma's at zero): make their scales count
        for n, p in model.named_parameters():
            if "norm" in n:
                torch.nn.init.uniform_(p, 0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Folders(dict):
    """Checkpoints by architecture name, each built on first use."""

    def __init__(self, root: Path, tokenizer):
        super().__init__()
        self.root, self.tokenizer = root, tokenizer

    def __missing__(self, name: str) -> Path:
        self[name] = build(name, self.root / name, self.tokenizer)
        return self[name]
