"""``agentsft chat``: talk to a model, or to what a run trained, with real tools.

Streams the reply as it is written; tool calls and their results are shown on
their own lines; ``exit`` (or end of input) leaves, ``/reset`` clears memory.
``--prompt`` answers once and prints only the reply (``--json``: with the calls).

Interactively the prompt comes up at once and the model loads while you type: importing
torch and transformers takes about 3 s on a 2-core laptop CPU, and loading the default
model about 0.4 s more, which would otherwise all come before the first word. Python's
cyclic garbage collector is paused while that happens (:func:`hub.collection_paused`).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, TextIO

from agentsft.cli.common import add_generation, add_model_choice, whole_number
from agentsft.hub import collection_paused

if TYPE_CHECKING:  # torch and transformers load in the background (see run_chat)
    from agentsft.agents import DialogAgent

def add(verbs) -> None:
    p = verbs.add_parser(
        "chat", help="talk to a model or a trained run, optionally with real Python tools",
        description="Talk to a model, or to what `agentsft train` saved (--adapter). Replies "
                    "stream as they are written; with --tools the agent calls your Python "
                    "functions and uses their results. Type exit to leave, /reset to clear memory.",
        epilog="examples:\n"
               "  agentsft chat --adapter runs/persona\n"
               "  agentsft chat --tools examples/tools.py --system 'You are Marlo.'\n"
               "  agentsft chat --adapter runs/persona --prompt 'Who are you?'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_choice(p)
    p.add_argument("--tools", metavar="FILE.py", help="Python file whose functions (or TOOLS list) "
                                                      "the agent may call")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--prompt", help="answer this once and exit, printing only the reply")
    p.add_argument("--json", action="store_true", help="with --prompt: the reply and tool calls as JSON")
    p.add_argument("--max-steps", type=whole_number(1), default=5,
                   help="tool-call rounds per answer before the agent stops")
    add_generation(p)


CYAN, DIM, BOLD, RESET = "\x1b[36m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


class Painter:
    def __init__(self, out: TextIO, color: bool):
        self.out, self.color = out, color

    def __call__(self, text: str, style: str = "") -> None:
        self.out.write(f"{style}{text}{RESET}" if self.color and style else text)
        self.out.flush()


class ReplyStream:
    """Shows a streamed reply up to where its tool calls begin (those are shown as events)."""

    def __init__(self, paint: Painter, marker: str):
        from agentsft.inference import pending_stop_prefix
        self.pending = pending_stop_prefix
        self.paint, self.marker = paint, marker
        self.text, self.shown, self.stopped = "", 0, False

    def __call__(self, piece: str) -> None:
        if self.stopped:
            return
        self.text += piece
        visible = self.text
        if self.marker and self.marker in visible:
            visible, self.stopped = visible.split(self.marker, 1)[0].rstrip(), True
        elif self.marker:
            visible = visible[:len(visible) - self.pending(visible, (self.marker,))]
        if len(visible) > self.shown:
            self.paint(visible[self.shown:])
            self.shown = len(visible)


def build_agent(args) -> DialogAgent:
    with collection_paused():
        return agent_for(args)


def agent_for(args) -> DialogAgent:
    from agentsft.agents import DialogAgent, ToolAgent, Toolkit
    from agentsft.inference import load_generator
    generator = load_generator(args.model, args.adapter, args.device, dtype=args.dtype,
                               fast_path=args.fast_path, constrain=args.constrain == "on")
    sampling = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    if args.tools:
        kit = Toolkit.from_file(args.tools, timeout=args.tool_timeout)
        generator.call_rules(kit.tools)  # compiled while the user types, not at the first reply
        return ToolAgent("assistant", args.system, toolkit=kit, generator=generator,
                         max_steps=args.max_steps, **sampling)
    return DialogAgent("assistant", args.system, generator=generator, **sampling)


def describe(call: Any) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


class Loading:
    """Builds the agent on a background thread; :meth:`result` waits for it (and raises
    what building raised, so a bad flag still ends in one clean line)."""

    def __init__(self, build: Callable[[], Any]):
        self.agent: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.agent = build()
            except BaseException as e:  # handed to the main thread
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True, name="agentsft-load")
        self.thread.start()

    def result(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.agent


def read_message(prompt: str = "you> ") -> str | None:
    """The user's next message; None when they leave (exit, quit, end of input)."""
    try:
        text = input(prompt)
    except (EOFError, KeyboardInterrupt):
        return None
    return None if text.strip().lower() in ("exit", "quit") else text


def run(args) -> int:
    if args.prompt is not None:
        return answer_once(build_agent(args), args.prompt, args.json)
    loading = Loading(lambda: build_agent(args))
    paint = Painter(sys.stdout, sys.stdout.isatty())
    paint(f"agentsft chat · {args.adapter or args.model or 'the default model'} · "
          f"tools: {args.tools or 'none'}\n"
          f"Type exit to leave, /reset to clear the conversation.\n", DIM)
    agent = None
    while True:
        text = read_message()
        if text is None:
            paint("\n")
            return 0
        if not text.strip():
            continue
        if agent is None:
            if loading.thread.is_alive():
                paint("(loading the model…)\n", DIM)
            agent = loading.result()
        if text.strip() == "/reset":
            agent.reset()
            paint("(conversation cleared)\n", DIM)
            continue
        from agentsft.agents import Msg, ToolAgent
        msg = Msg("user", text, name="User")
        g = agent.generator
        paint("assistant> ", BOLD)
        stream = ReplyStream(paint, g.template.call_marker)

        def on_event(kind: str, payload: Any) -> None:
            nonlocal stream
            if kind == "call":
                paint(f"\n  → {describe(payload)}", CYAN)
            elif kind == "result":
                call, result = payload
                paint(f"\n  ← {result.content[:500]}", DIM if not result.error else CYAN)
                paint("\nassistant> ", BOLD)
                stream = ReplyStream(paint, g.template.call_marker)
            elif kind == "error":
                paint(f"\n  ! {payload}\nassistant> ", CYAN)
                stream = ReplyStream(paint, g.template.call_marker)

        def on_text(piece: str) -> None:
            stream(piece)

        if isinstance(agent, ToolAgent):
            agent(msg, on_text=on_text, on_event=on_event)
        else:
            agent(msg, on_text=on_text)
        paint("\n")


def answer_once(agent: DialogAgent, prompt: str, as_json: bool) -> int:
    from agentsft.agents import ToolAgent
    events: list[dict[str, Any]] = []

    def on_event(kind: str, payload: Any) -> None:
        if kind == "result":
            call, result = payload
            events.append({"name": call.name, "arguments": call.arguments,
                           "result": result.content, "error": result.error})

    reply = agent(prompt, on_event=on_event) if isinstance(agent, ToolAgent) else agent(prompt)
    if as_json:
        print(json.dumps({"reply": reply.content, "tool_calls": events}, ensure_ascii=False))
    else:
        print(reply.content)
    return 0
