"""Numeric code paths: which kernels BLAS, oneDNN and ATen pick for this CPU, and how to pin them.

Float rounding depends on the kernels a library picks for the CPU it runs on (MKL's sgemm, oneDNN's
convolutions, ATen's vectorised element-wise ops and reductions) and on the thread count; training
amplifies it. ``PRUNING_NUMERICS=pinned`` (an environment variable, read when a process starts, which
worker processes inherit) pins each library to its AVX2 code path, which every x86-64 CPU of the last
decade has:

    MKL_CBWR=AVX2  ONEDNN_MAX_CPU_ISA=AVX2  ATEN_CPU_CAPABILITY=avx2

The fused C++ kernels are not pinned: they are built ``-march=native``, and their AVX-512 and AVX2 builds do
not give the same bits (the whole-member sparse kernel sums in another order: 51 tensors differed in one
comparison). An early probe of the dense kernels alone, built for x86-64-v3 (AVX2) on an AVX-512 CPU, gave the
same bits on 10 training steps and ran 9x slower before the AVX2 path was written by hand. Measured
(``benchmarks/numerics.py``, ``docs/benchmarks.md``): pinned costs about 9% of the population step, and it
changes the bits (a pinned run is reproducible against other pinned runs, not against native ones); that it
makes two different CPUs agree bit for bit is not verified (one CPU model was at hand), so the default stays
``native``. :func:`pin` must run before torch is imported (``python -m pruning`` calls it first);
:func:`describe` is what ``experiment.json`` records.
"""
from __future__ import annotations

import os

MODES = ("native", "pinned")
PINNED_ENV = {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


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


def cpuinfo_line(*prefixes: str) -> str:
    """The first line of /proc/cpuinfo that starts with one of ``prefixes``, as it is; "" where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(prefixes)), "")
    except OSError:
        return ""


def cpu_model() -> str:
    return cpuinfo_line("model name").partition(":")[2].strip()


def describe() -> dict:
    """The numeric settings in effect: the mode and every variable that picks a code path or a thread count."""
    keys = ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
            "OMP_WAIT_POLICY")
    return {"mode": mode(), "environment": {k: os.environ[k] for k in keys if k in os.environ}}
