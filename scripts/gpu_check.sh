#!/usr/bin/env bash
# The GPU checks, as one prepared command for a lent GPU machine (the `device` tool), after
# scripts/gpu_wheels.sh has filled .whl/ and .gpu-cache/ here:
#   device run, carry [".whl", ".gpu-cache"], command "bash scripts/gpu_check.sh tests"
#   then the same with "bench"      (each part fits one 10-minute call)
# tests: every `gpu`-marked test (the varlen and Liger paths against the plain ones, QLoRA on
#        CUDA, ZeRO-2/3 and FSDP2 adapters saved whole and merged, ZeRO-3 resume)
# bench: bench/gpu_compare.py (agentsft against TRL + PEFT, LoRA 1B-shaped and QLoRA
#        7B-shaped); BENCH_ONLY=lora-1b or qlora-7b runs one
# Logs go to $OUT (what the device tool brings back), else /tmp/gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:-tests}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-} AGENTSFT_CACHE=$PWD/.gpu-cache \
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 - <<'PY'
import importlib
for name in ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "bitsandbytes",
             "deepspeed", "liger_kernel", "agentsft"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), m.__file__)
    except Exception as e:  # print what failed and go on: the tests name what they need
        print(name, "FAILED:", type(e).__name__, str(e).splitlines()[0][:200])
PY
} 2>&1 | tee "$out/env.txt"
case "$part" in
  tests)
    timeout "${TESTS_S:-420}" python3 -m pytest -q -p no:cacheprovider -m gpu --durations=10 \
      tests/test_gpu_paths.py tests/test_train.py tests/test_launch.py 2>&1 | tee "$out/gpu_tests.log"
    ;;
  bench)
    timeout "${BENCH_S:-540}" python3 bench/gpu_compare.py ${BENCH_ONLY:+--only "$BENCH_ONLY"} \
      2>&1 | tee "$out/gpu_compare.log"
    ;;
  *) echo "gpu_check.sh: unknown part '$part'. Fix: tests or bench" >&2; exit 2 ;;
esac
