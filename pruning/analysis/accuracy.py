"""Accuracy of the sub-networks: mean and spread over seeds, and what explains it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .table import ParameterError, _np, check, layer_names, record, technique_order

def accuracy_summary(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Mean and std over seeds of ``metric`` per technique, reinit and iteration.

    Columns: technique, reinit, iteration, sparsity (mean over seeds), mean, std (ddof=1; 0 for one
    seed), n (seeds).
    """
    if metric not in table.columns:
        numeric = [c for c in ("test_acc", "val_acc", "test_loss", "val_loss", "train_loss") if c in table.columns]
        raise ParameterError(f"unknown metric '{metric}' (available: {', '.join(numeric)})")
    check(table)
    if metric.startswith("val_") and len(table) and pd.to_numeric(table[metric], errors="coerce").isna().all():
        raise ParameterError(f"metric '{metric}': this set trained on the whole training set (data.val_size 0), so it "
                             f"has no validation accuracy; use metric 'test_acc'")
    if "diverged" in table.columns:  # a NaN network's accuracy is no result: left out of every mean
        table = table[~table["diverged"].astype(bool)]
    g = table.groupby(["technique", "reinit", "iteration"])
    out = pd.DataFrame({"sparsity": g["sparsity"].mean(), "mean": g[metric].mean(), "std": g[metric].std(ddof=1),
                        "n": g[metric].count()}).reset_index()
    out.loc[out["n"] <= 1, "std"] = 0.0
    order = {t: i for i, t in enumerate(technique_order(table))}
    out = out.sort_values(["technique", "reinit", "iteration"], key=lambda c: c.map(order) if c.name == "technique"
                          else c).reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    return out[["technique", "reinit", "iteration", "sparsity", "mean", "std", "n"]]




# ----------------------------------------------------------------------------- what explains an accuracy

from ..store import COLLAPSE_TOLERANCE  # noqa: E402 - the one definition, beside the table's `collapsed` column


def collapsed(table: pd.DataFrame, classes: int = 10, tolerance: float = COLLAPSE_TOLERANCE) -> pd.Series:
    """True for the trainings that collapsed: final train loss within ``tolerance`` of ln(``classes``).

    A network that predicts the uniform distribution has cross-entropy ln 10 = 2.3026 on 10 classes:
    it learned nothing, and its accuracy is that of a constant guess.
    """
    if "train_loss" not in table.columns:
        return pd.Series(False, index=table.index)
    return (table["train_loss"] - math.log(classes)).abs() <= tolerance


def collapsed_summary(table: pd.DataFrame, classes: int = 10, tolerance: float = COLLAPSE_TOLERANCE) -> pd.DataFrame:
    """Collapsed trainings per technique and reinit: how many, of how many, and the first iteration with one.

    Columns: technique, reinit, collapsed, trainings, first_iteration (NaN when none), acc_collapsed
    (mean test accuracy of the collapsed ones), acc_others (of the rest). Only rows with a collapse.
    """
    flag = collapsed(table, classes, tolerance)
    rows = []
    order = technique_order(table)
    for (tech, reinit), g in table.groupby(["technique", "reinit"], sort=False):
        f = flag.loc[g.index]
        if f.any():
            rows.append({"technique": tech, "reinit": reinit, "collapsed": int(f.sum()), "trainings": len(g),
                         "first_iteration": int(g.loc[f, "iteration"].min()),
                         "acc_collapsed": float(g.loc[f, "test_acc"].mean()),
                         "acc_others": float(g.loc[~f, "test_acc"].mean()) if (~f).any() else math.nan})
    out = pd.DataFrame(rows, columns=["technique", "reinit", "collapsed", "trainings", "first_iteration",
                                      "acc_collapsed", "acc_others"])
    return out.sort_values(["technique", "reinit"], key=lambda c: c.map(order.index) if c.name == "technique" else c
                           ).reset_index(drop=True)


def output_units(table: pd.DataFrame, reinit: str = "rewind", techniques=None) -> pd.DataFrame:
    """Output units left, and the accuracy ceiling they set, per technique and iteration (mean over seeds).

    The output layer is the last prunable layer. A unit of it whose every weight is pruned outputs a
    constant (its bias): the network cannot tell its class from the others. ``ceiling`` is the % of
    test images whose class still has a unit with a kept weight, an upper bound (up to the images a
    constant logit happens to win) on the accuracy. Columns: technique, iteration, units, classes,
    ceiling, test_acc.
    """
    check(table, reinit=reinit)
    sel = table[table["reinit"] == reinit]
    if techniques is not None:
        check(table, techniques=techniques)
        sel = sel[sel["technique"].isin(list(techniques) if not isinstance(techniques, str) else [techniques])]
    last = layer_names(table)[-1]
    rows = []
    for tech, it, f, acc in zip(sel["technique"], sel["iteration"], sel["file"], sel["test_acc"]):
        rec = record(f)
        mask = _np(rec["masks"][last]).astype(bool)
        alive = mask.reshape(mask.shape[0], -1).any(1)
        y = _np(rec["targets"]).astype(np.int64)
        known = y < len(alive)  # a class beyond the layer's units has no unit at all
        told = known & alive[np.minimum(y, len(alive) - 1)]
        rows.append({"technique": tech, "iteration": int(it), "units": int(alive.sum()), "classes": len(alive),
                     "ceiling": 100.0 * float(told.mean()), "test_acc": float(acc)})
    df = pd.DataFrame(rows, columns=["technique", "iteration", "units", "classes", "ceiling", "test_acc"])
    out = df.groupby(["technique", "iteration"], sort=False).mean().reset_index()
    order = technique_order(table)
    return out.sort_values(["technique", "iteration"], key=lambda c: c.map(order.index) if c.name == "technique"
                           else c).reset_index(drop=True)


def paired_difference(table: pd.DataFrame, a: tuple, b: tuple, metric: str = "test_acc") -> dict[int, float]:
    """{seed: metric(a) - metric(b)} over the seeds both have; ``a``, ``b`` = (technique, reinit, iteration)."""
    def per_seed(key):
        t, r, i = key
        d = table[(table["technique"] == t) & (table["reinit"] == r) & (table["iteration"] == i)]
        return dict(zip(d["seed"].astype(int), d[metric].astype(float)))

    va, vb = per_seed(a), per_seed(b)
    return {s: va[s] - vb[s] for s in sorted(set(va) & set(vb))}
