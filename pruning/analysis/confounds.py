"""What else could drive a finding: collapsed trainings, lost output units, accuracy gaps, mixed technique families.

- :func:`collapsed_flags` and :func:`collapsed_at`: the trainings that learned nothing (a constant guess, or a
  network that diverged). Every finding leaves them out and says how many (:func:`left_out`).
- :func:`collapse_rates`: per technique, reinit and iteration, how many trainings collapsed, with a 95% Wilson
  interval of the rate.
- :func:`class_differences`: two techniques' accuracies on every test image and on the images of the classes
  both can still output (a structured technique that prunes the output layer loses classes).
- :func:`similar`: pairs of working networks whose accuracies lie within :data:`SIMILAR_ACCURACY` points.
- :func:`stability_r`: finding 6's correlation per seed over any group of techniques and any layer.
- :func:`unstructured`: the techniques that prune single weights in every layer they prune.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..nets import techniques as _techniques
from .accuracy import collapsed
from .stats import pearson
from .table import _files, _np, layer_names, record, technique_order

SIMILAR_ACCURACY = 2.0  # points: two networks "perform similarly" when their test accuracies are this close
_Z = 1.959964


def has_records(table: pd.DataFrame) -> bool:
    """Whether every row of ``table`` names a stored training (masks, predictions), not only its numbers."""
    return "file" in table.columns and len(table) > 0 and bool(table["file"].notna().all())


def collapsed_flags(table: pd.DataFrame) -> pd.Series:
    """True per row for a training that collapsed or diverged (the table's ``collapsed`` column where it has one)."""
    flag = collapsed(table)  # from the training loss, so that a table edited after loading is read right
    if "collapsed" in table.columns:
        flag = flag | table["collapsed"].astype(bool)
    if "diverged" in table.columns:
        flag = flag | table["diverged"].astype(bool)
    return flag


def collapsed_at(table: pd.DataFrame, reinit: str, iteration: int) -> set[tuple[str, int]]:
    """(technique, seed) of the trainings of ``reinit`` at ``iteration`` that collapsed or diverged."""
    sel = table[(table["reinit"] == reinit) & (table["iteration"] == iteration)]
    bad = sel[collapsed_flags(sel)]
    return {(t, int(s)) for t, s in zip(bad["technique"], bad["seed"])}


def collapsed_upto(table: pd.DataFrame, reinit: str, iteration: int) -> set[tuple[str, int]]:
    """(technique, seed) of the runs of ``reinit`` with a training that collapsed or diverged at iterations 0..``iteration``."""
    sel = table[(table["reinit"] == reinit) & (table["iteration"] <= iteration)]
    bad = sel[collapsed_flags(sel)]
    return {(t, int(s)) for t, s in zip(bad["technique"], bad["seed"])}


def left_out(n_out: int, n_all: int, what: str = "trainings") -> str:
    """ "2 of 20 trainings collapsed and are left out" (or "no training collapsed")."""
    if not n_out:
        return f"none of {n_all} {what} collapsed"
    return f"{n_out} of {n_all} {what} collapsed and are left out"


def counted(n_bad: int, n_all: int, what: str = "trainings") -> str:
    """ "2 of 10 trainings collapsed (kept: ...)": for the findings whose quantity is an accuracy, where a collapse is
    the loss of accuracy itself and stays in."""
    if not n_bad:
        return f"none of {n_all} {what} collapsed"
    return f"{n_bad} of {n_all} {what} collapsed (kept: a collapse is a loss of accuracy)"


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate k / n, in % (NaN, NaN for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = k / n, _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def collapse_rates(table: pd.DataFrame, reinit: str | None = None) -> pd.DataFrame:
    """Per technique, reinit and iteration: trainings, how many collapsed (or diverged), the rate in % and its 95%
    Wilson interval (low, high). ``reinit`` None: every reinit of the table."""
    sel = table if reinit is None else table[table["reinit"] == reinit]
    flag = collapsed_flags(sel)
    rows = []
    for (t, r, it), g in sel.groupby(["technique", "reinit", "iteration"], sort=False):
        k, n = int(flag.loc[g.index].sum()), len(g)
        low, high = wilson(k, n)
        rows.append({"technique": t, "reinit": r, "iteration": int(it), "trainings": n, "collapsed": k,
                     "rate": 100.0 * k / n, "low": low, "high": high})
    out = pd.DataFrame(rows, columns=["technique", "reinit", "iteration", "trainings", "collapsed", "rate", "low",
                                      "high"])
    order = {t: i for i, t in enumerate(technique_order(sel))} if len(sel) else {}
    return out.sort_values(["technique", "reinit", "iteration"], key=lambda c: c.map(order) if c.name == "technique"
                           else c).reset_index(drop=True)


def output_classes(rec: dict, last: str) -> np.ndarray:
    """Bool per class: does the output unit of that class keep at least one weight (else it outputs a constant)."""
    mask = _np(rec["masks"][last]).astype(bool)
    return mask.reshape(mask.shape[0], -1).any(1)


def class_differences(table: pd.DataFrame, reinit: str, a: str = "random_s", b: str = "random_us") -> pd.DataFrame:
    """Per seed and iteration, ``a``'s test accuracy minus ``b``'s, on every test image (``all``) and on the images
    whose class both can still output (``shared``; :func:`output_classes` of the last layer), in points.

    Columns: seed, iteration, all, shared, classes (how many classes both can output), collapsed (either training).
    """
    files = _files(table, reinit)
    flag = dict(zip(zip(table["technique"], table["reinit"], table["seed"].astype(int), table["iteration"].astype(int)),
                    collapsed_flags(table)))
    last = layer_names(table)[-1]
    rows = []
    for (t, s, i) in sorted(k for k in files if k[0] == a and (b, k[1], k[2]) in files):
        ra, rb = record(files[a, s, i]), record(files[b, s, i])
        y = _np(ra["targets"]).astype(np.int64)
        pa, pb = _np(ra["predictions"]), _np(rb["predictions"])
        alive = output_classes(ra, last) & output_classes(rb, last)
        keep = (y < len(alive)) & alive[np.minimum(y, len(alive) - 1)]
        shared = (100.0 * (float(np.mean(pa[keep] == y[keep])) - float(np.mean(pb[keep] == y[keep])))
                  if keep.any() else math.nan)
        rows.append({"seed": s, "iteration": i, "all": 100.0 * (float(np.mean(pa == y)) - float(np.mean(pb == y))),
                     "shared": shared, "classes": int(alive.sum()),
                     "collapsed": bool(flag.get((a, reinit, s, i), False) or flag.get((b, reinit, s, i), False))})
    return pd.DataFrame(rows, columns=["seed", "iteration", "all", "shared", "classes", "collapsed"])


def similar(pairs: pd.DataFrame, points: float = SIMILAR_ACCURACY) -> pd.DataFrame:
    """The rows of ``predictions.agreement_pairs`` whose two accuracies (fractions) lie within ``points`` points."""
    return pairs[(100.0 * (pairs["acc_a"] - pairs["acc_b"]).abs()) <= points + 1e-9]


def unstructured(techniques) -> list[str]:
    """The techniques that prune single weights wherever they prune (no structured rule): L1 US, random US, fc-only."""
    out = []
    for t in techniques:
        tech = _techniques.TECHNIQUES.get(t)
        if tech is not None and not any(r is not None and r.structured for r in (tech.conv, tech.linear)):
            out.append(t)
    return out


def stability_r(stab: pd.DataFrame, accuracy: dict, out: set, techniques=None) -> dict[int, float]:
    """Per seed: the Pearson r across ``techniques`` (default all) of the mean |Δw| (``weights.weight_stability``
    rows, already cut at the iteration) and the accuracy (``accuracy[technique][seed]``), leaving out the
    (technique, seed) in ``out`` (collapsed); NaN values dropped."""
    keep = [(t, int(s)) not in out and (techniques is None or t in techniques)
            for t, s in zip(stab["technique"], stab["seed"])]
    stab = stab[keep]
    values = {}
    for s, g in stab.groupby("seed"):
        d = g.groupby("technique")["mean_abs_delta"].mean()
        values[int(s)] = pearson(d.values, [accuracy.get(t, {}).get(int(s), math.nan) for t in d.index])
    return {s: v for s, v in values.items() if math.isfinite(v)}
