"""Evaluation of a tool-calling agent: generate, score, report.

Two modes:

- ``stepwise`` (default): every assistant step of every conversation is generated from the
  gold history before it (the gold earlier calls and the gold tool results), then scored
  against the gold step: call decision, tool name, arguments, valid JSON, ROUGE-L of text
  answers (:mod:`agentsft.metrics`).
- ``agent``: each user turn runs through a :class:`~agentsft.agents.ToolAgent` with real
  tools; the calls it made and its final answer are scored against the gold turn.

Perplexity is measured on the gold assistant tokens (the tokens training puts in the loss).
The predictions are written one line per scored step, with the raw output, so any other
checker can re-score them.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agentsft import metrics
from agentsft.data.schema import Conversation, Message, ToolCall, message_to_dict
from agentsft.data.templates import AgentTemplate, CallParseError
from agentsft.data.tokenize import encode
from agentsft.errors import AgentsftError
from agentsft.files import write_text_atomically
from agentsft.generate import Generator, Sampling
from agentsft.packing import PadCollator, trained_logits

MODES = ("stepwise", "agent")


@dataclass
class Step:
    """One assistant step to predict: the prompt before it and the gold reply."""

    id: str
    step: int
    file: str
    history: Conversation
    gold: Message
    gold_calls: list[ToolCall] = field(default_factory=list)
    gold_text: str = ""


def record_id(conv: Conversation) -> str:
    """The record's own id, else its line number."""
    if conv.id is not None:
        return conv.id
    return (conv.source or "?").rsplit(":", 1)[-1]


def source_file(conv: Conversation) -> str:
    return (conv.source or "?").rsplit(":", 1)[0]


def stepwise_steps(convs: list[Conversation]) -> list[Step]:
    """Every assistant message, with the gold conversation before it as its history."""
    steps = []
    for conv in convs:
        n = 0
        for i, m in enumerate(conv.messages):
            if m.role != "assistant":
                continue
            n += 1
            history = Conversation(conv.messages[:i], tools=conv.tools, source=conv.source, id=conv.id)
            steps.append(Step(record_id(conv), n, source_file(conv), history, m,
                              list(m.tool_calls), m.content))
    return steps


def agent_steps(convs: list[Conversation]) -> list[Step]:
    """Every user turn, with the gold turn that answers it: all the calls the assistant
    made before its final answer, and that answer."""
    steps = []
    for conv in convs:
        users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
        for n, u in enumerate(users, 1):
            end = next((j for j in users if j > u), len(conv.messages))
            turn = [m for m in conv.messages[u + 1:end] if m.role == "assistant"]
            if not turn:
                continue
            calls = [c for m in turn for c in m.tool_calls]
            history = Conversation(conv.messages[:u + 1], tools=conv.tools, source=conv.source,
                                   id=conv.id)
            steps.append(Step(record_id(conv), n, source_file(conv), history, turn[-1], calls,
                              turn[-1].content if not turn[-1].tool_calls else ""))
    return steps


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
                                numeric_strings)
    return {"id": step.id, "step": step.step, "file": step.file, "raw_output": raw,
            "predicted_calls": call_dicts(calls), "gold_calls": call_dicts(step.gold_calls),
            "predicted_text": text or "", "gold_text": step.gold_text, "scores": scores}


def predict_stepwise(gen: Generator, steps: list[Step], sampling: Sampling, batch_size: int,
                     numeric_strings: bool, progress: str | None = "generating") -> list[dict]:
    prompts = [gen.template.prompt(s.history) for s in steps]
    outputs = gen.complete_batch(prompts, sampling, batch_size, progress,
                                 limits=[gold_budget(gen, s) for s in steps])
    return [score(s, o.text, gen.template, numeric_strings) for s, o in zip(steps, outputs)]


def gold_budget(gen: Generator, step: Step) -> int:
    """New tokens worth generating for a step: twice its gold reply plus 32. A reply still
    going past that cannot match the gold one (a call would be unfinished, a text answer's
    ROUGE-L only falls), and a rambling base model would otherwise run every step to
    max_new_tokens."""
    gold = gen.template.render(Conversation(step.history.messages + [step.gold], step.history.tools))
    prompt = gen.template.prompt(step.history)
    return 2 * len(gen.tokenizer(gold.text[len(prompt):], add_special_tokens=False)["input_ids"]) + 32


def predict_agent(gen: Generator, steps: list[Step], sampling: Sampling, toolkit: Any,
                  numeric_strings: bool, max_steps: int = 5,
                  progress: str | None = "agent") -> list[dict]:
    from tqdm.auto import tqdm

    from agentsft.agents import ToolAgent
    rows = []
    for s in tqdm(steps, desc=progress, unit="turn", disable=progress is None, dynamic_ncols=True):
        msgs = s.history.messages
        system = msgs[0].content if msgs and msgs[0].role == "system" else None
        agent = ToolAgent("agent", system, toolkit=toolkit, max_steps=max_steps, generator=gen,
                          max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                          top_p=sampling.top_p)
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
             sampling: Sampling | None = None, batch_size: int = 8, toolkit: Any = None,
             numeric_strings: bool = False, perplexity: bool = True,
             progress: str | None = "generating") -> tuple[dict[str, Any], list[dict]]:
    """Score ``gen`` on ``convs``: the report and the per-step predictions."""
    sampling = sampling or Sampling()
    began = time.perf_counter()
    if mode == "agent":
        rows = predict_agent(gen, agent_steps(convs), sampling, toolkit, numeric_strings,
                             progress=progress)
    else:
        rows = predict_stepwise(gen, stepwise_steps(convs), sampling, batch_size,
                                numeric_strings, progress)
    for r in rows:
        r["tool"] = sorted({c["name"] for c in r["gold_calls"]})
    overall = metrics.aggregate([r["scores"] for r in rows])
    report: dict[str, Any] = {
        "mode": mode, "template": gen.template.name, "conversations": len(convs),
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


# ---------------------------------------------------------------------------
# Output: report.json, predictions.jsonl and a table for the terminal.

TABLE = (("call decision accuracy", "decision"), ("tool-name accuracy", "name_accuracy"),
         ("argument exact match", "exact_match"), ("argument precision", "arg_precision_micro"),
         ("argument recall", "arg_recall_micro"), ("argument F1", "arg_f1_micro"),
         ("calls that parse (valid JSON)", "valid_json"), ("ROUGE-L F1 (text answers)", "rouge_l"),
         ("perplexity (gold assistant tokens)", "perplexity"))


def write_outputs(folder: Path, report: dict[str, Any], rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(folder / "predictions.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


def markdown_table(columns: dict[str, dict[str, Any]]) -> str:
    """Metrics as rows, one column per evaluated model (``{"base": overall, ...}``); with
    two columns, a third shows the change."""
    names = list(columns)
    head = ["metric", *names] + (["change"] if len(names) == 2 else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key in TABLE:
        values = [columns[n].get(key) for n in names]
        cells = [label, *map(fmt, values)]
        if len(names) == 2:
            a, b = values
            cells.append(f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float))
                         and math.isfinite(a) and math.isfinite(b) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    counts = columns[names[-1]]
    lines.append(f"\n{counts.get('steps', 0)} steps: {counts.get('call_steps', 0)} with gold calls, "
                 f"{counts.get('text_steps', 0)} text answers")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# agentsft eval


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_eval(args) -> int:
    from agentsft.data.readers import read_conversations
    from agentsft.generate import load_generator
    read = read_conversations(args.data, args.format, args.skip_invalid)
    if read.skipped:
        say(f"skipped {len(read.skipped)} invalid records (first: {read.skipped[0]})")
    convs = read.conversations[:args.limit] if args.limit else read.conversations
    if not convs:
        raise AgentsftError(f"no conversations to evaluate in {', '.join(args.data)}. "
                            "Fix: pass a data file with records")
    toolkit = None
    if args.tools:
        from agentsft.agents import Toolkit
        toolkit = Toolkit.from_file(args.tools, timeout=args.tool_timeout)
    if args.mode == "agent" and toolkit is None:
        raise AgentsftError("--mode agent runs the conversations through the tool agent, which "
                            "needs the tools. Fix: pass --tools FILE.py")
    if args.compare_base and not args.adapter:
        raise AgentsftError("--compare-base compares a trained run with its base model. Fix: "
                            "pass --adapter RUN_DIR, or drop --compare-base")
    sampling = Sampling(args.max_new_tokens, args.temperature, args.top_p)
    out = Path(args.output) if args.output else (
        Path(args.adapter) / "eval" if args.adapter and Path(args.adapter).is_dir()
        else Path("runs") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}")

    def run_one(gen: Generator, label: str, folder: Path) -> dict[str, Any]:
        say(f"evaluating {label}: {len(convs)} conversations, mode {args.mode}, template "
            f"{gen.template.name}")
        report, rows = evaluate(gen, convs, args.mode, sampling, args.batch_size, toolkit,
                                args.numeric_strings, progress=f"generating ({label})")
        report.update(model=label, data=list(args.data))
        write_outputs(folder, report, rows)
        return report

    gen = load_generator(args.model, args.adapter, args.device, args.template)
    base_name = args.model or getattr(gen.model, "name_or_path", None) or "model"
    label = f"{args.adapter} (tuned)" if args.adapter else str(base_name)
    tuned = run_one(gen, label, out)
    columns = {"tuned" if args.adapter else "model": tuned["overall"]}
    if args.compare_base:
        template = gen.template.name
        del gen
        base = load_generator(args.model or recorded_base(args.adapter), None, args.device, template)
        base_report = run_one(base, "base model", out / "base")
        columns = {"base": base_report["overall"], **columns}
        tuned["base"] = {"overall": base_report["overall"], "folder": str(out / "base")}
        write_text_atomically(out / "report.json",
                              json.dumps(tuned, indent=2, ensure_ascii=False) + "\n")
    print(markdown_table(columns))
    print_per_tool(tuned)
    say(f"report: {out / 'report.json'}; predictions: {out / 'predictions.jsonl'}"
        + (f"; base: {out / 'base'}" if args.compare_base else ""))
    return 0


def recorded_base(adapter: str | None) -> str | None:
    from agentsft.models import RUN_FILE, trained_folder
    if adapter is None:
        return None
    info = trained_folder(adapter) / RUN_FILE
    return json.loads(info.read_text()).get("base_model") if info.is_file() else None


def print_per_tool(report: dict[str, Any]) -> None:
    groups = report.get("per_tool") or {}
    if len(groups) < 2:
        return
    print("\n| gold tool | steps | call decision | tool-name accuracy | argument exact match |"
          "\n|---|---|---|---|---|")
    for name, agg in groups.items():
        print(f"| {name} | {agg.get('steps', 0)} | {fmt(agg.get('decision'))} | "
              f"{fmt(agg.get('name_accuracy'))} | {fmt(agg.get('exact_match'))} |")
