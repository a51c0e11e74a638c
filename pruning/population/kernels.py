"""The population step's fused C++ kernels (the folder ``kernels/``): built once per machine, loaded with ctypes.

Both LeNet conv blocks (3x3 conv, 2x2 max pooling, ReLU) for every member on one shared batch, forward
and backward, without ever storing a conv output: only the pooled values and which window position
won (``lenet_convs.Fused`` calls them; ``benchmarks/step_variants.py`` times them against the torch path).

**Layout**: one C++ file per part, all compiled into one library: ``conv1.cpp``, ``conv2.cpp`` and ``conv2_taps.cpp``
(the convolutions), ``linear.cpp`` (sparse linear layers), ``sgd.cpp`` (the masked update), and whole members in
``member_step.cpp`` with their layers in ``member_conv.cpp`` and ``member_linear.cpp``; ``kernels.h`` holds the
shared vector helpers and the declarations between files, ``isa.cpp`` says which vector path was compiled. Each
entry point's arguments are named in :data:`ENTRY_POINTS` (its C++ parameters, in order); the wrappers pass them
by name (:func:`call`), which checks each tensor's dtype, device and contiguity before handing its pointer to C++,
and each wrapper checks the shapes.

The library is compiled with the system's C++ compiler (``$CXX``, else ``g++``, else ``c++``) into
``build/kernels/`` under a name that hashes every source file, the flags and this CPU's instruction sets, so
a changed source or another machine gets its own build; several processes building at once each compile their own
copy of the sources and rename the library into place. Without a compiler :func:`library` returns None and the
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
torch's update (so the same bits); 1.7x faster at M=18 and any density, measured in ``sgd.cpp``.

**Whole members** (``member_step``, called by ``members.Members``): a sparse member's whole step in one call, the
batch in the SIMD lanes from input to logits (see ``members``).

**Without AVX-512** (AVX2 machines such as an AMD EPYC Milan) the kernels' 16-lane vectors are two 8-lane halves
(``kernels.h``): GCC turned 16-lane comparisons and selects into scalar code there, and the step ran 3-6x slower.
``PRUNING_KERNELS_ISA=avx2`` builds that path on any x86 CPU (``-mno-avx512f``, a library of its own), so that it
is compiled and tested everywhere. On the same inputs its per-layer kernels gave the AVX-512 build's bits, its
whole-member kernel (other register blocks) not.

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
import tempfile
from pathlib import Path

import torch

from ..core import numerics, paths
from ..core.atomic import replacing

FOLDER = Path(__file__).with_name("kernels")
# Read once, at import: the library built is always the source these wrappers were written for, even when a file
# of kernels/ is edited while an experiment runs (its workers build on first use).
SOURCES = {p.name: p.read_text() for p in sorted(FOLDER.iterdir()) if p.suffix in (".cpp", ".h")}
# -march=native in every numerics mode: built for x86-64-v3 the kernels gave the same bits 9x slower (core/numerics.py)
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-std=c++17"]
# PRUNING_KERNELS_ISA: "" (this CPU's), or "avx2": without AVX-512, the kernels' two-halves path (see above)
ISA_FLAGS = {"": [], "avx2": ["-mno-avx512f"]}
LANES = 16  # the kernels' vector width in floats: filter columns are padded to a multiple of it

# Each entry point's arguments, in the order of its C++ signature, by its parameter names there (tests/test_kernels.py
# checks them against the sources): "name:kind" with kind f32*, u8*, i32* or i64* (a contiguous CPU tensor of that
# dtype; "?" where None passes a null pointer) or f32**, i64**, i32** (an array of pointers: :func:`pointer_array`),
# f32 (a float); a bare name is an int64.
ENTRY_POINTS = {
    "conv1_pool_forward": "x:f32* ft:f32* a:f32* idx:u8* n C H W Cp threads",
    "conv1_pool_backward": "x:f32* idx:u8* a:f32* ga:f32* g:f32* n C H W Cp threads",
    "conv1_live_forward": "x:f32* ft:f32* live:i32* a:f32* ac:f32* ic:u8* nl n C H W Cp threads",
    "conv1_live_backward": "x:f32* ac:f32* ic:u8* a:f32* ga:f32* live:i32* g:f32* nl n C H W Cp threads",
    "conv2_pool_forward": "a1:f32* wt:f32* bias:f32* a2:f32* idx:u8* op:i64*? taps:i32*? acache:f32*? "
                          "n H W CS M Ci threads",
    "conv2_pool_backward": "a1:f32* wx:f32* wt:f32*? idx:u8* ga2:f32* gwt:f32* gb:f32* da1:f32* dam:f32* op:i64*? "
                           "taps:i32*? acache:f32*? n H W CS M Ci threads",
    "linear_sparse_forward": "x:f32* w:f32* bias:f32* y:f32* members:i64* rowptr:i64* cols:i32* nm n IN OUT threads",
    "linear_sparse_backward": "x:f32* w:f32* dz:f32* gw:f32* dx:f32*? members:i64* rowptr:i64* cols:i32* "
                              "nm n IN OUT threads",
    "masked_sgd": "p:f32* grad:f32* buf:f32*? mask:u8*? n lr:f32 momentum:f32 wd:f32 first threads",
    "member_logits": "x:f32* n dims:i64* w:f32** b:f32** rp:i64** cols:i32** xt:f32* out:f32* S threads",
    "member_step": "x:f32* y:i64* n dims:i64* w:f32** b:f32** bw:f32** bb:f32** rp:i64** cols:i32** cp:i64** "
                   "rows:i32** xt:f32* loss:f32* S lr:f32 momentum:f32 wd:f32 first threads",
    "register_lanes": "",  # returns 16 (AVX-512 registers) or 8 (two 8-lane halves): which build this is
}
SIGNATURES = {entry: [(name, kind or "i64") for name, _, kind in (a.partition(":") for a in spec.split())]
              for entry, spec in ENTRY_POINTS.items()}
DTYPES = {"f32": torch.float32, "u8": torch.uint8, "i32": torch.int32, "i64": torch.int64}
# per entry point: its argument names, and per argument (name, 0 number / 1 tensor / 2 array, dtype, may be None)
_PLANS = {entry: (frozenset(name for name, _ in spec),
                  [(name, 2 if kind.endswith("**") else 1 if "*" in kind else 0, DTYPES.get(kind.rstrip("*?")),
                    kind.endswith("?")) for name, kind in spec]) for entry, spec in SIGNATURES.items()}
_loaded: dict[str, object] = {}


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    return None


def isa() -> str:
    """``PRUNING_KERNELS_ISA``: "" (build for this CPU) or "avx2" (without AVX-512)."""
    value = os.environ.get("PRUNING_KERNELS_ISA", "").strip().lower()
    if value not in ISA_FLAGS:
        raise ValueError(f"PRUNING_KERNELS_ISA={value!r}: use one of {sorted(ISA_FLAGS)} ('' builds for this CPU)")
    return value


def _build(target: Path, compiler: str, flags: list[str]) -> None:
    """Compile :data:`SOURCES` (the text read at import, written to a folder of this call's) into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.stem}.", dir=target.parent))
    try:
        for name, text in SOURCES.items():
            (folder / name).write_text(text)
        with replacing(target) as tmp:
            done = subprocess.run([compiler, *flags, "-o", str(tmp), *(str(folder / n) for n in SOURCES
                                                                        if n.endswith(".cpp"))],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def library():
    """The loaded kernels, or None (no compiler, a failed build, or ``PRUNING_KERNELS=torch``)."""
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = None
    compiler = _compiler()
    if os.environ.get("PRUNING_KERNELS", "") != "torch" and compiler:
        name, flags = isa(), FLAGS + ISA_FLAGS[isa()]
        key = hashlib.sha256("\0".join([*(f"{n}\0{text}" for n, text in SOURCES.items()), compiler, *flags,
                                         platform.machine(), numerics.cpuinfo_line("flags", "Features")]).encode())
        target = paths.BUILD / "kernels" / f"kernels-{name + '-' if name else ''}{key.hexdigest()[:16]}.so"
        try:
            if not target.exists():
                _build(target, compiler, flags)
            lib = ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"pruning: the fused conv kernels did not build ({exc}); the population step stays in torch",
                  file=sys.stderr)
    if lib is not None:
        for entry, spec in SIGNATURES.items():
            getattr(lib, entry).argtypes = [ctypes.c_void_p if "*" in kind else ctypes.c_float if kind == "f32"
                                            else ctypes.c_int64 for _, kind in spec]
        lib.register_lanes.restype = ctypes.c_int64
    _loaded["lib"] = lib
    return lib


def call(entry: str, **args) -> None:
    """Call the library's ``entry`` with every argument of :data:`ENTRY_POINTS` by name: a tensor of the kind's dtype,
    contiguous and on the CPU, passes its pointer; None a null pointer where the kind allows it (``?``); an array of
    pointers (``**``) is a ctypes array from :func:`pointer_array`; numbers as they are."""
    names, plan = _PLANS[entry]
    if args.keys() != names:
        raise TypeError(f"{entry}: missing {sorted(names - args.keys())}, unknown {sorted(args.keys() - names)}")
    values = []
    for name, how, dtype, nullable in plan:
        value = args[name]
        if how == 1:
            if value is None:
                if not nullable:
                    raise ValueError(f"{entry}: {name} may not be None")
            elif isinstance(value, torch.Tensor) and value.dtype == dtype and value.is_contiguous() \
                    and value.device.type == "cpu":
                value = value.data_ptr()
            else:
                value = checked(value, dtype, f"{entry}: {name}").data_ptr()  # raises
        elif how == 2:
            if not isinstance(value, ctypes.Array):
                raise TypeError(f"{entry}: {name} must be an array of pointers (kernels.pointer_array)")
            value = ctypes.addressof(value)
        values.append(value)
    getattr(library(), entry)(*values)


def checked(t: torch.Tensor, dtype: torch.dtype, what: str = "the fused kernels") -> torch.Tensor:
    """``t`` if it is a contiguous CPU tensor of ``dtype`` (C++ reads it as a dense array), else ValueError."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or not t.is_contiguous() or t.dtype != dtype:
        got = f"{t.dtype} {tuple(t.shape)} on {t.device} (contiguous: {t.is_contiguous()})" \
            if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{what}: takes a contiguous {dtype} CPU tensor, got {got}")
    return t


def pointer_array(dtype: torch.dtype, tensors: list) -> ctypes.Array:
    """The pointers of ``tensors`` (each checked as :func:`checked`; None: a null pointer) as a ctypes array, for an
    argument of kind ``**``. The tensors must outlive the array's use."""
    return (ctypes.c_void_p * len(tensors))(*(None if t is None else checked(t, dtype).data_ptr() for t in tensors))


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


def conv1_pool_forward(x: torch.Tensor, ft: torch.Tensor, a: torch.Tensor, idx: torch.Tensor) -> None:
    """Fill ``a`` (n, PH, PW, Cp) with relu(max_pool2d(conv1(x))) and ``idx`` (uint8, same shape) with the
    winning window positions; ``ft`` (C*9 + 1, Cp) from :func:`padded_filters` (padding channels come out 0)."""
    n, c, h, w = x.shape
    cp = ft.shape[1]
    if a.shape != (n, (h - 2) // 2, (w - 2) // 2, cp) or idx.shape != a.shape or ft.shape[0] != c * 9 + 1 \
            or cp % LANES:
        raise ValueError("conv1_pool_forward: shapes do not match")
    call("conv1_pool_forward", x=x, ft=ft, a=a, idx=idx, n=n, C=c, H=h, W=w, Cp=cp, threads=threads())


def conv1_pool_backward(x: torch.Tensor, idx: torch.Tensor, a: torch.Tensor, ga: torch.Tensor,
                        g: torch.Tensor) -> None:
    """Fill ``g`` (C*9 + 1, Cp) with the gradients of the padded filters (bias row last), given ``ga``, the
    gradient of ``a`` (ReLU's backward is applied in the kernel)."""
    n, c, h, w = x.shape
    cp = a.shape[-1]
    if ga.shape != a.shape or idx.shape != a.shape or g.shape != (c * 9 + 1, cp) or c * 9 + 1 > 64:
        raise ValueError("conv1_pool_backward: shapes do not match (or more than 7 input channels)")
    call("conv1_pool_backward", x=x, idx=idx, a=a, ga=ga, g=g, n=n, C=c, H=h, W=w, Cp=cp, threads=threads())


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
    call("conv2_pool_forward", a1=a1, wt=wt, bias=bias, a2=a2, idx=idx, **_taps_args(taps, m, k // 9, pw, cache, a1),
         n=n, H=h, W=w, CS=cs, M=m, Ci=k // 9, threads=threads())


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
    call("conv2_pool_backward", a1=a1, wx=wx, wt=wt if taps is not None else None, idx=idx, ga2=ga2, gwt=gwt, gb=gb,
         da1=da1, dam=scratch, **_taps_args(taps, m, ci, (w - 2) // 2, cache, a1), n=n, H=h, W=w, CS=cs, M=m, Ci=ci,
         threads=threads())


class Conv2Taps:
    """The surviving conv2 weights of the members that take the tap kernels (``kernels/conv2_taps.cpp``: work
    proportional to the surviving weights; forward bit for bit the dense kernel's, backward within float rounding).

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


def _taps_args(taps: Conv2Taps | None, m: int, ci: int, pw: int, cache: torch.Tensor | None, a1: torch.Tensor) -> dict:
    """The conv2 kernels' ``op``, ``taps`` and ``acache``: all None where no member takes the tap kernels."""
    if taps is None or not taps.members or pw != Conv2Taps.PW:
        return {"op": None, "taps": None, "acache": None}
    if taps.op.shape[0] != m or taps.ci != ci:
        raise ValueError("conv2 taps: shapes do not match")
    if cache is not None and cache.shape != taps.cache_shape(a1.shape[0], a1.shape[1] * a1.shape[2]):
        raise ValueError("conv2 taps: the cache's shape does not match")
    return {"op": taps.op, "taps": taps.taps, "acache": cache}


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
    weights' blocks (``kernels/sgd.cpp``: blocks of 64 elements whose mask is all 0 are skipped; they stay 0).

    ``mask``: uint8 of ``p``'s shape (nonzero: survives), or None; ``buf``: the momentum buffer (None without
    momentum), overwritten by the masked gradient when ``first``. ``grad`` is read, never written: its pruned
    entries may hold anything."""
    tensors = [p, grad, *(t for t in (buf, mask) if t is not None)]
    if any(t.shape != p.shape for t in tensors) or (mask is not None and mask.dtype != torch.uint8) \
            or (buf is None) != (momentum == 0.0) or any(t.dtype != torch.float32 for t in tensors[:2 + (buf is not None)]):
        raise ValueError("masked_sgd: shapes or dtypes do not match")
    call("masked_sgd", p=p, grad=grad, buf=buf, mask=mask, n=p.numel(), lr=lr, momentum=momentum, wd=weight_decay,
         first=int(first), threads=threads())
