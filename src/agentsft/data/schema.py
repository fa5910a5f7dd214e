"""The one conversation shape everything downstream reads: OpenAI chat messages.

A :class:`Conversation` is a list of :class:`Message` (``system``, ``user``,
``assistant`` with optional :class:`ToolCall` s, ``tool``) plus the
:class:`Tool` s the assistant may call. Readers of other formats convert into
it; templates render it; nothing else looks at the original format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from agentsft.errors import DataError

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass
class ToolCall:
    """One call the assistant makes: a tool name and its arguments (a JSON object)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields a format carries beside name and arguments (msagent's ``url``)."""


@dataclass
class Message:
    """One turn of a conversation (OpenAI chat shape); ``train`` overrides the loss policy."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    """For ``tool`` messages: the id of the call this is the result of."""
    name: str | None = None
    """For ``tool`` messages: the tool that produced the result."""
    train: bool | None = None
    """Overrides the loss policy for this message: True trains it, False masks it."""


@dataclass
class Tool:
    """A function the assistant may call, described by a JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class Conversation:
    """Messages and the tools offered: the one shape every reader produces and everything
    downstream reads."""

    messages: list[Message]
    tools: list[Tool] | None = None
    """The tools listed with the conversation; None when the record lists none
    (msagent data describes its tools inside the system text instead)."""
    source: str | None = None
    """Where the record came from, ``file:line``; used in every error about it."""
    id: str | None = None
    """The record's own ``id`` field, when it has one (kept by every reader)."""

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI chat shape (``messages`` + ``tools``), as written by ``data convert``."""
        out: dict[str, Any] = {"messages": [message_to_dict(m) for m in self.messages]}
        if self.tools is not None:
            out["tools"] = [t.to_dict() for t in self.tools]
        return out

    @property
    def tool_names(self) -> set[str]:
        return {t.name for t in self.tools or ()}


def message_to_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [call_to_dict(c) for c in m.tool_calls]
    if m.tool_call_id is not None:
        d["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        d["name"] = m.name
    if m.train is not None:
        d["train"] = m.train
    return d


def call_to_dict(c: ToolCall) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
    if c.id is not None:
        d["id"] = c.id
    d.update(c.extra)
    return d


# ---------------------------------------------------------------------------
# Parsing the canonical (OpenAI) shape, with errors that name the field.


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


DECODER = json.JSONDecoder(parse_constant=reject_constant)


def loads(text: str) -> Any:
    """``json.loads`` that refuses NaN / Infinity (Python accepts them; JSON does not)."""
    return DECODER.decode(text)


def expect(value: Any, kind: type | tuple[type, ...], field: str, fix: str) -> Any:
    """``value`` if it has type ``kind``, else a DataError naming ``field``."""
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        ok = False  # JSON true is not a number
    else:
        ok = isinstance(value, kind)
    if not ok:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"expected {json_type(names)}, got {json_type(type(value).__name__)} "
                        f"{short(value)}", field=field, fix=fix)
    return value


def json_type(python_name: str) -> str:
    for py, js in (("str", "a string"), ("dict", "an object"), ("list", "a list"),
                   ("bool", "true/false"), ("NoneType", "null"), ("int", "a number"),
                   ("float", "a number")):
        python_name = python_name.replace(py, js)
    return python_name


def short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_arguments(raw: Any, field: str) -> dict[str, Any]:
    """Tool-call arguments: a JSON object, or a string holding one."""
    if isinstance(raw, str):
        try:
            raw = loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, ValueError) as e:
            raise DataError(f"arguments string is not valid JSON ({getattr(e, 'msg', e)})",
                            field=field, fix="write the arguments as a JSON object") from None
    if not isinstance(raw, dict):
        raise DataError(f"arguments must be a JSON object, got {short(raw)}", field=field,
                        fix='wrap them in an object keyed by parameter name, e.g. {"city": "Paris"}')
    return raw


def text_content(raw: Any, field: str) -> str:
    """Message content: a string, null, or a list of ``{"type": "text", "text": ...}`` parts."""
    if raw is None:
        return ""
    if isinstance(raw, list):
        parts = []
        for j, part in enumerate(raw):
            expect(part, dict, f"{field}[{j}]", 'use {"type": "text", "text": "..."}')
            if part.get("type", "text") != "text":
                raise DataError(f"content part of type {part.get('type')!r} is not supported",
                                field=f"{field}[{j}].type", fix="keep only text parts")
            parts.append(expect(part.get("text", ""), str, f"{field}[{j}].text", "use a string"))
        return "".join(parts)
    return expect(raw, str, field, "use a string")


def named_function(raw: Any, field: str, body: str) -> tuple[dict, str, str]:
    """``{"type": "function", "function": {"name": ...}}`` or the bare function object:
    the function object, its field path, and its name (a non-empty string)."""
    expect(raw, dict, field, f'use {{"type": "function", "function": {{"name": ..., "{body}": {{...}}}}}}')
    fn = raw.get("function", raw)
    f = f"{field}.function" if "function" in raw else field
    expect(fn, dict, f, f"use an object with a name and {body}")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"has no name, got {short(name)}", field=f"{f}.name",
                        fix="give it the tool's name as a string")
    return fn, f, name


def parse_tool(raw: Any, field: str) -> Tool:
    """A tool as ``{"type": "function", "function": {...}}`` or the bare function object."""
    fn, f, name = named_function(raw, field, "parameters")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    expect(params, dict, f"{f}.parameters", "use a JSON schema object")
    desc = fn.get("description", "") or ""
    expect(desc, str, f"{f}.description", "use a string")
    return Tool(name=name, description=desc, parameters=params)


def parse_tools(raw: Any, field: str = "tools") -> list[Tool] | None:
    """The ``tools`` list; a JSON string holding the list is accepted (ShareGPT data does that)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return []
        try:
            raw = loads(raw)
        except (json.JSONDecodeError, ValueError) as e:
            raise DataError(f"tools string is not valid JSON ({getattr(e, 'msg', e)})", field=field,
                            fix="write tools as a JSON list of function schemas") from None
    expect(raw, list, field, "write tools as a list of function schemas")
    return [parse_tool(t, f"{field}[{i}]") for i, t in enumerate(raw)]


def parse_call(raw: Any, field: str) -> ToolCall:
    fn, f, name = named_function(raw, field, "arguments")
    args = parse_arguments(fn.get("arguments", {}), f"{f}.arguments")
    call_id = raw.get("id")
    if call_id is not None:
        expect(call_id, str, f"{field}.id", "use a string id")
    extra = {k: v for k, v in raw.items() if k not in ("id", "type", "function")}
    return ToolCall(name=name, arguments=args, id=call_id, extra=extra)


def parse_message(raw: Any, field: str) -> Message:
    expect(raw, dict, field, 'use {"role": ..., "content": ...}')
    role = raw.get("role")
    if role not in ROLES:
        raise DataError(f"unknown role {short(role)}", field=f"{field}.role",
                        fix=f"use one of {', '.join(ROLES)}")
    content = text_content(raw.get("content"), f"{field}.content")
    calls_raw = raw.get("tool_calls")
    calls_raw = [] if calls_raw is None else expect(calls_raw, list, f"{field}.tool_calls",
                                                    "use a list of calls")
    if calls_raw and role != "assistant":
        raise DataError(f"a {role} message cannot carry tool_calls", field=f"{field}.tool_calls",
                        fix="move the calls to an assistant message")
    calls = [parse_call(c, f"{field}.tool_calls[{j}]") for j, c in enumerate(calls_raw)]
    train = raw.get("train")
    if train is not None:
        expect(train, bool, f"{field}.train", "use true or false (not a string)")
    call_id, name = raw.get("tool_call_id"), raw.get("name")
    if call_id is not None:
        expect(call_id, str, f"{field}.tool_call_id", "use a string id")
    if name is not None:
        expect(name, str, f"{field}.name", "use a string")
    return Message(role=role, content=content, tool_calls=calls, tool_call_id=call_id,
                   name=name, train=train)


def conversation_from_dict(raw: Any) -> Conversation:
    """A Conversation from the OpenAI shape; raises DataError naming the bad field."""
    expect(raw, dict, "record", 'write each record as {"messages": [...]}')
    msgs = raw.get("messages")
    if msgs is None:
        raise DataError("record has no messages", field="messages",
                        fix='add a "messages" list, or pass --format for other layouts')
    expect(msgs, list, "messages", "use a list of messages")
    messages = [parse_message(m, f"messages[{i}]") for i, m in enumerate(msgs)]
    return Conversation(messages=messages, tools=parse_tools(raw.get("tools")))


def name_tool_results(conv: Conversation) -> None:
    """Give each tool result the name of the call it answers, in call order."""
    pending: list[ToolCall] = []
    for m in conv.messages:
        if m.role == "assistant":
            pending = list(m.tool_calls)
        elif m.role == "tool" and pending:
            call = pending.pop(0)
            m.name = m.name or call.name
            m.tool_call_id = m.tool_call_id or call.id



# ---------------------------------------------------------------------------
# Validation shared by every format.


def validate(conv: Conversation) -> list[str]:
    """Raise DataError for a conversation that cannot be trained on; return warnings.

    Errors: empty, no assistant turn, a tool result with no call before it,
    consecutive roles that no template can render. Warnings: a call to a tool
    not in the listed tools, a call left without a result mid-conversation.
    """
    msgs = conv.messages
    if not msgs:
        raise DataError("conversation is empty", field="messages",
                        fix="add at least a user and an assistant message")
    if not any(m.role == "assistant" for m in msgs):
        raise DataError("conversation has no assistant turn, so nothing to train on",
                        field="messages", fix="add the assistant's reply")
    for i, m in enumerate(msgs):
        if m.role == "system" and i != 0:
            raise DataError("a system message may only come first", field=f"messages[{i}].role",
                            fix="merge it into the first message or make it a user message")
    warnings: list[str] = []
    pending: list[ToolCall] = []  # calls awaiting a result
    for i, m in enumerate(msgs):
        if m.role == "tool":
            if not pending:
                raise DataError("tool result with no tool call before it",
                                field=f"messages[{i}]",
                                fix="put an assistant message with tool_calls before it, "
                                    "or drop the tool message")
            pending.pop(0)
            continue
        if pending and m.role != "tool":
            warnings.append(f"messages[{i}]: {len(pending)} tool call(s) before it got no result")
            pending = []
        if m.role == "assistant":
            for j, c in enumerate(m.tool_calls):
                if conv.tools is not None and c.name not in conv.tool_names:
                    listed = ", ".join(sorted(conv.tool_names)) or "none"
                    warnings.append(f"messages[{i}].tool_calls[{j}]: calls {c.name!r}, which is "
                                    f"not in tools (listed: {listed})")
            pending = list(m.tool_calls)
    return warnings
