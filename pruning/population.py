"""The population trainer: the runs of one seed train together, one batched SGD step for all of them.

Runs of one seed see the same batches in the same order (``training.epoch_order(seed, iteration,
epoch, ...)`` depends on neither technique nor reinit mode), so ``M`` such runs can take each step
together on one shared batch:

- conv1 is one convolution over the shared batch with the ``M * 6`` filters of all members stacked;
- conv2 is a grouped convolution (``groups=M``), in channels_last memory order, which is what makes
  pooling and convolution fast on the CPU (measured in ``benchmarks/population.py``);
- the linear layers are batched matrix products (``baddbmm``).

Each member keeps everything that makes it the run it is, so its results equal those of the one-net
loop (``lifecycle.train_one``) up to float rounding:

- its own masks, multiplied into the weights inside the forward pass: the gradient of a pruned entry
  is exactly 0, its weight starts at exactly 0, so weight decay (0 * wd) and momentum (a buffer of
  zeros) leave it at exactly 0 after every step;
- its own starting weights and its own SGD: the update of ``torch.optim.SGD`` (weight decay added to
  the gradient, momentum buffer started from the first gradient, dampening 0, no Nesterov);
- its own mean cross-entropy loss per batch: the population minimises the sum of the members' losses,
  and since no parameter is shared each member's gradient is that of its own loss.

**Resumes are exact.** A member's float rounding depends on the shapes of the population it trains
in, not on the values of the other members (each output channel and each matrix of the batch is
computed on its own). So a group is fixed by the config: every run of one seed and one training setup,
in config order, always in the same slots. A run that has already stored the training being done (a
kill while the group was saving) keeps its slot as a *ghost* (zero weights, result discarded), so the
others train in exactly the shapes of an uninterrupted run. ``tests/test_population.py`` checks this
bit for bit.

The dense training (iteration 0) is the same for every member and is shared (``lifecycle.open_dense``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import lifecycle, models, training
from .config import ConfigError, RunConfig, TrainingConfig
from .datasets import Tensors

# LeNet's prunable layers in forward order: (name, kind).
LENET_LAYERS = (("conv1", "conv"), ("conv2", "conv"), ("fc1", "linear"), ("fc2", "linear"), ("fc3", "linear"))
CHANNELS_LAST = torch.channels_last


def check_arch(arch: str) -> None:
    if arch not in models.POPULATION_SAFE:
        raise ConfigError(f"the population trainer supports only {', '.join(sorted(models.POPULATION_SAFE))}, "
                          f"not '{arch}'; use --trainer single")


# ----------------------------------------------------------------------------- the batched network


class Population:
    """``M`` LeNets as stacked tensors: ``params['conv1.weight']`` has shape (M, 6, C, 3, 3), and so on.

    ``masks[layer]`` is a float 0/1 tensor of the weight's stacked shape (all ones where a member has
    no mask). Parameters are leaf tensors that require grad; :meth:`step` updates them in place.
    """

    def __init__(self, states: list[dict[str, torch.Tensor]], masks: list[dict[str, torch.Tensor] | None],
                 device: str | torch.device):
        self.m = len(states)
        self.names = [f"{layer}.{kind}" for layer, _ in LENET_LAYERS for kind in ("weight", "bias")]
        self.params = {}
        for name in self.names:
            stacked = torch.stack([s[name].detach().to(device, torch.float32) for s in states])
            self.params[name] = stacked.contiguous().requires_grad_(True)
        self.masks = {}
        for layer, _ in LENET_LAYERS:
            w = self.params[f"{layer}.weight"]
            ones = torch.ones(w.shape[1:], device=w.device)
            self.masks[layer] = torch.stack([
                mk[layer].to(w.device, torch.float32) if mk and layer in mk else ones for mk in masks])
            with torch.no_grad():  # a starting state is already masked; make sure of it
                w.mul_(self.masks[layer])
        self.buffers: list[torch.Tensor] | None = None  # momentum buffers, created at the first step

    def _weight(self, layer: str) -> torch.Tensor:
        return self.params[f"{layer}.weight"] * self.masks[layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (b, C, H, W): the batch every member sees. Returns logits (M, b, classes)."""
        m, b = self.m, x.shape[0]
        w1, w2 = self._weight("conv1"), self._weight("conv2")
        h = F.conv2d(x, w1.reshape(m * w1.shape[1], *w1.shape[2:]), self.params["conv1.bias"].reshape(-1))
        h = F.max_pool2d(F.relu(h.contiguous(memory_format=CHANNELS_LAST)), 2)
        h = F.conv2d(h, w2.reshape(m * w2.shape[1], *w2.shape[2:]), self.params["conv2.bias"].reshape(-1), groups=m)
        h = F.max_pool2d(F.relu(h), 2)
        h = h.contiguous().reshape(b, m, -1).transpose(0, 1)  # (M, b, 400), flattened per member as LeNet does
        for layer in ("fc1", "fc2", "fc3"):
            h = torch.baddbmm(self.params[f"{layer}.bias"].unsqueeze(1), h, self._weight(layer).transpose(1, 2))
            if layer != "fc3":
                h = F.relu(h)
        return h

    def train_step(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainingConfig) -> torch.Tensor:
        """One SGD step on the shared batch ``x`` (b, C, H, W), ``y`` (b,). Returns each member's mean loss (M,)."""
        b = x.shape[0]
        logits = self.forward(x)  # (M, b, classes)
        losses = F.cross_entropy(logits.reshape(self.m * b, -1), y.repeat(self.m), reduction="none")
        losses = losses.view(self.m, b).mean(1)
        self.step(losses.sum(), cfg)
        return losses.detach()

    def step(self, loss: torch.Tensor, cfg: TrainingConfig) -> None:
        """One SGD step on every member, as ``torch.optim.SGD(lr, momentum, weight_decay)`` does it."""
        params = [self.params[n] for n in self.names]
        grads = list(torch.autograd.grad(loss, params))
        with torch.no_grad():
            if cfg.weight_decay:
                grads = list(torch._foreach_add(grads, params, alpha=cfg.weight_decay))
            if cfg.momentum:
                if self.buffers is None:
                    self.buffers = [g.clone() for g in grads]
                else:
                    torch._foreach_mul_(self.buffers, cfg.momentum)
                    torch._foreach_add_(self.buffers, grads)
                grads = self.buffers
            torch._foreach_add_(params, grads, alpha=-cfg.lr)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Every member's logits on ``x`` (N, C, H, W) in one batched pass: (M, N, classes) on the CPU."""
        return torch.cat([self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)], 1).cpu()

    def states(self) -> list[dict[str, torch.Tensor]]:
        """Every member's plain state dict on the CPU: one copy of each stacked tensor, then views."""
        host = {name: self.params[name].detach().cpu() for name in self.names}
        return [{name: host[name][i].clone() for name in self.names} for i in range(self.m)]


def train_population(states: list[dict], masks: list[dict | None], data: Tensors, train_idx: torch.Tensor,
                     cfg: TrainingConfig, *, seed: int, iteration: int, evaluate_on=()):
    """Train ``M`` members of one seed together for ``cfg.epochs`` epochs, as ``training.train`` trains each.

    Every member draws the batches of ``train_idx`` in the order ``training.epoch_order(seed, iteration,
    epoch, ...)``. Returns each member's trained state (CPU, masks applied) and its stats:
    ``train_loss`` (mean loss of the last epoch) and ``seconds`` (the population's wall time / M); and, if
    ``evaluate_on`` lists image tensors, the trained members' logits on each ((M, N, classes), CPU).
    """
    m = len(states)
    if not (len(masks) == m) or m == 0:
        raise ValueError("train_population needs one state and one mask set per member")
    if cfg.augment:
        raise ConfigError("the population trainer shares one batch between members and cannot augment; "
                          "use --trainer single")
    device = data.train_x.device
    pop = Population(states, masks, device)
    idx = train_idx.to(device)
    n, bs = len(idx), cfg.batch_size
    start = time.perf_counter()
    totals = torch.full((m,), float("nan"), device=device)
    for epoch in range(cfg.epochs):
        order = training.epoch_order(seed, iteration, epoch, idx)
        totals = torch.zeros(m, device=device)
        for i in range(0, n, bs):
            batch = order[i:i + bs]
            totals += pop.train_step(data.train_x[batch], data.train_y[batch], cfg) * batch.shape[0]
    train_loss = (totals / n).tolist()
    seconds = (time.perf_counter() - start) / m
    stats = [{"train_loss": loss, "seconds": seconds} for loss in train_loss]
    if evaluate_on:
        return pop.states(), stats, [pop.logits(x) for x in evaluate_on]
    return pop.states(), stats


# ----------------------------------------------------------------------------- runs through the store


def group_key(rc: RunConfig) -> tuple:
    """Runs with equal keys train in one population: same seed (same batches), same optimiser, same data."""
    return (rc.arch, rc.dataset, rc.seed, dataclasses.astuple(rc.training), dataclasses.astuple(rc.data))


def groups(runs: list[RunConfig]) -> list[list[RunConfig]]:
    """The fixed populations of a config's runs, each in config order (see the module's note on resumes)."""
    out: dict[tuple, list[RunConfig]] = {}
    for rc in runs:
        out.setdefault(group_key(rc), []).append(rc)
    return list(out.values())


def _ghost(state: dict) -> dict:
    return {k: torch.zeros_like(v) for k, v in state.items()}


def run_group(group: list[RunConfig], results: Path, device: str, bar=None, say=print,
              share_dense: bool = True) -> None:
    """Run (or resume) one population: every run of ``group`` (the whole group, finished runs included,
    so that the population's shapes never depend on what was already done)."""
    for rc in group:
        check_arch(rc.arch)
    runs = [lifecycle.open_run(rc, Path(results), device, share_dense=share_dense, say=say) for rc in group]
    for run in runs:  # runs whose dense training is their own (late_rewind, or no sharing)
        if run.next == 0:
            lifecycle.train_one(run, say, bar, stop=1)
    while any(not run.finished for run in runs):
        k = min(run.next for run in runs if not run.finished)
        live = [run.next == k for run in runs]
        starts = [lifecycle.advance(run) if is_live else _ghost(run.init) for run, is_live in zip(runs, live)]
        masks = [run.masks if is_live else None for run, is_live in zip(runs, live)]
        lead = runs[live.index(True)]
        # Members of one group share the split and test set: one batched evaluation pass for all of them.
        trained, stats, (val, test) = train_population(
            starts, masks, lead.rd.data, lead.rd.split.train_idx, lead.rc.training, seed=lead.rc.seed, iteration=k,
            evaluate_on=(lifecycle.val_set(lead.rd)[0], lead.rd.test_x))
        for i, (run, is_live, state, member_stats) in enumerate(zip(runs, live, trained, stats)):
            if not is_live:
                continue
            evaluated = lifecycle.describe(run.rc, state, run.masks, run.rd, val[i], test[i], member_stats, k)
            lifecycle.finish(run, None, member_stats, say, evaluated=evaluated)
            if bar is not None:
                bar.update(1)
