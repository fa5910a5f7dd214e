"""The ``agentsft`` command: one verb per stage of the pipeline.

    agentsft data check|preview|stats|convert   look at data before training on it
    agentsft train                              fine-tune (LoRA, QLoRA, full)
    agentsft chat                               talk to a model or a run, with real tools
    agentsft eval                               score tool calls, arguments, ROUGE-L, perplexity
    agentsft demo                               the default model before and after fine-tuning

Errors the user can fix print as one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agentsft import __version__
from agentsft.data.readers import FORMATS
from agentsft.data.templates import POLICIES, TEMPLATES
from agentsft.data.tokenize import TRUNCATION
from agentsft.errors import AgentsftError
from agentsft.config import DEFAULT_MODEL


def whole_number(minimum: int):
    """An argparse type: an int no smaller than ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value
    return parse


def add_reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="data format (default: detected from the first records)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip invalid records, count and list them, instead of stopping at the first")


def add_rendering(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model whose tokenizer is used: hub id, local folder, or {DEFAULT_MODEL} "
                        "(the packaged default)")
    p.add_argument("--template", default="auto", choices=TEMPLATES,
                   help="agent template: auto picks native when the tokenizer's chat template "
                        "renders tools, else hermes")
    p.add_argument("--policy", default="assistant", choices=POLICIES,
                   help="which turns are trained: every assistant turn (default), the last "
                        "assistant turn, or all text; a message's train flag overrides")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub tokenizer to run its own code (off by default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentsft", description="Fine-tune open language models into tool-using agents.")
    parser.add_argument("--version", action="version", version=f"agentsft {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    data = verbs.add_parser("data", help="check, preview, measure and convert conversation data",
                            description="Look at conversation data before training on it.")
    data.set_defaults(usage=data.format_help)
    sub = data.add_subparsers(dest="action", metavar="ACTION")

    p = sub.add_parser("check", help="validate files; count conversations, turns, calls, tools",
                       description="Validate data files and count what they hold. Exit 0 when "
                                   "clean, 2 at the first invalid record (unless --skip-invalid).")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="data files (.json / .jsonl) or folders holding them")
    p.add_argument("--policy", default="assistant", choices=POLICIES,
                   help="loss policy; a record with no trained message under it is an error")
    add_reading(p)

    p = sub.add_parser("preview", help="show rendered examples with the trained tokens marked",
                       description="Render examples with the agent template and mark the tokens "
                                   "in the loss: green on a terminal, [[...]] otherwise.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-n", type=whole_number(0), default=3,
                   help="how many examples (0: all; default 3)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per example: {"tokens", "ids", "trained"}')
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--max-length", type=whole_number(1), default=None, metavar="L",
                   help="apply a token limit as training would")
    p.add_argument("--truncation", choices=TRUNCATION, default="drop",
                   help="over --max-length: drop the example (default) or cut it")
    add_reading(p)
    add_rendering(p)

    p = sub.add_parser("stats", help="token lengths, trained share, what a max length would cut",
                       description="Token-length percentiles, the trained-token share and a "
                                   "histogram; with --max-length, how many examples it would "
                                   "drop or truncate.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--max-length", type=whole_number(1), default=None, metavar="L")
    add_reading(p)
    add_rendering(p)

    p = sub.add_parser("convert", help="convert any supported format to OpenAI JSONL",
                       description="Read files in any supported format and write OpenAI-style "
                                   "JSONL (messages + tools).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--to", default="openai", choices=("openai",))
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl")
    add_reading(p)
    add_train(verbs)
    add_chat(verbs)
    add_eval(verbs)
    add_demo(verbs)
    return parser


def add_demo(verbs) -> None:
    p = verbs.add_parser(
        "demo", help="the main job: the default model before and after a LoRA fine-tune",
        description="Ask the default model who it is and a question that needs a tool; fine-tune "
                    "it (LoRA, on this CPU) on the example persona and tool data; ask again. The "
                    "tool agent really runs the functions in examples/tools.py.")
    p.add_argument("--output", metavar="DIR", help="where the run is saved (default: runs/demo-TIME)")
    p.add_argument("--epochs", type=float, default=3.0,
                   help="3 (default): measured here, 2 taught the call but not answering from it")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--tool-share", type=whole_number(1), default=6,
                   help="train on every N-th tool conversation (fewer: faster)")


def add_model_choice(p: argparse.ArgumentParser) -> None:
    """Which model answers: a base model, or a trained run on top of its recorded base."""
    p.add_argument("--model", help=f"hub id, local folder, or {DEFAULT_MODEL} (default; with "
                                   "--adapter: the base model the run recorded)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a training run (or its final/ folder)")


def add_generation(p: argparse.ArgumentParser) -> None:
    """How it generates and runs tools (chat and eval alike)."""
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--max-new-tokens", type=whole_number(1), default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--tool-timeout", type=float, default=10.0, help="seconds per tool call")


def add_eval(verbs) -> None:
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


def add_chat(verbs) -> None:
    p = verbs.add_parser(
        "chat", help="talk to a model or a trained run, optionally with real Python tools",
        description="Talk to a model, or to what `agentsft train` saved (--adapter). Replies "
                    "stream as they are written; with --tools the agent calls your Python "
                    "functions and uses their results. Type exit to leave, /reset to clear memory.",
        epilog="examples:\n"
               "  agentsft chat --adapter runs/persona\n"
               "  agentsft chat --tools examples/tools.py --system 'You are Marlo.'\n"
               "  agentsft chat --adapter runs/persona --prompt 'Who are you?'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_choice(p)
    p.add_argument("--tools", metavar="FILE.py", help="Python file whose functions (or TOOLS list) "
                                                      "the agent may call")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--prompt", help="answer this once and exit, printing only the reply")
    p.add_argument("--json", action="store_true", help="with --prompt: the reply and tool calls as JSON")
    p.add_argument("--max-steps", type=whole_number(1), default=5,
                   help="tool-call rounds per answer before the agent stops")
    add_generation(p)


def add_train(verbs) -> None:
    p = verbs.add_parser(
        "train", help="fine-tune a model on agent conversations (LoRA, QLoRA or full)",
        description="Fine-tune a model on agent conversations. Give a config file (YAML/JSON, or "
                    "the agent-framework model_configs.json), flags for the common case, or both; "
                    "--set overrides any key. Loss falls only on what the agent writes.",
        epilog="examples:\n"
               "  agentsft train --data examples/persona.jsonl --output runs/persona\n"
               "  agentsft train config.yaml --set training.learning_rate=1e-4\n"
               "  agentsft train --resume runs/persona\n"
               "  torchrun --nproc_per_node 2 -m agentsft train config.yaml   (data parallel)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG", help="config file (YAML or JSON)")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                   help="override a config key, e.g. --set training.epochs=2 (repeatable)")
    p.add_argument("--config-name", help="which entry of an agent-framework model_configs.json")
    p.add_argument("--model", help=f"hub id, local folder, or {DEFAULT_MODEL} (default)")
    p.add_argument("--data", nargs="+", metavar="FILE", help="training data files")
    p.add_argument("--val", nargs="+", metavar="FILE",
                   help="validation files (default: a seeded 10%% of the training data)")
    p.add_argument("--output", metavar="RUN_DIR", help="run directory (e.g. runs/NAME)")
    p.add_argument("--method", choices=("lora", "qlora", "full"), help="default: lora")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=whole_number(1))
    p.add_argument("--adapter", metavar="RUN_DIR", help="continue training this LoRA adapter")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint (its config is reused)")


def run_train(args) -> int:
    from agentsft import config
    from agentsft.train import train
    flags = {"model.name": args.model, "data.train": args.data, "data.val": args.val,
             "training.output": args.output, "training.method": args.method,
             "training.epochs": args.epochs, "training.max_steps": args.max_steps,
             "training.adapter": args.adapter}
    if args.method in ("lora", "full"):  # an explicit unquantized method wins over a config's bits
        args.set = ["quantization.bits=null", *args.set]
    if args.resume:
        saved = Path(args.resume) / "config.yaml"
        if args.config or not saved.is_file():
            raise AgentsftError(f"--resume {args.resume}: " + (
                "give either a config or --resume, not both" if args.config else
                "no config.yaml there, so it is not a run directory") +
                ". Fix: agentsft train --resume RUN_DIR")
        cfg = config.load(saved, args.set, flags={**flags, "training.output": args.resume})
        train(cfg, resume=True)
        return 0
    cfg = config.load(args.config, args.set, args.config_name, flags)
    train(cfg)
    return 0


def tokenizer_and_template(args):
    from agentsft.data.templates import get_template
    from agentsft.models import collection_paused, load_tokenizer
    with collection_paused():
        tok = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        return tok, get_template(args.template, tok)


def run_data(args, parser) -> int:
    from agentsft.data import inspect
    if args.action == "check":
        return inspect.check(args.files, args.format, args.skip_invalid, args.policy)
    if args.action == "convert":
        return inspect.convert(args.files, args.to, args.output, args.format, args.skip_invalid)
    if args.action in ("preview", "stats"):
        tok, template = tokenizer_and_template(args)
        if args.action == "stats":
            return inspect.stats(args.file, tok, template, args.policy, args.format,
                                 args.skip_invalid, args.max_length)
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                           and not os.environ.get("NO_COLOR"))
        return inspect.preview(args.file, args.n, tok, template, args.policy, args.format,
                               args.skip_invalid, args.json, color, args.max_length,
                               args.truncation)
    print(args.usage(), file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb == "data":
            return run_data(args, parser)
        if args.verb == "train":
            return run_train(args)
        if args.verb == "demo":
            from agentsft.demo import main as demo_main
            return demo_main(args)
        if args.verb == "eval":
            from agentsft.evaluate import run_eval
            return run_eval(args)
        if args.verb == "chat":
            from agentsft.chat import run_chat
            return run_chat(args)
        parser.print_help()
        return 2
    except AgentsftError as e:
        print(f"agentsft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agentsft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":
    sys.exit(main())
