"""Numeric code paths: which kernels BLAS, oneDNN, ATen and the fused kernels pick, and how to pin them.

Float rounding depends on the kernels a library picks for the CPU it runs on (MKL's sgemm, oneDNN's
convolutions, ATen's vectorised element-wise ops, ``-march=native`` code) and on the thread count; training
amplifies it. ``PRUNING_NUMERICS=pinned`` (an environment variable, read when a process starts, which
worker processes inherit) pins each library to its AVX2 code path, which every x86-64 CPU of the last
decade has, and builds the fused kernels for ``x86-64-v3`` instead of the local CPU:

    MKL_CBWR=AVX2  ONEDNN_MAX_CPU_ISA=AVX2  ATEN_CPU_CAPABILITY=avx2  g++ -march=x86-64-v3

What this buys and costs is measured in ``docs/benchmarks.md`` ("Reproducibility across machines"); the
default stays ``native``. :func:`pin` must run before torch is imported (``python -m pruning`` calls it
first); :func:`describe` is what ``experiment.json`` records.
"""
from __future__ import annotations

import os

MODES = ("native", "pinned")
PINNED_ENV = {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
KERNEL_ARCH = {"native": "-march=native", "pinned": "-march=x86-64-v3"}


def mode() -> str:
    value = os.environ.get("PRUNING_NUMERICS", "native") or "native"
    if value not in MODES:
        from .errors import UserError
        raise UserError(f"PRUNING_NUMERICS={value} is not a numerics mode; use one of {', '.join(MODES)}")
    return value


def pin() -> None:
    """In pinned mode, set the libraries' variables (those the user set stay); call before importing torch."""
    if mode() == "pinned":
        for key, value in PINNED_ENV.items():
            os.environ.setdefault(key, value)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def describe() -> dict:
    """The numeric settings in effect: the mode, every variable that picks a code path, the kernels' -march."""
    keys = ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    return {"mode": mode(), "kernel_arch": KERNEL_ARCH[mode()],
            "environment": {k: os.environ[k] for k in keys if k in os.environ}}
