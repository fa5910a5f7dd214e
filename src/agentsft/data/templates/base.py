"""What every agent template shares: rendering into text with the character spans of each
message's body, the loss policy over those spans, and reading calls back as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from agentsft.data.arguments import in_schema_order
from agentsft.data.schema import (
    DECODER,
    Conversation,
    DataError,
    Message,
    ToolCall,
    parse_arguments,
)
from agentsft.errors import AgentsftError

TEMPLATES = ("auto", "native", "hermes", "msagent")
POLICIES = ("assistant", "last", "all")


class CallParseError(AgentsftError):
    """Generated text holds a tool call that cannot be parsed."""


@dataclass(frozen=True)
class Segment:
    """The characters ``text[start:end]`` are the body of message ``message``."""

    start: int
    end: int
    message: int


@dataclass
class Rendered:
    text: str
    segments: list[Segment]
    spans: list[tuple[int, int]]
    """Trained character spans under the loss policy used to render."""


Piece = tuple[str, "int | None"]  # text, and the message it is the body of (None: scaffolding)


class AgentTemplate:
    """Base: subclasses turn a conversation into tagged pieces and parse calls back."""

    name = "base"
    stop: tuple[str, ...] = ()
    """Strings that end a generation step (end of turn, or end of the calls)."""
    call_marker = ""
    """Where the calls begin in a reply; the text before it is the reply's content."""
    call_close = ""
    """What ends one call (where calls are tagged)."""

    def pieces(self, conv: Conversation, add_generation_prompt: bool) -> list[Piece]:
        raise NotImplementedError

    def parse_calls(self, text: str) -> list[ToolCall]:
        raise NotImplementedError

    def render(self, conv: Conversation, policy: str = "assistant",
               add_generation_prompt: bool = False) -> Rendered:
        """The text of ``conv`` and its trained character spans under ``policy``. Call
        arguments are written in the order their tool's schema lists them."""
        conv = calls_in_schema_order(conv)
        parts, segments, pos = [], [], 0
        for text, msg in self.pieces(conv, add_generation_prompt):
            if msg is not None and text:
                segments.append(Segment(pos, pos + len(text), msg))
            parts.append(text)
            pos += len(text)
        full = "".join(parts)
        return Rendered(full, segments, trained_spans(full, segments, conv, policy))

    def prompt(self, conv: Conversation) -> str:
        """The text a model continues to write the next assistant turn."""
        return self.render(conv, add_generation_prompt=True).text

    def parse_reply(self, text: str) -> Message:
        """A generated reply as an assistant message: its text and its tool calls.
        Raises CallParseError for a call that cannot be read."""
        calls = self.parse_calls(text)
        content = text.split(self.call_marker, 1)[0] if calls and self.call_marker else text
        return Message("assistant", content.strip(), tool_calls=calls)


def calls_in_schema_order(conv: Conversation) -> Conversation:
    """``conv`` with every call's arguments in its tool's schema order (see
    :func:`in_schema_order`); the same object where nothing moves."""
    schemas = {t.name: t.parameters for t in conv.tools or ()}
    if not schemas or not any(m.tool_calls for m in conv.messages):
        return conv
    messages = [replace(m, tool_calls=[replace(c, arguments=in_schema_order(c.arguments, schemas.get(c.name)))
                                       for c in m.tool_calls]) if m.tool_calls else m
                for m in conv.messages]
    return replace(conv, messages=messages)


def trained_messages(conv: Conversation, policy: str = "assistant") -> set[int]:
    """Indices of the messages whose bodies are trained under ``policy``.

    ``assistant``: every assistant message (its text, calls and end of turn);
    ``last``: the assistant messages after the last user message (the final
    turn, calls included; tool results stay masked); ``all``: every message.
    A message's ``train`` flag overrides the policy either way.
    """
    if policy not in POLICIES:
        raise DataError(f"unknown loss policy {policy!r}", field="--policy",
                        fix=f"use one of {', '.join(POLICIES)}")
    msgs = conv.messages
    if policy == "all":
        chosen = set(range(len(msgs)))
    else:
        first = 0
        if policy == "last":
            users = [i for i, m in enumerate(msgs) if m.role == "user"]
            first = users[-1] + 1 if users else 0
        chosen = {i for i, m in enumerate(msgs) if m.role == "assistant" and i >= first}
    chosen |= {i for i, m in enumerate(msgs) if m.train is True}
    return {i for i in chosen if msgs[i].train is not False}


def trained_spans(text: str, segments: list[Segment], conv: Conversation,
                  policy: str) -> list[tuple[int, int]]:
    keep = trained_messages(conv, policy)
    if policy == "all":
        # Scaffolding (role headers) is trained too; only train=false bodies are cut out.
        cut = sorted((s.start, s.end) for s in segments if s.message not in keep)
        spans, pos = [], 0
        for s, e in cut:
            if s > pos:
                spans.append((pos, s))
            pos = max(pos, e)
        if pos < len(text):
            spans.append((pos, len(text)))
        return spans
    return [(s.start, s.end) for s in segments if s.message in keep]


def tools_json(conv: Conversation) -> str:
    return "\n".join(json.dumps(t.to_dict(), ensure_ascii=False) for t in conv.tools or ())


def json_after_tags(text: str, tag: str) -> list[Any]:
    """The JSON value right after each ``tag`` (past whitespace and a ```` ```JSON ```` fence).

    Decoding from the opening tag, rather than cutting at the closing one, keeps a
    closing tag that appears inside an argument string from breaking the call; a
    generation that stopped before the closing tag still parses.
    """
    values, pos = [], 0
    while (start := text.find(tag, pos)) >= 0:
        at = start + len(tag)
        fence = re.match(r"\s*```[A-Za-z]*\s*", text[at:])
        at += fence.end() if fence else len(text[at:]) - len(text[at:].lstrip())
        try:
            value, pos = DECODER.raw_decode(text, at)
        except (json.JSONDecodeError, ValueError, RecursionError) as e:
            snippet = text[at:at + 60].strip()
            raise CallParseError(f"tool call after {tag} is not valid JSON "
                                 f"({getattr(e, 'msg', e)}): {snippet!r}") from None
        values.append(value)
    return values


def call_from_object(data: Any) -> ToolCall:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise CallParseError(f"tool call must be an object with a name, got {str(data)[:80]!r}")
    raw_args = data.get("arguments", data.get("parameters", {}))
    try:
        args = parse_arguments(raw_args, "arguments")
    except DataError as e:
        raise CallParseError(str(e)) from None
    return ToolCall(data["name"], args)
