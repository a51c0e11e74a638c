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
import torch

from ..nets import techniques as _techniques
from .masks import jaccard_distance, random_distance_of
from .table import ParameterError, _files, _folder, _np, _values, check, record, technique_order

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


# ----------------------------------------------------------------------------- hidden units aligned across seeds


def _as2d(mask) -> np.ndarray:
    m = _np(mask).astype(np.int32)
    return m.reshape(m.shape[0], -1)


def _inputs(mask2d: np.ndarray, units: int) -> np.ndarray:
    """A layer's mask as (previous layer's units, block, rows): its columns grouped by the unit they read from (a
    conv input channel's 3x3 taps, or a flattened conv channel's pixels)."""
    rows, cols = mask2d.shape
    return mask2d.reshape(rows, units, cols // units).transpose(1, 2, 0)


def align(ref: dict, other: dict, sweeps: int = 10) -> dict:
    """``other``'s masks with its hidden units permuted to overlap ``ref``'s as much as possible.

    The hidden units of every layer but the last (conv channels, fc neurons) have no identity across seeds: any
    permutation of them computes the same function. Per hidden layer, the permutation maximises the weights kept in
    both masks, incoming (the layer's rows) and outgoing (the next layer's columns of that unit), by a linear
    assignment (``scipy.optimize.linear_sum_assignment``), layer after layer until no permutation changes (the
    weight matching of Git Re-Basin, on masks). The first sweep reads incoming rows only, forward from the input, so
    a network and any permutation of its hidden units are aligned exactly. Layers keep their order in ``ref``.
    """
    layers = list(ref)
    A = [_as2d(ref[n]) for n in layers]
    B = [_as2d(other[n]) for n in layers]
    units = [a.shape[0] for a in A]
    perm = [np.arange(u) for u in units[:-1]]

    def dot(x, y):  # x @ y.T: counts below 2**24, exact in float32; one thread, since a pool's threads spin while
        # they wait for a core that other work holds (0.2 ms for fc1 against 8 ms in numpy's integer loops)
        a = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        b = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return (a @ b.T).numpy().astype(np.int64)

    def incoming(k):  # rows of layer k: other's columns re-ordered by the permutation of layer k-1
        if k == 0:
            return dot(A[0], B[0])
        pb = _inputs(B[k], units[k - 1])[perm[k - 1]]
        return dot(A[k], pb.transpose(2, 0, 1).reshape(B[k].shape[0], -1))

    def outgoing(k):  # columns of layer k+1 that read unit i, with other's layer k+1 rows permuted
        rows = perm[k + 1] if k + 1 < len(perm) else np.arange(units[k + 1])
        ia = _inputs(A[k + 1], units[k]).reshape(units[k], -1)
        ib = _inputs(B[k + 1][rows], units[k]).reshape(units[k], -1)
        return dot(ia, ib)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _sweep(sweeps, perm, incoming, outgoing)
    finally:
        torch.set_num_threads(threads)
    return _permuted(other, layers, units, perm)


def _sweep(sweeps: int, perm: list, incoming, outgoing) -> None:
    """Coordinate ascent over the hidden layers' permutations (``perm``, changed in place) until none changes."""
    from scipy.optimize import linear_sum_assignment

    for sweep in range(sweeps):
        changed = False
        for k in range(len(perm)):
            score = incoming(k) + (outgoing(k) if sweep else 0)
            _, cols = linear_sum_assignment(score, maximize=True)
            if not np.array_equal(cols, perm[k]):
                perm[k], changed = cols, True
        if not changed and sweep:
            break


def _permuted(other: dict, layers: list, units: list, perm: list) -> dict:
    """``other``'s masks with each hidden layer's units (and the next layer's inputs) in the order ``perm``."""
    out = {}
    for k, n in enumerate(layers):
        m = _np(other[n])
        if k > 0:
            shape = m.shape
            m2 = _inputs(m.reshape(shape[0], -1), units[k - 1])[perm[k - 1]].transpose(2, 0, 1).reshape(shape[0], -1)
            m = m2.reshape(shape)
        if k < len(perm):
            m = m[perm[k]]
        out[n] = torch.as_tensor(np.ascontiguousarray(m).astype(bool))
    return out


def random_like(masks: dict, rng: np.random.Generator) -> dict:
    """Random masks with each layer's shape and number of kept weights."""
    out = {}
    for n, m in masks.items():
        m = _np(m).astype(bool)
        flat = np.zeros(m.size, dtype=bool)
        flat[rng.choice(m.size, int(m.sum()), replace=False)] = True
        out[n] = torch.from_numpy(flat.reshape(m.shape))
    return out


def layer_distances(a: dict, b: dict) -> dict[str, float]:
    """Jaccard distance per layer, and their mean over the layers (``layers``): no layer outweighs the others."""
    d = jaccard_distance(a, b)
    per = {n: d[n] for n in a}
    finite = [v for v in per.values() if math.isfinite(v)]
    return {**per, "layers": float(np.mean(finite)) if finite else math.nan}


# ----------------------------------------------------------------------------- the noise floor and the curve

TICKET_TECHNIQUES = ("l1_us", "hybrid", "fc_only_l1_us")  # the techniques that can keep the dense accuracy
KINDS = ("rerun", "techniques", "seeds, aligned", "random, aligned", "random")


def _collapsed(table: pd.DataFrame, reinit: str) -> set[tuple]:
    from .confounds import collapsed_flags

    sel = table[table["reinit"] == reinit]
    bad = sel[collapsed_flags(sel)]
    return {(t, int(s), int(i)) for t, s, i in zip(bad["technique"], bad["seed"], bad["iteration"])}


def _rerun_pairs(table: pd.DataFrame, reruns, reinit: str, techniques) -> list[tuple]:
    """(technique, seed, iteration, file here, file of the rerun) for every training in both, neither collapsed."""
    a, bad = _files(table, reinit), _collapsed(table, reinit)
    out = []
    for rerun in reruns:
        if reinit not in set(rerun["reinit"]):
            continue
        b, bad_b = _files(rerun, reinit), _collapsed(rerun, reinit)
        out += [(k[0], k[1], k[2], a[k], b[k]) for k in sorted(a) if k in b and k[0] in techniques
                and k not in bad and k not in bad_b]
    return out


def rerun_floors(table: pd.DataFrame, reruns, reinit: str, iteration: int, techniques=None) -> dict[str, float]:
    """{technique: the mean over its reruns of (its mask's Jaccard distance to the rerun's, all layers) / (that of
    random masks of the same densities)} at ``iteration``: how far float rounding alone moves its mask, on the
    scale of finding 1's rule. ``reruns``: results tables of the same config and seeds trained with other
    rounding (``docs/replicates/``); pairs with a collapsed training are left out."""
    techs = trained_techniques(table) if techniques is None else list(techniques)
    values: dict[str, list] = {}
    for t, s, i, fa, fb in _rerun_pairs(table, reruns, reinit, techs):
        if i != iteration:
            continue
        ma, mb = record(fa)["masks"], record(fb)["masks"]
        rnd = random_distance_of(ma, mb, "all")
        if rnd > 0:
            values.setdefault(t, []).append(jaccard_distance(ma, mb)["all"] / rnd)
    return {t: float(np.mean(v)) for t, v in values.items()}


def noise_curve(table: pd.DataFrame, reruns=(), reinit: str = "rewind", techniques=TICKET_TECHNIQUES,
                iterations=None) -> pd.DataFrame:
    """Per iteration, kind, technique and layer: the mean Jaccard distance of pairs of masks (:data:`KINDS`):

    - ``rerun``: one technique and seed against a rerun's (``reruns``, float rounding only);
    - ``techniques``: two of ``techniques`` on one seed (technique ``"a vs b"``);
    - ``seeds, aligned``: one technique, seed s against seed s + 1 (the last against the first), after
      :func:`align` permutes the second's hidden units to the first's;
    - ``random, aligned``: random masks with those pairs' layer densities, aligned the same way;
    - ``random``: independent random masks with the rerun and technique pairs' densities (the expected distance).

    Layer: each layer and ``layers`` (their mean, so that fc1's 48,000 weights do not outweigh conv1's 54). Pairs
    with a collapsed training are left out. Columns: iteration, sparsity, kind, technique, layer, distance, std, n.
    """
    techs = [t for t in techniques if t in set(table["technique"])]
    files, bad = _files(table, reinit), _collapsed(table, reinit)
    its = sorted({k[2] for k in files if k[2] > 0}) if iterations is None else [int(i) for i in iterations]
    sparsity = _values(table, reinit, "sparsity")
    rows = []

    def add(kind, tech, it, d):
        for layer, v in d.items():
            rows.append({"iteration": it, "kind": kind, "technique": tech, "layer": layer, "distance": v})

    reruns_by_it: dict[int, list] = {}
    for t, s, i, fa, fb in _rerun_pairs(table, reruns, reinit, techs):
        reruns_by_it.setdefault(i, []).append((t, fa, fb))
    for it in its:
        for t, fa, fb in reruns_by_it.get(it, []):
            ma, mb = record(fa)["masks"], record(fb)["masks"]
            add("rerun", t, it, layer_distances(ma, mb))
            add("random", t, it, _random_layers(ma, mb))
        for t in techs:
            seeds = sorted(s for (tt, s, i) in files if tt == t and i == it and (t, s, i) not in bad)
            pairs = list(zip(seeds, seeds[1:] + seeds[:1])) if len(seeds) > 2 else list(zip(seeds[:1], seeds[1:]))
            for s1, s2 in pairs:
                ma, mb = record(files[t, s1, it])["masks"], record(files[t, s2, it])["masks"]
                add("seeds, aligned", t, it, layer_distances(ma, align(ma, mb)))
                rng = np.random.default_rng([s1, s2, it])
                ra, rb = random_like(ma, rng), random_like(mb, rng)
                add("random, aligned", t, it, layer_distances(ra, align(ra, rb)))
        for x, y in itertools.combinations(techs, 2):
            for s in sorted(s for (tt, s, i) in files if tt == x and i == it):
                if (y, s, it) not in files or (x, s, it) in bad or (y, s, it) in bad:
                    continue
                ma, mb = record(files[x, s, it])["masks"], record(files[y, s, it])["masks"]
                add("techniques", f"{x} vs {y}", it, layer_distances(ma, mb))
                add("random", f"{x} vs {y}", it, _random_layers(ma, mb))
    df = pd.DataFrame(rows, columns=["iteration", "kind", "technique", "layer", "distance"])
    g = df.groupby(["iteration", "kind", "technique", "layer"], sort=False)["distance"]
    out = pd.DataFrame({"distance": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    sp = {it: _mean([v for (t, s, i), v in sparsity.items() if i == it and t in techs]) for it in its}
    out.insert(1, "sparsity", out["iteration"].map(sp))
    return out


def _random_layers(a: dict, b: dict) -> dict[str, float]:
    per = {n: random_distance_of(a, b, n) for n in a}
    finite = [v for v in per.values() if math.isfinite(v)]
    return {**per, "layers": float(np.mean(finite)) if finite else math.nan}
