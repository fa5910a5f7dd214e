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
- ``auto``    ``native`` when the tokenizer's template renders tools, else ``hermes``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agentsft.data.readers import EXEC_CLOSE, EXEC_OPEN, THINK_CLOSE, THINK_OPEN, msagent_call_from
from agentsft.data.schema import (
    DECODER, Conversation, DataError, Message, ToolCall, message_to_dict, parse_arguments,
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

    def pieces(self, conv: Conversation, add_generation_prompt: bool) -> list[Piece]:
        raise NotImplementedError

    def parse_calls(self, text: str) -> list[ToolCall]:
        raise NotImplementedError

    def render(self, conv: Conversation, policy: str = "assistant",
               add_generation_prompt: bool = False) -> Rendered:
        """The text of ``conv`` and its trained character spans under ``policy``."""
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


# ---------------------------------------------------------------------------
# hermes: ChatML with <tool_call> / <tool_response>.

TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You can call the functions described below. Their signatures are listed inside "
    "<tools></tools>:\n<tools>\n{tools}\n</tools>\n\n"
    "To call a function, reply with a JSON object inside <tool_call></tool_call> tags, "
    "one block per call:\n<tool_call>\n"
    '{{"name": "function_name", "arguments": {{"argument": "value"}}}}\n</tool_call>\n'
    "Each result comes back inside <tool_response></tool_response> tags."
)


def tools_json(conv: Conversation) -> str:
    return "\n".join(json.dumps(t.to_dict(), ensure_ascii=False) for t in conv.tools or ())


class HermesTemplate(AgentTemplate):
    name = "hermes"
    call_marker = "<tool_call>"
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


# ---------------------------------------------------------------------------
# msagent: <|startofthink|> calls and <|startofexec|> results in one assistant turn.


class MsAgentTemplate(AgentTemplate):
    """``<|system|>:`` / ``<|user|>:`` / ``<|assistant|>:`` turns.

    An assistant turn holds text, then its calls (think blocks) followed by
    ``<|startofexec|>``, which the model learns to write to hand over to the
    tools; the results (exec blocks) are masked; then the summary and EOS.
    """

    name = "msagent"
    call_marker = THINK_OPEN

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


# ---------------------------------------------------------------------------
# native: the tokenizer's chat template.

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


def get_template(name: str, tokenizer: Any) -> AgentTemplate:
    """The agent template called ``name`` for ``tokenizer``."""
    if name == "auto":
        name = "native" if renders_tools(tokenizer) else "hermes"
    if name == "hermes":
        return HermesTemplate()
    if name == "msagent":
        return MsAgentTemplate(eos=tokenizer.eos_token or "</s>")
    if name == "native":
        return NativeTemplate(tokenizer)
    raise DataError(f"unknown template {name!r}", field="--template",
                    fix=f"use one of {', '.join(TEMPLATES)}")
