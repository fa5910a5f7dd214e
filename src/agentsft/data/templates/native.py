"""``native``: the tokenizer's own chat template; message bodies found by rendering
message prefixes, calls read back as tagged or bare JSON."""

from __future__ import annotations

import json
from typing import Any

from agentsft.data.schema import (
    Conversation,
    DataError,
    Message,
    ToolCall,
    message_to_dict,
)
from agentsft.data.templates.base import (
    AgentTemplate,
    Piece,
    call_from_object,
    json_after_tags,
)

PROBE_TOOL = {"type": "function", "function": {
    "name": "agentsft_probe_tool", "description": "probe",
    "parameters": {"type": "object", "properties": {}}}}


def renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template shows the tools it is given."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                             tools=[PROBE_TOOL], tokenize=False)
    except Exception:  # a template that chokes on tools does not render them
        return False
    return "agentsft_probe_tool" in text


class NativeTemplate(AgentTemplate):
    """The tokenizer's chat template; message bodies found by rendering prefixes."""

    name = "native"

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "chat_template", None):
            raise DataError("the tokenizer has no chat template", field="--template native",
                            fix="use --template hermes")
        self.tokenizer = tokenizer
        self.tools_ok = renders_tools(tokenizer)
        self.stop = tuple(t for t in [tokenizer.eos_token] if t)

    def apply(self, msgs: list[Message], conv: Conversation, gen: bool) -> str:
        dicts = [{k: v for k, v in message_to_dict(m).items() if k != "train"} for m in msgs]
        tools = [t.to_dict() for t in conv.tools] if conv.tools else None
        try:
            return self.tokenizer.apply_chat_template(dicts, tools=tools, tokenize=False,
                                                      add_generation_prompt=gen)
        except Exception as e:  # jinja raise_exception() in the template
            raise DataError(f"the tokenizer's chat template rejected this conversation ({e})",
                            field="--template native", fix="use --template hermes") from None

    def pieces(self, conv: Conversation, add_generation_prompt: bool) -> list[Piece]:
        uses_tools = conv.tools or any(m.tool_calls or m.role == "tool" for m in conv.messages)
        if uses_tools and not self.tools_ok:
            raise DataError("the tokenizer's chat template does not render tools or tool calls",
                            field="--template native", fix="use --template hermes (or auto)")
        msgs = conv.messages
        text = self.apply(msgs, conv, False)
        out: list[Piece] = []
        done = ""  # the prefix of ``text`` already cut into pieces
        for i, m in enumerate(msgs):
            full = text if i + 1 == len(msgs) else self.apply(msgs[: i + 1], conv, False)
            if m.role != "assistant":
                # Some templates render a message differently once more follow (Qwen
                # closes a run of tool results only after the last one); such a
                # message's text then joins the next piece, masked.
                if text.startswith(full) and len(full) >= len(done):
                    out.append((full[len(done):], i))
                    done = full
                continue
            if i == 0:
                raise DataError("the conversation starts with an assistant message, so the text "
                                "the chat template adds before the first reply cannot be told "
                                "apart from the reply", field="--template native",
                                fix="start with a system or user message, or use --template hermes")
            head = self.apply(msgs[:i], conv, True)
            if not (text.startswith(full) and full.startswith(head) and len(head) >= len(done)
                    and head.startswith(done)):
                raise DataError(f"the tokenizer's chat template is not prefix-stable at message {i} "
                                f"({m.role}): the text before this reply is not a prefix of the "
                                "whole conversation", field="--template native",
                                fix="use --template hermes")
            body = full[len(head):]
            trimmed = body.rstrip()  # the newline after the end-of-turn token is not the model's
            out += [(head[len(done):], None), (trimmed, i), (body[len(trimmed):], None)]
            for c in m.tool_calls:
                if c.name not in trimmed:
                    raise DataError(f"the tokenizer's chat template dropped the call to {c.name!r}",
                                    field="--template native", fix="use --template hermes")
            done = full
        out.append((text[len(done):], None))
        if add_generation_prompt:
            gen = self.apply(msgs, conv, True)
            if not gen.startswith(text):
                raise DataError("the tokenizer's chat template changes the conversation when asked "
                                "for a generation prompt", field="--template native",
                                fix="use --template hermes")
            out.append((gen[len(text):], None))
        return out

    def parse_reply(self, text: str) -> Message:
        calls = self.parse_calls(text)
        starts = [p for p in (text.find("<tool_call>"), text.find('{"name"')) if p >= 0]
        content = text[:min(starts)] if calls and starts else text
        return Message("assistant", content.strip(), tool_calls=calls)

    def parse_calls(self, text: str) -> list[ToolCall]:
        if "<tool_call>" in text:
            return [call_from_object(v) for v in json_after_tags(text, "<tool_call>")]
        # Templates without tags (Llama 3.1, Mistral) write bare JSON objects: take
        # every top-level object that has a name and arguments / parameters.
        return [call_from_object(o) for o in json_objects(text) if looks_like_call(o)]


def json_objects(text: str) -> list[Any]:
    """Every top-level JSON object in ``text``, lists of objects flattened."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    while True:
        starts = [p for p in (text.find("{", pos), text.find("[", pos)) if p >= 0]
        if not starts:
            return out
        pos = min(starts)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos += 1
            continue
        out += value if isinstance(value, list) else [value]
        pos = end


def looks_like_call(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("name"), str) and (
        "arguments" in obj or "parameters" in obj)
