"""The poster's findings, each with our numbers, their uncertainty over seeds, a baseline and a verdict.

The verdict rule is :mod:`.verdicts`'s. Each finding's quantity, threshold and baseline are in its ``rule``;
every number comes from the results table and the stored trainings. Collapsed trainings (a constant guess, or a
network that diverged) are left out of the findings that compare masks, functions or weights (two constant guesses
agree by construction) and counted beside those whose quantity is an accuracy, where a collapse is the loss of
accuracy itself (:mod:`.confounds`). Where reruns of the same seeds exist (``reruns``), finding 1's threshold
rises to each technique's own rerun distance (:func:`.noise.rerun_floors`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..nets import techniques as _techniques
from . import accuracy, confounds, connectivity, masks, noise, predictions, weights
from .stats import summarize
from .table import ParameterError, last_iteration, record, technique_order
from .verdicts import (DIFFERENT_FUNCTIONS, INCONCLUSIVE, NEAR_DENSE_MARGIN, NOT_SUPPORTED, RULE,  # noqa: F401
                       SUPPORTED, TICKET_DISTANCE, VERDICTS, Finding, Measure, combine, describe, fmt, verdict)

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
    bad = confounds.collapsed_at(table, reinit, iteration) | confounds.collapsed_at(table, reinit, 0)
    for t in technique_order(table[table["reinit"] == reinit]):
        pruned, dense = _acc(table, t, reinit, iteration), _acc(table, t, reinit, 0)
        values = {s: pruned[s] - dense[s] for s in pruned if s in dense}
        out[t] = Measure(f"{_label(t)}, {_reinit_name(reinit)}, iteration {iteration}",
                         "accuracy minus dense (points)", values, -NEAR_DENSE_MARGIN, digits=1,
                         baseline=confounds.counted(sum((t, s) in bad for s in values), len(values)))
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


def finding_tickets(table, iteration: int, reinit: str, floors: dict | None = None) -> Finding:
    """``floors``: {technique: its masks' distance to a rerun's (same seed, float rounding only), over the random-mask
    distance} (``noise.rerun_floors``): two techniques' masks count as different tickets only above both floors."""
    per = winning(table, iteration, reinit)
    maybe = [t for t, m in per.items() if m.verdict != NOT_SUPPORTED]
    keep = [t for t, m in per.items() if m.verdict == SUPPORTED]
    claim = "There exist multiple different lottery tickets within an over-parametrised network."
    rule = (f"Jaccard distance of the masks of the two closest techniques that may keep the dense accuracy (not "
            f"shown to lose more than {NEAR_DENSE_MARGIN:g} points), divided by the distance two independent random "
            f"masks of the same per-layer densities would have (1 = as different as unrelated masks, 0 = the same "
            f"mask), must be above {TICKET_DISTANCE:g}; with fewer than two such techniques the finding is not "
            f"supported, and a distance above the threshold counts as supported only when at least two techniques "
            f"are shown to keep the dense accuracy (established winning tickets), else inconclusive. Where reruns "
            f"of the same seed exist, the threshold is raised to each technique's own rerun distance (the noise "
            f"floor): masks that differ no more than a rerun's do are not different tickets. Pairs with a "
            f"collapsed training are left out")
    if len(maybe) < 2:
        return Finding("tickets", claim, "multiple different winning tickets", rule, [], verdict=NOT_SUPPORTED,
                       note="Fewer than two techniques keep the dense accuracy, so there are not two tickets to compare.")
    pairs = masks.pair_distances(table, iteration, reinit, techniques=maybe)
    bad = confounds.collapsed_at(table, reinit, iteration)
    n_all = len(pairs)
    pairs = pairs[[(a, int(s)) not in bad and (b, int(s)) not in bad
                   for a, b, s in zip(pairs["technique_a"], pairs["technique_b"], pairs["seed"])]].copy()
    pairs["normalised"] = pairs["distance"] / pairs["random"]
    floors = floors or {}
    floor = {t: float(floors.get(t, math.nan)) for t in maybe}
    mean = pairs.groupby(["technique_a", "technique_b"])["normalised"].mean().dropna()
    if pairs.empty:
        return Finding("tickets", claim, "multiple different winning tickets", rule, [], verdict=INCONCLUSIVE,
                       note=f"Every pair of these techniques had a collapsed training ({n_all} pairs over seeds): "
                            f"no two working masks to compare.")

    def threshold(a, b):
        return max([TICKET_DISTANCE] + [floor[t] for t in (a, b) if math.isfinite(floor[t])])
    if mean.empty:  # e.g. before pruning: every mask keeps every weight, and random masks do too (0 / 0)
        return Finding("tickets", claim, "multiple different winning tickets", rule, [], verdict=INCONCLUSIVE,
                       note="Random masks of these densities do not differ (nothing is pruned yet), so the masks' "
                            "distance has no baseline.")
    a, b = min(mean.index, key=lambda k: mean[k] - threshold(*k))  # the pair nearest its threshold
    p = pairs[(pairs["technique_a"] == a) & (pairs["technique_b"] == b)]
    floor_text = ", ".join(f"{_label(t)} {fmt(floor[t])}" for t in (a, b) if math.isfinite(floor[t]))
    m = Measure(f"{_label(a)} vs {_label(b)}, {_reinit_name(reinit)}, iteration {iteration}, all layers",
                "distance / random-mask distance", dict(zip(p["seed"], p["normalised"])), threshold(a, b),
                baseline=f"Jaccard distance {fmt(p['distance'].mean())}, random masks {fmt(p['random'].mean())}; "
                         f"rerun floor: {floor_text or 'no reruns'}; "
                         + confounds.left_out(n_all - len(pairs), n_all, "pairs (over seeds) had a training that"))
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
            f"iteration {iteration} (mean over seeds), so the verdict reads both techniques on the test images of the "
            f"classes both can still output; the output-exempt variant (configs/sensitivity/output_exempt.yaml) keeps "
            f"every class."
            if len(u) and u["units"].iloc[0] < u["classes"].iloc[0] else
            "Random S keeps every output unit here, so lost output classes do not drive this comparison.")


def finding_random(table, iteration: int, reinits) -> Finding:
    """Random S minus random US, per seed averaged over iterations 1..``iteration``, collapsed trainings counted. With
    stored predictions (a ``file`` column) on the classes both can still output (the poster's released code never
    prunes an output unit); without, on every test image."""
    ms = []
    for r in reinits:
        if confounds.has_records(table):
            d = confounds.class_differences(table, r)
            col, where = "shared", "classes both can output"
        else:
            sel = table[(table["reinit"] == r) & table["technique"].isin(["random_s", "random_us"])]
            flag = confounds.collapsed_flags(sel)
            w = sel.assign(bad=flag).pivot_table(index=["seed", "iteration"], columns="technique",
                                                 values=["test_acc", "bad"], aggfunc="first")
            d = pd.DataFrame({"seed": w.index.get_level_values(0), "iteration": w.index.get_level_values(1),
                              "all": (w["test_acc"]["random_s"] - w["test_acc"]["random_us"]).values,
                              "collapsed": (w["bad"]["random_s"].astype(bool) | w["bad"]["random_us"].astype(bool)
                                            ).values}).dropna(subset=["all"])
            col, where = "all", "every test image"
        d = d[(d["iteration"] >= 1) & (d["iteration"] <= iteration)]
        good = d
        values = {int(s): float(g[col].mean()) for s, g in good.groupby("seed") if g[col].notna().any()}
        at = good[good["iteration"] == iteration]
        base = f"at iteration {iteration} alone: {fmt(float(at[col].mean()) if len(at) else math.nan, 1)}"
        if col == "shared":
            base += f"; on every test image: {fmt(float(good['all'].mean()) if len(good) else math.nan, 1)}"
        ms.append(Measure(f"{_reinit_name(r)}, iterations 1–{iteration}, {where}", "random S minus random US accuracy, "
                          "mean over iterations (points)", values, 0.0, digits=1,
                          baseline=base + "; " + confounds.counted(int(d["collapsed"].sum()), len(d),
                                                                   "pairs of trainings (seed, iteration) had one that")))
    note = _output_units_note(table, iteration, reinits[0]) if confounds.has_records(table) else ""  # "": no masks read
    return Finding("random", "Random structured pruning > random unstructured pruning: networks are more resistant to the "
                   "removal of random units/channels than of random individual connections.",
                   "random structured pruning beats random unstructured pruning",
                   "per seed, random S's accuracy minus random US's, averaged over the pruning iterations, must be "
                   "above 0, under every reinitialisation; read on the test images of the classes both can still "
                   "output (a structured technique that prunes the output layer loses whole classes, which the "
                   "poster's released code never does); a collapsed training stays in (a collapse is the loss of "
                   "accuracy the claim is about) and is counted beside", ms, note=note)


FUNCTIONS_CLAIM = ("Networks pruned via different iterative pruning techniques learn vastly different functions of "
                   "their input, and similarly performing networks make different mistakes.")
FUNCTIONS_SHORT = "sub-networks of different techniques compute different functions"


def finding_functions(table, iteration: int, reinit: str) -> Finding:
    pairs = predictions.agreement_pairs(table, iteration, reinit)
    out = confounds.collapsed_at(table, reinit, iteration)
    dropped = [(a, s) in out or (b, s) in out for a, b, s in zip(pairs["technique_a"], pairs["technique_b"], pairs["seed"])]
    n_all = len(pairs)
    pairs = pairs[[not d for d in dropped]]
    values = pairs.groupby("seed")["excess"].mean().to_dict()
    m = Measure(f"pairs of techniques neither of which collapsed, {_reinit_name(reinit)}, iteration {iteration}",
                "agreement above chance, as a share of the most possible", values, DIFFERENT_FUNCTIONS, above=False,
                baseline=f"agreement {fmt(100 * pairs['agreement'].mean(), 1)}%, expected by chance "
                         f"{fmt(100 * pairs['chance'].mean(), 1)}%, most possible {fmt(100 * pairs['most'].mean(), 1)}%; "
                         f"{n_all - len(pairs)} of {n_all} pairs (over seeds) left out because a training collapsed")
    near = confounds.similar(pairs)
    m2 = Measure(f"pairs of working networks within {confounds.SIMILAR_ACCURACY:g} points of each other, "
                 f"{_reinit_name(reinit)}, iteration {iteration}", "agreement above chance, as a share of the most "
                 "possible", near.groupby("seed")["excess"].mean().to_dict(), DIFFERENT_FUNCTIONS, above=False,
                 baseline=f"{len(near)} of {len(pairs)} working pairs (over seeds); agreement "
                          f"{fmt(100 * near['agreement'].mean(), 1)}%, chance {fmt(100 * near['chance'].mean(), 1)}%")
    return Finding("functions", FUNCTIONS_CLAIM, FUNCTIONS_SHORT,
                   f"per pair of techniques, (agreement − chance) / (most possible − chance), where chance = "
                   f"a1·a2 + (1−a1)(1−a2)/(K−1) (independent errors spread evenly over the K−1 wrong classes) and "
                   f"the most possible = 1 − |a1 − a2|, averaged over pairs, must be below {DIFFERENT_FUNCTIONS:g} "
                   f"(closer to independent classifiers than to identical ones); a pair in which either training "
                   f"collapsed to a constant guess is left out (two constant guesses agree by construction); the "
                   f"claim's second half is read on the pairs whose accuracies lie within "
                   f"{confounds.SIMILAR_ACCURACY:g} points (similarly performing networks)", [m, m2])


def finding_ensembles(table, iteration: int, reinit: str) -> Finding:
    present = set(table["technique"])
    groups = {n: g for n, g in predictions.ensemble_groups(present).items() if len(g) > 1}
    ms = []
    bad = confounds.collapsed_at(table, reinit, iteration)
    for name, members in groups.items():
        ens = predictions.ensemble_accuracy(table, iteration, members, reinit, "mean_prob")
        vote = predictions.ensemble_accuracy(table, iteration, members, reinit, "vote")
        seeds = [int(s) for s in ens.index]
        good = seeds  # a collapsed member adds nearly uniform probabilities to the mean: it moves no argmax
        acc = {t: _acc(table, t, reinit, iteration) for t in members}
        best = max(members, key=lambda t: np.mean(list(acc[t].values())) if acc[t] else -math.inf)
        values = {s: float(ens[s]) - acc[best][s] for s in good if s in acc[best]}
        vote_gap = np.mean([float(vote[s]) - acc[best][s] for s in values]) if values else math.nan
        ms.append(Measure(f"{name}, {_reinit_name(reinit)}, iteration {iteration}",
                          f"ensemble (softmax mean) minus its best member, {_label(best)} (points)", values, 0.0,
                          digits=1, baseline=f"majority vote minus best member: {fmt(vote_gap, 1)}; "
                                             + confounds.counted(sum(any((t, s) in bad for t in members)
                                                                     for s in seeds), len(seeds),
                                                                 "seeds had a member that")))
    if not ms:
        return Finding("ensembles", "Ensembles of sub-networks found by different techniques beat their best member.",
                       "ensembles beat their best member", "needs at least one ensemble", [], verdict=INCONCLUSIVE,
                       note="The results hold no ensemble of the poster's.")
    return Finding("ensembles", "Ensembling sub-networks found by different techniques beats their best member "
                   "(the poster's table: 91.0% for its seven techniques, 91.6% for hybrid + fc-only + L1 US, best "
                   "member 87.4%).", "ensembles beat their best member",
                   "per seed, the ensemble's accuracy (average of the members' softmax probabilities) minus that of "
                   "its best member must be above 0, for each ensemble; a collapsed member adds nearly uniform "
                   "probabilities to the mean, which moves no argmax, so the softmax mean leaves it out by itself; "
                   "seeds with one are counted beside", ms)


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
    out = confounds.collapsed_upto(table, reinit, iteration)
    left_out = {(t, int(s)) for t, s in zip(stab["technique"], stab["seed"]) if (t, int(s)) in out}
    techs = sorted(set(stab["technique"]))
    if len(techs) < 2:
        return Finding("stability", claim, "stable weights go with accuracy", rule, [], verdict=INCONCLUSIVE,
                       note=f"A correlation across techniques needs two or more; these results hold "
                            f"{', '.join(_label(t) for t in techs) or 'none'}.")
    acc = {t: _acc(table, t, reinit, iteration) for t in techs}
    values = confounds.stability_r(stab, acc, out)
    within = summarize(list(confounds.stability_r(stab, acc, out, confounds.unstructured(techs)).values()))
    used = {t for t, sd in zip(stab["technique"], stab["seed"]) if (t, int(sd)) not in out}
    m = Measure(f"{len(used)} techniques, "
                f"{_reinit_name(reinit)}, iteration {iteration}",
                "Pearson r of mean |Δw| and accuracy", values, 0.0, above=False,
                baseline=f"no relation: r = 0; {len(left_out)} collapsed run(s) (technique and seed) left out")
    note = (f"Within the unstructured techniques alone ({', '.join(_label(t) for t in confounds.unstructured(techs))}) "
            f"r = {describe(within)}: structured and unstructured techniques differ in both stability and accuracy, "
            f"so the correlation across all techniques partly separates the two families.")
    return Finding("stability", claim, "stable weights go with accuracy", rule, [m], note=note)


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
            "empty; a seed whose L1 US training collapsed is left out")
    e = empty_kernel_table(table, iteration)
    if not {"rewind", "finetune"} <= set(e["reinit"]):
        return Finding("connectivity", claim, "rewinding empties whole kernels, fine-tuning does not", rule, [],
                       verdict=INCONCLUSIVE, note="This needs L1 US runs with both rewind and fine-tune.")
    bad = {s for (t, s) in confounds.collapsed_at(table, "rewind", iteration) | confounds.collapsed_at(
        table, "finetune", iteration) if t == "l1_us"}
    n_all = len(e)
    e = e[[int(s) not in bad for s in e["seed"]]]
    rw, ft = e[e["reinit"] == "rewind"].set_index("seed"), e[e["reinit"] == "finetune"].set_index("seed")
    seeds = sorted(set(rw.index) & set(ft.index))
    m1 = Measure(f"L1 US, iteration {iteration}, conv layers", "emptied kernels, rewind minus fine-tune (points)",
                 {s: rw.loc[s, "empty_pct"] - ft.loc[s, "empty_pct"] for s in seeds}, 0.0, digits=1,
                 baseline=f"rewind {fmt(rw['empty_pct'].mean(), 1)}%, fine-tune {fmt(ft['empty_pct'].mean(), 1)}%; "
                          + confounds.left_out(n_all - len(e), n_all))
    m2 = Measure(f"L1 US, rewind, iteration {iteration}, conv layers", "emptied kernels minus chance (points)",
                 {s: rw.loc[s, "empty_pct"] - rw.loc[s, "chance_pct"] for s in rw.index}, 0.0, digits=1,
                 baseline=f"chance {fmt(rw['chance_pct'].mean(), 1)}%")
    return Finding("connectivity", claim, "rewinding empties whole kernels, fine-tuning does not", rule, [m1, m2])


def findings(table: pd.DataFrame, iteration: int, main_reinit: str = "rewind", reruns=()) -> list[Finding]:
    """The poster's seven findings at ``iteration``, in its order (P1 and P2 under ``main_reinit``). ``reruns``:
    results tables of the same config and seeds trained with other float rounding, for finding 1's noise floor."""
    reinits = [r for r in ("rewind", "finetune") if r in set(table["reinit"])] or [main_reinit]
    techs = set(table["technique"])
    floors = noise.rerun_floors(table, reruns, main_reinit, iteration) if len(reruns) else None
    out = [finding_tickets(table, iteration, main_reinit, floors), finding_variety(table, iteration, main_reinit)]
    if {"random_s", "random_us"} <= techs:
        out.append(finding_random(table, iteration, reinits))
    else:
        out.append(Finding("random", "Random structured pruning > random unstructured pruning.",
                           "random structured pruning beats random unstructured pruning", "needs random S and random US",
                           [], verdict=INCONCLUSIVE, note="The results do not hold both random techniques."))
    if len(techs) > 1:
        out.append(finding_functions(table, iteration, main_reinit))
    else:
        out.append(Finding("functions", FUNCTIONS_CLAIM, FUNCTIONS_SHORT, "needs two or more techniques", [], verdict=INCONCLUSIVE,
                           note=f"These results hold one technique ({_label(next(iter(techs)))}), so there are no "
                                f"two sub-networks to compare."))
    out.append(finding_ensembles(table, iteration, main_reinit))
    out.append(finding_stability(table, iteration, main_reinit))
    out.append(finding_connectivity(table, iteration))
    return out


VERDICT_ITERATIONS = (10, 15, 18)  # where the verdicts are read: a verdict that holds at one of them only is fragile


def verdicts_by_iteration(table: pd.DataFrame, iterations=VERDICT_ITERATIONS, main_reinit: str = "rewind",
                          reruns=()) -> pd.DataFrame:
    """Each finding's verdict at the ``iterations`` reached (else the last), n = the seeds present; columns "iteration N"."""
    last = last_iteration(table[table["reinit"] == main_reinit])
    its = [int(i) for i in iterations if int(i) <= last] or [last]
    columns = {f"iteration {it}": {f.key: f.verdict for f in findings(table, it, main_reinit, reruns)}
               for it in its}
    return pd.DataFrame(columns).rename_axis("finding")
