"""``agentsft data check|preview|stats|convert``: look at data before training on it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from agentsft.cli.common import add_reading, add_rendering, source_options, whole_number
from agentsft.data.templates import POLICIES
from agentsft.data.tokenize import TRUNCATION
from agentsft.errors import AgentsftError


def add(verbs) -> None:
    data = verbs.add_parser("data", help="check, preview, measure and convert conversation data",
                            description="Look at conversation data before training on it.")
    data.set_defaults(usage=data.format_help)
    sub = data.add_subparsers(dest="action", metavar="ACTION")

    p = sub.add_parser("check", help="validate files; count conversations, turns, calls, tools",
                       description="Validate data files and count what they hold. Exit 0 when "
                                   "clean, 2 at the first invalid record (unless --skip-invalid).")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="data files (.json, .jsonl, .parquet, .arrow, .csv, .tsv), folders "
                        "holding them or written by datasets' save_to_disk, or hub dataset ids")
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
                                   "histogram of each source; with --max-length, how many "
                                   "examples it would drop or truncate. Several sources, or a "
                                   "training config whose data.train weights them (--config), "
                                   "add the mix a run would take.",
                       epilog="examples:\n  agentsft data stats examples/tools.jsonl --max-length 1024\n"
                              "  agentsft data stats --config run.yaml   # data.train's sources, "
                              "weights, model, template and max length",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--config", metavar="CONFIG",
                   help="a training config (YAML/JSON): measure its data.train with the weights, "
                        "model, template, policy and max length it sets")
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


def tokenizer_and_template(args):
    from agentsft import hub
    from agentsft.data.templates import get_template
    with hub.collection_paused():
        tok = hub.load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        return tok, get_template(args.template, tok)


def run(args) -> int:
    from agentsft.data import inspect
    if args.action == "check":
        return inspect.check(args.files, args.format, args.skip_invalid, args.policy,
                             source_options(args))
    if args.action == "convert":
        return inspect.convert(args.files, args.to, args.output, args.format, args.skip_invalid,
                               source_options(args))
    if args.action == "stats" and args.config:
        return stats_of_config(args)
    if args.action in ("preview", "stats"):
        if args.action == "stats" and not args.files:
            raise AgentsftError("data stats: give FILE(s) or --config CONFIG. Fix: agentsft data "
                                "stats data.jsonl")
        tok, template = tokenizer_and_template(args)
        if args.action == "stats":
            return inspect.stats([(f, 1, source_options(args)) for f in args.files], tok, template,
                                 args.policy, args.format, args.skip_invalid, args.max_length)
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                           and not os.environ.get("NO_COLOR"))
        return inspect.preview(args.file, args.n, tok, template, args.policy, args.format,
                               args.skip_invalid, args.json, color, args.max_length,
                               args.truncation, source_options(args))
    print(args.usage(), file=sys.stderr)
    return 2


def stats_of_config(args) -> int:
    """``data stats --config``: the sources of a training config, weighted as it weights
    them, measured with its model's tokenizer, template, policy and max length."""
    from agentsft import config, hub
    from agentsft.data import inspect
    from agentsft.data.templates import get_template
    from agentsft.training.data import train_source
    if args.files:
        raise AgentsftError("data stats: give FILE(s) or --config, not both. Fix: drop one")
    cfg = config.load(args.config)
    d = cfg.data
    if not d.train:
        raise AgentsftError(f"{args.config}: data.train is empty. Fix: list the training sources there")
    base = dataclasses.replace(source_options(args), config=d.config, split=d.split,
                               revision=d.revision)
    sources = [train_source(entry, base) for entry in d.train]
    with hub.collection_paused():
        tok = hub.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    return inspect.stats([(s.path, s.weight, s.options) for s in sources], tok,
                         get_template(d.template, tok), d.policy, d.format, d.skip_invalid,
                         args.max_length or d.max_length)
