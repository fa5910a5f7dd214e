"""``agentsft export --to hf``: a merged, self-contained transformers model that carries the
run's own chat template.

The adapter is merged into the base in float32 and rounded once to the chosen dtype (a full
fine-tune is cast). Beside the safetensors go the tokenizer with the run's template as its
``chat_template.jinja`` (so ``apply_chat_template`` gives the text the model learned), a
``generation_config.json`` whose end-of-sequence ids include the template's end of turn,
and a model card. Every export is written to a temporary folder beside OUT and renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.config import DEFAULT_MODEL
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.export.card import model_card
from agentsft.export.chat_template import chat_template
from agentsft.files import replace_folder
from agentsft.hub import (
    load_model,
    load_tokenizer,
    recorded_run,
    torch_dtype,
    trained_folder,
)
from agentsft.inference.loading import model_options, tokenizer_source, with_adapter

DTYPES = ("bfloat16", "float16", "float32")
SHARD = "2GB"
"""Safetensors shards above this size are split (the default model is one file)."""


@dataclass
class Trained:
    """What a run trained, ready to write: the merged model on CPU, the tokenizer with the
    run's template as its chat template."""

    run: Path
    folder: Path
    info: dict[str, Any]
    model: Any
    base: str
    tokenizer: Any
    template: Any

    @property
    def run_dir(self) -> Path:
        return self.folder.parent if self.folder.name == "final" else self.run


def stop_ids(template: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a reply: the tokenizer's EOS and each of the template's stop
    strings that is one token (``<|im_end|>`` for hermes)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for stop in template.stop:
        tokens = tokenizer(stop, add_special_tokens=False)["input_ids"]
        if len(tokens) == 1 and tokens[0] not in ids:
            ids.append(tokens[0])
    return ids


def trained(run: str | Path, dtype: str) -> Trained:
    """The run's model with its adapter merged (float32 sum, rounded once to ``dtype``), on
    CPU, with its tokenizer carrying the run's agent template as its chat template."""
    folder = trained_folder(run)
    info = recorded_run(folder)
    is_adapter = (folder / "adapter_config.json").is_file()
    opts = model_options(None, None if is_adapter else folder, info, "cpu", False)
    net = load_model(opts, None, dtype="float32" if is_adapter else dtype)
    if is_adapter:
        try:
            net = with_adapter(net, folder, merge=True, dtype=torch_dtype(dtype))
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit its recorded base {opts.name} "
                                f"({str(e).strip().splitlines()[0][:200]})") from None
    base = info.get("base_model") or DEFAULT_MODEL
    tokenizer = load_tokenizer(tokenizer_source(folder, base), bool(info.get("trust_remote_code")))
    template = get_template(info.get("template") or "auto", tokenizer)
    tokenizer.chat_template = chat_template(template, tokenizer)
    net.generation_config.eos_token_id = stop_ids(template, tokenizer)
    return Trained(Path(run), folder, info, net.eval(), base, tokenizer, template)


def refuse_existing(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise AgentsftError(f"{out} already exists. Fix: pass --force to replace it, or another -o")


def export_hf(run: str | Path, out: str | Path, dtype: str = "bfloat16", force: bool = False) -> Path:
    """Write the run's merged model to ``out`` (see the module); returns ``out``."""
    if dtype not in DTYPES:
        raise AgentsftError(f"--dtype {dtype} is not one of {', '.join(DTYPES)} for --to hf")
    out = Path(out)
    refuse_existing(out, force)
    t = trained(run, dtype)

    def fill(tmp: Path) -> None:
        t.model.save_pretrained(tmp, max_shard_size=SHARD)
        t.tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(t, "hf", dtype))

    return replace_folder(out, fill)
