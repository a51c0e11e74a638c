"""The poster's accuracy row beside every results set's, read at 18 and at 19 pruning steps.

The poster reports LeNet on MNIST "after 18 pruning iterations" and does not say whether the dense training counts,
so each set is read at both (PROTOCOL.md). For each set and reading, each of the poster's nine columns (seven
techniques, its "all" ensemble of them, and hybrid + fc-only + L1 US): the per-seed accuracies under rewinding, their
mean and 95% t-interval, how many seeds collapsed, and the gap to the poster's number; per set and reading, the RMS
gap over the columns the set has. Pure functions of results tables (a published set's is enough); a table without
test predictions (a sensitivity variant keeps only its table) has no ensemble columns.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .predictions import POSTER_SINGLES, POSTER_TRIO, SEVEN, ensemble_accuracy, poster_reference
from .stats import summarize
from .table import ParameterError
from ..core.errors import StoreError
from ..nets import techniques as _techniques

READINGS = (18, 19)  # the poster's "after 18 pruning iterations", without and with the dense training counted
TRIO = "hybrid + fc-only + L1 US"
# The poster's columns in its order: (column name, member techniques).
COLUMNS = [(_techniques.label(t), [t]) for t in POSTER_SINGLES] + [("all", list(POSTER_SINGLES)),
                                                                  (TRIO, list(POSTER_TRIO))]
FIELDS = ["set", "steps", "column", "seeds", "per_seed", "mean", "low", "high", "collapsed", "poster", "gap"]


def _poster(column: str) -> float:
    return poster_reference(SEVEN if column == "all" else column)


def row(table: pd.DataFrame, steps: int, reinit: str = "rewind", name: str = "") -> pd.DataFrame:
    """One set read at ``steps`` pruning steps: one line per poster column it can answer (:data:`FIELDS`)."""
    sel = table[(table["reinit"] == reinit) & (table["iteration"] == steps)]
    out = []
    for column, members in COLUMNS:
        if len(members) == 1:
            d = sel[sel["technique"] == members[0]].sort_values("seed")
            if d.empty:
                continue
            values = [float(x) for x in d["test_acc"]]
            collapsed = int(d["collapsed"].astype(bool).sum())
        else:
            if not set(members) <= set(sel["technique"]):
                continue
            try:
                values = [float(x) for x in ensemble_accuracy(table, steps, members, reinit)]
            except (ParameterError, StoreError, KeyError, FileNotFoundError):
                continue  # no test predictions kept: no ensemble
            collapsed = math.nan
        s = summarize(values)
        poster = _poster(column)
        out.append({"set": name, "steps": steps, "column": column, "seeds": s.n, "per_seed": values,
                    "mean": s.mean, "low": s.low, "high": s.high, "collapsed": collapsed, "poster": poster,
                    "gap": s.mean - poster})
    return pd.DataFrame(out, columns=FIELDS)


def comparison(tables: dict[str, pd.DataFrame], readings=READINGS, reinit: str = "rewind") -> pd.DataFrame:
    """:func:`row` of every named table at every reading, stacked in the order given."""
    parts = [row(t, k, reinit, name) for name, t in tables.items() for k in readings]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FIELDS)


def rms(long: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Per set and reading: the RMS of the gaps to the poster over ``columns`` (default: those it has), and how
    many columns that is."""
    sel = long if columns is None else long[long["column"].isin(columns)]
    g = sel.assign(sq=sel["gap"] ** 2).groupby(["set", "steps"], sort=False)
    return pd.DataFrame({"rms": np.sqrt(g["sq"].mean()), "columns": g["sq"].count()}).reset_index()


def wide(long: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The comparison as the poster's table: one line per set and reading, the mean of each column ("mean (c
    collapsed)" where seeds collapsed), then the RMS gap to the poster over the seven techniques and over every
    column the set has; the poster's own line first."""
    names = [c for c, _ in COLUMNS]
    lines = [{"set": "poster", "steps": "18?", **{c: f"{_poster(c):.{digits}f}" for c in names},
              "RMS, 7 techniques": "", "RMS, all columns": ""}]
    singles = [c for c, m in COLUMNS if len(m) == 1]
    r7, rall = rms(long, singles), rms(long)
    for (name, steps), d in long.groupby(["set", "steps"], sort=False):
        cells = {}
        for c in names:
            hit = d[d["column"] == c]
            if hit.empty:
                cells[c] = "n/a"
                continue
            x = hit.iloc[0]
            n_c = x["collapsed"]
            note = f" ({int(n_c)}/{int(x['seeds'])} collapsed)" if pd.notna(n_c) and n_c > 0 else ""
            cells[c] = f"{x['mean']:.{digits}f}{note}"
        a = r7[(r7["set"] == name) & (r7["steps"] == steps)]
        b = rall[(rall["set"] == name) & (rall["steps"] == steps)]
        lines.append({"set": name, "steps": steps, **cells,
                      "RMS, 7 techniques": f"{float(a['rms'].iloc[0]):.{digits}f} ({int(a['columns'].iloc[0])})"
                      if len(a) else "n/a",
                      "RMS, all columns": f"{float(b['rms'].iloc[0]):.{digits}f} ({int(b['columns'].iloc[0])})"
                      if len(b) else "n/a"})
    return pd.DataFrame(lines)


def nearer_reading(long: pd.DataFrame, readings=READINGS) -> pd.DataFrame:
    """Per set: the RMS gap (seven techniques) at each reading and the reading nearer the poster."""
    singles = [c for c, m in COLUMNS if len(m) == 1]
    r = rms(long, singles).pivot(index="set", columns="steps", values="rms")
    r = r.reindex(list(dict.fromkeys(long["set"])))
    out = pd.DataFrame({f"rms_{k}": r.get(k) for k in readings})
    a, b = (out[f"rms_{k}"] for k in readings)
    out["nearer"] = [readings[0] if x < y else readings[1] if y < x else math.nan for x, y in zip(a, b)]
    return out.reset_index().rename(columns={"index": "set"})
