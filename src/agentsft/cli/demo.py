"""``agentsft demo``: the default model before and after a LoRA fine-tune."""

from __future__ import annotations

import time

from agentsft.cli.common import whole_number


def add(verbs) -> None:
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


def run(args) -> int:
    from agentsft.demo import run_demo
    output = args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_demo(output, args.epochs, args.learning_rate, args.tool_share)
    return 0
