"""Weights (question 4): traces of single weights, their stability across sparsity levels, and accuracy."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .. import store
from .stats import pearson
from .table import ParameterError, _as_list, _files, _folder, _np, _ranges, _values, check, last_iteration, \
    record, technique_order

def _run_files(table: pd.DataFrame, technique: str, reinit: str, seed: int) -> dict[int, tuple[str, float]]:
    """{iteration: (file, sparsity)} of one run."""
    check(table, techniques=technique, reinit=reinit, seed=seed)
    sel = table[(table["technique"] == technique) & (table["reinit"] == reinit) & (table["seed"] == seed)]
    if sel.empty:
        raise ParameterError(f"{_folder(table)} has no run {technique} / {reinit} / seed {seed}")
    return {int(i): (f, float(s)) for i, f, s in zip(sel["iteration"], sel["file"], sel["sparsity"])}


def _layer_weight(rec: dict, layer: str, where: str) -> torch.Tensor:
    key = f"{layer}.weight"
    if key not in rec["weights"]:
        stored = sorted(k[: -len(".weight")] for k in rec["weights"] if k.endswith(".weight"))
        config = (store.peek(where) or {}).get("config_file", "configs/<name>.yaml")
        todo = (f"the published set keeps these only; for the others train its runs: python -m pruning run {config}"
                if rec.get("published") else "see store.weights in the config")
        raise ParameterError(f"{where} stores no trained weights of layer '{layer}' "
                             f"(stored: {', '.join(stored) or 'none'}; {todo})")
    return rec["weights"][key] * rec["masks"][layer]


def _iterations(run: dict, iterations, table, technique, reinit, seed) -> list[int]:
    if iterations is None:
        return sorted(run)
    its = [int(i) for i in _as_list(iterations)]
    for it in its:
        if it not in run:
            raise ParameterError(f"iteration {it} is not in {_folder(table)} for {technique} / {reinit} / seed {seed} "
                                 f"(available: {_ranges(run)})")
    return its


def weight_traces(table: pd.DataFrame, technique: str, reinit: str = "rewind", seed: int = 0, layer: str = "conv2",
                  n_weights: int = 40, iterations=None) -> pd.DataFrame:
    """The trained value of individual weights of ``layer`` across consecutive iterations of one run.

    The weights followed are the ``n_weights`` with the largest magnitude after the dense training
    (the run's first iteration; ties: lower flat index first). A pruned weight has value 0 and
    survives False. Columns: weight (flat index into the layer's weight), rank (0 = largest dense
    magnitude), iteration, sparsity, value, survives.
    """
    check(table, layer=layer)
    run = _run_files(table, technique, reinit, seed)
    its = _iterations(run, iterations, table, technique, reinit, seed)
    where = _folder(table)
    dense = _layer_weight(record(run[min(run)][0]), layer, where).flatten()
    order = np.argsort(-dense.abs().numpy(), kind="stable")[: max(0, int(n_weights))]
    idx = torch.from_numpy(order.copy())
    rows = []
    for it in its:
        rec = record(run[it][0])
        values = _layer_weight(rec, layer, where).flatten()[idx]
        kept = rec["masks"][layer].flatten()[idx]
        for rank, (w, v, k) in enumerate(zip(order.tolist(), values.tolist(), kept.tolist())):
            rows.append({"weight": w, "rank": rank, "iteration": it, "sparsity": run[it][1],
                         "value": float(v) if k else 0.0, "survives": bool(k)})
    return pd.DataFrame(rows, columns=["weight", "rank", "iteration", "sparsity", "value", "survives"])


def mean_abs_delta(before: dict, after: dict, layers: list[str]) -> tuple[float, int]:
    """Mean |w_after - w_before| over the weights kept in both records, and how many there are.

    ``before``/``after`` are records (``masks`` and ``weights``); NaN when no weight survives in both.
    A published record (``store.published``) carries these sums per layer (``stability``), computed from
    its full float32 weights when it was published, and they are used instead.
    """
    total, count = 0.0, 0
    if "stability" in after:
        for layer in layers:
            part, n = after["stability"][layer]
            total += part
            count += n
        return (total / count if count else math.nan), count
    for layer in layers:
        both = _np(before["masks"][layer]) & _np(after["masks"][layer])
        key = f"{layer}.weight"
        w0, w1 = _np(before["weights"][key])[both], _np(after["weights"][key])[both]
        total += float(np.abs(w1.astype(np.float64) - w0).sum())
        count += int(both.sum())
    return (total / count if count else math.nan), count


def weight_stability(table: pd.DataFrame, reinit: str = "rewind", layer: str | None = None) -> pd.DataFrame:
    """Mean |w_k - w_{k-1}| of the trained weights that survive at both k-1 and k, per run and k >= 1.

    ``layer`` None: every layer whose weights are stored. Columns: technique, seed, iteration (k),
    sparsity (at k), mean_abs_delta (NaN if no weight survives in both), n_weights (how many survive).
    """
    check(table, reinit=reinit, layer=None if layer in (None, "all") else layer)
    files = _files(table, reinit)
    sel = table[table["reinit"] == reinit]
    sparsity = _values(table, reinit, "sparsity")
    rows = []
    for tech in technique_order(sel):
        for seed in sorted({s for (t, s, _) in files if t == tech}):
            its = sorted(i for (t, s, i) in files if t == tech and s == seed)
            for it in its:
                if it == 0 or it - 1 not in its:
                    continue
                before, after = record(files[tech, seed, it - 1]), record(files[tech, seed, it])
                if "stability" in after:
                    layers = list(after["stability"]) if layer in (None, "all") else [layer]
                    if not set(layers) <= set(after["stability"]):
                        raise ParameterError(f"{_folder(table)} published no weight stability of layer '{layer}' "
                                             f"(published: {', '.join(after['stability']) or 'none'})")
                elif layer in (None, "all"):
                    layers = [n for n in after["masks"] if f"{n}.weight" in after["weights"]
                              and f"{n}.weight" in before["weights"]]
                    if not layers:
                        raise ParameterError(f"{_folder(table)} stores no trained weights "
                                             f"(see store.weights in the config)")
                else:
                    _layer_weight(after, layer, _folder(table))
                    _layer_weight(before, layer, _folder(table))
                    layers = [layer]
                delta, n = mean_abs_delta(before, after, layers)
                rows.append({"technique": tech, "seed": seed, "iteration": it, "sparsity": sparsity[tech, seed, it],
                             "mean_abs_delta": delta, "n_weights": n})
    return pd.DataFrame(rows, columns=["technique", "seed", "iteration", "sparsity", "mean_abs_delta", "n_weights"])


def stability_vs_accuracy(table: pd.DataFrame, reinit: str = "rewind", iteration: int | None = None,
                          layer: str | None = None) -> tuple[pd.DataFrame, float]:
    """Per technique: weight stability and accuracy, and their Pearson correlation across techniques.

    ``mean_abs_delta``: :func:`weight_stability` averaged over iterations 1..``iteration`` and seeds
    (``iteration`` None = :func:`last_iteration` of ``reinit``); ``test_acc``: mean over seeds at
    ``iteration``. The correlation is NaN with fewer than 3 techniques (or constant values).
    """
    check(table, reinit=reinit)
    if iteration is None:
        iteration = last_iteration(table[table["reinit"] == reinit])
    check(table, reinit=reinit, iteration=iteration)
    if iteration < 1:
        raise ParameterError(f"weight stability needs iteration >= 1, got {iteration}")
    stab = weight_stability(table, reinit, layer)
    stab = stab[stab["iteration"] <= iteration]
    at = table[(table["reinit"] == reinit) & (table["iteration"] == iteration)]
    rows = []
    for tech in technique_order(at):
        d = stab.loc[stab["technique"] == tech, "mean_abs_delta"]
        rows.append({"technique": tech, "mean_abs_delta": float(d.mean()) if d.notna().any() else math.nan,
                     "test_acc": float(at.loc[at["technique"] == tech, "test_acc"].mean())})
    out = pd.DataFrame(rows, columns=["technique", "mean_abs_delta", "test_acc"])
    return out, pearson(out["mean_abs_delta"], out["test_acc"])


def weight_drift(table: pd.DataFrame, reinit: str = "rewind", layer: str = "conv2", techniques=None) -> pd.DataFrame:
    """How far the surviving weights of ``layer`` are from their dense-trained values, per run and iteration.

    For every run and iteration k >= 1: the distribution over the weights kept at k of |w_k - w_0|,
    w_0 being the weight after the dense training (iteration 0). Columns: technique, seed, iteration,
    sparsity, n_weights, q25, median, q75, mean. The per-technique summary that replaces a plot of
    single-weight traces.
    """
    check(table, reinit=reinit, layer=layer)
    sel = table[table["reinit"] == reinit]
    if techniques is not None:
        check(table, techniques=techniques)
        sel = sel[sel["technique"].isin(_as_list(techniques))]
    files = _files(sel, reinit)
    sparsity = _values(table, reinit, "sparsity")
    where = _folder(table)
    rows = []
    for (tech, seed, it), f in sorted(files.items(), key=lambda kv: (technique_order(sel).index(kv[0][0]),) + kv[0][1:]):
        if it == 0 or (tech, seed, 0) not in files:
            continue
        dense = _np(_layer_weight(record(files[tech, seed, 0]), layer, where)).astype(np.float64)
        rec = record(f)
        kept = _np(rec["masks"][layer]).astype(bool)
        delta = np.abs(_np(_layer_weight(rec, layer, where)).astype(np.float64) - dense)[kept]
        q = np.percentile(delta, [25, 50, 75]) if delta.size else [math.nan] * 3
        rows.append({"technique": tech, "seed": seed, "iteration": it, "sparsity": sparsity[tech, seed, it],
                     "n_weights": int(delta.size), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
                     "mean": float(delta.mean()) if delta.size else math.nan})
    return pd.DataFrame(rows, columns=["technique", "seed", "iteration", "sparsity", "n_weights", "q25", "median",
                                       "q75", "mean"])
