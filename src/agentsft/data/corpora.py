"""The public function-calling corpora's layouts -> :class:`Conversation`.

- ``xlam``     xLAM / APIGen: ``query``, ``tools`` and ``answers`` as JSON strings; parameters
  as ``{name: {"type": "str, optional", "description", "default"}}``
- ``glaive``   Glaive function-calling v2: a ``system`` text with the functions' JSON, a
  ``chat`` text of ``USER:`` / ``ASSISTANT:`` / ``FUNCTION RESPONSE:`` turns, calls as
  ``<functioncall> {"name": ..., "arguments": '{...}'}``
- ``hermes-fc`` Hermes function-calling: ShareGPT with ``<tools>``, ``<tool_call>`` and
  ``<tool_response>`` blocks, JSON or Python literals inside
- ``toolace``  ToolACE: a ``system`` text embedding the tools' JSON, ShareGPT turns whose
  calls are bracketed Python calls, ``[get_weather(city="Paris")]``
- ``bfcl``     BFCL question files: ``question`` (turns), ``function`` (tools with Python type
  names), and the gold calls in ``ground_truth`` where the record has them

Python-ish types (``"str"``, ``"List[int]"``, ``"dict"``, ``"float"``) become JSON Schema.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from agentsft.data.schema import (Conversation, DataError, Message, ToolCall, expect, loads,
                                   name_tool_results, parse_arguments, parse_tools, short)

PY_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer",
            "float": "number", "number": "number", "bool": "boolean", "boolean": "boolean",
            "list": "array", "array": "array", "tuple": "array", "set": "array",
            "dict": "object", "object": "object", "none": "null", "null": "null"}
"""Python (and JSON) type names -> JSON Schema types; ``any`` and unknown names get none."""


def json_or_python(text: str, field: str, what: str) -> Any:
    """A JSON value, or a Python literal (single quotes, ``True`` / ``None``) where the
    corpus wrote one."""
    try:
        return loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataError(f"{what} is neither JSON nor a Python literal: {short(text)}", field=field,
                        fix=f"write the {what} as JSON") from None


def schema_of(type_text: Any) -> dict[str, Any]:
    """JSON Schema for a Python-ish type: ``"List[int]"`` -> an array of integers."""
    text = str(type_text).strip()
    outer, _, inner = text.partition("[")
    kind = PY_TYPES.get(outer.strip().lower())
    schema: dict[str, Any] = {"type": kind} if kind else {}
    if kind == "array" and inner:
        item = schema_of(inner.rstrip("]").split(",")[0])
        if item:
            schema["items"] = item
    return schema


def json_schema(params: Any) -> Any:
    """A parameters schema with Python type names (``"dict"``, ``"float"``, ``"any"``) made
    JSON Schema, nested properties and items too; anything else kept as written."""
    if isinstance(params, list):
        return [json_schema(p) for p in params]
    if not isinstance(params, dict):
        return params
    out = {k: json_schema(v) for k, v in params.items()}
    if isinstance(params.get("type"), str):
        mapped = schema_of(params["type"]).get("type")
        if mapped:
            out["type"] = mapped
        else:
            del out["type"]  # "any": every value fits
    return out


# ---------------------------------------------------------------------------
# xLAM / APIGen


def xlam_tools(raw: Any) -> list[dict[str, Any]]:
    tools = json_or_python(raw, "tools", "tools list") if isinstance(raw, str) else raw
    expect(tools, list, "tools", "write tools as a JSON list")
    out = []
    for i, tool in enumerate(tools):
        expect(tool, dict, f"tools[{i}]", 'use {"name", "description", "parameters"}')
        params = tool.get("parameters") or {}
        if params.get("type") == "object" or "properties" in params:  # already JSON Schema
            out.append({**tool, "parameters": json_schema(params)})
            continue
        props, required = {}, []
        for name, spec in params.items():
            spec = spec if isinstance(spec, dict) else {"type": spec}
            type_text = str(spec.get("type", ""))
            prop = schema_of(re.sub(r"(?i)^optional\[(.*)\]$|,\s*optional$", r"\1", type_text))
            if spec.get("description"):
                prop["description"] = spec["description"]
            if "default" in spec and spec["default"] not in ("", None):
                prop["default"] = spec["default"]
            props[name] = prop
            if "default" not in spec and "optional" not in type_text.lower():
                required.append(name)
        out.append({"name": tool.get("name"), "description": tool.get("description", ""),
                    "parameters": {"type": "object", "properties": props, "required": required}})
    return out


def from_xlam(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"query", "tools", "answers"}')
    query = expect(raw.get("query"), str, "query", "use a string")
    answers = raw.get("answers")
    answers = json_or_python(answers, "answers", "answers list") if isinstance(answers, str) else answers
    expect(answers, list, "answers", 'write answers as a JSON list of {"name", "arguments"}')
    calls = [call_of(a, f"answers[{j}]") for j, a in enumerate(answers)]
    messages = [Message("user", query), Message("assistant", "", calls)]
    return Conversation(messages, tools=parse_tools(xlam_tools(raw.get("tools") or "[]")))


def call_of(raw: Any, field: str) -> ToolCall:
    expect(raw, dict, field, 'use {"name": ..., "arguments": {...}}')
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"a call with no name: {short(raw)}", field=field, fix="name the tool called")
    return ToolCall(name, parse_arguments(raw.get("arguments", raw.get("parameters", {})),
                                          f"{field}.arguments"))


# ---------------------------------------------------------------------------
# Glaive function-calling v2

GLAIVE_TURN = re.compile(r"(?:^|\n)[ \t]*(USER|ASSISTANT|FUNCTION RESPONSE):[ \t]?")
SINGLE_QUOTED = re.compile(r"""("arguments"\s*:\s*)'(.*)'(\s*}\s*)$""", re.S)


def glaive_tools(system: str) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt's own words and the function objects written after them."""
    text = system.removeprefix("SYSTEM:").strip()
    start = text.find("{")
    if start < 0:
        return text, []
    tools, pos, decoder = [], start, json.JSONDecoder()
    while pos < len(text):
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"a function in the system text is not JSON ({e.msg})", field="system",
                            fix="write each function as a JSON object") from None
        tools.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] != "{":
            break
    return text[:start].strip(), tools


def glaive_call(text: str, field: str) -> ToolCall:
    body = text.strip()
    try:
        raw = loads(body)
    except (json.JSONDecodeError, ValueError):
        quoted = SINGLE_QUOTED.search(body)
        if quoted is None:
            raise DataError(f"a <functioncall> that is not JSON: {short(body)}", field=field,
                            fix='write it as {"name": ..., "arguments": {...}}') from None
        raw = json_or_python(body[:quoted.start()] + quoted[1] + json.dumps(quoted[2]) + quoted[3],
                             field, "function call")
    return call_of(raw, field)


def from_glaive(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"system": ..., "chat": ...}')
    system, tools = glaive_tools(expect(raw.get("system") or "", str, "system", "use a string"))
    chat = expect(raw.get("chat"), str, "chat", "use a string of USER: / ASSISTANT: turns")
    parts = GLAIVE_TURN.split(chat)
    if parts[0].strip():
        raise DataError(f"text before the first turn: {short(parts[0])}", field="chat",
                        fix="start the chat with USER:")
    messages = [Message("system", system)] if system else []
    for i in range(1, len(parts), 2):
        who, text, field = parts[i], parts[i + 1].strip(), f"chat turn {i // 2 + 1}"
        text = text.removesuffix("<|endoftext|>").strip()
        if who == "USER":
            messages.append(Message("user", text))
        elif who == "FUNCTION RESPONSE":
            messages.append(Message("tool", text))
        elif "<functioncall>" in text:
            before, _, call = text.partition("<functioncall>")
            messages.append(Message("assistant", before.strip(), [glaive_call(call, field)]))
        else:
            messages.append(Message("assistant", text))
    conv = Conversation(messages, tools=parse_tools(tools, "system"))
    name_tool_results(conv)
    return conv


# ---------------------------------------------------------------------------
# Hermes function-calling v1

TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.S)
CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
RESPONSE_BLOCK = re.compile(r"<tool_response>(.*?)</tool_response>", re.S)
HERMES_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                "assistant": "assistant", "tool": "tool"}


def hermes_tools(text: str, field: str) -> tuple[str, list[Any]]:
    """The system text without its ``<tools>`` block, and the tools listed in it (a list, or
    objects one after another)."""
    # the prompt's own prose often names the tags ("within <tools></tools> XML tags")
    block = next((b for b in TOOLS_BLOCK.finditer(text) if b[1].strip()), None)
    if block is None:
        return text, []
    body = block[1].strip()
    try:
        tools = json_or_python(body, field, "tools list")
    except DataError:
        joined = re.sub(r"}\s*{", "}, {", body)  # objects one after another
        tools = json_or_python(f"[{joined}]", field, "tools list")
    tools = tools if isinstance(tools, list) else [tools]
    return (text[:block.start()] + text[block.end():]).strip(), [json_schema(t) for t in tools]


def hermes_turn(who: str, value: str, field: str) -> list[Message]:
    if who == "assistant" and CALL_BLOCK.search(value):
        calls = [call_of(json_or_python(b, field, "tool call"), field) for b in CALL_BLOCK.findall(value)]
        return [Message("assistant", CALL_BLOCK.sub("", value).strip(), calls)]
    if who == "tool" and RESPONSE_BLOCK.search(value):
        out = []
        for body in RESPONSE_BLOCK.findall(value):
            try:
                result = json_or_python(body, field, "tool response")
            except DataError:
                result = body.strip()
            if isinstance(result, dict) and "content" in result:
                name, result = result.get("name"), result["content"]
            else:
                name = None
            text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
            out.append(Message("tool", text, name=name if isinstance(name, str) else None))
        return out
    return [Message(who, value)]


def from_hermes_fc(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"conversations": [{"from", "value"}]}')
    turns = expect(raw.get("conversations"), list, "conversations", "use a list of turns")
    messages: list[Message] = []
    tools: list[Any] = []
    for i, turn in enumerate(turns):
        field = f"conversations[{i}]"
        expect(turn, dict, field, 'use {"from": ..., "value": ...}')
        who = HERMES_ROLES.get(turn.get("from"))
        if who is None:
            raise DataError(f"unknown role {short(turn.get('from'))}", field=f"{field}.from",
                            fix=f"use one of {', '.join(HERMES_ROLES)}")
        value = expect(turn.get("value"), str, f"{field}.value", "use a string")
        if who == "system":
            value, found = hermes_tools(value, f"{field}.value")
            tools += found
        messages += hermes_turn(who, value, f"{field}.value") if value or who != "system" else []
    conv = Conversation(messages, tools=parse_tools(tools, "tools") if tools else None)
    name_tool_results(conv)
    return conv


# ---------------------------------------------------------------------------
# ToolACE

PYTHON_CALLS = re.compile(r"^\s*\[\s*[A-Za-z_][\w.]*\s*\(.*\)\s*\]\s*$", re.S)


def python_calls(text: str, field: str) -> list[ToolCall]:
    """``[get_weather(city="Paris"), get_time(tz="CET")]`` -> calls (keyword arguments,
    Python literals as values)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        if not isinstance(tree, ast.List):
            raise ValueError("not a list")
        calls = []
        for node in tree.elts:
            if not isinstance(node, ast.Call) or node.args:
                raise ValueError("expected name(key=value, ...)")
            calls.append(ToolCall(ast.unparse(node.func),
                                  {k.arg: ast.literal_eval(k.value) for k in node.keywords}))
        return calls
    except (ValueError, SyntaxError, TypeError) as e:
        raise DataError(f"a call list that does not read as Python calls ({e}): {short(text)}",
                        field=field, fix='write calls as [tool(key="value"), ...]') from None


def embedded_tools(text: str, field: str) -> tuple[str, list[Any]]:
    """The first JSON list of named objects inside a system text, and the text before it."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\[", text):
        try:
            found, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(found, list) and found and all(isinstance(t, dict) and "name" in t for t in found):
            return text[:m.start()].strip(), [json_schema(t) for t in found]
    return text, []


def from_toolace(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"system": ..., "conversations": [...]}')
    system, tools = embedded_tools(expect(raw.get("system") or "", str, "system", "use a string"),
                                   "system")
    turns = expect(raw.get("conversations"), list, "conversations", "use a list of turns")
    messages = [Message("system", system)] if system else []
    for i, turn in enumerate(turns):
        field = f"conversations[{i}]"
        expect(turn, dict, field, 'use {"from": ..., "value": ...}')
        who = HERMES_ROLES.get(turn.get("from"))
        if who not in ("user", "assistant", "tool"):
            raise DataError(f"unknown role {short(turn.get('from'))}", field=f"{field}.from",
                            fix="use user, assistant or tool")
        value = expect(turn.get("value"), str, f"{field}.value", "use a string")
        if who == "assistant" and PYTHON_CALLS.match(value):
            messages.append(Message("assistant", "", python_calls(value, f"{field}.value")))
        elif who == "tool":
            results = json_or_python(value, f"{field}.value", "tool results") if value.strip()[:1] in "[{" else value
            for r in results if isinstance(results, list) else [results]:
                messages.append(Message("tool", r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)))
        else:
            messages.append(Message(who, value))
    conv = Conversation(messages, tools=parse_tools(tools, "system") if tools else None)
    name_tool_results(conv)
    return conv


# ---------------------------------------------------------------------------
# BFCL


def from_bfcl(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"id", "question", "function"}')
    question = expect(raw.get("question"), list, "question", "use a list of turns")
    turns = question if question and all(isinstance(t, list) for t in question) else [question]
    messages = []
    for i, turn in enumerate(turns):
        for j, m in enumerate(turn):
            f = f"question[{i}][{j}]"
            expect(m, dict, f, 'use {"role": ..., "content": ...}')
            role = m.get("role")
            if role not in ("system", "user", "assistant"):
                raise DataError(f"unknown role {short(role)}", field=f"{f}.role", fix="use system, user or assistant")
            messages.append(Message(role, expect(m.get("content"), str, f"{f}.content", "use a string")))
    gold = raw.get("ground_truth")
    if gold is not None:
        gold = gold if isinstance(gold, list) else [gold]
        messages.append(Message("assistant", "", [bfcl_call(g, f"ground_truth[{k}]") for k, g in enumerate(gold)]))
    functions = raw.get("function") or []
    return Conversation(messages, tools=parse_tools(json_schema(functions), "function"))


def bfcl_call(raw: Any, field: str) -> ToolCall:
    """A gold call: ``{"name": ..., "arguments": {...}}``, or BFCL's possible-answer form
    ``{"tool": {"arg": [accepted values]}}`` (the first accepted value of each argument)."""
    if isinstance(raw, str):
        return python_calls(f"[{raw}]" if not raw.strip().startswith("[") else raw, field)[0]
    expect(raw, dict, field, 'use {"name": ..., "arguments": {...}}')
    if "name" in raw:
        return call_of(raw, field)
    if len(raw) != 1:
        raise DataError(f"expected one tool name as the key, got {short(raw)}", field=field,
                        fix='use {"tool": {"arg": [value, ...]}}')
    (name, args), = raw.items()
    expect(args, dict, f"{field}.{name}", "use an object of argument -> accepted values")
    return ToolCall(name, {k: v[0] if isinstance(v, list) and v else v for k, v in args.items()
                           if not (isinstance(v, list) and v and v[0] == "")})


READERS = {"xlam": from_xlam, "glaive": from_glaive, "hermes-fc": from_hermes_fc,
           "toolace": from_toolace, "bfcl": from_bfcl}


def detect_corpus(records: list[Any]) -> str | None:
    """Which corpus layout these records are in, if one."""
    for r in (r for r in records if isinstance(r, dict)):
        if "query" in r and "answers" in r:
            return "xlam"
        if isinstance(r.get("chat"), str) and "system" in r:
            return "glaive"
        if "question" in r and "function" in r:
            return "bfcl"
        turns = r.get("conversations")
        if isinstance(turns, list) and turns and all(isinstance(t, dict) for t in turns):
            values = " ".join(str(t.get("value", "")) for t in turns)
            if "<tool_call>" in values or "<tools>" in values or "<tool_response>" in values:
                return "hermes-fc"
            if isinstance(r.get("system"), str) and any(
                    t.get("from") == "assistant" and PYTHON_CALLS.match(str(t.get("value", "")))
                    for t in turns):
                return "toolace"
    return None
