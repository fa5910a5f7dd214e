"""Evaluation output: report.json, predictions.jsonl and tables for the terminal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from agentsft.files import write_text_atomically

TABLE = (("call decision accuracy", "decision"), ("tool-name accuracy", "name_accuracy"),
         ("argument exact match", "exact_match"), ("argument precision", "arg_precision_micro"),
         ("argument recall", "arg_recall_micro"), ("argument F1", "arg_f1_micro"),
         ("calls that parse (valid JSON)", "valid_json"),
         ("calls valid against the schema", "schema_valid"), ("ROUGE-L F1 (text answers)", "rouge_l"),
         ("perplexity (gold assistant tokens)", "perplexity"))


def write_outputs(folder: Path, report: dict[str, Any], rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(folder / "predictions.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


def markdown_table(columns: dict[str, dict[str, Any]]) -> str:
    """Metrics as rows, one column per evaluated model (``{"base": overall, ...}``); with
    two columns, a third shows the change."""
    names = list(columns)
    head = ["metric", *names] + (["change"] if len(names) == 2 else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key in TABLE:
        values = [columns[n].get(key) for n in names]
        cells = [label, *map(fmt, values)]
        if len(names) == 2:
            a, b = values
            cells.append(f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float))
                         and math.isfinite(a) and math.isfinite(b) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    counts = columns[names[-1]]
    lines.append(f"\n{counts.get('steps', 0)} steps: {counts.get('call_steps', 0)} with gold calls, "
                 f"{counts.get('text_steps', 0)} text answers")
    return "\n".join(lines)


def per_tool_table(report: dict[str, Any]) -> str:
    """Accuracy per gold tool, where there are at least two ("" otherwise)."""
    groups = report.get("per_tool") or {}
    if len(groups) < 2:
        return ""
    lines = ["| gold tool | steps | call decision | tool-name accuracy | argument exact match |",
             "|---|---|---|---|---|"]
    for name, agg in groups.items():
        lines.append(f"| {name} | {agg.get('steps', 0)} | {fmt(agg.get('decision'))} | "
                     f"{fmt(agg.get('name_accuracy'))} | {fmt(agg.get('exact_match'))} |")
    return "\n".join(lines)
