"""The Trainer of a run: ``transformers.Trainer`` with atomic checkpoints, a loss on the
trained tokens only, token-weighted validation, token counts and a stop on NaN loss.

The engine brings optimisers, schedules, mixed precision, gradient accumulation with the
loss averaged over every trained token of the accumulated batch, and DDP / FSDP /
DeepSpeed through accelerate.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from agentsft.accel.training import FusedLoss, fused_loss, shares_prefixes, start_packing, trained_logits
from agentsft.config import Config
from agentsft.data.collate import (
    PackedCollator,
    PadCollator,
    PrefixGroupedSampler,
    token_counts,
)
from agentsft.data.schema import Conversation
from agentsft.data.tokenize import IGNORE_INDEX
from agentsft.errors import AgentsftError
from agentsft.hub import world_size
from agentsft.training.callbacks import RunLog, ToolEval
from agentsft.training.model import checkpointing, compute_dtype, precision_flags
from agentsft.training.outputs import whole_weights
from agentsft.training.rows import Rows
from agentsft.training.rundir import CHECKPOINT, RunDir, checkpoint_steps, read_best


class TrainingStopped(AgentsftError):
    """The run stopped for a reason the user can act on (NaN loss)."""


def training_arguments(cfg: Config, run: RunDir, device: str, has_val: bool,
                       packed: bool = False) -> TrainingArguments:
    t = cfg.training
    warmup: float = t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio
    scheduler = t.scheduler
    if scheduler == "constant" and warmup:
        scheduler = "constant_with_warmup"
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=cfg.eval.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=scheduler,
        warmup_steps=warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length" if t.group_by_length and not packed else "random",
        use_cpu=device == "cpu",
        ddp_backend="gloo" if device == "cpu" and world_size() > 1 else None,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        logging_steps=t.log_every,
        eval_strategy="steps" if has_val and t.eval_every else "no",
        eval_steps=t.eval_every or None,
        save_strategy="steps",
        save_steps=t.save_every,
        save_total_limit=None,  # rotation is ours: it must keep the best checkpoint too
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="no",  # counted by AgentTrainer.training_step
        average_tokens_across_devices=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **precision_flags(cfg, device),
    )


class EmbeddingNoise:
    """NEFTune's noise on the input embeddings while training: uniform in
    ``±alpha / sqrt(L * d)``, L the length of the token's own example. transformers' own
    hook takes L from the tensor, which is a whole packed row here (or a padded batch's
    longest example), so it would shrink the noise as more examples share a row."""

    def __init__(self, model: Any, alpha: float):
        self.alpha = alpha
        self.lengths: torch.Tensor | None = None  # (rows, tokens, 1): set per batch
        self.handle = model.get_input_embeddings().register_forward_hook(self.add)

    def add(self, module: Any, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.lengths is None:
            return None
        bound = self.alpha / torch.sqrt(self.lengths.to(output.device, torch.float32) * output.shape[-1])
        return output + ((torch.rand_like(output, dtype=torch.float32) * 2 - 1) * bound).to(output.dtype)


def example_lengths(inputs: dict[str, Any]) -> torch.Tensor:
    """The length of each token's example, shaped (rows, tokens, 1): from the example
    boundaries of a packed row, else each padded row's own tokens."""
    if "cu_seq_lens_q" in inputs:
        sizes = inputs["cu_seq_lens_q"].diff().long()
        return sizes.repeat_interleave(sizes).view(1, -1, 1)
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    counts = mask.sum(1) if mask is not None else torch.full((ids.shape[0],), ids.shape[1])
    return counts.view(-1, 1, 1)


class AgentTrainer(Trainer):
    def __init__(self, *args, run: RunDir, keep_last: int, best_metric: str,
                 group_by_prefix: bool = False, packed: bool = False,
                 restore: str | None = None, fast: bool = True, neftune_alpha: float = 0.0,
                 fused: FusedLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.noise = EmbeddingNoise(self.model, neftune_alpha) if neftune_alpha else None
        self.run, self.keep_last, self.best_metric = run, keep_last, best_metric
        self.group_by_prefix = group_by_prefix
        # Padding-free rows or padded batches; the attention to put back after training.
        self.packed, self.restore = packed, restore
        self.fast = fast  # training.fast_path: our fused layers where they fit
        self.fused = fused  # the loss through Liger's fused kernel (CUDA), else None
        self.computed_tokens = 0
        self._staging: Path | None = None
        self.last_loss: float | None = None

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:  # the trained model goes back without the hook
            if self.noise is not None:
                self.noise.handle.remove()

    def _get_train_sampler(self, train_dataset=None):
        if self.group_by_prefix:
            # Grouped by the batch of all processes together: rank r takes the r-th part
            # of each, so every process's batch holds examples that begin alike, and the
            # order is the same as one process with that whole batch.
            return PrefixGroupedSampler(train_dataset or self.train_dataset,
                                        self.args.per_device_train_batch_size
                                        * self.accelerator.num_processes)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy over the trained tokens, with the output head applied only at the
        positions that predict them (:func:`trained_logits`). Same loss, same gradients."""
        if return_outputs:
            self.loss_is_scaled_for_ga = None
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        rest = {k: v for k, v in inputs.items() if k != "labels"}
        if self.noise is not None:
            self.noise.lengths = example_lengths(inputs)
        if self.fused is not None:
            loss, n = self.fused(model, rest, inputs["labels"])
        else:
            logits, targets, _ = trained_logits(model, rest, inputs["labels"])
            loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
            n = targets.numel()
        if num_items_in_batch is None:
            self.loss_is_scaled_for_ga = False
            return loss / max(n, 1)
        self.loss_is_scaled_for_ga = True  # divided by the whole accumulated batch's count
        loss = loss / num_items_in_batch
        if self.args.average_tokens_across_devices:  # DDP averages gradients; undo it for sums
            loss = loss * self.accelerator.num_processes
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Seen: the examples' own tokens (a prefix held once counted for each example, as
        # the Trainer's count would see them one by one); computed: what the model ran on.
        tokens = torch.tensor([token_counts(inputs)], device=self.args.device)
        tokens = self.accelerator.gather(tokens).sum(0).tolist()
        self.state.num_input_tokens_seen += tokens[0]
        self.computed_tokens += tokens[1]
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = loss.detach().float()
        if world_size() > 1:  # every rank stops together, or one would wait in all-reduce
            # Each rank's loss was scaled by the number of processes (compute_loss), so
            # their sum is that many times the batch's loss.
            value = self.accelerator.reduce(value, reduction="sum") / world_size()
        value = value.item()
        if not math.isfinite(value):
            last = self.run.last_checkpoint()
            raise TrainingStopped(
                f"the training loss became {value} at step {self.state.global_step + 1}; the run "
                f"stopped. Last good checkpoint: {last or 'none yet'}. Fix: lower "
                f"training.learning_rate, try training.precision=fp32, or check the data; "
                f"then --resume {self.run.root}")
        self.last_loss = value * self.args.gradient_accumulation_steps
        return loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Loss summed over every trained validation token, divided by their number: the
        true per-token loss (batch means would weight short examples up), and exp of it."""
        loader = self.get_eval_dataloader(eval_dataset)
        model = self.model
        was_training = model.training
        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        with torch.no_grad():
            for batch in loader:
                batch = self._prepare_inputs(batch)
                with self.compute_loss_context_manager():
                    out = model(**batch)
                n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
                total += torch.stack([out.loss.double() * n, n.double()])
        total = self.accelerator.reduce(total, reduction="sum")
        if was_training:
            model.train()
        loss = (total[0] / total[1].clamp(min=1)).item()
        metrics = {f"{metric_key_prefix}_loss": loss,
                   f"{metric_key_prefix}_ppl": math.exp(min(loss, 50.0)),
                   f"{metric_key_prefix}_tokens": int(total[1].item())}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _get_output_dir(self, trial):
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Write under ``.tmp-checkpoint-N`` and rename to ``checkpoint-N`` once complete,
        so a run killed mid-write never leaves a checkpoint that looks whole."""
        trained = [p for p in self.model.parameters() if p.requires_grad]
        if not all(torch.isfinite(p).all() for p in trained):
            raise TrainingStopped(f"the weights hold NaN or inf at step {self.state.global_step}; "
                                  f"not saving them. Last good checkpoint: "
                                  f"{self.run.last_checkpoint() or 'none yet'}. Fix: lower "
                                  f"training.learning_rate and --resume {self.run.root}")
        step = self.state.global_step
        staging = self.run.checkpoints / f".tmp-{CHECKPOINT}{step}"
        final = self.run.checkpoints / f"{CHECKPOINT}{step}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
            self.save_whole_weights(staging / final.name)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging / final.name, final)
            shutil.rmtree(staging, ignore_errors=True)
            self.rotate_checkpoints()
        self.accelerator.wait_for_everyone()

    def save_whole_weights(self, folder: Path) -> None:
        """FSDP with sharded checkpoints writes the weights only as shards (for resuming);
        beside them, the adapter (or model) gathered whole, as final/ holds it, so that any
        checkpoint (best/ too) loads in chat and eval. Every process gathers; one writes."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if not self.is_fsdp_enabled or "FULL_STATE_DICT" in str(plugin.state_dict_type):
            return  # the Trainer saved them whole (one process, DDP, DeepSpeed, full dicts)
        weights = whole_weights(self)
        if self.args.should_save:
            self.accelerator.unwrap_model(self.model).save_pretrained(folder, state_dict=weights)

    def rotate_checkpoints(self) -> None:
        """Keep the last ``keep_last`` checkpoints and the best one."""
        steps = checkpoint_steps(self.run.checkpoints)
        keep = set(steps[-self.keep_last:])
        best = read_best(self.run)
        if best is not None:
            keep.add(best["step"])
        for step in steps:
            if step not in keep:
                shutil.rmtree(self.run.checkpoints / f"{CHECKPOINT}{step}", ignore_errors=True)


def build_trainer(cfg: Config, run: RunDir, model: Any, tokenizer: Any, template: Any,
                  rows: tuple[Rows, Rows, list[Conversation]],
                  device: str) -> AgentTrainer:
    """The Trainer of this run: batches packed or padded (as the model allows), our log and,
    where asked, tool-call evaluation while training."""
    t = cfg.training
    train_rows, val_rows, val_convs = rows
    compute = compute_dtype(cfg, device)
    packed, restore = start_packing(model, t.packing, device, t.fast_path != "off", compute)
    share = shares_prefixes(model, packed, t.group_by_prefix, noisy=bool(t.neftune_alpha))
    t.gradient_checkpointing = checkpointing(cfg, model, device)  # resolved: config.yaml says it
    try:
        args = training_arguments(cfg, run, device, bool(len(val_rows)), packed)
    except ValueError as e:  # e.g. an optimizer name transformers does not know
        raise AgentsftError(f"the training settings were refused: {str(e).splitlines()[0]}. "
                            f"Fix: check training.optimizer and the other training keys") from None
    log = RunLog(run, t.best_metric)
    trainer = AgentTrainer(
        model=model, args=args, train_dataset=train_rows,
        eval_dataset=val_rows if len(val_rows) else None,
        data_collator=PackedCollator(share) if packed else
        PadCollator(tokenizer.pad_token_id, 8 if device.startswith("cuda") else 1),
        callbacks=[log], run=run, keep_last=t.keep_last, best_metric=t.best_metric,
        group_by_prefix=share and t.group_by_prefix, packed=packed, restore=restore,
        fast=t.fast_path != "off", neftune_alpha=t.neftune_alpha,
        fused=fused_loss(model, device, t.fast_path != "off", compute))
    log.trainer = trainer
    if cfg.eval.tool_eval_every and val_convs:
        trainer.add_callback(ToolEval(trainer, tokenizer, template, val_convs, cfg))
    trainer.remove_callback(PrinterCallback)  # our RunLog shows and records the logs
    return trainer
