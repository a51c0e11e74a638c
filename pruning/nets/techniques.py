"""The nine pruning techniques of the poster, as a registry over ``torch.nn.utils.prune``.

A technique says, for conv and for linear layers, which ``torch.nn.utils.prune`` function prunes
them (or ``None``: the layer stays dense). One pruning step removes ``prune_fraction`` of what
remains in every pruned layer: ``torch.nn.utils.prune``'s containers apply the new amount to the
entries (or channels) still unpruned, ``round(amount * n_remaining)`` of them.

Masks are computed on the CPU from a freshly built module (no ``copy.deepcopy`` of pruned modules),
and random techniques draw from a generator seeded by (seed, iteration) only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from . import models
from ..core.seeds import derive_seed


@dataclass(frozen=True)
class Rule:
    """How one kind of layer is pruned: 'l1_unstructured', 'random_unstructured', 'ln_structured', 'random_structured'."""

    method: str
    n: float | None = None  # the norm for ln_structured

    @property
    def structured(self) -> bool:
        return self.method.endswith("structured") and not self.method.endswith("unstructured")


@dataclass(frozen=True)
class Technique:
    name: str           # registry key, used in configs and results
    label: str          # the poster's name, used in figures
    conv: Rule | None   # None: conv layers stay dense
    linear: Rule | None

    @property
    def random(self) -> bool:
        return any(r is not None and r.method.startswith("random") for r in (self.conv, self.linear))


L1_US = Rule("l1_unstructured")
TECHNIQUES: dict[str, Technique] = {t.name: t for t in [
    Technique("l1_us", "L1 US", L1_US, L1_US),
    Technique("random_us", "random US", Rule("random_unstructured"), Rule("random_unstructured")),
    Technique("l1_s", "L1 S", Rule("ln_structured", 1), Rule("ln_structured", 1)),
    Technique("l2_s", "L2 S", Rule("ln_structured", 2), Rule("ln_structured", 2)),
    Technique("linf_s", "L∞ S", Rule("ln_structured", math.inf), Rule("ln_structured", math.inf)),
    Technique("lneginf_s", "L-∞ S", Rule("ln_structured", -math.inf), Rule("ln_structured", -math.inf)),
    Technique("random_s", "random S", Rule("random_structured"), Rule("random_structured")),
    Technique("hybrid", "hybrid", Rule("ln_structured", 1), L1_US),
    Technique("fc_only_l1_us", "fc-only L1 US", None, L1_US),
]}


def label(name: str) -> str:
    return TECHNIQUES[name].label if name in TECHNIQUES else name


def _apply_rule(module: nn.Module, rule: Rule, amount: float, dim: int) -> None:
    if rule.method == "l1_unstructured":
        prune.l1_unstructured(module, "weight", amount=amount)
    elif rule.method == "random_unstructured":
        prune.random_unstructured(module, "weight", amount=amount)
    elif rule.method == "ln_structured":
        prune.ln_structured(module, "weight", amount=amount, n=rule.n, dim=dim)
    elif rule.method == "random_structured":
        prune.random_structured(module, "weight", amount=amount, dim=dim)
    else:  # pragma: no cover - the registry holds only the four above
        raise ValueError(rule.method)


def layer_rules(model: nn.Module, technique: str, output_layer: str = "prune") -> dict[str, Rule | None]:
    """Which rule prunes each prunable layer (None: never pruned)."""
    tech = TECHNIQUES[technique]
    layers = models.prunable_layers(model)
    out = {}
    for i, (name, module) in enumerate(layers):
        rule = tech.conv if isinstance(module, nn.Conv2d) else tech.linear
        if i == len(layers) - 1 and output_layer == "exempt":
            rule = None
        out[name] = rule
    return out


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None) -> nn.Module:
    """Attach masks to ``model`` through ``prune.custom_from_mask`` (layers absent from ``masks`` stay plain)."""
    for name, module in models.prunable_layers(model):
        if masks and name in masks:
            prune.custom_from_mask(module, "weight", masks[name].to(module.weight.device, torch.float32))
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The boolean mask of every prunable layer (all True for a layer that was never pruned)."""
    out = {}
    for name, module in models.prunable_layers(model):
        mask = getattr(module, "weight_mask", None)
        out[name] = (mask != 0) if mask is not None else torch.ones_like(module.weight, dtype=torch.bool)
    return {k: v.detach().cpu() for k, v in out.items()}


def effective_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain state dict (``conv1.weight``, ...) with masks applied: pruned entries are exactly 0."""
    state, raw = {}, model.state_dict()
    for key, value in raw.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("weight_orig"):
            base = key[: -len("_orig")]
            state[base] = (value * raw[base + "_mask"]).detach().clone()
        else:
            state[key] = value.detach().clone()
    return state


def prune_step(arch: str, state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None,
               technique: str, amount: float, *, seed: int, iteration: int, structured_dim: int = 0,
               output_layer: str = "prune", output_structured_dim: int | None = None,
               num_classes: int = 10, in_channels: int = 1) -> dict[str, torch.Tensor]:
    """One pruning step: the masks after removing ``amount`` of what remains, from trained ``state``.

    Pure function of its arguments: a fresh CPU model is built, ``state`` loaded, the current
    ``masks`` attached with ``custom_from_mask``, then the technique's ``torch.nn.utils.prune``
    call adds the new amount on top (the container prunes only the remaining entries).
    """
    model = models.build(arch, num_classes, in_channels)
    model.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
    apply_masks(model, masks)
    rules = layer_rules(model, technique, output_layer)
    layers = models.prunable_layers(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "mask", iteration))
        for i, (name, module) in enumerate(layers):
            rule = rules[name]
            if rule is None:
                continue
            dim = structured_dim
            if i == len(layers) - 1 and output_structured_dim is not None:
                dim = output_structured_dim
            _apply_rule(module, rule, amount, dim)
    return get_masks(model)


def remaining(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: int(v.sum()) for k, v in masks.items()}
