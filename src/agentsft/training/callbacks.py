"""What a person watches while a run trains: a progress bar with loss and tokens/s,
metrics.jsonl, TensorBoard, the best checkpoint, and tool-call accuracy from generation."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from agentsft.config import Config
from agentsft.data.schema import Conversation
from agentsft.evaluation import metrics
from agentsft.evaluation.evaluate import predict_stepwise
from agentsft.evaluation.steps import stepwise_steps
from agentsft.files import write_text_atomically
from agentsft.hub import is_main
from agentsft.inference import Generator, Sampling
from agentsft.training.rundir import RunDir, read_best


class RunLog(TrainerCallback):
    def __init__(self, run: RunDir, best_metric: str):
        self.run, self.best_metric = run, best_metric
        self.bar = None
        self.writer = None
        self.t0 = self.tokens0 = None
        self.started = time.perf_counter()
        self.last_rate: float | None = None
        self.trainer: Trainer | None = None
        self.best = read_best(run)
        self.first_step: tuple[float, int] | None = None  # time, tokens at the end of step 1
        self.last_step: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.best = read_best(self.run)
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training",
                        unit="step", dynamic_ncols=True, file=sys.stderr)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run.tensorboard))
        except ImportError:  # tensorboard is optional
            self.writer = None
        self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kw):
        mark = (time.perf_counter(), state.num_input_tokens_seen)
        self.first_step = self.first_step or mark
        self.last_step = mark
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.t0
        seen = state.num_input_tokens_seen - self.tokens0
        self.last_rate = seen / elapsed if elapsed > 0 else None
        post = {}
        if self.trainer is not None and self.trainer.last_loss is not None:
            post["loss"] = f"{self.trainer.last_loss:.3f}"
        if self.last_rate:
            post["tok/s"] = f"{self.last_rate:.0f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
        if "loss" in logs:
            row.update(loss=logs["loss"], lr=logs.get("learning_rate"),
                       grad_norm=logs.get("grad_norm"), tokens_per_s=self.last_rate,
                       tokens_seen=state.num_input_tokens_seen)
        elif any(k.startswith("tool_") for k in logs):
            row.update({k: v for k, v in logs.items() if k.startswith("tool_")})
            self.bar.write(f"step {state.global_step}: " + ", ".join(
                f"{k.removeprefix('tool_')} {v:.3f}" for k, v in logs.items() if k.startswith("tool_")))
        elif "eval_loss" in logs:
            row.update(val_loss=logs["eval_loss"], val_ppl=logs["eval_ppl"],
                       val_tokens=logs.get("eval_tokens"))
        else:
            return
        row = {k: v for k, v in row.items() if v is not None}
        with open(self.run.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    name = key.replace("val_", "val/").replace("tool_", "tool/")
                    self.writer.add_scalar(name, value, state.global_step)
            self.writer.flush()
        if "val_loss" in row:
            self.bar.write(f"step {row['step']}: val loss {row['val_loss']:.4f}, "
                           f"ppl {row['val_ppl']:.2f}")

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        """Record a new best validation step; it is saved now and kept by rotation. Every
        rank decides (the metrics are already reduced), so all of them enter the save."""
        if not metrics:
            return
        value = metrics[f"eval_{self.best_metric}"]
        if math.isfinite(value) and (self.best is None or value < self.best["value"]):
            self.best = {"step": state.global_step, "metric": self.best_metric, "value": value}
            if state.is_world_process_zero:
                write_text_atomically(self.run.best_record, json.dumps(self.best))
            control.should_save = True

    def steady_rate(self) -> float | None:
        if not (self.first_step and self.last_step) or self.last_step[0] <= self.first_step[0]:
            return None
        return (self.last_step[1] - self.first_step[1]) / (self.last_step[0] - self.first_step[0])

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


class ToolEval(TrainerCallback):
    """Every ``eval.tool_eval_every`` steps (and at the end), generate the assistant steps of
    a fixed sample of validation conversations and log tool-call accuracy beside the loss
    (metrics.jsonl, TensorBoard, loss.png). Runs on the main process; others wait."""

    def __init__(self, trainer: Trainer, tokenizer: Any, template: Any,
                 convs: list[Conversation], cfg: Config):
        self.trainer, self.every = trainer, cfg.eval.tool_eval_every
        sample = random.Random(cfg.training.seed).sample(convs, min(len(convs),
                                                                    cfg.eval.tool_eval_samples))
        self.steps = stepwise_steps(sample)
        self.tokenizer, self.template = tokenizer, template
        self.sampling = Sampling(cfg.eval.max_new_tokens)
        self.batch_size = cfg.eval.batch_size
        self.done_at = -1

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.run(state)

    def run(self, state) -> None:
        if self.done_at == state.global_step:
            return
        self.done_at = state.global_step
        if is_main():
            model = self.trainer.accelerator.unwrap_model(self.trainer.model)
            gen = Generator(model, self.tokenizer, self.template)
            args = self.trainer.args
            dtype = torch.bfloat16 if args.bf16 else torch.float16
            with torch.autocast(model.device.type, dtype=dtype, enabled=args.bf16 or args.fp16):
                rows = predict_stepwise(gen, self.steps, self.sampling, self.batch_size,
                                                 numeric_strings=False, progress=None)
            agg = metrics.aggregate([r["scores"] for r in rows])
            self.trainer.log({f"tool_{k}": agg[k] for k in TOOL_METRICS if agg.get(k) is not None})
        self.trainer.accelerator.wait_for_everyone()


TOOL_METRICS = ("decision", "name_accuracy", "exact_match", "arg_f1_micro", "rouge_l")
