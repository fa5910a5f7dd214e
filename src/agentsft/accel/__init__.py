"""Speed paths that replace a piece of transformers or PEFT, all optional.

Each path declares what it supports and is used only where a check shows it computes what
the model itself computes; anywhere else it steps aside with one line saying so. The rest
of agentsft reaches them through two entry points only (an import-linter contract holds
this), each deciding per model and device what applies:

    training.py    packed rows and shared prompts (checked on the model), fused LoRA and
                   layers under autocast, the output head only where the loss needs it,
                   the fused loss on a GPU
    inference.py   our attention for decoding on CPU, LoRA merged on loading, key/value
                   caches shared between prompts that start alike, written in place

The pieces behind them:

    attention.py   causal attention over packed rows on bf16 products; decoding over a cache
    segments.py    that attention registered in transformers, and the checks that packing
                   and shared prefixes leave the model's function unchanged
    layers.py      RMSNorm and SwiGLU as autograd functions that keep only their inputs
    adapters.py    PEFT LoRA layers with the adapter summed inside the frozen product;
                   a plain LoRA merged into the base weights in float32
    caches.py      key/value caches: shared prefixes, left padding, in-place growth
    logits.py      the output head at the positions whose next token is trained; on a
                   CUDA GPU, Liger's fused linear cross-entropy in its place where it fits
    varlen.py      packed rows on a CUDA GPU through PyTorch's variable-length kernel
    compare.py     how a check compares a fast result with the one it replaces
"""
