"""Continuous batching (inference/batching.py) and reading replies as they stream
(serving/replies.py): requests that join and leave a running batch answer as they would
alone, a cancelled one leaves, and a streamed reply reads as the whole one."""

from __future__ import annotations

import random
import threading
import time

import pytest

from agentsft.data.schema import Conversation, Message, ToolCall
from agentsft.data.templates import get_template
from agentsft.inference import Generator, Sampling
from agentsft.inference.batching import Batcher, Job
from agentsft.serving.replies import ReplyReader, read_reply
from test_calls import TOOLS


@pytest.fixture(scope="module")
def gen(tiny_model, tokenizer) -> Generator:
    from agentsft.inference import load_generator
    return load_generator(str(tiny_model), dtype="float32")


class Outcome:
    """A job's streamed text and its end, filled in by the batcher's thread."""

    def __init__(self):
        self.texts: list[str] = []
        self.done = threading.Event()
        self.generation = self.why = None

    def job(self, gen: Generator, prompt: str, sampling: Sampling, **kw) -> Job:
        def finished(generation, why):
            self.generation, self.why = generation, why
            self.done.set()
        return Job(gen, gen.encode(prompt), sampling, on_text=self.texts.append, on_done=finished, **kw)


def prompt(gen: Generator, question: str, history: list[Message] = ()) -> str:
    return gen.template.prompt(Conversation([*history, Message("user", question)]))


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


QUESTIONS = ["Hi", "What is the weather in Paris today and tomorrow?", "Tell me a story " * 30,
             "x", "Why? " * 40, "ok"]


def test_jobs_that_join_and_leave_a_running_batch_answer_as_alone(gen):
    batcher = Batcher(gen, max_rows=4)
    try:
        outcomes, jobs = [], []
        for i, q in enumerate(QUESTIONS):
            outcome = Outcome()
            jobs.append(batcher.submit(outcome.job(gen, prompt(gen, q), Sampling(30 + 7 * i))))
            outcomes.append(outcome)
            wait_for(lambda o=outcome: len(jobs[-1].new) >= 3 or o.done.is_set())  # it runs: the next joins
        for o in outcomes:
            assert o.done.wait(60)
        assert batcher.steps < sum(30 + 7 * i for i in range(len(QUESTIONS)))  # rows shared steps
    finally:
        batcher.close(10)
    for i, (q, o) in enumerate(zip(QUESTIONS, outcomes)):
        alone = gen.complete(prompt(gen, q), Sampling(30 + 7 * i))
        assert o.generation.text == alone.text and "".join(o.texts) == alone.text
        assert o.why == ("length" if alone.stop is None else "stop")


def test_a_cancelled_job_leaves_and_the_others_go_on(gen):
    batcher = Batcher(gen, max_rows=4)
    try:
        a, b = Outcome(), Outcome()
        long_job = batcher.submit(a.job(gen, prompt(gen, "Hi"), Sampling(500)))
        other = batcher.submit(b.job(gen, prompt(gen, "ok"), Sampling(40)))
        wait_for(lambda: len(long_job.new) >= 5 and len(other.new) >= 1)
        long_job.cancel()
        assert b.done.wait(60)
        wait_for(lambda: batcher.running == 0)
        assert not a.done.is_set() and len(long_job.new) < 500
    finally:
        batcher.close(10)
    assert b.generation.text == gen.complete(prompt(gen, "ok"), Sampling(40)).text


def test_a_prompt_that_extends_an_earlier_one_starts_from_its_cache(gen):
    history = [Message("system", "You are a careful assistant. " * 20), Message("user", "Hi"),
               Message("assistant", "Hello, how can I help?")]
    first, second = prompt(gen, "Hi", history[:1]), prompt(gen, "And now?", history)
    batcher = Batcher(gen, max_rows=4)
    try:
        outs = []
        for text in (first, second):
            o = Outcome()
            batcher.submit(o.job(gen, text, Sampling(20)))
            assert o.done.wait(60)
            outs.append(o)
        kept = [row for row, _ in batcher.prompts]
    finally:
        batcher.close(10)
    assert kept == [gen.encode(first), gen.encode(second)]
    assert outs[1].generation.text == gen.complete(second, Sampling(20)).text


def test_sampling_follows_the_seed(gen):
    batcher = Batcher(gen, max_rows=4)
    try:
        runs = []
        for seed in (7, 7, 8):
            o = Outcome()
            batcher.submit(o.job(gen, prompt(gen, "Hi"), Sampling(20, temperature=1.0), seed=seed))
            assert o.done.wait(60)
            runs.append(o.generation.text)
        o = Outcome()
        batcher.submit(o.job(gen, prompt(gen, "Hi"), Sampling(20, temperature=1.0, top_p=1e-6), seed=1))
        assert o.done.wait(60)
    finally:
        batcher.close(10)
    assert runs[0] == runs[1] != runs[2]
    assert o.generation.text == gen.complete(prompt(gen, "Hi"), Sampling(20)).text  # top_p ~0: greedy


# --- replies read as they stream ------------------------------------------------------------

def reader(tokenizer, name: str = "hermes") -> ReplyReader:
    from agentsft.inference.calls import call_tags
    template = get_template(name, tokenizer)
    return ReplyReader(template, *call_tags(template))


def rendered_reply(tokenizer, content: str, calls: list[ToolCall]) -> str:
    template = get_template("hermes", tokenizer)
    conv = Conversation([Message("user", "q"), Message("assistant", content, tool_calls=calls)], tools=TOOLS)
    full = template.render(conv)
    body = next(s for s in full.segments if s.message == 1)
    return full.text[body.start:body.end].split("<|im_end|>")[0]  # generation stops there


@pytest.mark.parametrize("content,calls", [
    ("Hello there!", []),
    ("", [ToolCall("get_weather", {"city": "Paris"})]),
    ("Let me check.", [ToolCall("get_weather", {"city": "Paris"}), ToolCall("add", {"a": 1, "b": 2})]),
    ("", [ToolCall("get_weather", {"city": "a </tool_call> b"})]),
])
def test_a_reply_read_in_random_pieces_equals_the_whole(tokenizer, content, calls):
    text = "  " + rendered_reply(tokenizer, content, calls) + "\n"
    whole = read_reply(reader(tokenizer), text)
    assert whole[0] == content and [(c.name, c.arguments) for c in whole[1]] == [(c.name, c.arguments) for c in calls]
    rnd = random.Random(0)
    for _ in range(20):
        r, pieces, at = reader(tokenizer), [], 0
        while at < len(text):
            step = rnd.randint(1, 6)
            pieces += r.feed(text[at:at + step])
            at += step
        pieces += r.finish()
        got = ("".join(p.text for p in pieces if p.call is None), [p.call for p in pieces if p.call])
        assert got[0] == whole[0] and [(c.name, c.arguments) for c in got[1]] == \
            [(c.name, c.arguments) for c in whole[1]]
        calls_seen = [i for i, p in enumerate(pieces) if p.call]
        assert not calls_seen or all(p.call for p in pieces[calls_seen[0]:])  # text first


def test_a_call_that_cannot_be_read_comes_back_as_text(tokenizer):
    text = 'Sure. <tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>'
    r = reader(tokenizer)
    streamed = r.feed(text[:20]) + r.feed(text[20:]) + r.finish()
    assert "".join(p.text for p in streamed) == text and not any(p.call for p in streamed)
    assert read_reply(reader(tokenizer), text) == (text, [])


def test_a_call_is_handed_on_as_soon_as_it_is_closed(tokenizer):
    text = rendered_reply(tokenizer, "", [ToolCall("get_weather", {"city": "Oslo"})])
    r = reader(tokenizer)
    assert not r.feed(text[:-3])  # not yet closed
    pieces = r.feed(text[-3:])
    assert [p.call.name for p in pieces] == ["get_weather"] and pieces[0].call.id.startswith("call_")

