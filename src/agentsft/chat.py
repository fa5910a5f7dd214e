"""``agentsft chat``: talk to a model, or to what a run trained, with real tools.

Streams the reply as it is written; tool calls and their results are shown on
their own lines; ``exit`` (or end of input) leaves, ``/reset`` clears memory.
``--prompt`` answers once and prints only the reply (``--json``: with the calls).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from agentsft.agents import DialogAgent, Toolkit, ToolAgent, UserAgent
from agentsft.generate import load_generator, pending_stop_prefix

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
            visible = visible[:len(visible) - pending_stop_prefix(visible, (self.marker,))]
        if len(visible) > self.shown:
            self.paint(visible[self.shown:])
            self.shown = len(visible)


def build_agent(args) -> DialogAgent:
    generator = load_generator(args.model, args.adapter, args.device)
    sampling = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    if args.tools:
        kit = Toolkit.from_file(args.tools, timeout=args.tool_timeout)
        return ToolAgent("assistant", args.system, toolkit=kit, generator=generator,
                         max_steps=args.max_steps, **sampling)
    return DialogAgent("assistant", args.system, generator=generator, **sampling)


def describe(call: Any) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


def run_chat(args) -> int:
    agent = build_agent(args)
    if args.prompt is not None:
        return answer_once(agent, args.prompt, args.json)
    paint = Painter(sys.stdout, sys.stdout.isatty())
    g = agent.generator
    tools = ", ".join(t.name for t in agent.tools or ()) or "none"
    paint(f"agentsft chat · template {g.template.name} · tools: {tools}\n"
          f"Type exit to leave, /reset to clear the conversation.\n", DIM)
    user = UserAgent(prompt="you> ")
    while True:
        msg = user()
        if msg is None:
            paint("\n")
            return 0
        if msg.content.strip() == "/reset":
            agent.reset()
            paint("(conversation cleared)\n", DIM)
            continue
        if not msg.content.strip():
            continue
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
