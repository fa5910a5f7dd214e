"""agentsft against TRL's SFTTrainer on the same model, data, LoRA and examples.

    python bench/compare_trl.py                      # 3 alternating rounds, default model
    python bench/compare_trl.py --rounds 1 --examples 16

Both train the default model with LoRA r16 / alpha 32 on all linear layers, batch 4,
learning rate 2e-4, one epoch over the same first N conversations of a tool-calling file.
TRL gets the conversations as the exact text agentsft trains on (hermes rendering), with a
new user's settings: its defaults otherwise (bf16, gradient checkpointing, padded batches,
loss on every token). Each run is its own process (peak memory is per run); runs
alternate agentsft / TRL so that drifts of a shared machine hit both alike.

Printed per run and as medians: real (non-padding) tokens per second over the whole
``train()`` call (the examples' tokens, for both), peak resident memory, and agentsft's
useful FLOP/s (4 x parameters per token the model computed, for LoRA: forward, and the
backward pass through activations; a prompt prefix that examples of a batch share is
computed, and counted, once) as a fraction of the bf16 matrix-product rate measured in
the same invocation. ``--set`` passes config overrides to agentsft (its defaults
otherwise). Needs ``pip install trl``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_throughput import matmul_gflops  # noqa: E402

LORA = {"r": 16, "alpha": 32, "target_modules": "all-linear"}
BATCH, LR = 4, 2e-4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_agentsft(data: Path, out: Path, overrides: list[str] = (), model: str | None = None,
                 method: str = "lora", steps: int = 0) -> dict:
    from agentsft import config
    from agentsft.training import train
    cfg = config.load(overrides=overrides, flags={
        "data.train": [str(data)], "data.val_fraction": 0, "data.max_length": 2048,
        "training.output": str(out), "training.epochs": 1, "training.batch_size": BATCH,
        "training.learning_rate": LR, "training.save_every": 10 ** 6,
        "training.log_every": 10 ** 6, "lora.r": LORA["r"], "lora.alpha": LORA["alpha"],
        "lora.target_modules": LORA["target_modules"], "training.method": method,
        **({"model.name": model} if model else {}),
        **({"training.max_steps": steps} if steps else {})})
    result = train(cfg)
    params = sum(p.numel() for p in result.model.parameters())
    return {"tokens": result.tokens, "seconds": result.seconds, "params": params,
            "steps": result.steps, "computed_tokens": result.computed_tokens}


def run_trl(data: Path, out: Path, model: str | None = None, method: str = "lora",
            steps: int = 0, checkpointing: bool = False) -> dict:
    """TRL's SFTTrainer + PEFT. On CPU: a new user's settings (its defaults). On a GPU: its
    best for the job (bf16, gradient checkpointing only with ``checkpointing``, as agentsft
    was asked for it, padding-free where FlashAttention is installed, which its
    padding-free batches need)."""
    import importlib.util

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from agentsft.data.readers import read_conversations
    from agentsft.data.templates import get_template
    from agentsft.hub import default_model_dir, load_tokenizer, quiet_loading
    quiet_loading()
    tokenizer = load_tokenizer(model) if model else load_tokenizer()
    template = get_template("hermes", tokenizer)
    texts = [template.render(c).text for c in read_conversations(data).conversations]
    cuda = torch.cuda.is_available()
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    loading = {"dtype": torch.bfloat16, "attn_implementation": "flash_attention_2" if flash else "sdpa"} if cuda else {}
    if method == "qlora":
        from transformers import BitsAndBytesConfig
        loading["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model or default_model_dir(), **loading)
    best = {"bf16": True, "gradient_checkpointing": checkpointing, "padding_free": flash} if cuda else {}
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=BATCH, learning_rate=LR,
                     num_train_epochs=1, report_to="none", save_strategy="no",
                     disable_tqdm=True, use_cpu=not cuda, max_steps=steps or -1, **best)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LORA["target_modules"],
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=tokenizer, peft_config=lora)

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_train_end(self, *a, **k):
            self.t1 = time.perf_counter()

    clock = Clock()
    trainer.add_callback(clock)
    trainer.train()
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # after TRL's processing
    return {"tokens": tokens, "seconds": clock.t1 - clock.t0, "steps": trainer.state.global_step,
            "settings": {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                         "packing": args.packing, "padding_free": args.padding_free,
                         "max_length": args.max_length}}


def worker(kind: str, data: Path, overrides: list[str], model: str | None, method: str,
           steps: int) -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        row = (run_agentsft(data, out, overrides, model, method, steps) if kind == "agentsft"
               else run_trl(data, out, model, method, steps,
                            checkpointing="training.gradient_checkpointing=true" in overrides))
    row.update(kind=kind, tokens_per_s=row["tokens"] / row["seconds"], peak_rss_mb=peak_rss_mb())
    if torch.cuda.is_available():
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
    print("RESULT " + json.dumps(row), flush=True)


def launch(kind: str, data: Path, overrides: list[str], model: str | None = None,
           method: str = "lora", steps: int = 0) -> dict:
    """One run in its own process (peak memory is per run)."""
    sets = [a for item in overrides for a in ("--set", item)]
    more = ["--model", model] if model else []
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--data", str(data), *sets,
                           *more, "--method", method, "--steps", str(steps)],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"the {kind} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(HERE.parent / "examples" / "tools.jsonl"))
    p.add_argument("--examples", type=int, default=32, help="first N conversations (default 32)")
    p.add_argument("--rounds", type=int, default=3, help="alternating agentsft/TRL pairs")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                   help="an agentsft config override, e.g. --set training.group_by_prefix=false")
    p.add_argument("--worker", choices=("agentsft", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)  # bench/gpu_compare.py's model folders
    p.add_argument("--method", default="lora", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.data), args.set, args.model, args.method, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "subset.jsonl"
        lines = [line for line in Path(args.data).read_text().splitlines() if line.strip()]
        subset.write_text("\n".join(lines[:args.examples]) + "\n")
        peak = matmul_gflops(torch.bfloat16)
        runs: dict[str, list[dict]] = {"agentsft": [], "trl": []}
        for r in range(args.rounds):
            for kind in ("agentsft", "trl"):
                row = launch(kind, subset, args.set)
                runs[kind].append(row)
                computed = (f" ({row['computed_tokens']} computed)"
                            if row.get("computed_tokens", row["tokens"]) != row["tokens"] else "")
                print(f"round {r + 1} {kind:8s} {row['tokens_per_s']:7.1f} tokens/s  "
                      f"{row['seconds']:6.1f} s  {row['tokens']} tokens{computed}  "
                      f"peak {row['peak_rss_mb'] / 1024:.2f} GB", flush=True)
        peak = max(peak, matmul_gflops(torch.bfloat16))
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    params = runs["agentsft"][0]["params"]
    # FLOPs the model really ran: a prefix several examples share is computed once.
    computed = statistics.median(r["computed_tokens"] / r["seconds"] for r in runs["agentsft"])
    useful = computed * 4 * params / 1e9
    summary = {
        "examples": args.examples, "rounds": args.rounds, "data": args.data,
        "agentsft_overrides": args.set,
        "agentsft_tokens_per_s": round(med["agentsft"], 1), "trl_tokens_per_s": round(med["trl"], 1),
        "agentsft_computed_tokens_per_s": round(computed, 1),
        "ratio": round(med["agentsft"] / med["trl"], 2),
        "agentsft_peak_gb": round(max(r["peak_rss_mb"] for r in runs["agentsft"]) / 1024, 2),
        "trl_peak_gb": round(max(r["peak_rss_mb"] for r in runs["trl"]) / 1024, 2),
        "bf16_matmul_gflops": round(peak, 1), "agentsft_useful_gflops": round(useful, 1),
        "fraction_of_peak": round(useful / peak, 3), "trl_settings": runs["trl"][0]["settings"],
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
