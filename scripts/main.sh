#!/usr/bin/env bash
# The main job: set up, run the experiments of a config (default: the small smoke profile), execute the
# notebooks with papermill, render the paper and the poster. Finished runs and unchanged notebooks are skipped.
#   bash scripts/main.sh [configs/NAME.yaml] [extra args for `python -m pruning all`]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pruning all "${@:-configs/smoke.yaml}"
