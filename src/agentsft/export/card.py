"""The model card (README.md) written with every export: where the model came from, how it
was trained and scored, its base model's license, and how to load it in the form written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from agentsft.config import DEFAULT_MODEL

FIGURES = ("name_accuracy", "exact_match", "arg_f1", "schema_valid", "rouge_l", "perplexity")
"""The report figures a card shows, where the report has them."""

DEFAULT_LICENSE = "apache-2.0"
"""What the packaged SmolLM2 GGUF states (general.license; a test reads it): parsing that
file's metadata takes seconds."""

USE = {
    "hf": ["```python",
           "from transformers import AutoModelForCausalLM, AutoTokenizer",
           "tok = AutoTokenizer.from_pretrained('PATH')",
           "model = AutoModelForCausalLM.from_pretrained('PATH')",
           "text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)",
           "```", "", "or `agentsft chat --model PATH`, or `vllm serve PATH` (hermes runs: "
           "`--enable-auto-tool-choice --tool-call-parser hermes`)."],
    "gguf": ["```sh", "llama-server -m PATH/model.gguf --jinja   # the chat template is in the file",
             "llama-cli -m PATH/model.gguf --jinja -cnv", "```"],
    "ollama": ["```sh", "ollama create NAME -f PATH/Modelfile", "ollama run NAME", "```", "",
               "The Modelfile's TEMPLATE renders plain chat (system, user and assistant turns) "
               "as the run's template does; tool lists and calls are not in it. For tools, use "
               "the GGUF with llama.cpp (`--jinja`), whose chat template has them."],
}


def model_card(t: Any, form: str, dtype: str) -> str:
    """README.md for an export of ``t`` (an ``export.hf.Trained``) in ``form``."""
    license_ = base_license(t.base)
    front = {"base_model": t.base, "library_name": "transformers" if form == "hf" else "gguf",
             "tags": ["agentsft", t.template.name]}
    if license_:
        front["license"] = license_
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {t.run_dir.resolve().name}", "",
             f"Exported by agentsft from `{t.run_dir}`: {t.info.get('method', 'lora')} of "
             f"`{t.base}`, merged and written as {form} ({dtype}).", "",
             f"Base model license: {license_ or 'not stated by the base model'}.", "",
             f"Agent template: `{t.template.name}` (the chat template written with this model "
             f"renders it exactly).", ""]
    cfg = run_config(t.run_dir)
    training = cfg.get("training") or {}
    if training:
        keys = ("method", "epochs", "max_steps", "batch_size", "learning_rate", "scheduler")
        lines += ["## Training", ""] + [f"- {k}: {training[k]}" for k in keys if training.get(k) is not None]
        if cfg.get("lora") and training.get("method") != "full":
            lines.append(f"- LoRA: r {cfg['lora'].get('r')}, alpha {cfg['lora'].get('alpha')}, "
                         f"targets {cfg['lora'].get('target_modules')}")
        lines.append("")
    data = (cfg.get("data") or {}).get("train") or []
    if data:
        lines += ["## Data", ""] + [data_line(entry) for entry in data] + [""]
    lines += evaluation(t.run_dir)
    lines += ["## Use", ""] + USE[form] + [""]
    return "\n".join(lines)


def run_config(run_dir: Path) -> dict[str, Any]:
    config = run_dir / "config.yaml"
    return (yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}


def evaluation(run_dir: Path) -> list[str]:
    """The figures of the run's latest eval report (``agentsft eval`` writes RUN_DIR/eval)."""
    reports = [p for p in run_dir.rglob("report.json") if "checkpoints" not in p.parts]
    if not reports:
        return []
    latest = max(reports, key=lambda p: p.stat().st_mtime)
    try:
        report = json.loads(latest.read_text())
        overall = report["overall"]
    except (ValueError, KeyError, TypeError):
        return []
    figures = [f"| {k} | {overall[k]:.3f} |" for k in FIGURES if isinstance(overall.get(k), (int, float))]
    where = ", ".join(f"`{d}`" for d in report.get("data") or []) or "its data"
    return ["## Evaluation", "",
            f"From `{latest.relative_to(run_dir)}` ({report.get('mode', 'stepwise')} on {where}, "
            f"{report.get('conversations', '?')} conversations):", "",
            "| figure | value |", "|---|---|", *figures, ""]


def base_license(base: str) -> str | None:
    """The license the base model states: the packaged default's, else the ``license`` field
    of its model card (a local folder, or the hub cache; no network)."""
    if base == DEFAULT_MODEL:
        return DEFAULT_LICENSE
    readme: Path | None = Path(base) / "README.md"
    if not Path(base).is_dir():
        from huggingface_hub import try_to_load_from_cache
        try:
            cached = try_to_load_from_cache(base, "README.md")
        except ValueError:  # not a hub id either
            cached = None
        readme = Path(cached) if isinstance(cached, str) else None
    if readme is None or not readme.is_file() or not readme.read_text(errors="replace").startswith("---"):
        return None
    try:
        front = yaml.safe_load(readme.read_text(errors="replace").split("---")[1])
    except yaml.YAMLError:
        return None
    value = front.get("license") if isinstance(front, dict) else None
    return str(value) if value else None


def data_line(entry: str | dict) -> str:
    """A ``data.train`` entry: a path, or a source of a weighted mix."""
    if not isinstance(entry, dict):
        return f"- `{entry}`: {records(entry)}"
    options = ", ".join(f"{k} {entry[k]}" for k in ("weight", "split", "config", "revision") if k in entry)
    return f"- `{entry['path']}` ({options}): {records(entry['path'])}"


def records(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        return "not found at export time"
    if p.suffix == ".jsonl":
        return f"{sum(1 for line in p.read_text().splitlines() if line.strip())} records"
    try:
        data = json.loads(p.read_text())
    except ValueError:
        return "unreadable at export time"
    return f"{len(data)} records" if isinstance(data, list) else "1 record"
