#!/usr/bin/env bash
# Every test: set up (Chromium included), produce the smoke results, notebooks and report that the notebook
# and report tests check (skipped when already there), then pytest over tests/ and nbval over notebooks/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m pruning all configs/smoke.yaml --quiet
exec .venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider "$@"
