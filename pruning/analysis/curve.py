"""Verdicts along the sparsity curve: where a claim holds, a margin that calls a tie a tie, and the ticket test.

- :func:`spans` writes a set of iterations as ranges ("1-7, 9-15, 17").
- :func:`verdict_with_margin` extends the verdict rule (``findings.verdict``) for claims about a difference: when
  the whole 95% interval lies within ``margin`` of the threshold the answer is "no difference", not "not supported".
- :func:`ranges` gives, per finding (or any key), the iterations of each verdict.
- :func:`ticket_test` asks whether a sub-network is a ticket: does its mask with its own initialisation (rewind)
  beat the same technique's mask with a fresh initialisation (random_reinit), paired by seed, at every iteration.
"""
from __future__ import annotations

import math
import re

import pandas as pd

from .findings import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, verdict
from .stats import Summary, summarize

NO_DIFFERENCE = "no difference"
EQUIVALENCE_MARGIN = 0.5  # points of accuracy: a difference whose whole 95% interval lies within ±0.5 is a tie
TICKET_TECHNIQUES = ("l1_us", "hybrid", "fc_only_l1_us")  # the techniques that can keep the dense accuracy


def spans(iterations) -> str:
    """Sorted iterations as ranges: [1, 2, 3, 5, 7, 8] -> "1-3, 5, 7-8"; "none" for none."""
    its = sorted({int(i) for i in iterations})
    if not its:
        return "none"
    parts, start, prev = [], its[0], its[0]
    for i in its[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def verdict_with_margin(summary: Summary, threshold: float = 0.0, above: bool = True,
                        margin: float = EQUIVALENCE_MARGIN) -> str:
    """The verdict rule, plus: "no difference" when the whole 95% interval lies within ``margin`` of ``threshold``
    (a practical equivalence margin, for claims that a difference is positive or negative)."""
    if summary.n >= 2 and math.isfinite(summary.low) and math.isfinite(summary.high) and \
            threshold - margin <= summary.low and summary.high <= threshold + margin:
        return NO_DIFFERENCE
    return verdict(summary, threshold, above)


def ranges(frame: pd.DataFrame, key: str = "finding") -> pd.DataFrame:
    """Per ``key``: the iterations of each verdict as :func:`spans` (columns supported, not supported, no
    difference, inconclusive). ``frame`` has columns ``key``, iteration, verdict."""
    rows = []
    for k, d in frame.groupby(key, sort=False):
        row = {key: k}
        for v in (SUPPORTED, NOT_SUPPORTED, NO_DIFFERENCE, INCONCLUSIVE):
            row[v] = spans(d.loc[d["verdict"] == v, "iteration"])
        rows.append(row)
    return pd.DataFrame(rows, columns=[key, SUPPORTED, NOT_SUPPORTED, NO_DIFFERENCE, INCONCLUSIVE])


def ticket_test(table: pd.DataFrame, techniques=TICKET_TECHNIQUES, margin: float = EQUIVALENCE_MARGIN,
                own: str = "rewind", fresh: str = "random_reinit") -> pd.DataFrame:
    """Per technique and iteration: test accuracy with the mask's own initialisation (``own``) minus with a fresh
    one (``fresh``), paired by seed (the seed's dense network and data order are shared). Collapsed trainings are
    left out (their pair with them). Columns: technique, iteration, seeds, per_seed, mean, low, high, collapsed
    (pairs left out), verdict (the claim "own > fresh", with ``margin``). Empty where ``fresh`` was not run."""
    rows = []
    sel = table[table["reinit"].isin([own, fresh]) & table["technique"].isin(list(techniques))]
    for (tech, it), d in sel.groupby(["technique", "iteration"], sort=True):
        if it == 0:
            continue  # the shared dense training: no mask yet
        a = d[d["reinit"] == own].set_index("seed")
        b = d[d["reinit"] == fresh].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            continue
        bad = [s for s in seeds if bool(a.loc[s, "collapsed"]) or bool(b.loc[s, "collapsed"])]
        good = [s for s in seeds if s not in bad]
        diffs = [float(a.loc[s, "test_acc"]) - float(b.loc[s, "test_acc"]) for s in good]
        s = summarize(diffs)
        rows.append({"technique": tech, "iteration": int(it), "seeds": len(good), "per_seed": diffs, "mean": s.mean,
                     "low": s.low, "high": s.high, "collapsed": len(bad),
                     "verdict": verdict_with_margin(s, 0.0, True, margin)})
    cols = ["technique", "iteration", "seeds", "per_seed", "mean", "low", "high", "collapsed", "verdict"]
    return pd.DataFrame(rows, columns=cols)


# Findings whose claim is a difference of accuracies in points (random S minus random US, an ensemble minus its
# best member): a tie within the margin is "no difference".
DIFFERENCE_FINDINGS = ("random", "ensembles")


def verdict_curve(table: pd.DataFrame, iterations=None, main_reinit: str = "rewind",
                  margin: float = EQUIVALENCE_MARGIN, reruns=()) -> pd.DataFrame:
    """Every finding at every iteration (default: 1 to the last every run of ``main_reinit`` reached): one row per
    finding, iteration and condition (``measure``: its place in the finding; ``series``: its name without the
    iteration, the same along the curve), with the condition's mean, 95% interval, threshold, side and verdict, and the
    finding's verdict at that iteration (the margin applied to :data:`DIFFERENCE_FINDINGS`). ``reruns``: as
    ``findings.findings``'s, for finding 1's noise floor."""
    from . import findings as _findings
    from .table import last_iteration

    last = last_iteration(table[table["reinit"] == main_reinit])
    its = range(1, last + 1) if iterations is None else [int(i) for i in iterations if 0 < int(i) <= last]
    rows = []
    for it in its:
        for f in _findings.findings(table, it, main_reinit, reruns):
            per = []
            for index, m in enumerate(f.measures):
                v = (verdict_with_margin(m.summary, m.threshold, m.above, margin) if f.key in DIFFERENCE_FINDINGS
                     else m.verdict)
                per.append(v)
                rows.append({"finding": f.key, "short": f.short, "iteration": it, "measure": index,
                             "series": re.sub(r",? ?iterations? [\d–-]+", "", m.condition).strip(", "),
                             "condition": m.condition,
                             "quantity": m.quantity, "mean": m.summary.mean, "low": m.summary.low,
                             "high": m.summary.high, "n": m.summary.n, "threshold": m.threshold, "above": m.above,
                             "measure_verdict": v})
            overall = _combine_with_ties(per) if per else f.verdict
            for r in rows[len(rows) - len(per):]:
                r["verdict"] = overall
            if not per:
                rows.append({"finding": f.key, "short": f.short, "iteration": it, "measure": -1, "series": "",
                             "condition": "", "quantity": "",
                             "mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "threshold": math.nan,
                             "above": True, "measure_verdict": f.verdict, "verdict": f.verdict})
    return pd.DataFrame(rows)


def _combine_with_ties(verdicts) -> str:
    """The rule's combination over conditions, where "no difference" under any condition (and not supported under
    none) makes the finding a tie."""
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if NO_DIFFERENCE in verdicts:
        return NO_DIFFERENCE
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def finding_ranges(curve_: pd.DataFrame) -> pd.DataFrame:
    """:func:`ranges` of :func:`verdict_curve`, one row per finding (its verdict per iteration), with its claim."""
    per = curve_.drop_duplicates(["finding", "iteration"])[["finding", "short", "iteration", "verdict"]]
    out = ranges(per, key="finding")
    out.insert(1, "claim", [per.loc[per["finding"] == k, "short"].iloc[0] for k in out["finding"]])
    return out
