"""Whole members on the sparse path: a member whose mask keeps few weights trains in one C++ call per step (issue 19).

``member_step`` (``kernels/member_step.cpp``) takes every such member through forward, loss, backward and its SGD
update over its surviving weights only, with each activation kept as (units, batch): the batch in the SIMD lanes
from the input to the logits, so no layer pays for moving data between layouts. Each layer's surviving weights are
a CSR over the weight viewed as (out, in) (a conv filter's taps, a linear unit's inputs), built once from the mask: a
member's mask does not change while it trains. A pruned filter or unit costs only its bias. The linear layers also
get a CSC (their input gradient is summed input by input, no read-modify-write), and a linear layer that keeps
more than 25% of its weights is multiplied densely (its pruned weights are exactly 0; blocks of 8 rows share each
load of the batch, which beats skipping above that density). Evaluation (:meth:`Members.logits`, ``member_logits``)
runs the same forward pass, 32 images at a time.

Speed (issue 19, ``benchmarks/sparse_step.py``, docs/benchmarks.md): about the dense fused step's per member at cost
density 1, and the work falls with the mask from there.

Which members take it is a function of each member's own mask (``population.MEMBER_DENSITY``), and each member is
computed by one thread in a fixed order, so its bits depend on its own mask and values only: not on the thread
count, the other members, or how a seed's members are split over processes. Its values are the dense step's up to
float rounding (``tests/test_members.py``).
"""
from __future__ import annotations

import torch

from .kernels import call, pointer_array, threads

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
# How often each layer's weights are applied per image in LeNet on 28x28 inputs: a conv tap at every conv position
# pooling reads (26x26, then 10x10), a linear weight once. The step's multiply-adds are the weights times these.
USES = {"conv1": 26 * 26, "conv2": 10 * 10, "fc1": 1, "fc2": 1, "fc3": 1}
SHAPES = {"conv1": (6, 1, 3, 3), "conv2": (16, 6, 3, 3), "fc1": (120, 400), "fc2": (84, 120), "fc3": (10, 84)}


def cost_density(mask: dict[str, torch.Tensor]) -> float:
    """The share of a dense LeNet's multiply-adds per image that a member with ``mask`` (layer -> 0/1 tensor; a layer
    not in it is unpruned) still does: surviving weights times their uses (``USES``) over all weights' uses. A
    function of the mask alone (``population.MEMBER_DENSITY`` reads it)."""
    total = live = 0.0
    for layer, uses in USES.items():
        n = mask[layer].numel() if layer in mask else torch.Size(SHAPES[layer]).numel()
        total += n * uses
        live += (int((mask[layer] != 0).sum()) if layer in mask else n) * uses
    return live / total


def csr(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask`` (S, O, ...) -> rowptr (S, O + 1) int64 (offsets into one cols array for all S members) and cols
    (int32): each row's surviving flat indices within its (in,) slice, increasing."""
    live = mask.reshape(mask.shape[0], mask.shape[1], -1) != 0
    members, rows = live.shape[:2]
    bounds = torch.cat([torch.zeros(1, dtype=torch.int64), live.sum(2).flatten().cumsum(0)])
    rowptr = bounds[torch.arange(members)[:, None] * rows + torch.arange(rows + 1)].contiguous()
    cols = live.nonzero()[:, 2].to(torch.int32).contiguous()  # row-major: member, row, then increasing column
    return rowptr, cols if len(cols) else torch.zeros(1, dtype=torch.int32)


class Members:
    """The ``S`` members at the end of a population's stacked parameters, trained by ``member_step``.

    ``params``: name -> (S, ...) contiguous views (updated in place); ``masks``: layer -> (S, ...) 0/1 masks."""

    def __init__(self, params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        self.params = params
        self.s = params["conv1.weight"].shape[0]
        w = [params[f"{layer}.weight"] for layer in LAYERS]
        if any(not t.is_contiguous() or t.device.type != "cpu" for t in params.values()):
            raise ValueError("Members: the parameters must be contiguous CPU tensors")
        self.csr = [csr(masks[layer]) for layer in LAYERS]
        # the linear layers' CSC (their input gradient is summed column by column): the CSR of the transposed mask
        self.csc = [csr(masks[layer].transpose(1, 2)) for layer in LAYERS[2:]]
        self.out = [t.shape[1] for t in w]  # each layer's output channels or units, then its inputs per output
        self.inp = [t[0].numel() // t.shape[1] for t in w]
        self._dims: dict[tuple, torch.Tensor] = {}
        self.buffers: list[torch.Tensor] | None = None
        f32, i64, i32 = torch.float32, torch.int64, torch.int32
        self._w = pointer_array(f32, w)  # one pointer per layer, the arrays passed by address
        self._b = pointer_array(f32, [params[f"{layer}.bias"] for layer in LAYERS])
        self._rp = pointer_array(i64, [r for r, _ in self.csr])
        self._cols = pointer_array(i32, [c for _, c in self.csr])
        self._cp = pointer_array(i64, [None, None, *(r for r, _ in self.csc)])  # conv1, conv2: no CSC
        self._rows = pointer_array(i32, [None, None, *(c for _, c in self.csc)])
        self._none = pointer_array(f32, [None] * 5)
        self._xt: torch.Tensor | None = None

    def _dims_of(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        key = (c, h, w)
        if key not in self._dims:
            h2, w2 = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
            if c * 9 != self.inp[0] or self.out[1] * h2 * w2 != self.inp[2]:
                raise ValueError(f"Members.step: a batch of {c}x{h}x{w} images does not fit this LeNet (conv1 takes "
                                 f"{self.inp[0] // 9} channels, fc1 {self.inp[2]} inputs)")
            self._dims[key] = torch.tensor([c, h, w, *self.out, *self.inp], dtype=torch.int64)
        return self._dims[key]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits on ``x`` (N, C, H, W): (S, N, classes), by the forward pass that ``step`` trains
        with (32 images at a time), so evaluation costs what the surviving weights cost."""
        dims = self._dims_of(x)
        x = x.contiguous().float()
        out = torch.empty(self.s, x.shape[0], self.out[4])
        xt = torch.empty(x[0].numel(), 32)
        call("member_logits", x=x, n=x.shape[0], dims=dims, w=self._w, b=self._b, rp=self._rp, cols=self._cols, xt=xt,
             out=out, S=self.s, threads=threads())
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> torch.Tensor:
        """One SGD step of every member on the shared batch ``x`` (n, C, H, W), labels ``y`` (n,): each member's mean
        loss (S,)."""
        n, c, h, w = x.shape
        dims = self._dims_of(x)
        first = False
        if momentum and self.buffers is None:
            self.buffers = [torch.zeros_like(self.params[f"{layer}.{kind}"]) for kind in ("weight", "bias")
                            for layer in LAYERS]
            self._bw, self._bb = pointer_array(torch.float32, self.buffers[:5]), pointer_array(torch.float32,
                                                                                               self.buffers[5:])
            first = True
        npad = -(-n // 16) * 16
        if self._xt is None or self._xt.shape != (c * h * w, npad):
            self._xt = torch.empty(c * h * w, npad)
        x, y = x.contiguous().float(), y.contiguous().to(torch.int64)
        loss = torch.empty(self.s)
        bw, bb = (self._bw, self._bb) if momentum else (self._none, self._none)
        call("member_step", x=x, y=y, n=n, dims=dims, w=self._w, b=self._b, bw=bw, bb=bb, rp=self._rp, cols=self._cols,
             cp=self._cp, rows=self._rows, xt=self._xt, loss=loss, S=self.s, lr=lr, momentum=momentum, wd=weight_decay,
             first=int(first), threads=threads())
        return loss
