#!/usr/bin/env bash
# Prepares, on this machine, what a lent GPU machine (the `device` tool: Python 3.12, torch
# 2.11 + CUDA 13, no network) lacks for scripts/gpu_check.sh, in two ignored folders that
# the device call carries:
#   .whl/        wheels: agentsft's floor of transformers and datasets, TRL (for the
#                comparison), liger-kernel, bitsandbytes (only its CUDA 13 libraries: the
#                whole wheel alone is 43 MB of the 64 MB a call may carry), DeepSpeed
#                (built here without compiled ops: it compiles them there, on first use)
#   .gpu-cache/  AGENTSFT_CACHE with the default model's tokenizer (the tests' tokenizer)
# Then: device run with carry [".whl", ".gpu-cache"] and the command `bash scripts/gpu_check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
py=.venv/bin/python
pip() {
  "$py" -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
}
rm -rf .whl && mkdir -p .whl
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do platforms="$platforms --platform $p"; done
# Versions: transformers and datasets at agentsft's floors (scripts/test_floors.sh), which
# take the device's huggingface_hub 1.x; each package's own needs that the device lacks
# (regex: transformers checks its version on import).
pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  -d .whl transformers==5.23.0 datasets==4.2.0 dill==0.4.0 multiprocess==0.70.16 \
  gguf==0.17.1 trl==1.16.0 liger-kernel==0.8.5 bitsandbytes==0.50.2 hjson==3.1.0 \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  nltk==3.10.4 defusedxml==0.7.1 peft==0.21.2 regex==2026.12.2
# Only source distributions on PyPI: built here (pure Python; DeepSpeed's ops are compiled
# on the GPU machine when a run first needs one).
DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation -w .whl deepspeed==0.19.8 rouge-score==0.1.2
# bitsandbytes: the libraries for torch's CUDA 13 only (the device's torch is cu130).
bnb=$(ls .whl/bitsandbytes-*.whl)
(tmp=$(mktemp -d) && cd "$tmp" && unzip -q "$OLDPWD/$bnb" \
  && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*cuda13*' ! -name '*cpu*' -delete \
  && rm "$OLDPWD/$bnb" && zip -q -r "$OLDPWD/$bnb" . && rm -rf "$tmp")
# The default tokenizer, converted from the packaged GGUF, as the device's agentsft cache.
tok=$("$py" -c "from agentsft.hub import default_tokenizer_dir; print(default_tokenizer_dir())")
rm -rf .gpu-cache && mkdir -p .gpu-cache/smollm2-135m-instruct/tokenizer
cp "$tok"/tokenizer* "$tok"/special_tokens_map.json "$tok"/chat_template.jinja \
  .gpu-cache/smollm2-135m-instruct/tokenizer/ 2>/dev/null || true
ls .gpu-cache/smollm2-135m-instruct/tokenizer/tokenizer_config.json >/dev/null
du -ch .whl .gpu-cache | tail -1
