"""The population trainer: many runs of one architecture train together, one batched SGD step for all.

One LeNet at batch 32 is far too small to keep a GPU busy; each step is spent launching kernels. Here
``M`` members (runs) are stacked along a new leading dimension and trained in lockstep: the two conv
layers become grouped convolutions (``groups=M``) and the linear layers batched matrix products
(``baddbmm``), so one step launches the same few dozen kernels whatever ``M`` is.

Each member keeps everything that makes it the run it is, so its results equal those of
:func:`pruning.runner.run_single` up to float rounding:

- its own masks, multiplied into the weights inside the forward pass: the gradient of a pruned entry
  is exactly 0, its weight starts at exactly 0, so weight decay (0 * wd) and momentum (a buffer of
  zeros) leave it at exactly 0 after every step;
- its own split (``datasets.split`` by its seed) and its own data order
  (``training.epoch_order(seed, iteration, epoch, train_idx)``), indexed on the device each step;
- its own starting weights and its own SGD: the update of ``torch.optim.SGD`` (weight decay added to
  the gradient, momentum buffer started from the first gradient, dampening 0, no Nesterov);
- its own mean cross-entropy loss per batch: the population minimises the sum of the members' losses,
  and since no parameter is shared each member's gradient is that of its own loss.

Members train together when their training config and training-set size agree (so all have the same
batch boundaries, the last smaller batch included); others form separate groups. Everything else, the
store, pruning, reinitialisation and evaluation, goes through the same functions as ``run_single``:
``runner.next_start``, ``runner.build_model``, ``runner.finish_training`` and ``store.RunStore``.

The step loop never reads a value back to the host: the per-member losses are summed on the device and
read once per training.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import models, runner, store, training
from .config import ConfigError, RunConfig, TrainingConfig
from .datasets import Tensors

# LeNet's prunable layers in forward order, and how each is applied: ("conv", pool after it) or "linear".
LENET_LAYERS = (("conv1", "conv"), ("conv2", "conv"), ("fc1", "linear"), ("fc2", "linear"), ("fc3", "linear"))


def check_arch(arch: str) -> None:
    if arch not in models.POPULATION_SAFE:
        raise ConfigError(f"the population trainer supports only {', '.join(sorted(models.POPULATION_SAFE))}, "
                          f"not '{arch}'; use --trainer single")


# ----------------------------------------------------------------------------- the batched network


class Population:
    """``M`` LeNets as stacked tensors: ``params['conv1.weight']`` has shape (M, 6, C, 3, 3), and so on.

    ``masks[layer]`` is a float 0/1 tensor of the weight's stacked shape (all ones where a member has
    no mask yet). Parameters are leaf tensors that require grad; :meth:`step` updates them in place.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (b, M*C, H, W): member i's batch in channels [i*C, (i+1)*C). Returns logits (M, b, classes)."""
        m, b = self.m, x.shape[0]
        for layer, kind in LENET_LAYERS:
            w = self.params[f"{layer}.weight"] * self.masks[layer]
            bias = self.params[f"{layer}.bias"]
            if kind == "conv":
                x = F.conv2d(x, w.reshape(m * w.shape[1], *w.shape[2:]), bias.reshape(-1), groups=m)
                x = F.max_pool2d(F.relu(x), 2)
                continue
            if x.dim() == 4:  # after the last conv: (b, M*16, 5, 5) -> (M, b, 400), flattened per member
                x = x.reshape(b, m, -1).transpose(0, 1)
            x = torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))
            if layer != LENET_LAYERS[-1][0]:
                x = F.relu(x)
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainingConfig) -> torch.Tensor:
        """One SGD step on a batch ``x`` (b, M, C, H, W), ``y`` (b, M). Returns each member's mean loss (M,)."""
        b = x.shape[0]
        logits = self.forward(x.reshape(b, -1, *x.shape[3:]))  # (M, b, classes)
        losses = F.cross_entropy(logits.reshape(self.m * b, -1), y.t().reshape(-1), reduction="none")
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

    def state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s plain state dict on the CPU (its pruned entries are exactly 0: they never move)."""
        return {name: self.params[name][i].detach().cpu().clone() for name in self.names}


def train_population(states: list[dict], masks: list[dict | None], data: Tensors, train_idx: list[torch.Tensor],
                     cfg: TrainingConfig, *, seeds: list[int], iterations: list[int],
                     on_epoch_end=None) -> tuple[list[dict], list[dict]]:
    """Train ``M`` members together for ``cfg.epochs`` epochs, as ``training.train`` trains each alone.

    Member i starts from ``states[i]`` with ``masks[i]`` (None: dense), draws its batches from
    ``train_idx[i]`` in the order ``training.epoch_order(seeds[i], iterations[i], epoch, ...)``.
    ``on_epoch_end(epoch, population)`` is called after each epoch (1-based). Returns each member's trained
    state (CPU, masks applied) and its stats: ``train_loss`` (mean loss of the last epoch) and
    ``seconds`` (the population's wall time divided by M: each member's share).
    """
    m = len(states)
    if not (len(masks) == len(train_idx) == len(seeds) == len(iterations) == m) or m == 0:
        raise ValueError("train_population needs one state, mask set, index set, seed and iteration per member")
    n = len(train_idx[0])
    if any(len(t) != n for t in train_idx):
        raise ValueError("members of one population must have training sets of the same size")
    device = data.train_x.device
    pop = Population(states, masks, device)
    idx = [t.cpu() for t in train_idx]  # orders are drawn on the CPU and sent to the device once per epoch
    bs = cfg.batch_size
    start = time.perf_counter()
    totals = torch.full((m,), float("nan"), device=device)
    for epoch in range(cfg.epochs):
        # (n, M): column i is member i's epoch order, so a batch is a contiguous slice of rows.
        order = torch.stack([training.epoch_order(seeds[i], iterations[i], epoch, idx[i]) for i in range(m)], 1)
        order = order.to(device)
        totals = torch.zeros(m, device=device)
        for step, i in enumerate(range(0, n, bs)):
            batch = order[i:i + bs]  # (b, M)
            x = data.train_x[batch]  # (b, M, C, H, W)
            if cfg.augment:
                x = torch.stack([training.augment(x[:, j], seeds[j], iterations[j], epoch, step) for j in range(m)], 1)
            totals += pop.train_step(x, data.train_y[batch], cfg) * batch.shape[0]
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, pop)
    train_loss = (totals / n).tolist()
    seconds = (time.perf_counter() - start) / m
    trained = [pop.state(i) for i in range(m)]
    return trained, [{"train_loss": loss, "seconds": seconds} for loss in train_loss]


# ----------------------------------------------------------------------------- runs through the store


@dataclass
class Member:
    """One run of the population, between trainings: what ``run_single`` keeps in its loop variables."""

    rc: RunConfig
    st: store.RunStore
    rd: runner.RunData
    init: dict
    trained: dict | None
    masks: dict | None
    rewind_point: dict | None
    next: int  # the next training to do (0 = dense)

    @property
    def finished(self) -> bool:
        return self.next > self.rc.iterations


def open_member(rc: RunConfig, root: Path, device: str) -> Member:
    """Begin or resume one run exactly as ``run_single`` does."""
    st = store.RunStore(root, rc)
    st.begin()
    rd = runner.run_data(rc, device)
    ckpt = st.resume()
    if ckpt is None:
        init = runner.initial_state(rc)
        st.save_init(init)
        first, trained, masks = 0, None, None
    else:
        init = st.load_init()
        first, trained, masks = ckpt["iteration"] + 1, ckpt["state"], ckpt["masks"]
    return Member(rc, st, rd, init, trained, masks, st.load_rewind_point(), first)


def data_key(rc: RunConfig) -> tuple:
    """Runs with equal keys share one dataset tensor on the device."""
    return (rc.arch, rc.dataset, rc.data.input_size, rc.data.channels)


def group_key(mb: Member) -> tuple:
    """Members with equal keys can train in one population: same optimiser, same batch boundaries."""
    return (dataclasses.astuple(mb.rc.training), len(mb.rd.split.train_idx), runner.in_channels(mb.rc),
            id(mb.rd.data))


def run_population(pending: list[RunConfig], results: Path, device: str, bar=None, say=print,
                   max_members: int | None = None) -> None:
    """Run (or resume) ``pending`` runs into ``results``, training the runs that can together.

    Each outer step takes every unfinished run's next training, trains them in populations of
    ``max_members`` at most (default: all that fit one group), then, per run, evaluates, stores and
    prunes exactly as :func:`pruning.runner.run_single` does.
    """
    for rc in pending:
        check_arch(rc.arch)
    results = Path(results)
    parts: dict[tuple, list[RunConfig]] = {}
    for rc in pending:
        parts.setdefault(data_key(rc), []).append(rc)
    for part in parts.values():  # one dataset on the device at a time
        members = [open_member(rc, results, device) for rc in part]
        for mb in members:
            if mb.finished:  # every training stored, killed before done.json
                mb.st.mark_done({"iterations": mb.rc.iterations})
        active = [mb for mb in members if not mb.finished]
        while active:
            outer_step(active, device, bar, say, max_members)
            for mb in active:
                if mb.finished:
                    mb.st.mark_done({"iterations": mb.rc.iterations})
            active = [mb for mb in active if not mb.finished]


def outer_step(members: list[Member], device: str, bar, say, max_members: int | None) -> None:
    """Every member's next training: prune + reinit, train in groups, evaluate and store."""
    starts = {}
    for mb in members:
        mb.masks, starts[id(mb)] = runner.next_start(mb.rc, mb.next, mb.init, mb.trained, mb.masks, mb.rewind_point)
    groups: dict[tuple, list[Member]] = {}
    for mb in members:
        groups.setdefault(group_key(mb), []).append(mb)
    for group in groups.values():
        size = max_members or len(group)
        for lo in range(0, len(group), size):
            train_group(group[lo:lo + size], [starts[id(mb)] for mb in group[lo:lo + size]], device, bar, say)


def train_group(group: list[Member], starts: list[dict], device: str, bar, say) -> None:
    """Train one population from ``starts``, then evaluate, store and log each member's training."""
    cfg = group[0].rc.training

    def on_epoch(epoch, pop):  # late_rewind: keep the dense training's weights at rewind_epoch
        for i, mb in enumerate(group):
            if mb.next == 0 and mb.rc.reinit == "late_rewind" and epoch == mb.rc.rewind_epoch:
                mb.st.save_rewind_point(pop.state(i))

    trained, stats = train_population(
        starts, [mb.masks for mb in group], group[0].rd.data, [mb.rd.split.train_idx for mb in group], cfg,
        seeds=[mb.rc.seed for mb in group], iterations=[mb.next for mb in group], on_epoch_end=on_epoch)
    for mb, state, member_stats in zip(group, trained, stats):
        k = mb.next
        if k == 0 and mb.rc.reinit == "late_rewind":
            mb.rewind_point = mb.st.load_rewind_point()
        model = runner.build_model(mb.rc, state, mb.masks).to(device)
        mb.trained, record, metrics = runner.finish_training(mb.rc, model, mb.rd, member_stats, k)
        mb.masks = record["masks"]  # every layer's mask, exactly what a resumed member reads from the checkpoint
        mb.st.save_training(k, mb.trained, mb.masks, record, metrics)
        say(runner.log_line(mb.rc, metrics))
        if bar is not None:
            bar.update(1)
        mb.next = k + 1

