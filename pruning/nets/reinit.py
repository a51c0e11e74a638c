"""What the surviving weights start from after each pruning step: one registry of reinit modes.

Each mode maps (init state, last trained state, late-rewind state, seed, iteration, arch) to the
state the next training starts from; the runner then multiplies it by the new masks, so a pruned
weight is exactly 0 and every surviving weight and bias equals the chosen state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import models
from ..core.seeds import derive_seed


@dataclass
class ReinitContext:
    arch: str
    seed: int
    iteration: int
    init: dict[str, torch.Tensor]
    trained: dict[str, torch.Tensor]
    rewind_point: dict[str, torch.Tensor] | None = None
    num_classes: int = 10
    in_channels: int = 1


def rewind(ctx: ReinitContext) -> dict[str, torch.Tensor]:
    """Lottery ticket: back to the values at initialisation."""
    return ctx.init


def finetune(ctx: ReinitContext) -> dict[str, torch.Tensor]:
    """Keep training from the trained values."""
    return ctx.trained


def late_rewind(ctx: ReinitContext) -> dict[str, torch.Tensor]:
    """Back to the values after ``rewind_epoch`` epochs of the dense training (Frankle et al. 2019)."""
    if ctx.rewind_point is None:
        raise RuntimeError("late_rewind needs the weights saved at rewind_epoch of the dense training")
    return ctx.rewind_point


def random_reinit(ctx: ReinitContext) -> dict[str, torch.Tensor]:
    """A fresh random initialisation for each iteration (Liu et al. 2018)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(ctx.seed, "reinit", ctx.iteration))
        model = models.build(ctx.arch, ctx.num_classes, ctx.in_channels)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


REINIT_MODES = {
    "rewind": rewind,
    "finetune": finetune,
    "late_rewind": late_rewind,
    "random_reinit": random_reinit,
}


def starting_state(mode: str, ctx: ReinitContext, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state the next training starts from, with pruned weights set to exactly 0."""
    state = {k: v.detach().clone() for k, v in REINIT_MODES[mode](ctx).items()}
    for layer, mask in masks.items():
        key = f"{layer}.weight"
        state[key] = state[key] * mask.to(state[key].dtype)
    return state
