"""The population step's sparse formats built on the fused kernels' wrappers (``kernels``): the linear layers'
surviving weights and conv1's live filters (issue 19). conv2's tap lists (``kernels.Conv2Taps``) stay beside the
conv2 wrappers, which take them.

**Sparse linear layers** (:class:`SparseRows`, issue 19). A member whose linear layer keeps few weights can have
that layer computed over its surviving weights only (a CSR index over the dense weight tensor, built once from
the mask; the batch of 32 in two SIMD vectors; forward, the surviving weights' gradients and the input's
gradient). Why this format: one index serves unstructured masks and structured ones (a pruned unit is an empty
row, a pruned input a missing column), and the weights stay where SGD and the stored states read them. Why so
rarely used (``population.SPARSE_DENSITY``: fc1 at <= 5% density, fc2 and fc3 never): measured side by
side at LeNet's sizes (batch 32, 1 thread, M=10), MKL's batched product of a whole layer costs about as much as
this kernel's fixed work (transposing each member's activations and output gradients so that the batch lies in
the vector lanes), so the kernel only breaks even on fc1 below ~5% and loses on fc2 and fc3 at every density.

**conv1 over its live filters** (:class:`Conv1Live`): a filter whose mask keeps no weight (structured pruning, or
an unstructured layer emptied: at iteration 20 it keeps 1.2% of 54 weights) outputs relu(bias) everywhere, winner 0.
So the live filters are packed and computed as the dense kernel does, the dead get that constant row and a bias
gradient only: the dense kernels' bits for all the update reads, so the choice (``population.CONV1_LIVE``) may
look at the whole population; packing and scattering cost as much as they save at about 75% of filters live.
"""
from __future__ import annotations

import torch

from .kernels import LANES, call, threads


class SparseRows:
    """The surviving weights of one linear layer for the members that take the sparse path, row by row.

    ``mask`` (M, OUT, IN), nonzero where a weight survives; ``members``: the slots on the sparse path. Built once
    per population (a member's mask does not change while it trains): ``rowptr`` (len(members), OUT + 1) int64
    offsets into ``cols`` (int32), each row's surviving columns in increasing order."""

    def __init__(self, mask: torch.Tensor, members: list[int]):
        self.members = torch.tensor(members, dtype=torch.int64)
        self.out, self.inp = mask.shape[1], mask.shape[2]
        rowptrs, cols, offset = [], [], 0
        for i in members:
            live = mask[i] != 0
            counts = live.sum(1)
            rowptrs.append(offset + torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
            offset += int(counts.sum())
            cols.append(live.nonzero()[:, 1].to(torch.int32))  # row-major: columns increase within a row
        self.rowptr = torch.stack(rowptrs).contiguous() if members else torch.zeros(0, self.out + 1, dtype=torch.int64)
        self.cols = torch.cat(cols) if cols and offset else torch.zeros(1, dtype=torch.int32)

    def _check(self, x, w, y_or_dz):
        m, n = x.shape[:2]
        if w.shape != (m, self.out, self.inp) or x.shape != (m, n, self.inp) or y_or_dz.shape != (m, n, self.out) \
                or (len(self.members) and int(self.members.max()) >= m):
            raise ValueError("linear_sparse: shapes do not match")
        return n

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> None:
        """``y[i] = x[i] @ w[i].T + b[i]`` (M, n, OUT) for each member ``i`` of the sparse path; other slots untouched."""
        n = self._check(x, w, y)
        if b.shape != (w.shape[0], self.out):
            raise ValueError("linear_sparse: shapes do not match")
        call("linear_sparse_forward", x=x, w=w, bias=b, y=y, members=self.members, rowptr=self.rowptr, cols=self.cols,
             nm=len(self.members), n=n, IN=self.inp, OUT=self.out, threads=threads())

    def backward(self, x: torch.Tensor, w: torch.Tensor, dz: torch.Tensor, gw: torch.Tensor,
                 dx: torch.Tensor | None) -> None:
        """From ``dz`` (M, n, OUT): each sparse member's surviving weights' gradients into ``gw`` (M, OUT, IN; its
        pruned entries are not written) and, if ``dx`` is given, the gradient of ``x`` into ``dx`` (M, n, IN)."""
        n = self._check(x, w, dz)
        if gw.shape != w.shape or (dx is not None and dx.shape != x.shape):
            raise ValueError("linear_sparse: shapes do not match")
        call("linear_sparse_backward", x=x, w=w, dz=dz, gw=gw, dx=dx, members=self.members, rowptr=self.rowptr,
             cols=self.cols, nm=len(self.members), n=n, IN=self.inp, OUT=self.out, threads=threads())


class Conv1Live:
    """conv1's live channels (member * 6 + filter) from its stacked mask (M, 6, C, 3, 3): those whose filter keeps a
    weight (see the module's note). Built once: a mask is fixed while a population trains."""

    def __init__(self, mask: torch.Tensor):
        self.live = (mask.flatten(2) != 0).any(2).flatten().nonzero().flatten().to(torch.int32).contiguous()
        self.nl = len(self.live)
        self.packed = -(-self.nl // LANES) * LANES  # the live channels padded to whole vectors

    def buffers(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed pooled values and winners for ``a`` (n, PH, PW, Cp), kept from forward to backward."""
        shape = (*a.shape[:3], max(self.packed, LANES))
        return torch.empty(shape), torch.empty(shape, dtype=torch.uint8)

    def forward(self, x: torch.Tensor, ft: torch.Tensor, a: torch.Tensor, ac: torch.Tensor, ic: torch.Tensor) -> None:
        """:func:`kernels.conv1_pool_forward`'s ``a`` over the live channels only; their values and winners also packed into
        ``ac``, ``ic`` (:meth:`buffers`) for the backward pass (no winners in ``a``'s layout: nothing reads them)."""
        n, c, h, w = x.shape
        cp = ft.shape[1]
        if a.shape != (n, (h - 2) // 2, (w - 2) // 2, cp) or ft.shape[0] != c * 9 + 1 \
                or cp % LANES or ac.shape != (*a.shape[:3], max(self.packed, LANES)) or ic.shape != ac.shape \
                or (self.nl and int(self.live[-1]) >= cp):
            raise ValueError("conv1_live_forward: shapes do not match")
        call("conv1_live_forward", x=x, ft=ft, live=self.live, a=a, ac=ac, ic=ic, nl=self.nl, n=n, C=c, H=h, W=w, Cp=cp,
             threads=threads())

    def backward(self, x: torch.Tensor, ac: torch.Tensor, ic: torch.Tensor, a: torch.Tensor, ga: torch.Tensor,
                 g: torch.Tensor) -> None:
        """:func:`kernels.conv1_pool_backward`'s ``g`` for the live filters and every bias (the dead filters' rows 0)."""
        n, c, h, w = x.shape
        cp = a.shape[-1]
        if ga.shape != a.shape or g.shape != (c * 9 + 1, cp) or c * 9 + 1 > 64 \
                or ac.shape != (*a.shape[:3], max(self.packed, LANES)) or ic.shape != ac.shape:
            raise ValueError("conv1_live_backward: shapes do not match (or more than 7 input channels)")
        call("conv1_live_backward", x=x, ac=ac, ic=ic, a=a, ga=ga, live=self.live, g=g, nl=self.nl, n=n, C=c, H=h, W=w,
             Cp=cp, threads=threads())
