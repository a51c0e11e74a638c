"""Is a different ticket just numerical noise? Masks of replicates (same config and seed, trained by computations
that differ only in float rounding) against masks of different seeds and of random masks.

Two results tables of one config are compared: ``table`` and its ``replicate`` (e.g. the same seeds trained
with ``PRUNING_KERNELS=torch``, whose conv blocks round differently from the fused kernels). Per iteration,
over every technique (and the chosen reinitialisation):

- ``replicate``: Jaccard distance of a run's mask to its replicate's (same technique, same seed);
- ``seeds``: Jaccard distance between masks of different seeds of one technique, within ``table``;
- ``random``: the distance two independent random masks of the same per-layer densities would have
  (``masks.random_mask_distance``), for the replicate pairs;
- ``acc_replicate`` and ``acc_seeds``: the mean absolute test-accuracy difference of those same pairs.

If replicate distances reach the seed distances, the mask a technique finds is decided by float rounding as much
as by the seed: a different ticket per run is then noise, not structure (finding 1, "many tickets").

The random techniques are left out by default: their masks are drawn from (seed, iteration) alone, so a replicate
finds the very same ones by construction and would pull the replicate distance toward 0 whatever the rounding does.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ..nets import techniques as _techniques
from .masks import jaccard_distance, random_distance_of
from .table import ParameterError, _files, _folder, _values, check, record, technique_order

COLUMNS = ["iteration", "sparsity", "replicate", "replicate_std", "seeds", "seeds_std", "random", "acc_replicate",
           "acc_seeds", "n_replicate", "n_seeds"]


def _mean(values) -> float:
    return float(np.mean(values)) if values else math.nan


def _std(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def trained_techniques(table: pd.DataFrame) -> list[str]:
    """The techniques of ``table`` whose masks follow from the trained weights (not random ones), in report order."""
    return [t for t in technique_order(table) if not (t in _techniques.TECHNIQUES and _techniques.TECHNIQUES[t].random)]


def mask_noise(table: pd.DataFrame, replicate: pd.DataFrame, reinit: str = "rewind", layer: str = "all",
               techniques=None) -> pd.DataFrame:
    """Per iteration: replicate vs replicate, seed vs seed and random-mask Jaccard distances, with accuracy gaps.

    Only (technique, seed, iteration) present in both tables are compared as replicates; seed pairs are every
    pair of distinct seeds of one technique in ``table`` at that iteration. ``techniques``: default every
    technique of ``table`` whose masks depend on training (:func:`trained_techniques`). Columns: :data:`COLUMNS`
    (``_std``: std over the pairs; ``n_*``: how many pairs).
    """
    check(table, reinit=reinit, layer=layer)
    check(replicate, reinit=reinit, layer=layer)
    techs = trained_techniques(table[table["reinit"] == reinit]) if techniques is None else list(techniques)
    a, b = _files(table, reinit), _files(replicate, reinit)
    common = sorted(k for k in a if k in b and k[0] in techs)
    if not common:
        raise ParameterError(f"{_folder(table)} and {_folder(replicate)} have no (technique, seed, iteration) in "
                             f"common under {reinit}; train the same seeds of the same config in both")
    acc_a, acc_b = _values(table, reinit, "test_acc"), _values(replicate, reinit, "test_acc")
    sparsity = _values(table, reinit, "sparsity")
    rows = []
    for it in sorted({k[2] for k in common}):
        rep, rnd, acc_rep, sp = [], [], [], []
        for t, s, i in (k for k in common if k[2] == it):
            ma, mb = record(a[t, s, i])["masks"], record(b[t, s, i])["masks"]
            rep.append(jaccard_distance(ma, mb)[layer])
            rnd.append(random_distance_of(ma, mb, layer))
            acc_rep.append(abs(acc_a[t, s, i] - acc_b[t, s, i]))
            sp.append(sparsity[t, s, i])
        seeds, acc_seeds = [], []
        for t in techs:
            present = sorted(s for (tt, s, i) in a if tt == t and i == it)
            for s1, s2 in itertools.combinations(present, 2):
                seeds.append(jaccard_distance(record(a[t, s1, it])["masks"], record(a[t, s2, it])["masks"])[layer])
                acc_seeds.append(abs(acc_a[t, s1, it] - acc_a[t, s2, it]))
        rows.append({"iteration": it, "sparsity": _mean(sp), "replicate": _mean(rep), "replicate_std": _std(rep),
                     "seeds": _mean(seeds), "seeds_std": _std(seeds), "random": _mean(rnd),
                     "acc_replicate": _mean(acc_rep), "acc_seeds": _mean(acc_seeds), "n_replicate": len(rep),
                     "n_seeds": len(seeds)})
    return pd.DataFrame(rows, columns=COLUMNS)
