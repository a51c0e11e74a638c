#!/usr/bin/env bash
# Set up everything on a fresh machine; fast and silent when it is already set up.
#   bash scripts/setup.sh           venv from requirements.txt, `pruning` in editable mode, MNIST verified
#   bash scripts/setup.sh --test    the same, plus headless Chromium for the report's browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv (torch from the local wheel cache takes about a minute)"
  # A package index that drops connections now and then (seen here) costs a retry, not the set-up.
  pip_install() {
    for attempt in 1 2 3; do
      if .venv/bin/python -m pip install -q --retries 10 "$@" 2>&1 | grep -v -e "^WARNING: Location" -e "Retrying"; \
         [ "${PIPESTATUS[0]}" = 0 ]; then
        return 0
      fi
      echo "setup: pip install $* failed (attempt $attempt of 3)"
      sleep 5
    done
    return 0  # the import check below names what is missing
  }
  pip_install --upgrade pip
  pip_install -r requirements.txt
  pip_install --no-deps -e .
  .venv/bin/python -c "import torch, torchvision, pandas, papermill, nbval, pypandoc" \
    || { echo "setup: the install failed; see the pip messages above"; exit 1; }
  echo "$want" > "$stamp"
fi
# Notebooks run on the kernel named python3: make it the venv's own.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pruning)" >/dev/null

.venv/bin/python -m pruning fetch mnist --quiet
# The population step's fused C++ kernels (pruning/kernels.cpp), built once per source, flags and CPU
# into build/kernels/; without a working g++ this prints one line and the step stays in torch.
.venv/bin/python -c "from pruning.population import kernels; kernels.library()"

if [ "${1:-}" = "--test" ]; then
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Chromium and Fashion-MNIST from Debian's packages"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver dataset-fashion-mnist >/dev/null
      apt-get clean  # the downloaded packages: disk that the tests need (CI's disk has been seen full)
    else
      echo "setup: the browser tests need Chromium; install it (Debian: apt-get install chromium chromium-driver dataset-fashion-mnist)"
    fi
  fi
fi
echo "setup: ready (.venv, pruning, data/raw/mnist verified)"
