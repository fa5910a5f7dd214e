"""LoRA layers with the adapter summed inside the matrix product (training under autocast)
give PEFT's loss and gradients."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from conftest import lora_model, loss_and_grads
from peft.tuners.lora import Linear

from agentsft.accel import adapters
from agentsft.accel.adapters import fast_adapters, fused_forward


IDS = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(0))


def test_fused_forward_is_peft_arithmetic(tiny_model, monkeypatch):
    """Float32 (the fused path told autocast is on): PEFT's loss and adapter gradients to
    1e-5. The adapters move the loss by far more than that, so the check is not empty."""
    model = lora_model(tiny_model).float()
    loss_peft, grads_peft = loss_and_grads(model, IDS, autocast=False)
    with torch.no_grad(), model.disable_adapter():
        assert abs(model(input_ids=IDS, labels=IDS).loss.item() - loss_peft) > 0.1
    monkeypatch.setattr(adapters, "autocasting", lambda x: True)
    monkeypatch.setattr(adapters, "frozen_in", lambda *a: contextlib.nullcontext())
    layers = [m for m in model.modules() if type(m) is Linear]
    with fast_adapters(model, autocast=torch.bfloat16):
        assert all(m.forward.__func__ is fused_forward for m in layers)
        loss_fused, grads_fused = loss_and_grads(model, IDS, autocast=False)
    assert all("forward" not in m.__dict__ for m in layers)  # PEFT's own forward is back
    assert loss_fused == pytest.approx(loss_peft, rel=1e-5)
    assert len(grads_fused) == len(grads_peft) == 2 * len(layers)
    for name, g in grads_peft.items():
        torch.testing.assert_close(grads_fused[name], g, rtol=1e-5,
                                   atol=1e-5 * g.abs().max().item(), msg=name)


def test_under_bf16_autocast_as_close_to_float32_as_peft(tiny_model):
    """bf16 rounds both paths: the fused gradients are no further from the float32 ones
    than PEFT's bf16 gradients are (1.5x margin; both about 5% on this tiny model)."""
    model = lora_model(tiny_model)
    loss_peft, grads_peft = loss_and_grads(model, IDS)
    with fast_adapters(model, autocast=torch.bfloat16):
        loss_fused, grads_fused = loss_and_grads(model, IDS)
    loss_32, grads_32 = loss_and_grads(copy.deepcopy(model).float(), IDS, autocast=False)

    def error(grads):
        return (sum((grads[n] - g).norm() ** 2 for n, g in grads_32.items()) ** 0.5
                / sum(g.norm() ** 2 for g in grads_32.values()) ** 0.5).item()
    assert grads_fused[next(iter(grads_fused))].dtype == torch.float32  # float32 masters
    assert error(grads_fused) <= 1.5 * error(grads_peft)
    assert abs(loss_fused - loss_32) <= 1.5 * abs(loss_peft - loss_32) + 1e-3


def test_under_zero3_peft_runs_unchanged(tiny_model, monkeypatch):
    model = lora_model(tiny_model).float()
    ids = torch.randint(0, 1000, (1, 20), generator=torch.Generator().manual_seed(1))
    plain = model(input_ids=ids).logits
    monkeypatch.setattr(adapters, "zero3", lambda: True)
    with fast_adapters(model, autocast=torch.bfloat16):
        assert all("forward" not in m.__dict__ for m in model.modules() if type(m) is Linear)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert torch.equal(model(input_ids=ids).logits, plain)


def test_in_float32_without_autocast_fused_equals_peft(tiny_model):
    """Float32 training (CPUs without fast bf16): one dtype throughout, so the fused product
    needs no cast and gives PEFT's loss and gradients up to the order of float sums."""
    model = lora_model(tiny_model).float()
    loss_peft, grads_peft = loss_and_grads(model, IDS, autocast=False)
    with fast_adapters(model, autocast=None) as fused:
        assert fused == sum(type(m) is Linear for m in model.modules()) > 0
        assert all("forward" in m.__dict__ for m in model.modules() if type(m) is Linear)
        loss_fused, grads_fused = loss_and_grads(model, IDS, autocast=False)
    assert all("forward" not in m.__dict__ for m in model.modules() if type(m) is Linear)
    assert loss_fused == pytest.approx(loss_peft, rel=1e-6)
    for name, g in grads_peft.items():
        assert torch.allclose(grads_fused[name], g, rtol=1e-4, atol=1e-6), name


def test_frozen_weights_held_in_bf16_give_autocasts_values_and_come_back(tiny_model):
    """Inside the context the frozen linear weights are bf16 (autocast made the same copy
    at every forward pass): the loss and adapter gradients are exactly those of autocast
    casting float32 weights. On exit the same parameters hold their float32 values again."""
    model = lora_model(tiny_model).float()
    layers = [m for m in model.modules() if type(m) is Linear]
    before = {id(m.base_layer.weight): m.base_layer.weight.detach().clone() for m in layers}
    loss_cast, grads_cast = loss_and_grads(model, IDS)
    with adapters.frozen_in(layers, torch.bfloat16):
        assert all(m.base_layer.weight.dtype == torch.bfloat16 for m in layers)
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
        loss_held, grads_held = loss_and_grads(model, IDS)
    assert loss_held == loss_cast
    for name, g in grads_cast.items():
        assert torch.equal(grads_held[name], g), name
    for m in layers:
        w = m.base_layer.weight
        assert w.dtype == torch.float32 and torch.equal(w, before[id(w)])


def test_sibling_projections_share_one_a_product_and_only_their_own_input(tiny_model,
                                                                        monkeypatch):
    """q/k/v and gate/up read one input: their LoRA A products come from one matrix product
    (their own A layers are not called) and the loss and gradients are PEFT's (float32,
    1e-5). Given different inputs, each sibling computes its own product."""
    model = lora_model(tiny_model).float()
    loss_peft, grads_peft = loss_and_grads(model, IDS, autocast=False)
    monkeypatch.setattr(adapters, "autocasting", lambda x: True)
    monkeypatch.setattr(adapters, "frozen_in", lambda *a: contextlib.nullcontext())
    called = []
    for name, module in model.named_modules():
        if name.endswith("lora_A.default"):
            module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    with fast_adapters(model, autocast=torch.bfloat16):
        loss, grads = loss_and_grads(model, IDS, autocast=False)
        attn = model.base_model.model.model.layers[0].self_attn
        x, y = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
        q, k = attn.q_proj(x), attn.k_proj(y)  # different inputs: no sharing
    assert sorted({n.split(".")[-3] for n in called}) == ["down_proj", "o_proj"]
    assert loss == pytest.approx(loss_peft, rel=1e-5)
    for name, g in grads_peft.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-5,
                                   atol=1e-5 * g.abs().max().item(), msg=name)
    with torch.no_grad():  # PEFT's own forward again
        torch.testing.assert_close(q, attn.q_proj(x))
        torch.testing.assert_close(k, attn.k_proj(y))


def test_siblings_with_dropout_on_their_input_each_compute_their_own(tiny_model, monkeypatch):
    """Dropout draws a different mask per layer: no shared product then."""
    model = lora_model(tiny_model).float()
    attn = model.base_model.model.model.layers[0].self_attn
    attn.v_proj.lora_dropout["default"] = torch.nn.Dropout(0.1)
    monkeypatch.setattr(adapters, "autocasting", lambda x: True)
    monkeypatch.setattr(adapters, "frozen_in", lambda *a: contextlib.nullcontext())
    called = []
    for name in ("q_proj", "k_proj", "v_proj"):
        getattr(attn, name).lora_A["default"].register_forward_hook(
            lambda m, i, o, name=name: called.append(name))
    with fast_adapters(model, autocast=torch.bfloat16):
        loss_and_grads(model, IDS, autocast=False)
    assert called == ["q_proj", "k_proj", "v_proj"]


def saved_adapter(tiny_model, folder, **lora) -> None:
    """A LoRA on the tiny model with random B (PEFT starts B at zero), saved to ``folder``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(**{"r": 4, "lora_alpha": 8, "task_type": "CAUSAL_LM",
                                               "target_modules": "all-linear", **lora}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(folder)


def merged_by_peft(tiny_model, folder, dtype):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(folder)).merge_and_unload().to(dtype)


@pytest.mark.parametrize("lora", [{}, {"use_rslora": True}], ids=["lora", "rslora"])
def test_a_plain_lora_merges_to_peft_weights_bit_for_bit(tiny_model, tmp_path, lora):
    from transformers import AutoModelForCausalLM
    saved_adapter(tiny_model, tmp_path, **lora)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    ours = adapters.merged_lora(base, tmp_path, torch.bfloat16)
    theirs = merged_by_peft(tiny_model, tmp_path, torch.bfloat16)
    mine, peft = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == peft.keys() and all(v.dtype == torch.bfloat16 for v in mine.values())
    changed = [k for k in mine if not torch.equal(mine[k].float(), before[k].to(torch.bfloat16).float())]
    assert len(changed) == 14  # the 7 projections of 2 layers, and nothing else
    for k in mine:
        assert torch.equal(mine[k], peft[k]), k
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # still tied


@pytest.mark.parametrize("lora", [{"use_dora": True}, {"target_modules": ["lm_head", "q_proj"]},
                                  {"modules_to_save": ["lm_head"]}, {"init_lora_weights": "pissa"},
                                  {"init_lora_weights": "olora"}],
                         ids=["dora", "tied-head", "saved-module", "pissa", "olora"])
def test_any_other_adapter_is_left_to_peft(tiny_model, tmp_path, lora):
    """DoRA, a LoRA on a weight tied to another module, a module saved whole, adapters whose
    initialisation moved part of the base weights into them (PEFT redoes that on loading):
    merged_lora declines and ``with_adapter`` gives PEFT's merge."""
    from transformers import AutoModelForCausalLM

    from agentsft.inference import with_adapter
    saved_adapter(tiny_model, tmp_path, **lora)
    fresh = lambda: AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)  # noqa: E731
    assert adapters.merged_lora(fresh(), tmp_path, torch.bfloat16) is None
    merged = with_adapter(fresh(), tmp_path, merge=True, dtype=torch.bfloat16).state_dict()
    peft = merged_by_peft(tiny_model, tmp_path, merged["lm_head.weight"].dtype).state_dict()
    assert merged.keys() == peft.keys()
    assert all(torch.equal(merged[k], peft[k]) for k in merged)


def test_a_lora_of_another_shape_does_not_fit(tiny_model, tmp_path, tokenizer):
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM

    from agentsft.errors import AgentsftError
    from agentsft.inference import load_generator
    saved_adapter(tiny_model, tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    wider = AutoConfig.from_pretrained(tiny_model)
    wider.update({"hidden_size": 96, "head_dim": 24})
    LlamaForCausalLM(wider).save_pretrained(tmp_path / "wider")
    with pytest.raises(AgentsftError, match=r"does not fit .*its LoRA for 'model\.layers\.0\."
                                            r"[a-z_.]+' finds no linear layer of that shape"):
        load_generator(model=str(tmp_path / "wider"), adapter=tmp_path / "adapter", device="cpu")
    config = tmp_path / "adapter" / "adapter_config.json"  # weights of rank 4 called rank 8
    config.write_text(config.read_text().replace('"r": 4', '"r": 8'))
    with pytest.raises(ValueError, match="finds no linear layer of that shape"):
        adapters.merged_lora(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter",
                             torch.bfloat16)
