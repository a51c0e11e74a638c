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
NOISE_SHARE = 0.5  # replicate distance / seed distance from which rounding is said to decide much of the ticket
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
    computed = {rep: _noise_rows(table, rep, "rewind") for rep in keep}  # once for both texts
    return {MARKER: section(results, table, docs), SHORT_MARKER: short(results, table, docs),
            NOISE_MARKER: noise_section(table, keep, computed=computed, iteration=it),
            NOISE_SHORT_MARKER: noise_short(table, keep, computed=computed, iteration=it)}


def _share(row: pd.Series) -> float:
    """A noise row's replicate distance as a share of the seeds' (NaN where the seeds' is 0)."""
    return row["replicate"] / row["seeds"] if row["seeds"] > 0 else float("nan")


def _seeds(seeds: list[int], sep: str = ", ") -> str:
    """'seed 0' or 'seeds 0, 1'."""
    return f"{'seed' if len(seeds) == 1 else 'seeds'} {sep.join(map(str, seeds))}"


def _at(rows: pd.DataFrame, iteration: int | None) -> pd.Series:
    """The row of ``rows`` at ``iteration`` (the report's), else the last one."""
    hit = rows[rows["iteration"] == iteration] if iteration is not None else rows.iloc[:0]
    return (hit if not hit.empty else rows).iloc[-1]


def _noise_rows(table: pd.DataFrame, rep: Path, reinit: str) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(``mask_noise`` of this set against the replicate in ``rep``, its rows at :data:`NOISE_ITERATIONS` (or
    its last row), the seeds both sets have)."""
    from ..analysis import noise

    other = store.load_results(rep)
    frame = noise.mask_noise(table, other, reinit=reinit)
    rows = frame[frame["iteration"].isin(NOISE_ITERATIONS)]
    return frame, (frame.tail(1) if rows.empty else rows), sorted(set(table["seed"]) & set(other["seed"]))


def noise_short(table: pd.DataFrame | None, reps: list[Path], reinit: str = "rewind",
                computed: dict | None = None, iteration: int | None = None) -> str:
    """The poster's sentence on numerical noise: at ``iteration`` (the report's; else the last of the paper's
    noise table) how far a rerun's masks are from this set's, against two seeds' and two random masks'; or that
    it is not measured. ``computed``: {rep: :func:`_noise_rows`} already computed for ``reinit``."""
    if not reps:
        return ("**Noise.** Whether a different ticket is more than float rounding is not measured here (no rerun "
                "keeps its masks).")
    parts, shares = [], []
    for rep in reps:
        _, rows, seeds = (computed or {}).get(rep) or _noise_rows(table, rep, reinit)
        last = _at(rows, iteration)
        shares.append(_share(last))
        parts.append(f"trained again with other float rounding ({_seeds(seeds)}, {reinit}), a technique's masks "
                     f"at iteration {int(last['iteration'])} are {last['replicate']:.3f} ± {last['replicate_std']:.3f} apart "
                     f"(mean ± std of the Jaccard distance over {int(last['n_replicate'])} pairs), against "
                     f"{last['seeds']:.3f} ± {last['seeds_std']:.3f} between two seeds ({shares[-1]:.0%} of it) and "
                     f"{last['random']:.3f} between random masks of the same densities")
    text = "; ".join(parts)
    much = all(share >= NOISE_SHARE for share in shares)
    return ("**Noise.** " + text[0].upper() + text[1:]
            + (": much of the tickets' variety is float rounding." if much else "."))


def noise_section(table: pd.DataFrame | None, reps: list[Path], reinit: str = "rewind",
                  computed: dict | None = None, iteration: int | None = None) -> str:
    """The paper's paragraph on numerical noise (finding 1): per iteration, how far the masks of a replicate that
    keeps its data (same config and seed, other float rounding) are from this set's, against two seeds of one
    technique and two random masks of the same densities (``analysis.noise.mask_noise``), with accuracy gaps;
    its conclusion at ``iteration`` (the report's; else the table's last row)."""
    head = "**Is a different ticket just numerical noise?** "
    if not reps:
        return (head + "Not measured: no replicate of this configuration keeps its masks (`docs/replicates/`). "
                "`make noise` trains the rewound runs of seeds 0 and 1 again through the torch conv path, which differs from the fused "
                "kernels only in float rounding, and keeps them as one; this paragraph then compares, per iteration, "
                "the masks a rerun finds with those of another seed and of random masks.")
    parts = []
    for rep in reps:
        frame, rows, seeds = (computed or {}).get(rep) or _noise_rows(table, rep, reinit)
        last = _at(rows, iteration)
        share = _share(last)
        said = ("the rerun found the very same masks" if last["replicate"] == 0 else
                f"float rounding alone moves a mask at least {NOISE_SHARE:.0%} as far as a new seed does, so much of "
                f"what finding 1 counts as different tickets is numerical noise" if share >= NOISE_SHARE else
                f"float rounding moves a mask less than {NOISE_SHARE:.0%} as far as a new seed does: the seeds' "
                f"different tickets are mostly more than noise")
        first = frame[frame["iteration"] > 0].head(1)
        same_start = "" if first.empty or first.iloc[0]["replicate"] != 0 else (
            f" At iteration {int(first.iloc[0]['iteration'])} the masks are the same in both sets: both prune the same "
            f"dense training (iteration 0 is trained once per seed, outside the step whose arithmetic differs), so "
            f"rounding acts from that iteration's training on.")
        lines = ["| iteration | sparsity | replicates | seeds | random masks | accuracy gap, replicates | "
                 "accuracy gap, seeds |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {int(r['iteration'])} | {r['sparsity']:.3f} | {r['replicate']:.3f} | {r['seeds']:.3f} | "
                  f"{r['random']:.3f} | {r['acc_replicate']:.2f} | {r['acc_seeds']:.2f} |" for _, r in rows.iterrows()]
        parts.append(
            f"`docs/replicates/{rep.name}/` trained {_seeds(seeds)} of this configuration again "
            f"(code version `{store.peek(rep).get('code_version', 'unknown')}`), with arithmetic that differs from "
            f"this set's only in float rounding. Mean Jaccard distance of the {reinit} masks, all layers, over the "
            f"techniques whose masks follow from training (random US and random S are left out: their masks come from "
            f"the seed and the iteration alone, so a rerun draws the same ones): of one "
            f"technique and seed in both sets (replicates, {int(last['n_replicate'])} pairs), of two seeds of one "
            f"technique in this set (seeds, {int(last['n_seeds'])} pairs) and of two independent random masks of the "
            f"replicate pairs' densities (random masks); then the mean absolute test-accuracy gap (points) of the "
            f"same pairs.\n\n" + "\n".join(lines) + "\n\n"
            f"At iteration {int(last['iteration'])} replicates are {last['replicate']:.3f} apart and seeds "
            f"{last['seeds']:.3f} ({share:.0%} of it; random masks {last['random']:.3f}): {said} (the rule: "
            f"{NOISE_SHARE:.0%} or more of the seeds' distance)." + same_start)
    return head + "\n\n".join(parts)


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
