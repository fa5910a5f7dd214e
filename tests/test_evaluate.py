"""Evaluation: steps from gold histories, batched generation, the files written, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, run_cli

from agentsft import config
from agentsft.data.readers import read_conversations
from agentsft.data.templates import get_template
from agentsft.evaluation import agent_steps, evaluate, markdown_table, score, stepwise_steps
from agentsft.inference import Generator, Sampling, load_generator
from agentsft.training import train

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def weather(i: int, city: str, with_id: bool) -> dict:
    record = {"tools": TOOLS, "messages": [
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": city}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f'{{"temperature": {10 + i}}}'},
        {"role": "assistant", "content": f"It is {10 + i} degrees in {city}."}]}
    if with_id:
        record["id"] = f"w-{i}"
    return record


@pytest.fixture(scope="module")
def tool_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "weather.jsonl"
    cities = ["Paris", "Rome", "Oslo", "Lima"]
    path.write_text("".join(json.dumps(weather(i, c, with_id=i != 1)) + "\n"
                            for i, c in enumerate(cities)))
    return path


@pytest.fixture(scope="module")
def run_dir(tiny_model, tool_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "weather"
    cfg = config.load(flags={"model.name": str(tiny_model), "data.train": [str(tool_data)],
                             "data.val_fraction": 0, "training.output": str(out),
                             "training.max_steps": 3, "training.batch_size": 4})
    train(cfg)
    return out


def test_msagent_two_calls_give_two_call_steps_and_one_summary(tokenizer):
    convs = read_conversations(FIXTURES / "msagent.jsonl").conversations
    two = next(c for c in convs if c.id == "two-calls")
    steps = stepwise_steps([two])
    assert [s.step for s in steps] == [1, 2, 3]
    assert [[c.name for c in s.gold_calls] for s in steps] == [["get_weather"], ["convert_units"], []]
    assert steps[2].gold_text == "Paris is at 14°C, which is 287.15 K."
    template = get_template("msagent", tokenizer)
    # The gold history of step 2 holds the gold first call and its result, and the prompt
    # continues the same assistant turn after the result (no new turn header).
    prompt = template.prompt(steps[1].history)
    assert prompt.endswith("```JSON\n{\"temperature\": 14}\n```<|endofexec|>\n")
    assert prompt.count("<|assistant|>:") == 1
    # The gold reply written as a model would write it scores perfectly.
    for s in steps:
        full = template.render(type(s.history)(s.history.messages + [s.gold], s.history.tools)).text
        raw = full[len(template.prompt(s.history)):].split("<|startofexec|>")[0]
        row = score(s, raw.removesuffix(tokenizer.eos_token + "\n").removesuffix(tokenizer.eos_token),
                    template, numeric_strings=False)
        sc = row["scores"]
        if s.gold_calls:
            assert (sc["decision"], sc["name_accuracy"], sc["exact_match"], sc["valid_json"]) == (1, 1, 1, 1)
            assert sc["schema_valid"] == (1.0 if s.history.tools else None)
            assert sc["rouge_l"] is None
        else:
            assert sc["rouge_l"] == 1.0 and sc["name_accuracy"] is None


def test_agent_steps_are_user_turns_with_all_their_calls():
    convs = read_conversations(FIXTURES / "msagent.jsonl").conversations
    two_round = next(c for c in convs if c.id == "two-round")
    steps = agent_steps([two_round])
    assert [[c.name for c in s.gold_calls] for s in steps] == [["get_weather"], ["convert_units"]]
    assert steps[1].gold_text == "杭州现在约69.8华氏度。"


def test_an_unparseable_call_is_scored_not_fatal(tokenizer, tool_data):
    convs = read_conversations(tool_data).conversations
    step = stepwise_steps(convs[:1])[0]
    row = score(step, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
                get_template("hermes", tokenizer), numeric_strings=False)
    assert row["predicted_calls"] == [] and row["scores"]["valid_json"] == 0.0
    assert step.history.tools and row["scores"]["schema_valid"] == 0.0
    assert row["scores"]["decision"] == 1.0 and row["scores"]["exact_match"] == 0.0


def test_batched_generation_equals_one_at_a_time(tiny_model, tokenizer, tool_data):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    gen = Generator(model, tokenizer, get_template("hermes", tokenizer))
    convs = read_conversations(tool_data).conversations
    prompts = [gen.template.prompt(s.history) for s in stepwise_steps(convs)]
    assert len({len(p) for p in prompts}) > 2  # different lengths: left padding matters
    sampling = Sampling(max_new_tokens=12)
    batched = gen.complete_batch(prompts, sampling, batch_size=8)
    alone = [gen.complete(p, sampling) for p in prompts]
    assert [b.text for b in batched] == [a.text for a in alone]


def test_evaluate_scores_every_step_and_perplexity(run_dir, tool_data):
    gen = load_generator(adapter=run_dir)
    convs = read_conversations(tool_data).conversations
    report, rows = evaluate(gen, convs, sampling=Sampling(max_new_tokens=24), progress=None)
    assert len(rows) == 8 and report["overall"]["steps"] == 8
    assert report["overall"]["call_steps"] == 4 and report["overall"]["text_steps"] == 4
    assert report["overall"]["perplexity"] > 1 and report["overall"]["ppl_tokens"] > 0
    assert "schema_valid" in report["overall"]
    assert set(report["per_tool"]) == {"get_weather", "(no call)"}
    assert [r["id"] for r in rows[:4]] == ["w-0", "w-0", "2", "2"]  # own id, else line number
    assert rows[0]["gold_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]


def test_eval_cli_writes_report_and_predictions(run_dir, tool_data, tmp_path):
    out = tmp_path / "eval"
    r = run_cli("eval", "--data", str(tool_data), "--adapter", str(run_dir), "-o", str(out),
                "--max-new-tokens", "16", "--compare-base")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| tool-name accuracy |" in r.stdout and "| metric | base | tuned | change |" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["steps"] == 8 and "base" in report
    assert report["constrained_calls"] is True and "| calls valid against the schema |" in r.stdout
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert set(rows[0]) >= {"id", "step", "raw_output", "predicted_calls", "gold_calls",
                            "predicted_text", "gold_text", "scores"}
    assert (out / "base" / "predictions.jsonl").is_file()
    r = run_cli("eval", "--data", str(tool_data), "--adapter", str(run_dir), "-o", str(out / "free"),
                "--max-new-tokens", "16", "--constrain", "off", "--limit", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "free" / "report.json").read_text())["constrained_calls"] is False


def test_eval_cli_refuses_agent_mode_without_tools(tool_data):
    r = run_cli("eval", "--data", str(tool_data), "--mode", "agent")
    assert r.returncode == 2 and "--tools" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("eval", "--data", str(tool_data), "--compare-base")
    assert r.returncode == 2 and "--adapter" in r.stderr and len(r.stderr.splitlines()) == 1


def test_markdown_table_shows_change():
    table = markdown_table({"base": {"name_accuracy": 0.25, "steps": 4},
                            "tuned": {"name_accuracy": 0.75, "steps": 4}})
    assert "| tool-name accuracy | 0.250 | 0.750 | +0.500 |" in table


def test_training_logs_generated_tool_accuracy_beside_the_loss(tiny_model, tool_data, tmp_path):
    out = tmp_path / "run"
    cfg = config.load(flags={"model.name": str(tiny_model), "data.train": [str(tool_data)],
                             "data.val": [str(tool_data)], "training.output": str(out),
                             "training.max_steps": 3, "training.batch_size": 2,
                             "training.log_every": 1, "eval.tool_eval_every": 2,
                             "eval.tool_eval_samples": 2, "eval.max_new_tokens": 8,
                             "training.precision": "fp32"})
    result = train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tool_rows = [r for r in rows if "tool_decision" in r]
    assert [r["step"] for r in tool_rows] == [2, 3]  # every 2 steps, and at the end
    assert any("loss" in r for r in rows) and (out / "loss.png").stat().st_size > 1000
    # The last one is the trained model's score on the same sample, recomputed here.
    import random

    from agentsft.evaluation import metrics
    from agentsft.evaluation.evaluate import predict_stepwise
    from agentsft.evaluation.steps import stepwise_steps
    sample = random.Random(cfg.training.seed).sample(read_conversations(tool_data).conversations, 2)
    gen = Generator(result.model, result.tokenizer, result.template)
    agg = metrics.aggregate([r["scores"] for r in predict_stepwise(
        gen, stepwise_steps(sample), Sampling(8), 8, numeric_strings=False, progress=None)])
    assert tool_rows[-1]["tool_decision"] == pytest.approx(agg["decision"])
    assert tool_rows[-1].get("tool_name_accuracy") == agg.get("name_accuracy")


def test_agent_mode_runs_each_user_turn_through_the_tool_agent(run_dir, tool_data):
    from agentsft.agents import Toolkit, tool_agents
    from conftest import ROOT
    gen = load_generator(adapter=run_dir)
    convs = read_conversations(tool_data).conversations[:2]
    toolkit = Toolkit.from_file(ROOT / "examples" / "tools.py")
    sampling = Sampling(max_new_tokens=16)
    report, rows = evaluate(gen, convs, mode="agent", sampling=sampling,
                            make_agent=tool_agents(gen, toolkit, sampling), perplexity=False,
                            progress=None)
    assert report["mode"] == "agent" and len(rows) == 2  # one user turn each
    assert rows[0]["gold_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert rows[0]["gold_text"] == "It is 10 degrees in Paris."
    transcript = json.loads(rows[0]["raw_output"])  # the agent's turn, as messages
    assert transcript and transcript[-1]["role"] == "assistant"
    made = [c for m in transcript if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    called = bool(rows[0]["predicted_calls"])
    assert rows[0]["scores"]["did_call"] == called and rows[0]["scores"]["should_call"]
    assert rows[0]["scores"]["decision"] == float(called)  # gold has a call
    assert len(made) >= len(rows[0]["predicted_calls"])


def test_gold_perplexity_is_the_mean_loss_of_the_trained_tokens(tiny_model, tokenizer, tool_data):
    """Against the plain computation: full logits, shifted cross-entropy over trained tokens."""
    from transformers import AutoModelForCausalLM

    from agentsft.data.tokenize import IGNORE_INDEX, encode
    from agentsft.evaluation import gold_perplexity
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    gen = Generator(model, tokenizer, get_template("hermes", tokenizer))
    convs = read_conversations(tool_data).conversations
    got = gold_perplexity(gen, convs, batch_size=3)
    nll, n = 0.0, 0
    for conv in convs:
        ex = encode(gen.template.render(conv), tokenizer)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ex.input_ids])).logits[0, :-1]
        target = torch.tensor(ex.labels[1:])
        nll += float(torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX,
                                                       reduction="sum"))
        n += int((target != IGNORE_INDEX).sum())
    assert got["ppl_tokens"] == n
    assert got["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)


def test_evaluate_a_full_fine_tune(tiny_model, tool_data, tmp_path):
    out = tmp_path / "full"
    train(config.load(flags={"model.name": str(tiny_model), "data.train": [str(tool_data)],
                             "data.val_fraction": 0, "training.output": str(out),
                             "training.method": "full", "training.max_steps": 2}))
    gen = load_generator(adapter=out)  # a run holding a whole model, not an adapter
    assert gen.template.name == "hermes" and not hasattr(gen.model, "peft_config")
    report, rows = evaluate(gen, read_conversations(tool_data).conversations[:1],
                            sampling=Sampling(max_new_tokens=8), progress=None)
    assert len(rows) == 2 and report["overall"]["perplexity"] > 1
