"""LeNet's two conv blocks (3x3 conv, 2x2 max pooling, ReLU) for a population, forward and backward by hand.

Two paths with one interface, picked by :func:`make`:

- :class:`Fused`, the CPU default: each block is one C++ kernel forward and one backward (``kernels``; on the
  sparse path conv1 may take its live-filter kernels, ``sparse.Conv1Live``, and conv2's members their tap kernels).
  Neither conv output is ever stored: each pooled value is computed from its 4 window positions and only
  the value and the winning position (one byte) are written; conv2's last row and column, which
  pooling drops, are not computed at all.
- :class:`Torch`, on GPUs or where no C++ compiler is: conv1 is one matrix product over the batch's 3x3
  patches, built once for all members (with a row of ones for the bias), its output in channels_last
  order; conv2 is a grouped convolution (``groups=M``), its input gradient taken as a forward
  convolution of the padded output gradient by the flipped, transposed filters (oneDNN's forward kernel
  is faster here than its backward-data kernel); ReLU comes after each pooling (the same values and
  gradients as before it, on a quarter of the elements).

Both take the shared batch ``x`` (n, C, H, W) and the population's stacked parameters. ``forward``
returns the blocks' output as (M, n, 16*5*5), each member's flattened as LeNet flattens it, and what the
backward pass needs; ``backward`` takes the gradient of that output and returns the conv layers'
gradients (not yet masked). The paths agree up to float rounding (``tests/test_population.py``); each is
deterministic. ``benchmarks/step_variants.py`` times them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kernels, sparse


def make(device: str | torch.device, conv2_channels: int):
    """The fused path on the CPU where the kernels built, else the torch path."""
    on_cpu = torch.device(device).type == "cpu"
    return Fused() if on_cpu and conv2_channels == kernels.LANES and kernels.library() is not None else Torch()


def describe(device: str | torch.device) -> str:
    """For experiment.json: the conv path a LeNet population takes on ``device`` in this process."""
    convs = make(device, kernels.LANES)
    if isinstance(convs, Fused):
        return convs.name + (", sparse paths" if kernels.sparse_paths() else ", dense only (PRUNING_KERNELS=dense)")
    return convs.name


def _filters(p: dict, m: int) -> torch.Tensor:
    """conv1's filters of every member with their bias as a last column: (M*6, C*9 + 1)."""
    w1 = p["conv1.weight"]
    return torch.cat([w1.reshape(m * w1.shape[1], -1), p["conv1.bias"].reshape(-1, 1)], 1)


def _conv1_grads(p: dict, m: int, g1: torch.Tensor) -> dict:
    """(C*9 + 1, M*6): the filters' gradients, then the biases', as conv1's stacked parameters."""
    return {"conv1.weight": g1[:-1].t().reshape(p["conv1.weight"].shape), "conv1.bias": g1[-1].reshape(m, -1)}


class Fused:
    """Both conv blocks in the C++ kernels (``kernels``); buffers of training steps are reused, by batch size."""

    name = "fused C++ kernels (pruning/kernels.cpp)"

    def __init__(self):
        self._work: dict[int, dict[str, torch.Tensor]] = {}
        self._filters: dict[str, torch.Tensor] = {}
        self.taps: kernels.Conv2Taps | None = None  # conv2's members on the tap kernels (set by the population)
        self.live: sparse.Conv1Live | None = None  # conv1 over its live channels only (set by the population)

    def _buffers(self, x: torch.Tensor, p: dict, m: int) -> dict[str, torch.Tensor]:
        n, _, hh, ww = x.shape
        c1, c2 = m * p["conv1.weight"].shape[1], p["conv2.weight"].shape[1]
        h1, w1 = (hh - 2) // 2, (ww - 2) // 2
        h2, w2 = (h1 - 2) // 2, (w1 - 2) // 2
        a1 = torch.empty(n, h1, w1, -(-c1 // kernels.LANES) * kernels.LANES)  # channels padded to whole vectors
        work = {"a1": a1, "a2": torch.empty(m, n, c2 * h2 * w2), "i2": torch.empty(n, h2, w2, m, c2, dtype=torch.uint8)}
        if self.live is None:
            work["i1"] = torch.empty(a1.shape, dtype=torch.uint8)
        else:  # the live channels' pooled values and winners, packed (sparse.Conv1Live)
            work["i1"] = self.live.buffers(a1)
        return work

    def _grad_buffers(self, work: dict, p: dict, m: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backward pass's outputs and scratch, allocated at a batch size's first training step and reused:
        the kernels overwrite every element they own; the layouts' padding stays zero."""
        if "gwt" not in work:
            w2, a1 = p["conv2.weight"], work["a1"]
            co, ci = w2.shape[1], w2.shape[2]
            work.update(gwt=torch.empty(m, 9 * ci, co), gb2=torch.empty(m, co), da1=torch.empty(a1.shape),
                        g1=torch.empty(x.shape[1] * 9 + 1, a1.shape[-1]), wx=kernels.placed_filters(w2),
                        dam=torch.empty(m, *a1.shape[:3], ci))
        return work

    def forward(self, p: dict, m: int, x: torch.Tensor, train: bool):
        n, x = x.shape[0], x.contiguous()
        if not train:
            work = self._buffers(x, p, m)
        elif n not in self._work:
            work = self._work[n] = self._buffers(x, p, m)
        else:
            work = self._work[n]
        a1, i1, a2, i2 = work["a1"], work["i1"], work["a2"], work["i2"]
        if self._filters.get("m") is not m:  # conv1's padded filters and conv2's (M, 9*Ci, 16): refilled every step
            self._filters["m"] = m
            self._filters["ft"] = kernels.padded_filters(_filters(p, m))
            w2 = p["conv2.weight"]
            self._filters["wt"] = torch.empty(m, 3, 3, w2.shape[2], w2.shape[1])
        else:
            kernels.padded_filters(_filters(p, m), out=self._filters["ft"])
        if self.live is None:
            kernels.conv1_pool_forward(x, self._filters["ft"], a1, i1)
        else:
            self.live.forward(x, self._filters["ft"], a1, *i1)
        w2, wt = p["conv2.weight"], self._filters["wt"]  # (M, 16, Ci, 3, 3) -> (M, 9*Ci, 16), rows in (ky, kx, ci)
        wt.copy_(w2.permute(0, 3, 4, 2, 1))
        cache = None
        if train and self.taps is not None:  # the tap members' inputs in the kernels' layout, for the backward pass
            shape = self.taps.cache_shape(n, a1.shape[1] * a1.shape[2])
            if "taps" not in work or work["taps"].shape != shape:
                work["taps"] = torch.empty(shape)
            cache = work["taps"]
        kernels.conv2_pool_forward(a1, wt.view(m, -1, w2.shape[1]), p["conv2.bias"], a2, i2, self.taps, cache)
        return a2, (x, a1, i1, i2)

    def backward(self, p: dict, m: int, dh: torch.Tensor, saved) -> dict:
        x, a1, i1, i2 = saved
        n = x.shape[0]
        work = self._work[n] if n in self._work and self._work[n]["a1"] is a1 else {"a1": a1}
        work = self._grad_buffers(work, p, m, x)
        w2 = p["conv2.weight"]
        co, ci = w2.shape[1], w2.shape[2]
        gwt, gb2, da1, g1 = work["gwt"], work["gb2"], work["da1"], work["g1"]
        # the placed filters serve the dense kernel only: refilled for the members not on the tap kernels
        wx = work["wx"]
        if self.taps is None or (a1.shape[2] - 2) // 2 != kernels.Conv2Taps.PW:  # (another size: all dense)
            kernels.placed_filters(w2, out=wx)
        else:
            for i, j in self.taps.dense_runs:
                kernels.placed_filters(w2[i:j], out=wx[i:j])
        kernels.conv2_pool_backward(a1, wx, i2, dh.contiguous(), gwt, gb2,
                                    da1, work["dam"], self._filters["wt"].view(m, -1, co), self.taps,
                                    work.get("taps"))
        if self.live is None:
            kernels.conv1_pool_backward(x, i1, a1, da1, g1)
        else:
            self.live.backward(x, *i1, a1, da1, g1)
        grads = _conv1_grads(p, m, g1[:, :m * p["conv1.weight"].shape[1]])
        grads["conv2.weight"] = gwt.view(m, 3, 3, ci, co).permute(0, 4, 3, 1, 2)
        grads["conv2.bias"] = gb2
        return grads


class Torch:
    """Both conv blocks in torch operations (any device); the conv1 buffers of training steps are reused."""

    name = "torch"

    def __init__(self):
        self._work: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _patches(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(C*9 + 1, n*H*W): rows in (channel, dy, dx) order, as the filters flatten, then a row of ones;
        columns in (image, y, x) order."""
        n, c, hh, ww = x.shape
        if out is None:
            out = torch.ones(c * 9 + 1, n * (hh - 2) * (ww - 2), device=x.device)
        out[:-1].view(c, 3, 3, n, hh - 2, ww - 2).copy_(x.unfold(2, 3, 1).unfold(3, 3, 1).permute(1, 4, 5, 0, 2, 3))
        return out

    def _buffers(self, x: torch.Tensor, cout: int) -> dict[str, torch.Tensor]:
        n, c, hh, ww = x.shape
        if n not in self._work:
            rows = n * (hh - 2) * (ww - 2)
            self._work[n] = {"patches": torch.ones(c * 9 + 1, rows, device=x.device),
                             "h1": torch.empty(rows, cout, device=x.device),
                             "dh1": torch.empty(rows, cout, device=x.device)}
        return self._work[n]

    def forward(self, p: dict, m: int, x: torch.Tensor, train: bool):
        n, hh, ww = x.shape[0], x.shape[2] - 2, x.shape[3] - 2
        filters = _filters(p, m)
        work = self._buffers(x, filters.shape[0]) if train else None
        patches = self._patches(x, work["patches"] if work else None)
        h1 = torch.mm(patches.t(), filters.t(), out=work["h1"]) if work else patches.t() @ filters.t()
        h1 = h1.view(n, hh, ww, -1).permute(0, 3, 1, 2)  # (n, M*6, H, W), channels_last
        a1, i1 = F.max_pool2d_with_indices(h1, 2)
        a1 = a1.relu_()
        w2 = p["conv2.weight"]
        h2 = F.conv2d(a1, w2.reshape(m * w2.shape[1], *w2.shape[2:]), p["conv2.bias"].reshape(-1), groups=m)
        a2, i2 = F.max_pool2d_with_indices(h2, 2)
        a2 = a2.relu_()
        # (M, n, 16*5*5), flattened per member as LeNet does (a2 is channels_last: (n, 5, 5, M*16) in memory)
        h = a2.permute(0, 2, 3, 1).reshape(n, *a2.shape[2:], m, -1).permute(3, 0, 4, 1, 2).reshape(m, n, -1)
        return h, (work, patches, h1, i1, a1, h2, i2, a2)

    def backward(self, p: dict, m: int, dh: torch.Tensor, saved) -> dict:
        work, patches, h1, i1, a1, h2, i2, a2 = saved
        n = a1.shape[0]
        # (M, n, 16*5*5) back to (n, M*16, 5, 5) channels_last, as a2 is laid out
        da2 = dh.view(m, n, a2.shape[1] // m, *a2.shape[2:]).permute(1, 3, 4, 0, 2).contiguous()
        da2 = torch.ops.aten.threshold_backward(da2.view(n, *a2.shape[2:], -1).permute(0, 3, 1, 2), a2, 0)
        if "dh2" not in work:
            work["dh2"] = torch.empty_like(h2)
        dh2 = work["dh2"]
        torch.ops.aten.max_pool2d_with_indices_backward.grad_input(
            da2, h2, [2, 2], [2, 2], [0, 0], [1, 1], False, i2, grad_input=dh2)
        w2 = p["conv2.weight"]
        _, gw2, gb2 = torch.ops.aten.convolution_backward(
            dh2, a1, w2.reshape(m * w2.shape[1], *w2.shape[2:]), [m * w2.shape[1]], [1, 1], [0, 0], [1, 1],
            False, [0, 0], m, [False, True, True])
        wt = w2.transpose(1, 2).flip(3, 4).reshape(m * w2.shape[2], w2.shape[1], *w2.shape[3:])
        da1 = F.conv2d(dh2, wt, None, padding=(w2.shape[3] - 1, w2.shape[4] - 1), groups=m)
        da1 = torch.ops.aten.threshold_backward(da1, a1, 0)
        dh1 = work["dh1"].view(h1.shape[0], h1.shape[2], h1.shape[3], -1).permute(0, 3, 1, 2)
        torch.ops.aten.max_pool2d_with_indices_backward.grad_input(
            da1, h1, [2, 2], [2, 2], [0, 0], [1, 1], False, i1, grad_input=dh1)
        # dh1 is channels_last, so this reshape is a view of work["dh1"] (a device whose kernel wrote another
        # layout gets a copy, not wrong numbers)
        grads = _conv1_grads(p, m, patches @ dh1.permute(0, 2, 3, 1).reshape(-1, dh1.shape[1]))
        grads["conv2.weight"], grads["conv2.bias"] = gw2.view(w2.shape), gb2.view(m, -1)
        return grads
