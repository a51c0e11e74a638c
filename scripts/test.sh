#!/usr/bin/env bash
# Every test: set up (Chromium included), produce the smoke results, notebooks and report that the notebook
# and report tests check (skipped when already there), then pytest over tests/ and nbval over notebooks/.
# nbval compares the notebooks' checked cells with the values training produces masked
# (notebooks/nbval_sanitize.cfg): they move with a CPU's float rounding; tests/test_notebook_numbers.py checks them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m pruning all configs/smoke.yaml --quiet
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with "$PWD/notebooks/nbval_sanitize.cfg" -p no:cacheprovider "$@"
