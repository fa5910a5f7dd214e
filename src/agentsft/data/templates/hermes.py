"""``hermes``: ChatML turns; tools listed in the system turn; calls as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; results in a ``tool`` turn
as ``<tool_response>...</tool_response>``."""

from __future__ import annotations

import json

from agentsft.data.schema import Conversation, ToolCall
from agentsft.data.templates.base import (
    AgentTemplate,
    Piece,
    call_from_object,
    json_after_tags,
    tools_json,
)

TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You can call the functions described below. Their signatures are listed inside "
    "<tools></tools>:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, reply with a JSON object inside <tool_call></tool_call> tags, "
    "one block per call:\n<tool_call>\n"
    '{{"name": "function_name", "arguments": {{"argument": "value"}}}}\n</tool_call>\n'
    "Each result comes back inside <tool_response></tool_response> tags."
)


class HermesTemplate(AgentTemplate):
    name = "hermes"
    call_marker, call_close = "<tool_call>", "</tool_call>"
    start, end = "<|im_start|>", "<|im_end|>"
    stop = ("<|im_end|>",)

    def pieces(self, conv: Conversation, add_generation_prompt: bool) -> list[Piece]:
        msgs, out = conv.messages, []
        has_system = bool(msgs) and msgs[0].role == "system"
        if has_system or conv.tools:
            system = msgs[0].content if has_system else ""
            if conv.tools:
                preamble = TOOLS_PREAMBLE.format(tools=tools_json(conv))
                system = f"{system}\n\n{preamble}" if system else preamble
            out += [(f"{self.start}system\n", None), (system + self.end, 0 if has_system else None),
                    ("\n", None)]
        for i, m in enumerate(msgs):
            if m.role == "system":
                continue
            if m.role == "tool":
                first = i == 0 or msgs[i - 1].role != "tool"
                last = i + 1 == len(msgs) or msgs[i + 1].role != "tool"
                out.append((f"{self.start}tool\n" if first else "\n", None))
                body = f"<tool_response>\n{m.content}\n</tool_response>"
                out += [(body + (self.end if last else ""), i)]
                if last:
                    out.append(("\n", None))
                continue
            body = m.content
            if m.tool_calls:
                calls = "\n".join(hermes_call(c) for c in m.tool_calls)
                body = f"{body}\n{calls}" if body else calls
            out += [(f"{self.start}{m.role}\n", None), (body + self.end, i), ("\n", None)]
        if add_generation_prompt:
            out.append((f"{self.start}assistant\n", None))
        return out

    def parse_calls(self, text: str) -> list[ToolCall]:
        return [call_from_object(v) for v in json_after_tags(text, "<tool_call>")]


def hermes_call(c: ToolCall) -> str:
    payload = json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"
