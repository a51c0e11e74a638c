"""The results table and the stored trainings: loading, parameter checks, the record cache.

The table is :func:`pruning.store.load_results` (one row per training); a training's tensors come from
:func:`record` (a cached :func:`pruning.store.load_training`). A bad parameter (an iteration,
technique, seed or layer that the results do not hold) raises :class:`ParameterError`, a one-line
message that names the bad value and the available ones.
"""
from __future__ import annotations

import itertools
import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import store
from ..nets import techniques as _techniques
from ..core.errors import ParameterError


# ----------------------------------------------------------------------------- the table

def load(results) -> pd.DataFrame:
    """:func:`store.load_results` of a results folder; ParameterError if it is missing or holds no training yet."""
    folder = Path(results)
    if not folder.is_dir():
        others = _results_folders(folder.parent)
        hint = f" (available: {', '.join(others)})" if others else ""
        raise ParameterError(f"results folder {folder} does not exist{hint}; "
                             f"run `python -m pruning run configs/<name>.yaml` first")
    if not (folder / store.layout.EXPERIMENT).exists():
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
        return sorted(str(p) for p in parent.iterdir() if (p / store.layout.EXPERIMENT).exists())
    except OSError:
        return []


def _folder(table: pd.DataFrame) -> str:
    """Where the table came from, for messages."""
    if table.attrs.get("results"):
        return table.attrs["results"]
    if "run_dir" in table.columns and len(table):
        parent = Path(table["run_dir"].iloc[0]).parent
        return str(parent.parent if parent.name == store.published.DATA else parent)
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


POSTER_ITERATION = 18  # the poster asks its questions after 18 pruning iterations (1.8% of LeNet's weights left)


def report_iteration(table: pd.DataFrame) -> int:
    """The iteration the report and the notebooks look at by default: the poster's (18) where every run
    reached it, else the last one every run reached."""
    return min(last_iteration(table), POSTER_ITERATION)


# ----------------------------------------------------------------------------- stored trainings

RECORD_CACHE_SIZE = 4096            # records kept in memory (a LeNet record is ~0.7 MB) ...
RECORD_CACHE_BYTES = 1 << 30        # ... and at most this many bytes of them (bigger models' records)
_cache: OrderedDict = OrderedDict()
_cache_bytes = 0


def record(row) -> dict:
    """:func:`store.load_training` of a table row (or its ``file``), cached by file (path, mtime, size).

    The cache is a least-recently-used one bounded by :data:`RECORD_CACHE_SIZE` entries and
    :data:`RECORD_CACHE_BYTES` bytes. The returned dict is shared: do not modify its tensors.
    """
    global _cache_bytes
    name = str(row if isinstance(row, (str, Path)) else row["file"])
    where = store.published.split_key(name)  # (npz, row) of a published training, None for a run store's file
    path = os.path.abspath(where[0] if where else name)
    suffix = f"{store.published.KEY_SEPARATOR}{where[1]}" if where else ""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise store.StoreError(f"{path} is missing; delete its run directory and run the same command again") from None
    key = (path + suffix, st.st_mtime_ns, st.st_size)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    rec = store.load_training(path + suffix)
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


def _values(table: pd.DataFrame, reinit: str, column: str) -> dict[tuple, float]:
    """{(technique, seed, iteration): the float in ``column``} of one reinit mode's trainings."""
    sel = table[table["reinit"] == reinit]
    return {(t, int(s), int(i)): float(x) for t, s, i, x in
            zip(sel["technique"], sel["seed"], sel["iteration"], sel[column])}


def _mean_std(values) -> tuple[float, float, int]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan, 0
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, len(arr)


def _np(x) -> np.ndarray:
    """A tensor or array as a numpy array (no copy for CPU tensors): numpy counts far faster than torch here."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _techniques_for(table: pd.DataFrame, techniques) -> list[str]:
    if techniques is None:
        return technique_order(table)
    techniques = _as_list(techniques)
    check(table, techniques=techniques)
    return techniques


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
