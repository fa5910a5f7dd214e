"""The ``agentsft data`` verbs: check, preview, stats, convert.

Each takes parsed options, prints for people (or JSON for programs), and
returns an exit code. Errors the user can fix are raised as DataError and
printed by the CLI as one line.
"""

from __future__ import annotations

import json
import os
import sys
from array import array
from collections import Counter
from typing import Any, TextIO

from tqdm import tqdm

from agentsft.data.readers import ReadReport, stream_conversations
from agentsft.data.schema import Conversation, DataError
from agentsft.data.sources import SUFFIXES, SourceOptions, expanded
from agentsft.data.templates import Rendered, trained_messages
from agentsft.data.tokenize import EncodeReport, Example, encode_conversations, encoded
from agentsft.files import atomic_file

SHOWN = 20  # list at most this many warnings / skipped records, then a count


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def say(text: str = "", file: TextIO | None = None) -> None:
    print(text, file=file or sys.stdout, flush=True)


def report_left_out(read: ReadReport, enc: EncodeReport | None = None,
                    file: TextIO = sys.stderr) -> None:
    """Everything skipped or dropped, counted and listed (stderr, so JSON output stays clean)."""
    skipped = list(read.skipped) + (enc.skipped if enc else [])
    if read.warnings and file is sys.stderr:
        say(f"{plural(len(read.warnings), 'warning')} (agentsft data check lists them)", file)
    if skipped:
        say(f"skipped {plural(len(skipped), 'invalid record')}:", file)
        for e in skipped[:SHOWN]:
            say(f"  {e}", file)
        if len(skipped) > SHOWN:
            say(f"  ... and {len(skipped) - SHOWN} more", file)
    if enc and enc.dropped:
        say(f"dropped {plural(len(enc.dropped), 'example')} longer than --max-length "
            f"(first: {enc.dropped[0]}); use --truncation truncate to keep them", file)
    if enc and enc.truncated:
        say(f"truncated {plural(len(enc.truncated), 'example')} to --max-length "
            f"(first: {enc.truncated[0]})", file)


# ---------------------------------------------------------------------------
# check


class Counts:
    """What ``data check`` reports of many conversations, counted as they stream past."""

    def __init__(self):
        self.conversations, self.tool_calls = 0, 0
        self.roles: Counter = Counter()
        self.tool_names: set[str] = set()

    def add(self, conv: Conversation) -> None:
        self.conversations += 1
        self.roles.update(m.role for m in conv.messages)
        self.tool_calls += sum(len(m.tool_calls) for m in conv.messages)
        self.tool_names.update(t.name for t in conv.tools or ())

    def merge(self, other: Counts) -> None:
        self.conversations += other.conversations
        self.tool_calls += other.tool_calls
        self.roles.update(other.roles)
        self.tool_names |= other.tool_names

    def as_dict(self) -> dict[str, Any]:
        return {"conversations": self.conversations, "messages": sum(self.roles.values()),
                "roles": dict(self.roles), "tool_calls": self.tool_calls,
                "tools": len(self.tool_names)}


def summary(c: dict[str, Any]) -> str:
    return ", ".join(plural(c[k], w) for k, w in (
        ("conversations", "conversation"), ("messages", "turn"), ("tool_calls", "tool call"),
        ("tools", "tool")))


def data_files(paths: list[str]) -> list[str]:
    """The data sources among ``paths``, folders expanded to their data files; other
    files are left out and reported on stderr."""
    files, others = [], []
    for p in paths:
        try:
            if os.path.isfile(p) and not p.lower().endswith(SUFFIXES):
                raise DataError("not a data file", where=p)
            files += expanded(p)  # a missing file or a hub id gets its own clear error when read
        except DataError:
            others.append(p)
    if others:
        say(f"ignored {plural(len(others), 'path')} holding no data ({', '.join(SUFFIXES)}): "
            f"{', '.join(others)}", sys.stderr)
    if not files:
        raise DataError("no data files among the arguments", where=" ".join(paths),
                        fix=f"pass {', '.join(SUFFIXES)} files, folders holding them, or a "
                            f"hub dataset id")
    return files


def trainable(conv: Conversation, policy: str, skip_invalid: bool, skipped: list) -> bool:
    """Whether ``conv`` has a trained message under ``policy`` (else raise, or count it)."""
    if trained_messages(conv, policy):
        return True
    err = DataError(f"no message is trained under loss policy {policy!r}", where=conv.source,
                    fix="check the train flags, or choose another --policy")
    if not skip_invalid:
        raise err
    skipped.append(err)
    return False


def check(paths: list[str], format: str, skip_invalid: bool, policy: str = "assistant",
          source: SourceOptions | None = None) -> int:
    """Counts per file, then warnings and skipped records. Exit 0, or 2 on the first error.
    Read as a stream: only the counts are kept."""
    total, totals = ReadReport(), Counts()
    files = data_files(paths)
    for path in files:
        read, c = ReadReport(), Counts()
        for conv in stream_conversations(path, format, skip_invalid, read, source):
            if trainable(conv, policy, skip_invalid, read.skipped):
                c.add(conv)
        d = c.as_dict()
        roles = ", ".join(f"{n} {r}" for r, n in sorted(d["roles"].items()))
        say(f"{path} ({read.formats[path]}): {summary(d)} ({roles or 'none'})")
        totals.merge(c)
        total.warnings += read.warnings
        total.skipped += read.skipped
    if len(files) > 1:
        say(f"total: {summary(totals.as_dict())}")
    for w in total.warnings[:SHOWN]:
        say(f"warning: {w}")
    if len(total.warnings) > SHOWN:
        say(f"... and {len(total.warnings) - SHOWN} more warnings")
    report_left_out(total, file=sys.stdout)
    warned = plural(len(total.warnings), "warning")
    say(f"{warned}, {plural(len(total.skipped), 'invalid record')} skipped" if skip_invalid
        else f"{warned}, no errors")
    return 0


# ---------------------------------------------------------------------------
# preview

GREEN, DIM, RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"


def token_pieces(rendered: Rendered, ex: Example) -> list[str]:
    """The text of each token, cut from the rendered text by its offsets."""
    return [rendered.text[s:e] for s, e in ex.offsets]


def highlighted(pieces: list[str], trained: list[int], color: bool) -> str:
    """The text with trained runs marked: green on a terminal, ``[[...]]`` otherwise."""
    out, inside = [], False
    on, off = (GREEN, DIM) if color else ("[[", "]]")
    if color:
        out.append(DIM)
    for text, t in zip(pieces, trained):
        if t and not inside:
            out.append(on)
        elif not t and inside:
            out.append(off)
        inside = bool(t)
        out.append(text)
    if inside and not color:
        out.append(off)
    if color:
        out.append(RESET)
    return "".join(out)


def preview(path: str, n: int, tokenizer: Any, template, policy: str, format: str,
            skip_invalid: bool, as_json: bool, color: bool, max_length: int | None = None,
            truncation: str = "drop", source: SourceOptions | None = None) -> int:
    read, convs, total = ReadReport(), [], 0
    for conv in stream_conversations(path, format, skip_invalid, read, source):
        total += 1
        if n <= 0 or len(convs) < n:  # the rest are counted, not kept
            convs.append(conv)
    enc = encode_conversations(convs, tokenizer, template, policy, max_length, truncation,
                               skip_invalid=skip_invalid)
    report_left_out(read, enc)
    by_source = {e.source: e for e in enc.examples}
    if not as_json:
        legend = (f"{GREEN}trained{RESET} {DIM}masked{RESET}" if color
                  else "[[trained]] masked")
        say(f"{path}: {total} conversations, showing {len(by_source)} "
            f"(template {template.name}, policy {policy}; {legend})")
    for conv in convs:
        ex = by_source.get(conv.source)
        if ex is None:
            continue
        pieces = token_pieces(template.render(conv, policy), ex)
        if as_json:
            say(json.dumps({"source": ex.source, "tokens": pieces, "ids": ex.input_ids,
                            "trained": ex.trained}, ensure_ascii=False))
            continue
        share = 100 * ex.n_trained / max(len(ex), 1)
        say(f"\n── {ex.source} · {len(ex)} tokens, {ex.n_trained} trained ({share:.1f}%) ──")
        say(highlighted(pieces, ex.trained, color))
    return 0


# ---------------------------------------------------------------------------
# stats


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def histogram(values: list[int], bins: int = 12, width: int = 40, mark: int | None = None) -> list[str]:
    """Text bars of the length distribution; the bin holding ``mark`` is flagged."""
    lo, hi = min(values), max(values)
    step = max(1, -(-(hi - lo + 1) // bins))
    edges = list(range(lo, hi + 1, step))
    counts_ = [sum(1 for v in values if e <= v < e + step) for e in edges]
    top = max(counts_) or 1
    lines = []
    for e, c in zip(edges, counts_):
        flag = "  <- max length" if mark is not None and e <= mark < e + step else ""
        lines.append(f"  {e:>6}-{e + step - 1:<6} {'#' * round(width * c / top):<{width}} {c}{flag}")
    return lines


def stats(sources: list[tuple[str, float, SourceOptions | None]], tokenizer: Any, template,
          policy: str, format: str, skip_invalid: bool, max_length: int | None) -> int:
    """Length percentiles, trained share and a histogram of each source (path, weight, how
    to open it), read as a stream: the examples themselves are not kept, only two numbers
    each. Several sources, or a weight, add the mix training would take."""
    mix = [(path, weight, source_stats(path, tokenizer, template, policy, format, skip_invalid,
                                       max_length, options))
           for path, weight, options in sources]
    if len(mix) > 1 or any(weight != 1 for _, weight, _ in mix):
        say_mix(mix)
    return 0


def source_stats(path: str, tokenizer: Any, template, policy: str, format: str,
                 skip_invalid: bool, max_length: int | None, source: SourceOptions | None
                 ) -> tuple[int, int, int]:
    """One source's figures, said; (examples, tokens, trained tokens) returned."""
    read, enc = ReadReport(), EncodeReport()
    convs = tqdm(stream_conversations(path, format, skip_invalid, read, source), desc="reading",
                 unit="conv", leave=False, mininterval=1, disable=not sys.stderr.isatty())
    lengths, trained = array("i"), 0
    for ex in encoded(convs, tokenizer, template, policy, None, "drop", skip_invalid, enc):
        lengths.append(len(ex))
        trained += ex.n_trained
    report_left_out(read, enc)
    lengths = array("i", sorted(lengths))
    if not lengths:
        say(f"{path}: no usable examples")
        return 0, 0, 0
    tokens = sum(lengths)
    say(f"{path}: {len(lengths)} examples, {tokens} tokens, {trained} trained "
        f"({100 * trained / tokens:.1f}%) [template {template.name}, policy {policy}]")
    qs = "  ".join(f"p{q}={percentile(lengths, q)}" for q in (50, 90, 95, 99))
    say(f"tokens per example: min={lengths[0]}  {qs}  max={lengths[-1]}  "
        f"mean={tokens / len(lengths):.1f}")
    if max_length is not None:
        over = [n for n in lengths if n > max_length]
        lost = sum(n - max_length for n in over)
        say(f"at --max-length {max_length}: {plural(len(over), 'example')} longer; "
            f"truncation drop would leave them out, truncate would cut {lost} tokens")
    say("length histogram (tokens):")
    for line in histogram(lengths, mark=max_length):
        say(line)
    return len(lengths), tokens, trained


def say_mix(mix: list[tuple[str, float, tuple[int, int, int]]]) -> None:
    """What each source gives a weighted run (before its validation share is held out):
    weight 2 takes every example twice, 0.5 half of them."""
    taken = [(path, weight, weight * n, weight * tokens, weight * trained)
             for path, weight, (n, tokens, trained) in mix]
    total = sum(t[4] for t in taken) or 1
    say("mix (as training takes it, before the validation hold-out):")
    say(f"  {'source':<40} {'weight':>6} {'examples':>9} {'tokens':>11} {'trained':>10} {'share':>6}")
    for path, weight, n, tokens, trained in taken:
        say(f"  {path[-40:]:<40} {weight:>6g} {round(n):>9} {round(tokens):>11} "
            f"{round(trained):>10} {100 * trained / total:>5.1f}%")


# ---------------------------------------------------------------------------
# convert


def convert(paths: list[str], to: str, out: str, format: str, skip_invalid: bool,
          source: SourceOptions | None = None) -> int:
    if os.path.isdir(out):
        raise DataError("is a folder", where=out, fix="give -o a file name, e.g. out.jsonl")
    read = ReadReport()
    n = write_jsonl(out, (c.to_dict() for c in stream_conversations(
        data_files(paths), format, skip_invalid, read, source)))
    report_left_out(read)
    say(f"wrote {n} conversations to {out} ({to})")
    return 0


def write_jsonl(path: str, records) -> int:
    """One JSON object a line, written to a temporary file and renamed into place; returns
    how many."""
    n = 0
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for n, r in enumerate(records, start=1):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return n
