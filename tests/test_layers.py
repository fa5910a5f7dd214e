"""The blocked RMSNorm and SwiGLU functions give transformers' results and gradients, and
replace only modules that compute what they compute."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import lora_model, loss_and_grads

from agentsft.accel.layers import RMSNormFunction, SiluMulFunction, fast_layers

IDS = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(0))


def test_float32_loss_and_gradients_equal_transformers(tiny_model):
    """Float32: the loss to 1e-6 and every adapter gradient to 1e-5 of its largest value
    (only the order of sums differs). The tiny model has 2 layers: 5 norms, 2 MLPs."""
    model = lora_model(tiny_model).float()
    loss_ref, grads_ref = loss_and_grads(model, IDS, autocast=False)
    with fast_layers(model, autocast=None) as (swapped, kept):
        assert swapped == {"LlamaRMSNorm": 5, "LlamaMLP": 2} and not kept
        loss, grads = loss_and_grads(model, IDS, autocast=False)
    assert not any("forward" in m.__dict__ for m in model.modules())  # all restored
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    for name, g in grads_ref.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-5 * g.abs().max().item(),
                                   msg=name)


def test_under_bf16_autocast_as_close_to_float32_as_transformers(tiny_model):
    """bf16 weights and autocast, as CPU training runs: the gradients are no further from
    float32's than transformers' own bf16 gradients (1.5x margin)."""
    model = lora_model(tiny_model)
    loss_ref, grads_ref = loss_and_grads(model, IDS)
    with fast_layers(model, autocast=torch.bfloat16) as (swapped, _):
        assert sum(swapped.values()) == 7
        loss, grads = loss_and_grads(model, IDS)
    loss_32, grads_32 = loss_and_grads(copy.deepcopy(model).float(), IDS, autocast=False)

    def error(g):
        return (sum((g[n] - v).norm() ** 2 for n, v in grads_32.items()) ** 0.5
                / sum(v.norm() ** 2 for v in grads_32.values()) ** 0.5).item()
    assert error(grads) <= 1.5 * error(grads_ref)
    assert abs(loss - loss_32) <= 1.5 * abs(loss_ref - loss_32) + 1e-3


@pytest.mark.parametrize("rows", [1, 700, 2000])
def test_functions_match_autograd_across_row_blocks(rows):
    """Row counts below, at and across the block size: inputs' gradients to 1e-5."""
    gen = torch.Generator().manual_seed(rows)
    x, w, grad = torch.randn(rows, 576, generator=gen), torch.rand(576, generator=gen) + 0.5, \
        torch.randn(rows, 576, generator=gen)
    gate, up, grad2 = (torch.randn(rows, 1536, generator=gen) for _ in range(3))

    def rms(x):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    def check(fn, ref, inputs, g):
        a = [t.clone().requires_grad_() for t in inputs]
        b = [t.clone().requires_grad_() for t in inputs]
        fn(*a).backward(g)
        ref(*b).backward(g)
        for ta, tb in zip(a, b):
            torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-5,
                                       atol=1e-5 * tb.grad.abs().max().item())
    check(lambda x: RMSNormFunction.apply(x, w, 1e-5), rms, [x], grad)
    check(SiluMulFunction.apply, lambda g, u: torch.nn.functional.silu(g) * u, [gate, up], grad2)


def test_a_norm_that_computes_something_else_keeps_its_forward():
    """Gemma's RMSNorm scales by 1 + weight: the check on a random input tells it apart."""
    class OnePlusNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.rand(8), requires_grad=False)
            self.variance_epsilon = 1e-6

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + self.weight)

    model = torch.nn.Sequential(OnePlusNorm())
    with fast_layers(model, autocast=None) as (swapped, kept):
        assert not swapped and kept == {"OnePlusNorm"}


def test_a_trained_norm_weight_still_gets_its_gradient(tiny_model):
    """Full fine-tuning trains the norms: those run transformers' forward, and learn."""
    model = lora_model(tiny_model).float()
    norm = model.base_model.model.model.norm
    norm.weight.requires_grad_(True)
    with fast_layers(model, autocast=None):
        loss_and_grads(model, IDS, autocast=False)
    assert norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0
