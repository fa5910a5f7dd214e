"""``agentsft serve`` under load: N concurrent clients (the real ``openai`` package, streaming)
against the default model, a fixed mix of prompts (half plain questions, half requests with
the tools of ``examples/tools.jsonl``), greedy.

    python bench/serve_load.py                      # N = 1, 4, 8, 16; 3 requests per client
    python bench/serve_load.py --clients 1 8 --requests 3 --max-tokens 64

For each N: completion tokens per second over the level's wall time, time to first token
(the first content or tool-call chunk) and total latency, p50 and p95, and the throughput
ratio against N = 1 (one request at a time, measured in the same run). The server runs in a
subprocess on a free port of 127.0.0.1, started once. Prints a line per N and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAIN = ["Who are you?", "Give me three tips for writing clear emails.",
         "What is the capital of Australia?", "Explain what an API is in two sentences.",
         "Write a haiku about autumn.", "How do I boil an egg?",
         "Name three uses of a paperclip.", "What does a compiler do?"]


def tool_requests(count: int) -> list[tuple[str, list[dict]]]:
    """The first user message and tools of the first ``count`` conversations of tools.jsonl."""
    out = []
    for line in (ROOT / "examples" / "tools.jsonl").read_text().splitlines()[:count]:
        record = json.loads(line)
        question = next(m["content"] for m in record["messages"] if m["role"] == "user")
        out.append((question, record.get("tools") or []))
    return out


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "agentsft", "serve", "--port", "0", "--max-batch", str(max(args.clients))]
    if args.run:
        cmd.append(args.run)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 300)
    line = proc.stdout.readline() if ready else ""
    found = re.search(r"(http://\S+/v1) · models: ([^·]+)", line)
    if not found:
        proc.kill()
        sys.exit(f"serve_load: the server did not start ({line!r})")
    return proc, found.group(1), found.group(2).split(",")[0].strip()


def one(client, model: str, question: str, tools: list[dict], max_tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    first, tokens = None, 0
    kw = {"tools": tools} if tools else {}
    for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], temperature=0,
            max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if first is None and any(c.delta.content or c.delta.tool_calls for c in chunk.choices):
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"ttft": first if first is not None else total, "latency": total, "tokens": tokens}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def level(client, model: str, n: int, mix: list[tuple[str, list[dict]]], args) -> dict[str, float]:
    # Each request is new (a number at its end), so only what real requests share, the tools
    # before the question, can come from the cache of an earlier prompt.
    jobs = [(f"{q} (#{n}.{i}.{k})", tools) for i in range(n) for k in range(args.requests)
            for q, tools in [mix[(i * 3 + k) % len(mix)]]]
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda j: one(client, model, j[0], j[1], args.max_tokens), jobs))
    wall = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in results)
    return {"clients": n, "requests": len(results), "tokens": tokens, "seconds": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 2),
            "ttft_p50": round(statistics.median(r["ttft"] for r in results), 3),
            "ttft_p95": round(pct([r["ttft"] for r in results], 0.95), 3),
            "latency_p50": round(statistics.median(r["latency"] for r in results), 3),
            "latency_p95": round(pct([r["latency"] for r in results], 0.95), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--requests", type=int, default=3, help="requests per client per level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--run", help="a run directory to serve (default: the default model)")
    args = p.parse_args()
    import openai
    proc, url, model = start_server(args)
    try:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        mix = [m for pair in zip([(q, []) for q in PLAIN], tool_requests(len(PLAIN))) for m in pair]
        one(client, model, *mix[0], args.max_tokens)  # warm: the grammar's tokenizer, caches
        rows = []
        for n in args.clients:
            row = level(client, model, n, mix, args)
            base = rows[0]["tokens_per_s"] if rows and rows[0]["clients"] == 1 else row["tokens_per_s"]
            row["ratio_vs_1"] = round(row["tokens_per_s"] / base, 2)
            rows.append(row)
            print(f"N={n:2d}: {row['tokens_per_s']:7.1f} tokens/s (x{row['ratio_vs_1']}), first token "
                  f"p50 {row['ttft_p50']:.2f} s p95 {row['ttft_p95']:.2f} s, latency p50 "
                  f"{row['latency_p50']:.2f} s p95 {row['latency_p95']:.2f} s "
                  f"({row['requests']} requests, {row['tokens']} tokens)", flush=True)
        print(json.dumps({"model": model, "max_tokens": args.max_tokens, "levels": rows}))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


if __name__ == "__main__":
    main()
