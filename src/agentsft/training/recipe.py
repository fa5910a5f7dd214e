"""Supervised fine-tuning on agent conversations: LoRA (default), QLoRA or full.

:func:`train` reads as the recipe; each step lives in its own module:

    rundir.open_run     the run directory (a resumed run cleaned up to its last checkpoint)
    data                tokenizer and template; conversations -> masked token rows
    model               base weights, then LoRA / QLoRA / full / a continued adapter
    trainer             transformers.Trainer fed with our rows, packed where the model allows
    (run)               trainer.train() with the speed paths that apply (accel.training)
    outputs             final/, best/, loss.png
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentsft.accel.training import fast_training, keep_freed_memory
from agentsft.config import Config
from agentsft.files import write_text_atomically
from agentsft.hub import is_main, resolve_device, say
from agentsft.training import rundir
from agentsft.training.callbacks import RunLog
from agentsft.training.data import prepare_data, tokenizer_and_template
from agentsft.training.launch import check_launch
from agentsft.training.model import build_model, say_parameters, use_adapter_base
from agentsft.training.outputs import gathered_weights, plot_losses, save_outputs
from agentsft.training.rundir import RunDir
from agentsft.training.trainer import AgentTrainer, build_trainer


@dataclass
class TrainResult:
    """What a finished run reports."""

    run: "RunDir"
    model: Any
    steps: int
    seconds: float
    tokens: int
    """Non-padding tokens of the examples trained on (all processes)."""
    train_loss: float
    steady_tokens_per_s: float | None = None
    """Tokens/s from the end of the first step to the end of the last: no start-up,
    no final save (what a benchmark should quote)."""
    tokenizer: Any = None
    template: Any = None
    """The agent template trained with: inference must use the same one."""
    packed: bool = False
    """Whether batches were padding-free rows (``training.packing``) or padded."""
    computed_tokens: int = 0
    """Non-padding tokens the model ran on in this process's steps (all processes): fewer
    than ``tokens`` where examples held a shared prefix once."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def train(cfg: Config, resume: bool = False) -> TrainResult:
    """Fine-tune per ``cfg``; with ``resume``, continue ``cfg.training.output`` from its
    last complete checkpoint."""
    run, start = rundir.open_run(cfg.training.output, resume)
    check_launch(cfg, resolve_device(cfg.model.device))  # before anything loads
    if cfg.training.adapter:
        use_adapter_base(cfg)
    torch.manual_seed(cfg.training.seed)
    tokenizer, template = tokenizer_and_template(cfg)
    mix: list[dict] = []
    rows = prepare_data(cfg, tokenizer, template, mix)  # before the model: bad data fails fast
    device = resolve_device(cfg.model.device)
    keep_freed_memory(device)
    model = build_model(cfg)
    say_parameters(model, cfg)
    trainer = build_trainer(cfg, run, model, tokenizer, template, rows, device)
    trainer.accelerator.wait_for_everyone()  # every rank has checked the folder before it is used
    rundir.create(run, cfg)
    if is_main():
        write_text_atomically(run.root / "data_mix.json", json.dumps(mix, indent=2) + "\n")
    done = run_steps(trainer, start, evaluate_at_end=bool(rows[1]) and not cfg.training.eval_every)
    done.tokenizer, done.template = tokenizer, template
    weights = gathered_weights(trainer)  # every process: a sharded model's pieces
    if is_main():
        save_outputs(trainer, tokenizer, cfg, template.name, run, weights)
        plot_losses(run)
        say(f"trained {done.steps} steps in {done.seconds:.0f}s ({done.tokens_per_s:.0f} "
            f"tokens/s); train loss {done.train_loss:.4f}; saved to {run.final}")
    trainer.accelerator.wait_for_everyone()
    return done


def run_steps(trainer: AgentTrainer, start: Path | None, evaluate_at_end: bool) -> TrainResult:
    """The training loop (from ``start``, a checkpoint, where resuming), under the speed
    paths that apply; the plain model back, its attention restored."""
    args = trainer.args
    began = time.perf_counter()
    autocast = torch.bfloat16 if args.bf16 else (torch.float16 if args.fp16 else None)
    with fast_training(trainer.model, autocast, trainer.fast):
        result = trainer.train(resume_from_checkpoint=str(start) if start else None)
        if evaluate_at_end:  # eval_every 0: validate once, at the end
            trainer.evaluate()
    seconds = time.perf_counter() - began
    log = next(c for c in trainer.callback_handler.callbacks if isinstance(c, RunLog))
    tokens0 = log.tokens0 or 0  # tokens already seen when this process began (resume)
    # Mixed precision wraps forward() in autocast; callers get the plain model back.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if trainer.restore:
        model.set_attn_implementation(trainer.restore)
    return TrainResult(trainer.run, model, trainer.state.global_step, seconds,
                       trainer.state.num_input_tokens_seen - tokens0, result.training_loss,
                       log.steady_rate(), packed=trainer.packed,
                       computed_tokens=trainer.computed_tokens)
