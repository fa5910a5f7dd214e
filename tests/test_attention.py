"""Our CPU training attention gives causal SDPA's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agentsft import attention
from agentsft.attention import causal_attention


def reference(q, k, v):
    return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True,
                                          enable_gqa=True)[0]


def outputs_and_grads(fn, q, k, v, grad):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(grad)
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize("n", [1, 7, attention.CHUNK, attention.CHUNK + 1, 2 * attention.CHUNK + 45])
def test_matches_causal_sdpa_in_float32(n, keep, monkeypatch):
    """Float32, 1e-5 relative to each tensor's largest value: only the order of sums
    differs. Lengths on both sides of the chunk size; 6 query heads sharing 2 key/value
    heads; probabilities kept for the backward pass, or recomputed."""
    monkeypatch.setattr(attention, "KEEP_BYTES", 2 ** 40 if keep else 0)
    gen = torch.Generator().manual_seed(n)
    q, grad = (torch.randn(6, n, 16, generator=gen) for _ in range(2))
    k, v = (torch.randn(2, n, 16, generator=gen) for _ in range(2))
    ours = outputs_and_grads(causal_attention, q, k, v, grad)
    ref = outputs_and_grads(reference, q, k, v, grad)
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, ref):
        scale = max(b.abs().max().item(), 1.0)  # dq is 0 for one token
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale, msg=name)


def test_bf16_stays_within_bf16_rounding_of_float32():
    """bf16 inputs: within 2% of the largest value (bf16 keeps 8 bits of mantissa, and the
    flash kernel's own bf16 result differs from float32 by as much)."""
    gen = torch.Generator().manual_seed(0)
    q, grad = (torch.randn(9, 300, 64, generator=gen) for _ in range(2))
    k, v = (torch.randn(3, 300, 64, generator=gen) for _ in range(2))
    ref = outputs_and_grads(reference, q, k, v, grad)
    ours = outputs_and_grads(causal_attention, *(t.bfloat16() for t in (q, k, v, grad)))
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, ref):
        assert a.dtype == torch.bfloat16
        assert (a.float() - b).abs().max() <= 0.02 * b.abs().max(), name


def test_heads_that_do_not_share_evenly_are_refused():
    with pytest.raises(ValueError, match="5 query heads"):
        causal_attention(torch.zeros(5, 4, 8), torch.zeros(2, 4, 8), torch.zeros(2, 4, 8))
