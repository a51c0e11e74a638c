"""The tidy results table (one row per training) and one training's stored record."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import layout, published, records
from .experiment import read_experiment
from .files import read_json, read_tensors

TABLE_COLUMNS = ["arch", "dataset", "technique", "reinit", "seed", "iteration", "sparsity", "weights_remaining",
                 "params_remaining", "val_acc", "test_acc", "val_loss", "test_loss", "train_loss", "collapsed",
                 "seconds", "run_hash", "run_dir", "file"]

# A training whose final training loss is within this of ln(classes), the loss of a uniform guess, learned
# nothing: the table flags it (``collapsed``) so that no average takes it in silently.
COLLAPSE_TOLERANCE = 0.01
NUM_CLASSES = 10


def load_results(folder: str | Path, all_runs: bool = False) -> pd.DataFrame:
    """Load a results folder into one tidy table, one row per training.

    Columns: arch, dataset, technique, reinit, seed, iteration (pruning steps so far), sparsity
    (fraction of prunable weights removed), weights_remaining (prunable weights left),
    params_remaining (all weights and biases left), val_acc and test_acc (in %), val_loss, test_loss,
    train_loss, collapsed (final train loss within ``COLLAPSE_TOLERANCE`` of ln 10: the training learned
    nothing; or diverged), diverged (a NaN or infinite loss; after the other columns), seconds (training time), run_hash, run_dir, file (the training's ``.pt``), and one
    ``remaining.<layer>`` column per prunable layer. Only the runs listed in ``experiment.json`` are
    read unless ``all_runs``; unfinished runs contribute the trainings they have.
    """
    folder = Path(folder)
    exp = read_experiment(folder)
    if published.is_published(folder):
        return _ordered(published.load_table(folder))
    wanted = None if all_runs else {r["hash"] for r in exp["runs"]}
    rows = []
    for run_dir in sorted(folder.glob(f"{layout.RUN_PREFIX}*")):
        h = run_dir.name[len(layout.RUN_PREFIX):]
        if wanted is not None and h not in wanted:
            continue
        redo = f"to redo only this run, delete {run_dir} and run the same command again"
        if not (run_dir / layout.RUN_CONFIG).exists():
            continue  # created but killed before its config was written: nothing trained yet
        cfg = read_json(run_dir / layout.RUN_CONFIG, redo)["config"]
        for meta_path in sorted((run_dir / layout.TRAININGS).glob(layout.TRAINING_METRICS)):
            meta = read_json(meta_path, redo)
            row = {"arch": cfg["arch"], "dataset": cfg["dataset"], "technique": cfg["technique"],
                   "reinit": cfg["reinit"], "seed": cfg["seed"], "iteration": meta["iteration"],
                   "run_hash": h, "run_dir": str(run_dir), "file": str(meta_path.with_suffix(".pt"))}
            for key in ("sparsity", "weights_remaining", "params_remaining", "val_acc", "test_acc", "val_loss",
                        "test_loss", "train_loss", "seconds"):
                row[key] = meta.get(key)
            for layer, n in meta.get("remaining", {}).items():
                row[f"remaining.{layer}"] = n
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = pd.DataFrame(rows)
    table["collapsed"] = (table["train_loss"].astype(float) - math.log(NUM_CLASSES)).abs() <= COLLAPSE_TOLERANCE
    return _ordered(table)


def diverged(table: pd.DataFrame) -> pd.Series:
    """True for the trainings whose training or test loss is not finite (NaN or infinite): they diverged, and their
    accuracy is that of whatever class NaN logits pick, not a result."""
    losses = [table[c].astype(float) for c in ("train_loss", "test_loss") if c in table.columns]
    bad = pd.Series(False, index=table.index)
    for loss in losses:
        bad |= ~loss.map(math.isfinite)
    return bad



def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = table.copy()
    table["diverged"] = diverged(table)
    table["collapsed"] = table["collapsed"].astype(bool) | table["diverged"]  # neither learned anything
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[TABLE_COLUMNS + extra].sort_values(["technique", "reinit", "seed", "iteration"]).reset_index(drop=True)


def load_training(row_or_path) -> dict:
    """Everything stored for one training: ``masks`` {layer: bool tensor} (the layers ``store.masks`` keeps), ``weights`` {"conv1.weight": tensor, ...},
    ``logits`` (N, classes) float32, ``predictions`` (N,) int64, ``targets`` (N,) int64.

    Accepts a row of :func:`load_results` (or its ``file``), so ``load_training(table.iloc[0])`` works.
    The file's checksum is verified against its ``.json``. A published training (``file`` ending in
    ``#<row>``, :mod:`.published`) has no logits, only the weights the set keeps, and ``stability``.
    """
    key = row_or_path["file"] if not isinstance(row_or_path, (str, Path)) else row_or_path
    if published.split_key(key) is not None:
        return published.load_training(key)
    path = Path(row_or_path["file"] if not isinstance(row_or_path, (str, Path)) else row_or_path)
    meta = read_json(path.with_suffix(".json"), f"delete {path.parent.parent} and run the same command again")
    record = records.unpack(read_tensors(path, f"delete {path.parent.parent} and run the same command again",
                                         meta.get("sha256")))
    record["predictions"] = record["predictions"].long()
    record["targets"] = record["targets"].long()
    return record
