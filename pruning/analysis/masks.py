"""Mask similarity (question 1): Jaccard distances between masks, and what random masks would give.

A mask is True where a weight is kept. Seeds are paired: technique A with seed s is compared with
technique B with the same seed s.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from .table import _files, _mean_std, _np, _pairwise_over_seeds, _techniques_for, _values, check, record, \
    technique_order

def _jaccard_counts(a: dict, b: dict) -> dict[str, tuple[int, int]]:
    if set(a) != set(b):
        raise ValueError(f"masks cover different layers: {sorted(a)} vs {sorted(b)}")
    out = {}
    for name in a:
        ma, mb = _np(a[name]).astype(bool, copy=False), _np(b[name]).astype(bool, copy=False)
        if ma.shape != mb.shape:
            raise ValueError(f"layer {name}: mask shapes differ, {tuple(ma.shape)} vs {tuple(mb.shape)}")
        out[name] = (int(np.count_nonzero(ma & mb)), int(np.count_nonzero(ma | mb)))
    return out


def jaccard_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """1 - |A∩B| / |A∪B| of the kept (True) entries, per layer and over all layers together ("all").

    Two empty masks are identical: distance 0.
    """
    counts = _jaccard_counts(a, b)
    out = {name: (1.0 - inter / union) if union else 0.0 for name, (inter, union) in counts.items()}
    inter = sum(c[0] for c in counts.values())
    union = sum(c[1] for c in counts.values())
    out["all"] = (1.0 - inter / union) if union else 0.0
    return out



def _mask_distance(file_a: str, file_b: str, layer: str) -> float:
    return jaccard_distance(record(file_a)["masks"], record(file_b)["masks"])[layer]


def mask_distance_matrix(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=None,
                         layer: str = "all") -> pd.DataFrame:
    """Technique x technique Jaccard distance of same-seed masks at ``iteration``, mean over seeds.

    The diagonal is 0 (a technique's mask is its own); a pair without a common seed is NaN.
    """
    check(table, reinit=reinit, layer=layer)
    techniques = _techniques_for(table, techniques)
    check(table, iteration=iteration, reinit=reinit, techniques=techniques)
    def distance(ta, tb, fa, fb):
        return 0.0 if ta == tb else _mask_distance(fa, fb, layer)

    return _pairwise_over_seeds(_files(table, reinit, iteration), techniques, distance)


def mask_distance_curve(table: pd.DataFrame, reinit: str = "rewind", pairs=None, layer: str = "all") -> pd.DataFrame:
    """Jaccard distance of same-seed masks of technique pairs at every iteration.

    ``pairs``: list of (technique_a, technique_b); None = every unordered pair of distinct techniques.
    Columns: technique_a, technique_b, iteration, sparsity (mean over both techniques and the seeds),
    mean, std (over seeds), n (seeds), random (the distance random masks of the same per-layer
    densities would have, mean over seeds).
    """
    check(table, reinit=reinit, layer=layer)
    if pairs is None:
        order = technique_order(table[table["reinit"] == reinit])
        pairs = list(itertools.combinations(order, 2))
    pairs = [tuple(p) for p in pairs]
    check(table, reinit=reinit, techniques=sorted({t for p in pairs for t in p}))
    files = _files(table, reinit)
    sparsity = _values(table, reinit, "sparsity")
    rows = []
    for ta, tb in pairs:
        keys = sorted((s, i) for (t, s, i) in files if t == ta and (tb, s, i) in files)
        for it in sorted({i for _, i in keys}):
            seeds = [s for s, i in keys if i == it]
            dists = [_mask_distance(files[ta, s, it], files[tb, s, it], layer) for s in seeds]
            rand = [random_distance_of(record(files[ta, s, it])["masks"], record(files[tb, s, it])["masks"], layer)
                    for s in seeds]
            mean, std, n = _mean_std(dists)
            sp = float(np.mean([sparsity[t, s, it] for s in seeds for t in (ta, tb)]))
            rows.append({"technique_a": ta, "technique_b": tb, "iteration": it, "sparsity": sp,
                         "mean": mean, "std": std, "n": n, "random": float(np.mean(rand))})
    return pd.DataFrame(rows, columns=["technique_a", "technique_b", "iteration", "sparsity", "mean", "std", "n",
                                       "random"])


def rewind_vs_finetune(table: pd.DataFrame, layer: str = "all") -> pd.DataFrame:
    """Jaccard distance between the rewind and the finetune mask of the same technique and seed.

    Columns: technique, iteration, sparsity (mean over both modes and the seeds), mean, std, n (seeds).
    """
    check(table, reinit=["rewind", "finetune"], layer=layer)
    rewind, finetune = _files(table, "rewind"), _files(table, "finetune")
    sparsity = {(t, r, int(s), int(i)): float(x) for t, r, s, i, x in
                zip(table["technique"], table["reinit"], table["seed"], table["iteration"], table["sparsity"])}
    rows = []
    for tech in technique_order(table):
        keys = sorted((s, i) for (t, s, i) in rewind if t == tech and (t, s, i) in finetune)
        for it in sorted({i for _, i in keys}):
            seeds = [s for s, i in keys if i == it]
            mean, std, n = _mean_std([_mask_distance(rewind[tech, s, it], finetune[tech, s, it], layer) for s in seeds])
            sp = float(np.mean([sparsity[tech, r, s, it] for s in seeds for r in ("rewind", "finetune")]))
            rows.append({"technique": tech, "iteration": it, "sparsity": sp, "mean": mean, "std": std, "n": n})
    return pd.DataFrame(rows, columns=["technique", "iteration", "sparsity", "mean", "std", "n"])




# ----------------------------------------------------------------------------- the random-mask baseline


def random_mask_distance(layers) -> float:
    """Expected Jaccard distance of two independent random masks with given per-layer densities, pooled.

    ``layers``: (n, p, q) per layer: n weights, a fraction p kept by one mask and q by the other, each
    mask a uniformly random choice of its kept entries, independently of the other. Per layer
    E|A∩B| = n p q and E|A∪B| = n (p + q - p q); pooled over layers by counts, as
    :func:`jaccard_distance`'s "all": 1 - Σ n p q / Σ n (p + q - p q). (A ratio of expectations: for
    layers of thousands of weights it is the expected ratio to within a fraction of a percent.)
    Two empty masks are identical: 0.
    """
    inter = sum(n * p * q for n, p, q in layers)
    union = sum(n * (p + q - p * q) for n, p, q in layers)
    return 1.0 - inter / union if union else 0.0


def random_distance_of(a: dict, b: dict, layer: str = "all") -> float:
    """:func:`random_mask_distance` for the per-layer densities of masks ``a`` and ``b`` (``layer``: one or "all")."""
    names = list(a) if layer == "all" else [layer]
    layers = []
    for name in names:
        ma, mb = _np(a[name]).astype(bool, copy=False), _np(b[name]).astype(bool, copy=False)
        n = ma.size
        layers.append((n, np.count_nonzero(ma) / n if n else 0.0, np.count_nonzero(mb) / n if n else 0.0))
    return random_mask_distance(layers)


def random_distance_matrix(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=None,
                           layer: str = "all") -> pd.DataFrame:
    """Like :func:`mask_distance_matrix`, but the distance random masks of the same per-layer densities would have.

    The diagonal is the distance of two independent random masks of one technique's densities (not 0).
    """
    check(table, reinit=reinit, layer=layer)
    techniques = _techniques_for(table, techniques)
    check(table, iteration=iteration, reinit=reinit, techniques=techniques)

    def expected(ta, tb, fa, fb):
        return random_distance_of(record(fa)["masks"], record(fb)["masks"], layer)

    return _pairwise_over_seeds(_files(table, reinit, iteration), techniques, expected)


def pair_distances(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=None,
                   layer: str = "all") -> pd.DataFrame:
    """Per pair of distinct techniques and common seed: the measured and the random-mask Jaccard distance.

    Columns: technique_a, technique_b, seed, distance, random (the :func:`random_distance_of` baseline).
    """
    check(table, reinit=reinit, layer=layer)
    techniques = _techniques_for(table, techniques)
    check(table, iteration=iteration, reinit=reinit, techniques=techniques)
    files = _files(table, reinit, iteration)
    rows = []
    for ta, tb in itertools.combinations(techniques, 2):
        for s in sorted(s for (t, s) in files if t == ta and (tb, s) in files):
            ma, mb = record(files[ta, s])["masks"], record(files[tb, s])["masks"]
            rows.append({"technique_a": ta, "technique_b": tb, "seed": s, "distance": jaccard_distance(ma, mb)[layer],
                         "random": random_distance_of(ma, mb, layer)})
    return pd.DataFrame(rows, columns=["technique_a", "technique_b", "seed", "distance", "random"])
