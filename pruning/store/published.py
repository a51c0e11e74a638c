"""A published results set: what the analyses read, compact, one immutable folder per seed, readable by numpy alone.

A run store (``results/<name>/``) holds every tensor of every training and weighs about 0.7 MB per
LeNet training; a published set (``docs/<name>/``) keeps what the notebooks and the report read, in
``.npz`` and ``.csv`` files that numpy and pandas open without this package::

    docs/<name>/experiment.json               the config, the published seeds' runs, code versions, hardware
    docs/<name>/results.csv                   the tidy table of every published seed (derived, rewritten)
    docs/<name>/data/README.md                the data card: every file, its arrays, shapes, dtypes, sizes
    docs/<name>/data/seed_<s>/results.csv     the tidy table of seed s, every column at full precision
    docs/<name>/data/seed_<s>/experiment.json the provenance of seed s (code version, hardware, numerics, run hashes)
    docs/<name>/data/seed_<s>/<technique>.<reinit>.npz   one run: its trainings in iteration order
    docs/<name>/data/seed_<s>/test.npz        the test labels and the softmax-mean ensembles' predictions

A seed's folder is written whole under a temporary name and renamed (:func:`write_seed`); once there it
is never rewritten, so publishing seed 7 cannot change seeds 0-6. :func:`load_table` reads a set as
:func:`store.load_results` reads a run store; its ``file`` column names ``<run .npz>#<row>``, which
:func:`load_training` turns into the record the analyses read: bool masks, float32 weights (of the layers
kept, from float16), predictions and test labels, no logits, and ``stability``: per layer, the float64 sum
of |w_k - w_(k-1)| over the weights kept at both k-1 and k and their count, computed from the full
float32 weights when the seed was published (what ``analysis.weight_stability`` needs of the others).
"""
from __future__ import annotations

import functools
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import layout, records
from .files import StoreError, save_json

DATA = "data"
CARD = "README.md"
SEED_PREFIX = "seed_"
TEST = "test.npz"
TABLE = "results.csv"
PROVENANCE = layout.EXPERIMENT
KEY_SEPARATOR = "#"
LOCAL_COLUMNS = ("run_dir", "file")   # the table's columns that name local files: not published
DERIVED_COLUMNS = ("diverged",)       # columns the table derives when it is loaded: never written to a results.csv
UNWRITTEN = LOCAL_COLUMNS + DERIVED_COLUMNS
ENSEMBLE_PREFIX = "ensemble"
MEMBER_SEPARATOR = "+"


def is_published(folder) -> bool:
    """True for a published set (a ``data/`` folder beside ``experiment.json``), False for a run store."""
    return (Path(folder) / DATA).is_dir()


def seed_folder(folder, seed: int) -> Path:
    return Path(folder) / DATA / f"{SEED_PREFIX}{int(seed)}"


def seeds(folder) -> list[int]:
    """The seeds published in ``folder``, sorted."""
    out = []
    for p in (Path(folder) / DATA).glob(f"{SEED_PREFIX}*"):
        suffix = p.name[len(SEED_PREFIX):]
        if p.is_dir() and suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)


def run_file(technique: str, reinit: str) -> str:
    return f"{technique}.{reinit}.npz"


def ensemble_key(reinit: str, iteration: int, members) -> str:
    """The array name in ``test.npz`` of the softmax-mean ensemble of ``members`` (named in sorted order)."""
    return f"{ENSEMBLE_PREFIX}.{reinit}.{int(iteration)}.{MEMBER_SEPARATOR.join(sorted(members))}"


# ----------------------------------------------------------------------------- writing one seed

def run_arrays(records_: list[dict], iterations: list[int], weights: list[str],
               weight_dtype=np.float32) -> dict[str, np.ndarray]:
    """The arrays of one run's ``.npz`` from its records (as ``store.load_training`` returns them) in iteration order.

    ``weights``: the layers whose trained (masked) weights are kept, as ``weight_dtype``.
    """
    masks = [r["masks"] for r in records_]
    layers = list(masks[0])
    out = {"iteration": np.asarray(iterations, dtype=np.int16),
           "predictions": np.stack([r["predictions"].numpy().astype(np.uint8) for r in records_]),
           "layers": np.asarray(layers)}
    for layer in layers:
        out[f"mask.{layer}"] = np.stack([records.pack_bits(m[layer]).numpy() for m in masks])
        out[f"shape.{layer}"] = np.asarray(masks[0][layer].shape, dtype=np.int64)
    for layer in weights:
        key = f"{layer}.weight"
        out[f"weight.{layer}"] = np.stack([(r["weights"][key] * r["masks"][layer]).numpy().astype(weight_dtype)
                                           for r in records_])
    sums = np.full((len(records_), len(layers)), np.nan)
    counts = np.zeros((len(records_), len(layers)), dtype=np.int64)
    for k in range(1, len(records_)):
        if iterations[k] - 1 != iterations[k - 1]:
            continue
        before, after = records_[k - 1], records_[k]
        for j, layer in enumerate(layers):
            key = f"{layer}.weight"
            if key not in before["weights"] or key not in after["weights"]:
                continue
            both = before["masks"][layer].numpy() & after["masks"][layer].numpy()
            w0, w1 = before["weights"][key].numpy()[both], after["weights"][key].numpy()[both]
            sums[k, j] = float(np.abs(w1.astype(np.float64) - w0).sum())  # as analysis.mean_abs_delta sums it
            counts[k, j] = int(both.sum())
    out["stability.sum_abs_delta"], out["stability.count"] = sums, counts
    return out


def write_seed(folder, seed: int, table: pd.DataFrame, runs: dict[tuple[str, str], dict[str, np.ndarray]],
               test: dict[str, np.ndarray], provenance: dict) -> Path | None:
    """Write seed ``seed`` of a published set; returns its folder, or None when it is already published.

    ``table``: the seed's rows of the tidy table; ``runs``: {(technique, reinit): :func:`run_arrays`};
    ``test``: ``targets`` and the ensembles' predictions (:func:`ensemble_key`). The folder is written
    under a temporary name and renamed, so an interrupted publish leaves no half seed behind.
    """
    target = seed_folder(folder, seed)
    if target.exists():
        return None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        table.drop(columns=[c for c in UNWRITTEN if c in table.columns]).to_csv(tmp / TABLE, index=False)
        for (technique, reinit), arrays in runs.items():
            np.savez_compressed(tmp / run_file(technique, reinit), **arrays)
        np.savez_compressed(tmp / TEST, **test)
        save_json(provenance, tmp / PROVENANCE)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- reading

def load_table(folder) -> pd.DataFrame:
    """The tidy table of every published seed, as ``store.load_results`` gives it for a run store; ``file`` is
    ``<seed folder>/<technique>.<reinit>.npz#<row>``, which :func:`load_training` reads."""
    folder = Path(folder)
    parts = []
    for seed in seeds(folder):
        sf = seed_folder(folder, seed)
        try:
            part = pd.read_csv(sf / TABLE)
        except (OSError, pd.errors.ParserError) as exc:
            raise StoreError(f"{sf / TABLE} cannot be read ({exc.__class__.__name__}); restore {sf} from git") from None
        part["run_dir"] = str(sf)
        part["file"] = ""
        for (tech, reinit), rows in part.groupby(["technique", "reinit"], sort=False):
            order = rows["iteration"].rank(method="first").astype(int) - 1
            part.loc[rows.index, "file"] = [f"{sf / run_file(tech, reinit)}{KEY_SEPARATOR}{i}" for i in order]
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def split_key(key) -> tuple[Path, int] | None:
    """(run .npz, row) of a published training's ``file``, or None for a run store's file."""
    text = str(key)
    path, sep, row = text.rpartition(KEY_SEPARATOR)
    if not sep or not row.isdigit():
        return None
    return Path(path), int(row)


@functools.lru_cache(maxsize=512)
def _arrays(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{path} cannot be read ({exc.__class__.__name__}); restore it from git") from None


def arrays(path) -> dict[str, np.ndarray]:
    """Every array of a published ``.npz`` (cached while the file is unchanged)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; restore it from git (`git checkout -- {path}`)") from None
    return _arrays(str(path), mtime)


def load_training(key) -> dict:
    """The record of one published training (``file`` of :func:`load_table`), as the analyses read it."""
    path, row = split_key(key)
    a = arrays(path)
    test = arrays(path.parent / TEST)
    layers = [str(x) for x in a["layers"]]
    masks = {n: records.unpack_bits(torch.from_numpy(a[f"mask.{n}"][row]), a[f"shape.{n}"].tolist()) for n in layers}
    weights = {f"{k[len('weight.'):]}.weight": torch.from_numpy(a[k][row].astype(np.float32))
               for k in a if k.startswith("weight.")}
    stability = {n: (float(a["stability.sum_abs_delta"][row, j]), int(a["stability.count"][row, j]))
                 for j, n in enumerate(layers) if a["stability.count"][row, j] > 0
                 or not np.isnan(a["stability.sum_abs_delta"][row, j])}
    return {"masks": masks, "weights": weights, "logits": None, "stability": stability,
            "predictions": torch.from_numpy(a["predictions"][row].astype(np.int64)),
            "targets": torch.from_numpy(test["targets"].astype(np.int64)),
            "published": {"seed_folder": str(path.parent), "iteration": int(a["iteration"][row])}}


def ensemble(record: dict, reinit: str, members) -> torch.Tensor | None:
    """The softmax-mean ensemble's predictions of ``members`` published beside ``record``'s training, or None."""
    where = record.get("published")
    if where is None:
        return None
    test = arrays(Path(where["seed_folder"]) / TEST)
    key = ensemble_key(reinit, where["iteration"], members)
    return torch.from_numpy(test[key].astype(np.int64)) if key in test else None


def ensemble_iterations(folder, reinit: str, members) -> list[int]:
    """The iterations at which the ensemble of ``members`` is published (in the first seed)."""
    found = seeds(folder)
    if not found:
        return []
    test = arrays(seed_folder(folder, found[0]) / TEST)
    head = f"{ENSEMBLE_PREFIX}.{reinit}."
    tail = f".{MEMBER_SEPARATOR.join(sorted(members))}"
    return sorted(int(k[len(head):-len(tail)]) for k in test if k.startswith(head) and k.endswith(tail))


def fingerprint_files(folder) -> list[Path]:
    """The files whose bytes decide what the analyses of a published set compute."""
    return sorted(p for p in (Path(folder) / DATA).rglob("*") if p.is_file() and p.name != CARD
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


PARTS = {"mask": "masks", "shape": "masks", "layers": "masks", "iteration": "tables", "predictions": "predictions",
         "weight": "weights", "stability": "stability", "targets": "test labels", ENSEMBLE_PREFIX: "ensembles"}


def sizes(folder) -> dict[str, int]:
    """Compressed bytes per part of a published set's data (masks, predictions, weights, stability, ensembles,
    test labels, tables and provenance), and ``total``: what the README and the data card quote."""
    out: dict[str, int] = {}
    for path in fingerprint_files(folder):
        if path.suffix != ".npz":
            out["tables"] = out.get("tables", 0) + path.stat().st_size
            continue
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                part = PARTS.get(info.filename.split(".")[0], "other")
                out[part] = out.get(part, 0) + info.compress_size + len(info.filename) * 2 + 76  # + zip headers
    out["total"] = sum(p.stat().st_size for p in fingerprint_files(folder))
    return out
