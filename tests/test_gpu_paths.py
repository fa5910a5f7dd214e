"""The fast GPU path of training: packed rows through PyTorch's variable-length kernel and
the loss through Liger's fused linear cross-entropy. What CPU can show runs here (the
references the checks compare against, the guards that refuse, and the loss computed from
the output layer's input); the kernels themselves are compared on a GPU (``gpu`` mark)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

import zoo
from agentsft.accel import varlen
from agentsft.accel.attention import packed_causal_attention
from agentsft.accel.logits import FusedLoss, fused_misfit, head_misfit, trained_logits
from agentsft.accel.training import fused_loss, start_packing
from agentsft.data.collate import PackedCollator, PadCollator
from agentsft.data.tokenize import IGNORE_INDEX
from conftest import lora_model

BOUNDS, CONTEXTS = [0, 24, 61, 90], [(0, 0), (0, 0), (0, 24)]


def qkv(heads: int, kv_heads: int, d: int, device: str = "cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(h, 90, d, generator=gen).to(device, dtype).requires_grad_()
            for h in (heads, kv_heads, kv_heads)]


@pytest.mark.parametrize("contexts", [None, CONTEXTS], ids=["segments", "shared-prefix"])
def test_the_varlen_check_compares_with_our_packed_attention(contexts):
    """The reference the GPU kernel is checked against computes what packing means: each
    segment sees itself, and a segment continuing a shared prefix sees the prefix first."""
    q, k, v = qkv(4, 2, 16)
    ours = packed_causal_attention(q, k, v, BOUNDS, None, contexts)
    ref = varlen.reference(q, k, v, BOUNDS, None, contexts or [(0, 0)] * 3)
    torch.testing.assert_close(ref, ours, rtol=1e-5, atol=1e-5)
    # and a leak between segments would be seen: the whole row causal is another result
    whole = varlen.reference(q, k, v, [0, 90], None, [(0, 0)])
    assert not torch.allclose(whole, ours, atol=1e-3)


def flash_semantics(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None,
                    window_size=(-1, -1), return_aux=None):
    """What FlashAttention's variable-length kernel computes, as torch 2.11's ``varlen_attn``
    documents it (fewer key/value heads allowed, a causal mask aligned to the bottom right
    where a segment has more keys than queries), in SDPA on CPU, to test our plumbing around
    the kernel here: the kernel itself is compared on a GPU (``varlen.check``)."""
    assert cu_seq_q.dtype == cu_seq_k.dtype == torch.int32
    out = []
    for (a, b), (c, d) in zip(zip(cu_seq_q.tolist(), cu_seq_q.tolist()[1:]),
                              zip(cu_seq_k.tolist(), cu_seq_k.tolist()[1:])):
        assert b - a <= max_q and d - c <= max_k
        q, k, v = (t.transpose(0, 1) for t in (query[a:b], key[c:d], value[c:d]))
        mask = torch.arange(d - c)[None, :] <= (d - c) - (b - a) + torch.arange(b - a)[:, None]
        out.append(F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask if tuple(window_size) == (-1, 0) else None, scale=scale,
            enable_gqa=q.shape[0] != k.shape[0]).transpose(0, 1))
    return torch.cat(out)


def older_signature(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False,
                    return_aux=None):
    """torch 2.10's form: ``is_causal``, and no ``scale`` (the kernel's own d ** -0.5)."""
    return flash_semantics(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                           window_size=(-1, 0) if is_causal else (-1, -1))


@pytest.mark.parametrize("signature", [flash_semantics, older_signature], ids=["2.11", "2.10"])
def test_our_side_of_the_varlen_call_packs_the_row_it_was_given(monkeypatch, signature):
    """Layout, int32 boundaries, a shared prefix's keys gathered before the segment's own,
    grouped key/value heads and a scale other than the default, through ``varlen.attention``
    with a stand-in that follows the kernel's documented semantics."""
    monkeypatch.setattr(varlen, "kernel", lambda: signature)
    q, k, v = qkv(4, 2, 16)
    for contexts in (None, CONTEXTS):
        for scale in (None, 0.3):
            got = varlen.attention(q, k, v, torch.tensor(BOUNDS), 37, scale,
                                   contexts and torch.tensor(contexts))
            want = packed_causal_attention(q, k, v, BOUNDS, scale, contexts)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert varlen.check(4, 2, 16, torch.float32, "cpu") is None  # and the check agrees
    varlen.PROVEN.clear()


def test_the_varlen_kernel_is_used_only_where_it_was_proven(tiny_model, capsys):
    varlen.PROVEN.clear()
    why = varlen.check(4, 2, 16, torch.float32, "cpu")  # no CPU kernel for it
    assert why and "\n" not in why
    q, k, _ = qkv(4, 2, 16)
    assert not varlen.proven(q, k)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)  # on CPU, asked for CUDA
    assert start_packing(model, "auto", "cuda:0") == (False, None)
    err = capsys.readouterr().err
    assert "packed rows one example at a time" in err and "batches: padded" in err
    assert model.config._attn_implementation == "sdpa"  # put back


@pytest.fixture(scope="module")
def folders(tokenizer, tmp_path_factory):
    return zoo.Folders(tmp_path_factory.mktemp("zoo"), tokenizer)


def test_the_loss_reads_the_output_layer_only_where_the_logits_are_its_product(folders):
    llama = AutoModelForCausalLM.from_pretrained(folders["llama"])
    assert head_misfit(llama) is None
    weight = llama.lm_head.weight.clone()
    why = head_misfit(AutoModelForCausalLM.from_pretrained(folders["gemma2"]))  # a final soft-cap
    assert why and "after its output layer" in why
    torch.testing.assert_close(llama.lm_head.weight, weight, rtol=0, atol=0)  # put back exactly
    peft = get_peft_model(llama, LoraConfig(r=2, target_modules=["q_proj", "lm_head"]))
    assert "not a plain linear layer" in head_misfit(peft)


def plain_linear_ce(weight, hidden, targets, bias=None):
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="sum")


def batches(tokenizer):
    rows = []
    for text in ("Call the weather tool for Paris.", "Hello there, how are you today?"):
        ids = tokenizer(text)["input_ids"]
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 3 + ids[3:]})
    return {"packed": PackedCollator()(rows), "padded": PadCollator(tokenizer.pad_token_id)(rows)}


@pytest.mark.parametrize("layout,name", [("packed", "llama"), ("padded", "llama"),
                                         ("packed", "granite")])
def test_the_loss_from_the_output_layers_input_is_the_loss_from_logits(folders, tokenizer,
                                                                       layout, name):
    """FusedLoss's part of the work (the model returning the output layer's input at the
    trained positions, the targets, the layer applied after) gives the loss and gradients
    of the logits path; Liger's kernel then replaces only ``linear_ce`` (compared on a GPU).
    Granite divides its logits by a scale: applied to what the skipped layer passes on, it
    reaches the loss the same way (:func:`head_misfit` lets it through)."""
    model = lora_model(folders[name]).float()
    assert head_misfit(model) is None
    batch = batches(tokenizer)[layout]
    rest = {k: v for k, v in batch.items() if k != "labels"}
    results = []
    for fused in (None, FusedLoss(torch.float32, plain_linear_ce)):
        model.zero_grad()
        if fused is None:
            logits, targets, _ = trained_logits(model, rest, batch["labels"])
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            n = targets.numel()
        else:
            loss, n = fused(model, rest, batch["labels"])
        loss.backward()
        results.append((loss.detach(), n, {name: p.grad.clone() for name, p in model.named_parameters()
                                           if p.requires_grad}))
    (a, n_a, ga), (b, n_b, gb) = results
    assert n_a == n_b > 0
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=1e-4, atol=1e-6)
    assert type(model.get_output_embeddings().forward).__name__ == "method"  # put back


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="Liger installed")
def test_without_liger_the_loss_is_the_plain_one(tiny_model, capsys):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    capsys.readouterr()
    assert fused_loss(model, "cpu") is None and capsys.readouterr().err == ""  # CPU: silent
    assert "liger-kernel is not installed" in fused_misfit(torch.bfloat16, "cpu")
    assert fused_loss(model, "cuda:0") is None
    assert "loss: the output layer at the trained positions" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 2, 16), (9, 3, 64), (32, 8, 64)])
def test_the_varlen_kernel_matches_on_cuda(shape):
    """SmolLM2-135M's heads (9/3 of 64) and Llama-3.2-1B's (32/8 of 64), in bf16."""
    varlen.PROVEN.clear()
    assert varlen.check(*shape, torch.bfloat16, "cuda") is None
    q, k, _ = qkv(*shape, device="cuda", dtype=torch.bfloat16)
    assert varlen.proven(q, k)


@pytest.mark.gpu
def test_packed_training_through_varlen_gives_the_loop_s_loss_and_gradients(tiny_model, tokenizer):
    from agentsft.accel.segments import sharing_is_exact
    model = lora_model(tiny_model).cuda()
    assert start_packing(model, "auto", "cuda:0", dtype=torch.bfloat16)[0]
    assert sharing_is_exact(model)  # a shared prompt through the kernel's gathered keys
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batches(tokenizer)["packed"].items()}
    kernel = bf16_step(model, lambda: model(**batch).loss)
    varlen.PROVEN.clear()  # the per-segment loop
    assert_same_step(kernel, bf16_step(model, lambda: model(**batch).loss))


def bf16_step(model, loss_of) -> tuple[float, list[torch.Tensor]]:
    """The loss ``loss_of()`` gives under bf16 autocast on CUDA, and the trained gradients."""
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = loss_of()
        loss = loss[0] if isinstance(loss, tuple) else loss
    loss.backward()
    return loss.item(), [p.grad.float().clone() for p in model.parameters() if p.requires_grad]


def assert_same_step(got, want) -> None:
    """Within bf16's rounding: the loss to 2%, each gradient to 5% of its largest value."""
    assert got[0] == pytest.approx(want[0], rel=2e-2)
    for x, y in zip(got[1], want[1]):
        assert (x - y).abs().max() <= 0.05 * y.abs().max() + 1e-6


@pytest.mark.gpu
def test_liger_loss_matches_the_plain_loss_on_cuda(tiny_model, tokenizer):
    assert fused_misfit(torch.bfloat16, "cuda") is None
    model = lora_model(tiny_model).cuda()
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batches(tokenizer)["packed"].items()}
    rest = {k: v for k, v in batch.items() if k != "labels"}
    plain, liger = FusedLoss(torch.bfloat16, plain_linear_ce), FusedLoss(torch.bfloat16)
    assert_same_step(bf16_step(model, lambda: liger(model, rest, batch["labels"])),
                     bf16_step(model, lambda: plain(model, rest, batch["labels"])))


def saved_bytes(h: int, i: int, heads: int, kv_heads: int, dropout: float, tokens: int = 256
                ) -> tuple[int, object]:
    """What autograd keeps for the backward pass of a 2-layer bf16 Llama with LoRA r16 on
    every linear layer, over ``tokens`` tokens (the output layer at 10 positions only)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1000, hidden_size=h, intermediate_size=i, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv_heads)
    model = get_peft_model(LlamaForCausalLM(cfg).to(torch.bfloat16),
                           LoraConfig(r=16, lora_dropout=dropout, target_modules="all-linear"))
    model.train()
    storages: dict[int, int] = {}

    def keep(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    keep_positions = torch.zeros(1, tokens, dtype=torch.bool)
    keep_positions[:, -10:] = True
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=torch.randint(0, 1000, (1, tokens)), logits_to_keep=keep_positions)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights), cfg


@pytest.mark.parametrize("shape", [(64, 128, 4, 2), (512, 1376, 8, 8)])
@pytest.mark.parametrize("dropout", [0.0, 0.05])
def test_the_activation_estimate_is_near_what_autograd_keeps(shape, dropout):
    """``gradient_checkpointing: auto`` turns checkpointing on from this estimate."""
    from agentsft.training.model import activation_bytes
    saved, cfg = saved_bytes(*shape, dropout)
    estimate = activation_bytes(cfg, 256, dropout > 0)
    assert 0.8 <= estimate / saved <= 1.3, (estimate, saved)


def test_checkpointing_auto_is_off_on_cpu_and_asked_values_stay(tiny_model):
    from agentsft import config
    from agentsft.training.model import checkpointing
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert config.load().training.gradient_checkpointing == "auto"
    assert checkpointing(config.load(), model, "cpu") is False
    on = config.load(overrides=["training.gradient_checkpointing=true"])
    assert checkpointing(on, model, "cuda:0") is True  # asked for: no look at the GPU


@pytest.mark.gpu
def test_checkpointing_auto_turns_on_only_where_a_batch_would_not_fit(tiny_model, capsys):
    from agentsft import config
    from agentsft.training.model import checkpointing
    model = AutoModelForCausalLM.from_pretrained(tiny_model).cuda()
    assert checkpointing(config.load(), model, "cuda") is False
    assert "gradient checkpointing: off" in capsys.readouterr().err
    huge = config.load(overrides=["training.batch_size=512", "data.max_length=1000000"])
    assert checkpointing(huge, model, "cuda") is True
    assert "gradient checkpointing: on" in capsys.readouterr().err
