"""``agentsft serve``: a run (or several adapters of one base, or any model) behind an
OpenAI-compatible HTTP API, in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from agentsft.cli.common import add_engine, whole_number
from agentsft.config import DEFAULT_MODEL
from agentsft.data.templates import TEMPLATES
from agentsft.errors import AgentsftError


def add(verbs) -> None:
    p = verbs.add_parser(
        "serve", help="serve a run over an OpenAI-compatible API (tool calls, streaming)",
        description="Answer OpenAI chat-completion requests with what a run trained: the prompt "
                    "is rendered by the run's own template and tool calls are read back by it, "
                    "streamed or not. Concurrent requests share one batch. Stops on Ctrl-C.",
        epilog="examples:\n"
               "  agentsft serve runs/demo/run\n"
               "  agentsft serve --adapter support=runs/a --adapter sales=runs/b --port 8001\n"
               "  agentsft serve --model HuggingFaceTB/SmolLM2-135M-Instruct\n"
               "then: OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='none')",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", metavar="RUN_DIR",
                   help="a training run (or its final/ folder), served under its folder's name")
    p.add_argument("--name", help="the name RUN_DIR is served under (default: its folder's name)")
    p.add_argument("--model", help=f"the base model (hub id, local folder, or {DEFAULT_MODEL}, the "
                                   "default); with runs: the base they load on (default: recorded)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="another LoRA run of the same base, served as NAME (repeatable: one "
                        "process, one batch, each request names its model)")
    p.add_argument("--serve-base", action="store_true",
                   help="with runs: also serve the base model itself, under its own name")
    p.add_argument("--template", choices=TEMPLATES,
                   help="agent template (default: the one each run recorded; auto for a model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=whole_number(0), default=8000,
                   help="port (default 8000; 0 picks a free one, printed at start)")
    p.add_argument("--api-key", help="require this key as 'Authorization: Bearer KEY' "
                                     "(default: $AGENTSFT_API_KEY; unset: no key needed)")
    p.add_argument("--max-batch", type=whole_number(1), default=16,
                   help="requests decoded at once; more wait their turn (default 16)")
    add_engine(p)


def served_runs(args) -> dict[str, str]:
    """NAME -> run directory, in the order given; names are unique."""
    runs: dict[str, str] = {}
    if args.run:
        path = Path(args.run)
        runs[args.name or (path.parent.name if path.name == "final" else path.resolve().name)] = args.run
    elif args.name:
        raise AgentsftError("--name names RUN_DIR, and none was given. Fix: pass RUN_DIR, or "
                            "use --adapter NAME=RUN_DIR")
    for item in args.adapter:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise AgentsftError(f"--adapter {item!r} is not NAME=RUN_DIR. Fix: e.g. "
                                f"--adapter support=runs/support")
        if name in runs:
            raise AgentsftError(f"--adapter: the name {name!r} is used twice. Fix: give each run "
                                f"its own name")
        runs[name] = path
    return runs


def load(args) -> list:
    from agentsft.inference import load_generator
    from agentsft.inference.loading import load_adapters
    from agentsft.serving import Served
    runs = served_runs(args)
    options = dict(device=args.device, dtype=args.dtype, fast_path=args.fast_path,
                   constrain=args.constrain == "on", template=args.template)
    if not runs:
        name = args.model or DEFAULT_MODEL
        return [Served(name, load_generator(args.model, **options))]
    if len(runs) == 1 and not args.serve_base:
        (name, run), = runs.items()
        return [Served(name, load_generator(args.model, run, **options))]
    loaded = load_adapters(runs, args.model, with_base=args.serve_base, **options)
    return [Served(name, gen, adapter) for name, (gen, adapter) in loaded.items()]


def listening(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), or a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise AgentsftError(f"cannot listen on {host}:{port} ({e.strerror}). Fix: pass another "
                            f"--port (0 picks a free one) or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(args) -> int:
    import uvicorn

    from agentsft.serving import Server, create_app
    key = args.api_key or os.environ.get("AGENTSFT_API_KEY") or None
    sock = listening(args.host, args.port)  # before loading: a busy port fails at once
    served = load(args)
    server = Server(served, api_key=key, max_rows=args.max_batch)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"agentsft serve: http://{shown}:{port}/v1 · models: {', '.join(s.name for s in served)}"
          f" · API key {'required' if key else 'not required'} · Ctrl-C stops", flush=True)
    Foreground = foreground_server()
    config = uvicorn.Config(create_app(server), log_level="warning", timeout_graceful_shutdown=10)
    Foreground(config).run(sockets=[sock])
    print("agentsft serve: stopped", file=sys.stderr, flush=True)
    return 0


def foreground_server():
    import uvicorn

    class Foreground(uvicorn.Server):
        """uvicorn's server, but Ctrl-C and SIGTERM end it with exit code 0 after a graceful
        shutdown (uvicorn raises the signal again once done, so the process would die by
        it). A second Ctrl-C stops at once."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    return Foreground
