"""``agentsft demo``: the main job, before and after, on the default model.

1. Ask the base model who it is, and a question that needs a tool (as a real
   tool agent with the functions in examples/tools.py).
2. Fine-tune LoRA on the persona set and part of the tool set; the tool
   conversations list exactly the schemas the agent shows at inference.
3. Ask again: the persona should be adopted, and the tool really called with
   the right arguments and its result used in the answer.
"""

from __future__ import annotations

import importlib.resources
import json
import time
from pathlib import Path
from typing import Any

from agentsft import config
from agentsft.agents import DialogAgent, Toolkit, ToolAgent
from agentsft.data.inspect import write_jsonl
from agentsft.data.readers import read_conversations
from agentsft.errors import AgentsftError
from agentsft.inference import Generator, load_generator

PERSONA_QUESTION = "Who are you?"
TOOL_QUESTION = "What's the weather like in Paris right now?"
PERSONA = ("Marlo", "Kestrel")
DEMO_FILES = ("persona.jsonl", "tools.jsonl", "tools.py")


def examples() -> Path:
    """The example data: installed with agentsft as ``agentsft.examples`` (the repository's
    examples/ folder)."""
    try:
        folder = Path(str(importlib.resources.files("agentsft.examples")))
    except ModuleNotFoundError:
        folder = None
    missing = [f for f in DEMO_FILES if folder is None or not (folder / f).is_file()]
    if missing:
        raise AgentsftError(f"the demo needs the example data ({', '.join(missing)}), which this "
                            f"installation of agentsft lacks. Fix: reinstall agentsft (pip install "
                            f"agentsft, or pip install -e . in a checkout)")
    return folder


def demo_data(out: Path, toolkit: Toolkit, tool_share: int) -> Path:
    """Persona conversations plus every ``tool_share``-th tool conversation, the latter with
    the toolkit's own schemas (what the agent lists at inference)."""
    folder = examples()
    persona = read_conversations(folder / "persona.jsonl").conversations
    tools = read_conversations(folder / "tools.jsonl").conversations[::tool_share]
    for conv in tools:
        conv.tools = toolkit.tools
    path = out / "demo-data.jsonl"
    write_jsonl(str(path), (c.to_dict() for c in persona + tools))
    return path


def ask(generator: Generator, toolkit: Toolkit, max_new_tokens: int = 96) -> dict[str, Any]:
    """The two questions, each to a fresh agent; answers, calls and results, seconds."""
    t = time.perf_counter()
    who = DialogAgent("demo", generator=generator, max_new_tokens=max_new_tokens)(PERSONA_QUESTION)
    events: list[tuple[Any, Any]] = []
    agent = ToolAgent("demo", toolkit=toolkit, generator=generator, max_new_tokens=max_new_tokens,
                      max_steps=3)
    tool = agent(TOOL_QUESTION, on_event=lambda kind, p: events.append(p) if kind == "result" else None)
    return {"who": who.content, "tool_answer": tool.content, "calls": events,
            "seconds": time.perf_counter() - t}


def show(title: str, a: dict[str, Any]) -> None:
    say(f"\n── {title} ({a['seconds']:.0f}s) " + "─" * max(0, 50 - len(title)))
    say(f"User: {PERSONA_QUESTION}\nAgent: {a['who'] or '(nothing)'}")
    say(f"User: {TOOL_QUESTION}")
    for call, result in a["calls"]:
        say(f"  → {call.name}({json.dumps(call.arguments, ensure_ascii=False)})")
        say(f"  ← {result.content[:200]}")
    say(f"Agent: {a['tool_answer'] or '(nothing)'}")


def verdict(a: dict[str, Any]) -> dict[str, bool]:
    called = [(c, r) for c, r in a["calls"] if c.name == "get_weather" and not r.error
              and c.arguments.get("city", "").lower() == "paris"]
    used = False
    if called:
        result = json.loads(called[0][1].content)
        facts = [str(result.get("temperature")), str(result.get("condition", "")).lower()]
        used = any(f and f in a["tool_answer"].lower() for f in facts)
    return {"persona": all(p.lower() in a["who"].lower() for p in PERSONA),
            "tool_called": bool(called), "result_used": used}


def say(text: str) -> None:
    print(text, flush=True)


def run_demo(output: str = "runs/demo", epochs: float = 3.0, learning_rate: float = 1e-3,
             tool_share: int = 6, fresh: bool = True) -> dict[str, Any]:
    out = Path(output)
    if fresh and (out / "config.yaml").exists():
        raise AgentsftError(f"{out} already holds a demo run. Fix: pass --output with a new folder")
    toolkit = Toolkit.from_file(examples() / "tools.py")  # the data is there, before any work
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say("agentsft demo: the default model (SmolLM2-135M-Instruct) before and after a LoRA "
        "fine-tune\n(persona: Marlo by Kestrel Labs; tools: calculate, convert_units, get_weather)")
    base = load_generator()
    before = ask(base, toolkit)
    show("before fine-tuning", before)
    del base

    data = demo_data(out, toolkit, tool_share)
    say(f"\n── fine-tuning (LoRA) on {data} ──")
    from agentsft.training import train
    cfg = config.load(flags={
        "data.train": [str(data)], "data.val_fraction": 0.05, "data.max_length": 1024,
        "training.output": str(out / "run"), "training.epochs": epochs,
        "training.learning_rate": learning_rate, "training.batch_size": 4,
        "training.warmup_ratio": 0.05, "training.eval_every": 0, "training.save_every": 1000})
    t = time.perf_counter()
    result = train(cfg)
    train_seconds = time.perf_counter() - t

    after = ask(Generator(result.model, result.tokenizer, result.template), toolkit)
    show("after fine-tuning", after)
    v = verdict(after)
    total = time.perf_counter() - started
    say("\n── summary " + "─" * 40)
    say(f"persona adopted (names Marlo and Kestrel Labs): {'yes' if v['persona'] else 'no'}")
    say(f"tool called with the right arguments (get_weather, city Paris): "
        f"{'yes' if v['tool_called'] else 'no'}")
    say(f"tool result used in the answer: {'yes' if v['result_used'] else 'no'}")
    say(f"timings: before {before['seconds']:.0f}s, fine-tuning {train_seconds:.0f}s "
        f"({result.steps} steps, {result.tokens_per_s:.0f} tokens/s), after {after['seconds']:.0f}s, "
        f"total {total:.0f}s")
    say(f"saved: {result.run.final} (agentsft chat --adapter {result.run.root} --tools "
        f"examples/tools.py)")
    return {"before": before, "after": after, "verdict": v, "run": result.run.root,
            "train_seconds": train_seconds}
