"""Agents: tool schemas, the tool loop's failure handling, memory, fine-tuning, the user loop.

The tool-loop tests script the model's replies (everything else is real: the
template parses them, the toolkit checks and runs real functions, memory is
rendered and counted with the real tokenizer), because a tiny random model
cannot be made to write a given call.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

import pytest
import torch
from conftest import ROOT, run_cli

from agentsft.agents import DialogAgent, FinetuneDialogAgent, Msg, Toolkit, ToolAgent, UserAgent, converse
from agentsft.agents.toolkit import function_schema
from agentsft.data.schema import ToolCall
from agentsft.data.templates import HermesTemplate
from agentsft.inference import Generation, Generator, StopStrings, load_generator


def forecast(city: str, days: int = 1, unit: Literal["C", "F"] = "C",
             hours: list[int] | None = None) -> dict:
    """Forecast for a city.

    Looks it up in a local table.

    Args:
        city: The city's name, e.g. "Paris".
        days (int): How many days ahead,
            counting today.
        unit: Temperature unit.
        hours: Hours of the day to include.

    Returns:
        The forecast.
    """
    if city == "Atlantis":
        raise ValueError("no such city")
    return {"city": city, "days": days, "unit": unit, "temperature": 21}


def slow(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "done"


NAPS: list[str] = []


async def nap(seconds: float) -> str:
    """Sleep without blocking.

    Args:
        seconds: How long.
    """
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        NAPS.append("cancelled")
        raise
    return "rested"


def test_schema_from_type_hints_and_docstring():
    tool = function_schema(forecast)
    assert tool.name == "forecast"
    assert tool.description == "Forecast for a city."  # the first paragraph only
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'The city\'s name, e.g. "Paris".'},
            "days": {"type": "integer", "description": "How many days ahead, counting today.",
                     "default": 1},
            "unit": {"enum": ["C", "F"], "type": "string", "description": "Temperature unit.",
                     "default": "C"},
            "hours": {"type": ["array", "null"], "items": {"type": "integer"},
                      "description": "Hours of the day to include."},
        },
        "required": ["city"],
    }


def test_schema_where_get_json_schema_stops():
    """transformers' get_json_schema refuses a function without a docstring, an argument
    without a description or one without a hint; agentsft's tools take them, and an
    Optional argument takes an explicit null."""
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import (
        DocstringParsingException, TypeHintParsingException,
    )

    def lookup(word, limit: int | None = 3, strict: bool = False):
        """Look a word up.

        Args:
            word: The word.
        """
        return [word, limit, strict]

    def bare(x: int):
        return x

    for fn in (lookup, bare):
        with pytest.raises((DocstringParsingException, TypeHintParsingException)):
            get_json_schema(fn)
    tool = function_schema(lookup)
    assert tool.description == "Look a word up."
    assert tool.parameters == {"type": "object", "required": ["word"], "properties": {
        "word": {"description": "The word."},
        "limit": {"type": ["integer", "null"], "default": 3},
        "strict": {"type": "boolean", "default": False}}}
    assert function_schema(bare).parameters == {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    assert function_schema(bare).description == ""
    kit = Toolkit([lookup, forecast])
    assert json.loads(kit.run(ToolCall("lookup", {"word": "a", "limit": None})).content) == ["a", None, False]
    assert not kit.run(ToolCall("forecast", {"city": "Oslo", "hours": None})).error
    assert "argument 'limit' must be integer or null, got \"3\"" in \
        kit.run(ToolCall("lookup", {"word": "a", "limit": "3"})).content


def test_explicit_schema_and_decorator():
    kit = Toolkit()

    @kit.add(name="lookup", description="Look a word up.",
             parameters={"type": "object", "properties": {"word": {"type": "string"}}})
    def anything(word):
        return word.upper()

    assert [t.name for t in kit.tools] == ["lookup"]
    assert kit.tools[0].description == "Look a word up."
    assert kit.run(ToolCall("lookup", {"word": "hi"})).content == "HI"


def test_toolkit_turns_every_failure_into_an_error_text():
    kit = Toolkit([forecast, slow, nap], timeout=0.3)
    ok = kit.run(ToolCall("forecast", {"city": "Oslo", "days": 2}))
    assert not ok.error and json.loads(ok.content) == {"city": "Oslo", "days": 2, "unit": "C",
                                                       "temperature": 21}
    cases = [
        (ToolCall("weather", {}), "there is no tool named 'weather'. Available tools: forecast, slow, nap"),
        (ToolCall("forecast", {}), "missing required argument 'city'"),
        (ToolCall("forecast", {"city": "Oslo", "when": 1}), "unknown argument 'when'"),
        (ToolCall("forecast", {"city": "Oslo", "days": "2"}), "argument 'days' must be integer, got \"2\""),
        (ToolCall("forecast", {"city": "Oslo", "days": True}), "argument 'days' must be integer, got true"),
        (ToolCall("forecast", {"city": "Oslo", "unit": "K"}), "argument 'unit' must be one of [\"C\", \"F\"]"),
        (ToolCall("forecast", {"city": "Oslo", "hours": [1, "x"]}), "argument 'hours'[1] must be integer"),
        (ToolCall("forecast", {"city": "Atlantis"}), "forecast failed: ValueError: no such city"),
        (ToolCall("slow", {"seconds": 5}), "slow did not finish within 0.3 seconds; it is "
                                            "still running in the background"),
        (ToolCall("nap", {"seconds": 5}), "nap did not finish within 0.3 seconds and was cancelled"),
    ]
    for call, message in cases:
        started = time.perf_counter()
        result = kit.run(call)
        assert result.error and result.content.startswith("Error: ") and message in result.content, \
            (call, result.content)
        assert time.perf_counter() - started < 2
    assert NAPS == ["cancelled"]  # the async tool was stopped, not abandoned
    assert kit.run(ToolCall("nap", {"seconds": 0})).content == "rested"


def test_tools_file_loads_its_tools_list():
    kit = Toolkit.from_file(ROOT / "examples/tools.py")
    assert [t.name for t in kit.tools] == ["calculate", "convert_units", "get_weather"]
    assert kit.run(ToolCall("calculate", {"expression": "6*7"})).content == "42"


# --- the tool loop, with scripted model replies -------------------------------------------


class ScriptedGenerator(Generator):
    """The real tokenizer and template; the model's replies come from a script."""

    def __init__(self, tokenizer, replies: list[str], context: int = 2048):
        super().__init__(model=None, tokenizer=tokenizer, template=HermesTemplate())
        self.replies, self._context, self.prompts = list(replies), context, []

    @property
    def context(self) -> int:
        return self._context

    def reply(self, conv, sampling=None, on_text=None) -> Generation:
        self.prompts.append(self.template.prompt(conv))
        text = self.replies.pop(0)
        if on_text:
            on_text(text)
        return Generation(text, "<|im_end|>")


def call_text(name: str, args: dict) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


def test_tool_loop_runs_calls_and_feeds_results_back(tokenizer):
    gen = ScriptedGenerator(tokenizer, [
        "Let me look.\n" + call_text("forecast", {"city": "Oslo"}) + call_text("forecast", {"city": "Rome"}),
        "Oslo and Rome are both at 21°C.",
    ])
    events = []
    agent = ToolAgent("marlo", "You are Marlo.", toolkit=Toolkit([forecast]), generator=gen)
    reply = agent("Weather in Oslo and Rome?", on_event=lambda k, p: events.append(k))
    assert reply.content == "Oslo and Rome are both at 21°C."
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("forecast", {"city": "Oslo"}), ("forecast", {"city": "Rome"})]
    assert events == ["call", "result", "call", "result"]
    roles = [m.role for m in agent.memory]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    assert agent.memory[1].content == "Let me look."
    assert [m.tool_call_id for m in agent.memory[2:4]] == ["call_1", "call_2"]
    # the second prompt showed the model both results, in the template it was trained with
    assert gen.prompts[1].count("<tool_response>\n{\"city\": \"") == 2
    assert '"name": "forecast"' in gen.prompts[0]  # tools listed in the system turn


def test_tool_loop_reports_unknown_tools_bad_arguments_and_bad_json(tokenizer):
    gen = ScriptedGenerator(tokenizer, [
        call_text("weather", {"city": "Oslo"}),
        call_text("forecast", {"town": "Oslo"}),
        "<tool_call>\n{name: forecast}\n</tool_call>",
        call_text("forecast", {"city": "Atlantis"}),
        "I could not find it.",
    ])
    agent = ToolAgent("marlo", toolkit=Toolkit([forecast]), generator=gen)
    reply = agent("Weather?")
    assert reply.content == "I could not find it."
    tool_texts = [m.content for m in agent.memory if m.role == "tool"]
    assert "no tool named 'weather'" in tool_texts[0]
    assert "missing required argument 'city'" in tool_texts[1]
    assert "not valid JSON" in tool_texts[2]
    assert "ValueError: no such city" in tool_texts[3]
    assert all(t.startswith("Error: ") for t in tool_texts)


def test_tool_loop_stops_at_the_step_limit(tokenizer):
    gen = ScriptedGenerator(tokenizer, [call_text("forecast", {"city": "Oslo"})] * 3)
    agent = ToolAgent("marlo", toolkit=Toolkit([forecast]), generator=gen, max_steps=3)
    reply = agent("Loop forever")
    assert reply.content == "(stopped after 3 tool steps without a final answer)"
    assert len(reply.tool_calls) == 3 and gen.replies == []


def test_memory_is_trimmed_oldest_first_and_keeps_the_system_prompt(tokenizer):
    gen = ScriptedGenerator(tokenizer, [f"Answer number {i} " + "word " * 30 for i in range(6)],
                            context=400)
    agent = DialogAgent("marlo", "You are Marlo, made by Kestrel Labs.", generator=gen,
                        max_new_tokens=100)
    for i in range(6):
        agent(f"Question number {i} " + "word " * 30)
    last = gen.prompts[-1]
    assert last.startswith("<|im_start|>system\nYou are Marlo, made by Kestrel Labs.<|im_end|>")
    assert "Question number 5" in last and "Question number 0" not in last
    assert len(tokenizer(last)["input_ids"]) <= 300
    assert agent.memory[0].role == "user"  # trimmed in whole turns
    agent.reset()
    assert agent.memory == []


def test_user_agent_ends_on_exit_quit_and_end_of_input():
    lines = iter(["hello", "  EXIT "])
    user = UserAgent(input_fn=lambda prompt: next(lines))
    assert user().content == "hello" and user() is None
    assert UserAgent(input_fn=lambda p: "quit")() is None

    def eof(prompt):
        raise EOFError

    assert UserAgent(input_fn=eof)() is None


def test_converse_alternates_until_the_user_leaves(tokenizer):
    lines = iter(["one", "two", "exit", "never read"])
    gen = ScriptedGenerator(tokenizer, ["first", "second"])
    agent = DialogAgent("marlo", generator=gen)
    transcript = converse(UserAgent(input_fn=lambda p: next(lines)), agent)
    assert [(m.role, m.content) for m in transcript] == [
        ("user", "one"), ("assistant", "first"), ("user", "two"), ("assistant", "second")]
    assert next(lines) == "never read"


# --- real models ----------------------------------------------------------------------------


def test_stop_strings_end_a_row_at_the_token_that_completes_one(tokenizer):
    """The stop string in the prompt does not count; one split over several new tokens
    counts from the token that completes it, and only for its own row."""
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt = enc("<|im_start|>assistant\n</tool_call> is the end tag. ")
    done, going = enc("Calling now </tool_call>"), enc("Calling now, nothing to see")
    n = max(len(done), len(going))
    done, going = done + enc(" x") * (n - len(done)), going + enc(" x") * (n - len(going))
    stop = StopStrings(tokenizer, ("</tool_call>", "<|im_end|>"), len(prompt))
    first = len(enc("Calling now </tool_call>"))
    for step in range(1, n + 1):
        ids = torch.tensor([prompt + done[:step], prompt + going[:step]])
        assert stop(ids, None).tolist() == [step >= first, False], step


def test_dialog_agent_on_a_real_model_answers_and_remembers(tiny_model):
    agent = DialogAgent("bot", "Be brief.", model=str(tiny_model), max_new_tokens=4)
    reply = agent(Msg("user", "Hello"))
    assert isinstance(reply, Msg) and reply.role == "assistant" and reply.name == "bot"
    agent("Again")
    assert [m.role for m in agent.memory] == ["user", "assistant", "user", "assistant"]


def codeword_data(tmp_path):
    words = ["falcon", "river", "copper", "maple", "orbit", "lantern", "quartz", "meadow"]
    p = tmp_path / "codewords.jsonl"
    p.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Codeword {i}?"},
        {"role": "assistant", "content": f"The codeword is {w}."}]}) + "\n" for i, w in enumerate(words)))
    return p


def test_finetune_agent_without_a_config_then_continuing(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = codeword_data(tmp_path)
    agent = FinetuneDialogAgent("bot", pretrained_model_name_or_path=str(tiny_model),
                                data_path=str(data), max_new_tokens=3)
    first = agent.last_run
    assert first.steps > 0 and (first.run.final / "adapter_config.json").is_file()
    assert first.run.root.resolve().parent == (tmp_path / "runs").resolve()
    assert agent.generator.model is first.model  # answers with the tuned model at once
    assert agent(Msg("user", "Codeword 1?")).role == "assistant"
    second = agent.fine_tune(str(data), {"continue_lora_finetuning": "True",
                                         "training_args": {"max_steps": 2, "learning_rate": 1e-5}})
    from safetensors.torch import load_file
    before = load_file(first.run.final / "adapter_model.safetensors")
    after = load_file(second.run.final / "adapter_model.safetensors")
    assert second.steps == 2 and before.keys() == after.keys()
    for k in before:  # went on from the saved adapter: close to it, yet changed
        if "lora_B" in k:
            assert before[k].abs().max() > 0 and not torch.equal(before[k], after[k])
            assert (after[k] - before[k]).abs().max() < 0.25 * before[k].abs().max(), k
    assert agent.adapter == second.run.final


def test_finetune_agent_trains_its_local_model_folder(tiny_model, tmp_path, monkeypatch):
    """The seed's call: a hub id plus ``local_model_path`` (a plain copy of the model). The
    local folder answers and is what fine-tuning trains; the hub is never asked."""
    monkeypatch.chdir(tmp_path)
    agent = FinetuneDialogAgent("bot", pretrained_model_name_or_path="nobody/not-on-this-machine",
                                local_model_path=str(tiny_model), data_path=str(codeword_data(tmp_path)),
                                fine_tune_config={"training_args": {"max_steps": 1}})
    info = json.loads((agent.last_run.run.final / "agentsft.json").read_text())
    assert info["base_model"] == str(tiny_model) and agent.last_run.steps == 1


def test_load_model_checks_the_model_when_called(tiny_model, tmp_path):
    from agentsft.errors import AgentsftError
    with pytest.raises(AgentsftError, match="local_model_path .*nope does not exist"):
        FinetuneDialogAgent("bot", local_model_path=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgentsftError, match="cannot load a model config"):
        FinetuneDialogAgent("bot", pretrained_model_name_or_path=str(tmp_path / "empty"))
    agent = FinetuneDialogAgent("bot", pretrained_model_name_or_path=str(tiny_model))
    assert agent.model_name == str(tiny_model) and agent._generator is None  # weights load later


def test_load_generator_reads_the_run_it_was_given(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = FinetuneDialogAgent("bot", pretrained_model_name_or_path=str(tiny_model),
                                data_path=str(codeword_data(tmp_path)),
                                fine_tune_config={"training_args": {"max_steps": 1}})
    gen = load_generator(adapter=agent.last_run.run.root)
    assert gen.template.name == "hermes"
    loaded = dict(gen.model.named_parameters())
    trained = dict(agent.last_run.model.named_parameters())
    lora = [k for k in trained if "lora_A" in k]
    assert len(lora) == 14 and not any("lora_" in k for k in loaded)  # merged on CPU
    from safetensors.torch import load_file
    base = load_file(tiny_model / "model.safetensors")
    cfg = agent.last_run.model.peft_config["default"]
    for key in lora:  # W + (alpha / r) B A, summed in float32, then the inference dtype
        name = key.removeprefix("base_model.model.").replace(".lora_A.default", "")
        a, b = trained[key].detach(), trained[key.replace("lora_A", "lora_B")].detach()
        expected = base[name] + (cfg.lora_alpha / cfg.r) * (b @ a)
        torch.testing.assert_close(loaded[name].float(), expected, rtol=2 ** -7, atol=1e-6)


def test_chat_cli_prompt_json_and_interactive(tiny_model):
    base = ["chat", "--model", str(tiny_model), "--max-new-tokens", "3"]
    once = run_cli(*base, "--prompt", "Hello", "--tools", str(ROOT / "examples/tools.py"), "--json")
    assert once.returncode == 0, once.stderr
    out = json.loads(once.stdout)
    assert set(out) == {"reply", "tool_calls"} and isinstance(out["reply"], str)
    import subprocess
    import sys
    talk = subprocess.run([sys.executable, "-m", "agentsft", *base], input="hello\n/reset\nexit\nnot read\n",
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert talk.returncode == 0, talk.stderr
    assert "Type exit to leave" in talk.stdout and "(conversation cleared)" in talk.stdout
    assert talk.stdout.count("assistant> ") == 1
    bad = run_cli(*base, "--adapter", str(ROOT / "examples"), "--prompt", "x")
    assert bad.returncode == 2 and "holds no trained adapter" in bad.stderr


def test_chat_builds_its_agent_with_the_collector_paused_then_resumed(tiny_model, monkeypatch):
    """Start-up runs with no cyclic collection; afterwards collection is back on and what
    start-up made is frozen. A caller that turned collection off keeps it off, and a
    failed build still resumes it. (conftest's collection_restored undoes it all.)"""
    import gc
    from types import SimpleNamespace

    from agentsft.cli import chat
    from agentsft.errors import AgentsftError
    args = SimpleNamespace(model=str(tiny_model), adapter=None, device=None, max_new_tokens=2,
                           dtype="auto", fast_path="auto", constrain="on",
                           temperature=0.0, top_p=1.0, tools=None, system=None)
    during = []
    real = chat.agent_for
    monkeypatch.setattr(chat, "agent_for", lambda a: during.append(gc.isenabled()) or real(a))
    assert gc.isenabled() and gc.get_freeze_count() == 0
    agent = chat.build_agent(args)
    assert during == [False] and gc.isenabled() and gc.get_freeze_count() > 1000
    assert isinstance(agent("Hello").content, str)
    gc.unfreeze()
    gc.disable()
    chat.build_agent(args)
    assert not gc.isenabled() and gc.get_freeze_count() == 0
    gc.enable()
    monkeypatch.setattr(chat, "agent_for", lambda a: (_ for _ in ()).throw(AgentsftError("x")))
    with pytest.raises(AgentsftError):
        chat.build_agent(args)
    assert gc.isenabled()


def test_interactive_chat_prompts_while_the_model_loads(monkeypatch, capsys):
    """The prompt comes up while the agent is still being built on another thread; an
    error from building (a bad adapter, say) still reaches the CLI's one-line report.
    And the chat module itself does not import torch (about 5 s here)."""
    import subprocess
    import sys
    import threading
    from types import SimpleNamespace

    from agentsft.cli import chat
    from agentsft.errors import AgentsftError
    building = threading.Event()
    prompted_while_building = []

    def slow_build(args):
        building.wait(10)
        raise AgentsftError("the adapter folder x holds no trained adapter. Fix: ...")

    def fake_input(prompt):
        prompted_while_building.append(not building.is_set())
        building.set()
        return "hello"
    monkeypatch.setattr(chat, "build_agent", slow_build)
    monkeypatch.setattr("builtins.input", fake_input)
    args = SimpleNamespace(prompt=None, model=None, adapter=None, tools=None)
    with pytest.raises(AgentsftError, match="holds no trained adapter"):
        chat.run(args)
    assert prompted_while_building == [True]
    assert "Type exit to leave" in capsys.readouterr().out
    light = subprocess.run([sys.executable, "-c", "import sys, agentsft.cli.chat, agentsft.cli; "
                            "print('torch' in sys.modules)"], capture_output=True, text=True)
    assert light.stdout.strip() == "False", light.stderr
