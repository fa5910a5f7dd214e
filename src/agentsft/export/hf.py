"""``agentsft export --to hf``: a merged, self-contained transformers model that carries the
run's own chat template.

The adapter is merged into the base in float32 and rounded once to the chosen dtype (a full
fine-tune is cast). Beside the safetensors go the tokenizer with the run's template as its
``chat_template.jinja`` (so ``apply_chat_template`` gives the text the model learned), a
``generation_config.json`` whose end-of-sequence ids include the template's end of turn,
and a model card. Everything is written to a temporary folder beside OUT and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from agentsft.config import DEFAULT_MODEL
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.export.chat_template import chat_template
from agentsft.hub import load_model, load_tokenizer, recorded_run, torch_dtype, trained_folder
from agentsft.inference.loading import model_options, tokenizer_source, with_adapter

DTYPES = ("bfloat16", "float16", "float32")
SHARD = "2GB"
"""Safetensors shards above this size are split (the default model is one file)."""


def stop_ids(template: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a reply: the tokenizer's EOS and each of the template's stop
    strings that is one token (``<|im_end|>`` for hermes)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for stop in template.stop:
        tokens = tokenizer(stop, add_special_tokens=False)["input_ids"]
        if len(tokens) == 1 and tokens[0] not in ids:
            ids.append(tokens[0])
    return ids


def merged_model(folder: Path, info: dict[str, Any], dtype: str) -> tuple[Any, str]:
    """The run's model with its adapter merged (float32 sum, rounded once to ``dtype``), on
    CPU, and the base model's name."""
    is_adapter = (folder / "adapter_config.json").is_file()
    opts = model_options(None, None if is_adapter else folder, info, "cpu", False)
    net = load_model(opts, None, dtype="float32" if is_adapter else dtype)
    if is_adapter:
        try:
            net = with_adapter(net, folder, merge=True, dtype=torch_dtype(dtype))
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit its recorded base {opts.name} "
                                f"({str(e).strip().splitlines()[0][:200]})") from None
    return net.eval(), info.get("base_model") or DEFAULT_MODEL


def export_hf(run: str | Path, out: str | Path, dtype: str = "bfloat16", force: bool = False) -> Path:
    """Write the run's merged model to ``out`` (see the module); returns ``out``."""
    if dtype not in DTYPES:
        raise AgentsftError(f"--dtype {dtype} is not one of {', '.join(DTYPES)} for --to hf")
    out = Path(out)
    if out.exists() and not force:
        raise AgentsftError(f"{out} already exists. Fix: pass --force to replace it, or another -o")
    folder = trained_folder(run)
    info = recorded_run(folder)
    net, base = merged_model(folder, info, dtype)
    tokenizer = load_tokenizer(tokenizer_source(folder, base), bool(info.get("trust_remote_code")))
    template = get_template(info.get("template") or "auto", tokenizer)
    tokenizer.chat_template = chat_template(template, tokenizer)
    net.generation_config.eos_token_id = stop_ids(template, tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        net.save_pretrained(tmp, max_shard_size=SHARD)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(Path(run), folder, info, template.name, dtype))
        replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def replace(tmp: Path, out: Path) -> None:
    """``tmp`` renamed to ``out``; an old ``out`` is removed only once the new one is there.
    Permissions become the usual ones (mkdtemp and some writers make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for f in tmp.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)
    old = out.with_name(f".{out.name}-old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def model_card(run: Path, folder: Path, info: dict[str, Any], template: str, dtype: str) -> str:
    """README.md of an export: where it came from, how it was trained and how to load it."""
    run_dir = folder.parent if folder.name == "final" else run
    config = run_dir / "config.yaml"
    cfg = yaml.safe_load(config.read_text()) if config.is_file() else {}
    lines = [f"# {run_dir.resolve().name}", "",
             f"Exported by agentsft from `{run_dir}`: {info.get('method', 'lora')} of "
             f"`{info.get('base_model') or DEFAULT_MODEL}`, merged and saved in {dtype}.", "",
             f"Agent template: `{template}` (the chat template in this folder renders it exactly).", ""]
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
        lines += ["## Data", ""] + [f"- `{path}`: {records(path)}" for path in data] + [""]
    lines += ["## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "tok = AutoTokenizer.from_pretrained('PATH')",
              "model = AutoModelForCausalLM.from_pretrained('PATH')",
              "text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)",
              "```", "", "or `agentsft chat --model PATH`.", ""]
    return "\n".join(lines)


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
