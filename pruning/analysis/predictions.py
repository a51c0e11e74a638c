"""Predictions (question 2): agreement between sub-networks, what chance would give, and ensembles."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import store
from ..core import paths
from ..nets import techniques as _techniques
from .table import POSTER_ITERATION  # noqa: F401 - re-exported: predictions.POSTER_ITERATION
from .table import (ParameterError, _as_list, _files, _folder, _mean_std, _np, _pairwise_over_seeds, _ranges,
                    _techniques_for, check, record)

REFERENCE_DIR = paths.REFERENCE
ENSEMBLE_METHODS = ("mean_prob", "vote")

# The poster's ensemble table: these techniques alone, then "all" of them, then the poster's best trio.
POSTER_SINGLES = ["l2_s", "l1_s", "l1_us", "hybrid", "random_s", "lneginf_s", "fc_only_l1_us"]
POSTER_TRIO = ["hybrid", "fc_only_l1_us", "l1_us"]

def agreement_matrix(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=None) -> pd.DataFrame:
    """Cell (i, j): number of test images on which techniques i and j predict the same class, mean over seeds.

    The diagonal is the number of test images. A pair without a common seed is NaN.
    """
    check(table, reinit=reinit)
    techniques = _techniques_for(table, techniques)
    check(table, iteration=iteration, reinit=reinit, techniques=techniques)
    def same_class(ta, tb, fa, fb):
        pa, pb = _np(record(fa)["predictions"]), _np(record(fb)["predictions"])
        if pa.shape != pb.shape:
            raise ValueError(f"{ta} and {tb} ({fa}, {fb}) were tested on different numbers of images")
        return int(np.count_nonzero(pa == pb))

    return _pairwise_over_seeds(_files(table, reinit, iteration), techniques, same_class)


def ensemble_predictions(logits: list[torch.Tensor] | None = None, predictions: list[torch.Tensor] | None = None,
                         method: str = "mean_prob", num_classes: int | None = None) -> torch.Tensor:
    """The predicted class of an ensemble, per test image.

    ``mean_prob``: argmax of the average of the members' softmax probabilities (needs ``logits``).
    ``vote``: the class most members predict (needs ``predictions``). Ties, in both methods, go to
    the lowest class index.
    """
    if method == "mean_prob":
        probs = np.zeros(_np(logits[0]).shape, dtype=np.float64)
        for x in logits:
            z = _np(x).astype(np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            probs += z / z.sum(axis=1, keepdims=True)
        return torch.from_numpy(np.argmax(probs / len(logits), axis=1))  # np.argmax: first maximum wins
    if method == "vote":
        preds = np.stack([_np(p).astype(np.int64) for p in predictions])
        k = num_classes or int(preds.max()) + 1
        votes = np.zeros((preds.shape[1], k), dtype=np.int64)
        for p in preds:
            votes[np.arange(len(p)), p] += 1
        return torch.from_numpy(np.argmax(votes, axis=1))
    raise ParameterError(f"unknown ensemble method '{method}' (available: {', '.join(ENSEMBLE_METHODS)})")


def ensemble_accuracy(table: pd.DataFrame, iteration: int, members, reinit: str = "rewind",
                      method: str = "mean_prob") -> pd.Series:
    """Per seed, the test accuracy in % of the ensemble of ``members`` at ``iteration``.

    ``method="mean_prob"`` averages the members' softmax probabilities; ``method="vote"`` takes the
    majority of their predicted classes. Ties go to the lowest class index. Only seeds that every
    member has are used. Returns a Series indexed by seed.
    """
    if method not in ENSEMBLE_METHODS:
        raise ParameterError(f"unknown ensemble method '{method}' (available: {', '.join(ENSEMBLE_METHODS)})")
    members = _as_list(members)
    if not members:
        raise ParameterError("an ensemble needs at least one member technique")
    check(table, iteration=iteration, reinit=reinit, techniques=members)
    files = _files(table, reinit, iteration)
    seeds = sorted(s for (t, s) in files if t == members[0] and all((m, s) in files for m in members))
    if not seeds:
        raise ParameterError(f"no seed has all of {', '.join(members)} at iteration {iteration} in {_folder(table)}")
    acc = {}
    for s in seeds:
        recs = [record(files[m, s]) for m in members]
        targets = recs[0]["targets"]
        if any(not np.array_equal(_np(r["targets"]), _np(targets)) for r in recs):
            raise ValueError(f"members {members} (seed {s}) were tested on different images")
        if method == "mean_prob" and any(r.get("published") for r in recs):
            pred = store.published.ensemble(recs[0], reinit, members)
            if pred is None and len(members) == 1:
                pred = recs[0]["predictions"]  # published only where it differs from the stored prediction
            if pred is None:
                its = store.published.ensemble_iterations(Path(recs[0]["published"]["seed_folder"]).parent.parent,
                                                           reinit, members)
                raise ParameterError(
                    f"{_folder(table)} publishes the softmax-mean ensemble of {'+'.join(members)} ({reinit}) only at "
                    f"iterations {_ranges(its) if its else 'none'} (it keeps no logits); use method='vote', or train "
                    f"the runs with `python -m pruning run` and the set's config")
        elif method == "mean_prob":
            if any(r.get("logits") is None for r in recs):
                raise ParameterError(f"{_folder(table)} stores no logits (store.logits: false); "
                                     f"use method='vote' or rerun with store.logits: true")
            pred = ensemble_predictions(logits=[r["logits"] for r in recs], method="mean_prob")
        else:
            k = recs[0]["logits"].shape[1] if recs[0].get("logits") is not None else None
            pred = ensemble_predictions(predictions=[r["predictions"] for r in recs], method="vote", num_classes=k)
        acc[s] = 100.0 * float(np.mean(_np(pred) == _np(targets)))
    return pd.Series(acc, name="accuracy", dtype=float).rename_axis("seed")


SEVEN = "poster's 7 (its \"all\")"   # the ensemble the poster's table calls "all": its seven techniques
NINE = "all 9"                          # every technique of the study


def poster_groups() -> dict[str, list[str]]:
    """The poster's ensemble table, in its order: name -> member techniques.

    The poster calls the ensemble of its seven single techniques "all"; here it is named :data:`SEVEN`
    (the study has nine techniques), and :func:`ensemble_groups` adds the ensemble of all nine.
    """
    groups = {_techniques.label(t): [t] for t in POSTER_SINGLES}
    groups[SEVEN] = list(POSTER_SINGLES)
    groups["hybrid + fc-only + L1 US"] = list(POSTER_TRIO)  # the poster's own name for it
    return groups


def ensemble_groups(present) -> dict[str, list[str]]:
    """The poster's groups whose techniques are all ``present``, then :data:`NINE` when all nine are."""
    present = set(present)
    groups = {name: m for name, m in poster_groups().items() if set(m) <= present}
    if set(_techniques.TECHNIQUES) <= present:
        groups[NINE] = list(_techniques.TECHNIQUES)
    return groups


def poster_reference(name: str) -> float:
    """The poster's accuracy (%) for a group of :func:`poster_groups` (NaN when the poster has none)."""
    return POSTER_ENSEMBLES.get("all" if name == SEVEN else name, math.nan)


def ensemble_table(table: pd.DataFrame, iteration: int, reinit: str = "rewind", groups=None,
                   method: str = "mean_prob") -> pd.DataFrame:
    """One row per ensemble: name, members (registry keys joined by ", "), mean, std, n (over seeds).

    ``groups``: {name: [techniques]} or a list of technique lists (named by their labels joined with
    " + "); None = the poster's table (:func:`poster_groups`), skipping groups with a technique the
    results do not hold.
    """
    present = set(table["technique"])
    if groups is None:
        groups = ensemble_groups(present)
    elif not isinstance(groups, dict):
        groups = {" + ".join(_techniques.label(t) for t in _as_list(m)): _as_list(m) for m in groups}
    rows = []
    for name, members in groups.items():
        members = _as_list(members)
        mean, std, n = _mean_std(list(ensemble_accuracy(table, iteration, members, reinit, method)))
        rows.append({"name": name, "members": ", ".join(members), "mean": mean, "std": std, "n": n})
    return pd.DataFrame(rows, columns=["name", "members", "mean", "std", "n"])


def _read_poster_ensembles(path: Path = REFERENCE_DIR / "poster_ensembles.csv") -> dict[str, float]:
    """The poster's ensemble accuracies (a reference from the paper, not our result): name -> accuracy in %."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(line for line in f if line.strip() and not line.startswith("#")))
    except FileNotFoundError:
        return {}
    return {row["name"]: float(row["accuracy"]) for row in rows}


POSTER_ENSEMBLES: dict[str, float] = _read_poster_ensembles()




# ----------------------------------------------------------------------------- the chance baseline


def chance_agreement(a1: float, a2: float, classes: int = 10) -> float:
    """Share of test images two independent classifiers of accuracies ``a1``, ``a2`` (0..1) agree on.

    Independent errors spread uniformly over the ``classes - 1`` wrong classes: both right with
    probability a1 a2, both wrong on the same class with (1 - a1)(1 - a2) / (classes - 1).
    """
    return a1 * a2 + (1 - a1) * (1 - a2) / (classes - 1)


def max_agreement(a1: float, a2: float) -> float:
    """The most two classifiers of accuracies ``a1``, ``a2`` can agree: 1 - |a1 - a2| (same right images, same mistakes)."""
    return 1.0 - abs(a1 - a2)


def agreement_pairs(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=None) -> pd.DataFrame:
    """Per pair of distinct techniques and common seed: agreement against chance and against the most possible.

    Columns: technique_a, technique_b, seed, acc_a, acc_b (fractions), agreement (fraction of test
    images with the same predicted class), chance (:func:`chance_agreement`), most
    (:func:`max_agreement`), excess ((agreement - chance) / (most - chance): 0 = agree as independent
    classifiers would, 1 = as much as their accuracies allow; NaN when most = chance).
    """
    check(table, reinit=reinit)
    techniques = _techniques_for(table, techniques)
    check(table, iteration=iteration, reinit=reinit, techniques=techniques)
    files = _files(table, reinit, iteration)
    rows = []
    for i, ta in enumerate(techniques):
        for tb in techniques[i + 1:]:
            for s in sorted(s for (t, s) in files if t == ta and (tb, s) in files):
                ra, rb = record(files[ta, s]), record(files[tb, s])
                pa, pb, y = _np(ra["predictions"]), _np(rb["predictions"]), _np(ra["targets"])
                k = ra["logits"].shape[1] if ra.get("logits") is not None else int(max(pa.max(), pb.max(), y.max())) + 1
                a1, a2 = float(np.mean(pa == y)), float(np.mean(pb == y))
                agree = float(np.mean(pa == pb))
                chance, most = chance_agreement(a1, a2, k), max_agreement(a1, a2)
                excess = (agree - chance) / (most - chance) if most - chance > 1e-12 else math.nan
                rows.append({"technique_a": ta, "technique_b": tb, "seed": s, "acc_a": a1, "acc_b": a2,
                             "agreement": agree, "chance": chance, "most": most, "excess": excess})
    return pd.DataFrame(rows, columns=["technique_a", "technique_b", "seed", "acc_a", "acc_b", "agreement", "chance",
                                       "most", "excess"])
