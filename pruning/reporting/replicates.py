"""Replicates: a results set trained twice with the same config, and how far apart the two came out.

Two trainers that agree up to float rounding (or one trainer before and after a change to its
arithmetic) give the same config two results tables that should be close. They are not identical:
a tiny difference changes which weights are pruned next, and runs drift apart over the iterations.
A replicate's table is kept, with its ``experiment.json``, in ``docs/replicates/<name>/``. It is found by
its config hash (:func:`find`). :func:`compare` matches the two tables training by training, and
``report.stage`` puts :func:`section` (the drift, computed from both tables) where the paper holds
:data:`MARKER`. ``scripts/compare_results.py`` prints the same comparison for any two tables.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from . import plots
from .. import store
from ..analysis.table import report_iteration

MARKER = "<!-- replicates -->"
SHORT_MARKER = "<!-- replicates-short -->"  # the poster's one sentence
NOISE_MARKER = "<!-- noise -->"  # the paper's Q1: is a different ticket just numerical noise?
NOISE_SHORT_MARKER = "<!-- noise-short -->"  # the poster's sentence on it, under finding 1
NOISE_ITERATIONS = (1, 5, 10, 15, 18, 20)  # the rows of its table, where the data have them
KEY = ["technique", "reinit", "seed", "iteration"]  # one training
RUN = KEY[:-1]  # one run


def _identity(folder: Path) -> tuple[str | None, set[str]]:
    """(config hash, run hashes) that ``experiment.json`` in ``folder`` records."""
    exp = store.peek(folder) or {}
    return exp.get("config_hash"), {r["hash"] for r in exp.get("runs", []) if "hash" in r}


def find(results, docs: Path | None = None) -> list[Path]:
    """Stored replicates of ``results``: folders ``<docs>/replicates/*`` holding a ``results.csv`` and an
    ``experiment.json`` with the same config hash, or whose runs are some of ``results``' runs (the same run
    hashes: e.g. only its rewound runs of two seeds, ``configs/replicates/``)."""
    own, own_runs = _identity(Path(results))
    root = Path(docs if docs is not None else paths.DOCS) / "replicates"

    def same(folder: Path) -> bool:
        other, runs = _identity(folder)
        return bool(own) and (other == own or bool(runs) and runs <= own_runs)
    return [f for f in sorted(root.glob("*")) if (f / "results.csv").exists() and same(f)]


def reruns(results, docs: Path | None = None) -> list[pd.DataFrame]:
    """The results tables of the published replicates of ``results`` (:func:`find`): its reruns with other float
    rounding, for finding 1's noise floor (``analysis.findings.findings(..., reruns=...)``)."""
    return [store.load_results(rep) for rep in find(results, docs) if store.published.is_published(rep)]


def compare(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The trainings in both tables, with ``test_acc_a``, ``test_acc_b`` and ``diff`` (absolute, points)."""
    both = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    both["diff"] = (both["test_acc_a"] - both["test_acc_b"]).abs()
    return both


def moved(both: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Per (technique, reinit) at ``iteration``: both means over seeds, both stds, and whether the means
    differ by more than the larger std (a shift the seeds' spread does not cover)."""
    at = both[both["iteration"] == iteration].groupby(["technique", "reinit"])
    out = pd.DataFrame({"mean_a": at["test_acc_a"].mean(), "std_a": at["test_acc_a"].std(),
                        "mean_b": at["test_acc_b"].mean(), "std_b": at["test_acc_b"].std()})
    out["beyond_spread"] = (out["mean_a"] - out["mean_b"]).abs() > out[["std_a", "std_b"]].max(axis=1)
    return out


def section(results, table: pd.DataFrame | None = None, docs: Path | None = None) -> str:
    """The paper's paragraph on replicates of ``results``: one comparison per stored replicate. Its results
    table (``table``, or ``store.load_results`` of it) is read only when a replicate is stored."""
    found, table, it = _with_table(results, table, docs)
    if not found:
        return ("**Replicates.** No replicate of this configuration is stored (`docs/replicates/`), so how much "
                "the verdicts move when the same config is trained again is not measured here.")
    parts = [_drift(rep, table, it) for rep in found]
    times = "once more" if len(found) == 1 else f"{len(found)} more times"
    own_runs = _identity(Path(results))[1]
    what = "The same configuration" if all(_identity(rep)[1] == own_runs for rep in found) else \
        "The same configuration, or some of its runs,"
    return (f"**Replicates.** {what} was also trained {times}, with arithmetic that agrees with "
            f"this one's up to float rounding. " + " ".join(parts)
            + " Verdicts near their thresholds can change between such replicates: read them as provisional."
            + verdict_table(table, [rep for rep in found if store.published.is_published(rep)], it))


def verdict_table(table: pd.DataFrame, reps: list[Path], it: int) -> str:
    """Each finding's verdict at iteration ``it`` in this set and in each replicate that keeps its data, both on
    the runs (technique, reinit, seed) both have, side by side (a Markdown table, "" when no replicate keeps
    data), and which moved. A pair of columns per replicate: this set's verdicts on those runs, then the
    replicate's."""
    if not reps:
        return ""
    from ..analysis import findings

    columns, moved_any = {}, set()
    for rep in reps:
        other = store.load_results(rep)
        # the runs both have (a replicate may hold some of this set's runs only, e.g. rewound ones)
        common = table[RUN].drop_duplicates().merge(other[RUN].drop_duplicates())
        mine = {f.key: f.verdict for f in findings.findings(table.merge(common), it)}
        theirs = {f.key: f.verdict for f in findings.findings(other.merge(common), it)}
        moved = {k for k in mine if theirs.get(k) != mine[k]}
        moved_any |= moved
        modes = sorted(set(common["reinit"]))
        seeds = sorted(set(common["seed"]))
        on = _seeds(seeds, ",") + (
            "" if modes == sorted(set(table["reinit"])) else f", {' and '.join(modes)} only")
        columns[f"this set ({on})"] = mine
        columns[f"{rep.name} ({on})"] = {k: theirs.get(k, "n/a") + (" (moved)" if k in moved else "") for k in mine}
    keys = list(next(iter(columns.values())))
    head = "| finding | " + " | ".join(columns) + " |"
    rule = "|---" * (1 + len(columns)) + "|"
    rows = [f"| {i + 1} ({k}) | " + " | ".join(c[k] for c in columns.values()) + " |" for i, k in enumerate(keys)]
    return ("\n\nVerdicts at iteration " f"{it}, this set against each replicate that keeps its data, on the runs both "
            f"have ({len(moved_any)} of {len(keys)} moved in at least one):\n\n" + "\n".join([head, rule, *rows]))


def sections(results, table: pd.DataFrame | None = None, docs: Path | None = None) -> dict[str, str]:
    """{marker: text} for the paper's paragraph (:data:`MARKER`) and the poster's sentence (:data:`SHORT_MARKER`),
    reading the results table (when not given) once, and only when a replicate is stored."""
    found, table, it = _with_table(results, table, docs)
    keep = [rep for rep in found if store.published.is_published(rep)]
    computed = _noise_rows(table, keep, "rewind") if keep else None  # once for both texts
    return {MARKER: section(results, table, docs), SHORT_MARKER: short(results, table, docs),
            NOISE_MARKER: noise_section(table, keep, computed=computed, iteration=it),
            NOISE_SHORT_MARKER: noise_short(table, keep, computed=computed, iteration=it)}


def _seeds(seeds: list[int], sep: str = ", ") -> str:
    """'seed 0' or 'seeds 0, 1'."""
    return f"{'seed' if len(seeds) == 1 else 'seeds'} {sep.join(map(str, seeds))}"


def _at(rows: pd.DataFrame, iteration: int | None) -> pd.Series:
    """The row of ``rows`` at ``iteration`` (the report's), else the last one."""
    hit = rows[rows["iteration"] == iteration] if iteration is not None else rows.iloc[:0]
    return (hit if not hit.empty else rows).iloc[-1]


NOISE_KINDS = {"rerun": "rerun", "techniques": "two techniques", "seeds, aligned": "two seeds, aligned",
               "random, aligned": "random, aligned", "random": "random"}


def _wide(frame: pd.DataFrame, layer: str = "layers") -> pd.DataFrame:
    """One row per iteration: the mean distance of each kind (over techniques or pairs) at ``layer``."""
    d = frame[frame["layer"] == layer]
    wide = d.groupby(["iteration", "kind"])["distance"].mean().unstack()
    wide = wide.reindex(columns=[k for k in NOISE_KINDS if k in wide.columns])
    wide.insert(0, "sparsity", d.groupby("iteration")["sparsity"].first())
    return wide.reset_index()


def _noise_rows(table: pd.DataFrame, reps: list[Path], reinit: str) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(``noise.noise_curve`` of this set with the replicates in ``reps`` as reruns, its per-iteration means at
    :data:`NOISE_ITERATIONS` (or its last row), the seeds a replicate shares with this set)."""
    from ..analysis import noise

    others = [store.load_results(rep) for rep in reps]
    frame = noise.noise_curve(table, others, reinit=reinit)
    wide = _wide(frame)
    rows = wide[wide["iteration"].isin(NOISE_ITERATIONS)]
    seeds = sorted(set(table["seed"]) & set().union(*(set(o["seed"]) for o in others))) if others else []
    return frame, (wide.tail(1) if rows.empty else rows), seeds


def _said(last: pd.Series) -> str:
    """What the distances at one iteration support, in one sentence."""
    rerun, tech = last.get("rerun", float("nan")), last.get("techniques", float("nan"))
    seeds, rnd = last.get("seeds, aligned", float("nan")), last.get("random, aligned", float("nan"))
    parts = []
    if pd.notna(rerun) and pd.notna(tech):
        parts.append(f"two of these techniques on one seed are {tech:.2f} apart, "
                     + (f"more than a rerun's {rerun:.2f}: their masks differ beyond float rounding, which supports "
                        f"finding 1's \"many tickets\"" if tech > rerun else
                        f"no more than a rerun's {rerun:.2f}: their masks differ by no more than float rounding moves "
                        f"one, so this is no evidence of different tickets"))
    if pd.notna(seeds) and pd.notna(rnd) and rnd > 0:
        parts.append(f"two seeds of one technique, hidden units aligned, are {seeds:.2f} apart against {rnd:.2f} for "
                     f"aligned random masks ({seeds / rnd:.0%} of the way to unrelated masks)")
    return "; ".join(parts)


def noise_short(table: pd.DataFrame | None, reps: list[Path], reinit: str = "rewind",
                computed: tuple | None = None, iteration: int | None = None) -> str:
    """The poster's sentence on numerical noise at ``iteration`` (the report's; else the last of the paper's noise
    table): a rerun's masks against two techniques' and two aligned seeds', for the ticket-capable techniques; or
    that it is not measured. ``computed``: :func:`_noise_rows` already computed for ``reinit``."""
    if not reps:
        return ("**Noise.** Whether a different ticket is more than float rounding is not measured here (no rerun "
                "keeps its masks).")
    _, rows, seeds = computed or _noise_rows(table, reps, reinit)
    last = _at(rows, iteration)
    return (f"**Noise.** At iteration {int(last['iteration'])}, for L1 US, hybrid and fc-only L1 US (Jaccard "
            f"distance, mean of layers; {_seeds(seeds)} trained again with other float rounding): " + _said(last) + ".")


def noise_section(table: pd.DataFrame | None, reps: list[Path], reinit: str = "rewind",
                  computed: tuple | None = None, iteration: int | None = None) -> str:
    """The paper's paragraph on numerical noise (finding 1): per iteration, for the ticket-capable techniques, how far
    a rerun's masks (same config and seed, other float rounding) are from this set's, against two techniques on one
    seed, two seeds after aligning hidden units, and random masks (``analysis.noise.noise_curve``), averaged per
    layer, and per layer at ``iteration`` (the report's; else the table's last row)."""
    head = "**Is a different ticket just numerical noise?** "
    if not reps:
        return (head + "Not measured: no replicate of this configuration keeps its masks (`docs/replicates/`). "
                "`make noise` trains the rewound runs of seeds 0 and 1 again through the torch conv path, which differs "
                "from the fused kernels only in float rounding, and keeps them as one; this paragraph then compares, "
                "per iteration, the masks a rerun finds with those of another technique, another seed and random masks.")
    frame, rows, seeds = computed or _noise_rows(table, reps, reinit)
    last = _at(rows, iteration)
    it = int(last["iteration"])
    kinds = [k for k in NOISE_KINDS if k in rows.columns]
    lines = ["| iteration | sparsity | " + " | ".join(NOISE_KINDS[k] for k in kinds) + " |",
             "|---|---|" + "---|" * len(kinds)]
    lines += [f"| {int(r['iteration'])} | {r['sparsity']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in kinds) + " |"
              for _, r in rows.iterrows()]
    per = frame[(frame["iteration"] == it) & (frame["layer"] != "layers")]
    per = per.groupby(["layer", "kind"], sort=False)["distance"].mean().unstack()
    per = per.reindex(columns=[k for k in NOISE_KINDS if k in per.columns])
    layer_lines = ["| layer | " + " | ".join(NOISE_KINDS[k] for k in per.columns) + " |",
                   "|---|" + "---|" * len(per.columns)]
    layer_lines += [f"| {layer} | " + " | ".join(f"{v:.3f}" for v in r.values) + " |" for layer, r in per.iterrows()]
    names = ", ".join(f"`docs/replicates/{rep.name}/` (code version `{store.peek(rep).get('code_version', 'unknown')}`)"
                      for rep in reps)
    return (head + f"{names} trained {_seeds(seeds)} of this configuration again, with arithmetic that differs only in "
            f"float rounding. For the three techniques that can keep the dense accuracy (L1 US, hybrid, fc-only L1 US), "
            f"the Jaccard distance of their {reinit} masks, averaged over the layers so that fc1's weights do not "
            f"outweigh the conv layers, with pairs that hold a collapsed training left out: a mask against its rerun's "
            f"(rerun), two of these techniques on one seed (two techniques), two seeds of one technique after their "
            f"hidden units are aligned by a linear assignment on the masks (two seeds, aligned: hidden units have no "
            f"identity across seeds, so unaligned seeds are not compared), random "
            f"masks of the same densities aligned the same way, and independent random masks (random).\n\n"
            + "\n".join(lines) + f"\n\nPer layer at iteration {it}:\n\n" + "\n".join(layer_lines) + "\n\n"
            f"At iteration {it}: {_said(last)}. Finding 1's rule uses the rerun distance as its noise floor "
            f"(`analysis.noise.rerun_floors`).")


def _with_table(results, table, docs):
    """(the stored replicates of ``results``, its results table, the report's iteration); the table is read only
    when a replicate is stored (else None, None)."""
    found = find(results, docs)
    if not found:
        return found, None, None
    table = store.load_results(results) if table is None else table
    return found, table, report_iteration(table)


def short(results, table: pd.DataFrame | None = None, docs: Path | None = None) -> str:
    """The poster's one sentence on replicates: how far a rerun with other float rounding moved test accuracy at
    the report's iteration (median and largest over every stored replicate), or that it is not measured."""
    found, table, it = _with_table(results, table, docs)
    if not found:
        return ("**Reruns.** How far training the same config again moves these numbers is not measured "
                "(no replicate stored): read every verdict as provisional.")
    both = pd.concat([compare(pd.read_csv(rep / "results.csv"), table) for rep in found])
    at = both[both["iteration"] == it]["diff"]
    own = _identity(Path(results))[0]
    whole = sum(_identity(rep)[0] == own for rep in found)
    what = [f"{n} {'of the whole config' if kind else 'of some of its runs'}"
            for n, kind in ((whole, True), (len(found) - whole, False)) if n]
    what[0] = what[0].replace(" of", " replicate of" if what[0].startswith("1 ") else " replicates of", 1)
    return (f"**Reruns.** Trained again ({' and '.join(what)}, {len(at)} trainings matched at iteration {it}, "
            f"arithmetic equal up to float rounding), test accuracies at iteration {it} moved by a median "
            f"{at.median():.2f} points, up to {at.max():.1f}: verdicts near their thresholds can flip; read them as "
            f"provisional.")


def _drift(rep: Path, table: pd.DataFrame, it: int) -> str:
    """How far ``table`` and the replicate stored in ``rep`` drifted apart, as sentences for :func:`section`."""
    both = compare(pd.read_csv(rep / "results.csv"), table)
    per = both.groupby("iteration")["diff"]
    med, top = per.median(), per.max()
    shown = sorted({i for i in (1, it, int(both["iteration"].max())) if i in med.index})

    def at_iterations(values, digits):
        parts = [f"{values[i]:.{digits}f}{' points' if n == 0 else ''} at iteration {i}" for n, i in enumerate(shown)]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    shifts = moved(both, it)
    shifted = [f"{plots.label(t)} {r} ({row.mean_a:.1f} ± {row.std_a:.1f} to {row.mean_b:.1f} ± {row.std_b:.1f})"
               for (t, r), row in shifts[shifts["beyond_spread"]].iterrows()]
    exp = store.read_experiment(rep)
    return (f"Against the training with code version `{exp.get('code_version', 'unknown')}` "
            f"(`docs/replicates/{rep.name}/`), matched training by training ({len(both)} trainings), test accuracy "
            f"differs by a median of {at_iterations(med, 2)}; the largest difference is {at_iterations(top, 1)}, "
            f"as small differences change which weights are pruned next. At "
            f"iteration {it}, {len(shifted)} of {len(shifts)} technique means moved by more than their seeds' "
            f"standard deviation" + (f": {'; '.join(shifted)}." if shifted else "."))
