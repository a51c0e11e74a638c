"""The poster's findings, each with our numbers, their uncertainty over seeds, a baseline and a verdict.

The verdict rule (:func:`verdict`), written once here and quoted by the report:

    A finding claims that a quantity, measured once per seed, lies on one side of a threshold (above
    or below). Over the n seeds we take the mean and the 95% t-interval of the mean
    (mean ± t_{0.975, n-1} · std / √n). The claim is **supported** when the whole interval lies on the
    claimed side of the threshold, **not supported** when the whole interval lies on the other side
    (or touches the threshold from there), and **inconclusive** otherwise, which includes n < 2 seeds.
    A finding measured under several conditions (e.g. rewind and fine-tune) is supported when it is
    supported under every one of them, not supported when it is not supported under at least one,
    and inconclusive otherwise.

Each finding's quantity, threshold and baseline are in its ``rule``; every number comes from the
results table and the stored trainings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..nets import techniques as _techniques
from . import accuracy, connectivity, masks, predictions, weights
from .stats import Summary, pearson, summarize
from .table import ParameterError, last_iteration, record, technique_order

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
NEAR_DENSE_MARGIN = 2.0   # points of accuracy: a sub-network "keeps the dense accuracy" when it loses less
TICKET_DISTANCE = 0.5     # normalised mask distance above which two masks are "different tickets"
DIFFERENT_FUNCTIONS = 0.5  # normalised excess agreement below which two sub-networks "compute different functions"

RULE = ("A finding claims that a quantity, measured once per seed, lies above (or below) a threshold. Over the "
        "n seeds we take the mean and its 95% t-interval (mean ± t(0.975, n−1) · std / √n). The claim is "
        "supported when the whole interval lies on the claimed side of the threshold, not supported when the "
        "whole interval lies on the other side, and inconclusive otherwise, which includes n < 2 seeds. A "
        "finding measured under several conditions is supported when it is supported under each, not "
        "supported when it is not supported under at least one, and inconclusive otherwise.")


def verdict(summary: Summary, threshold: float = 0.0, above: bool = True) -> str:
    """The verdict rule for the claim "the quantity is above ``threshold``" (``above=False``: below)."""
    if summary.n < 2 or math.isnan(summary.low) or math.isnan(summary.high):
        return INCONCLUSIVE
    low, high = (summary.low, summary.high) if above else (-summary.high, -summary.low)
    t = threshold if above else -threshold
    if low > t:
        return SUPPORTED
    if high <= t:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def combine(verdicts) -> str:
    """Several conditions: supported if each is, not supported if at least one is not, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def describe(s: Summary, digits: int = 2, unit: str = "") -> str:
    """ "0.81 ± 0.02 (95% CI 0.63 to 0.99, n = 2)"; the interval is "not defined" for n < 2."""
    ci = (f"95% CI {fmt(s.low, digits)}{unit} to {fmt(s.high, digits)}{unit}" if s.n >= 2 and math.isfinite(s.low)
          else "95% CI not defined")
    return f"{fmt(s.mean, digits)}{unit} ± {fmt(s.std, digits)}{unit} ({ci}, n = {s.n})"


@dataclass
class Measure:
    """One condition of a finding: the per-seed values, their summary, the threshold and the verdict."""
    condition: str
    quantity: str
    values: dict
    threshold: float
    above: bool = True
    digits: int = 2
    unit: str = ""
    baseline: str = ""
    summary: Summary = field(init=False)
    verdict: str = field(init=False)

    def __post_init__(self):
        self.summary = summarize(list(self.values.values()))
        self.verdict = verdict(self.summary, self.threshold, self.above)

    @property
    def text(self) -> str:
        return f"{self.quantity} {describe(self.summary, self.digits, self.unit)}"


@dataclass
class Finding:
    key: str
    claim: str       # the poster's words
    short: str       # the claim in a few words, for the headline
    rule: str        # quantity, threshold and side, in words
    measures: list
    verdict: str = ""
    note: str = ""   # an explanation computed from the data

    def __post_init__(self):
        if not self.verdict:
            self.verdict = combine(m.verdict for m in self.measures)

    @property
    def headline(self) -> str:
        return f"{self.verdict.capitalize()}: {self.short}"

    @property
    def numbers(self) -> str:
        return "; ".join(f"{m.condition}: {m.text}" + (f" ({m.baseline})" if m.baseline else "") for m in self.measures)


# ----------------------------------------------------------------------------- per-seed helpers


def _acc(table, technique, reinit, iteration) -> dict[int, float]:
    d = table[(table["technique"] == technique) & (table["reinit"] == reinit) & (table["iteration"] == iteration)]
    return dict(zip(d["seed"].astype(int), d["test_acc"].astype(float)))


def _label(t: str) -> str:
    return _techniques.label(t)


def _reinit_name(r: str) -> str:
    return {"finetune": "fine-tune", "late_rewind": "late rewind", "random_reinit": "random reinit"}.get(r, r)


# ----------------------------------------------------------------------------- the findings


def winning(table, iteration: int, reinit: str) -> dict[str, Measure]:
    """Per technique: its accuracy minus the dense network's (same run, per seed), against -NEAR_DENSE_MARGIN."""
    out = {}
    for t in technique_order(table[table["reinit"] == reinit]):
        pruned, dense = _acc(table, t, reinit, iteration), _acc(table, t, reinit, 0)
        values = {s: pruned[s] - dense[s] for s in pruned if s in dense}
        out[t] = Measure(f"{_label(t)}, {_reinit_name(reinit)}, iteration {iteration}",
                         "accuracy minus dense (points)", values, -NEAR_DENSE_MARGIN, digits=1)
    return out


def finding_variety(table, iteration: int, reinit: str) -> Finding:
    per = winning(table, iteration, reinit)
    keep = [t for t, m in per.items() if m.verdict == SUPPORTED]
    maybe = [t for t, m in per.items() if m.verdict != NOT_SUPPORTED]
    v = SUPPORTED if len(keep) >= 2 else NOT_SUPPORTED if len(maybe) < 2 else INCONCLUSIVE
    best = sorted(per.items(), key=lambda kv: -kv[1].summary.mean if math.isfinite(kv[1].summary.mean) else 1e9)[:3]
    note = (f"Techniques that keep the dense accuracy (within {NEAR_DENSE_MARGIN:g} points, by the rule): "
            f"{', '.join(_label(t) for t in keep) or 'none'}; not excluded: {', '.join(_label(t) for t in maybe) or 'none'}.")
    return Finding("variety", "It is possible to find lottery tickets through a variety of pruning techniques.",
                   "several pruning techniques find winning tickets",
                   f"per technique, its accuracy minus that of its dense network (same seed) must stay above "
                   f"−{NEAR_DENSE_MARGIN:g} points; supported when at least two techniques pass, not supported when "
                   f"fewer than two could", [m for _, m in best], verdict=v, note=note)


def finding_tickets(table, iteration: int, reinit: str) -> Finding:
    per = winning(table, iteration, reinit)
    maybe = [t for t, m in per.items() if m.verdict != NOT_SUPPORTED]
    keep = [t for t, m in per.items() if m.verdict == SUPPORTED]
    claim = "There exist multiple different lottery tickets within an over-parametrised network."
    rule = (f"Jaccard distance of the masks of the two closest techniques that may keep the dense accuracy (not "
            f"shown to lose more than {NEAR_DENSE_MARGIN:g} points), divided by the distance two independent random "
            f"masks of the same per-layer densities would have (1 = as different as unrelated masks, 0 = the same "
            f"mask), must be above {TICKET_DISTANCE:g}; with fewer than two such techniques the finding is not "
            f"supported, and a distance above the threshold counts as supported only when at least two techniques "
            f"are shown to keep the dense accuracy (established winning tickets), else inconclusive")
    if len(maybe) < 2:
        return Finding("tickets", claim, "multiple different winning tickets", rule, [], verdict=NOT_SUPPORTED,
                       note="Fewer than two techniques keep the dense accuracy, so there are not two tickets to compare.")
    pairs = masks.pair_distances(table, iteration, reinit, techniques=maybe)
    pairs["normalised"] = pairs["distance"] / pairs["random"]
    mean = pairs.groupby(["technique_a", "technique_b"])["normalised"].mean().dropna()
    if mean.empty:  # e.g. before pruning: every mask keeps every weight, and random masks do too (0 / 0)
        return Finding("tickets", claim, "multiple different winning tickets", rule, [], verdict=INCONCLUSIVE,
                       note="Random masks of these densities do not differ (nothing is pruned yet), so the masks' "
                            "distance has no baseline.")
    a, b = mean.idxmin()
    p = pairs[(pairs["technique_a"] == a) & (pairs["technique_b"] == b)]
    m = Measure(f"{_label(a)} vs {_label(b)}, {_reinit_name(reinit)}, iteration {iteration}, all layers",
                "distance / random-mask distance", dict(zip(p["seed"], p["normalised"])), TICKET_DISTANCE,
                baseline=f"Jaccard distance {fmt(p['distance'].mean())}, random masks {fmt(p['random'].mean())}")
    v = m.verdict
    downgraded = v == SUPPORTED and len(keep) < 2
    if downgraded:
        v = INCONCLUSIVE  # different masks, but not yet two established winning tickets
    closer = pairs["distance"].mean() < pairs["random"].mean()
    note = (f"Over all pairs of these techniques the masks are {fmt(pairs['distance'].mean())} apart, random masks of "
            f"the same densities {fmt(pairs['random'].mean())}: the techniques' masks are "
            f"{'closer than chance' if closer else 'as far apart as chance or farther'}."
            + (f" The distance is above the threshold, but only {len(keep)} technique(s) are shown to keep the dense "
               f"accuracy, so the verdict is inconclusive." if downgraded else ""))
    return Finding("tickets", claim, "multiple different winning tickets", rule, [m], verdict=v, note=note)


def _output_units_note(table, iteration: int, reinit: str) -> str:
    u = accuracy.output_units(table, reinit, techniques=["random_s"]).query("iteration == @iteration")
    return (f"Random S keeps {fmt(float(u['units'].iloc[0]), 1)} of {int(u['classes'].iloc[0])} output units at "
            f"iteration {iteration} (mean over seeds): part of what this measures is lost output classes, not structure; "
            f"the output-exempt variant (configs/sensitivity/output_exempt.yaml) keeps all classes."
            if len(u) and u["units"].iloc[0] < u["classes"].iloc[0] else
            "Random S keeps every output unit here, so lost output classes do not drive this comparison.")


def finding_random(table, iteration: int, reinits) -> Finding:
    ms = []
    for r in reinits:
        rs = {(int(s), int(i)): a for s, i, a in table[(table["technique"] == "random_s") & (table["reinit"] == r)
                                                         ][["seed", "iteration", "test_acc"]].itertuples(index=False)}
        ru = {(int(s), int(i)): a for s, i, a in table[(table["technique"] == "random_us") & (table["reinit"] == r)
                                                         ][["seed", "iteration", "test_acc"]].itertuples(index=False)}
        seeds = sorted({s for s, _ in rs})
        values = {}
        for s in seeds:
            d = [rs[s, i] - ru[s, i] for i in range(1, iteration + 1) if (s, i) in rs and (s, i) in ru]
            if d:
                values[s] = float(np.mean(d))
        at = {s: rs[s, iteration] - ru[s, iteration] for s in seeds if (s, iteration) in rs and (s, iteration) in ru}
        ms.append(Measure(f"{_reinit_name(r)}, iterations 1–{iteration}", "random S minus random US accuracy, mean over "
                          "iterations (points)", values, 0.0, digits=1,
                          baseline=f"at iteration {iteration} alone: {fmt(np.mean(list(at.values())) if at else math.nan, 1)}"))
    note = _output_units_note(table, iteration, reinits[0]) if "file" in table.columns else ""  # "": no masks read
    return Finding("random", "Random structured pruning > random unstructured pruning: networks are more resistant to the "
                   "removal of random units/channels than of random individual connections.",
                   "random structured pruning beats random unstructured pruning",
                   "per seed, random S's accuracy minus random US's, averaged over the pruning iterations, must be "
                   "above 0, under every reinitialisation", ms, note=note)


def finding_functions(table, iteration: int, reinit: str) -> Finding:
    pairs = predictions.agreement_pairs(table, iteration, reinit)
    out = accuracy.collapsed_runs(table[table["iteration"] == iteration], reinit, iteration)
    dropped = [(a, s) in out or (b, s) in out for a, b, s in zip(pairs["technique_a"], pairs["technique_b"], pairs["seed"])]
    n_all = len(pairs)
    pairs = pairs[[not d for d in dropped]]
    values = pairs.groupby("seed")["excess"].mean().to_dict()
    m = Measure(f"pairs of techniques neither of which collapsed, {_reinit_name(reinit)}, iteration {iteration}",
                "agreement above chance, as a share of the most possible", values, DIFFERENT_FUNCTIONS, above=False,
                baseline=f"agreement {fmt(100 * pairs['agreement'].mean(), 1)}%, expected by chance "
                         f"{fmt(100 * pairs['chance'].mean(), 1)}%, most possible {fmt(100 * pairs['most'].mean(), 1)}%; "
                         f"{n_all - len(pairs)} of {n_all} pairs (over seeds) left out because a training collapsed")
    return Finding("functions", "Networks pruned via different iterative pruning techniques learn vastly different "
                   "functions of their input, and similarly performing networks make different mistakes.",
                   "sub-networks of different techniques compute different functions",
                   f"per pair of techniques, (agreement − chance) / (most possible − chance), where chance = "
                   f"a1·a2 + (1−a1)(1−a2)/(K−1) (independent errors spread evenly over the K−1 wrong classes) and "
                   f"the most possible = 1 − |a1 − a2|, averaged over pairs, must be below {DIFFERENT_FUNCTIONS:g} "
                   f"(closer to independent classifiers than to identical ones); a pair in which either training "
                   f"collapsed to a constant guess is left out (two constant guesses agree by construction)", [m])


def finding_ensembles(table, iteration: int, reinit: str) -> Finding:
    present = set(table["technique"])
    groups = {n: g for n, g in predictions.ensemble_groups(present).items() if len(g) > 1}
    ms = []
    for name, members in groups.items():
        acc = {t: _acc(table, t, reinit, iteration) for t in members}
        best = max(members, key=lambda t: np.mean(list(acc[t].values())))
        ens = predictions.ensemble_accuracy(table, iteration, members, reinit, "mean_prob")
        vote = predictions.ensemble_accuracy(table, iteration, members, reinit, "vote")
        values = {int(s): float(v) - acc[best][int(s)] for s, v in ens.items() if int(s) in acc[best]}
        ms.append(Measure(f"{name}, {_reinit_name(reinit)}, iteration {iteration}",
                          f"ensemble (softmax mean) minus its best member, {_label(best)} (points)", values, 0.0,
                          digits=1, baseline=f"majority vote minus best member: "
                                             f"{fmt(float(vote.mean()) - np.mean(list(acc[best].values())), 1)}"))
    if not ms:
        return Finding("ensembles", "Ensembles of sub-networks found by different techniques beat their best member.",
                       "ensembles beat their best member", "needs at least one ensemble", [], verdict=INCONCLUSIVE,
                       note="The results hold no ensemble of the poster's.")
    return Finding("ensembles", "Ensembling sub-networks found by different techniques beats their best member "
                   "(the poster's table: 91.0% for its seven techniques, 91.6% for hybrid + fc-only + L1 US, best "
                   "member 87.4%).", "ensembles beat their best member",
                   "per seed, the ensemble's accuracy (average of the members' softmax probabilities) minus that of "
                   "its best member must be above 0, for each ensemble", ms)


def finding_stability(table, iteration: int, reinit: str) -> Finding:
    claim = ("Weight stability to pruning correlates with performance, and can be induced through suitable pruning "
             "techniques, even without late resetting.")
    rule = ("per seed, the Pearson correlation across techniques between the mean |Δw| of weights that survive two "
            "consecutive iterations (averaged over iterations 1 to the chosen one) and accuracy must be below 0 "
            "(more stable weights, higher accuracy); a technique whose run collapsed to a constant guess at any of "
            "those iterations is left out of that seed, so that the correlation does not merely separate collapsed "
            "from working networks")
    try:
        stab = weights.weight_stability(table, reinit)
    except ParameterError as exc:
        return Finding("stability", claim, "stable weights go with accuracy", rule, [], verdict=INCONCLUSIVE,
                       note=str(exc))
    stab = stab[stab["iteration"] <= iteration]
    out = accuracy.collapsed_runs(table, reinit, iteration)
    left_out = {(t, int(s)) for t, s in zip(stab["technique"], stab["seed"]) if (t, int(s)) in out}
    stab = stab[[(t, int(s)) not in out for t, s in zip(stab["technique"], stab["seed"])]]
    values = {}
    for s, g in stab.groupby("seed"):
        d = g.groupby("technique")["mean_abs_delta"].mean()
        acc = {t: _acc(table, t, reinit, iteration).get(int(s), math.nan) for t in d.index}
        values[int(s)] = pearson(d.values, [acc[t] for t in d.index])
    values = {s: v for s, v in values.items() if math.isfinite(v)}
    m = Measure(f"{len(set(stab['technique']))} techniques, {_reinit_name(reinit)}, iteration {iteration}",
                "Pearson r of mean |Δw| and accuracy", values, 0.0, above=False,
                baseline=f"no relation: r = 0; {len(left_out)} collapsed run(s) (technique and seed) left out")
    return Finding("stability", claim, "stable weights go with accuracy", rule, [m])


def _empty_pct(rec) -> tuple[float, float]:
    kernels, empty, chance = 0, 0, 0.0
    for mask in (m for m in rec["masks"].values() if m.dim() == 4):
        counts = connectivity.empty_kernels(mask.float())
        kernels += counts["kernels"]
        empty += counts["empty_kernels"]
        chance += counts["kernels"] * connectivity.chance_empty_fraction(mask)
    return (100 * empty / kernels, 100 * chance / kernels) if kernels else (math.nan, math.nan)


def empty_kernel_table(table, iteration: int, technique: str = "l1_us") -> pd.DataFrame:
    """Per reinit and seed: % of conv kernels emptied entirely, and % expected if as many weights were pruned at random.

    A kernel of k entries in a layer with a fraction p of its entries pruned is empty by chance with p**k.
    """
    d = table[(table["technique"] == technique) & (table["iteration"] == iteration)]
    rows = []
    for r, s, f in zip(d["reinit"], d["seed"], d["file"]):
        pct, chance = _empty_pct(record(f))
        rows.append({"reinit": r, "seed": int(s), "empty_pct": pct, "chance_pct": chance})
    return pd.DataFrame(rows, columns=["reinit", "seed", "empty_pct", "chance_pct"])


def finding_connectivity(table, iteration: int) -> Finding:
    claim = ("Lottery-ticket-style weight rewinding, coupled with unstructured pruning, gives rise to connectivity "
             "patterns similar to structured pruning (feature selection); not true for fine-tuning.")
    rule = ("with L1 US, per seed, the % of conv kernels emptied entirely after rewinding minus that after fine-tuning "
            "must be above 0, and so must the rewinding % minus the % that pruning as many weights at random would "
            "empty")
    e = empty_kernel_table(table, iteration)
    if not {"rewind", "finetune"} <= set(e["reinit"]):
        return Finding("connectivity", claim, "rewinding empties whole kernels, fine-tuning does not", rule, [],
                       verdict=INCONCLUSIVE, note="This needs L1 US runs with both rewind and fine-tune.")
    rw, ft = e[e["reinit"] == "rewind"].set_index("seed"), e[e["reinit"] == "finetune"].set_index("seed")
    seeds = sorted(set(rw.index) & set(ft.index))
    m1 = Measure(f"L1 US, iteration {iteration}, conv layers", "emptied kernels, rewind minus fine-tune (points)",
                 {s: rw.loc[s, "empty_pct"] - ft.loc[s, "empty_pct"] for s in seeds}, 0.0, digits=1,
                 baseline=f"rewind {fmt(rw['empty_pct'].mean(), 1)}%, fine-tune {fmt(ft['empty_pct'].mean(), 1)}%")
    m2 = Measure(f"L1 US, rewind, iteration {iteration}, conv layers", "emptied kernels minus chance (points)",
                 {s: rw.loc[s, "empty_pct"] - rw.loc[s, "chance_pct"] for s in rw.index}, 0.0, digits=1,
                 baseline=f"chance {fmt(rw['chance_pct'].mean(), 1)}%")
    return Finding("connectivity", claim, "rewinding empties whole kernels, fine-tuning does not", rule, [m1, m2])


def findings(table: pd.DataFrame, iteration: int, main_reinit: str = "rewind") -> list[Finding]:
    """The poster's seven findings at ``iteration``, in its order (P1 and P2 under ``main_reinit``)."""
    reinits = [r for r in ("rewind", "finetune") if r in set(table["reinit"])] or [main_reinit]
    techs = set(table["technique"])
    out = [finding_tickets(table, iteration, main_reinit), finding_variety(table, iteration, main_reinit)]
    if {"random_s", "random_us"} <= techs:
        out.append(finding_random(table, iteration, reinits))
    else:
        out.append(Finding("random", "Random structured pruning > random unstructured pruning.",
                           "random structured pruning beats random unstructured pruning", "needs random S and random US",
                           [], verdict=INCONCLUSIVE, note="The results do not hold both random techniques."))
    if len(techs) > 1:
        out.append(finding_functions(table, iteration, main_reinit))
    out.append(finding_ensembles(table, iteration, main_reinit))
    out.append(finding_stability(table, iteration, main_reinit))
    out.append(finding_connectivity(table, iteration))
    return out


VERDICT_ITERATIONS = (10, 15, 18)  # where the verdicts are read: a verdict that holds at one of them only is fragile


def verdicts_by_iteration(table: pd.DataFrame, iterations=VERDICT_ITERATIONS, main_reinit: str = "rewind") -> pd.DataFrame:
    """Each finding's verdict at the ``iterations`` reached (else the last), n = the seeds present; columns "iteration N"."""
    last = last_iteration(table[table["reinit"] == main_reinit])
    its = [int(i) for i in iterations if int(i) <= last] or [last]
    columns = {f"iteration {it}": {f.key: f.verdict for f in findings(table, it, main_reinit)} for it in its}
    return pd.DataFrame(columns).rename_axis("finding")
