"""The population step's fused conv1 kernels (``kernels.cpp``): built once per machine, loaded with ctypes.

conv1 + 2x2 max pooling + ReLU for the filters of every member on one shared batch, forward and
backward, without ever storing the (n*26*26, M*6) conv1 output that the torch path writes and reads
back four times (``benchmarks/step_variants.py`` times both). Used by ``population`` on the CPU.

The library is compiled with the system's C++ compiler (``$CXX``, else ``g++``, else ``c++``) into
``build/kernels/`` under a name that hashes the source, the flags and this CPU's instruction sets, so
a changed source or another machine gets its own build; several processes building at once each write a
file of their own and rename it into place. Without a compiler :func:`library` returns None and the
population step stays in torch (``PRUNING_KERNELS=torch`` asks for that path on purpose). The two
paths agree up to float rounding; each is deterministic, so resumes stay bit-identical on either.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys

import torch

from . import paths

SOURCE = paths.PACKAGE / "kernels.cpp"
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c++17"]
LANES = 16  # the kernels' vector width in floats: filter columns are padded to a multiple of it
_loaded: dict[str, object] = {}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def _build(target, compiler: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    done = subprocess.run([compiler, *FLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")
    os.replace(tmp, target)


def library():
    """The loaded kernels, or None (no compiler, a failed build, or ``PRUNING_KERNELS=torch``)."""
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = None
    compiler = _compiler()
    if os.environ.get("PRUNING_KERNELS", "") != "torch" and compiler:
        key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, *FLAGS, platform.machine(),
                                         _cpu_flags()]).encode()).hexdigest()[:16]
        target = paths.BUILD / "kernels" / f"kernels-{key}.so"
        try:
            if not target.exists():
                _build(target, compiler)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"pruning: the fused conv1 kernels did not build ({exc}); the population step stays in torch",
                  file=sys.stderr)
            lib = None
    if lib is not None:
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.conv1_pool_forward.argtypes = [ptr] * 4 + [i64] * 6
        lib.conv1_pool_backward.argtypes = [ptr] * 6 + [i64] * 6
    _loaded["lib"] = lib
    return lib


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels can take this batch: float32 on the CPU, and the library is there."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and library() is not None


def describe() -> str:
    """For experiment.json: which conv1 path a population step on the CPU takes on this machine."""
    return "fused C++ kernels (pruning/kernels.cpp)" if library() is not None else "torch"


def padded_filters(filters: torch.Tensor) -> torch.Tensor:
    """(Cout, K) filters with their bias column -> (K, Cp), transposed and zero-padded as the kernels read them."""
    cout, k = filters.shape
    out = filters.new_zeros(k, -(-cout // LANES) * LANES)
    out[:, :cout] = filters.t()
    return out


def conv1_pool_forward(x: torch.Tensor, ft: torch.Tensor, cout: int, a: torch.Tensor, idx: torch.Tensor) -> None:
    """Fill ``a`` (n, PH, PW, cout) with relu(max_pool2d(conv1(x))) and ``idx`` (uint8, same shape) with the winners."""
    n, c, h, w = x.shape
    x = x.contiguous()
    library().conv1_pool_forward(x.data_ptr(), ft.data_ptr(), a.data_ptr(), idx.data_ptr(), n, c, h, w, cout,
                                 ft.shape[1])


def conv1_pool_backward(x: torch.Tensor, idx: torch.Tensor, a: torch.Tensor, ga: torch.Tensor, cout: int,
                        g: torch.Tensor, scratch: torch.Tensor) -> None:
    """Fill ``g`` (K, Cp) with the gradients of the padded filters (bias row last), given ``ga`` = d loss / d ``a``."""
    n, c, h, w = x.shape
    x, ga = x.contiguous(), ga.contiguous()
    library().conv1_pool_backward(x.data_ptr(), idx.data_ptr(), a.data_ptr(), ga.data_ptr(), g.data_ptr(),
                                  scratch.data_ptr(), n, c, h, w, cout, g.shape[1])
