"""The population trainer: the runs of one seed train together, one batched SGD step for all of them.

Runs of one seed see the same batches in the same order (``training.epoch_order(seed, iteration,
epoch, ...)`` depends on neither technique nor reinit mode), so ``M`` such runs can take each step
together on one shared batch:

- the two conv blocks (conv, 2x2 max pooling, ReLU) run for all members at once (``lenet_convs``): on
  the CPU in fused C++ kernels (``kernels``) that never store a conv output, only the pooled values
  and which window position won; on GPUs (or without a C++ compiler) in torch, conv1 as one matrix
  product over the batch's shared 3x3 patches and conv2 as a grouped convolution (``groups=M``);
- the linear layers are batched matrix products (``baddbmm``);
- forward and backward are written out by hand (no autograd): nothing is computed that the step does
  not need, and the largest buffers are allocated once and reused.

- a member's layer whose mask keeps few enough weights (``SPARSE_DENSITY``, a function of its own mask) is
  computed over its surviving weights only: a linear layer in ``sparse.SparseRows`` (the others in batched
  products over contiguous ranges of dense members), conv2 in the tap kernels (``kernels.Conv2Taps``);
  the SGD update reads and writes only the blocks of weights that hold a surviving one (``kernels.masked_sgd``,
  the same bits as multiplying the gradients by the masks and updating with torch);
  ``Population(..., sparse=False)`` (or ``PRUNING_KERNELS=dense``) keeps every layer dense and the update in
  torch.
- a member whose mask keeps few enough of the step's multiply-adds (``MEMBER_DENSITY``, a function of its own mask)
  trains whole in ``members.Members``: one C++ call per step for all such members (forward, loss, backward and SGD
  over the surviving weights, the batch in the SIMD lanes throughout). Such members sit after the others in the
  stacked tensors (``slot``); everything above works on the first ``md`` slots, and results come back in the order
  the members were given.

``benchmarks/population.py`` measures the gain over the one-net loop; ``benchmarks/step_variants.py``
times the layout choices; ``benchmarks/sparse_step.py`` the sparse path against the dense one at real masks.

Each member keeps everything that makes it the run it is, so its results equal those of the one-net
loop (``lifecycle.train_one``) up to float rounding:

- its own masks: its weights start masked and each gradient is multiplied by the mask (the gradient
  of ``weight * mask``), so a pruned entry starts at exactly 0, its gradient is exactly 0, and weight
  decay (0 * wd) and momentum (a buffer of zeros) leave it at exactly 0 after every step;
- its own starting weights and its own SGD: the update of ``torch.optim.SGD`` (weight decay added to
  the gradient, momentum buffer started from the first gradient, dampening 0, no Nesterov);
- its own mean cross-entropy loss per batch: its gradient with respect to the member's
  logits is (softmax - one-hot) / batch size, and no parameter is shared between members.

**Resumes are exact.** A member's float rounding depends on the shapes of the population it trains
in, not on the values of the other members (each output channel, each SIMD lane of the kernels and
each matrix of the batch is computed on its own). So a group is fixed by the config: every run of one
seed and one training setup, in config order, always in the same slots. A run that has already stored the training being done (a
kill while the group was saving) keeps its slot as a *ghost* (zero weights, result discarded), so the
others train in exactly the shapes of an uninterrupted run. ``tests/test_population.py`` checks this
bit for bit.

The dense training (iteration 0) is the same for every member and is shared (``lifecycle.open_dense``).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from . import kernels, lenet_convs
from .members import Members, cost_density
from .sparse import Conv1Live, SparseRows
from ..nets import models, training
from ..nets.config import ConfigError, TrainingConfig
from ..nets.datasets import Tensors

# LeNet's prunable layers in forward order: (name, kind).
LENET_LAYERS = (("conv1", "conv"), ("conv2", "conv"), ("fc1", "linear"), ("fc2", "linear"), ("fc3", "linear"))

# A member's layer takes the sparse path when the fraction of its weights that survive is at most this; above it
# the dense kernels are faster. A function of the member's own mask only, fixed while it trains, so resumes and
# ghost slots stay exact. -1: never.
# - Linear layers (``sparse.SparseRows``: only the surviving weights, forward and backward). Measured side by side
#   (1 thread, M=10, batch 32, forward + backward of one layer, 2 shared cores, 2026-12-01): the dense batched
#   product is faster than the kernel down to ~5% density for fc1 (0.1: 0.5-0.9x, 0.05: 0.9-1.2x, 0.01: ~1.0x),
#   and at every density for fc2 (0.5-0.6x at 0.01-0.1) and fc3 (0.1-0.3x): the kernel's fixed cost, transposing
#   each member's activations and gradients to put the batch in SIMD lanes, is as large as MKL's whole product at
#   these sizes. So only fc1 takes it, below 5%.
# - conv2 (``kernels.Conv2Taps``: the tap kernels, work proportional to the surviving weights). Measured side by
#   side (1 thread, M=10, batch 32, forward + backward, training paused, 2026-12-01, Intel Xeon): tap/dense time
#   1.70 at density 1, 1.05-1.60 at 0.5-0.7, 0.92-0.95 at 0.4, 0.81-0.86 at 0.3, 0.61-0.74 at 0.2, 0.63-0.73 at
#   0.1, 0.55-0.56 at 0.02, for random and for whole-filter masks alike; below 0.02 the fixed cost (each member's
#   inputs and input gradient moved between layouts) is what is left. So conv2 takes it at <= 35%.
SPARSE_DENSITY = {"fc1": 0.05, "fc2": -1.0, "fc3": -1.0, "conv2": 0.35}

# conv1 takes its live-channel kernels (``sparse.Conv1Live``: a filter its mask has emptied costs only its constant
# output) when at most this fraction of the population's conv1 filters keep a weight. Every pooled value, winner
# and gradient the update reads has the dense kernels' bits on either path, so this choice, unlike the ones above,
# may look at the whole population: no member's bits depend on it. Measured side by side (M=18, batch 32, 1
# thread, forward + backward, beside training, 2026-12-02, Intel Xeon): live/dense time 0.99 at 81 of 108 filters
# live, 0.72-0.79 at 49, 0.44-0.5 at 18, 0.34-0.42 at 5.
CONV1_LIVE = 0.75

# A member whose mask keeps at most this share of the step's multiply-adds (``members.cost_density``: surviving conv
# taps times the positions they are applied at, plus surviving linear weights, over the same for a dense LeNet) trains
# whole in ``members.Members`` (one C++ call per step for all such members, forward, loss, backward and update over
# its surviving weights, the batch in the SIMD lanes throughout) instead of the layer kernels above. A function of the
# member's own mask. Measured (benchmarks/sparse_step.py, paper population, M=10, 1 thread, 2026-12-03, AMD EPYC with
# AVX-512, the member kernel of that day): at cost density 1 the member kernel costs about what the dense fused step
# does (the paper population at iteration 0 with every member on it: 0.96x the dense step's speed), so the threshold
# only decides where a member leaves the dense step. 0.9 against 0.75, iterations 2-6 in one session: 1.35-2.26x the
# dense step against 1.04-1.61x, because the fc-only member (its conv layers dense: cost density 0.93 at iteration 1,
# 0.88 at 2, never below 0.68) then joins the others instead of paying a dense step of its own at M=1; 1.0 (every
# member, even unpruned) was no faster than 0.9 at iterations 0-1 (0.96x and 1.05x). Earlier, slower member kernels
# (2026-12-02, AVX2 only: 1.01x the dense step's time at cost density 0.65, 0.80x at 0.52) had it at 0.75. -1: never.
MEMBER_DENSITY = 0.9


def check_arch(arch: str) -> None:
    if arch not in models.POPULATION_SAFE:
        raise ConfigError(f"the population trainer supports only {', '.join(sorted(models.POPULATION_SAFE))}, "
                          f"not '{arch}'; use --trainer single")


# ----------------------------------------------------------------------------- the batched network


class Population:
    """``M`` LeNets as stacked tensors: ``params['conv1.weight']`` has shape (M, 6, C, 3, 3), and so on.

    ``masks[layer]`` is a float 0/1 tensor of the weight's stacked shape (all ones where a member has
    no mask). The weights are kept masked: a pruned entry starts at exactly 0 and its gradient is
    multiplied by 0 (what the gradient of ``weight * mask`` is), so it stays 0.

    The step is written out by hand, forward and backward (:meth:`train_step`, see the module's note);
    ``tests/test_population.py`` checks it against ``torch.optim.SGD`` on each masked one-net module.
    """

    def __init__(self, states: list[dict[str, torch.Tensor]], masks: list[dict[str, torch.Tensor] | None],
                 device: str | torch.device, sparse: bool = True):
        sparse = sparse and kernels.sparse_paths()
        self.m = len(states)
        self.names = [f"{layer}.{kind}" for layer, _ in LENET_LAYERS for kind in ("weight", "bias")]
        convs = lenet_convs.make(device, states[0]["conv2.weight"].shape[0])
        # Members that train whole in the member kernel (a function of each one's own mask) go after the others:
        # slot order = the dense part [0, md), then those; self.slot[i] is member i's slot.
        whole = [i for i, mk in enumerate(masks) if sparse and isinstance(convs, lenet_convs.Fused) and mk
                 and cost_density(mk) <= MEMBER_DENSITY]
        order = [i for i in range(self.m) if i not in whole] + whole
        self.md = self.m - len(whole)
        self.slot = [order.index(i) for i in range(self.m)]
        self._reordered = order != list(range(self.m))
        states, masks = [states[i] for i in order], [masks[i] for i in order]
        self.params = {name: torch.stack([s[name].detach().to(device, torch.float32) for s in states]).contiguous()
                       for name in self.names}
        self.masks = {}
        for layer, _ in LENET_LAYERS:
            w = self.params[f"{layer}.weight"]
            ones = torch.ones(w.shape[1:], device=w.device)
            self.masks[layer] = torch.stack([
                mk[layer].to(w.device, torch.float32) if mk and layer in mk else ones for mk in masks])
            w.mul_(self.masks[layer])  # a starting state is already masked; make sure of it
        self.whole = Members({n: t[self.md:] for n, t in self.params.items()},
                             {layer: mk[self.md:] for layer, mk in self.masks.items()}) if whole else None
        # the dense part's views (everything below works on them)
        self.dp = {n: t[:self.md] for n, t in self.params.items()}
        self.dmasks = {layer: mk[:self.md] for layer, mk in self.masks.items()}
        self.buffers: list[torch.Tensor] | None = None  # momentum buffers, created at the first step
        self._grads: dict[str, torch.Tensor] | None = None  # gradient buffers, created at the first step
        self.convs = convs  # conv blocks: fused or torch
        self._eval_convs = None  # the dense slots' forward pass for evaluation, when some members train whole
        # The sparse members (fused path only): linear layer -> (SparseRows, the dense slots as ranges); conv2's in
        # self.convs.taps
        self.sparse: dict[str, tuple[SparseRows, list[tuple[int, int]]]] = {}
        if sparse and isinstance(self.convs, lenet_convs.Fused):
            for layer, kind in LENET_LAYERS:
                mk = self.dmasks[layer]
                density = (mk != 0).flatten(1).sum(1) / mk.shape[1:].numel()
                slots = [i for i in range(self.md) if density[i] <= SPARSE_DENSITY.get(layer, -1.0)]
                if kind == "linear" and slots:
                    dense = kernels.runs([i for i in range(self.md) if i not in slots])
                    self.sparse[layer] = (SparseRows(mk, slots), dense)
                elif layer == "conv2" and slots:
                    self.convs.taps = kernels.Conv2Taps(mk, slots)
            live = Conv1Live(self.dmasks["conv1"])
            if self.md and live.nl <= CONV1_LIVE * self.md * self.dmasks["conv1"].shape[1]:
                self.convs.live = live
        # The SGD step in one pass over the surviving weights' blocks (kernels.masked_sgd: the same bits as torch's
        # update of masked gradients), the masks as bytes; on the torch path and the dense reference
        # (sparse=False) the gradients are multiplied by the float masks and torch's foreach ops update.
        self.mask_bytes = ({layer: (mk != 0).to(torch.uint8) for layer, mk in self.dmasks.items()}
                           if sparse and isinstance(self.convs, lenet_convs.Fused) else None)

    def _forward(self, x: torch.Tensor, train: bool = False, evaluate: bool = False):
        """The dense part's logits (md, n, classes) and what the backward pass needs; with ``evaluate``, by the dense
        kernels without sparse paths (no training buffers)."""
        if evaluate and self.whole is not None:
            if self._eval_convs is None:
                self._eval_convs = lenet_convs.make(x.device, self.params["conv2.weight"].shape[1])
            p, m, conv_path, sparse = self.dp, self.md, self._eval_convs, {}
        else:
            p, m, conv_path, sparse = self.dp, self.md, self.convs, self.sparse
        h, convs = conv_path.forward(p, m, x, train)  # (M, n, 16*5*5)
        acts = [h]
        for layer in ("fc1", "fc2", "fc3"):
            w, b = p[f"{layer}.weight"], p[f"{layer}.bias"]
            if layer not in sparse:
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:  # each dense range in one batched product, the sparse members in the kernel
                rows, dense = sparse[layer]
                y = h.new_empty(m, h.shape[1], w.shape[1])
                for i, j in dense:
                    torch.baddbmm(b[i:j].unsqueeze(1), h[i:j], w[i:j].transpose(1, 2), out=y[i:j])
                rows.forward(h, w, b, y)
                h = y
            if layer != "fc3":
                h = h.relu_()
                acts.append(h)
        return h, (convs, acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (b, C, H, W): the batch every member sees. Returns logits (M, b, classes), members in the order
        given."""
        if self.whole is None:
            logits = self._forward(x)[0]
        else:  # the dense slots, then the members that train whole, each by the forward pass it trains with
            parts = [self._forward(x, evaluate=True)[0]] if self.md else []
            logits = torch.cat(parts + [self.whole.logits(x)])
        return logits[self.slot] if self._reordered else logits

    def _backward(self, dz: torch.Tensor, saved, masked: bool = True) -> list[torch.Tensor]:
        """Every parameter's gradient (in ``names`` order) from the logits' gradient ``dz``; multiplied by the masks
        if ``masked`` (else a pruned entry's gradient may hold anything: :meth:`step` with ``masked=False`` reads
        the masks itself)."""
        p = self.dp
        convs, acts = saved
        if self._grads is None:  # the linear layers' gradients: allocated once, overwritten every step (the
            # pruned entries of sparse members are never written: zeros from the start)
            self._grads = {name: torch.zeros_like(p[name]) for name in self.names if name.startswith("fc")}
        grads = {}
        for layer, a in zip(("fc3", "fc2", "fc1"), reversed(acts)):
            w, gw = p[f"{layer}.weight"], self._grads[f"{layer}.weight"]
            grads[f"{layer}.bias"] = torch.sum(dz, 1, out=self._grads[f"{layer}.bias"])
            if layer not in self.sparse:
                grads[f"{layer}.weight"] = torch.bmm(dz.transpose(1, 2), a, out=gw)
                dz = torch.bmm(dz, w)
            else:
                rows, dense = self.sparse[layer]
                da = a.new_empty(a.shape)
                for i, j in dense:
                    torch.bmm(dz[i:j].transpose(1, 2), a[i:j], out=gw[i:j])
                    torch.bmm(dz[i:j], w[i:j], out=da[i:j])
                rows.backward(a, w, dz, gw, da)
                grads[f"{layer}.weight"], dz = gw, da
            if layer != "fc1":
                dz = torch.ops.aten.threshold_backward(dz, a, 0)
        grads.update(self.convs.backward(p, self.md, dz, convs))
        if masked:
            for layer, _ in LENET_LAYERS:
                grads[f"{layer}.weight"].mul_(self.dmasks[layer])
        return [grads[name] for name in self.names]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, cfg: TrainingConfig) -> torch.Tensor:
        """One SGD step on the shared batch ``x`` (b, C, H, W), ``y`` (b,). Returns each member's mean loss (M,)."""
        m, b = self.md, x.shape[0]
        parts = []
        if m:
            logits, saved = self._forward(x, train=True)
            logp = F.log_softmax(logits, -1)
            target = y.view(1, b, 1).expand(m, b, 1)
            parts.append(-logp.gather(2, target).squeeze(2).mean(1))
            # d(mean cross-entropy)/d logits = (softmax - one-hot) / b, for each member's own loss
            dz = logp.exp_().scatter_add_(2, target, torch.full((m, b, 1), -1.0, device=x.device)).div_(b)
            fused = self.mask_bytes is not None
            self.step(self._backward(dz, saved, masked=not fused), cfg, masked=not fused)
        if self.whole is not None:
            parts.append(self.whole.step(x, y, cfg.lr, cfg.momentum, cfg.weight_decay))
        losses = torch.cat(parts) if len(parts) > 1 else parts[0]
        return losses[self.slot] if self._reordered else losses

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], cfg: TrainingConfig, masked: bool = True) -> None:
        """One SGD step on every member, as ``torch.optim.SGD(lr, momentum, weight_decay)`` does it. ``masked``:
        the weights' gradients are already multiplied by the masks; if not (the fused path only), the step takes
        the gradient of ``weight * mask`` itself, over the surviving weights' blocks (``kernels.masked_sgd``)."""
        params = [self.dp[n] for n in self.names]
        if not masked:
            if self.mask_bytes is None:
                raise ValueError("an unmasked step needs the fused kernels")
            first = self.buffers is None and bool(cfg.momentum)
            if first:
                self.buffers = [torch.zeros_like(p) for p in params]
            for i, (name, p, g) in enumerate(zip(self.names, params, grads)):
                layer, kind = name.split(".")
                kernels.masked_sgd(p, g.contiguous(), self.buffers[i] if cfg.momentum else None,
                                   self.mask_bytes[layer] if kind == "weight" else None, cfg.lr, cfg.momentum,
                                   cfg.weight_decay, first)
            return
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
        return [{name: host[name][self.slot[i]].clone() for name in self.names} for i in range(self.m)]


def train_population(states: list[dict], masks: list[dict | None], data: Tensors, train_idx: torch.Tensor,
                     cfg: TrainingConfig, *, seed: int, iteration: int, evaluate_on=()):
    """Train ``M`` members of one seed together for ``cfg.epochs`` epochs, as ``training.train`` trains each.

    Every member draws the batches of ``train_idx`` in the order ``training.epoch_order(seed, iteration,
    epoch, ...)``. Returns each member's trained state (CPU, masks applied) and its stats:
    ``train_loss`` (mean loss of the last epoch) and ``seconds`` (the population's wall time / M), and with
    ``cfg.prune_from_epoch`` ``prune_source`` (the member's state after that epoch); and, if
    ``evaluate_on`` lists image tensors, the trained members' logits on each ((M, N, classes), CPU).
    """
    m = len(states)
    if not (len(masks) == m) or m == 0:
        raise ValueError("train_population needs one state and one mask set per member")
    device = data.train_x.device
    pop = Population(states, masks, device)
    idx = train_idx.to(device)
    n, bs = len(idx), cfg.batch_size
    start = time.perf_counter()
    totals = torch.full((m,), float("nan"), device=device)
    for epoch in range(cfg.epochs):
        order = training.epoch_order(seed, iteration, training.order_epoch(cfg, epoch), idx, cfg.data_order)
        totals = torch.zeros(m, device=device)
        for step, i in enumerate(range(0, n, bs)):
            batch = order[i:i + bs]
            x = data.train_x[batch]
            # drawn for (seed, iteration, epoch, step): the same for every member, so once
            x = training.augment_batch(x, data, cfg, seed, iteration, epoch, step)
            totals += pop.train_step(x, data.train_y[batch], cfg) * batch.shape[0]
        if epoch + 1 == cfg.prune_from_epoch:
            sources = pop.states()
    train_loss = (totals / n).tolist()
    seconds = (time.perf_counter() - start) / m
    stats = [{"train_loss": loss, "seconds": seconds} for loss in train_loss]
    if cfg.prune_from_epoch is not None:  # what the next pruning step reads (``lifecycle.finish``)
        for member_stats, source in zip(stats, sources):
            member_stats["prune_source"] = source
    if evaluate_on:
        return pop.states(), stats, [pop.logits(x) if len(x) else torch.zeros(m, 0, data.num_classes)
                                     for x in evaluate_on]  # no validation set: no logits
    return pop.states(), stats
