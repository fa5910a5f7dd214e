"""``agentsft serve`` started in a subprocess on 127.0.0.1, talked to by the real ``openai``
client: replies, streams, tool calls and each tool_choice, errors in OpenAI's shape, many
clients at once, adapters of one base, and a clean stop."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentsft.data.schema import Conversation, Message, ToolCall
from conftest import ROOT, run_cli
from test_calls import TOOLS, TRAINED, taught

openai = pytest.importorskip("openai")

TOOL_DICTS = [t.to_dict() for t in TOOLS]
TWO_CALLS = Conversation([Message("user", "Weather in Paris and Oslo?"), Message(
    "assistant", "", tool_calls=[ToolCall("get_weather", {"city": "Paris"}),
                                 ToolCall("get_weather", {"city": "Oslo"})])], tools=TOOLS)
ROUND_TRIP = Conversation([
    Message("user", "Weather in Lima?"),
    Message("assistant", "", tool_calls=[ToolCall("get_weather", {"city": "Lima"}, id="c1")]),
    Message("tool", '{"temp": 20}', tool_call_id="c1"),
    Message("assistant", "It is 20 degrees in Lima.")], tools=TOOLS)


def http(url: str, body: bytes | dict | None = None, key: str | None = None) -> tuple[int, dict]:
    """A raw request (stdlib only): its status and JSON body."""
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Running:
    """``agentsft serve ARGS --port 0`` in a subprocess, up once it prints its URL."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "agentsft", "serve", "--port", "0", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"http://\S+/v1", line)
        if not found:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.url, self.banner = found.group(0), line

    def client(self, key: str = "none") -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return code, self.proc.stderr.read()


@pytest.fixture(scope="module")
def caller_dir(tiny_model, tokenizer, tmp_path_factory) -> Path:
    """The tiny model taught the calls of test_calls, two calls at once and a round trip."""
    folder = tmp_path_factory.mktemp("caller")
    taught(tiny_model, tokenizer, TRAINED + [TWO_CALLS, ROUND_TRIP], steps=200).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(caller_dir):
    running = Running("--model", str(caller_dir), "--dtype", "float32")
    yield running
    code, err = running.stop()
    assert code == 0 and "stopped" in err, err[-2000:]


def ask(client, question: str, **kw):
    kw.setdefault("max_tokens", 60)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=kw.pop("model"),
                                          messages=[{"role": "user", "content": question}], **kw)


@pytest.fixture(scope="module")
def client(server, caller_dir):
    c = server.client()
    c.model = str(caller_dir)
    return c


def reply(client, question: str, **kw):
    return ask(client, question, model=client.model, **kw)


def streamed(client, question: str, **kw):
    """A streamed reply reassembled: content, calls (name, arguments), finish, usage."""
    content, calls, finish, usage = "", {}, None, None
    for chunk in ask(client, question, model=client.model, stream=True,
                     stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for d in choice.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = d.id or entry["id"]
                entry["name"] += d.function.name or "" if d.function else ""
                entry["arguments"] += d.function.arguments or "" if d.function else ""
            finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish, usage


def calls_of(response) -> list[dict]:
    return [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
            for c in response.choices[0].message.tool_calls or ()]


def test_the_banner_and_the_model_list(server, client, caller_dir):
    assert "127.0.0.1" in server.banner and str(caller_dir) in server.banner
    assert [m.id for m in client.models.list()] == [str(caller_dir)]
    assert http(server.url.removesuffix("/v1") + "/health")[1]["status"] == "ok"


def test_a_plain_reply_equals_agentsft_chat(client, caller_dir):
    got = reply(client, "Hi there", max_tokens=30)
    assert got.choices[0].finish_reason in ("stop", "length")
    assert got.usage.prompt_tokens > 0 and got.usage.completion_tokens > 0
    out = run_cli("chat", "--model", str(caller_dir), "--dtype", "float32", "--prompt", "Hi there",
                  "--max-new-tokens", "30")
    assert out.returncode == 0, out.stderr
    assert got.choices[0].message.content == out.stdout.strip()
    assert got.choices[0].message.content  # the model learnt an answer


def test_a_streamed_reply_equals_the_whole_one(client):
    whole = reply(client, "Hi there", max_tokens=30)
    content, calls, finish, usage = streamed(client, "Hi there", max_tokens=30)
    assert (content, calls, finish) == (whole.choices[0].message.content, [], whole.choices[0].finish_reason)
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_a_tool_call_streamed_and_whole(client):
    whole = reply(client, "Weather in Paris?", tools=TOOL_DICTS)
    assert whole.choices[0].finish_reason == "tool_calls"
    assert calls_of(whole) == [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}]
    assert whole.choices[0].message.tool_calls[0].id.startswith("call_")
    content, calls, finish, _ = streamed(client, "Weather in Paris?", tools=TOOL_DICTS)
    assert finish == "tool_calls" and content == (whole.choices[0].message.content or "")
    assert [{"name": c["name"], "arguments": json.loads(c["arguments"])} for c in calls] == calls_of(whole)
    assert calls[0]["id"].startswith("call_")


def test_stop_strings_and_token_limits(client):
    full = reply(client, "Hi there", max_tokens=30)
    whole = full.choices[0].message.content
    cut = reply(client, "Hi there", max_tokens=30, stop=[whole[3:5]])
    assert cut.choices[0].message.content == whole[:3].strip()
    assert cut.choices[0].finish_reason == "stop"
    n = full.usage.completion_tokens - 1  # one short of the end-of-turn token
    short = reply(client, "Hi there", max_completion_tokens=n, max_tokens=30)
    assert short.usage.completion_tokens == n and short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content == whole


def test_parallel_calls_and_parallel_tool_calls_false(client):
    both = reply(client, "Weather in Paris and Oslo?", tools=TOOL_DICTS)
    assert [c["arguments"]["city"] for c in calls_of(both)] == ["Paris", "Oslo"]
    content, calls, _, _ = streamed(client, "Weather in Paris and Oslo?", tools=TOOL_DICTS)
    assert [json.loads(c["arguments"])["city"] for c in calls] == ["Paris", "Oslo"]
    assert len({c["id"] for c in calls}) == 2
    one = reply(client, "Weather in Paris and Oslo?", tools=TOOL_DICTS, parallel_tool_calls=False)
    assert [c["arguments"]["city"] for c in calls_of(one)] == ["Paris"]


def test_each_tool_choice_is_enforced(client):
    names = {t.name for t in TOOLS}
    assert not calls_of(reply(client, "Hi there", tools=TOOL_DICTS))  # auto: the model answers
    none = reply(client, "Weather in Paris?", tools=TOOL_DICTS, tool_choice="none")
    assert not calls_of(none) and none.choices[0].finish_reason in ("stop", "length")
    required = calls_of(reply(client, "Hi there", tools=TOOL_DICTS, tool_choice="required"))
    assert required and required[0]["name"] in names
    named = calls_of(reply(client, "Weather in Paris?", tools=TOOL_DICTS,
                           tool_choice={"type": "function", "function": {"name": "add"}}))
    assert named[0]["name"] == "add" and set(named[0]["arguments"]) >= {"a", "b"}
    assert all(isinstance(v, int) for v in named[0]["arguments"].values())


def test_a_full_round_trip(client):
    first = reply(client, "Weather in Lima?", tools=TOOL_DICTS)
    assert calls_of(first)[0]["arguments"]["city"] == "Lima"
    call = first.choices[0].message.tool_calls[0].model_dump()
    call["function"]["arguments"] = '{"city": "Lima"}'  # the history it was taught
    messages = [{"role": "user", "content": "Weather in Lima?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 20}'}]
    final = client.chat.completions.create(model=client.model, messages=messages, tools=TOOL_DICTS,
                                           temperature=0, max_tokens=30)
    assert final.choices[0].message.content == "It is 20 degrees in Lima."
    assert final.choices[0].finish_reason == "stop"


def test_errors_come_in_openais_shape(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        ask(client, "Hi", model="nope")
    assert e.value.body["code"] == "model_not_found" and client.model in e.value.body["message"]
    for kw, param in [({"n": 2}, "n"), ({"temperature": 5}, "temperature"),
                      ({"tool_choice": "required"}, "tool_choice"),
                      ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
                      ({"tools": TOOL_DICTS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
                       "tool_choice.function.name")]:
        with pytest.raises(openai.BadRequestError) as e:
            reply(client, "Hi", **kw)
        assert e.value.status_code == 400 and e.value.body["param"] == param, (kw, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:
        reply(client, "word " * 3000)
    assert e.value.body["code"] == "context_length_exceeded"
    assert re.search(r"context is 2048 tokens; the messages take \d+", e.value.body["message"])
    status, body = http(server.url + "/chat/completions", {"model": client.model, "messages": [
        {"role": "robot", "content": "hi"}]})
    assert status == 400 and body["error"]["param"] == "messages[0].role"


def test_a_fuzzed_server_still_answers_right(client, server):
    import random
    rnd = random.Random(0)
    good = {"model": client.model, "messages": [{"role": "user", "content": "Hi there"}],
            "max_tokens": 5, "temperature": 0}
    values = [None, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, True, "a" * 5000, 10**30]
    statuses = []
    url = server.url + "/chat/completions"
    expected = http(url, good)[1]
    for i in range(300):
        body = json.loads(json.dumps(good))
        kind = i % 4
        if kind == 0:
            body[rnd.choice(list(body) + ["tools", "tool_choice", "stop", "seed"])] = rnd.choice(values)
        elif kind == 1:
            body["messages"] = [rnd.choice([{"role": rnd.choice(["user", "tool", "x", None]),
                                             "content": rnd.choice(values)}, rnd.choice(values)])]
        elif kind == 2:
            body["tools"] = [rnd.choice([{"type": "function", "function": rnd.choice(values)},
                                         rnd.choice(values)])]
        data = json.dumps(body) if kind != 3 else json.dumps(body)[:rnd.randrange(60)]
        status, answer = http(url, data.encode())
        statuses.append(status)
        if status != 200:
            assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert all(s in (200, 400, 404) for s in statuses), sorted(set(statuses))
    assert statuses.count(400) > 150
    after = http(url, good)[1]
    assert after["choices"][0]["message"] == expected["choices"][0]["message"]


QUESTIONS = ["Hi there", "Weather in Paris?", "Add 2 and 3", "Weather in Oslo?", "Add 10 and 7",
             "Weather in Rome?", "Hi", "Add 4 and 40"]


def test_concurrent_greedy_requests_equal_one_at_a_time(client):
    def one(question: str):
        r = reply(client, question, tools=TOOL_DICTS, max_tokens=40)
        return r.choices[0].message.content, calls_of(r)
    alone = [one(q) for q in QUESTIONS]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(one, QUESTIONS))
    assert together == alone
    assert sum(bool(calls) for _, calls in alone) >= 4


# --- several adapters of one base, behind an API key ---------------------------------------

def adapter(folder: Path, base: Path, seed: int) -> Path:
    """A LoRA adapter of ``base`` with random B (PEFT starts it at zero), saved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                         LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.3)
    net.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(caller_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {n: adapter(folder / n, caller_dir, seed) for n, seed in [("alpha", 1), ("beta", 2)]}


@pytest.fixture(scope="module")
def keyed(caller_dir, adapters):
    """Two adapters and their base in one server, behind an API key."""
    import os
    env = {**os.environ, "AGENTSFT_API_KEY": "s3cret"}
    running = Running("--model", str(caller_dir), "--dtype", "float32", "--serve-base",
                      *[f"--adapter={n}={p}" for n, p in adapters.items()], env=env)
    yield running
    code, err = running.stop()
    assert code == 0 and "s3cret" not in err, err[-2000:]


def test_adapters_of_one_base_behind_a_key(keyed, caller_dir, adapters):
    from agentsft.inference import Sampling, load_generator
    assert "s3cret" not in keyed.banner and "API key required" in keyed.banner
    with pytest.raises(openai.AuthenticationError):
        keyed.client("wrong").models.list()
    status, body = http(keyed.url + "/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    c = keyed.client("s3cret")
    names = ["alpha", "beta", str(caller_dir)]
    assert [m.id for m in c.models.list()] == names
    prompts = [(n, q) for q in QUESTIONS[:4] for n in names]

    def one(pair):
        return ask(c, pair[1], model=pair[0], max_tokens=12).choices[0].message.content
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(one, prompts))
    for (name, question), got in zip(prompts, together):  # each as its own run answers alone
        gen = load_generator(str(caller_dir), adapters.get(name), dtype="float32")
        conv = Conversation([Message("user", question)])
        assert got == gen.reply(conv, Sampling(12)).text.strip(), (name, question)
    assert len({got for (_, q), got in zip(prompts, together) if q == "Hi there"}) == 3


def test_a_client_that_leaves_mid_stream_frees_its_place(keyed):
    health = keyed.url.removesuffix("/v1") + "/health"
    stream = ask(keyed.client("s3cret"), "Tell me everything", model="alpha", stream=True,
                 max_tokens=1500)
    chunks = iter(stream)
    for _ in range(4):  # the role, then text as it is written
        next(chunks)
    assert http(health)[1]["running"] == 1
    stream.close()
    deadline = time.time() + 10
    while http(health)[1]["running"] and time.time() < deadline:
        time.sleep(0.05)
    assert http(health)[1]["running"] == 0


def test_serve_refuses_bad_flags_in_one_line(caller_dir):
    import socket
    bad = run_cli("serve", "--adapter", "nameless")
    assert bad.returncode == 2 and "NAME=RUN_DIR" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run_cli("serve", "--model", str(caller_dir), "--port", str(port))
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "--port" in out.stderr.strip().splitlines()[-1]


def test_sigterm_with_a_stream_in_flight_exits_cleanly(tiny_model):
    running = Running("--model", str(tiny_model), "--dtype", "float32")
    got: list = []

    def listen():
        try:
            for chunk in ask(running.client(), "Tell me everything", model=str(tiny_model),
                             stream=True, max_tokens=1800):
                got.append(chunk)
        except Exception as e:  # the server cut the stream at shutdown
            got.append(e)
    reader = threading.Thread(target=listen)
    reader.start()
    deadline = time.time() + 60
    while len(got) < 5 and time.time() < deadline:
        time.sleep(0.05)
    code, err = running.stop()
    reader.join(30)
    assert code == 0 and "stopped" in err and not reader.is_alive(), err[-2000:]
