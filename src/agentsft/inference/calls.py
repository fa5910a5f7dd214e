"""Schema-constrained tool calls, through the llguidance grammar engine.

The model decides freely whether to call. Once a row writes the template's call marker
(``<tool_call>`` for hermes, the think block for msagent, the native template's own tag),
every token until the call is closed must keep the call valid: ``name`` one of the
offered tools, ``arguments`` valid against that tool's JSON schema, written the way the
template writes calls. Then decoding is free again. A forced call (``tool_choice``
``required`` or a named function) is constrained from the first token.

How a template writes a call (marker, the text around the JSON object, its keys and
separators) is read from the template itself, by rendering a probe call: the grammar can
only allow what training taught. Outside calls no token is touched, so the constraint
costs nothing there and cannot change what the model says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

from agentsft.data.arguments import closed_schema
from agentsft.data.schema import DECODER, Conversation, DataError, Message, Tool, ToolCall
from agentsft.data.templates import AgentTemplate
from agentsft.errors import AgentsftError

CHOICES = ("auto", "required")
"""``tool_choice`` values besides a tool's name: ``auto`` lets the model decide whether to
call; ``required`` makes it call one of the offered tools (a name: that tool)."""

PROBE = Tool("agentsft_probe", "probe", {"type": "object", "properties": {"a": {"type": "string"}}})
PROBE_ARGS = {"a": "agentsft_probe_value"}
SEPARATORS = ((", ", ": "), (",", ":"))


@dataclass(frozen=True)
class CallLayout:
    """How a template writes one call: ``marker lead {json} trail``, the JSON object with
    ``name_key`` and ``args_key`` and the given separators."""

    marker: str
    lead: str
    trail: str
    name_key: str
    args_key: str
    item_separator: str
    key_separator: str


def call_layout(template: AgentTemplate) -> CallLayout | str:
    """The template's call layout, read from a rendered probe call; a string says why
    there is none (calls are then decoded freely)."""
    conv = Conversation([Message("user", "hi"),
                         Message("assistant", "", tool_calls=[ToolCall(PROBE.name, PROBE_ARGS)])],
                        tools=[PROBE])
    try:
        rendered = template.render(conv)
    except DataError as e:
        return f"the {template.name} template cannot render a call ({e.problem})"
    body = next(rendered.text[s.start:s.end] for s in rendered.segments if s.message == 1)
    marker, close = call_tags(template, body)
    if not marker or marker not in body or close not in body:
        return f"the {template.name} template writes calls without an opening and a closing tag"
    opened = body.index(marker) + len(marker)
    start = body.find("{", opened)
    try:
        obj, end = DECODER.raw_decode(body, start)
    except (json.JSONDecodeError, ValueError):
        return f"the {template.name} template does not write a call as one JSON object"
    names = [k for k, v in obj.items() if v == PROBE.name]
    args = [k for k, v in obj.items() if v == PROBE_ARGS]
    seps = [s for s in SEPARATORS if json.dumps(obj, ensure_ascii=False, separators=s) == body[start:end]]
    if not (names and args and seps) or len(obj) != 2 or close not in body[end:]:
        return (f"the {template.name} template writes calls in a shape agentsft cannot "
                f"constrain: {body[opened:][:80]!r}")
    trail = body[end:body.index(close, end) + len(close)]
    return CallLayout(marker, body[opened:start], trail, names[0], args[0], *seps[0])


def call_tags(template: AgentTemplate, probe: str | None = None) -> tuple[str, str]:
    """The tags that open and close one call in the template's replies ("" where it has
    none): its own, or hermes' where a native template writes those (``probe``: a
    rendered call, else one is rendered)."""
    if template.call_marker:
        return template.call_marker, template.call_close
    if probe is None:
        layout = call_layout(template)
        return (layout.marker, "</tool_call>") if isinstance(layout, CallLayout) else ("", "")
    return ("<tool_call>", "</tool_call>") if "<tool_call>" in probe else ("", "")


def call_schema(layout: CallLayout, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one call to ``tool``, in the template's layout; definitions move
    to the root, where the arguments' ``$ref`` s point."""
    arguments = dict(arguments)
    defs = {k: arguments.pop(k) for k in ("$defs", "definitions") if k in arguments}
    return {"type": "object", **defs,
            "properties": {layout.name_key: {"const": tool.name}, layout.args_key: arguments},
            "required": [layout.name_key, layout.args_key], "additionalProperties": False,
            "x-guidance": {"whitespace_flexible": False, "item_separator": layout.item_separator,
                           "key_separator": layout.key_separator}}


def lark_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass
class CallRules:
    """The compiled constraint for one set of offered tools: matchers to copy for each
    row (after a marker, or from the first token for a forced call)."""

    after_marker: Any
    forced: Any | None
    marker: str
    window: int
    """Tokens to look back over for a newly written marker."""
    vocab: int
    """Tokens the matchers' masks cover (at least the model's logits)."""
    notes: list[str]


def compile_rules(grammar_tokenizer: Any, tokenizer: Any, layout: CallLayout, tools: list[Tool],
                  choice: str = "auto") -> CallRules:
    """The constraint for ``tools`` under ``choice`` (``auto``, ``required`` or a tool's
    name). A tool whose schema llguidance cannot compile keeps its name constrained and
    takes any JSON object as arguments, said in ``notes``."""
    from llguidance import LLMatcher
    if choice not in CHOICES and choice not in {t.name for t in tools}:
        raise AgentsftError(f"tool_choice {choice!r} is not an offered tool. Fix: use auto, "
                            f"required or one of {', '.join(t.name for t in tools)}")
    offered = [t for t in tools if choice in CHOICES or t.name == choice]
    notes, rules = [], []
    for i, tool in enumerate(offered):
        schema = call_schema(layout, tool, closed_schema(tool.parameters))
        problem = grammar_problem(LLMatcher, schema, grammar_tokenizer)
        if problem:
            notes.append(f"constrained calls: the schema of tool {tool.name!r} cannot be "
                         f"compiled ({problem}); its arguments are decoded as any JSON object")
            schema = call_schema(layout, tool, {"type": "object"})
        rules.append(f"c{i}: %json {json.dumps(schema, ensure_ascii=False)}")
    head = f'{lark_string(layout.lead)} call {lark_string(layout.trail)} REST'
    lines = ["%llguidance {}", "call: " + " | ".join(f"c{i}" for i in range(len(offered))),
             *rules, r"REST: /(.|\n)*/"]
    after = LLMatcher(grammar_tokenizer, "\n".join([f"start: {head}", *lines]), log_level=0)
    forced = None
    if choice != "auto":
        forced = LLMatcher(grammar_tokenizer,
                           "\n".join([f"start: {lark_string(layout.marker)} {head}", *lines]),
                           log_level=0)
    for m in (after, forced):
        if m is not None and m.is_error():
            raise AgentsftError(f"constrained calls: the grammar for these tools failed to "
                                f"compile ({m.get_error()}). Fix: simplify the tools' schemas, "
                                f"or pass --constrain off")
    window = len(tokenizer(layout.marker, add_special_tokens=False)["input_ids"]) + 2
    return CallRules(after, forced, layout.marker, window, grammar_tokenizer.vocab_size, notes)


def grammar_problem(matcher_class: Any, schema: dict[str, Any], grammar_tokenizer: Any) -> str:
    """Why llguidance cannot compile ``schema`` ("" where it can)."""
    try:
        grammar = matcher_class.grammar_from_json_schema(schema)
    except (ValueError, TypeError) as e:
        return str(e)
    failed, messages = matcher_class.validate_grammar_with_warnings(grammar, grammar_tokenizer)
    return messages[0].strip().splitlines()[0] if failed else ""


class CallWatch:
    """One row's constraint while it decodes: free until the row opens a call, then each
    token must keep the call valid, free again once the call is closed."""

    def __init__(self, rules: CallRules, tokenizer: Any):
        self.rules, self.tokenizer = rules, tokenizer
        self.matcher = rules.forced.deep_copy() if rules.forced is not None else None
        self.free: list[int] = []  # the tokens since the last call (or the start)
        self.unconstrained = 0
        """Calls that opened in a way the grammar rejects at once (left as written)."""

    @property
    def constrains(self) -> bool:
        return self.matcher is not None

    def advance(self, token: int) -> None:
        """Take the token the row wrote."""
        if self.matcher is not None:
            # The call is closed (or broken, which the mask never lets happen): free again.
            if not self.matcher.consume_token(token) or self.matcher.is_accepting():
                self.matcher, self.free = None, [token]
            return
        self.free.append(token)
        rest = self.opened()
        if rest is not None:
            self.matcher = self.rules.after_marker.deep_copy()
            if rest and not self.matcher.consume_tokens(
                    self.tokenizer(rest, add_special_tokens=False)["input_ids"]):
                self.matcher, self.unconstrained = None, self.unconstrained + 1

    def opened(self) -> str | None:
        """The text after the marker, where the last token completed one; else None."""
        window = self.free[-self.rules.window:]
        text = self.tokenizer.decode(window, skip_special_tokens=False)
        at = text.find(self.rules.marker)
        if at < 0 or self.rules.marker in self.tokenizer.decode(window[:-1], skip_special_tokens=False):
            return None
        return text[at + len(self.rules.marker):]


def constrain_logits(logits: torch.Tensor, watches: list[CallWatch | None]) -> None:
    """Set to -inf, in place, the logits of every token that would break the call a row
    is writing (rows outside a call are untouched)."""
    rows = [j for j, w in enumerate(watches) if w is not None and w.constrains]
    if not rows:
        return
    from llguidance.torch import fill_next_token_bitmask
    vocab = logits.shape[-1]
    bits = torch.empty(len(rows), (watches[rows[0]].rules.vocab + 31) // 32, dtype=torch.int32)
    for k, j in enumerate(rows):
        fill_next_token_bitmask(watches[j].matcher, bits, k)
    shifts = torch.arange(32, dtype=torch.int32)
    allowed = ((bits.unsqueeze(-1) >> shifts) & 1).bool().view(len(rows), -1)[:, :vocab]
    if allowed.shape[1] < vocab:  # logits past the tokenizer's tokens: never in a call
        allowed = torch.cat([allowed, allowed.new_zeros(len(rows), vocab - allowed.shape[1])], 1)
    index = torch.tensor(rows, device=logits.device)
    logits[index] = logits[index].masked_fill(~allowed.to(logits.device), float("-inf"))


class CallProcessor(LogitsProcessor):
    """The constraint inside ``model.generate`` (sampling, streaming): feeds each row's
    last token to its watch, then masks what would break a call."""

    def __init__(self, watches: list[CallWatch | None], prompt_width: int):
        self.watches, self.width = watches, prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.width:
            for watch, token in zip(self.watches, input_ids[:, -1].tolist()):
                if watch is not None:
                    watch.advance(token)
        constrain_logits(scores, self.watches)
        return scores
