"""Our CPU training attention gives causal SDPA's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agentsft.accel import attention
from agentsft.accel.attention import causal_attention


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


def test_a_packed_row_attends_within_each_segment():
    """Three segments in one row: each gets causal SDPA of itself alone, outputs and
    gradients to 1e-5 in float32, and nothing from its neighbours."""
    from agentsft.accel.attention import packed_causal_attention
    bounds = [0, 5, 300, 321]
    gen = torch.Generator().manual_seed(3)
    q, grad = (torch.randn(6, 321, 16, generator=gen) for _ in range(2))
    k, v = (torch.randn(2, 321, 16, generator=gen) for _ in range(2))
    ours = outputs_and_grads(lambda q, k, v: packed_causal_attention(q, k, v, bounds),
                             q, k, v, grad.transpose(0, 1))
    assert ours[0].shape == (321, 6, 16)
    for a, b in zip(bounds, bounds[1:]):
        ref = outputs_and_grads(reference, q[:, a:b], k[:, a:b], v[:, a:b], grad[:, a:b])
        got = (ours[0][a:b].transpose(0, 1), ours[1][:, a:b], ours[2][:, a:b], ours[3][:, a:b])
        for name, x, y in zip(("output", "dq", "dk", "dv"), got, ref):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * y.abs().max().item(),
                                       msg=f"{name} of segment {a}:{b}")


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
def test_segments_that_continue_a_shared_prefix_see_it_whole(keep, monkeypatch):
    """A row [prefix, suffix 1, suffix 2, other]: each suffix gets the outputs of causal
    SDPA over prefix + suffix as one sequence, and the prefix's gradients are the sums
    over both suffixes (and its own queries); float32 to 1e-5. The prefix and the second
    suffix cross the chunk size."""
    from agentsft.accel.attention import packed_causal_attention
    monkeypatch.setattr(attention, "KEEP_BYTES", 2 ** 40 if keep else 0)
    p, n1, n2, n3 = attention.CHUNK + 9, 40, attention.CHUNK + 3, 30
    bounds = [0, p, p + n1, p + n1 + n2, p + n1 + n2 + n3]
    contexts = [(0, 0), (0, p), (0, p), (0, 0)]
    gen = torch.Generator().manual_seed(5)
    q, grad = (torch.randn(6, bounds[-1], 16, generator=gen) for _ in range(2))
    k, v = (torch.randn(2, bounds[-1], 16, generator=gen) for _ in range(2))
    ours = outputs_and_grads(lambda q, k, v: packed_causal_attention(q, k, v, bounds,
                                                                     contexts=contexts),
                             q, k, v, grad.transpose(0, 1))
    ours = (ours[0].transpose(0, 1),) + ours[1:]
    # The reference: each sequence alone, with the gradient flowing in only at its own
    # queries (a suffix's sequence starts with the prefix's rows, which are not its own).
    want = [torch.zeros_like(t) for t in (q, q, k, v)]
    prefix = list(range(p))
    for rows, own in ((prefix, 0), (prefix + list(range(bounds[1], bounds[2])), p),
                      (prefix + list(range(bounds[2], bounds[3])), p),
                      (list(range(bounds[3], bounds[4])), 0)):
        rows = torch.tensor(rows)
        g = grad[:, rows].clone()
        g[:, :own] = 0
        ref = outputs_and_grads(reference, q[:, rows], k[:, rows], v[:, rows], g)
        want[0][:, rows[own:]] = ref[0][:, own:]
        want[1][:, rows[own:]] = ref[1][:, own:]
        want[2][:, rows] += ref[2]
        want[3][:, rows] += ref[3]
    for name, x, y in zip(("output", "dq", "dk", "dv"), ours, want):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * y.abs().max().item(), msg=name)


def test_bounds_that_do_not_cover_the_row_are_refused():
    from agentsft.accel.attention import packed_causal_attention
    with pytest.raises(ValueError, match="do not split a row of 10 tokens"):
        packed_causal_attention(torch.zeros(2, 10, 8), torch.zeros(2, 10, 8),
                                torch.zeros(2, 10, 8), [0, 4, 9])


@pytest.mark.parametrize("new", [1, 5])
def test_cached_attention_matches_sdpa_with_a_padding_mask(new):
    """Generation: a few new queries over a cache, rows left-padded (mask False there),
    6 query heads sharing 2 key/value heads; float32 to 1e-5."""
    from agentsft.accel.attention import cached_attention
    gen = torch.Generator().manual_seed(new)
    q = torch.randn(3, 6, new, 16, generator=gen)
    k, v = (torch.randn(3, 2, 40, 16, generator=gen) for _ in range(2))
    mask = torch.ones(3, 1, new, 40, dtype=torch.bool)
    mask[1, ..., :7] = False  # row 1 starts 7 positions in
    mask[2, ..., :30] = False
    causal = torch.ones(new, new, dtype=torch.bool).tril()
    mask[..., 40 - new:] &= causal
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    ours = cached_attention(q, k, v, mask, 16 ** -0.5)
    assert ours.shape == (3, new, 6, 16)
    torch.testing.assert_close(ours.transpose(1, 2), ref, rtol=1e-5, atol=1e-5)
