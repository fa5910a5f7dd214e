"""Evaluation of a tool-calling agent: generate, score, report.

Two modes:

- ``stepwise`` (default): every assistant step of every conversation is generated from the
  gold history before it (the gold earlier calls and the gold tool results), then scored
  against the gold step: call decision, tool name, arguments, valid JSON, ROUGE-L of text
  answers (:mod:`agentsft.evaluation.metrics`).
- ``agent``: each user turn runs through a tool agent with real tools, made by a callback
  (``make_agent``: the agents layer sits above this one); the calls it made and its final
  answer are scored against the gold turn.

Perplexity is measured on the gold assistant tokens (the tokens training puts in the loss).
The predictions are written one line per scored step, with the raw output, so any other
checker can re-score them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from agentsft.accel.inference import trained_logits
from agentsft.data.collate import PadCollator
from agentsft.data.schema import Conversation, ToolCall, message_to_dict
from agentsft.data.templates import AgentTemplate, CallParseError
from agentsft.data.tokenize import encode
from agentsft.errors import AgentsftError
from agentsft.evaluation import metrics
from agentsft.evaluation.steps import Step, agent_steps, source_file, stepwise_steps
from agentsft.inference import Generator, Sampling

MODES = ("stepwise", "agent")


def parse_output(template: AgentTemplate, raw: str) -> tuple[list[ToolCall], str, int]:
    """Calls, text and the number of calls that could not be parsed, from a raw output."""
    try:
        reply = template.parse_reply(raw)
        return reply.tool_calls, reply.content, 0
    except CallParseError:
        marker = template.call_marker
        text = raw.split(marker, 1)[0].strip() if marker else raw.strip()
        return [], text, max(1, raw.count(marker)) if marker else 1


def call_dicts(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"name": c.name, "arguments": c.arguments} for c in calls]


def score(step: Step, raw: str, template: AgentTemplate, numeric_strings: bool,
          calls: list[ToolCall] | None = None, text: str | None = None) -> dict[str, Any]:
    """The predictions.jsonl row of one step (``calls``/``text`` given: the agent's)."""
    invalid = 0
    if calls is None:
        calls, text, invalid = parse_output(template, raw)
    scores = metrics.score_step(calls, step.gold_calls, text or "", step.gold_text, invalid,
                                numeric_strings, step.history.tools)
    return {"id": step.id, "step": step.step, "file": step.file, "raw_output": raw,
            "predicted_calls": call_dicts(calls), "gold_calls": call_dicts(step.gold_calls),
            "predicted_text": text or "", "gold_text": step.gold_text, "scores": scores}


def predict_stepwise(gen: Generator, steps: list[Step], sampling: Sampling, batch_size: int,
                     numeric_strings: bool, progress: str | None = "generating") -> list[dict]:
    prompts = [gen.template.prompt(s.history) for s in steps]
    outputs = gen.complete_batch(prompts, sampling, batch_size, progress,
                                 limits=[gold_budget(gen, s) for s in steps],
                                 tools=[s.history.tools for s in steps])
    return [score(s, o.text, gen.template, numeric_strings) for s, o in zip(steps, outputs)]


def gold_budget(gen: Generator, step: Step) -> int:
    """New tokens worth generating for a step: twice its gold reply plus 32. A reply still
    going past that cannot match the gold one (a call would be unfinished, a text answer's
    ROUGE-L only falls), and a rambling base model would otherwise run every step to
    max_new_tokens."""
    gold = gen.template.render(Conversation(step.history.messages + [step.gold], step.history.tools))
    prompt = gen.template.prompt(step.history)
    return 2 * len(gen.tokenizer(gold.text[len(prompt):], add_special_tokens=False)["input_ids"]) + 32


MakeAgent = Callable[[Optional[str]], Any]
"""Makes a fresh tool agent for one user turn, given its system prompt (or None): an object
with a ``memory`` list of messages that answers when called, giving a message with
``content`` and ``tool_calls``. The agents layer provides one (``agentsft.agents.tool_agents``);
evaluation does not import it."""


def predict_agent(gen: Generator, steps: list[Step], make_agent: MakeAgent,
                  numeric_strings: bool, progress: str | None = "agent") -> list[dict]:
    rows = []
    for s in tqdm(steps, desc=progress, unit="turn", disable=progress is None, dynamic_ncols=True):
        msgs = s.history.messages
        system = msgs[0].content if msgs and msgs[0].role == "system" else None
        agent = make_agent(system)
        agent.memory = list(msgs[1:] if system is not None else msgs)
        before = len(agent.memory)
        reply = agent()
        made = list(reply.tool_calls or [])
        # The agent's transcript of the turn (its replies and the tool results) as messages.
        raw = json.dumps([message_to_dict(m) for m in agent.memory[before:]], ensure_ascii=False)
        rows.append(score(s, raw, gen.template, numeric_strings, made, reply.content))
    return rows


def gold_perplexity(gen: Generator, convs: list[Conversation], batch_size: int
                    ) -> dict[str, Any]:
    """Perplexity of the gold assistant tokens (overall and per file); conversations longer
    than the model's context are counted, not scored."""
    rows, files, too_long = [], [], 0
    for conv in convs:
        ex = encode(gen.template.render(conv), gen.tokenizer, conv.source)
        if len(ex.input_ids) > gen.context:
            too_long += 1
            continue
        rows.append({"input_ids": ex.input_ids, "labels": ex.labels})
        files.append(source_file(conv))
    nll: dict[str, float] = {}
    count: dict[str, int] = {}
    collate = PadCollator(gen.tokenizer.pad_token_id)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    model = gen.model
    was_training = model.training
    model.eval()
    try:
        for at in range(0, len(order), batch_size):
            chunk = order[at:at + batch_size]
            batch = {k: v.to(model.device) for k, v in collate([rows[i] for i in chunk]).items()}
            labels = batch.pop("labels")
            with torch.no_grad():
                logits, targets, keep = trained_logits(model, {**batch, "use_cache": False}, labels)
            losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            owner = keep.nonzero()[:, 0]  # the row of each kept position, in order
            for row, i in enumerate(chunk):
                f = files[i]
                nll[f] = nll.get(f, 0.0) + float(losses[owner == row].sum())
                count[f] = count.get(f, 0) + int((owner == row).sum())
    finally:
        model.train(was_training)
    total_nll, total = sum(nll.values()), sum(count.values())
    return {"perplexity": metrics.perplexity_from(total_nll, total), "ppl_tokens": total,
            "ppl_skipped_too_long": too_long,
            "per_file": {f: metrics.perplexity_from(nll[f], count[f]) for f in nll}}


def evaluate(gen: Generator, convs: list[Conversation], mode: str = "stepwise",
             sampling: Sampling | None = None, batch_size: int = 8,
             make_agent: MakeAgent | None = None, numeric_strings: bool = False,
             perplexity: bool = True, progress: str | None = "generating"
             ) -> tuple[dict[str, Any], list[dict]]:
    """Score ``gen`` on ``convs``: the report and the per-step predictions. ``mode="agent"``
    runs each user turn through an agent from ``make_agent``."""
    sampling = sampling or Sampling()
    began = time.perf_counter()
    if mode == "agent":
        if make_agent is None:
            raise AgentsftError("agent mode runs each user turn through a tool agent. Fix: pass "
                                "make_agent=agentsft.agents.tool_agents(generator, toolkit, sampling)")
        rows = predict_agent(gen, agent_steps(convs), make_agent, numeric_strings, progress)
    else:
        rows = predict_stepwise(gen, stepwise_steps(convs), sampling, batch_size,
                                numeric_strings, progress)
    for r in rows:
        r["tool"] = sorted({c["name"] for c in r["gold_calls"]})
    overall = metrics.aggregate([r["scores"] for r in rows])
    report: dict[str, Any] = {
        "mode": mode, "template": gen.template.name, "conversations": len(convs),
        "constrained_calls": gen.constrain,
        "overall": overall, "per_tool": metrics.aggregate_by(rows, "tool"),
        "per_file": metrics.aggregate_by(rows, "file")}
    if perplexity:
        ppl = gold_perplexity(gen, convs, batch_size)
        overall.update({k: ppl[k] for k in ("perplexity", "ppl_tokens", "ppl_skipped_too_long")})
        for f, value in ppl["per_file"].items():
            report["per_file"].setdefault(f, {})["perplexity"] = value
    report["seconds"] = round(time.perf_counter() - began, 1)
    for r in rows:
        del r["tool"]
    return report, rows
