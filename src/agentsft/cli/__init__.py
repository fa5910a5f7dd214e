"""The ``agentsft`` command: one verb per stage of the pipeline.

    agentsft data check|preview|stats|convert   look at data before training on it
    agentsft train                              fine-tune (LoRA, QLoRA, full)
    agentsft chat                               talk to a model or a run, with real tools
    agentsft eval                               score tool calls, arguments, ROUGE-L, perplexity
    agentsft serve                              an OpenAI-compatible API over a run
    agentsft export                             a merged model that carries its chat template
    agentsft demo                               the default model before and after fine-tuning

Errors the user can fix print as one line on stderr and exit with code 2. Each verb is a
module here: it parses its arguments, calls the library and prints; nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from agentsft import __version__
from agentsft.errors import AgentsftError

VERBS = ("data", "train", "chat", "eval", "serve", "export", "demo")
"""Each verb is a module here with ``add(subparsers)`` and ``run(args) -> exit code``."""


def verb(name: str) -> ModuleType:
    return importlib.import_module(f"agentsft.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentsft", description="Fine-tune open language models into tool-using agents.")
    parser.add_argument("--version", action="version", version=f"agentsft {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    for name in VERBS:
        verb(name).add(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb in VERBS:
            return verb(args.verb).run(args)
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
