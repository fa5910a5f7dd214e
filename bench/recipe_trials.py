"""Which training recipe teaches the default model to fill arguments: trials on three seeds.

    python bench/recipe_trials.py --trials baseline rename --seeds 0 1 2
    python bench/recipe_trials.py --summary            # the table of what is recorded so far

Each trial changes one thing against ``baseline`` (config keys, or a change to the
training data); each runs on every seed: LoRA on ``examples/calls_train.jsonl``, then
``agentsft eval``'s scoring of ``examples/calls_test.jsonl`` (held out: conversations never
trained on, and tools never seen in training), calls constrained. One JSON line per run
goes to ``runs/trials/trials.jsonl`` (appended, so trials can run in several sittings);
the summary gives each trial's mean and spread over its seeds, held-out argument exact
match first, for bench/RESULTS.md. A change is worth keeping when its mean beats the
baseline's by more than both spreads.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentsft import config
from agentsft.data.inspect import write_jsonl
from agentsft.data.readers import read_conversations
from agentsft.data.schema import Conversation
from agentsft.demo import held_out_scores
from agentsft.inference import Generator, load_generator

# The demo's budget: about 130k tokens (128 conversations of ~1,050 tokens, one epoch) is
# about 4.5 minutes of LoRA on the 2-core CPU. Trials that add copies of examples keep it:
# half the conversations, each with its copy.
BASE = {"data.val_fraction": 0, "data.max_length": 2048, "training.epochs": 1,
        "training.learning_rate": 1e-3, "training.batch_size": 4, "training.warmup_ratio": 0.05,
        "training.eval_every": 0, "training.save_every": 100000, "lora.r": 16}


def shuffled_copy(convs: list[Conversation], rng: random.Random) -> list[Conversation]:
    """The first half of the conversations, each twice: once more with its tools listed in
    another order."""
    convs, out = convs[:len(convs) // 2], []
    for conv in convs:
        twin = copy.deepcopy(conv)
        if twin.tools and len(twin.tools) > 1:
            while [t.name for t in twin.tools] == [t.name for t in conv.tools]:
                rng.shuffle(twin.tools)
        out.append(twin)
    return convs + out


WORDS = ("alpha", "bravo", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
         "juniper", "kelvin", "lumen", "maple", "nimbus", "onyx", "pylon", "quartz", "raven",
         "sierra", "tundra", "umber", "vertex", "willow", "xenon", "yonder", "zephyr")


def renamed_copy(convs: list[Conversation], rng: random.Random) -> list[Conversation]:
    """The first half of the conversations, each with tools twice: once more with every tool
    and parameter renamed (in the schema and in the calls alike), so that names can only
    be read from the schema."""
    convs, out = convs[:len(convs) // 2], []
    for conv in convs:
        if not conv.tools:
            continue
        twin = copy.deepcopy(conv)
        names = {t.name: f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{i}" for i, t in enumerate(twin.tools)}
        params: dict[str, dict[str, str]] = {}
        for tool in twin.tools:
            props = tool.parameters.get("properties", {})
            params[tool.name] = {p: f"{rng.choice(WORDS)}_{j}" for j, p in enumerate(props)}
            tool.parameters = renamed_schema(tool.parameters, params[tool.name])
            tool.name = names[tool.name]
        for m in twin.messages:
            for c in m.tool_calls:
                new = params.get(c.name, {})
                c.arguments = {new.get(k, k): v for k, v in c.arguments.items()}
                c.name = names.get(c.name, c.name)
            if m.role == "tool" and m.name in names:
                m.name = names[m.name]
        out.append(twin)
    return convs + out


def renamed_schema(schema: dict[str, Any], new: dict[str, str]) -> dict[str, Any]:
    schema = dict(schema)
    schema["properties"] = {new[k]: v for k, v in schema.get("properties", {}).items()}
    if "required" in schema:
        schema["required"] = [new.get(k, k) for k in schema["required"]]
    return schema


def without_no_call(convs: list[Conversation], rng: random.Random) -> list[Conversation]:
    """Only the conversations in which the assistant calls a tool."""
    return [c for c in convs if any(m.tool_calls for m in c.messages)]


def filled_defaults(convs: list[Conversation], rng: random.Random) -> list[Conversation]:
    """Every call also given the optional arguments the user did not mention, at their
    schema's defaults (the data leaves them out: this is the trial of keeping them)."""
    out = copy.deepcopy(convs)
    for conv in out:
        schemas = {t.name: t.parameters for t in conv.tools or ()}
        for m in conv.messages:
            for c in m.tool_calls:
                props = schemas.get(c.name, {}).get("properties", {})
                c.arguments = {**c.arguments, **{k: p["default"] for k, p in props.items()
                                                 if "default" in p and k not in c.arguments}}
    return out


def sessions(convs: list[Conversation], rng: random.Random, size: int = 3) -> list[Conversation]:
    """Calling conversations chained ``size`` at a time into one session under one system
    prompt and one tool list (their tools, then distractors, at most 5 where they fit), so
    the ~840-token prompt is run once per ``size`` requests; text-only conversations (whose
    answers name the tools they were offered) stay as they are."""
    out, group = [], []
    for conv in convs:
        if not any(m.tool_calls for m in conv.messages):
            out.append(conv)
            continue
        needed = {c.name for m in conv.messages for c in m.tool_calls}
        if group and len(set().union(*(g[1] for g in group)) | needed) > 5:
            out.append(session(group, rng))
            group = []
        group.append((conv, needed))
        if len(group) == size:
            out.append(session(group, rng))
            group = []
    if group:
        out.append(session(group, rng))
    return out


def session(group: list[tuple[Conversation, set[str]]], rng: random.Random) -> Conversation:
    """One conversation of the group's requests in turn (call ids made unique per turn)."""
    needed = set().union(*(n for _, n in group))
    offered = {t.name: t for conv, _ in group for t in conv.tools or ()}
    tools = [offered[n] for n in needed]
    spare = [t for n, t in offered.items() if n not in needed]
    rng.shuffle(spare)
    tools += spare[:max(0, 5 - len(tools))]
    rng.shuffle(tools)
    first = group[0][0]
    messages = [copy.deepcopy(m) for m in first.messages if m.role == "system"]
    for turn, (conv, _) in enumerate(group, start=1):
        for m in copy.deepcopy(conv.messages):
            if m.role == "system":
                continue
            for c in m.tool_calls:
                c.id = f"t{turn}_{c.id}"
            if m.tool_call_id:
                m.tool_call_id = f"t{turn}_{m.tool_call_id}"
            messages.append(m)
    return Conversation(messages=messages, tools=copy.deepcopy(tools), id=first.id)


def shared_toolsets(convs: list[Conversation], rng: random.Random, group: int = 16
                    ) -> list[Conversation]:
    """The calling conversations regrouped under common prompts: each group of up to
    ``group`` takes one tool list (3 to 5 tools, shuffled once) holding every tool its
    members call, and its first member's system prompt, as an agent's own data would; the
    trainer then runs each batch's shared prompt once. Text-only conversations (whose
    answers name the tools they were offered) stay as they are."""
    calling = [c for c in convs if any(m.tool_calls for m in c.messages)]
    out = [c for c in convs if c not in calling]
    schemas = {t.name: t for c in calling for t in c.tools or ()}
    while calling:
        size = rng.randint(3, 5)
        first = calling[0]
        needed = {x.name for m in first.messages for x in m.tool_calls}
        names = sorted(needed) + rng.sample(sorted(set(schemas) - needed), max(0, size - len(needed)))
        rng.shuffle(names)
        tools = [schemas[n] for n in names]
        members = [c for c in calling if {x.name for m in c.messages for x in m.tool_calls} <= set(names)]
        members = members[:group]
        system = [m for m in first.messages if m.role == "system"]
        for conv in members:
            calling.remove(conv)
            twin = copy.deepcopy(conv)
            twin.messages = copy.deepcopy(system) + [m for m in twin.messages if m.role != "system"]
            twin.tools = copy.deepcopy(tools)
            out.append(twin)
    rng.shuffle(out)
    return out


TRIALS: dict[str, tuple[dict[str, Any], Callable | None]] = {
    "baseline": ({}, None),
    "epochs-2": ({"training.epochs": 2}, None),  # on half the conversations: the same budget
    "batch-2": ({"training.batch_size": 2}, None),
    "lr-5e-4": ({"training.learning_rate": 5e-4}, None),
    "lr-2e-3": ({"training.learning_rate": 2e-3}, None),
    "constant-lr": ({"training.scheduler": "constant"}, None),
    "rank-4": ({"lora.r": 4, "lora.alpha": 8}, None),
    "rank-64": ({"lora.r": 64, "lora.alpha": 128}, None),
    "attention-only": ({"lora.target_modules": "q_proj,k_proj,v_proj,o_proj"}, None),
    "full-ft": ({"training.method": "full", "training.learning_rate": 1e-4}, None),
    "neftune-5": ({"training.neftune_alpha": 5.0}, None),
    "shuffle-tools": ({}, shuffled_copy),
    "rename": ({}, renamed_copy),
    "no-no-call": ({}, without_no_call),
    "fill-defaults": ({}, filled_defaults),
    "sessions": ({"data.max_length": 4096}, sessions),
    "shared-toolsets": ({}, shared_toolsets),  # sessions run past 2048 tokens
}
LIMITS = {"sessions": 210, "epochs-2": 64, "shared-toolsets": 300, "full-ft": 88}
"""Trials that read another number of conversations to keep the demo's budget of time
(full fine-tuning computes every weight's gradient too: about 1.5x LoRA's work per token)."""


def run_trial(name: str, seed: int, train_file: Path, test: list[Conversation], out: Path,
              limit: int | None = None, constrain: bool = True) -> dict[str, Any]:
    from agentsft.training import train
    flags, change = TRIALS[name]
    folder = out / f"{name}-seed{seed}"
    convs = read_conversations([train_file]).conversations[:LIMITS.get(name, limit)]
    if change is not None:
        convs = change(convs, random.Random(seed))
    data = folder / "train.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(str(data), (c.to_dict() for c in convs))
    cfg = config.load(flags={**BASE, **flags, "data.train": [str(data)],
                             "training.output": str(folder / "run"), "training.seed": seed})
    began = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - began
    gen = Generator(result.model, result.tokenizer, result.template, constrain=constrain)
    scores = held_out_scores(gen, test, folder / "eval")
    return {"trial": name, "seed": seed, "constrained": constrain, "train_seconds": round(seconds, 1),
            "steps": result.steps, "examples": len(convs), **scores}


def summary(log: Path) -> str:
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    by: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["trial"], r["constrained"]), []).append(r)
    header = ("| trial | constrained | seeds | exact match (all) | unseen tools | seen tools | "
              "name acc. | schema valid | train s |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for (trial, constrained), rs in sorted(by.items(), key=lambda kv: -mean(kv[1], "all", "exact_match")):
        lines.append(f"| {trial} | {'on' if constrained else 'off'} | {len(rs)} | "
                     f"{spread(rs, 'all', 'exact_match')} | {spread(rs, 'unseen', 'exact_match')} | "
                     f"{spread(rs, 'seen', 'exact_match')} | {spread(rs, 'all', 'name_accuracy')} | "
                     f"{spread(rs, 'all', 'schema_valid')} | "
                     f"{statistics.mean(r['train_seconds'] for r in rs):.0f} |")
    return "\n".join(lines)


def mean(rs: list[dict[str, Any]], group: str, key: str) -> float:
    return statistics.mean(r[group][key] or 0.0 for r in rs)


def spread(rs: list[dict[str, Any]], group: str, key: str) -> str:
    values = [r[group][key] or 0.0 for r in rs]
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", nargs="*", default=[], choices=sorted(TRIALS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--train", default="examples/calls_train.jsonl")
    p.add_argument("--test", default="examples/calls_test.jsonl")
    p.add_argument("--out", default="runs/trials")
    p.add_argument("--limit", type=int, default=128,
                   help="train on the first N conversations (default 128: the demo's budget)")
    p.add_argument("--test-every", type=int, default=2,
                   help="score every N-th held-out conversation (default 2: 75 of 150)")
    p.add_argument("--free-too", action="store_true", help="also score each run unconstrained")
    p.add_argument("--base-model", action="store_true",
                   help="also score the untuned default model, constrained and free")
    p.add_argument("--summary", action="store_true", help="print the table of recorded runs and stop")
    args = p.parse_args()
    out = Path(args.out)
    log = out / "trials.jsonl"
    if args.summary or not (args.trials or args.base_model):
        print(summary(log))
        return
    test = read_conversations([args.test]).conversations[::args.test_every]
    for name in args.trials:
        for seed in args.seeds:
            row = run_trial(name, seed, Path(args.train), test, out, args.limit)
            rows = [row]
            if args.free_too:  # the same run, scored again without the constraint
                free = load_generator(adapter=out / f"{name}-seed{seed}" / "run", constrain=False)
                rows.append({**row, "constrained": False,
                             **held_out_scores(free, test, out / f"{name}-seed{seed}" / "eval-free")})
            record(log, rows)
            gc.collect()  # each run's model and trainer hold cycles: free them before the next
    if args.base_model:
        for constrain in (True, False):
            record(log, [{"trial": "untuned base model", "seed": 0, "constrained": constrain,
                          "train_seconds": 0, "steps": 0, "examples": 0,
                          **held_out_scores(load_generator(constrain=constrain), test,
                                            out / f"base-model-{'on' if constrain else 'off'}")}])
    print(summary(log))


def record(log: Path, rows: list[dict[str, Any]]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
