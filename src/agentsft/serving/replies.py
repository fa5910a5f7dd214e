"""A reply as the model writes it, read into OpenAI's content and tool calls, as it streams.

The run's own template reads the calls (the object that rendered them in training). Text
before the first call is the content, trimmed as :meth:`AgentTemplate.parse_reply` trims
it; each call is handed on as soon as its closing tag is written (or at the end, where
the template has none); a call that cannot be read, and everything after it, comes back
as text. A non-streamed reply is the same reader fed the whole text at once, so the
reassembled stream equals it by construction.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from agentsft.data.schema import ToolCall
from agentsft.data.templates import AgentTemplate
from agentsft.data.templates.base import CallParseError
from agentsft.inference.stops import pending_stop_prefix


@dataclass
class Piece:
    """What a reader hands on: text, or one call (with the id it is sent under)."""

    text: str = ""
    call: ToolCall | None = None


def call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ReplyReader:
    template: AgentTemplate
    marker: str
    """Where a call begins ("": calls are not tagged; everything waits for the end)."""
    close: str
    text: str = ""
    at: int = 0
    """Where the unread text starts."""
    held: str = ""
    """Whitespace held back: it is shown only if more text follows it."""
    started: bool = False
    broken: bool = False
    calls: list[ToolCall] = field(default_factory=list)

    def feed(self, piece: str) -> list[Piece]:
        self.text += piece
        return self.read(final=False)

    def finish(self) -> list[Piece]:
        return self.read(final=True)

    def read(self, final: bool) -> list[Piece]:
        out: list[Piece] = []
        while True:
            if self.broken or not self.marker:
                if self.marker or final:  # untagged calls: the whole text, read at the end
                    out += self.rest_of_text(final) if self.marker else self.untagged()
                return out
            start = self.text.find(self.marker, self.at)
            if start < 0:
                keep = 0 if final else pending_stop_prefix(self.text[self.at:], (self.marker,))
                out += self.shown(self.text[self.at:len(self.text) - keep], final)
                self.at = len(self.text) - keep
                return out
            out += self.shown(self.text[self.at:start], final=False)
            self.at = start
            call, end = self.call_at(start, final)
            if call is None:
                if not final:
                    return out
                self.broken = True  # the held whitespace and the call come back as text
                continue
            self.held = ""  # whitespace before a call is not content
            call.id = call_id()
            self.calls.append(call)
            out.append(Piece(call=call))
            self.at = end

    def call_at(self, start: int, final: bool) -> tuple[ToolCall | None, int]:
        """The call that begins at ``start`` and where it ends: at the first closing tag
        after which it reads as one call (at the end of the text, once it is final)."""
        ends = []
        pos = start + len(self.marker)
        while self.close and (found := self.text.find(self.close, pos)) >= 0:
            pos = found + len(self.close)
            ends.append(pos)
        if final:
            ends.append(len(self.text))
        for end in ends:
            try:
                calls = self.template.parse_calls(self.text[start:end])
            except CallParseError:
                continue
            if len(calls) == 1:
                return calls[0], end
        return None, start

    def shown(self, text: str, final: bool) -> list[Piece]:
        """Content, with leading whitespace of the reply dropped and trailing whitespace
        held until more text follows it."""
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        text = self.held + text
        body = text.rstrip()
        self.held = "" if final else text[len(body):]
        return [Piece(body)] if body else []

    def rest_of_text(self, final: bool) -> list[Piece]:
        """After a call that cannot be read: everything is text."""
        out = self.shown(self.text[self.at:], final)
        self.at = len(self.text)
        return out

    def untagged(self) -> list[Piece]:
        try:
            message = self.template.parse_reply(self.text)
        except CallParseError:
            return self.rest_of_text(True)
        for call in message.tool_calls:
            call.id = call_id()
        self.calls = list(message.tool_calls)
        self.at = len(self.text)
        return ([Piece(message.content)] if message.content else []) + [Piece(call=c) for c in self.calls]


def read_reply(reader: ReplyReader, text: str) -> tuple[str, list[ToolCall]]:
    """The whole reply at once: its content and calls."""
    pieces = reader.feed(text) + reader.finish()
    return "".join(p.text for p in pieces if p.call is None), [p.call for p in pieces if p.call]


def call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}


def finish_reason(length: bool, calls: list[ToolCall]) -> str:
    return "length" if length else "tool_calls" if calls else "stop"
