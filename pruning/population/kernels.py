"""The population step's fused conv kernels (``kernels.cpp``): built once per machine, loaded with ctypes.

Both LeNet conv blocks (3x3 conv, 2x2 max pooling, ReLU) for every member on one shared batch, forward
and backward, without ever storing a conv output: only the pooled values and which window position
won (``lenet_convs.Fused`` calls them; ``benchmarks/step_variants.py`` times them against the torch path).
Each wrapper below checks shapes, dtypes and contiguity before handing raw pointers to C++.

The library is compiled with the system's C++ compiler (``$CXX``, else ``g++``, else ``c++``) into
``build/kernels/`` under a name that hashes the source, the flags and this CPU's instruction sets, so
a changed source or another machine gets its own build; several processes building at once each write a
file of their own and rename it into place. Without a compiler :func:`library` returns None and the
population step stays in torch (``PRUNING_KERNELS=torch`` asks for that path on purpose;
``PRUNING_KERNELS=dense`` keeps the fused kernels but no sparse path, the step before issue 19, for measuring it
and for replicates). The paths agree up to float rounding; each is deterministic, so resumes stay bit-identical.

The sparse formats that need only these wrappers, conv1's live filters and the linear layers' surviving rows, are
in ``sparse``.

**conv2 over its surviving weights** (:class:`Conv2Taps`, issue 19): per member and output channel, the list of
taps (input channel, ky, kx) its mask keeps. The dense kernel puts the 16 output channels in the SIMD lanes, so a
pruned weight saves nothing there; the tap kernels put 16 images in the lanes instead, and each surviving tap
adds one shifted input row to a conv row kept in registers, so the work follows the surviving weights and a
pruned filter costs only its bias, for unstructured and structured masks alike. Why this format: it keeps the
dense kernel's order of operations in the forward pass (bias first, then the taps in (ky, kx, ci) order, one
multiply-add each), so a member gets the same pooled values and winners bit for bit on either path wherever its
inputs are finite (skipping a pruned tap skips adding an exact 0). Used at <= 35% density, measured
(``population.SPARSE_DENSITY``); the fixed cost is moving each member's inputs and input gradient between the two
layouts (with AVX-512 the inputs by gathers), and the inputs moved in the forward pass are kept for the backward.

**The SGD update over surviving weights** (:func:`masked_sgd`): one pass instead of multiplying every gradient by
its mask and then updating in torch, blocks of 64 weights whose mask is all 0 skipped, the same roundings as
torch's update (so the same bits); 1.7x faster at M=18 and any density, measured in ``kernels.cpp``.

**Whole members** (``member_step``, called by ``members.Members``): a sparse member's whole step in one call, the
batch in the SIMD lanes from input to logits (see ``members``).

**Without AVX-512** (AVX2 machines such as an AMD EPYC Milan) the kernels' 16-lane vectors are two 8-lane halves
(``kernels.cpp``): GCC turned 16-lane comparisons and selects into scalar code there, and the step ran 3-6x slower.

Each member is computed by one thread in a fixed order: its bits depend on its own mask and values only, not on
the thread count, the other members, or the path they take.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from ..core import numerics, paths
from ..core.atomic import replacing

SOURCE = Path(__file__).with_name("kernels.cpp")
# Read once, at import: the library built is always the source these wrappers were written for, even when
# kernels.cpp is edited while an experiment runs (its workers build on first use).
SOURCE_TEXT = SOURCE.read_text()
# -march=native in every numerics mode: built for x86-64-v3 the kernels gave the same bits 9x slower (core/numerics.py)
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c++17"]
LANES = 16  # the kernels' vector width in floats: filter columns are padded to a multiple of it
_loaded: dict[str, object] = {}


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def _build(target, compiler: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = target.with_name(f"{target.stem}.{os.getpid()}.cpp")
    source.write_text(SOURCE_TEXT)
    with replacing(target) as tmp:
        try:
            done = subprocess.run([compiler, *FLAGS, "-o", str(tmp), str(source)], capture_output=True, text=True,
                                  timeout=300)
        finally:
            source.unlink(missing_ok=True)
        if done.returncode != 0:
            raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")


def library():
    """The loaded kernels, or None (no compiler, a failed build, or ``PRUNING_KERNELS=torch``)."""
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = None
    compiler = _compiler()
    if os.environ.get("PRUNING_KERNELS", "") != "torch" and compiler:
        key = hashlib.sha256("\0".join([SOURCE_TEXT, compiler, *FLAGS, platform.machine(),
                                         numerics.cpuinfo_line("flags", "Features")]).encode()).hexdigest()[:16]
        target = paths.BUILD / "kernels" / f"kernels-{key}.so"
        try:
            if not target.exists():
                _build(target, compiler)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"pruning: the fused conv kernels did not build ({exc}); the population step stays in torch",
                  file=sys.stderr)
    if lib is not None:
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.conv1_pool_forward.argtypes = [ptr] * 4 + [i64] * 6
        lib.conv1_pool_backward.argtypes = [ptr] * 5 + [i64] * 6
        lib.conv2_pool_forward.argtypes = [ptr] * 8 + [i64] * 7
        lib.conv2_pool_backward.argtypes = [ptr] * 12 + [i64] * 7
        lib.linear_sparse_forward.argtypes = [ptr] * 7 + [i64] * 5
        lib.linear_sparse_backward.argtypes = [ptr] * 8 + [i64] * 5
        lib.conv1_live_forward.argtypes = [ptr] * 6 + [i64] * 7
        lib.conv1_live_backward.argtypes = [ptr] * 7 + [i64] * 7
        lib.masked_sgd.argtypes = [ptr] * 4 + [i64] + [ctypes.c_float] * 3 + [i64] * 2
        lib.member_step.argtypes = [ptr] * 2 + [i64] + [ptr] * 11 + [i64] + [ctypes.c_float] * 3 + [i64] * 2
        lib.member_logits.argtypes = [ptr, i64] + [ptr] * 7 + [i64] * 2
    _loaded["lib"] = lib
    return lib


def sparse_paths() -> bool:
    """Whether a population may take the sparse paths (``PRUNING_KERNELS=dense`` turns them off)."""
    return os.environ.get("PRUNING_KERNELS", "") != "dense"


def threads() -> int:
    """How many threads a kernel call uses: torch's intra-op count (1 in the CPU worker processes). The kernels'
    results do not depend on it: each thread writes its own outputs and every sum keeps its order."""
    return torch.get_num_threads()


def padded_filters(filters: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(Cout, K) filters with their bias column -> (K, Cp), transposed and zero-padded as the kernels read them.
    ``out``: a buffer of that shape from an earlier call, whose padding columns are still zero, refilled in place."""
    cout, k = filters.shape
    if out is None:
        out = filters.new_zeros(k, -(-cout // LANES) * LANES)
    out[:, :cout] = filters.t()
    return out


def pointers(*tensors: torch.Tensor) -> list[int]:
    """Raw pointers for the C++ side, which reads every tensor as a dense CPU array of its documented shape."""
    for t in tensors:
        if t.device.type != "cpu" or not t.is_contiguous() or t.dtype not in (torch.float32, torch.uint8, torch.int32,
                                                                               torch.int64):
            raise ValueError(f"the fused kernels take contiguous float32/uint8/int CPU tensors, got {t.dtype} "
                             f"{tuple(t.shape)} on {t.device} (contiguous: {t.is_contiguous()})")
    return [t.data_ptr() for t in tensors]


def conv1_pool_forward(x: torch.Tensor, ft: torch.Tensor, a: torch.Tensor, idx: torch.Tensor) -> None:
    """Fill ``a`` (n, PH, PW, Cp) with relu(max_pool2d(conv1(x))) and ``idx`` (uint8, same shape) with the
    winning window positions; ``ft`` (C*9 + 1, Cp) from :func:`padded_filters` (padding channels come out 0)."""
    n, c, h, w = x.shape
    cp = ft.shape[1]
    if a.shape != (n, (h - 2) // 2, (w - 2) // 2, cp) or idx.shape != a.shape or ft.shape[0] != c * 9 + 1 \
            or cp % LANES:
        raise ValueError("conv1_pool_forward: shapes do not match")
    library().conv1_pool_forward(*pointers(x, ft, a, idx), n, c, h, w, cp, threads())


def conv1_pool_backward(x: torch.Tensor, idx: torch.Tensor, a: torch.Tensor, ga: torch.Tensor,
                        g: torch.Tensor) -> None:
    """Fill ``g`` (C*9 + 1, Cp) with the gradients of the padded filters (bias row last), given ``ga``, the
    gradient of ``a`` (ReLU's backward is applied in the kernel)."""
    n, c, h, w = x.shape
    cp = a.shape[-1]
    if ga.shape != a.shape or idx.shape != a.shape or g.shape != (c * 9 + 1, cp) or c * 9 + 1 > 64:
        raise ValueError("conv1_pool_backward: shapes do not match (or more than 7 input channels)")
    library().conv1_pool_backward(*pointers(x, idx, a, ga, g), n, c, h, w, cp, threads())


def conv2_pool_forward(a1: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, a2: torch.Tensor,
                       idx: torch.Tensor, taps: "Conv2Taps | None" = None, cache: torch.Tensor | None = None) -> None:
    """Per member, relu(max_pool2d(conv2(a1) + bias)) into ``a2`` (M, n, 16*PH*PW) and the winners (or 4 where ReLU
    is inactive) into ``idx`` (n, PH, PW, M, 16). ``a1`` (n, H, W, CS): member m's Ci input channels are
    m*Ci .. m*Ci + Ci - 1 (CS >= M*Ci); ``wt`` (M, 9*Ci, 16); ``bias`` (M, 16). ``taps``: the members computed
    over their surviving weights only (the same bits as the dense kernel for finite inputs); ``cache``: a buffer
    of :meth:`Conv2Taps.cache_shape` that keeps their inputs, in the kernels' layout, for the backward pass."""
    n, h, w, cs = a1.shape
    m, k, co = wt.shape
    ph, pw = (h - 2) // 2, (w - 2) // 2
    if co != LANES or k % 9 or k // 9 * m > cs or bias.shape != (m, co) or a2.shape != (m, n, co * ph * pw) \
            or idx.shape != (n, ph, pw, m, co):
        raise ValueError("conv2_pool_forward: shapes do not match")
    tp = _tapspointers(taps, m, k // 9, pw)
    library().conv2_pool_forward(*pointers(a1, wt, bias, a2, idx), *tp, _cache_ptr(cache, tp, taps, a1), n, h, w, cs, m,
                                 k // 9, threads())


def conv2_pool_backward(a1: torch.Tensor, wx: torch.Tensor, idx: torch.Tensor, ga2: torch.Tensor,
                        gwt: torch.Tensor, gb: torch.Tensor, da1: torch.Tensor,
                        scratch: torch.Tensor | None = None, wt: torch.Tensor | None = None,
                        taps: "Conv2Taps | None" = None, cache: torch.Tensor | None = None) -> None:
    """The gradients of :func:`conv2_pool_forward`'s ``wt`` (into ``gwt``), ``bias`` (``gb``) and ``a1`` (``da1``,
    padding channels 0) from ``ga2``, the gradient of ``a2``. ``wx`` from :func:`placed_filters`. ``scratch``
    (M, n, H, W, Ci): a buffer to reuse (allocated here if None). ``taps`` as in the forward pass, which also
    needs ``wt``, the forward's (M, 9*Ci, 16) filters; ``cache`` the buffer the forward pass filled, or None."""
    n, h, w, cs = a1.shape
    m, co, ci = wx.shape[0], wx.shape[2], wx.shape[3] // 16
    if co != LANES or ci > LANES or ci * m > cs or wx.shape != (m, 5, co, 16 * ci) or gwt.shape != (m, 9 * ci, co) \
            or gb.shape != (m, co) or da1.shape != a1.shape or ga2.shape[:2] != (m, n) or idx.shape[3:] != (m, co) \
            or (taps is not None and (wt is None or wt.shape != gwt.shape)):
        raise ValueError("conv2_pool_backward: shapes do not match")
    if scratch is None:
        scratch = torch.empty(m, n, h, w, ci)
    elif scratch.shape != (m, n, h, w, ci):
        raise ValueError("conv2_pool_backward: shapes do not match")
    wt_ptr = pointers(wt)[0] if taps is not None else None
    tp = _tapspointers(taps, m, ci, (w - 2) // 2)
    library().conv2_pool_backward(*pointers(a1, wx), wt_ptr, *pointers(idx, ga2, gwt, gb, da1, scratch), *tp,
                                  _cache_ptr(cache, tp, taps, a1), n, h, w, cs, m, ci, threads())


class Conv2Taps:
    """The surviving conv2 weights of the members that take the tap kernels (``kernels.cpp``: work proportional
    to the surviving weights; forward bit for bit the dense kernel's, backward within float rounding).

    ``mask`` (M, 16, Ci, 3, 3), nonzero where a weight survives; ``members``: the slots on the tap path. Built once
    per population (a member's mask does not change while it trains): ``op`` (M, 17) int64, for a member on the
    path the range ``op[m, o] .. op[m, o + 1]`` of ``taps`` (int32) that output channel ``o`` keeps, each tap
    ``k = (ky*3 + kx)*Ci + ci`` (the row of the forward's (M, 9*Ci, 16) filters) in increasing order;
    ``op[m, 0] = -1`` for the others. The kernels are compiled for LeNet's 5x5 pooled conv2 output (28x28
    inputs); at any other size every member takes the dense kernels."""

    PW = 5

    def __init__(self, mask: torch.Tensor, members: list[int]):
        m, co, ci = mask.shape[:3]
        self.members, self.ci = list(members), ci
        self.op = torch.full((m, co + 1), -1, dtype=torch.int64)
        taps, offset = [], 0
        for i in self.members:
            live = (mask[i] != 0).permute(0, 2, 3, 1).reshape(co, 9 * ci)  # (o, (ky, kx, ci))
            counts = live.sum(1)
            self.op[i] = offset + torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            offset += int(counts.sum())
            taps.append(live.nonzero()[:, 1].to(torch.int32))  # row-major: increasing k within an output channel
        self.taps = torch.cat(taps) if taps and offset else torch.zeros(1, dtype=torch.int32)
        self.dense_runs = runs(sorted(set(range(m)) - set(self.members)))  # the others, for the placed filters

    def cache_shape(self, n: int, hw: int) -> tuple[int, ...]:
        """The shape of the buffer that keeps a training step's inputs of these members for its backward pass:
        (M, chunks of 16 images, H*W*Ci*16)."""
        return (self.op.shape[0], -(-n // LANES), hw * self.ci * LANES)


def _cache_ptr(cache: torch.Tensor | None, tp: list, taps: Conv2Taps | None, a1: torch.Tensor):
    if cache is None or tp[0] is None:
        return None
    if cache.shape != taps.cache_shape(a1.shape[0], a1.shape[1] * a1.shape[2]):
        raise ValueError("conv2 taps: the cache's shape does not match")
    return pointers(cache)[0]


def _tapspointers(taps: Conv2Taps | None, m: int, ci: int, pw: int) -> list:
    if taps is None or not taps.members or pw != Conv2Taps.PW:
        return [None, None]
    if taps.op.shape[0] != m or taps.ci != ci:
        raise ValueError("conv2 taps: shapes do not match")
    return pointers(taps.op, taps.taps)


def runs(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slots as contiguous ranges [a, b)."""
    out: list[tuple[int, int]] = []
    for i in slots:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def placed_filters(w2: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(M, 16, Ci, 3, 3) conv2 filters -> (M, 5, 16, 4*4*Ci): each filter placed in the 4x4 input block under a
    pooled value where window position dy*2 + dx reads it, in (row, column, ci) order; position 4 all zeros.
    ``out``: a buffer returned by an earlier call for filters of the same shape, refilled in place (only the
    placed 3x3 blocks are written: the zeros around them stay)."""
    m, co, ci = w2.shape[:3]
    if out is None:
        out = w2.new_zeros(m, 5, co, 4, 4, ci)
    else:
        out = out.view(m, 5, co, 4, 4, ci)
    for o in range(4):
        dy, dx = divmod(o, 2)
        out[:, o, :, dy:dy + 3, dx:dx + 3, :] = w2.permute(0, 1, 3, 4, 2)
    return out.view(m, 5, co, 16 * ci)


def masked_sgd(p: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor | None, mask: torch.Tensor | None, lr: float,
               momentum: float = 0.0, weight_decay: float = 0.0, first: bool = False) -> None:
    """One ``torch.optim.SGD`` step of ``p`` in place on the gradient of ``p * mask``, reading only the surviving
    weights' blocks (``kernels.cpp``: blocks of 64 elements whose mask is all 0 are skipped; they stay 0).

    ``mask``: uint8 of ``p``'s shape (nonzero: survives), or None; ``buf``: the momentum buffer (None without
    momentum), overwritten by the masked gradient when ``first``. ``grad`` is read, never written: its pruned
    entries may hold anything."""
    tensors = [p, grad, *(t for t in (buf, mask) if t is not None)]
    if any(t.shape != p.shape for t in tensors) or (mask is not None and mask.dtype != torch.uint8) \
            or (buf is None) != (momentum == 0.0) or any(t.dtype != torch.float32 for t in tensors[:2 + (buf is not None)]):
        raise ValueError("masked_sgd: shapes or dtypes do not match")
    ptrs = pointers(*tensors)
    pp, pg = ptrs[:2]
    pb = ptrs[2] if buf is not None else None
    pm = ptrs[-1] if mask is not None else None
    library().masked_sgd(pp, pg, pb, pm, p.numel(), lr, momentum, weight_decay, int(first), threads())
