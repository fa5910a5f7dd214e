"""Padding-free batches: a packed row gives the loss and gradients of its examples run
one by one, and a model that would mix packed examples is caught before training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import chat_conversation, tool_conversation
from transformers import AttentionInterface, AutoModelForCausalLM

from agentsft.data.templates import get_template
from agentsft.data.tokenize import IGNORE_INDEX, encode
from agentsft.accel.segments import ATTENTION, packing_is_exact, use_segment_attention
from agentsft.data.collate import PackedCollator, PadCollator
from agentsft.accel.training import start_packing


@pytest.fixture()
def model(tiny_model):
    m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    m.config.use_cache = False  # as in training
    return m


@pytest.fixture()
def rows(tokenizer) -> list[dict]:
    template = get_template("hermes", tokenizer)
    convs = [tool_conversation(), chat_conversation(), tool_conversation()]
    convs[2].messages = convs[2].messages[:3]  # a third length: the calls only
    out = []
    for conv in convs:
        ex = encode(template.render(conv), tokenizer)
        out.append({"input_ids": ex.input_ids, "labels": ex.labels})
    assert len({len(r["input_ids"]) for r in out}) == 3
    return out


def summed_loss(model, batch: dict) -> tuple[torch.Tensor, int]:
    labels = batch.pop("labels")
    logits = model(**batch).logits[:, :-1]
    targets = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((targets != IGNORE_INDEX).sum())


def loss_and_grads(model, batches: list[dict]) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    parts = [summed_loss(model, b) for b in batches]
    loss = sum(p[0] for p in parts) / sum(p[1] for p in parts)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_packed_row_equals_examples_one_by_one(model, rows):
    """Tolerance: float32, 1e-5 relative on the loss and every gradient (differences come
    only from the order of float sums in kernels of different shapes)."""
    alone = [PadCollator(0)([r]) for r in rows]
    loss_1, grads_1 = loss_and_grads(model, alone)
    assert use_segment_attention(model) == "sdpa"
    packed = PackedCollator()(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert packed["position_ids"][0].tolist() == [p for r in rows for p in range(len(r["input_ids"]))]
    loss_p, grads_p = loss_and_grads(model, [packed])
    assert loss_p == pytest.approx(loss_1, rel=1e-5)
    for g1, gp in zip(grads_1, grads_p):
        torch.testing.assert_close(gp, g1, rtol=1e-5, atol=1e-5 * g1.abs().max().item())


def test_packed_row_equals_padded_batch_with_transformers_own_sdpa(model, rows):
    """Without our attention, transformers' SDPA builds a block-diagonal mask from the
    restarting positions: slower, but the same numbers."""
    padded = PadCollator(0)(rows)
    loss_pad, grads_pad = loss_and_grads(model, [padded])
    packed = PackedCollator()(rows)
    loss_p, grads_p = loss_and_grads(model, [packed])
    assert model.config._attn_implementation == "sdpa"
    assert loss_p == pytest.approx(loss_pad, rel=1e-5)
    for g1, gp in zip(grads_pad, grads_p):
        torch.testing.assert_close(gp, g1, rtol=1e-5, atol=1e-5 * g1.abs().max().item())


def test_first_token_of_each_example_is_not_a_target(rows):
    packed = PackedCollator()(rows)
    starts = packed["cu_seq_lens_q"][:-1].tolist()
    assert all(packed["labels"][0, s].item() == IGNORE_INDEX for s in starts)
    trained = sum(sum(1 for x in r["labels"][1:] if x != IGNORE_INDEX) for r in rows)
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == trained


def leaky_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """Causal over the whole row: packed examples see each other (what some remote-code
    models would do with a packed row)."""
    key = key.repeat_interleave(query.shape[1] // key.shape[1], 1)
    value = value.repeat_interleave(query.shape[1] // value.shape[1], 1)
    out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def test_a_model_that_mixes_packed_examples_trains_padded(model, capsys):
    assert packing_is_exact(model)
    AttentionInterface.register("leaky_for_test", leaky_attention)
    model.set_attn_implementation("leaky_for_test")
    assert not packing_is_exact(model)
    assert start_packing(model, True) == (False, None)
    assert "padded batches instead" in capsys.readouterr().err + capsys.readouterr().out


def rounds_by_row_length(module, query, key, value, attention_mask, scaling=None, **kw):
    """Correct attention within each example whose output rounds differently with the
    row's length, as GPU products of other shapes do (seen in bf16 on a 4-bit 7B shape)."""
    from agentsft.accel.segments import segment_sdpa
    out, _ = segment_sdpa(module, query, key, value, attention_mask, scaling=scaling, **kw)
    return out * (1 + 0.01 * query.shape[2]), None


def test_rounding_that_depends_on_the_shape_keeps_packing_on(model):
    AttentionInterface.register("rounds_for_test", rounds_by_row_length)
    model.set_attn_implementation("rounds_for_test")
    assert packing_is_exact(model)
    AttentionInterface.register("leaky_for_test", leaky_attention)
    model.set_attn_implementation("leaky_for_test")
    assert not packing_is_exact(model)


def test_segment_attention_is_used_and_restored(model):
    packed, restore = start_packing(model, True)
    assert packed and restore == "sdpa" and model.config._attn_implementation == ATTENTION
    assert start_packing(model, False) == (False, None)


def test_auto_packs_on_cpu_and_pads_on_a_gpu_without_flash_attention(model, capsys):
    assert start_packing(model, "auto", "cpu")[0]
    model.set_attn_implementation("sdpa")
    assert start_packing(model, "auto", "cuda:0") == (False, None)
    assert "batches: padded" in capsys.readouterr().err
    assert start_packing(model, True, "cuda:0")[0]  # asked for: packed there too


def test_packing_stays_on_for_a_bf16_model(tiny_model):
    """CPU LoRA training keeps the frozen model in bf16: the packing check must pass
    there too (it once went through the decoding attention, whose bf16 scores failed it,
    and training silently fell back to padded batches at a third of the speed)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    with torch.no_grad():  # attention scores in the tens, as in trained models
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
    packed, _ = start_packing(model, True)
    assert packed


@pytest.mark.slow
def test_prefix_sharing_stays_on_for_the_default_model_in_bf16():
    """CPU LoRA training keeps the default model in bf16: the sharing check must pass there
    (with transformers 5.25 it compared SDPA's kernel against ours, whose bf16 rounding
    through 30 layers crossed the tolerance, and every run computed shared prompts again)."""
    from transformers import AutoModelForCausalLM

    from agentsft.accel.segments import sharing_is_exact
    from agentsft.hub import default_model_dir
    model = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.bfloat16)
    use_segment_attention(model)
    assert sharing_is_exact(model)
    assert not any(p.grad is not None for p in model.parameters())  # the probe left no gradients


def test_examples_that_begin_alike_hold_their_untrained_prefix_once(rows):
    """rows 0 and 2 are the same tool chat (2 cut after the calls): they share their
    system and user turns up to the token that predicts the first trained one."""
    from agentsft.data.collate import shareable, token_counts
    n = shareable(rows[0])
    assert n == shareable(rows[2]) and rows[0]["input_ids"][:n + 1] == rows[2]["input_ids"][:n + 1]
    assert rows[0]["labels"][n + 1] != IGNORE_INDEX and set(rows[0]["labels"][:n + 1]) == {IGNORE_INDEX}
    batch = PackedCollator(share=True)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    # [shared prefix, rest of 0, rest of 2, all of 1]: the group in the order of its first
    assert batch["cu_seq_lens_q"].tolist() == [0, n, lengths[0], lengths[0] + lengths[2] - n,
                                               sum(lengths) - n]
    assert batch["segment_context"].tolist() == [[0, 0], [0, n], [0, n], [0, 0]]
    assert batch["position_ids"][0].tolist() == [
        *range(lengths[0]), *range(n, lengths[2]), *range(lengths[1])]
    assert token_counts(batch) == (sum(lengths), sum(lengths) - n)
    trained = sum(sum(1 for x in r["labels"][1:] if x != IGNORE_INDEX) for r in rows)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == trained
    assert "segment_context" not in PackedCollator()(rows)


def test_a_shared_prefix_gives_the_loss_and_gradients_of_one_by_one(model, rows):
    """Float32, 1e-5 relative, as for packing: the rest of each example sees the shared
    prefix at the positions it had, and the prefix's gradients sum over both."""
    alone = [PadCollator(0)([r]) for r in rows]
    loss_1, grads_1 = loss_and_grads(model, alone)
    use_segment_attention(model)
    shared = PackedCollator(share=True)(rows)
    assert "segment_context" in shared
    loss_s, grads_s = loss_and_grads(model, [shared])
    assert loss_s == pytest.approx(loss_1, rel=1e-5)
    for g1, gs in zip(grads_1, grads_s):
        torch.testing.assert_close(gs, g1, rtol=1e-5, atol=1e-5 * g1.abs().max().item())


def test_a_trained_token_ends_what_examples_may_share(rows):
    """A prefix is shared only up to the position before the first trained token of each
    example: training a token of the system turn in one example stops sharing there."""
    from agentsft.data.collate import shared_prefixes
    first = dict(rows[0], labels=list(rows[0]["labels"]))
    first["labels"][40] = first["input_ids"][40]
    groups = shared_prefixes([first, rows[1], rows[2]])
    assert [(n, len(m)) for n, m in groups] == [(39, 2), (0, 1)]
    first["labels"][10] = first["input_ids"][10]  # under MIN_SHARED left: each alone
    assert [n for n, _ in shared_prefixes([first, rows[2]])] == [0, 0]


def drops_segment_context(module, query, key, value, attention_mask, **kw):
    """Attention that never sees ``segment_context``, as a model whose attention module
    does not pass its keyword arguments on would."""
    from agentsft.accel.segments import segment_sdpa
    kw.pop("segment_context", None)
    return segment_sdpa(module, query, key, value, attention_mask, **kw)


def test_sharing_is_used_only_where_the_attention_sees_the_prefix(model):
    from agentsft.accel.segments import sharing_is_exact
    assert not sharing_is_exact(model)  # sdpa: nothing reads segment_context
    use_segment_attention(model)
    assert sharing_is_exact(model)
    AttentionInterface.register(ATTENTION, drops_segment_context)
    try:
        assert not sharing_is_exact(model)
    finally:
        from agentsft.accel.segments import register
        register()


def test_prefix_grouped_batches_hold_examples_that_begin_alike(monkeypatch):
    """Three prompts, eight examples each, batches of 4: every batch holds one prompt's
    examples; each epoch is a new order of all 24; examples with nothing to share
    (a trained token within the first 16) stay in plain random order."""
    from agentsft.data.collate import PrefixGroupedSampler
    prompts = [[p] * 70 for p in (11, 12, 13)]
    rows = [{"input_ids": prompts[i % 3] + [i], "labels": [IGNORE_INDEX] * 70 + [i]}
            for i in range(24)]
    torch.manual_seed(0)
    sampler = PrefixGroupedSampler(rows, batch_size=4)
    epochs = [list(sampler), list(sampler)]
    for order in epochs:
        assert sorted(order) == list(range(24))
        batches = [order[j:j + 4] for j in range(0, 24, 4)]
        assert all(len({i % 3 for i in b}) == 1 for b in batches), batches
    assert epochs[0] != epochs[1]
    alone = [{"input_ids": r["input_ids"], "labels": [IGNORE_INDEX] + r["input_ids"][1:]}
             for r in rows]
    torch.manual_seed(0)
    order = list(PrefixGroupedSampler(alone, batch_size=4))
    torch.manual_seed(0)  # the same draw: the batches are slices of that permutation
    seed = int(torch.empty((), dtype=torch.int64).random_())
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(seed)).tolist()
    slices = {tuple(perm[j:j + 4]) for j in range(0, 24, 4)}
    assert {tuple(order[j:j + 4]) for j in range(0, 24, 4)} == slices


def test_our_attention_stands_in_only_for_plain_causal_sdpa(model):
    """What a model passes to its attention decides: an argument ours does not apply (here a
    made-up one, as a newer architecture might add), a layer that is not causal, or
    attention that bypasses transformers' attention functions (some remote code) each keep
    the model's own, and the reason is named."""
    import functools

    from agentsft.accel.segments import attention_misfit
    assert attention_misfit(model) is None
    attn = model.model.layers[0].self_attn
    attn.forward = functools.partial(type(attn).forward, attn, new_feature=0.5)
    assert attention_misfit(model) == "its attention takes new_feature=0.5, which agentsft's does not apply"
    del attn.forward
    attn.is_causal = False
    assert "is_causal=False" in attention_misfit(model)
    assert use_segment_attention(model) is None and model.config._attn_implementation == "sdpa"
    attn.is_causal = True
    for layer in model.model.layers:
        layer.self_attn.forward = lambda hidden_states, *a, **k: (hidden_states * 0, None)
    assert attention_misfit(model) == "its attention does not go through transformers' attention functions"
    for layer in model.model.layers:
        del layer.self_attn.forward
    model.set_attn_implementation("eager")
    assert attention_misfit(model).startswith("the model runs eager attention, which agentsft never")
