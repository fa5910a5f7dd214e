"""Prompts that start alike are read once: which rows share, how much, and that the
answers do not change."""

from __future__ import annotations

import torch
from agentsft.accel import caches
from agentsft.accel.caches import prefix_plan, tokens_to_read
from agentsft.data.templates import get_template
from agentsft.inference import Generator, Sampling
from agentsft.accel.segments import use_segment_attention

SYSTEM = list(range(1000, 1100))  # a 100-token system turn every conversation shares


def test_the_steps_of_a_conversation_start_from_its_last_step():
    step1 = SYSTEM + list(range(1, 21))
    step2 = SYSTEM + list(range(1, 20)) + [99] + list(range(30, 50))  # step 1's last token
    other = SYSTEM + [8] * 20                                         # merged with what followed
    short = [5, 6, 7]
    rows = [step1, step2, other, short]
    plan = prefix_plan(rows)
    assert plan[0] == (1, 119)  # step 1 takes all but its last token from step 2's cache
    assert plan[1] == (1, 139)  # a donor: all but its last token
    assert plan[2] == (2, 119)  # shares the system turn only: a donor itself
    assert plan[3] == (3, 2)
    # One token of each row past its cache, then the donors: `short` and step 2 whole,
    # `other` past the 100-token system turn it shares with step 2 (read just before it).
    assert tokens_to_read(rows, plan) == 4 + 3 + 140 + 20


def test_rows_sharing_less_than_the_minimum_keep_their_own_cache():
    a, b = [1] * 10 + [2], [1] * 10 + [3]
    assert prefix_plan([a, b]) == [(0, 10), (1, 10)]
    assert caches.SHARED_PREFIX > 10


def tiny_generator(tiny_model, tokenizer, ours: bool, dtype=torch.float32) -> Generator:
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)
    if ours:
        use_segment_attention(model)  # decoding through cached_attention, as load_generator does
    return Generator(model, tokenizer, get_template("hermes", tokenizer))


def conversation_prompts(tokenizer) -> list[str]:
    """Two conversations of three steps sharing a system turn, and one unrelated prompt."""
    system = "You are a careful assistant. " * 20
    prompts = []
    for topic in ("weather in Oslo", "the sum of 2 and 3"):
        history = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nTell me {topic}.<|im_end|>\n"
        for turn in range(3):
            prompts.append(history + "<|im_start|>assistant\n")
            history += f"<|im_start|>assistant\nStep {turn} of {topic}.<|im_end|>\n" \
                       f"<|im_start|>user\nAnd then?<|im_end|>\n"
    return prompts + ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"]


def test_reading_a_prompt_applies_the_output_head_to_one_position(tiny_model, tokenizer):
    """Only the cache of a prompt read ahead is used: the head runs on its last position,
    and the cache equals the one a plain forward pass leaves."""
    from transformers import DynamicCache
    gen = tiny_generator(tiny_model, tokenizer, ours=True)
    row = gen.encode(conversation_prompts(tokenizer)[1])
    positions = []
    hook = gen.model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: positions.append(args[0].shape[1]))
    layers = gen.read_prompt(row)
    hook.remove()
    assert positions == [1]
    plain = DynamicCache()
    with torch.no_grad():
        gen.model(input_ids=torch.tensor([row]), use_cache=True, **{gen.cache_keyword: plain})
    assert len(layers) == len(plain.layers)
    for (k, v), layer in zip(layers, plain.layers):
        assert k.shape[2] == len(row)
        torch.testing.assert_close(k, layer.keys)
        torch.testing.assert_close(v, layer.values)


def test_shared_prompts_get_the_answers_they_get_alone(tiny_model, tokenizer, monkeypatch):
    """Float32: batched with shared prefixes, the same greedy text as one prompt at a
    time, with SDPA and with our decoding attention; and far fewer tokens are read."""
    prompts = conversation_prompts(tokenizer)
    for ours in (False, True):
        gen = tiny_generator(tiny_model, tokenizer, ours)
        read = []
        original = Generator.read_prompt

        def counting(self, row, after=None):
            read.append(len(row) - (caches.common_prefix(after[0], row) if after else 0))
            return original(self, row, after)
        monkeypatch.setattr(Generator, "read_prompt", counting)
        sampling = Sampling(max_new_tokens=10)
        batched = gen.complete_batch(prompts, sampling, batch_size=4)
        monkeypatch.setattr(Generator, "read_prompt", original)
        alone = [gen.complete(p, sampling) for p in prompts]
        assert [b.text for b in batched] == [a.text for a in alone]
        rows = [gen.encode(p) for p in prompts]
        assert len(read) == 3  # the two last steps and the unrelated prompt
        assert sum(read) < 0.5 * sum(map(len, rows))


def test_a_growing_layer_holds_what_concatenation_holds():
    from transformers.cache_utils import DynamicLayer
    gen = torch.Generator().manual_seed(0)
    parts = [(torch.randn(2, 3, n, 4, generator=gen).bfloat16(),
              torch.randn(2, 3, n, 4, generator=gen).bfloat16()) for n in (5, 1, 1, 3, 1)]
    plain, growing = DynamicLayer(), caches.GrowingLayer(
        torch.zeros(2, 3, 7, 4), torch.zeros(2, 3, 7, 4, dtype=torch.bfloat16), 0)
    for layer in (plain, growing):
        layer.update(*parts[0])
    buffer = growing.buffers[0]
    for k, v in parts[1:]:
        keys, values = growing.update(k, v)
        expected = plain.update(k, v)
        assert torch.equal(keys, expected[0].float()) and torch.equal(values, expected[1])
    assert keys.dtype == torch.float32 and values.dtype == torch.bfloat16
    assert growing.buffers[0] is not buffer and growing.get_seq_length() == 11  # grew once
    growing.crop(-2)
    assert growing.update(*parts[1])[0].shape[2] == 10


def test_float_keys_in_the_batch_cache_change_no_answer(tiny_model, tokenizer, monkeypatch):
    """bf16 model, our decoding attention: keys held in float32 (exactly the bf16 values)
    give the same greedy text as a bf16 cache, bit for bit."""
    gen = tiny_generator(tiny_model, tokenizer, ours=True, dtype=torch.bfloat16)
    prompts = conversation_prompts(tokenizer)
    sampling = Sampling(max_new_tokens=10)
    seen = []
    original = caches.left_padded_cache

    def spying(*args, **kwargs):
        cache = original(*args, **kwargs)
        seen.append(cache.layers[0].keys.dtype)
        return cache
    monkeypatch.setattr("agentsft.inference.engine.left_padded_cache", spying)
    floats = [gen.complete_batch(prompts, sampling, batch_size=4, share_prefixes=share)
              for share in (True, False)]
    monkeypatch.setattr(Generator, "decodes_with_float_keys", lambda self: False)
    plain = [gen.complete_batch(prompts, sampling, batch_size=4, share_prefixes=share)
             for share in (True, False)]
    assert set(seen) == {torch.float32, torch.bfloat16}
    for f, p in zip(floats, plain):
        assert [a.text for a in f] == [b.text for b in p]


def test_unshared_batches_grow_their_cache_in_place(tiny_model, tokenizer, monkeypatch):
    gen = tiny_generator(tiny_model, tokenizer, ours=True)
    made = []
    original = caches.growing_cache

    def spying(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr("agentsft.inference.engine.growing_cache", spying)
    prompts = conversation_prompts(tokenizer)[:2]
    out = gen.complete_batch(prompts, Sampling(max_new_tokens=6), batch_size=2,
                             share_prefixes=False)
    assert len(made) == 1 and all(isinstance(layer, caches.GrowingLayer) for layer in made[0].layers)
    layer = made[0].layers[0]
    width = max(len(gen.encode(p)) for p in prompts)
    assert layer.keys.dtype == torch.float32 and layer.buffers[0].shape[2] == width + 6
    assert layer.get_seq_length() == width + max(o.tokens for o in out) - 1


def test_rows_leave_the_batch_when_done_and_answer_as_alone(tiny_model, tokenizer):
    """Greedy batches decode each row until it stops (here: its cap), then compute
    without it; every row's text equals its answer generated alone."""
    prompts = conversation_prompts(tokenizer)[:4]
    caps = [2, 9, 5, 9]
    for ours in (False, True):
        gen = tiny_generator(tiny_model, tokenizer, ours)
        assert gen.caches_are_plain()  # (its one-token probe runs before the count)
        rows_per_step = []
        hook = gen.model.register_forward_pre_hook(
            lambda module, args, kwargs: rows_per_step.append(kwargs["input_ids"].shape[0]),
            with_kwargs=True)
        batched = gen.complete_batch(prompts, Sampling(max_new_tokens=9), batch_size=4,
                                     limits=caps, share_prefixes=False)
        hook.remove()
        alone = [gen.complete_batch([p], Sampling(max_new_tokens=9), limits=[c])[0]
                 for p, c in zip(prompts, caps)]
        assert [b.text for b in batched] == [a.text for a in alone]
        assert [b.tokens for b in batched] == caps  # the tiny model never stops by itself
        assert rows_per_step == [4, 4, 3, 3, 3, 2, 2, 2, 2]
