"""Generation throughput for eval and chat: batched against one prompt at a time.

    python bench/eval_throughput.py                  # 32 steps of examples/tools.jsonl
    python bench/eval_throughput.py --adapter runs/demo/run --batch-size 16

Generates the first N assistant steps of the eval set (stepwise prompts, greedy, each
step capped as ``agentsft eval`` caps it) with batches, with batches but every prompt
read in full (no shared prefixes), and one prompt at a time, in the same process, and
prints one JSON line: prompts/s and generated tokens/s, the ratios to one at a time, and
how many outputs agree exactly (bf16 kernels of different batch shapes may round
differently). Then the time to first token of ``agentsft chat`` (bench/chat_ttft.py has
more rounds and a baseline): a fresh process, cached default model, from launch to the
reply's first character.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from chat_ttft import chat_flags, first_token_seconds

from agentsft.data.readers import read_conversations
from agentsft.evaluation.evaluate import gold_budget
from agentsft.evaluation.steps import stepwise_steps
from agentsft.inference import Sampling, load_generator


def timed(gen, prompts, limits, batch_size, share=True):
    t = time.perf_counter()
    out = gen.complete_batch(prompts, Sampling(256), batch_size, limits=limits, share_prefixes=share)
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="examples/tools.jsonl")
    p.add_argument("--adapter", help="a training run (default: the base default model)")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    gen = load_generator(adapter=args.adapter)
    steps = stepwise_steps(read_conversations(args.data).conversations)[:args.steps]
    prompts = [gen.template.prompt(s.history) for s in steps]
    limits = [gold_budget(gen, s) for s in steps]
    gen.complete_batch(prompts[:2], Sampling(8), 2)  # warm-up
    batched, t_batched = timed(gen, prompts, limits, args.batch_size)
    _, t_unshared = timed(gen, prompts, limits, args.batch_size, share=False)
    single, t_single = timed(gen, prompts, limits, 1, share=False)
    tokens = sum(g.tokens for g in batched)
    row = {
        "steps": len(prompts), "batch_size": args.batch_size, "model_dtype": str(gen.model.dtype),
        "batched_s": round(t_batched, 1), "batched_unshared_s": round(t_unshared, 1),
        "one_at_a_time_s": round(t_single, 1),
        "batched_prompts_per_s": round(len(prompts) / t_batched, 2),
        "one_at_a_time_prompts_per_s": round(len(prompts) / t_single, 2),
        "batched_tokens_per_s": round(tokens / t_batched, 1),
        "ratio": round(t_single / t_batched, 2),
        "ratio_without_shared_prefixes": round(t_single / t_unshared, 2),
        "outputs_agreeing": sum(a.text == b.text for a, b in zip(batched, single)),
        "chat_first_token_s": round(first_token_seconds(
            [sys.executable, "-m", "agentsft", *chat_flags()])[1], 2),
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
