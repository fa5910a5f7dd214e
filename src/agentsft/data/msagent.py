"""The tool-agent recipe's format: calls in ``<|startofthink|>`` blocks, results in
``<|startofexec|>`` blocks, inside one assistant value. Read by the ``msagent`` reader and
written and parsed back by the ``msagent`` template.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentsft.data.schema import (
    DataError,
    Message,
    ToolCall,
    expect,
    loads,
    parse_arguments,
)

THINK_OPEN, THINK_CLOSE = "<|startofthink|>", "<|endofthink|>"
EXEC_OPEN, EXEC_CLOSE = "<|startofexec|>", "<|endofexec|>"


MSAGENT_BLOCK = re.compile(
    re.escape(THINK_OPEN) + r"(.*?)" + re.escape(THINK_CLOSE) + "|"
    + re.escape(EXEC_OPEN) + r"(.*?)" + re.escape(EXEC_CLOSE), re.S)


def parse_msagent_turn(value: str, field: str) -> list[Message]:
    """An assistant value with think/exec blocks -> assistant calls, tool results, summary."""
    out: list[Message] = []
    current = Message("assistant")
    pos = 0
    for m in MSAGENT_BLOCK.finditer(value):
        text = value[pos:m.start()].strip()
        check_unmatched(text, field)
        if text:
            if current.tool_calls:  # text after calls without results: new assistant message
                out.append(current)
                current = Message("assistant")
            current.content = f"{current.content}\n{text}".strip() if current.content else text
        if m.group(1) is not None:
            current.tool_calls.append(msagent_call(m.group(1), field))
        else:
            if current.content or current.tool_calls:
                out.append(current)
                current = Message("assistant")
            if not any(x.tool_calls for x in out):
                raise DataError("exec block with no think block (tool call) before it",
                                field=field, fix=f"put a {THINK_OPEN} call before each {EXEC_OPEN}")
            out.append(Message("tool", strip_fence(m.group(2))))
        pos = m.end()
    tail = value[pos:].strip()
    check_unmatched(tail, field)
    if tail:
        if current.tool_calls:
            out.append(current)
            current = Message("assistant")
        current.content = tail
    if current.content or current.tool_calls:
        out.append(current)
    return out


def check_unmatched(text: str, field: str) -> None:
    for marker in (THINK_OPEN, THINK_CLOSE, EXEC_OPEN, EXEC_CLOSE):
        if marker in text:
            raise DataError(f"unmatched {marker}", field=field,
                            fix="close every <|startofthink|> / <|startofexec|> block")


def strip_fence(text: str) -> str:
    """The body of a ```JSON ... ``` fence (or the text itself when unfenced)."""
    text = text.strip()
    m = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)\n?\s*```", text, re.S)
    return m.group(1).strip() if m else text


def msagent_call(block: str, field: str) -> ToolCall:
    body = strip_fence(block)
    try:
        data = loads(body)
    except (json.JSONDecodeError, ValueError) as e:
        raise DataError(f"tool call is not valid JSON ({getattr(e, 'msg', e)})", field=field,
                        fix='write {"api_name": ..., "parameters": {...}} inside the think block') from None
    return msagent_call_from(data, field)


def msagent_call_from(data: Any, field: str) -> ToolCall:
    """``{"api_name": ..., "parameters": {...}, "url": ...}`` -> ToolCall, extra keys kept."""
    expect(data, dict, field, 'write {"api_name": ..., "parameters": {...}}')
    name = data.get("api_name", data.get("name"))
    if not isinstance(name, str) or not name:
        raise DataError("tool call has no api_name", field=field, fix="add the api_name")
    args = parse_arguments(data.get("parameters", data.get("arguments", {})), f"{field}.parameters")
    extra = {k: v for k, v in data.items() if k not in ("api_name", "name", "parameters", "arguments")}
    return ToolCall(name, args, extra=extra)
