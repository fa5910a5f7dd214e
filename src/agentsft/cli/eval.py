"""``agentsft eval``: score a model or a run on tool calls, arguments, ROUGE-L, perplexity."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agentsft.cli.common import (
    add_generation,
    add_model_choice,
    add_reading,
    source_options,
    whole_number,
)
from agentsft.data.templates import TEMPLATES
from agentsft.errors import AgentsftError
from agentsft.files import write_text_atomically
from agentsft.hub import say


def add(verbs) -> None:
    p = verbs.add_parser(
        "eval", help="score a model or a run: tool calls, arguments, ROUGE-L, perplexity",
        description="Generate each assistant step of the data from the gold history before it "
                    "(stepwise), or run each user turn through the tool agent with real tools "
                    "(--mode agent), and score it: call decision, tool name, arguments (exact "
                    "match, precision/recall/F1), valid JSON, ROUGE-L of text answers, and the "
                    "perplexity of the gold assistant tokens. Writes report.json and "
                    "predictions.jsonl (one line per step, re-scorable).",
        epilog="examples:\n"
               "  agentsft eval --data examples/tools.jsonl --adapter runs/demo --compare-base\n"
               "  agentsft eval --data test.jsonl --model HuggingFaceTB/SmolLM2-360M-Instruct\n"
               "  agentsft eval --data examples/tools.jsonl --adapter runs/demo --mode agent "
               "--tools examples/tools.py",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="data files to score on")
    add_model_choice(p)
    p.add_argument("-o", "--output", metavar="OUT_DIR",
                   help="where report.json and predictions.jsonl go (default: RUN_DIR/eval, "
                        "else runs/eval-TIME)")
    p.add_argument("--mode", choices=("stepwise", "agent"), default="stepwise")
    p.add_argument("--tools", metavar="FILE.py", help="the tools (needed by --mode agent)")
    p.add_argument("--compare-base", action="store_true",
                   help="also score the base model (same template) and show both side by side")
    p.add_argument("--template", choices=TEMPLATES,
                   help="agent template (default: the one the run was trained with)")
    p.add_argument("--limit", type=whole_number(1), help="score only the first N conversations")
    p.add_argument("--batch-size", type=whole_number(1), default=16,
                   help="prompts generated together (default 16)")
    p.add_argument("--numeric-strings", action="store_true",
                   help='count an argument "5" as equal to 5 (off: JSON types must match)')
    add_generation(p)
    add_reading(p)


def run(args) -> int:
    from agentsft.agents import Toolkit, tool_agents
    from agentsft.data.readers import read_conversations
    from agentsft.evaluation import (
        evaluate,
        markdown_table,
        per_tool_table,
        write_outputs,
    )
    from agentsft.inference import Generator, Sampling, load_generator
    read = read_conversations(args.data, args.format, args.skip_invalid, source_options(args))
    if read.skipped:
        say(f"skipped {len(read.skipped)} invalid records (first: {read.skipped[0]})")
    convs = read.conversations[:args.limit] if args.limit else read.conversations
    if not convs:
        raise AgentsftError(f"no conversations to evaluate in {', '.join(args.data)}. "
                            "Fix: pass a data file with records")
    toolkit = None
    if args.tools:
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
        agents = tool_agents(gen, toolkit, sampling) if toolkit is not None else None
        report, rows = evaluate(gen, convs, args.mode, sampling, args.batch_size, agents,
                                args.numeric_strings, progress=f"generating ({label})")
        report.update(model=label, data=list(args.data))
        write_outputs(folder, report, rows)
        return report

    constrain = args.constrain == "on"
    gen = load_generator(args.model, args.adapter, args.device, args.template,
                         dtype=args.dtype, fast_path=args.fast_path, constrain=constrain)
    base_name = args.model or getattr(gen.model, "name_or_path", None) or "model"
    label = f"{args.adapter} (tuned)" if args.adapter else str(base_name)
    tuned = run_one(gen, label, out)
    columns = {"tuned" if args.adapter else "model": tuned["overall"]}
    if args.compare_base:
        template = gen.template.name
        del gen
        base = load_generator(args.model or recorded_base(args.adapter), None, args.device, template,
                              dtype=args.dtype, fast_path=args.fast_path, constrain=constrain)
        base_report = run_one(base, "base model", out / "base")
        columns = {"base": base_report["overall"], **columns}
        tuned["base"] = {"overall": base_report["overall"], "folder": str(out / "base")}
        write_text_atomically(out / "report.json",
                              json.dumps(tuned, indent=2, ensure_ascii=False) + "\n")
    print(markdown_table(columns))
    if per_tool := per_tool_table(tuned):
        print("\n" + per_tool)
    say(f"report: {out / 'report.json'}; predictions: {out / 'predictions.jsonl'}"
        + (f"; base: {out / 'base'}" if args.compare_base else ""))
    return 0


def recorded_base(adapter: str | None) -> str | None:
    """The base model a run recorded (None: not recorded, or no run)."""
    from agentsft.hub import recorded_run
    return recorded_run(adapter).get("base_model") if adapter is not None else None
