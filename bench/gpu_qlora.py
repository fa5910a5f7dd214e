"""QLoRA (4-bit) on a 7B-shaped Llama on one CUDA GPU: seconds and peak GPU memory.

    python bench/gpu_qlora.py                       # 200 steps, batch 4, Llama-2-7B shape
    python bench/gpu_qlora.py --steps 20 --layers 4 # a quick check

Random weights serve for speed and memory: the work per token does not depend on
the values. The model is built on the GPU in bf16 with the default model's
tokenizer (vocabulary 49,152; Llama-2's is 32,000), saved once under ``--work``,
then trained through agentsft's own QLoRA path (``train()`` with ``training.method:
qlora``: NF4 with double quantization, bf16 compute, LoRA r16 / alpha 32 on every
linear layer). The data are single-turn chats whose lengths follow a log-normal
with median ``--median`` tokens and a tail cut at ``--max-length``, about like an
instruction data set. The reference figures (872 s and 9.9 GB for gemma-7b QLoRA,
200 steps of batch 4) are printed beside ours; they come from another model and
another GPU, so the comparison is rough.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from agentsft import config
from agentsft.hub import load_tokenizer
from agentsft.training import train

REFERENCE = {"seconds": 872, "peak_gb": 9.9}
WORDS = ("the agent calls a tool when the user asks for weather flights prices or numbers "
         "then reads the result and answers briefly in plain words with units and sources "
         "model data train step loss batch token length memory speed city river mountain "
         "kitchen recipe garden winter summer letter market station museum library").split()


LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
             "num_key_value_heads": 32, "tie_word_embeddings": False}


def build_model(folder: Path, tokenizer, layers: int, shape: dict = LLAMA2_7B,
                device: str = "cuda") -> float:
    """A Llama-shaped model (Llama-2-7B's width, MLP and heads by default) with random bf16
    weights, saved to ``folder``; returns the seconds it took."""
    from transformers import LlamaConfig, LlamaForCausalLM
    began = time.perf_counter()
    cfg = LlamaConfig(vocab_size=len(tokenizer), num_hidden_layers=layers,
                      max_position_embeddings=4096, rms_norm_eps=1e-5,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, **shape)
    torch.manual_seed(0)
    with torch.device(device):  # initialising 7B weights on the CPU takes minutes
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return time.perf_counter() - began


def text_of(tokens: int, rng: random.Random, per_word: float) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, round(tokens / per_word))))


def write_data(path: Path, tokenizer, n: int, median: int, max_length: int, seed: int = 0
               ) -> list[int]:
    """``n`` user/assistant chats, lengths log-normal around ``median`` tokens (sigma 0.75:
    about 1 in 60 reaches ``max_length`` and is cut there); returns the lengths asked for."""
    rng = random.Random(seed)
    sample = text_of(2000, rng, 1.0)
    per_word = len(tokenizer(sample)["input_ids"]) / len(sample.split())
    lengths = [min(max_length, max(32, round(rng.lognormvariate(0, 0.75) * median)))
               for _ in range(n)]
    with path.open("w") as f:
        for length in lengths:
            body = length - 32  # the chat template's own tokens (its default system turn)
            f.write(json.dumps({"messages": [
                {"role": "user", "content": text_of(0.4 * body, rng, per_word)},
                {"role": "assistant", "content": text_of(0.6 * body, rng, per_word)}]}) + "\n")
    return lengths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--layers", type=int, default=32, help="32 for the 7B shape")
    p.add_argument("--median", type=int, default=400, help="median example length in tokens")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--checkpointing", choices=("on", "off"), default="on",
                   help="gradient checkpointing (default on, as QLoRA recipes use it)")
    p.add_argument("--packing", choices=("auto", "on", "off"), default="auto",
                   help="training.packing (auto: padded on a GPU without FlashAttention)")
    p.add_argument("--work", default="/tmp/agentsft-gpu-qlora",
                   help="folder for the model and data (reused when present)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_qlora.py: needs a CUDA GPU; torch sees none", file=sys.stderr)
        return 2

    work = Path(args.work)
    model_dir = work / f"llama7b-shape-{args.layers}l"
    tokenizer = load_tokenizer()
    build_s = None
    if not (model_dir / "config.json").is_file():
        build_s = build_model(model_dir, tokenizer, args.layers)
    data = work / f"chats-{args.median}-{args.max_length}.jsonl"
    lengths = write_data(data, tokenizer, args.steps * args.batch_size, args.median,
                         args.max_length)

    began = time.perf_counter()
    cfg = config.load(flags={
        "model.name": str(model_dir), "data.train": [str(data)], "data.val_fraction": 0,
        "data.max_length": args.max_length, "data.truncation": "truncate",
        "training.output": str(work / f"run-{time.strftime('%H%M%S')}"),
        "training.method": "qlora", "training.max_steps": args.steps,
        "training.batch_size": args.batch_size, "training.eval_every": 0,
        "training.save_every": 10 ** 6, "training.log_every": 20,
        "training.gradient_checkpointing": args.checkpointing == "on",
        "training.packing": {"on": True, "off": False}.get(args.packing, "auto")})
    result = train(cfg)
    total_s = time.perf_counter() - began
    row = {
        "device": torch.cuda.get_device_name(), "layers": args.layers, "steps": result.steps,
        "batch_size": args.batch_size, "checkpointing": args.checkpointing,
        "packing": args.packing, "batches": "packed" if result.packed else "padded",
        "checkpointing_active": bool(getattr(result.model.get_base_model(),
                                             "is_gradient_checkpointing", False)),
        "lengths": {"median": statistics.median(lengths), "max": max(lengths),
                    "mean": round(statistics.mean(lengths), 1)},
        "train_seconds": round(result.seconds, 1),
        "seconds_with_loading": round(total_s, 1),
        "tokens": result.tokens, "tokens_per_s": round(result.tokens_per_s, 1),
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2 ** 30, 2),
        "model_build_seconds": round(build_s, 1) if build_s else "reused",
        "reference": REFERENCE,
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
