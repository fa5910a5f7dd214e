"""Training throughput: real (non-padding) tokens per second, seconds, peak memory.

    python bench/train_throughput.py --model smollm2-135m-instruct --data examples/tools.jsonl

Runs agentsft's own training path for a fixed number of steps (no validation),
then prints one JSON line. The bound on this CPU is given for reference:
LoRA costs about 4 x params FLOPs per token (forward, and the backward pass
through activations only; full fine-tuning adds the weight gradients: 6 x), so
tokens/s <= matmul rate / (4 x params); the matmul rate is measured in the same
run. Tokens/s is the steady rate: from the end of step 1 to the end of the last
step, without start-up or the final save.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import torch

from agentsft import config
from agentsft.training import train


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 8, device: str = "cpu") -> float:
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=config.DEFAULT_MODEL)
    p.add_argument("--data", default="examples/tools.jsonl")
    p.add_argument("--method", default="lora", choices=("lora", "qlora", "full"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--set", action="append", default=[], help="any other config override")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = config.load(overrides=args.set, flags={
            "model.name": args.model, "data.train": [args.data], "data.val_fraction": 0,
            "data.max_length": args.max_length, "data.truncation": "truncate",
            "training.output": out, "training.method": args.method,
            "training.max_steps": args.steps, "training.batch_size": args.batch_size,
            "training.precision": args.precision, "training.save_every": 10 ** 6,
            "training.log_every": 10 ** 6})
        result = train(cfg)
        params = sum(p.numel() for p in result.model.parameters())
    row = {
        "model": args.model, "data": args.data, "method": args.method,
        "precision": args.precision, "batch_size": args.batch_size, "steps": result.steps,
        "batches": "packed" if result.packed else "padded", "tokens": result.tokens,
        "seconds": round(result.seconds, 2),
        "tokens_per_s": round(result.steady_tokens_per_s or result.tokens_per_s, 1),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if not torch.cuda.is_available():
        rate = matmul_gflops(torch.bfloat16 if args.precision in ("auto", "bf16") else torch.float32)
        bound = rate * 1e9 / ((6 if args.method == "full" else 4) * params)
        row.update(matmul_gflops=round(rate, 1), bound_tokens_per_s=round(bound, 1),
                   fraction_of_bound=round(row["tokens_per_s"] / bound, 3))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
