"""What schema-constrained calls cost per decoding step, against the step itself.

    python bench/constrain_cost.py                   # default model, examples/tools.jsonl
    python bench/constrain_cost.py --adapter runs/demo/run --rounds 3

Generates calls for the first N tool-calling steps of the data, with every call forced
(``tool_choice="required"``) so that each step is inside a call and pays for the
constraint: one prompt at a time (``model.generate`` with the logits processor) and in
batches (agentsft's decoding loop). The constraint's own work (the token mask from
llguidance, applying it, feeding each token back) is timed apart from the rest of the
step, and one JSON line gives both per step and their ratio (target: under 0.15). Then
the same prompts with tool_choice auto and with the constraint off, whose outputs must
agree wherever the free call was valid (a check, printed as counts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from agentsft.data.readers import read_conversations
from agentsft.evaluation.steps import stepwise_steps
from agentsft.inference import Sampling, calls, engine, load_generator


class Timer:
    """Wraps the constraint's two entry points and sums the time spent in them."""

    def __init__(self):
        self.seconds = 0.0
        self.steps = 0
        constrain, advance = calls.constrain_logits, calls.CallWatch.advance

        def timed_constrain(logits, watches):
            t = time.perf_counter()
            constrain(logits, watches)
            self.seconds += time.perf_counter() - t
            self.steps += 1

        def timed_advance(watch, token):
            t = time.perf_counter()
            advance(watch, token)
            self.seconds += time.perf_counter() - t

        calls.constrain_logits = engine.constrain_logits = timed_constrain
        calls.CallWatch.advance = timed_advance

    def take(self) -> tuple[float, int]:
        out = (self.seconds, self.steps)
        self.seconds, self.steps = 0.0, 0
        return out


def forced(gen, steps, batch_size: int, timer: Timer, max_new: int) -> dict[str, float]:
    timer.take()
    began = time.perf_counter()
    tokens = 0
    for at in range(0, len(steps), batch_size):
        chunk = steps[at:at + batch_size]
        rules = [gen.call_rules(s.history.tools, "required") for s in chunk]
        outs = gen.generate([gen.template.prompt(s.history) for s in chunk], Sampling(max_new),
                            calls=rules)
        tokens += sum(o.tokens for o in outs)
    total = time.perf_counter() - began
    spent, _ = timer.take()
    return {"tokens": tokens, "step_ms": 1e3 * (total - spent) / tokens * batch_size,
            "constraint_ms": 1e3 * spent / tokens * batch_size, "ratio": spent / (total - spent)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="examples/tools.jsonl")
    p.add_argument("--model")
    p.add_argument("--adapter")
    p.add_argument("--steps", type=int, default=16, help="tool-calling steps to generate")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    gen = load_generator(args.model, args.adapter)
    convs = read_conversations([args.data]).conversations
    steps = [s for s in stepwise_steps(convs) if s.gold_calls][:args.steps]
    timer = Timer()
    gen.call_rules(steps[0].history.tools, "required")  # llguidance's tokenizer, built once
    rounds = {1: [], args.batch_size: []}
    for _ in range(args.rounds):
        for b in rounds:
            rounds[b].append(forced(gen, steps, b, timer, args.max_new_tokens))
    result = {f"batch_{b}": {k: round(statistics.median(r[k] for r in rs), 4) for k in rs[0]}
              for b, rs in rounds.items()}
    # Free against constrained, tool_choice auto: equal wherever the free call was valid.
    prompts = [gen.template.prompt(s.history) for s in steps]
    tools = [s.history.tools for s in steps]
    gen.constrain = False
    free = gen.complete_batch(prompts, Sampling(args.max_new_tokens), args.batch_size, tools=tools)
    gen.constrain = True
    bound = gen.complete_batch(prompts, Sampling(args.max_new_tokens), args.batch_size, tools=tools)
    result["auto"] = {"prompts": len(prompts), "equal": sum(f.text == b.text for f, b in zip(free, bound)),
                      "calls_free": sum(gen.template.call_marker in f.text for f in free)}
    result["device"] = str(gen.model.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
