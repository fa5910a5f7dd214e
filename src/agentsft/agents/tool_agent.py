"""An agent that calls real Python tools.

Each step: the model replies; the calls in the reply are parsed with the agent
template it was trained with, checked against the tools' schemas and run (with a
timeout); the results go back as tool messages; repeat until a reply without
calls (the answer) or the step limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentsft.agents.dialog import DialogAgent, Msg
from agentsft.agents.toolkit import Toolkit
from agentsft.data.schema import Message, Tool, ToolCall
from agentsft.data.templates import CallParseError
from agentsft.inference import Generator, Sampling

Event = Callable[[str, Any], None]
"""Called with ("call", ToolCall) and ("result", (ToolCall, ToolResult)) as they happen."""


class ToolAgent(DialogAgent):
    """A dialog agent that calls real Python tools (a :class:`Toolkit`) until it answers
    or reaches ``max_steps`` rounds of calls."""

    def __init__(self, name: str, sys_prompt: str | None = None, toolkit: Toolkit | None = None,
                 max_steps: int = 5, **kwargs: Any):
        super().__init__(name, sys_prompt, **kwargs)
        self.toolkit = toolkit or Toolkit()
        self.max_steps = max_steps

    @property
    def tools(self) -> list[Tool] | None:
        return self.toolkit.tools or None

    def __call__(self, msg: Msg | str | None = None, on_text: Callable[[str], None] | None = None,
                 on_event: Event | None = None) -> Msg:
        if msg is not None:
            self.memory.append(Message("user", msg if isinstance(msg, str) else msg.content))
        made: list[ToolCall] = []
        for _ in range(self.max_steps):
            gen = self.generator.reply(self.conversation(), self.sampling, on_text)
            try:
                reply = self.generator.template.parse_reply(gen.text)
            except CallParseError as e:
                # Shown to the model like a tool result, so it can write the call again.
                self.memory += [Message("assistant", gen.text.strip()),
                                Message("tool", f"Error: {e}. Write each call as the tool format "
                                                f"shows, with arguments as a JSON object.")]
                if on_event:
                    on_event("error", str(e))
                continue
            if not reply.tool_calls:
                self.memory.append(reply)
                return Msg("assistant", reply.content, name=self.name, tool_calls=made or None)
            for call in reply.tool_calls:
                call.id = call.id or f"call_{len(made) + 1}"
                made.append(call)
            self.memory.append(reply)
            for call in reply.tool_calls:
                if on_event:
                    on_event("call", call)
                result = self.toolkit.run(call)
                if on_event:
                    on_event("result", (call, result))
                self.memory.append(Message("tool", result.content, tool_call_id=call.id, name=call.name))
        note = f"(stopped after {self.max_steps} tool steps without a final answer)"
        self.memory.append(Message("assistant", note))
        return Msg("assistant", note, name=self.name, tool_calls=made or None)


def tool_agents(generator: Generator, toolkit: Toolkit, sampling: Sampling | None = None,
                max_steps: int = 5) -> Callable[[str | None], ToolAgent]:
    """Makes a fresh :class:`ToolAgent` per call, given a system prompt: what evaluation's
    agent mode runs each user turn through (``evaluate(..., make_agent=...)``)."""
    s = sampling or Sampling()

    def make(system: str | None) -> ToolAgent:
        return ToolAgent("agent", system, toolkit=toolkit, max_steps=max_steps, generator=generator,
                         max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p)
    return make
