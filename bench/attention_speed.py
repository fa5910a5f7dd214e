"""Causal attention for CPU training: our chunked version against PyTorch's flash kernel.

    python bench/attention_speed.py                     # the default model's heads, 950 tokens
    python bench/attention_speed.py --length 2048 --rounds 9

One sequence, the default model's attention shape (9 query heads sharing 3 key/value
heads of 64), bf16. Forward and backward are timed separately, alternating between the two
implementations, and the medians printed as one JSON line, with each one's largest
difference from a float32 reference (relative to the reference's largest value).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from agentsft.accel.attention import causal_attention


def flash(q, k, v):
    return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True,
                                          enable_gqa=True)[0]


def run(fn, q, k, v, grad):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    t0 = time.perf_counter()
    out = fn(q, k, v)
    t1 = time.perf_counter()
    out.backward(grad)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, [out.detach(), q.grad, k.grad, v.grad]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=950)
    p.add_argument("--heads", type=int, default=9)
    p.add_argument("--kv-heads", type=int, default=3)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    gen = torch.Generator().manual_seed(0)
    shape = (args.length, args.head_dim)
    q, grad = (torch.randn(args.heads, *shape, generator=gen) for _ in range(2))
    k, v = (torch.randn(args.kv_heads, *shape, generator=gen) for _ in range(2))
    reference = run(flash, q, k, v, grad)[2]  # float32
    low = [t.bfloat16() for t in (q, k, v, grad)]
    fns = {"flash": flash, "ours": causal_attention}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    error = {}
    for r in range(args.rounds + 1):
        for name, fn in fns.items():
            fwd, bwd, tensors = run(fn, *low)
            if r:  # the first round warms up
                times[name].append((fwd, bwd))
            error[name] = max(((a.float() - b).abs().max() / b.abs().max()).item()
                              for a, b in zip(tensors, reference))
    row = {"length": args.length, "heads": args.heads, "kv_heads": args.kv_heads,
           "device": f"cpu ({os.cpu_count()} cores)"}
    for name in fns:
        row[f"{name}_forward_ms"] = round(statistics.median(t[0] for t in times[name]) * 1e3, 1)
        row[f"{name}_backward_ms"] = round(statistics.median(t[1] for t in times[name]) * 1e3, 1)
        row[f"{name}_max_error_vs_fp32"] = round(error[name], 4)
    total = {n: row[f"{n}_forward_ms"] + row[f"{n}_backward_ms"] for n in fns}
    row["speedup"] = round(total["flash"] / total["ours"], 2)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
