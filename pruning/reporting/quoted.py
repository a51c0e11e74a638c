"""Every number and verdict sentence the report quotes, computed from a results folder.

:func:`variables` returns {name: text}; ``pruning.reporting.report`` writes it to ``_variables.yml`` and the
report's ``.qmd`` files quote it as ``{{< var name >}}``. Nothing here is typed in: a number the
results cannot give is "n/a".
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from decimal import Decimal
from pathlib import Path

from .. import store
from ..core.names import ARCH_NAMES, DATASET_NAMES
from ..nets import techniques as _techniques
from ..analysis import accuracy, findings as _findings, masks, predictions, sensitivity
from ..core import paths
from . import deviations, plots, replicates as _replicates
from ..analysis.table import ParameterError, _ranges, load, report_iteration, record, technique_order

NEAR_DENSE_MARGIN = _findings.NEAR_DENSE_MARGIN
STRUCTURED = ["l1_s", "l2_s", "linf_s", "lneginf_s", "random_s"]


def _fmt(x, digits: int = 1) -> str:
    """A number for the text, rounded as the notebooks' tables round it (``plots.number``: half up, so 11.35 is
    11.4 everywhere), thousands separated; "n/a" for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{Decimal(plots.number(x, digits)):,.{digits}f}"


def _and(items) -> str:
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _label(t: str) -> str:
    return _techniques.label(t)


def variables(results) -> dict[str, str]:
    """Every value the report quotes, computed from ``results``, as text.

    Provenance, the protocol and its deviations, the numbers at the iteration every run reached (the
    figure notebooks' default) for the main reinitialisation (rewind when present), the explanations
    (output units left, collapsed trainings, dense vs pruned) and the seven findings with verdicts.
    """
    folder = Path(results)
    table = load(folder)
    exp = store.read_experiment(folder)
    cfg = exp.get("config", {})
    training = cfg.get("training", {})
    reinits = [r for r in (cfg.get("reinit") or sorted(set(table["reinit"]))) if r in set(table["reinit"])]
    main = "rewind" if "rewind" in reinits else reinits[0]
    sel = table[table["reinit"] == main]
    it = report_iteration(table)
    techs = technique_order(sel)
    seeds = sorted(int(s) for s in set(table["seed"]))
    runs_done = store.runs_finished(folder)[0]
    arch, dataset = str(table["arch"].iloc[0]), str(table["dataset"].iloc[0])
    iterations = int(cfg.get("iterations", int(table["iteration"].max())))
    v: dict[str, str] = {
        "results_folder": folder.resolve().name,
        "config_name": str(exp.get("name", cfg.get("name", folder.name))),
        "config_hash": str(exp.get("config_hash", "n/a")),
        "config_file": str(exp.get("config_file", "n/a")),
        "runs": str(len(exp.get("runs", []))),
        "runs_done": str(runs_done),
        "trainings": f"{len(table):,}",
        "code_version": _code_versions(folder, exp),
        "hardware": str(exp.get("hardware", "unknown")),
        "date": str(exp.get("updated", exp.get("started", "")))[:10] or "n/a",
        "rendered": _dt.date.today().isoformat(),
        "arch": ARCH_NAMES.get(arch, arch),
        "dataset": DATASET_NAMES.get(dataset, dataset),
        "techniques_n": str(len(technique_order(table))),
        "techniques_text": _plural(len(technique_order(table)), "pruning technique"),
        "techniques_list": _and([_label(t) for t in technique_order(table)]),
        "reinits": _and(reinits),
        "main_reinit": main,
        "seeds_n": str(len(seeds)),
        "seeds_text": _plural(len(seeds), "seed"),
        "seeds": _ranges(seeds),
        "seeds_scope": (f"seeds {_ranges(seeds)}" if sorted(cfg.get("seeds") or seeds) == seeds else
                        f"seeds {_ranges(seeds)} of the config's {_ranges(cfg.get('seeds'))}; more are added as they "
                        f"are trained"),
        "iterations": str(iterations),
        "iterations_text": _plural(iterations, "pruning iteration"),
        "trainings_per_run": str(iterations + 1),
        "epochs": str(training.get("epochs", "n/a")),
        "epochs_text": _plural(int(training["epochs"]), "epoch") if "epochs" in training else "n/a",
        "lr": str(training.get("lr", "n/a")),
        "momentum": str(training.get("momentum", "n/a")),
        "batch_size": str(training.get("batch_size", "n/a")),
        "prune_pct": _fmt(100 * float(cfg.get("prune_fraction", 0.2)), 0),
        "iteration": str(it),
        "near_dense_margin": _fmt(NEAR_DENSE_MARGIN, 0),
        "poster_iteration": str(predictions.POSTER_ITERATION),
    }
    v["compare_iteration_note"] = (
        f"iteration {predictions.POSTER_ITERATION}, the poster's" if it >= predictions.POSTER_ITERATION else
        f"iteration {it}, the last that every run reached (the poster's numbers are at iteration "
        f"{predictions.POSTER_ITERATION}, which these results do not reach)")
    at = sel[sel["iteration"] == it]
    us = at[at["technique"] == "l1_us"] if "l1_us" in techs else at
    v["remaining_pct"] = _fmt(100 * (1 - float(us["sparsity"].mean())))
    v["test_images"] = f"{int(record(at.iloc[0])['targets'].numel()):,}"
    v.update(_deviation_variables(folder))
    v.update(_accuracy_variables(table, sel, it, techs, main))
    v.update(_mask_variables(sel, it, main))
    v.update(_agreement_variables(sel, it, main))
    v.update(_ensemble_variables(sel, it, main))
    v.update(_finding_variables(table, it, main))
    v["sensitivity_summary"] = sensitivity_summary(table, exp.get("config", {}), it)
    v["random_note"] = " ".join(x for x in (v.get("random_note", ""), random_exempt(exp.get("config", {}), it)) if x)
    return v


def _code_versions(folder: Path, exp: dict) -> str:
    """The code version that trained each seed of a published set ("abc123 (seeds 0-1), def456 (seeds 2-9)"), read
    from each seed's own experiment.json; a run store's single version otherwise."""
    from ..analysis.curve import spans

    if not store.published.is_published(folder):  # one store: the seeds it has finished carry its version
        runs = exp.get("runs", [])
        done = sorted(s for s in {int(r["seed"]) for r in runs}
                      if all(store.run_done(folder, r["hash"]) for r in runs if int(r["seed"]) == s))
        version = str(exp.get("code_version", "unknown"))
        return f"{version} (seed{'s' * (len(done) > 1)} {spans(done)})" if done else version
    by: dict[str, list[int]] = {}
    for seed in store.published.seeds(folder):
        meta = store.published.seed_folder(folder, seed) / "experiment.json"
        try:
            version = json.loads(meta.read_text()).get("code_version", "unknown")
        except (OSError, ValueError):
            version = "unknown"
        by.setdefault(str(version), []).append(seed)
    if not by:
        return str(exp.get("code_version", "unknown"))
    return ", ".join(f"{v} (seed{'s' * (len(s) > 1)} {spans(s)})" for v, s in by.items())


def random_exempt(config: dict, it: int, folder: Path | None = None) -> str:
    """Finding 3 under a published output-exempt variant of this config (no output class can be lost), or ""."""
    for v in sensitivity.variants(config, folder or paths.DOCS / "sensitivity"):
        if v["changes"].get("output_layer", (None, None))[1] != "exempt":
            continue
        f = sensitivity.finding_random(v, it)
        if f is not None:
            return (f"Under the output-exempt variant ({v['name']}: every output unit kept, so no class can be lost), "
                    f"{f.numbers}: {f.verdict}.")
    return ""


def sensitivity_summary(table, config: dict, it: int, folder: Path | None = None, reinit: str = "rewind") -> str:
    """What the published variants of this set's config (``docs/sensitivity/``) say about the gap to the poster
    at iteration ``it``: how far each row is, which techniques a variant brings within reach, which none does."""
    found = [v for v in sensitivity.variants(config, folder or paths.DOCS / "sensitivity")
             if ((v["table"]["reinit"] == reinit) & (v["table"]["iteration"] == it)).any()]
    if not found:
        return (f"No variant of this set's config with iteration {it} is published in docs/sensitivity/, so "
                f"nothing here explains the gap to the poster.")
    frame = sensitivity.study({"this set": table, **{v["name"]: v["table"] for v in found}}, it, reinit)
    rms = sensitivity.distance_to_poster(frame)
    near = sensitivity.closest(frame)
    names = _and(f"{v['name']} ({', '.join(f'{k} {b}' for k, (_, b) in v['changes'].items())})" for v in found)
    best = min((n for n in rms.index if n != "this set"), key=lambda n: rms[n])
    rows = list(zip(near["technique"], near["within"]))
    already = [_label(t) for t, within in rows if "this set" in within]
    brought = [f"{_label(t)} ({', '.join(within)})" for t, within in rows if within and "this set" not in within]
    missed = [_label(t) for t, within in rows if not within]
    return (f"{len(found)} variant{'s' if len(found) != 1 else ''} of this set's config {'are' if len(found) != 1 else 'is'} "
            f"published: {names}. At iteration {it}, this set's row is {_fmt(rms['this set'])} points from the "
            f"poster's (RMS over the {frame[frame['set'] == 'this set'].shape[0]} techniques); the nearest variant row "
            f"is {best}'s, at {_fmt(rms[best])} (over the {_plural(frame[frame['set'] == best].shape[0], 'technique')} it has). Within {_fmt(sensitivity.WITHIN, 0)} points of the poster already in "
            f"this set: {_and(already) if already else 'no technique'}; brought there by a variant: "
            f"{_and(brought) if brought else 'no technique'}; by neither: {_and(missed) if missed else 'none'}. "
            + _default_sentence(sensitivity.default(frame, found)))


def _default_sentence(choice: dict) -> str:
    """Which variant becomes the project's default, by the rule in ``sensitivity.default``, and why."""
    rule = (f"A variant becomes the project's default only if the protocol allows it and its row is more than "
            f"{_fmt(choice['margin'], 0)} points (RMS, on the techniques it has) nearer the poster than this set's")
    rows = choice["variants"]
    if choice["name"] is not None:
        r = next(r for r in rows if r["name"] == choice["name"])
        return (f"{rule}: {r['name']} does ({_fmt(r['rms'])} against {_fmt(r['base_rms'])}; {'; '.join(r['reasons'])}), "
                f"so it becomes the default.")
    ok = [r for r in rows if r["allowed"]]
    parts = [f"{r['name']} {_fmt(r['rms'])} against {_fmt(r['base_rms'])}" for r in ok]
    barred = [f"{r['name']} ({'; '.join(r['reasons'])})" for r in rows if not r["allowed"]]
    return (f"{rule}. None qualifies: " + (f"the variants it allows come no nearer by that much ({_and(parts)})" if ok else
                                    "it allows none of them")
            + (f", and it rules out {_and(barred)}" if barred else "") + "; the default stays as it is.")


def _deviation_variables(folder: Path) -> dict[str, str]:
    dev = deviations.read_deviations(folder)
    names = {"training.lr": "learning rate", "training.momentum": "momentum", "training.epochs": "epochs",
             "seeds": "seeds", "iterations": "iterations", "data.train_subset": "training images",
             "architectures": "architectures", "data.val_subset": "validation images",
             "data.test_subset": "test images", "techniques": "techniques", "reinit": "reinitialisations"}
    parts = [f"{names.get(f, f)} {b} (protocol: {a})" for f, a, b in
             zip(dev["field"], dev["protocol"], dev["this run"]) if f in names]
    others = len(dev) - len(parts)
    if dev.empty:
        banner = "These results follow the full protocol (configs/paper_lenet_mnist.yaml)."
    else:
        banner = ("Not the full protocol: a reduced run. " + "; ".join(parts)
                  + (f"; {_plural(others, 'other difference')}" if others else "")
                  + ". The paper lists every difference.")
    return {"deviations_n": str(len(dev)), "is_protocol": "yes" if dev.empty else "no", "deviation_banner": banner}


def _accuracy_variables(table, sel, it: int, techs: list[str], main: str) -> dict[str, str]:
    acc = sel[sel["iteration"] == it].groupby("technique")["test_acc"].mean()
    dense = float(sel.loc[sel["iteration"] == 0, "test_acc"].mean()) if (sel["iteration"] == 0).any() else math.nan
    best, worst = acc.idxmax(), acc.idxmin()
    # every technique at the lowest accuracy as printed (several collapse to the same constant guess)
    tied = [t for t in techs if t in acc.index and _fmt(acc[t], 2) == _fmt(acc[worst], 2)]
    near = [t for t in techs if acc[t] >= dense - NEAR_DENSE_MARGIN]
    at = sel[(sel["iteration"] == it) & (sel["technique"] == best)]
    out = {"dense_acc": _fmt(dense), "best_technique": _label(best), "best_acc": _fmt(acc[best]),
           "best_remaining_pct": _fmt(100 * (1 - float(at["sparsity"].mean()))),
           "worst_technique": (_label(worst) if len(tied) == 1 else
                               f"{_and([_label(t) for t in tied])} (tied)"),
           "worst_acc": _fmt(acc[worst], 2 if len(tied) > 1 else 1), "near_dense_n": str(len(near)),
           "near_dense_list": _and([_label(t) for t in near]),
           "random_s_acc": _fmt(acc.get("random_s", math.nan)), "random_us_acc": _fmt(acc.get("random_us", math.nan))}
    # dense vs pruned at this training length
    above = [t for t in techs if acc[t] > dense]
    out["above_dense_n"] = str(len(above))
    out["above_dense_note"] = (
        f"{_and([_label(t) for t in above])} {'is' if len(above) == 1 else 'are'} more accurate after {it} pruning "
        f"iterations than the dense network ({_fmt(dense)}%) trained for the same length. Each training here is short, "
        f"and sparse winning tickets are known to learn faster than the dense network (Frankle & Carbin 2019), so at "
        f"a short training length a pruned network can overtake the dense one; at the protocol's 30 epochs the "
        f"dense network has time to converge." if above else
        f"No technique is more accurate after {it} pruning iterations than the dense network ({_fmt(dense)}%).")
    # output units left under structured pruning: the accuracy ceiling
    structured = [t for t in STRUCTURED if t in techs]
    if structured:
        units = accuracy.output_units(table, main, techniques=structured)
        u = units[units["iteration"] == it]
        worst_u = u.loc[u["units"].idxmin()]
        seeds_acc = sel.loc[(sel["iteration"] == it) & (sel["technique"] == worst_u["technique"]), "test_acc"]
        out["output_units_note"] = (
            f"Structured pruning removes whole output units too: after {it} iterations "
            f"{_label(worst_u['technique'])} keeps {_fmt(worst_u['units'], 1)} of {int(worst_u['classes'])} output units "
            f"(mean over seeds), and only {_fmt(worst_u['ceiling'])}% of the test images (mean over seeds) have a class "
            f"whose unit still has a weight. That is a ceiling up to the images a removed unit's constant output "
            f"(its bias) happens to win: its accuracy is {_fmt(worst_u['test_acc'])}% (mean over seeds; "
            f"{_fmt(seeds_acc.min())}% to {_fmt(seeds_acc.max())}% by seed).")
        out["output_units_min"] = _fmt(worst_u["units"], 1)
        out["output_units_ceiling"] = _fmt(worst_u["ceiling"])
    else:
        out["output_units_note"] = "These results hold no structured technique."
        out["output_units_min"] = out["output_units_ceiling"] = "n/a"
    # collapsed trainings
    flag = accuracy.collapsed(table)
    n = int(flag.sum())
    cs = accuracy.collapsed_summary(table)
    targets = record(sel.iloc[0])["targets"]
    guess = 100.0 * float(targets.bincount().max()) / targets.numel()
    out["collapsed_n"] = str(n)
    out["collapsed_note"] = (
        f"{_plural(n, 'training')} of {len(table):,} collapsed (final training loss within "
        f"{accuracy.COLLAPSE_TOLERANCE:g} of ln 10 = 2.3026, the loss of a uniform guess): "
        + _and([f"{_label(t)} with {r} ({c} of {k}, from iteration {i})" for t, r, c, k, i in
                zip(cs["technique"], cs["reinit"], cs["collapsed"], cs["trainings"], cs["first_iteration"])])
        + f". Their accuracy is {_fmt(table.loc[flag, 'test_acc'].min(), 2)}% to "
          f"{_fmt(table.loc[flag, 'test_acc'].max(), 2)}% ({_fmt(guess, 2)}% is a constant guess of the most frequent "
          "test class); the means over seeds include them, and the collapsed table shows them apart." if n else
        f"No training collapsed (none ended with a training loss within {accuracy.COLLAPSE_TOLERANCE:g} of ln 10).")
    return out


def _pairs(matrix) -> list[tuple[float, str, str]]:
    names = list(matrix.index)
    return [(float(matrix.loc[a, b]), a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if not math.isnan(float(matrix.loc[a, b]))]


def _mask_variables(sel, it: int, main: str) -> dict[str, str]:
    out = {k: "n/a" for k in ("mask_mean_distance", "mask_random_distance", "mask_closest_pair",
                              "mask_closest_distance", "mask_farthest_pair", "mask_farthest_distance")}
    out["mask_expected_note"] = "The protocol expects L1 S and L2 S to be the closest pair; these results lack one of them."
    pairs = masks.pair_distances(sel, it, main)
    if pairs.empty:
        return out
    mean = pairs.groupby(["technique_a", "technique_b"])[["distance", "random"]].mean()
    lo, hi = mean["distance"].idxmin(), mean["distance"].idxmax()
    out.update(mask_mean_distance=_fmt(mean["distance"].mean(), 2), mask_random_distance=_fmt(mean["random"].mean(), 2),
               mask_closest_pair=f"{_label(lo[0])} and {_label(lo[1])}", mask_closest_distance=_fmt(mean.loc[lo, "distance"], 2),
               mask_farthest_pair=f"{_label(hi[0])} and {_label(hi[1])}",
               mask_farthest_distance=_fmt(mean.loc[hi, "distance"], 2))
    key = ("l1_s", "l2_s") if ("l1_s", "l2_s") in mean.index else ("l2_s", "l1_s")
    if key in mean.index:
        ranked = list(mean["distance"].sort_values().index)
        rank = ranked.index(key) + 1
        d = mean.loc[key]
        out["mask_expected_note"] = (
            "As the protocol expects, L1 S and L2 S are the closest pair" if rank == 1 else
            f"The protocol expects L1 S and L2 S to be the closest pair; here they are the {rank}"
            f"{'tsnrhtdd'[(rank // 10 % 10 != 1) * (rank % 10 < 4) * rank % 10::4]} closest of {len(ranked)} pairs")
        out["mask_expected_note"] += (
            f" ({_fmt(d['distance'], 2)} apart, random masks of their densities {_fmt(d['random'], 2)}). Structured "
            f"masks keep or drop whole units, so two structured masks that differ in one unit of a small layer already "
            f"differ in every weight of that unit." if rank != 1 else f" ({_fmt(d['distance'], 2)} apart).")
    return out


def _agreement_variables(sel, it: int, main: str) -> dict[str, str]:
    out = {k: "n/a" for k in ("agreement_mean", "agreement_mean_pct", "agreement_chance_pct", "agreement_min",
                              "agreement_min_pair", "agreement_max", "agreement_max_pair")}
    pairs = predictions.agreement_pairs(sel, it, main)
    if pairs.empty:
        return out
    n = int(record(sel.iloc[0])["targets"].numel())
    mean = pairs.groupby(["technique_a", "technique_b"])[["agreement", "chance"]].mean()
    lo, hi = mean["agreement"].idxmin(), mean["agreement"].idxmax()
    out.update(agreement_mean=_fmt(n * mean["agreement"].mean(), 0), agreement_mean_pct=_fmt(100 * mean["agreement"].mean()),
               agreement_chance_pct=_fmt(100 * mean["chance"].mean()),
               agreement_min=_fmt(n * mean.loc[lo, "agreement"], 0), agreement_min_pair=f"{_label(lo[0])} and {_label(lo[1])}",
               agreement_max=_fmt(n * mean.loc[hi, "agreement"], 0), agreement_max_pair=f"{_label(hi[0])} and {_label(hi[1])}")
    return out


def _ensemble_variables(sel, it: int, main: str) -> dict[str, str]:
    out = {}
    present = technique_order(sel)
    for key, name in (("seven", predictions.SEVEN), ("nine", predictions.NINE)):
        members = predictions.ensemble_groups(present).get(name)
        if not members:
            out[f"ensemble_{key}_acc"] = out[f"ensemble_{key}_vote"] = "n/a"
            continue
        out[f"ensemble_{key}_acc"] = _fmt(predictions.ensemble_accuracy(sel, it, members, main, "mean_prob").mean())
        out[f"ensemble_{key}_vote"] = _fmt(predictions.ensemble_accuracy(sel, it, members, main, "vote").mean())
    acc = sel[sel["iteration"] == it].groupby("technique")["test_acc"].mean()
    best = acc.idxmax()
    out["member_best"], out["member_best_acc"] = _label(best), _fmt(acc[best])
    if out["ensemble_seven_acc"] == out["ensemble_nine_acc"] == "n/a":
        out["ensemble_summary"] = (f"no ensemble of the poster's can be formed from "
                                   f"{_and([_label(t) for t in present])}")
    else:
        out["ensemble_summary"] = (f"averaging softmax probabilities, the poster's seven {out['ensemble_seven_acc']}%, "
                                   f"all nine {out['ensemble_nine_acc']}%; by majority vote "
                                   f"{out['ensemble_seven_vote']}% and {out['ensemble_nine_vote']}%")
    return out


def _finding_variables(table, it: int, main: str) -> dict[str, str]:
    out = {"verdict_rule": _findings.RULE}
    try:
        found = _findings.findings(table, it, main, _replicates.reruns(table.attrs.get("results", "")))
    except ParameterError as exc:  # e.g. no stored weights: every finding still gets its variables
        found = []
        out["findings_error"] = str(exc)
    for f in found:
        out[f"{f.key}_verdict"] = f.verdict
        out[f"{f.key}_headline"] = f.headline
        out[f"{f.key}_claim"] = f.claim
        # a finding the results cannot measure says why in place of its numbers (its note), not "n/a"
        out[f"{f.key}_numbers"] = f.numbers or (f.note.rstrip(".") if f.note else "n/a")
        out[f"{f.key}_rule"] = f.rule
        out[f"{f.key}_note"] = (f.note or "") if f.measures else ""
    for key in ("tickets", "variety", "random", "functions", "ensembles", "stability", "connectivity"):
        for part in ("verdict", "headline", "claim", "numbers", "rule", "note"):
            out.setdefault(f"{key}_{part}", "n/a" if part != "note" else "")
    counts = {v: sum(1 for f in found if f.verdict == v) for v in _findings.VERDICTS}
    out["verdict_counts"] = (f"{counts['supported']} supported, {counts['not supported']} not supported and "
                             f"{counts['inconclusive']} inconclusive of {len(found)} findings")
    return out
