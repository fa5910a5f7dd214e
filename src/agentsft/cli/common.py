"""Arguments several verbs share: how data is read and rendered, which model answers and
how it generates."""

from __future__ import annotations

import argparse

from agentsft.config import DEFAULT_MODEL
from agentsft.data.readers import FORMATS
from agentsft.data.templates import POLICIES, TEMPLATES


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
    add_source(p)


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-config", metavar="NAME",
                   help="the configuration of a hub dataset (its subset name)")
    p.add_argument("--split", metavar="SPLIT",
                   help="which split of a dataset (default: its only one, else train)")
    p.add_argument("--revision", metavar="REV",
                   help="the revision of a hub dataset (branch, tag or commit)")


def source_options(args: argparse.Namespace):
    """How to open dataset sources, from the flags, with the hub token models use."""
    from agentsft.config import hf_token
    from agentsft.data.sources import SourceOptions
    return SourceOptions(config=args.data_config, split=args.split, revision=args.revision,
                         token=hf_token())


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


def add_model_choice(p: argparse.ArgumentParser) -> None:
    """Which model answers: a base model, or a trained run on top of its recorded base."""
    p.add_argument("--model", help=f"hub id, local folder, or {DEFAULT_MODEL} (default; with "
                                   "--adapter: the base model the run recorded)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a training run (or its final/ folder)")


def add_generation(p: argparse.ArgumentParser) -> None:
    """How it generates and runs tools (chat and eval alike)."""
    add_engine(p)
    p.add_argument("--max-new-tokens", type=whole_number(1), default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--tool-timeout", type=float, default=10.0, help="seconds per tool call")


def add_engine(p: argparse.ArgumentParser) -> None:
    """Where and how the model runs (chat, eval and serve alike)."""
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights' dtype (auto: bfloat16 where the hardware runs it fast, else float32)")
    p.add_argument("--fast-path", default="auto", choices=("auto", "off"),
                   help="agentsft's own attention, LoRA merge and cache reuse where each fits the "
                        "model (auto), or transformers' and PEFT's code throughout (off)")
    p.add_argument("--constrain", default="on", choices=("on", "off"),
                   help="tool calls constrained to the offered tools and their JSON schemas "
                        "(on, default: the model still decides whether to call), or free "
                        "decoding (off, to compare)")
