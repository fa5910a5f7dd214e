"""``agentsft train``: fine-tune a model on agent conversations."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentsft.cli.common import add_source, whole_number
from agentsft.config import DEFAULT_MODEL
from agentsft.errors import AgentsftError


def add(verbs) -> None:
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
    p.add_argument("--data", nargs="+", metavar="FILE",
                   help="training data: files (.json, .jsonl, .parquet, .arrow, .csv, .tsv), "
                        "dataset folders or hub dataset ids")
    p.add_argument("--val", nargs="+", metavar="FILE",
                   help="validation files (default: a seeded 10%% of the training data)")
    add_source(p)
    p.add_argument("--output", metavar="RUN_DIR", help="run directory (e.g. runs/NAME)")
    p.add_argument("--method", choices=("lora", "qlora", "full"), help="default: lora")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=whole_number(1))
    p.add_argument("--adapter", metavar="RUN_DIR", help="continue training this LoRA adapter")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint (its config is reused)")


def run(args) -> int:
    from agentsft import config
    from agentsft.training import train
    flags = {"model.name": args.model, "data.train": args.data, "data.val": args.val,
             "data.config": args.data_config, "data.split": args.split,
             "data.revision": args.revision,
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
