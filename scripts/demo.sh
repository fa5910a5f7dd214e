#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/agentsft data check examples/*.jsonl
exec .venv/bin/agentsft data preview examples/tools.jsonl -n 2 "$@"
