"""``agentsft demo``: the default model before and after a LoRA fine-tune."""

from __future__ import annotations

import time

from agentsft.cli.common import whole_number


def add(verbs) -> None:
    p = verbs.add_parser(
        "demo", help="the main job: the default model before and after a LoRA fine-tune",
        description="Ask the default model who it is and a question that needs a tool, and score "
                    "its tool calls on held-out conversations; fine-tune it (LoRA, on this CPU) on "
                    "the example persona and function-calling data; ask and score again. The tool "
                    "agent really runs the functions in examples/tools.py.")
    p.add_argument("--output", metavar="DIR", help="where the run is saved (default: runs/demo-TIME)")
    p.add_argument("--calls", type=whole_number(1),
                   help="function-calling conversations to train on (default: as many as take, "
                        "with the persona set, about five minutes of a 2-core CPU; fewer: faster)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--held-out-every", type=whole_number(1),
                   help="score every N-th held-out conversation (default 5: 30 of 150)")


def run(args) -> int:
    from agentsft.demo import run_demo
    output = args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    sizes = {k: v for k, v in (("calls", args.calls), ("held_out_every", args.held_out_every)) if v}
    run_demo(output, learning_rate=args.learning_rate, **sizes)
    return 0
