"""What a finished training stores and says: its record, its metrics and its log line, the same for both trainers."""
from __future__ import annotations

import math

import torch

from .. import store
from ..nets import techniques, training
from ..nets.config import RunConfig
from ..store import records


def evaluate(rc: RunConfig, model, rd, stats: dict, iteration: int):
    """Evaluate a trained model (masks attached): (trained state, stored record, metrics)."""
    state = {k: v.cpu() for k, v in techniques.effective_state(model).items()}
    val = training.evaluate(model, *val_set(rd)).logits
    test = training.evaluate(model, rd.test_x, rd.test_y).logits
    return describe(rc, state, techniques.get_masks(model), rd, val, test, stats, iteration)


def val_set(rd) -> tuple[torch.Tensor, torch.Tensor]:
    val_idx = rd.split.val_idx.to(rd.data.train_x.device)
    return rd.data.train_x[val_idx], rd.data.train_y[val_idx]


def describe(rc: RunConfig, state: dict, masks: dict, rd, val_logits: torch.Tensor,
             test_logits: torch.Tensor, stats: dict, iteration: int):
    """(trained state, stored record, metrics) of a training from its state, every layer's mask and its
    validation and test logits (CPU): what both trainers store."""
    val_y = rd.data.train_y[rd.split.val_idx.to(rd.data.train_y.device)].cpu()  # labels only: no image gather
    test_y = rd.test_y.cpu()
    val_loss = torch.nn.functional.cross_entropy(val_logits, val_y).item() if len(val_y) else None
    test_loss = torch.nn.functional.cross_entropy(test_logits, test_y).item()
    val_acc = int((val_logits.argmax(1) == val_y).sum()) / len(val_y) if len(val_y) else None
    test_acc = int((test_logits.argmax(1) == test_y).sum()) / len(test_y)
    remaining = techniques.remaining(masks)
    total = sum(m.numel() for m in masks.values())
    n_bias = sum(v.numel() for k, v in state.items() if not k.endswith(".weight") or k[:-7] not in masks)
    kept = set(records.select(dict.fromkeys(k.rsplit(".", 1)[0] for k in state), rc.store.weights, "weights"))
    weights = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] in kept}
    label_dtype = torch.uint8 if test_logits.shape[1] <= 256 else torch.int64
    record = {
        "iteration": iteration,
        "masks": masks,
        "weights": weights,
        "logits": test_logits if rc.store.logits else None,
        "predictions": test_logits.argmax(1).to(label_dtype),
        "targets": test_y.to(label_dtype),
    }
    metrics = {
        "iteration": iteration,
        "sparsity": 1.0 - sum(remaining.values()) / total,
        "weights_remaining": sum(remaining.values()),
        "params_remaining": sum(remaining.values()) + n_bias,
        "remaining": remaining,
        "val_acc": None if val_acc is None else round(100.0 * val_acc, 6), "val_loss": val_loss,
        "test_acc": round(100.0 * test_acc, 6), "test_loss": test_loss,
        "train_loss": stats["train_loss"], "seconds": stats["seconds"],
    }
    return state, record, metrics


def log_line(rc: RunConfig, metrics: dict) -> str:
    name = "dense" if rc.technique == store.DENSE else rc.technique
    return (f"{name:>13} {rc.reinit:<8} s{rc.seed} it {metrics['iteration']:02d}/{rc.iterations:02d}"
            f"  {100 * (1 - metrics['sparsity']):5.1f}% left"
            + (f"  val {metrics['val_acc']:5.2f}" if metrics["val_acc"] is not None else "")
            + f"  test {metrics['test_acc']:5.2f}  loss {metrics['train_loss']:.3f}  {metrics['seconds']:.1f}s"
            + ("" if math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["test_loss"]) else
               "  DIVERGED (a non-finite loss: flagged in the table, left out of the means; lower training.lr)"))
