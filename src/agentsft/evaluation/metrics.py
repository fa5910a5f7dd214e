"""Scores for a tool-calling agent, one assistant step at a time, then summed up.

Everything here is pure: calls are plain data (:class:`~agentsft.data.schema.ToolCall`,
anything with ``.name`` and ``.arguments``, or ``{"name", "arguments"}`` dicts) and
texts are strings. :func:`score_step` returns a flat dict in which a metric that
does not apply to the step is ``None``, so :func:`aggregate` can skip it.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from rouge_score.rouge_scorer import RougeScorer

from agentsft.data.arguments import fits_schema

NO_CALL = "(no call)"
"""The :func:`aggregate_by` group of steps whose grouping field is an empty list."""

MEAN_KEYS = ("decision", "name_accuracy", "exact_match", "arg_precision", "arg_recall",
             "arg_f1", "valid_json", "schema_valid", "rouge_l")
COUNT_KEYS = ("arg_tp", "arg_pred", "arg_gold")

# Beyond 8! assignments per tool name the exact search gets slow; agents rarely
# make more than a handful of parallel calls, so the greedy fallback is for safety.
_EXACT_LIMIT = math.factorial(8)
# Strict decimal literal: no whitespace, underscores, "inf" or "nan", which
# float() would accept but a model writing a number would not produce.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Scripts written without spaces between words, so each character is a token:
# Hiragana, Katakana (+ phonetic extensions), CJK Extension A, Unified Ideographs,
# Hangul syllables, Compatibility Ideographs, Extensions B and later.
_CJK_RANGES = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
               (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))


def json_equal(a: Any, b: Any, numeric_strings: bool = False) -> bool:
    """Whether two JSON values are equal: ``5 == 5.0``, ``True != 1``, ``"5" != 5``.

    With ``numeric_strings`` a string that is exactly a decimal literal (``"5"``,
    ``"-2.5e3"``; no surrounding spaces) equals the number it spells. Strings
    are otherwise compared exactly, objects key by key, arrays in order.
    """
    if isinstance(a, bool) or isinstance(b, bool):  # Python says True == 1; JSON does not
        return type(a) is type(b) and a == b
    if numeric_strings:
        a, b = _as_number(a, b), _as_number(b, a)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k], numeric_strings) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y, numeric_strings) for x, y in zip(a, b))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _as_number(x: Any, other: Any) -> Any:
    """``x`` as a number when it is a numeric string compared with a number."""
    if isinstance(x, str) and _is_number(other) and _NUMBER.fullmatch(x):
        value = float(x) if any(c in x for c in ".eE") else int(x)
        return value if math.isfinite(value) else x
    return x


def _name_args(call: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(call, dict):
        name, args = call.get("name"), call.get("arguments")
    else:
        name, args = call.name, call.arguments
    args = {} if args is None else args
    if not isinstance(name, str):
        raise ValueError(f"call {call!r} has no tool name. Fix: give it a string 'name'")
    if not isinstance(args, dict):
        raise ValueError(f"call {name!r} has arguments {args!r}, not a JSON object. Fix: parse "
                         "them first, and count a call that does not parse in invalid_calls")
    return name, args


def _pair_score(p: tuple[str, dict], g: tuple[str, dict], numeric_strings: bool) -> tuple[int, int]:
    """(arguments equal as a whole, how many predicted arguments the gold call has equal)."""
    (_, pa), (_, ga) = p, g
    same = sum(k in ga and json_equal(v, ga[k], numeric_strings) for k, v in pa.items())
    return int(json_equal(pa, ga, numeric_strings)), same


def match_calls(predicted: Sequence[Any], gold: Sequence[Any],
                numeric_strings: bool = False) -> list[tuple[int | None, int | None]]:
    """Pair predicted calls with gold calls, ignoring order (parallel calls).

    Only calls of the same name are paired. Within a name the pairing maximises
    first the number of exactly equal argument objects, then the number of
    equal arguments; ties keep the given order (the earlier call pairs with the
    earlier call). Returns ``(pred_index, gold_index)`` for every call, with
    ``None`` on the side of an unpaired one: predicted calls first, in order.
    """
    pred, ref = [_name_args(c) for c in predicted], [_name_args(c) for c in gold]
    return _match(pred, ref, numeric_strings)


def _match(pred: list[tuple[str, dict]], ref: list[tuple[str, dict]],
           numeric_strings: bool) -> list[tuple[int | None, int | None]]:
    pairs: dict[int, int] = {}
    for name in dict.fromkeys(n for n, _ in pred):
        rows = [i for i, (n, _) in enumerate(pred) if n == name]
        cols = [j for j, (n, _) in enumerate(ref) if n == name]
        scores = {(i, j): _pair_score(pred[i], ref[j], numeric_strings) for i in rows for j in cols}
        pairs.update(_assign(rows, cols, lambda i, j: scores[i, j]))
    paired = set(pairs.values())
    return ([(i, pairs.get(i)) for i in range(len(pred))]
            + [(None, j) for j in range(len(ref)) if j not in paired])


def _assign(rows: list[int], cols: list[int],
            score: Callable[[int, int], tuple[int, int]]) -> dict[int, int]:
    """The row -> column pairing of highest summed score (exact search, tiny inputs)."""
    if len(rows) > len(cols):
        return {r: c for c, r in _assign(cols, rows, lambda c, r: score(r, c)).items()}
    if not rows:
        return {}
    if math.perm(len(cols), len(rows)) > _EXACT_LIMIT:
        return _greedy(rows, cols, score)
    best, best_total = None, None
    for perm in itertools.permutations(cols, len(rows)):
        total = tuple(map(sum, zip(*(score(r, c) for r, c in zip(rows, perm)))))
        if best_total is None or total > best_total:  # strict: the first best wins ties
            best, best_total = perm, total
    return dict(zip(rows, best))


def _greedy(rows: list[int], cols: list[int],
            score: Callable[[int, int], tuple[int, int]]) -> dict[int, int]:
    """Best-scoring pairs first, ties to the lower indices; may miss the optimum."""
    ranked = sorted(itertools.product(rows, cols),
                    key=lambda rc: (tuple(-s for s in score(*rc)), rc))
    out: dict[int, int] = {}
    for r, c in ranked:
        if r not in out and c not in out.values():
            out[r] = c
    return out


def _ratio(num: int, den: int, other: int) -> float | None:
    """``num / den``; when ``den`` is 0: None if ``other`` is 0 too (nothing to score), else 0.0."""
    if den:
        return num / den
    return None if other == 0 else 0.0


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float | None]:
    """Argument precision, recall and F1 from counts (None when both sides are empty)."""
    p, r = _ratio(tp, n_pred, n_gold), _ratio(tp, n_gold, n_pred)
    f1 = None if p is None else (2 * p * r / (p + r) if p + r else 0.0)
    return {"arg_precision": p, "arg_recall": r, "arg_f1": f1}


def score_step(predicted_calls: Sequence[Any], gold_calls: Sequence[Any],
               predicted_text: str = "", gold_text: str = "", invalid_calls: int = 0,
               numeric_strings: bool = False, tools: Sequence[Any] | None = None
               ) -> dict[str, Any]:
    """Scores of one assistant step (keys in :data:`MEAN_KEYS` and :data:`COUNT_KEYS`).

    ``invalid_calls`` counts attempted calls that did not parse; they count as
    calling, lower ``valid_json`` and take a slot in the name/exact denominators.
    ``tools`` (objects with ``name`` and ``parameters``), the tools the step offered:
    ``schema_valid`` is the share of attempted calls that name one of them with arguments
    valid against its schema (None where the step offered none).
    """
    if invalid_calls < 0:
        raise ValueError(f"invalid_calls is {invalid_calls}; it counts calls, so must be >= 0")
    pred, ref = [_name_args(c) for c in predicted_calls], [_name_args(c) for c in gold_calls]
    should, did = bool(ref), bool(pred) or invalid_calls > 0
    out: dict[str, Any] = {"should_call": should, "did_call": did, "decision": float(should == did)}
    out.update(dict.fromkeys(k for k in MEAN_KEYS + COUNT_KEYS if k not in out))
    if should or did:
        out.update(_call_scores(pred, ref, invalid_calls, numeric_strings))
    if did:
        out["valid_json"] = len(pred) / (len(pred) + invalid_calls)
        if tools:
            valid = sum(fits_schema(name, args, tools) for name, args in pred)
            out["schema_valid"] = valid / (len(pred) + invalid_calls)
    if gold_text and not should:
        out["rouge_l"] = rouge_l(predicted_text, gold_text)
    return out


def _call_scores(pred: list, ref: list, invalid: int, numeric_strings: bool) -> dict[str, Any]:
    slots = max(len(pred) + invalid, len(ref))
    pairs = [(pred[i], ref[j]) for i, j in _match(pred, ref, numeric_strings)
             if i is not None and j is not None]
    scores = [_pair_score(p, g, numeric_strings) for p, g in pairs]
    counts = {"arg_tp": sum(s for _, s in scores), "arg_pred": sum(len(a) for _, a in pred),
              "arg_gold": sum(len(a) for _, a in ref)}
    return {"name_accuracy": len(pairs) / slots, "exact_match": sum(e for e, _ in scores) / slots,
            **counts, **prf(counts["arg_tp"], counts["arg_pred"], counts["arg_gold"])}


class MixedScriptTokenizer:
    """Words for ROUGE: each CJK character alone, other text as lowercase letter/digit runs.

    Text is NFKC-normalised first, so fullwidth ``ＡＢＣ１`` reads as the word
    ``abc1`` and halfwidth katakana as katakana. Punctuation (CJK included) and
    ``_`` separate words and are dropped; accents and other combining marks
    stay inside their word (``café``, Devanagari vowel signs).
    """

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        word = ""
        for ch in unicodedata.normalize("NFKC", text).lower():
            if (ch.isalnum() and not _is_cjk(ch)) or (word and unicodedata.category(ch)[0] == "M"):
                word += ch
                continue
            if word:
                tokens.append(word)
                word = ""
            if _is_cjk(ch):
                tokens.append(ch)
        return tokens + [word] if word else tokens


def _is_cjk(ch: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in _CJK_RANGES)


_ROUGE = RougeScorer(["rougeL"], tokenizer=MixedScriptTokenizer())


def rouge_l(predicted: str, gold: str) -> float:
    """ROUGE-L F1 of ``predicted`` against ``gold``; 0.0 when either has no tokens."""
    return float(_ROUGE.score(gold, predicted)["rougeL"].fmeasure)


def aggregate(steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of :data:`MEAN_KEYS` over the steps where they apply, plus counts.

    The ``arg_*`` means are macro (per step); ``arg_*_micro`` come from the
    summed ``arg_tp/arg_pred/arg_gold``, so steps with many arguments weigh more.
    """
    out: dict[str, Any] = {"steps": len(steps),
                           "call_steps": sum(bool(s.get("should_call")) for s in steps),
                           "text_steps": sum(s.get("rouge_l") is not None for s in steps)}
    for key in MEAN_KEYS:
        values = [s[key] for s in steps if s.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    for key in COUNT_KEYS:
        out[key] = sum(s.get(key) or 0 for s in steps)
    micro = prf(out["arg_tp"], out["arg_pred"], out["arg_gold"])
    return out | {f"{k}_micro": v for k, v in micro.items()}


def aggregate_by(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """:func:`aggregate` per value of ``row[key]``, over ``row["scores"]``.

    A list value (a step's gold tool names) puts the row in each distinct
    group it names, and an empty list in :data:`NO_CALL`.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        value = row[key]
        is_list = isinstance(value, (list, tuple))
        names = (list(dict.fromkeys(value)) or [NO_CALL]) if is_list else [value]
        for name in names:
            groups.setdefault(str(name), []).append(row["scores"])
    return {name: aggregate(groups[name]) for name in sorted(groups)}


def perplexity_from(nll_sum: float, tokens: int) -> float | None:
    """``exp(nll_sum / tokens)``: None for no tokens, ``inf`` when it overflows a float."""
    if tokens < 0:
        raise ValueError(f"tokens is {tokens}; it counts scored tokens, so must be >= 0")
    if tokens == 0:
        return None
    try:
        return math.exp(nll_sum / tokens)
    except OverflowError:
        return math.inf
