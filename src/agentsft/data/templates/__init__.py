"""Agent templates: how a conversation becomes the text a model trains on and generates.

Each template renders a :class:`Conversation` into text *and* the character
spans of every message's body (what the model itself would write for it),
so the loss mask comes from roles, never from searching the rendered text.
The same object parses the model's tool calls back out of generated text, so
training and inference cannot drift apart.

- ``hermes``  ChatML turns; tools listed in the system turn; calls as
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; results in a
  ``tool`` turn as ``<tool_response>...</tool_response>``.
- ``msagent`` the ModelScope tool-agent layout: ``<|startofthink|>`` calls and
  ``<|startofexec|>`` results inside one assistant turn.
- ``native``  the tokenizer's own chat template (spans found by rendering
  message prefixes).
- ``auto``    the template an agentsft export names in its chat template; else ``native``
  when the tokenizer's template renders tools, else ``hermes``.
"""

from __future__ import annotations

from typing import Any

from agentsft.data.schema import DataError
from agentsft.data.templates.base import (
    POLICIES,
    TEMPLATES,
    AgentTemplate,
    CallParseError,
    Rendered,
    Segment,
    trained_messages,
    trained_spans,
)
from agentsft.data.templates.hermes import HermesTemplate
from agentsft.data.templates.msagent import MsAgentTemplate
from agentsft.data.templates.native import NativeTemplate, renders_tools

__all__ = ["EXPORTED", "POLICIES", "TEMPLATES", "AgentTemplate", "CallParseError", "HermesTemplate",
           "MsAgentTemplate", "NativeTemplate", "Rendered", "Segment", "exported_template", "get_template",
           "renders_tools", "trained_messages", "trained_spans"]


EXPORTED = "{{#- agentsft agent template: {} -#}}"
"""How an exported chat template names the agent template it renders (a Jinja comment,
which renders nothing): a model exported from a hermes run reads its calls as hermes."""


def exported_template(chat_template: Any) -> str | None:
    """The agent template an agentsft export's chat template names, if it is one."""
    head, _, tail = EXPORTED.format("\0").partition("\0")
    if isinstance(chat_template, str) and chat_template.startswith(head):
        name = chat_template[len(head):].partition(tail)[0]
        return name if name in ("hermes", "msagent") else None
    return None


def get_template(name: str, tokenizer: Any) -> AgentTemplate:
    """The agent template called ``name`` for ``tokenizer``."""
    if name == "auto":
        name = exported_template(getattr(tokenizer, "chat_template", None)) or (
            "native" if renders_tools(tokenizer) else "hermes")
    if name == "hermes":
        return HermesTemplate()
    if name == "msagent":
        return MsAgentTemplate(eos=tokenizer.eos_token or "</s>")
    if name == "native":
        return NativeTemplate(tokenizer)
    raise DataError(f"unknown template {name!r}", field="--template",
                    fix=f"use one of {', '.join(TEMPLATES)}")
