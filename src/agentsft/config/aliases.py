"""The names Hugging Face's own configs give our options (``TrainingArguments``, PEFT's
``LoraConfig``, ``BitsAndBytesConfig``): people type them out of habit, and the
agent-framework layout uses them. ``None``: set another way (:data:`SET_OTHERWISE`)."""

from __future__ import annotations

AF_LORA = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "bias": "bias",
           "target_modules": "target_modules", "task_type": None}
AF_TRAINING = {
    "num_train_epochs": "epochs", "max_steps": "max_steps",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation", "learning_rate": "learning_rate",
    "lr_scheduler_type": "scheduler", "warmup_ratio": "warmup_ratio", "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
    "gradient_checkpointing": "gradient_checkpointing", "optim": "optimizer", "seed": "seed",
    "logging_steps": "log_every", "eval_steps": "eval_every", "save_steps": "save_every",
    "save_total_limit": "keep_last", "output_dir": "output", "bf16": None, "fp16": None,
    "per_device_eval_batch_size": None,
}
AF_BNB = {"load_in_4bit": None, "load_in_8bit": None, "bnb_4bit_use_double_quant": "double_quant",
          "bnb_4bit_quant_type": "quant_type", "bnb_4bit_compute_dtype": "compute_dtype"}

ALIASES: dict[str, dict[str, str | None]] = {"training": AF_TRAINING, "lora": AF_LORA,
                                             "quantization": AF_BNB}
"""Per option group: Hugging Face name -> ours."""
SET_OTHERWISE = {
    "training.bf16": "use training.precision=bf16", "training.fp16": "use training.precision=fp16",
    "training.per_device_eval_batch_size": "use eval.batch_size",
    "lora.task_type": "leave it out (agentsft trains causal LMs)",
    "quantization.load_in_4bit": "use quantization.bits=4 (or --method qlora)",
    "quantization.load_in_8bit": "use quantization.bits=8",
}
"""Hugging Face names with no one-to-one key here, and what to write instead."""
