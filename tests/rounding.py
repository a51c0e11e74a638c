"""Tolerances derived from float32 rounding, for tests that compare two float32 computations of the same thing.

Two correct float32 computations that sum in different orders (fused C++ kernels, oneDNN, MKL; another CPU
or thread count picks other kernels) differ by rounding, and how much depends on the machine. So no
tolerance here is a number: each is measured, in the same test run, as the distance between torch's own
float32 computation and the same computation in float64 (the rounding a float32 computation of it incurs
on this machine), and a float32 computation under test must be that close to float64 within a small factor.
"""
from __future__ import annotations

import dataclasses

import torch

from pruning.nets import models, techniques, training

EPS32 = torch.finfo(torch.float32).eps
FACTOR = 8  # another summation order of the same float32 sums: the same order of error, a few times at most


def rounding_error(ref32: torch.Tensor, ref64: torch.Tensor) -> float:
    """How far torch's float32 computation is from float64, with a floor of a few float32 ulps of the values."""
    return float((ref32.double() - ref64).abs().max()) + 4 * EPS32 * float(ref64.abs().max())


def assert_within_rounding(got: torch.Tensor, ref32: torch.Tensor, ref64: torch.Tensor, what) -> None:
    """``got`` (float32) is as close to ``ref64`` as ``ref32`` is, within :data:`FACTOR`."""
    err, allowed = float((got.double() - ref64).abs().max()), FACTOR * rounding_error(ref32, ref64)
    assert err <= allowed, (what, err, allowed)


def one_net(state: dict, masks: dict | None, data, split, cfg, *, seed: int, iteration: int, dtype=torch.float32):
    """``training.train`` (``torch.optim.SGD`` over a ``torch.nn.utils.prune``-masked LeNet) in ``dtype``:
    the trained state with masks applied, and the training stats."""
    model = models.LeNet().to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    techniques.apply_masks(model, masks)
    if dtype != torch.float32:
        data = dataclasses.replace(data, train_x=data.train_x.to(dtype))
    stats = training.train(model, data, split, cfg, seed=seed, iteration=iteration)
    return techniques.effective_state(model), stats
