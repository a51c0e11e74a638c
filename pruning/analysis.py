"""Analyses behind the figures: pure functions over the tidy results table and the stored trainings.

The table is :func:`pruning.store.load_results` (one row per training); a training's tensors come from
:func:`record` (a cached :func:`pruning.store.load_training`). Conventions used everywhere:

- techniques are their registry keys in data (``l1_us``, ``hybrid``); :func:`pruning.techniques.label`
  is for display only (and for the names of the poster's ensembles);
- seeds are paired: technique A with seed s is compared with technique B with the same seed s, and a
  statistic over seeds is the mean (std with ddof=1, 0 for a single seed) over the seeds both have;
- accuracies are in %; sparsity is the fraction of prunable weights removed (0..1);
- a mask is True where a weight is kept; stored weights are already multiplied by their masks.

A bad notebook parameter (an iteration, technique, seed or layer that the results do not hold) raises
:class:`ParameterError`, a one-line message that names the bad value and the available ones.
"""
from __future__ import annotations

import csv
import itertools
import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import store, techniques as _techniques

REFERENCE_DIR = store.REPO_ROOT / "data" / "reference"
ENSEMBLE_METHODS = ("mean_prob", "vote")

# The poster's ensemble table: these techniques alone, then "all" of them, then the poster's best trio.
POSTER_SINGLES = ["l2_s", "l1_s", "l1_us", "hybrid", "random_s", "lneginf_s", "fc_only_l1_us"]
POSTER_TRIO = ["hybrid", "fc_only_l1_us", "l1_us"]


class ParameterError(ValueError):
    """A notebook parameter the results cannot answer; one line that names it and the available values."""

    def _render_traceback_(self):  # IPython/Jupyter show this instead of a deep traceback
        return [f"ParameterError: {self}"]


# ----------------------------------------------------------------------------- the table


def load(results) -> pd.DataFrame:
    """:func:`store.load_results` of a results folder; ParameterError if it is missing or holds no training yet."""
    folder = Path(results)
    if not folder.is_dir():
        others = _results_folders(folder.parent)
        hint = f" (available: {', '.join(others)})" if others else ""
        raise ParameterError(f"results folder {folder} does not exist{hint}; "
                             f"run `python -m pruning run configs/<name>.yaml` first")
    if not (folder / "experiment.json").exists():
        raise ParameterError(f"{folder} is not a results folder (no experiment.json); "
                             f"run `python -m pruning run configs/<name>.yaml --results {folder}` first")
    table = store.load_results(folder.resolve())  # absolute files: records load whatever the working directory
    if table.empty:
        raise ParameterError(f"results folder {folder} holds no finished training yet; "
                             f"wait for `python -m pruning run` to finish one, or run it")
    table.attrs["results"] = str(folder)
    return table


def _results_folders(parent: Path) -> list[str]:
    try:
        return sorted(str(p) for p in parent.iterdir() if (p / "experiment.json").exists())
    except OSError:
        return []


def _folder(table: pd.DataFrame) -> str:
    """Where the table came from, for messages."""
    if table.attrs.get("results"):
        return table.attrs["results"]
    if "run_dir" in table.columns and len(table):
        return str(Path(table["run_dir"].iloc[0]).parent)
    return "the results"


def _ranges(values) -> str:
    """[0, 1, 2, 3, 5] -> '0-3, 5'."""
    values = sorted(set(int(v) for v in values))
    parts = []
    for _, group in itertools.groupby(enumerate(values), lambda p: p[1] - p[0]):
        run = [v for _, v in group]
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ", ".join(parts) or "none"


def technique_order(table: pd.DataFrame) -> list[str]:
    """The techniques of ``table`` in registry order (unknown names last, sorted)."""
    present = set(table["technique"])
    known = [t for t in _techniques.TECHNIQUES if t in present]
    return known + sorted(present - set(known))


def layer_names(table: pd.DataFrame) -> list[str]:
    """The prunable layers of the results, in forward order (from the ``remaining.<layer>`` columns)."""
    return [c[len("remaining."):] for c in table.columns if c.startswith("remaining.")]


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, np.integer)):
        return [value]
    return list(value)


def check(table: pd.DataFrame, *, iteration=None, techniques=None, reinit=None, seed=None, layer=None) -> None:
    """Raise ParameterError unless ``table`` holds every value given (None: not checked).

    ``techniques``, ``reinit`` and ``seed`` may be one value or a list. ``iteration`` is checked within
    the selection the other arguments make. ``layer`` may be a layer name or "all".
    """
    where = _folder(table)
    if table.empty:
        raise ParameterError(f"{where} holds no trainings")
    sel = table
    for t in _as_list(techniques):
        available = technique_order(table)
        if t not in available:
            what = f"technique '{t}' is not in {where}" if t in _techniques.TECHNIQUES else f"unknown technique '{t}'"
            keys = {tech.label: key for key, tech in _techniques.TECHNIQUES.items()}
            hint = f"; did you mean '{keys[t]}'? (labels are for display)" if t in keys else ""
            raise ParameterError(f"{what} (available: {', '.join(available)}){hint}")
    if techniques is not None:
        sel = sel[sel["technique"].isin(_as_list(techniques))]
    for r in _as_list(reinit):
        available = sorted(set(table["reinit"]))
        if r not in available:
            raise ParameterError(f"reinit '{r}' is not in {where} (available: {', '.join(available)})")
    if reinit is not None:
        sel = sel[sel["reinit"].isin(_as_list(reinit))]
    for s in _as_list(seed):
        available = sorted(set(int(v) for v in sel["seed"]))
        if not isinstance(s, (int, np.integer)) or int(s) not in available:
            raise ParameterError(f"seed {s!r} is not in {where} (available: {_ranges(available)})")
    if seed is not None:
        sel = sel[sel["seed"].isin([int(s) for s in _as_list(seed)])]
    for it in _as_list(iteration):
        available = sorted(set(int(v) for v in sel["iteration"]))
        if not isinstance(it, (int, np.integer)) or int(it) not in available:
            narrowed = [f"{k} {', '.join(map(str, _as_list(v)))}"
                        for k, v in (("technique", techniques), ("reinit", reinit), ("seed", seed)) if v is not None]
            scope = f" for {'; '.join(narrowed)}" if narrowed else ""
            raise ParameterError(f"iteration {it!r} is not in {where}{scope} (available: {_ranges(available)})")
    if layer is not None:
        available = layer_names(table) + ["all"]
        if layer not in available:
            raise ParameterError(f"unknown layer '{layer}' (available: {', '.join(available)})")


def last_iteration(table: pd.DataFrame) -> int:
    """The largest iteration that every (technique, reinit, seed) of ``table`` has reached."""
    if table.empty:
        raise ParameterError(f"{_folder(table)} holds no trainings")
    return int(table.groupby(["technique", "reinit", "seed"])["iteration"].max().min())


# ----------------------------------------------------------------------------- stored trainings

RECORD_CACHE_SIZE = 512             # records kept in memory (a LeNet record is ~0.7 MB) ...
RECORD_CACHE_BYTES = 1 << 30        # ... and at most this many bytes of them (bigger models' records)
_cache: OrderedDict = OrderedDict()
_cache_bytes = 0


def record(row) -> dict:
    """:func:`store.load_training` of a table row (or its ``file``), cached by file (path, mtime, size).

    The cache is a least-recently-used one bounded by :data:`RECORD_CACHE_SIZE` entries and
    :data:`RECORD_CACHE_BYTES` bytes. The returned dict is shared: do not modify its tensors.
    """
    global _cache_bytes
    path = os.path.abspath(row if isinstance(row, (str, Path)) else row["file"])
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise store.StoreError(f"{path} is missing; delete its run directory and run the same command again") from None
    key = (path, st.st_mtime_ns, st.st_size)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    rec = store.load_training(path)
    _cache[key] = rec
    _cache_bytes += st.st_size
    while len(_cache) > 1 and (len(_cache) > RECORD_CACHE_SIZE or _cache_bytes > RECORD_CACHE_BYTES):
        old_key, _ = _cache.popitem(last=False)
        _cache_bytes -= old_key[2]
    return rec


def clear_cache() -> None:
    global _cache_bytes
    _cache.clear()
    _cache_bytes = 0


def _files(table: pd.DataFrame, reinit: str, iteration: int | None = None) -> dict[tuple, str]:
    """{(technique, seed): file} (iteration given) or {(technique, seed, iteration): file} for one reinit mode."""
    sel = table[table["reinit"] == reinit]
    if iteration is not None:
        sel = sel[sel["iteration"] == iteration]
        return {(t, int(s)): f for t, s, f in zip(sel["technique"], sel["seed"], sel["file"])}
    return {(t, int(s), int(i)): f for t, s, i, f in zip(sel["technique"], sel["seed"], sel["iteration"], sel["file"])}


def _mean_std(values) -> tuple[float, float, int]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan, 0
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, len(arr)


# ----------------------------------------------------------------------------- accuracy


def accuracy_summary(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Mean and std over seeds of ``metric`` per technique, reinit and iteration.

    Columns: technique, reinit, iteration, sparsity (mean over seeds), mean, std (ddof=1; 0 for one
    seed), n (seeds).
    """
    if metric not in table.columns:
        numeric = [c for c in ("test_acc", "val_acc", "test_loss", "val_loss", "train_loss") if c in table.columns]
        raise ParameterError(f"unknown metric '{metric}' (available: {', '.join(numeric)})")
    check(table)
    g = table.groupby(["technique", "reinit", "iteration"])
    out = pd.DataFrame({"sparsity": g["sparsity"].mean(), "mean": g[metric].mean(), "std": g[metric].std(ddof=1),
                        "n": g[metric].count()}).reset_index()
    out.loc[out["n"] <= 1, "std"] = 0.0
    order = {t: i for i, t in enumerate(technique_order(table))}
    out = out.sort_values(["technique", "reinit", "iteration"], key=lambda c: c.map(order) if c.name == "technique"
                          else c).reset_index(drop=True)
    out["n"] = out["n"].astype(int)
    return out[["technique", "reinit", "iteration", "sparsity", "mean", "std", "n"]]


# ----------------------------------------------------------------------------- mask similarity


def _np(x) -> np.ndarray:
    """A tensor or array as a numpy array (no copy for CPU tensors): numpy counts far faster than torch here."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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


def _techniques_for(table: pd.DataFrame, techniques) -> list[str]:
    if techniques is None:
        return technique_order(table)
    techniques = _as_list(techniques)
    check(table, techniques=techniques)
    return techniques


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


def _pairwise_over_seeds(files: dict, techniques: list[str], value) -> pd.DataFrame:
    """Symmetric technique x technique matrix: mean over common seeds of ``value(ta, tb, file_a, file_b)``.

    ``files`` maps (technique, seed) to a training file; a pair without a common seed is NaN.
    """
    out = pd.DataFrame(np.nan, index=pd.Index(techniques, name="technique"),
                       columns=pd.Index(techniques, name="technique"))
    for i, ta in enumerate(techniques):
        for tb in techniques[i:]:
            seeds = sorted(s for (t, s) in files if t == ta and (tb, s) in files)
            if seeds:
                out.loc[ta, tb] = out.loc[tb, ta] = _mean_std(
                    [value(ta, tb, files[ta, s], files[tb, s]) for s in seeds])[0]
    return out


def mask_distance_curve(table: pd.DataFrame, reinit: str = "rewind", pairs=None, layer: str = "all") -> pd.DataFrame:
    """Jaccard distance of same-seed masks of technique pairs at every iteration.

    ``pairs``: list of (technique_a, technique_b); None = every unordered pair of distinct techniques.
    Columns: technique_a, technique_b, iteration, sparsity (mean over both techniques and the seeds),
    mean, std (over seeds), n (seeds).
    """
    check(table, reinit=reinit, layer=layer)
    if pairs is None:
        order = technique_order(table[table["reinit"] == reinit])
        pairs = list(itertools.combinations(order, 2))
    pairs = [tuple(p) for p in pairs]
    check(table, reinit=reinit, techniques=sorted({t for p in pairs for t in p}))
    files = _files(table, reinit)
    sel = table[table["reinit"] == reinit]
    sparsity = {(t, int(s), int(i)): float(x) for t, s, i, x in
                zip(sel["technique"], sel["seed"], sel["iteration"], sel["sparsity"])}
    rows = []
    for ta, tb in pairs:
        keys = sorted((s, i) for (t, s, i) in files if t == ta and (tb, s, i) in files)
        for it in sorted({i for _, i in keys}):
            seeds = [s for s, i in keys if i == it]
            dists = [_mask_distance(files[ta, s, it], files[tb, s, it], layer) for s in seeds]
            mean, std, n = _mean_std(dists)
            sp = float(np.mean([sparsity[t, s, it] for s in seeds for t in (ta, tb)]))
            rows.append({"technique_a": ta, "technique_b": tb, "iteration": it, "sparsity": sp,
                         "mean": mean, "std": std, "n": n})
    return pd.DataFrame(rows, columns=["technique_a", "technique_b", "iteration", "sparsity", "mean", "std", "n"])


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


# ----------------------------------------------------------------------------- predictions and ensembles


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
        if method == "mean_prob":
            if any(r.get("logits") is None for r in recs):
                raise ParameterError(f"{_folder(table)} stores no logits (store.logits: false); "
                                     f"use method='vote' or rerun with store.logits: true")
            pred = ensemble_predictions(logits=[r["logits"] for r in recs], method="mean_prob")
        else:
            k = recs[0]["logits"].shape[1] if recs[0].get("logits") is not None else None
            pred = ensemble_predictions(predictions=[r["predictions"] for r in recs], method="vote", num_classes=k)
        acc[s] = 100.0 * float(np.mean(_np(pred) == _np(targets)))
    return pd.Series(acc, name="accuracy", dtype=float).rename_axis("seed")


def poster_groups() -> dict[str, list[str]]:
    """The poster's ensemble table, in its order: name (poster label) -> member techniques."""
    groups = {_techniques.label(t): [t] for t in POSTER_SINGLES}
    groups["all"] = list(POSTER_SINGLES)
    groups["hybrid + fc-only + L1 US"] = list(POSTER_TRIO)  # the poster's own name for it
    return groups


def ensemble_table(table: pd.DataFrame, iteration: int, reinit: str = "rewind", groups=None,
                   method: str = "mean_prob") -> pd.DataFrame:
    """One row per ensemble: name, members (registry keys joined by ", "), mean, std, n (over seeds).

    ``groups``: {name: [techniques]} or a list of technique lists (named by their labels joined with
    " + "); None = the poster's table (:func:`poster_groups`), skipping groups with a technique the
    results do not hold.
    """
    present = set(table["technique"])
    if groups is None:
        groups = {name: m for name, m in poster_groups().items() if set(m) <= present}
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
POSTER_ITERATION = 18  # the poster's table is after 18 pruning iterations


# ----------------------------------------------------------------------------- weights


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
        raise ParameterError(f"{where} stores no trained weights of layer '{layer}' "
                             f"(stored: {', '.join(stored) or 'none'}; see store.weights in the config)")
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
    """
    total, count = 0.0, 0
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
    sparsity = {(t, int(s), int(i)): float(x) for t, s, i, x in
                zip(sel["technique"], sel["seed"], sel["iteration"], sel["sparsity"])}
    rows = []
    for tech in technique_order(sel):
        for seed in sorted({s for (t, s, _) in files if t == tech}):
            its = sorted(i for (t, s, i) in files if t == tech and s == seed)
            for it in its:
                if it == 0 or it - 1 not in its:
                    continue
                before, after = record(files[tech, seed, it - 1]), record(files[tech, seed, it])
                if layer in (None, "all"):
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


def pearson(x, y) -> float:
    """Pearson correlation of paired values (pairs with a NaN dropped); NaN for < 3 pairs or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


# ----------------------------------------------------------------------------- connectivity


def filter_kernels(table: pd.DataFrame, technique: str, reinit: str = "rewind", seed: int = 0, layer: str = "conv1",
                   iterations=None) -> dict[int, torch.Tensor]:
    """iteration -> trained weights * mask of conv ``layer`` of one run, shape (out, in, k, k)."""
    check(table, layer=layer)
    run = _run_files(table, technique, reinit, seed)
    its = _iterations(run, iterations, table, technique, reinit, seed)
    out = {}
    for it in its:
        w = _layer_weight(record(run[it][0]), layer, _folder(table))
        if w.dim() != 4:
            raise ParameterError(f"layer '{layer}' is not a conv layer (its weight has shape {tuple(w.shape)})")
        out[it] = w.clone()
    return out


def empty_kernels(kernels: torch.Tensor) -> dict:
    """Counts of emptied connectivity in a conv weight (out, in, k, k).

    ``kernels``/``empty_kernels``: (out, in) kernels in all / all of whose k x k entries are 0;
    ``filters``/``empty_filters``: output channels in all / whose whole (in, k, k) weight is 0;
    ``inputs``/``empty_inputs``: input channels in all / that no output channel reads.
    """
    if kernels.dim() != 4:
        raise ValueError(f"expected a conv weight (out, in, k, k), got shape {tuple(kernels.shape)}")
    nonzero = kernels != 0
    per_kernel = nonzero.flatten(2).any(2)  # (out, in)
    return {"kernels": per_kernel.numel(), "empty_kernels": int((~per_kernel).sum()),
            "filters": kernels.shape[0], "empty_filters": int((~per_kernel.any(1)).sum()),
            "inputs": kernels.shape[1], "empty_inputs": int((~per_kernel.any(0)).sum())}


def effective_sparsity(masks: dict[str, torch.Tensor], layers_in_order: list[str] | None = None) -> dict[str, float]:
    """Fraction of weights that are pruned or cut off, per layer and "all", for a plain feed-forward chain.

    A kept weight is cut off when its input unit (channel) is unreachable from the network's input,
    or its output unit (channel) reaches no network output, through kept weights; unreachability
    cascades through the layers. Biases are ignored: a unit with no incoming weight outputs a
    constant, which the next layer's bias can absorb, so its outgoing weights are removable too.
    ``layers_in_order`` (default: the order of ``masks``) must chain: each layer's input size equals
    the previous layer's output size, or a multiple of it (a flatten of channels x positions, as
    LeNet's conv2 (16) -> fc1 (400 = 16 x 5 x 5)).
    """
    names = list(layers_in_order or masks)
    full = [_np(masks[n]).astype(bool, copy=False) for n in names]
    conn = [m.reshape(m.shape[0], m.shape[1], -1).any(2) if m.ndim > 2 else m for m in full]  # (out, in)
    repeat = []  # for each layer after the first: how many of its inputs each previous output feeds
    for prev, cur, name_p, name_c in zip(conn, conn[1:], names, names[1:]):
        if cur.shape[1] % prev.shape[0]:
            raise ValueError(f"layers {name_p} ({prev.shape[0]} outputs) and {name_c} ({cur.shape[1]} inputs) "
                             f"do not chain")
        repeat.append(cur.shape[1] // prev.shape[0])
    # forward: which input units of each layer are reachable from the network's input
    reach_in = [np.ones(conn[0].shape[1], dtype=bool)]
    for i, c in enumerate(conn[:-1]):
        reach_out = (c & reach_in[i]).any(1)
        reach_in.append(np.repeat(reach_out, repeat[i]))
    # backward: which output units of each layer reach the network's output
    useful_out = [None] * len(conn)
    useful_out[-1] = np.ones(conn[-1].shape[0], dtype=bool)
    for i in range(len(conn) - 1, 0, -1):
        useful_in = (conn[i] & useful_out[i][:, None]).any(0)
        useful_out[i - 1] = useful_in.reshape(-1, repeat[i - 1]).any(1)
    out, kept_total, size_total = {}, 0, 0
    for i, (name, m) in enumerate(zip(names, full)):
        alive = useful_out[i][:, None] & reach_in[i][None, :]  # (out, in)
        kept = int(np.count_nonzero(m.reshape(m.shape[0], m.shape[1], -1) & alive[:, :, None])) if m.ndim > 2 \
            else int(np.count_nonzero(m & alive))
        out[name] = 1.0 - kept / m.size if m.size else 0.0
        kept_total += kept
        size_total += m.size
    out["all"] = 1.0 - kept_total / size_total if size_total else 0.0
    return out


def effective_sparsity_curve(table: pd.DataFrame, reinit: str = "rewind") -> pd.DataFrame:
    """Per technique, seed and iteration: sparsity (pruned) and effective_sparsity (pruned or cut off)."""
    check(table, reinit=reinit)
    sel = table[table["reinit"] == reinit]
    rows = []
    for tech, seed, it, sp, f in zip(sel["technique"], sel["seed"], sel["iteration"], sel["sparsity"], sel["file"]):
        eff = effective_sparsity(record(f)["masks"])["all"]
        rows.append({"technique": tech, "seed": int(seed), "iteration": int(it), "sparsity": float(sp),
                     "effective_sparsity": eff})
    return pd.DataFrame(rows, columns=["technique", "seed", "iteration", "sparsity", "effective_sparsity"])
