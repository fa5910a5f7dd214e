#!/usr/bin/env bash
# Sets up .venv (if needed), checks the import contracts and runs the whole test suite,
# slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The layering rules (pyproject.toml's import-linter contracts): an upward import, a
# circle, or a reach past accel's entry points fails here before any test runs.
.venv/bin/lint-imports --no-cache
# The slowest tests are listed at the end: what to look at when the run grows long.
exec .venv/bin/python -m pytest --durations=20 "$@"
