"""Time to first token of ``agentsft chat``: from launching the process to the reply's first
character on its output, with the message already waiting on its input.

    python bench/chat_ttft.py                 # 5 rounds, the cached default model
    python bench/chat_ttft.py --rounds 3 --adapter runs/persona    # a trained run
    python bench/chat_ttft.py --tools examples/tools.py     # a tool agent (longer prompt)

Each round launches ``python -m agentsft chat`` as a user starts it and the same chat with
the garbage-collector pause of start-up turned off (the baseline), in alternating order, feeds
"Hello!" then "exit" on standard input, and reads standard output as it arrives. A third
process, ``python -c "import torch"``, times the import of torch alone on the same machine
in the same round, for scale. One untimed run first makes sure the default model's cached
checkpoint exists and its files are in the page cache. Prints one line per round and a
JSON line with the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

MARK = b"assistant> "
# The baseline: the same command with the start-up pause replaced by doing nothing.
WITHOUT_PAUSE = ("import contextlib, sys; from agentsft.cli import chat; "
                 "chat.collection_paused = contextlib.nullcontext; "
                 "from agentsft.cli import main; sys.exit(main(sys.argv[1:]))")


def first_token_seconds(command: list[str], message: str = "Hello!",
                        limit: float = 120.0) -> tuple[float, float]:
    """(seconds until the chat prompt appears, seconds until the reply's first character).

    The first character is the first visible one after ``assistant> ``: for a reply that
    opens with a tool call, the call's line, shown once the call is complete."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a pipe left unread could fill and stall the chat
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=errors, bufsize=0)
        proc.stdin.write(f"{message}\nexit\n".encode())
        proc.stdin.close()
        seen, prompt_at = b"", None
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], limit - (time.perf_counter() - start))
                chunk = os.read(proc.stdout.fileno(), 4096) if ready else None
                now = time.perf_counter() - start
                if not chunk:
                    proc.kill()
                    proc.wait()
                    errors.seek(0)
                    why = "timed out" if chunk is None else f"exit {proc.returncode}"
                    raise SystemExit(f"chat gave no reply ({why}): {seen.decode()[-300:]}"
                                     f"{errors.read().decode()[-500:]}")
                seen += chunk
                if prompt_at is None and b"you> " in seen:
                    prompt_at = now
                head, mark, reply = seen.partition(MARK)
                if mark and reply.strip():
                    return prompt_at or now, now
        finally:
            proc.kill()
            proc.wait()


def chat_flags(model: str | None = None, tools: str | None = None,
               adapter: str | None = None) -> list[str]:
    flags = ["chat", "--max-new-tokens", "8"]
    for flag, value in (("--model", model), ("--tools", tools), ("--adapter", adapter)):
        flags += [flag, value] if value else []
    return flags


def import_torch_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model", help="a hub id or folder (default: the cached default model)")
    p.add_argument("--tools", metavar="FILE", help="a tools file: time a tool agent")
    p.add_argument("--adapter", metavar="RUN_DIR", help="time chat with what a run trained")
    args = p.parse_args()
    flags = chat_flags(args.model, args.tools, args.adapter)
    chat = [sys.executable, "-m", "agentsft", *flags]
    baseline = [sys.executable, "-c", WITHOUT_PAUSE, *flags]
    first_token_seconds(chat)  # warm-up: the cached checkpoint, the page cache
    rows = []
    for i in range(args.rounds):
        if i % 2:  # alternate which goes first
            _, without = first_token_seconds(baseline)
            prompt_at, ttft = first_token_seconds(chat)
        else:
            prompt_at, ttft = first_token_seconds(chat)
            _, without = first_token_seconds(baseline)
        torch_s = import_torch_seconds()
        rows.append((ttft, without, torch_s, prompt_at))
        print(f"round {i + 1}: first token {ttft:.2f} s (prompt shown at {prompt_at:.2f} s); "
              f"without the collector pause {without:.2f} s; import torch alone {torch_s:.2f} s",
              flush=True)
    median = [statistics.median(col) for col in zip(*rows)]
    print(json.dumps({
        "rounds": args.rounds, "adapter": args.adapter, "tools": args.tools,
        "model": args.model or ("the run's" if args.adapter else "default (cached)"),
        "first_token_s": round(median[0], 2), "target_s": 5.0,
        "without_collector_pause_s": round(median[1], 2),
        "saved_s": round(median[1] - median[0], 2),
        "import_torch_alone_s": round(median[2], 2),
        "prompt_shown_s": round(median[3], 2),
        "device": f"cpu ({os.cpu_count()} cores)"}), flush=True)


if __name__ == "__main__":
    main()
