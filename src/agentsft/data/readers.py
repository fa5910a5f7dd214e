"""Readers: records in common conversation formats -> :class:`Conversation`. JSON / JSONL
files are read here; Parquet, Arrow, CSV, dataset folders and hub datasets through
``datasets`` (data/sources.py).

Formats (``auto`` detects from the first records of each file):

- ``openai``   ``{"messages": [...], "tools": [...]}``
- ``sharegpt`` ``{"conversations": [{"from": "human", "value": ...}, ...], "tools": ...}``
- ``alpaca``   ``{"instruction", "input", "output", "system", "history"}``
- ``lima``     ``{"conversations": ["user text", "assistant text", ...]}``
- ``msagent``  ``{"conversations": [{"from": "assistant", "value": "<|startofthink|>..."}]}``
- ``xlam``, ``glaive``, ``hermes-fc``, ``toolace``, ``bfcl``: the public function-calling
  corpora's layouts (data/corpora.py)

Every error names ``file:line``, the field and the fix. By default the first
invalid record raises; with ``skip_invalid`` it is skipped and reported.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentsft.data.corpora import READERS as CORPUS_READERS
from agentsft.data.corpora import detect_corpus
from agentsft.data.msagent import EXEC_OPEN, THINK_OPEN, parse_msagent_turn
from agentsft.data.schema import (
    Conversation,
    DataError,
    Message,
    ToolCall,
    conversation_from_dict,
    expect,
    loads,
    name_tool_results,
    parse_arguments,
    parse_tools,
    short,
    validate,
)
from agentsft.data.sources import (
    SourceOptions,
    expanded,
    is_table,
    iter_records,
    table_records,
)

FORMATS = ("openai", "sharegpt", "alpaca", "lima", "msagent", *CORPUS_READERS)

@dataclass
class ReadReport:
    """What came out of reading: the valid conversations and everything left out."""

    conversations: list[Conversation] = field(default_factory=list)
    skipped: list[DataError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    """File -> the format it was read as."""


def read_conversations(paths: str | os.PathLike | list, format: str = "auto",
                       skip_invalid: bool = False, source: SourceOptions | None = None) -> ReadReport:
    """Read and validate every record of ``paths`` (files, dataset folders, hub dataset
    ids; ``source`` says which configuration, split and revision of a dataset).

    Raises the first :class:`DataError` unless ``skip_invalid``, in which case
    invalid records are counted in ``report.skipped`` and all valid ones kept.
    """
    report = ReadReport()
    report.conversations.extend(stream_conversations(paths, format, skip_invalid, report, source))
    return report


def stream_conversations(paths: str | os.PathLike | list, format: str, skip_invalid: bool,
                         report: ReadReport, source: SourceOptions | None = None) -> Iterator[Conversation]:
    """As :func:`read_conversations`, one conversation at a time (``report.conversations``
    stays empty): for data larger than memory."""
    if format != "auto" and format not in FORMATS:
        raise DataError(f"unknown format {format!r}", field="--format",
                        fix=f"use auto or one of {', '.join(FORMATS)}")
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for file in expanded(os.fspath(path)):
            yield from stream_file(file, format, skip_invalid, report, source)


DETECT = 1000
"""Records a format is detected from (a whole file once took its whole size in memory)."""


def stream_file(path: str, format: str, skip_invalid: bool, report: ReadReport,
                source: SourceOptions | None = None) -> Iterator[Conversation]:
    """The valid conversations of one source, one at a time: memory stays flat however large
    it is. Skipped records and warnings go to ``report``."""
    skipped = len(report.skipped)
    records = table_records(path, source) if is_table(path) else \
        iter_records(path, report.skipped if skip_invalid else None)
    first = list(itertools.islice(records, DETECT))
    if not first and len(report.skipped) == skipped:
        raise DataError("holds no records", where=path,
                        fix="add conversations to it (one JSON object a line), or leave it out")
    fmt = format if format != "auto" else detect_format(path, [r for _, r in first])
    report.formats[path] = fmt
    reader = READERS[fmt]
    answers = possible_answers(path) if fmt == "bfcl" else {}
    for where, raw in itertools.chain(first, records):
        try:
            if answers and isinstance(raw, dict) and "ground_truth" not in raw and raw.get("id") in answers:
                raw = {**raw, "ground_truth": answers[raw["id"]]}
            conv = reader(raw)
            conv.source = where
            if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)):
                conv.id = str(raw["id"])
            report.warnings.extend(f"{where}: {w}" for w in validate(conv))
        except DataError as e:
            e.at(where)
            if not skip_invalid:
                raise
            report.skipped.append(e)
            continue
        yield conv


def possible_answers(path: str) -> dict[Any, Any]:
    """BFCL keeps the gold calls of ``DIR/NAME.json`` apart, in ``DIR/possible_answer/NAME.json``
    (one ``{"id", "ground_truth"}`` a line); they are joined to the questions by id. Each
    argument lists the values it accepts; the first is taken as the gold one."""
    file = os.path.join(os.path.dirname(path), "possible_answer", os.path.basename(path))
    if not os.path.isfile(file):
        return {}
    answers = {}
    for where, raw in iter_records(file, None):
        if not isinstance(raw, dict) or "id" not in raw or "ground_truth" not in raw:
            raise DataError("is not a possible answer", where=where,
                            fix='write each line as {"id": ..., "ground_truth": [...]}')
        answers[raw["id"]] = raw["ground_truth"]
    return answers


# ---------------------------------------------------------------------------
# Format detection.


def detect_format(path: str, records: list[Any]) -> str:
    """The format of a file, judged from its first records (all of them: one think block
    anywhere makes it msagent, which must not be read as plain ShareGPT; a later one is
    refused by the ShareGPT reader with the fix)."""
    sample = [r for r in records if isinstance(r, dict)]
    for r in sample:
        if "messages" in r:
            return "openai"
        if "instruction" in r and "output" in r:
            return "alpaca"
        conv = r.get("conversations")
        if isinstance(conv, list) and conv:
            if all(isinstance(t, str) for t in conv):
                return "lima"
            if any(isinstance(t, dict) and THINK_OPEN in str(t.get("value", "")) for t in conv):
                return "msagent"
    if corpus := detect_corpus(sample):
        return corpus
    for r in sample:
        conv = r.get("conversations")
        if isinstance(conv, list) and conv and isinstance(conv[0], dict) and "from" in conv[0]:
            return "sharegpt"
    if not records:
        return "openai"  # an empty file: nothing to read, any reader will do
    keys = sorted(sample[0]) if sample else []
    raise DataError(f"cannot tell the data format (first record has keys {keys})", where=path,
                    fix=f"pass --format with one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------
# One function per format: raw record -> Conversation.


def from_openai(raw: Any) -> Conversation:
    return conversation_from_dict(raw)


SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "system": "system", "function_call": "call", "tool_call": "call",
    "observation": "tool", "tool": "tool", "function": "tool", "tool_response": "tool",
}


def from_sharegpt(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"conversations": [...]}')
    turns = expect(raw.get("conversations"), list, "conversations", "use a list of turns")
    messages: list[Message] = []
    if raw.get("system"):
        messages.append(Message("system", expect(raw["system"], str, "system", "use a string")))
    for i, turn in enumerate(turns):
        f = f"conversations[{i}]"
        who, value, train = turn_fields(turn, f)
        role = SHAREGPT_ROLES.get(who)
        if role is None:
            raise DataError(f"unknown role {short(who)}", field=f"{f}.from",
                            fix=f"use one of {', '.join(SHAREGPT_ROLES)}")
        if role == "assistant" and (THINK_OPEN in value or EXEC_OPEN in value):
            raise DataError(f"holds {THINK_OPEN} / {EXEC_OPEN} blocks, which ShareGPT reads as "
                            "plain text (tool results would be trained)", field=f"{f}.value",
                            fix="pass --format msagent")
        if role == "call":
            messages.append(Message("assistant", "", sharegpt_calls(value, f"{f}.value"), train=train))
        else:
            messages.append(Message(role, value, train=train))
    conv = Conversation(messages, tools=parse_tools(raw.get("tools")))
    name_tool_results(conv)
    return conv


def sharegpt_calls(value: str, field: str) -> list[ToolCall]:
    try:
        data = loads(value)
    except (json.JSONDecodeError, ValueError) as e:
        raise DataError(f"function_call value is not JSON ({getattr(e, 'msg', e)})", field=field,
                        fix='write it as {"name": ..., "arguments": {...}}') from None
    calls = []
    for j, c in enumerate(data if isinstance(data, list) else [data]):
        expect(c, dict, field, 'write it as {"name": ..., "arguments": {...}}')
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise DataError("function_call has no name", field=field, fix="name the tool called")
        calls.append(ToolCall(name, parse_arguments(c.get("arguments", {}), field)))
    return calls


def from_alpaca(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"instruction": ..., "output": ...}')
    instruction = expect(raw.get("instruction"), str, "instruction", "use a string")
    extra = expect(raw.get("input") or "", str, "input", "use a string")
    output = expect(raw.get("output"), str, "output", "use a string")
    messages = []
    if raw.get("system"):
        messages.append(Message("system", expect(raw["system"], str, "system", "use a string")))
    for i, pair in enumerate(expect(raw.get("history") or [], list, "history",
                                    "use a list of [question, answer] pairs")):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise DataError(f"expected a [question, answer] pair, got {short(pair)}",
                            field=f"history[{i}]", fix="use two strings per history entry")
        messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    messages += [Message("user", prompt), Message("assistant", output)]
    return Conversation(messages)


def from_lima(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"conversations": ["question", "answer"]}')
    turns = expect(raw.get("conversations"), list, "conversations", "use a list of strings")
    messages = []
    for i, text in enumerate(turns):
        expect(text, str, f"conversations[{i}]", "use strings alternating user / assistant")
        messages.append(Message("user" if i % 2 == 0 else "assistant", text))
    return Conversation(messages)


def from_msagent(raw: Any) -> Conversation:
    expect(raw, dict, "record", 'write each record as {"conversations": [{"from": ..., "value": ...}]}')
    turns = expect(raw.get("conversations"), list, "conversations", "use a list of turns")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        f = f"conversations[{i}]"
        who, value, train = turn_fields(turn, f)
        if who not in ("system", "user", "assistant"):
            raise DataError(f"unknown role {short(who)}", field=f"{f}.from",
                            fix="use system, user or assistant")
        if who == "assistant":
            produced = parse_msagent_turn(value, f"{f}.value")
            for m in produced:
                if m.role == "assistant":
                    m.train = train
            messages += produced
        else:
            messages.append(Message(who, value, train=train))
    return Conversation(messages)


def turn_fields(turn: Any, field: str) -> tuple[Any, str, bool | None]:
    expect(turn, dict, field, 'use {"from": ..., "value": ...}')
    expect(turn.get("from"), str, f"{field}.from", "name the speaker with a string")
    value = expect(turn.get("value"), str, f"{field}.value", "use a string")
    train = turn.get("train")
    if train is not None:
        expect(train, bool, f"{field}.train", "use true or false (not a string)")
    return turn.get("from"), value, train


READERS: dict[str, Callable[[Any], Conversation]] = {
    "openai": from_openai, "sharegpt": from_sharegpt, "alpaca": from_alpaca,
    "lima": from_lima, "msagent": from_msagent, **CORPUS_READERS,
}
