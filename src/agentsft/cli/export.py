"""``agentsft export``: what a run trained, as a model other engines load."""

from __future__ import annotations

import argparse
import time

DTYPES = {"hf": ("bfloat16", "float16", "float32"), "gguf": ("f16", "bf16", "q8_0"),
          "ollama": ("f16", "bf16", "q8_0")}
SAME = {"bf16": "bfloat16", "f16": "float16", "fp16": "float16", "fp32": "float32", "f32": "float32"}
"""Spellings of one dtype; each form takes its own."""


def add(verbs) -> None:
    p = verbs.add_parser(
        "export", help="write a run as a merged model that carries its own chat template",
        description="Merge a run's adapter into its base (float32 sum, rounded once) and write it\n"
                    "for another engine, with the run's agent template as its chat template\n"
                    "(rendering exactly what training saw) and a model card.\n\n"
                    "  hf      a transformers folder: safetensors, the tokenizer, chat_template.jinja,\n"
                    "          a generation config that stops at the template's end of turn\n"
                    "          (vLLM, TGI, transformers)\n"
                    "  gguf    OUT/model.gguf for llama.cpp, written in Python (Llama-architecture\n"
                    "          models, Mistral without a sliding window, Qwen2, Qwen3)\n"
                    "  ollama  the GGUF and a Modelfile whose TEMPLATE renders plain chat as\n"
                    "          training did",
        epilog="examples:\n"
               "  agentsft export runs/demo/run -o exports/marlo\n"
               "  agentsft export runs/demo/run -o exports/marlo-gguf --to gguf --dtype q8_0\n"
               "  agentsft export runs/demo/run -o exports/marlo-ollama --to ollama --force\n"
               "then: vllm serve exports/marlo --enable-auto-tool-choice --tool-call-parser hermes\n"
               "      llama-server -m exports/marlo-gguf/model.gguf --jinja\n"
               "      ollama create marlo -f exports/marlo-ollama/Modelfile",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR", help="a training run (or its final/ folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder to write")
    p.add_argument("--to", default="hf", choices=tuple(DTYPES),
                   help="hf (default), gguf or ollama")
    p.add_argument("--dtype", metavar="DTYPE",
                   help="hf: bfloat16 (default), float16, float32; gguf and ollama: f16 (default), "
                        "bf16, q8_0")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def run(args) -> int:
    from agentsft.errors import AgentsftError
    from agentsft.hub import say
    allowed = DTYPES[args.to]
    dtype = args.dtype or allowed[0]
    dtype = next((d for d in allowed if SAME.get(d, d) == SAME.get(dtype, dtype)), None)
    if dtype is None:
        raise AgentsftError(f"--dtype {args.dtype} is not one of {', '.join(allowed)} for --to {args.to}")
    start = time.perf_counter()
    if args.to == "hf":
        from agentsft.export.hf import export_hf
        out = export_hf(args.run, args.output, dtype, args.force)
    else:
        from agentsft.export.gguf import export_gguf
        out = export_gguf(args.run, args.output, dtype, args.force, ollama=args.to == "ollama")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    say(f"exported {args.run} to {out} as {args.to} {dtype} ({size / 1e6:.1f} MB, "
        f"{time.perf_counter() - start:.1f} s)")
    return 0
