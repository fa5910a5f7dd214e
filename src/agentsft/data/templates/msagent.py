"""``msagent``: the tool-agent recipe's layout, ``<|startofthink|>`` calls and
``<|startofexec|>`` results inside one assistant turn."""

from __future__ import annotations

import json

from agentsft.data.msagent import (
    EXEC_CLOSE,
    EXEC_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    msagent_call_from,
)
from agentsft.data.schema import Conversation, DataError, ToolCall
from agentsft.data.templates.base import (
    AgentTemplate,
    CallParseError,
    Piece,
    json_after_tags,
    tools_json,
)


class MsAgentTemplate(AgentTemplate):
    """``<|system|>:`` / ``<|user|>:`` / ``<|assistant|>:`` turns.

    An assistant turn holds text, then its calls (think blocks) followed by
    ``<|startofexec|>``, which the model learns to write to hand over to the
    tools; the results (exec blocks) are masked; then the summary and EOS.
    """

    name = "msagent"
    call_marker, call_close = THINK_OPEN, THINK_CLOSE

    def __init__(self, eos: str):
        self.eos = eos
        self.stop = (EXEC_OPEN, eos)

    def pieces(self, conv: Conversation, add_generation_prompt: bool) -> list[Piece]:
        msgs, out = conv.messages, []
        if conv.tools and not (msgs and msgs[0].role == "system"):
            out += [("<|system|>:", None), (self.tools_text(conv), None), ("\n", None)]
        for i, m in enumerate(msgs):
            prev = msgs[i - 1] if i else None
            if m.role in ("system", "user"):
                text = m.content
                if m.role == "system" and conv.tools:
                    text = f"{text}\n\n{self.tools_text(conv)}" if text else self.tools_text(conv)
                out += [(f"<|{m.role}|>:", None), (text, i), ("\n", None)]
                continue
            # A turn goes on after calls and their results; a finished answer ends it.
            goes_on = prev is not None and (prev.role == "tool" or bool(prev.tool_calls))
            if m.role == "assistant" and not goes_on:
                out.append(("<|assistant|>:", None))
            if m.role == "tool":
                opened = prev.role == "assistant"  # the assistant's body already wrote EXEC_OPEN
                body = f"```JSON\n{m.content}\n```{EXEC_CLOSE}"
                out += [(body if opened else EXEC_OPEN + body, i), ("\n", None)]
            elif m.tool_calls:
                thinks = "\n\n".join(msagent_think(c) for c in m.tool_calls)
                lead = f"{m.content}\n" if m.content else ""
                out.append((f"{lead}{thinks}\n\n{EXEC_OPEN}", i))
            else:
                out += [(m.content + self.eos, i), ("\n", None)]
        last = msgs[-1] if msgs else None
        if add_generation_prompt and not (last and (last.role == "tool" or last.tool_calls)):
            out.append(("<|assistant|>:", None))  # after calls or results the turn goes on
        return out

    @staticmethod
    def tools_text(conv: Conversation) -> str:
        return f"You can call these tools:\n{tools_json(conv)}"

    def parse_calls(self, text: str) -> list[ToolCall]:
        calls = []
        for value in json_after_tags(text, THINK_OPEN):
            try:
                calls.append(msagent_call_from(value, "think"))
            except DataError as e:
                raise CallParseError(e.problem) from None
        return calls


def msagent_think(c: ToolCall) -> str:
    payload = {"api_name": c.name, **c.extra, "parameters": c.arguments}
    return f"{THINK_OPEN}```JSON\n{json.dumps(payload, ensure_ascii=False)}\n```{THINK_CLOSE}"
