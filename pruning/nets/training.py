"""Training and evaluation of one network: SGD over batches indexed from tensors on the device.

No DataLoader and no per-sample transforms: each epoch draws a permutation from a generator seeded
by (seed, iteration, epoch) and slices it into batches. Losses stay on the device; the host reads
them once per epoch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from .config import TrainingConfig
from .datasets import Split, Tensors
from ..core.seeds import derive_seed, generator


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    logits: torch.Tensor  # (N, classes), on the CPU


def epoch_order(seed: int, iteration: int, epoch: int, train_idx: torch.Tensor,
                data_order: str = "per_training") -> torch.Tensor:
    """The training indices in the order of one epoch (on ``train_idx``'s device): drawn from (seed,
    iteration, epoch), or with ``data_order`` 'same_every_round' from (seed, epoch), so that every pruning round
    of a seed sees the same sequence of batches."""
    if data_order == "same_every_round":
        g = generator(seed, "order", "every_round", epoch)
    else:
        g = generator(seed, "order", iteration, epoch)
    perm = torch.randperm(len(train_idx), generator=g)
    if train_idx.device.type == "cuda":  # from pinned memory, without blocking the host
        return train_idx[perm.pin_memory().to(train_idx.device, non_blocking=True)]
    return train_idx[perm]


def order_epoch(cfg: TrainingConfig, epoch: int) -> int:
    """Which epoch's order epoch ``epoch`` draws. With ``prune_from_epoch`` p and the same order in every round, the
    epochs after p start the sequence again (epoch p draws epoch 0's order), as in the released L1 US recipe, whose
    29-epoch branch re-seeds after the 1 epoch that its mask is read from."""
    p = cfg.prune_from_epoch
    if p is not None and cfg.data_order == "same_every_round" and epoch >= p:
        return epoch - p
    return epoch


def augment_draw(seed: int, iteration: int, epoch: int, step: int, batch: int,
                 padding: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's augmentation draw from (seed, iteration, epoch, step): per image whether it is flipped and
    the crop's top and left offsets into the padded image, each in [0, 2 * padding]."""
    g = generator(seed, "augment", iteration, epoch, step)
    flip = torch.rand(batch, generator=g) < 0.5
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=g)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=g)
    return flip, dy, dx


def augment(x: torch.Tensor, seed: int, iteration: int, epoch: int, step: int, padding: int = 2,
            flip: bool = True, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop and horizontal flip, drawn per image (:func:`augment_draw`), on the batch's device.

    ``fill`` None: flip, then pad with 0 (the training set's mean pixel once normalised) and crop.
    ``fill`` a per-channel value (raw pixel 0 once normalised): pad with it and crop, then flip; on the same draw
    this is torchvision's ``RandomCrop(h, padding)`` then ``RandomHorizontalFlip()`` on the raw image.
    """
    b, c, h, w = x.shape
    flips, dy, dx = augment_draw(seed, iteration, epoch, step, b, padding)
    flips = flips.to(x.device)[:, None, None, None]
    if fill is None:
        if flip:
            x = torch.where(flips, x.flip(-1), x)
        padded = F.pad(x, (padding,) * 4)
    else:
        padded = fill.to(x.device, x.dtype)[None, :, None, None].expand(b, c, h + 2 * padding, w + 2 * padding)
        padded = padded.clone()
        padded[:, :, padding:padding + h, padding:padding + w] = x
    rows = (torch.arange(h)[None, :] + dy[:, None]).to(x.device)  # (b, h)
    cols = (torch.arange(w)[None, :] + dx[:, None]).to(x.device)  # (b, w)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if fill is not None and flip:
        out = torch.where(flips, out.flip(-1), out)
    return out.contiguous()


def augment_batch(x: torch.Tensor, data: Tensors, cfg: TrainingConfig, seed: int, iteration: int, epoch: int,
                  step: int) -> torch.Tensor:
    """A training batch as the config augments it (unchanged when ``cfg.augment`` is off)."""
    if not cfg.augment:
        return x
    fill = data.black if cfg.augment_fill == "black" else None
    return augment(x, seed, iteration, epoch, step, cfg.augment_padding, cfg.augment_flip, fill)


def train(model: nn.Module, data: Tensors, split: Split, cfg: TrainingConfig, *, seed: int, iteration: int,
          on_epoch_end=None, progress=None) -> dict:
    """Train ``model`` in place for ``cfg.epochs`` epochs. Returns the mean training loss of the last epoch."""
    torch.manual_seed(derive_seed(seed, "train", iteration))  # dropout, if the model has any
    model.train()
    folded = fold_masks(model)
    try:
        return _train(model, data, split, cfg, seed, iteration, folded, on_epoch_end, progress)
    finally:
        unfold_masks(folded)


def fold_masks(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    """Fold ``torch.nn.utils.prune``'s reparametrisation for the step loop: each masked ``weight`` becomes a
    plain parameter equal to ``weight_orig * weight_mask`` (``prune.remove``); :func:`_train` masks its
    gradient before every step and :func:`unfold_masks` attaches the same mask again afterwards.

    Exact: the forward pass sees the same weights (x * 1.0 is x), the masked gradient is the one autograd
    gives ``weight_orig`` through the mask, so SGD (momentum included) moves every kept weight by the same
    bits and a pruned one stays 0; only ``weight_orig``'s pruned entries, which no output or stored state
    reads, are not carried along. It saves the mask products of every forward and backward pass: a masked
    batch-32 step took 319 -> 214 ms for AlexNet at 63x63 and 744 -> 507 ms for VGG11 at 32x32 here
    (2 cores, ``benchmarks/masking.py --arch``; unmasked: 199 and 479 ms).
    """
    folded = []
    for module in model.modules():
        mask = getattr(module, "weight_mask", None)
        if mask is not None and prune.is_pruned(module):
            prune.remove(module, "weight")
            folded.append((module, mask))
    return folded


def unfold_masks(folded: list[tuple[nn.Module, torch.Tensor]]) -> None:
    for module, mask in folded:
        prune.custom_from_mask(module, "weight", mask)


def _train(model, data, split, cfg, seed, iteration, folded, on_epoch_end, progress) -> dict:
    masked = [(module.weight, mask) for module, mask in folded]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    device = data.train_x.device
    train_idx = split.train_idx.to(device)
    n, bs = len(train_idx), cfg.batch_size
    start = time.perf_counter()
    last_loss = float("nan")
    for epoch in range(cfg.epochs):
        order = epoch_order(seed, iteration, order_epoch(cfg, epoch), train_idx, cfg.data_order)
        total = torch.zeros((), device=device)
        for step, i in enumerate(range(0, n, bs)):
            idx = order[i:i + bs]
            x, y = data.train_x[idx], data.train_y[idx]
            x = augment_batch(x, data, cfg, seed, iteration, epoch, step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for weight, mask in masked:
                weight.grad.mul_(mask)
            opt.step()
            total += loss.detach() * len(idx)
        last_loss = float(total) / n
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
        if progress is not None:
            progress.update(1)
    return {"train_loss": last_loss, "seconds": time.perf_counter() - start}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> Evaluation:
    if len(x) == 0:  # no validation set (data.val_size 0)
        return Evaluation(float("nan"), float("nan"), torch.zeros(0, 10))
    model.eval()
    logits = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    loss = F.cross_entropy(logits, y).item()
    acc = int((logits.argmax(1) == y).sum()) / len(y)
    model.train()
    return Evaluation(acc, loss, logits.float().cpu())
