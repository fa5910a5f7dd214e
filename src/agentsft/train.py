"""Supervised fine-tuning on agent conversations: LoRA (default), QLoRA or full.

One entry point, :func:`train`, reads like the pipeline:

    data -> tokenized rows (masked by role)  -> model (+ adapter)  -> Trainer
         -> checkpoints (atomic), metrics.jsonl, loss.png, TensorBoard
         -> final/ (adapter or model + tokenizer + agentsft.json), best/

The engine is ``transformers.Trainer`` fed with our own masked rows; it brings
optimisers, schedules, mixed precision, gradient accumulation with the loss
averaged over every trained token of the accumulated batch, and
DDP / FSDP / DeepSpeed through accelerate. Our subclass adds what a run needs
beyond that: checkpoints written under a temporary name and renamed, a
token-weighted validation loss and perplexity, and a stop on NaN loss.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from agentsft import config as config_mod
from agentsft import evaluate, metrics
from agentsft.adapters import fast_adapters
from agentsft.config import Config
from agentsft.data.readers import read_conversations
from agentsft.data.schema import Conversation
from agentsft.data.templates import get_template
from agentsft.data.tokenize import IGNORE_INDEX, Example, encode_conversations
from agentsft.errors import AgentsftError
from agentsft.generate import Generator, Sampling
from agentsft.files import atomic_file, replace_folder, write_text_atomically
from agentsft.layers import fast_layers
from agentsft.packing import (
    OWN_KERNEL, PackedCollator, PadCollator, PrefixGroupedSampler, packing_is_exact,
    sharing_is_exact, token_counts, trained_logits, use_segment_attention,
)
from agentsft.models import (
    RUN_FILE, context_length, fast_bf16, load_model, load_tokenizer, quiet_loading, resolve_device,
    trained_folder,
)

CHECKPOINT = "checkpoint-"
TRAINER_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json",
                 "training_args.bin")  # in checkpoints, not needed to use the model


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


class TrainingStopped(AgentsftError):
    """The run stopped for a reason the user can act on (NaN loss)."""


@dataclass(frozen=True)
class RunDir:
    """Where one training run keeps everything."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def best_record(self) -> Path:
        return self.root / "best.json"

    @property
    def plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (only complete ones carry the final name)."""
        steps = checkpoint_steps(self.checkpoints)
        return self.checkpoints / f"{CHECKPOINT}{steps[-1]}" if steps else None


def checkpoint_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name[len(CHECKPOINT):]) for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith(CHECKPOINT) and p.name[len(CHECKPOINT):].isdigit())


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(text: str) -> None:
    if is_main():
        print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Data: conversations -> masked token rows, with a held-out validation split.


def split_validation(convs: list[Conversation], fraction: float, seed: int
                     ) -> tuple[list[Conversation], list[Conversation]]:
    """A seeded hold-out: never the training set itself. None when too few to spare."""
    n_val = round(len(convs) * fraction)
    if fraction <= 0 or n_val < 1 or len(convs) - n_val < 1:
        return convs, []
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return ([c for i, c in enumerate(convs) if i not in held],
            [c for i, c in enumerate(convs) if i in held])


def prepare_data(cfg: Config, tokenizer: Any, template: Any
                 ) -> tuple[list[Example], list[Example], list[Conversation]]:
    """Training rows, validation rows, and the validation conversations (for generation)."""
    d = cfg.data
    if not d.train:
        raise AgentsftError("no training data. Fix: pass --data FILE (or set data.train)")
    read = read_conversations(d.train, d.format, d.skip_invalid)
    report_skipped(read.skipped, "invalid record")
    if d.val:
        val_read = read_conversations(d.val, d.format, d.skip_invalid)
        report_skipped(val_read.skipped, "invalid validation record")
        train_convs, val_convs = read.conversations, val_read.conversations
    else:
        train_convs, val_convs = split_validation(read.conversations, d.val_fraction,
                                                  cfg.training.seed)
    rows = []
    for name, convs in (("training", train_convs), ("validation", val_convs)):
        enc = encode_conversations(convs, tokenizer, template, d.policy, d.max_length,
                                   d.truncation, d.skip_invalid, progress=is_main())
        report_skipped(enc.skipped, f"{name} example")
        if enc.dropped:
            say(f"dropped {len(enc.dropped)} {name} example(s) longer than data.max_length="
                f"{d.max_length} (first: {enc.dropped[0]}); set data.truncation=truncate to keep them")
        if enc.truncated:
            say(f"truncated {len(enc.truncated)} {name} example(s) to {d.max_length} tokens")
        rows.append(enc.examples)
    train_rows, val_rows = rows
    if not train_rows or not any(ex.n_trained for ex in train_rows):
        raise AgentsftError(f"nothing to train on: no training example has a trained token "
                            f"(data: {', '.join(d.train)}). Fix: check data.policy, the train "
                            f"flags and data.max_length")
    return train_rows, val_rows, val_convs


def report_skipped(errors: list, what: str) -> None:
    if errors:
        say(f"skipped {len(errors)} {what}(s):")
        for e in errors[:20]:
            say(f"  {e}")
        if len(errors) > 20:
            say(f"  ... and {len(errors) - 20} more")


class Rows(torch.utils.data.Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}


# ---------------------------------------------------------------------------
# Model: base weights, then the method (LoRA / QLoRA / full / continued adapter).


def adapter_folder(path: str) -> Path:
    """The LoRA adapter of a run directory (its final/) or of an adapter folder."""
    folder = trained_folder(path)
    if not (folder / "adapter_config.json").is_file():
        raise AgentsftError(f"{folder} holds a fully fine-tuned model, not a LoRA adapter. Fix: "
                            f"train on it as the model (--model {folder}) instead of --adapter")
    return folder


def weights_dtype(cfg: Config, device: str) -> str:
    """A frozen LoRA base lives in bf16 when training runs in bf16 (no per-step casts of
    its weights); trained weights stay float32: PEFT keeps adapters in float32, autocast
    runs their products in bf16 and the optimizer updates float32 masters."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    if cfg.training.method == "lora" and precision_flags(cfg, device)["bf16"]:
        return "bfloat16"
    return "float32"


def adapter_base(folder: Path) -> str | None:
    """The base model an adapter was trained on, as recorded beside it."""
    for name, key in ((RUN_FILE, "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            value = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if value:
            return value
    return None


def build_model(cfg: Config) -> Any:
    device = resolve_device(cfg.model.device)
    quant = cfg.quantization if cfg.training.method == "qlora" or cfg.quantization.bits else None
    model = load_model(cfg.model, quant, dtype=weights_dtype(cfg, device))
    model.config.use_cache = False  # no KV cache while training
    if cfg.training.method == "full":
        if cfg.training.adapter:
            raise AgentsftError("training.adapter continues a LoRA adapter, which full fine-tuning "
                                "does not use. Fix: use --method lora, or drop --adapter")
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    if quant is not None:
        # Checkpointing is the Trainer's (non-reentrant, from training_arguments); PEFT's
        # would enable it a second time, through a call transformers 5 deprecates.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.training.adapter:
        folder = adapter_folder(cfg.training.adapter)
        say(f"continuing the adapter in {folder}")
        try:
            return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
        except (RuntimeError, ValueError) as e:
            raise AgentsftError(f"the adapter in {folder} does not fit {cfg.model.name} "
                                f"({str(e).strip().splitlines()[0][:200]}). Fix: pass --model with "
                                f"the model it was trained on") from None
    lo = cfg.lora
    lora = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, bias=lo.bias,
                      target_modules=lo.target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear)})
        raise AgentsftError(f"lora.target_modules={lo.target_modules!r} does not fit this model "
                            f"({str(e).splitlines()[0]}). Fix: use all-linear or some of "
                            f"{', '.join(names)}") from None


def precision_flags(cfg: Config, device: str) -> dict[str, bool]:
    p = cfg.training.precision
    if p == "auto":
        p = "bf16" if fast_bf16(device) else ("fp16" if device.startswith("cuda") else "fp32")
    if p == "fp16" and not device.startswith("cuda"):
        raise AgentsftError("training.precision fp16 needs a CUDA GPU. Fix: use bf16 or fp32")
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def keep_freed_memory() -> None:
    """Let glibc keep the memory a training step frees for the next step. By default it
    hands large blocks back to the system as they are freed (and adapts only slowly), so
    the next step faults the same memory in again, and writing to fresh pages costs about
    1 s per GB on this machine's VM. Measured on a CPU LoRA run of the default model: step
    2's page faults went from 432k (1.7 GB) to 185k; the 4-step run took 37.6 s against
    42.6 s in one pair, but a third run took 43.2 s: within this machine's noise."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...): leave its allocator alone
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: up to 32 MB from the heap
    libc.mallopt(m_trim_threshold, 1 << 30)  # return the heap's top only past 1 GB free
    libc.mallopt(m_top_pad, 64 << 20)


def start_packing(model: Any, wanted: bool | str, device: str = "cpu"
                  ) -> tuple[bool, str | None]:
    """Padding-free batches where the model keeps packed examples apart (checked on two
    short examples); else padded batches, said once. Returns (packed, implementation to
    restore after training)."""
    if wanted == "auto":
        wanted = (not device.startswith("cuda")
                  or getattr(model.config, "_attn_implementation", None) in OWN_KERNEL)
        if not wanted:
            # QLoRA of a 7B-shaped Llama on an H100, 200 steps of batch 4: 1,340 tokens/s
            # packed (per-example SDPA) against 2,028 padded (bench/gpu_qlora.py).
            say("batches: padded (on a GPU without FlashAttention they were faster than "
                "packed rows; training.packing=true packs anyway)")
    if not wanted:
        return False, None
    restore = use_segment_attention(model)
    if packing_is_exact(model):
        return True, restore
    if restore:
        model.set_attn_implementation(restore)
    say("note: this model's attention lets packed examples see each other; training on "
        "padded batches instead (training.packing=false silences this)")
    return False, None


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


# ---------------------------------------------------------------------------
# The Trainer, with atomic checkpoints, token-weighted validation and a NaN stop.


class AgentTrainer(Trainer):
    def __init__(self, *args, run: RunDir, keep_last: int, best_metric: str,
                 group_by_prefix: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.run, self.keep_last, self.best_metric = run, keep_last, best_metric
        self.group_by_prefix = group_by_prefix
        self.computed_tokens = 0
        self._staging: Path | None = None
        self.last_loss: float | None = None

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
        logits, targets, _ = trained_logits(model, rest, inputs["labels"])
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        if num_items_in_batch is None:
            self.loss_is_scaled_for_ga = False
            return loss / max(targets.numel(), 1)
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
            value = self.accelerator.reduce(value, reduction="sum")
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
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging / final.name, final)
            shutil.rmtree(staging, ignore_errors=True)
            self.rotate_checkpoints()
        self.accelerator.wait_for_everyone()

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


class ToolEval(TrainerCallback):
    """Every ``eval.tool_eval_every`` steps (and at the end), generate the assistant steps of
    a fixed sample of validation conversations and log tool-call accuracy beside the loss
    (metrics.jsonl, TensorBoard, loss.png). Runs on the main process; others wait."""

    def __init__(self, trainer: Trainer, tokenizer: Any, template: Any,
                 convs: list[Conversation], cfg: Config):
        self.trainer, self.every = trainer, cfg.eval.tool_eval_every
        sample = random.Random(cfg.training.seed).sample(convs, min(len(convs),
                                                                    cfg.eval.tool_eval_samples))
        self.steps = evaluate.stepwise_steps(sample)
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
                rows = evaluate.predict_stepwise(gen, self.steps, self.sampling, self.batch_size,
                                                 numeric_strings=False, progress=None)
            agg = metrics.aggregate([r["scores"] for r in rows])
            self.trainer.log({f"tool_{k}": agg[k] for k in TOOL_METRICS if agg.get(k) is not None})
        self.trainer.accelerator.wait_for_everyone()


TOOL_METRICS = ("decision", "name_accuracy", "exact_match", "arg_f1_micro", "rouge_l")


def read_best(run: RunDir) -> dict[str, Any] | None:
    try:
        return json.loads(run.best_record.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------
# What a person watches: progress bar, metrics.jsonl, TensorBoard, best checkpoint.


class RunLog(TrainerCallback):
    def __init__(self, run: RunDir, best_metric: str):
        self.run, self.best_metric = run, best_metric
        self.bar = None
        self.writer = None
        self.t0 = self.tokens0 = None
        self.started = time.perf_counter()
        self.last_rate: float | None = None
        self.trainer: AgentTrainer | None = None
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


# ---------------------------------------------------------------------------
# The entry point.


def train(cfg: Config, resume: bool = False) -> TrainResult:
    """Fine-tune per ``cfg``; with ``resume``, continue ``cfg.training.output`` from its
    last complete checkpoint."""
    t = cfg.training
    if not t.output:
        raise AgentsftError("no run directory. Fix: pass --output runs/NAME (or set training.output)")
    run = RunDir(Path(t.output))
    if run.root.exists() and not run.root.is_dir():
        raise AgentsftError(f"--output {run.root} is a file. Fix: choose a folder name")
    start = None
    if resume:
        start = run.last_checkpoint()
        say(f"resuming from {start}" if start else f"no complete checkpoint in {run.root} yet; "
            "starting over")
        if is_main():
            clean_for_resume(run, checkpoint_step(start))
    elif run.config.exists():
        raise AgentsftError(f"{run.root} already holds a run. Fix: --resume {run.root} to "
                            f"continue it, or choose another --output")

    if t.adapter:
        use_adapter_base(cfg)
    torch.manual_seed(t.seed)
    quiet_loading()
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    template = get_template(cfg.data.template, tokenizer)
    train_rows, val_rows, val_convs = prepare_data(cfg, tokenizer, template)  # before the model
    limit = context_length(cfg.model.name, cfg.model.trust_remote_code, cfg.model.revision)
    if limit is not None and cfg.data.max_length > limit:
        raise AgentsftError(f"data.max_length={cfg.data.max_length} is above the model's context "
                            f"({limit} tokens). Fix: --set data.max_length={limit} or less")
    device = resolve_device(cfg.model.device)
    trained = sum(ex.n_trained for ex in train_rows)
    say(f"data: {len(train_rows)} training examples ({trained} trained tokens), "
        f"{len(val_rows)} validation; template {template.name}, policy {cfg.data.policy}")

    if device == "cpu":
        keep_freed_memory()
    model = build_model(cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"model: {cfg.model.name} ({cfg.training.method}), {trainable:,} of {total:,} "
        f"parameters trained ({100 * trainable / total:.2f}%)")
    packed, restore = start_packing(model, t.packing, device)
    share = packed and sharing_is_exact(model)
    if share:
        say("batches: packed rows; examples of a batch that begin with the same untrained "
            "tokens (system prompt, tool schemas) hold them once"
            + (", and are batched together (training.group_by_prefix=false: plain random "
               "batches)" if t.group_by_prefix else ""))
    elif packed and t.group_by_prefix:
        say("note: this model's attention cannot see a prefix held once for several examples; "
            "batches keep a plain random order (training.group_by_prefix=false silences this)")
    try:
        args = training_arguments(cfg, run, device, bool(val_rows), packed)
    except ValueError as e:  # e.g. an optimizer name transformers does not know
        raise AgentsftError(f"the training settings were refused: {str(e).splitlines()[0]}. "
                            f"Fix: check training.optimizer and the other training keys") from None
    log = RunLog(run, t.best_metric)
    trainer = AgentTrainer(
        model=model, args=args, train_dataset=Rows(train_rows),
        eval_dataset=Rows(val_rows) if val_rows else None,
        data_collator=PackedCollator(share) if packed else
        PadCollator(tokenizer.pad_token_id, 8 if device.startswith("cuda") else 1),
        callbacks=[log], run=run, keep_last=t.keep_last, best_metric=t.best_metric,
        group_by_prefix=share and t.group_by_prefix)
    log.trainer = trainer
    if cfg.eval.tool_eval_every and val_convs:
        trainer.add_callback(ToolEval(trainer, tokenizer, template, val_convs, cfg))
    trainer.remove_callback(PrinterCallback)  # our RunLog shows and records the logs
    trainer.accelerator.wait_for_everyone()  # every rank has checked the folder before it is used
    if is_main():
        try:
            run.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AgentsftError(f"cannot create the run directory {run.root} ({e.strerror}). "
                                f"Fix: choose another --output") from None
        config_mod.save(cfg, run.config)
    began = time.perf_counter()
    autocast = torch.bfloat16 if args.bf16 else (torch.float16 if args.fp16 else None)
    with fast_adapters(model, autocast), fast_layers(model, autocast):
        result = trainer.train(resume_from_checkpoint=str(start) if start else None)
        if val_rows and not t.eval_every:
            trainer.evaluate()  # eval_every 0: validate once, at the end
    seconds = time.perf_counter() - began
    tokens0 = log.tokens0 or 0  # tokens already seen when this process began (resume)
    # Mixed precision wraps forward() in autocast; callers get the plain model back.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if restore:
        model.set_attn_implementation(restore)
    done = TrainResult(run, model, trainer.state.global_step, seconds,
                       trainer.state.num_input_tokens_seen - tokens0, result.training_loss,
                       log.steady_rate(), tokenizer, template, packed, trainer.computed_tokens)
    if is_main():
        save_outputs(trainer, tokenizer, cfg, template.name, run)
        plot_losses(run)
        say(f"trained {done.steps} steps in {seconds:.0f}s ({done.tokens_per_s:.0f} tokens/s); "
            f"train loss {done.train_loss:.4f}; saved to {run.final}")
    trainer.accelerator.wait_for_everyone()
    return done


def use_adapter_base(cfg: Config) -> None:
    """Continue an adapter on the model it was trained on: its recorded base replaces the
    default model; a different explicit --model is kept, with a note."""
    recorded = adapter_base(adapter_folder(cfg.training.adapter))
    if recorded is None or recorded == cfg.model.name:
        return
    if cfg.model.name == config_mod.DEFAULT_MODEL:
        say(f"continuing on the adapter's base model, {recorded}")
        cfg.model.name = recorded
    else:
        say(f"note: the adapter was trained on {recorded}; continuing it on {cfg.model.name}")


def clean_for_resume(run: RunDir, step: int) -> None:
    """Remove what a killed run leaves behind past its last complete checkpoint."""
    for tmp in run.checkpoints.glob(f".tmp-{CHECKPOINT}*"):  # a checkpoint write that was killed
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in run.root.glob(".*.*"):  # half-written final/, best/, plot, records
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    best = read_best(run)
    if best is not None and (best["step"] > step or not math.isfinite(best["value"])):
        run.best_record.unlink()  # measured after the checkpoint: those steps run again
    trim_metrics(run, step)


def checkpoint_step(path: Path | None) -> int:
    return int(path.name[len(CHECKPOINT):]) if path else 0


def trim_metrics(run: RunDir, step: int) -> None:
    """On resume, forget log lines past the checkpoint: those steps run again."""
    if not run.metrics.exists():
        return
    kept = []
    for line in run.metrics.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
    write_text_atomically(run.metrics, "".join(line + "\n" for line in kept))


def run_info(cfg: Config, template: str) -> dict[str, Any]:
    """Written beside the weights: what chat and eval need to reload exactly this."""
    return {"base_model": cfg.model.name, "revision": cfg.model.revision,
            "trust_remote_code": cfg.model.trust_remote_code, "method": cfg.training.method,
            "quantization_bits": cfg.quantization.bits, "template": template,
            "policy": cfg.data.policy, "max_length": cfg.data.max_length}


def save_outputs(trainer: AgentTrainer, tokenizer: Any, cfg: Config, template: str,
                 run: RunDir) -> None:
    """final/: the trained adapter (or model) with its tokenizer and agentsft.json;
    best/: the same from the best validation checkpoint."""
    info = json.dumps(run_info(cfg, template), indent=2)

    def fill_final(tmp: Path) -> None:
        trainer.model.save_pretrained(tmp)
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
