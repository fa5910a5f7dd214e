"""``agentsft export``: what a run trained, as a model other engines load."""

from __future__ import annotations

import argparse
import time


def add(verbs) -> None:
    p = verbs.add_parser(
        "export", help="write a run as a merged model that carries its own chat template",
        description="Merge a run's adapter into its base (float32 sum, rounded once) and write a "
                    "self-contained transformers model: safetensors, the tokenizer with the run's "
                    "agent template as its chat template (rendering exactly what training saw), "
                    "a generation config that stops at the template's end of turn, a model card.",
        epilog="examples:\n"
               "  agentsft export runs/demo/run -o exports/marlo\n"
               "  agentsft export runs/demo/run -o exports/marlo --dtype float32 --force\n"
               "then: vllm serve exports/marlo --enable-auto-tool-choice --tool-call-parser hermes",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="a training run (or its final/ folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder to write")
    p.add_argument("--to", default="hf", choices=("hf",),
                   help="hf: a merged transformers model (default)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"),
                   help="the weights' dtype (default bfloat16)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from agentsft.export.hf import export_hf
    from agentsft.hub import say
    start = time.perf_counter()
    out = export_hf(args.run, args.output, args.dtype, args.force)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    say(f"exported {args.run} to {out} ({size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)")
    return 0
