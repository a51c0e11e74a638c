"""Each confounded finding read with and without its confound, side by side, by the same verdict rule.

:func:`readings` gives one row per (finding, reading): the reading the verdict uses, and the others a reviewer would
ask for: finding 3 on every test image, on the classes both techniques can still output, without collapsed
trainings, and on the output-exempt variant; finding 4 on all working pairs and on similarly performing ones;
finding 6 over all techniques, within the unstructured ones, and per layer; finding 1 with and without the rerun
noise floor.
"""
from __future__ import annotations

import pandas as pd

from . import confounds, findings, weights
from .table import ParameterError, last_iteration, layer_names
from .verdicts import Measure

COLUMNS = ["finding", "reading", "verdicts", "mean", "low", "high", "n", "threshold", "verdict"]


def _row(key: str, reading: str, m: Measure, used: bool) -> dict:
    return {"finding": key, "reading": reading, "verdicts": used, "mean": m.summary.mean, "low": m.summary.low,
            "high": m.summary.high, "n": m.summary.n, "threshold": m.threshold, "verdict": m.verdict}


def _random_rows(table, iteration, reinit, exempt) -> list[dict]:
    rows = []
    f = findings.finding_random(table, iteration, [reinit])
    rows.append(_row("random", "classes both can still output", f.measures[0], True))
    if confounds.has_records(table):
        d = confounds.class_differences(table, reinit)
        d = d[(d["iteration"] >= 1) & (d["iteration"] <= iteration)]
        for col, name, keep in (("all", "every test image", d),
                                ("shared", "classes both can output, collapsed trainings left out",
                                 d[~d["collapsed"].astype(bool)])):
            values = {int(s): float(g[col].mean()) for s, g in keep.groupby("seed") if g[col].notna().any()}
            rows.append(_row("random", name, Measure(name, "points", values, 0.0), False))
    if exempt is not None:
        it = min(iteration, last_iteration(exempt[exempt["reinit"] == reinit]))
        fe = findings.finding_random(exempt, it, [reinit])
        rows.append(_row("random", f"output-exempt variant (every class kept), iterations 1–{it}", fe.measures[0],
                         False))
    return rows


def _stability_rows(table, iteration, reinit) -> list[dict]:
    rows = []
    try:
        stab_all = weights.weight_stability(table, reinit)
    except ParameterError:
        return rows
    out = confounds.collapsed_upto(table, reinit, iteration)
    techs = sorted(set(stab_all["technique"]))
    if len(techs) < 2:  # a correlation across techniques needs two or more (findings.finding_stability)
        return rows
    acc = {t: findings._acc(table, t, reinit, iteration) for t in techs}
    cut = stab_all[stab_all["iteration"] <= iteration]
    for name, group, used in (("all techniques", None, True),
                              ("unstructured techniques only", confounds.unstructured(techs), False)):
        values = confounds.stability_r(cut, acc, out, group)
        rows.append(_row("stability", name, Measure(name, "r", values, 0.0, above=False), used))
    for layer in layer_names(table):
        try:
            stab = weights.weight_stability(table, reinit, layer)
        except ParameterError:
            continue
        values = confounds.stability_r(stab[stab["iteration"] <= iteration], acc, out)
        rows.append(_row("stability", f"{layer} alone", Measure(layer, "r", values, 0.0, above=False), False))
    return rows


def readings(table: pd.DataFrame, iteration: int, reinit: str = "rewind", reruns=(), exempt=None) -> pd.DataFrame:
    """One row per finding and reading at ``iteration``: whether the verdict uses it (``verdicts``), the mean over
    seeds with its 95% interval, n, the threshold and the reading's own verdict. ``exempt``: the results table of
    the output-exempt variant (``configs/sensitivity/output_exempt.yaml``), or None."""
    rows = []
    with_floor = findings.findings(table, iteration, reinit, reruns)[0]
    without = findings.finding_tickets(table, iteration, reinit)
    for name, f, used in (("rerun noise floor", with_floor, True), ("threshold 0.5 alone", without, not len(reruns))):
        if f.measures and (name != "rerun noise floor" or len(reruns)):
            rows.append(_row("tickets", f"{name} ({f.measures[0].condition.split(',')[0]})", f.measures[0], used))
    techs = set(table["technique"])
    if {"random_s", "random_us"} <= techs:  # as findings.findings: a set without both random techniques has no finding 3
        rows += _random_rows(table, iteration, reinit, exempt)
    if len(techs) > 1:  # finding 4 compares techniques
        fn = findings.finding_functions(table, iteration, reinit)
        rows += [_row("functions", "all pairs of working networks", fn.measures[0], True),
                 _row("functions", f"working pairs within {confounds.SIMILAR_ACCURACY:g} points", fn.measures[1],
                      True)]
    rows += _stability_rows(table, iteration, reinit)
    return pd.DataFrame(rows, columns=COLUMNS)

