"""What a finished run leaves: final/ and best/ (weights, tokenizer, agentsft.json) and
loss.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agentsft.config import Config
from agentsft.files import atomic_file, replace_folder
from agentsft.hub import RUN_FILE
from agentsft.training.rundir import CHECKPOINT, TRAINER_FILES, RunDir, read_best


def run_info(cfg: Config, template: str) -> dict[str, Any]:
    """Written beside the weights: what chat and eval need to reload exactly this."""
    q = cfg.quantization
    bits = q.bits or (4 if cfg.training.method == "qlora" else None)
    return {"base_model": cfg.model.name, "revision": cfg.model.revision,
            "trust_remote_code": cfg.model.trust_remote_code, "method": cfg.training.method,
            "quantization_bits": bits, "quantization": {
                "bits": bits, "quant_type": q.quant_type, "double_quant": q.double_quant,
                "compute_dtype": q.compute_dtype} if bits else None,
            "template": template, "policy": cfg.data.policy, "max_length": cfg.data.max_length}


def gathered_weights(trainer: Any) -> dict | None:
    """Under FSDP or DeepSpeed, the whole weights gathered from every process's shards (every
    process must call this together); None where each process holds them whole. Saving
    the sharded model as it is would write empty tensors (ZeRO-3's ``torch.Size([0])``)."""
    from agentsft.training.launch import sharding
    if sharding() is None:
        return None
    return whole_weights(trainer)


def whole_weights(trainer: Any) -> dict:
    """The model's weights gathered whole from every process's shards (every process calls
    this together; the main one gets them). Under FSDP2 the trained ones only: an adapter
    needs no copy of the frozen base in host memory (a full fine-tune trains them all)."""
    if trainer.is_fsdp_enabled and trainer.accelerator.is_fsdp2:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(trainer.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=True))
    model = trainer.model_wrapped if trainer.is_deepspeed_enabled else trainer.model
    return trainer.accelerator.get_state_dict(model)


def save_outputs(trainer: Any, tokenizer: Any, cfg: Config, template: str,
                 run: RunDir, weights: dict | None = None) -> None:
    """final/: the trained adapter (or model) with its tokenizer and agentsft.json;
    best/: the same from the best validation checkpoint. ``weights``: the gathered whole
    weights of a sharded run (:func:`gathered_weights`)."""
    info = json.dumps(run_info(cfg, template), indent=2)

    def fill_final(tmp: Path) -> None:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(tmp, **({"state_dict": weights} if weights is not None else {}))
        tokenizer.save_pretrained(tmp)
        (tmp / RUN_FILE).write_text(info)

    replace_folder(run.final, fill_final)
    best = read_best(run)
    source = None
    if best is not None:
        at_end = best["step"] == trainer.state.global_step
        source = run.final if at_end else run.checkpoints / f"{CHECKPOINT}{best['step']}"
    if source is not None and source.is_dir():
        def fill_best(tmp: Path) -> None:
            for f in source.iterdir():
                if f.is_file() and f.name not in TRAINER_FILES and not f.name.startswith("rng_state"):
                    shutil.copy2(f, tmp / f.name)
            tokenizer.save_pretrained(tmp)
            (tmp / RUN_FILE).write_text(info)

        replace_folder(run.best, fill_best)


def plot_losses(run: RunDir) -> None:
    """loss.png: training loss and validation loss against the step."""
    if not run.metrics.exists():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines() if line.strip()]
    train_pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val_pts = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train_pts:
        ax.plot(*zip(*train_pts), label="train loss", color="#1f77b4")
    if val_pts:
        ax.plot(*zip(*val_pts), "o-", label="validation loss", color="#d62728")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per trained token")
    ax.set_title(f"{run.root.name}")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    tool = {k: [(r["step"], r[k]) for r in rows if k in r]
            for k in ("tool_name_accuracy", "tool_exact_match")}
    if any(tool.values()):  # generation-based tool accuracy on a second axis
        acc = ax.twinx()
        for (key, pts), color in zip(tool.items(), ("#2ca02c", "#9467bd")):
            if pts:
                acc.plot(*zip(*pts), "s--", color=color,
                         label=key.removeprefix("tool_").replace("_", " ") + " (generated)")
        acc.set_ylim(-0.02, 1.02)
        acc.set_ylabel("tool-call accuracy")
        more = acc.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="best")
    fig.tight_layout()
    with atomic_file(run.plot) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
