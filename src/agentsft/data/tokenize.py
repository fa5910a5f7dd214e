"""Rendered text + trained spans -> token ids and a per-token trained mask.

The whole text is tokenized once with character offsets; a token is trained
when its characters lie inside a trained span. Nothing searches the text for
role markers, so a mask cannot silently drift from the template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from agentsft.data.schema import Conversation, DataError
from agentsft.data.templates import AgentTemplate, Rendered

IGNORE_INDEX = -100
TRUNCATION = ("drop", "truncate")


@dataclass
class Example:
    """One tokenized conversation."""

    input_ids: list[int]
    trained: list[int]
    """1 where the token is in the loss, else 0."""
    source: str | None = None
    offsets: list[tuple[int, int]] | None = None
    """Character span of each token in the rendered text."""

    @property
    def labels(self) -> list[int]:
        return [t if m else IGNORE_INDEX for t, m in zip(self.input_ids, self.trained)]

    @property
    def n_trained(self) -> int:
        return sum(self.trained)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeReport:
    examples: list[Example] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Sources of examples longer than max_length, left out (truncation ``drop``)."""
    truncated: list[str] = field(default_factory=list)
    """Sources of examples cut to max_length (truncation ``truncate``)."""
    skipped: list[DataError] = field(default_factory=list)
    """Examples with no trained token, skipped with ``skip_invalid``."""


def encode(rendered: Rendered, tokenizer: Any, source: str | None = None) -> Example:
    """Token ids of ``rendered.text`` and which of them lie in a trained span."""
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    mask = char_mask(len(rendered.text), rendered.spans)
    trained = [int(e > s and all(mask[s:e])) for s, e in enc["offset_mapping"]]
    return Example(list(enc["input_ids"]), trained, source, list(enc["offset_mapping"]))


def char_mask(n: int, spans: list[tuple[int, int]]) -> bytearray:
    mask = bytearray(n)
    for s, e in spans:
        mask[s:e] = b"\x01" * (e - s)
    return mask


def special_strings(tokenizer: Any) -> list[str]:
    """The tokenizer's special tokens (``<|im_end|>`` ...), as they appear in text."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return sorted({t.content for t in added.values() if getattr(t, "special", False)}
                  | set(getattr(tokenizer, "all_special_tokens", []) or []))


def refuse_special_text(conv: Conversation, specials: list[str]) -> None:
    """A special token written inside a message would be read as a control token
    (an end of turn in the middle of a reply, say) and trained as one."""
    for i, m in enumerate(conv.messages):
        texts = [("content", m.content)] + [
            (f"tool_calls[{j}]", json.dumps(c.arguments, ensure_ascii=False))
            for j, c in enumerate(m.tool_calls)]
        for field, text in texts:
            for tok in specials:
                if tok in text:
                    raise DataError(f"holds the tokenizer's special token {tok!r}, which would be "
                                    "read as a control token, not text",
                                    field=f"messages[{i}].{field}",
                                    fix="remove it from the data (or --skip-invalid)")


def encode_conversations(convs: list[Conversation], tokenizer: Any, template: AgentTemplate,
                         policy: str = "assistant", max_length: int | None = None,
                         truncation: str = "drop", skip_invalid: bool = False,
                         progress: bool = True) -> EncodeReport:
    """Render and tokenize every conversation; too-long and untrainable ones are counted.

    An example left with no trained token is a DataError (or, with
    ``skip_invalid``, skipped and reported): never a silent zero-loss row.
    """
    if truncation not in TRUNCATION:
        raise DataError(f"unknown truncation {truncation!r}", field="--truncation",
                        fix=f"use one of {', '.join(TRUNCATION)}")
    if max_length is not None and max_length < 1:
        raise DataError(f"max length must be positive, got {max_length}", field="--max-length",
                        fix="pass a positive number of tokens")
    report = EncodeReport()
    bar = tqdm(convs, desc="tokenizing", unit="conv", disable=not progress or len(convs) < 200,
               leave=False)
    report.examples.extend(encoded(bar, tokenizer, template, policy, max_length, truncation,
                                   skip_invalid, report))
    return report


def encoded(convs: Iterable[Conversation], tokenizer: Any, template: AgentTemplate, policy: str,
            max_length: int | None, truncation: str, skip_invalid: bool,
            report: EncodeReport) -> Iterator[Example]:
    """Each conversation's example, one at a time; what is dropped, cut or skipped is
    counted in ``report`` (its ``examples`` stay empty)."""
    specials = special_strings(tokenizer)
    for conv in convs:
        try:
            ex, fate = encode_one(conv, tokenizer, template, policy, max_length, truncation, specials)
        except DataError as e:
            if not skip_invalid:
                raise
            report.skipped.append(e)
            continue
        if fate == "dropped":
            report.dropped.append(conv.source or "?")
        elif fate == "truncated":
            report.truncated.append(conv.source or "?")
        if ex is not None:
            yield ex


def encode_one(conv: Conversation, tokenizer: Any, template: AgentTemplate, policy: str,
               max_length: int | None, truncation: str, specials: list[str]
               ) -> tuple[Example | None, str]:
    """One conversation's example and what became of it: ``ok``, ``truncated``, or
    ``dropped`` (longer than ``max_length``; no example). A conversation left with no
    trained token is a :class:`DataError` naming where it came from."""
    try:
        refuse_special_text(conv, specials)
        ex = encode(template.render(conv, policy), tokenizer, conv.source)
        fate = "ok"
        if max_length is not None and len(ex) > max_length:
            if truncation == "drop":
                return None, "dropped"
            ex = Example(ex.input_ids[:max_length], ex.trained[:max_length], ex.source,
                         ex.offsets[:max_length])
            fate = "truncated"
        if not ex.n_trained:
            cut = " after truncation" if fate == "truncated" else ""
            raise DataError(f"no token is trained{cut} under loss policy {policy!r}",
                            fix="raise --max-length, check the train flags, or pass "
                                "--skip-invalid to leave it out")
    except DataError as e:
        raise e.at(conv.source or "?")
    return ex, fate


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two rows have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
