"""The sensitivity study: each config variant's accuracy at the poster's iteration beside the poster's own.

Pure functions of results tables (a published ``results.csv`` is enough, no run store): for each results set
(the base config and its variants, ``configs/sensitivity/``) and each of the poster's seven techniques under
rewinding, the per-seed test accuracies at an iteration, their mean and 95% t-interval, and how many of
them collapsed to a constant guess; then how far each set's row is from the poster's (RMS over the
techniques both have), and, per technique, which sets come within ``WITHIN`` points of the poster.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .findings import finding_random as _finding_random
from .predictions import POSTER_SINGLES, poster_reference
from .stats import summarize
from ..nets import techniques as _techniques
from ..nets.config import flat, resolved

WITHIN = 5.0  # points of accuracy: a set "comes within reach" of the poster's number
# Config fields that say what was run, not how: a variant may differ from its base in these freely.
SCOPE_FIELDS = ("name", "description", "techniques", "reinit", "reinit_techniques", "seeds", "iterations", "workers",
                "device", "trainer", "store", "share_dense")
MAX_CHANGES = 2  # a set is a variant of the base when it differs in at most this many protocol fields
# What the protocol text (the project's PROTOCOL.md: [F] the follow-up paper's parameters, [D] our design decisions)
# says of each value a variant sets: whether the project's default may take it, and why. A value not listed is not
# allowed: the protocol does not say.
PROTOCOL = {
    ("output_layer", "exempt"): (False, "the protocol prunes every weight tensor, the output layer included [F]"),
    ("output_structured_dim", 1): (True, "the output layer is still pruned; its dimension is left open (dim 0 is "
                                         "our decision [D])"),
    ("structured_dim", 1): (True, "dimension 0 is our design decision [D], not the paper's"),
    ("training.augment", True): (True, "no augmentation is our design decision [D]; the follow-up paper mentions "
                                       "random crop and flip [F]"),
    ("data.normalize", False): (False, "the protocol normalises inputs with the training set's mean and std [F]"),
    ("training.epochs", 30): (True, "30 epochs is the protocol's own training length [F]; the CPU profile cuts it "
                                    "to 10 for time"),
}
ADOPT_MARGIN = WITHIN  # points of RMS distance: how much nearer the poster a variant's row must be to be adopted


def changes(base: dict, other: dict) -> dict:
    """{field: (base value, other value)} of the protocol fields (not :data:`SCOPE_FIELDS`) where two resolved
    configs differ; dotted names for nested fields (``training.epochs``)."""
    a = {k: v for k, v in flat(resolved(base)).items() if k.split(".")[0] not in SCOPE_FIELDS}
    b = {k: v for k, v in flat(resolved(other)).items() if k.split(".")[0] not in SCOPE_FIELDS}
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def variants(base_config: dict, folder) -> list[dict]:
    """The published variants of ``base_config`` in ``folder`` (``docs/sensitivity/<name>/``, each with
    ``experiment.json`` and ``results.csv``): those differing from it in 1 to :data:`MAX_CHANGES` protocol
    fields, sorted by name. Each: name, folders, changes (:func:`changes`), table (its ``results.csv``). Sets
    with the same changes are one variant trained in parts: their tables are joined under one name."""
    found = []
    for exp_path in sorted(Path(folder).glob("*/experiment.json")):
        try:
            other = json.loads(exp_path.read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        diff = changes(base_config, other)
        if not (1 <= len(diff) <= MAX_CHANGES and (exp_path.parent / "results.csv").exists()):
            continue
        table = pd.read_csv(exp_path.parent / "results.csv")
        same = next((v for v in found if v["changes"] == diff), None)
        if same is None:
            found.append({"name": exp_path.parent.name, "folders": [exp_path.parent], "changes": diff, "table": table})
        else:  # the same variant trained in parts (e.g. output_exempt and output_exempt_random_us): one row
            same["name"] += f" + {exp_path.parent.name}"
            same["folders"].append(exp_path.parent)
            same["table"] = pd.concat([same["table"], table], ignore_index=True)
    return found


def finding_random(variant: dict, iteration: int, reinit: str = "rewind"):
    """Finding 3 (random structured vs random unstructured pruning) measured on a variant's table, or None where
    it lacks random S or random US at ``iteration``."""
    t = variant["table"]
    at = t[(t["reinit"] == reinit) & (t["iteration"] == iteration)]
    if not {"random_s", "random_us"} <= set(at["technique"]):
        return None
    return _finding_random(t, iteration, [reinit])


def at_iteration(table: pd.DataFrame, iteration: int, reinit: str = "rewind", techniques=POSTER_SINGLES) -> pd.DataFrame:
    """One row per technique at ``iteration``: seeds, per_seed (accuracies in seed order), mean, low, high (95%
    t-interval; NaN below 2 seeds), collapsed (how many of the seeds' trainings collapsed), poster."""
    sel = table[(table["reinit"] == reinit) & (table["iteration"] == iteration)]
    rows = []
    for t in techniques:
        d = sel[sel["technique"] == t].sort_values("seed")
        if d.empty:
            continue
        s = summarize(list(d["test_acc"].astype(float)))
        rows.append({"technique": t, "seeds": len(d), "per_seed": [float(x) for x in d["test_acc"]],
                     "mean": s.mean, "low": s.low, "high": s.high,
                     "collapsed": int(d["collapsed"].astype(bool).sum()),
                     "poster": poster_reference(_techniques.label(t))})
    return pd.DataFrame(rows, columns=["technique", "seeds", "per_seed", "mean", "low", "high", "collapsed", "poster"])


def study(tables: dict[str, pd.DataFrame], iteration: int, reinit: str = "rewind",
          techniques=POSTER_SINGLES) -> pd.DataFrame:
    """:func:`at_iteration` for every named table, stacked with a ``set`` column (in the order given)."""
    parts = [at_iteration(t, iteration, reinit, techniques).assign(set=name) for name, t in tables.items()]
    out = pd.concat(parts, ignore_index=True)
    return out[["set"] + [c for c in out.columns if c != "set"]]


def distance_to_poster(frame: pd.DataFrame) -> pd.Series:
    """Per set: the root mean square of (mean − poster) over the techniques it has, in points."""
    diff = frame.assign(d=(frame["mean"] - frame["poster"]) ** 2).groupby("set", sort=False)["d"].mean()
    return np.sqrt(diff).rename("rms_to_poster")


def closest(frame: pd.DataFrame, within: float = WITHIN) -> pd.DataFrame:
    """Per technique: the sets whose mean is within ``within`` points of the poster's (empty if none), and the
    closest set with its distance."""
    rows = []
    for t, d in frame.groupby("technique", sort=False):
        gap = (d["mean"] - d["poster"]).abs()
        best = d.loc[gap.idxmin()]
        rows.append({"technique": t, "poster": float(best["poster"]),
                     "within": [s for s, g in zip(d["set"], gap) if g <= within],
                     "closest": best["set"], "closest_mean": float(best["mean"]), "gap": float(gap.min())})
    return pd.DataFrame(rows, columns=["technique", "poster", "within", "closest", "closest_mean", "gap"])


def counting(table: pd.DataFrame, iteration: int = 18, reinit: str = "rewind") -> pd.DataFrame:
    """The poster's "iteration N" read as N and as N + 1 pruning steps: per technique, both means beside the
    poster's number and which reading is nearer to it."""
    a, b = at_iteration(table, iteration, reinit), at_iteration(table, iteration + 1, reinit)
    both = a.merge(b, on=["technique", "poster"], suffixes=(f"_{iteration}", f"_{iteration + 1}"))
    near_a = (both[f"mean_{iteration}"] - both["poster"]).abs()
    near_b = (both[f"mean_{iteration + 1}"] - both["poster"]).abs()
    both["nearer"] = [iteration if x < y else iteration + 1 if y < x else math.nan for x, y in zip(near_a, near_b)]
    return both[["technique", "poster", f"mean_{iteration}", f"collapsed_{iteration}", f"mean_{iteration + 1}",
                 f"collapsed_{iteration + 1}", "nearer"]]


def allowed(changes_: dict) -> tuple[bool, list[str]]:
    """Whether the protocol allows every value a variant sets (:data:`PROTOCOL`), with one reason per field."""
    verdicts = [PROTOCOL.get((field, new), (False, f"the protocol does not allow {field} {new}"))
                for field, (_, new) in changes_.items()]
    return all(ok for ok, _ in verdicts), [why for _, why in verdicts]


def default(frame: pd.DataFrame, found: list[dict], base: str = "this set", margin: float = ADOPT_MARGIN) -> dict:
    """Which variant, if any, becomes the project's default: one the protocol allows (:func:`allowed`) whose row is
    more than ``margin`` points (RMS) nearer the poster than the base's on the techniques the variant has; the
    nearest such. ``frame``: :func:`study` of the base and the variants (``found``, from :func:`variants`, named
    as in the frame). Returns name (None if no variant qualifies), and per variant: allowed, reasons, its RMS and
    the base's on its techniques."""
    rows = []
    for v in found:
        mine = frame[frame["set"] == v["name"]]
        on = frame[(frame["set"] == base) & frame["technique"].isin(mine["technique"])]
        rms = distance_to_poster(pd.concat([on, mine]))
        ok, why = allowed(v["changes"])
        rows.append({"name": v["name"], "allowed": ok, "reasons": why, "rms": float(rms.get(v["name"], math.nan)),
                     "base_rms": float(rms.get(base, math.nan))})
    adopt = [r for r in rows if r["allowed"] and r["rms"] < r["base_rms"] - margin]
    best = min(adopt, key=lambda r: r["rms"])["name"] if adopt else None
    return {"name": best, "variants": rows, "margin": margin}


def output_exempt(base_config: dict, folder) -> pd.DataFrame | None:
    """The joined results table of the published output-exempt variant of ``base_config`` (structured techniques
    keep every output unit: ``configs/sensitivity/output_exempt.yaml``), or None where none is published."""
    hit = [v for v in variants(base_config, folder) if v["name"].startswith("output_exempt")]
    return hit[0]["table"] if hit else None
