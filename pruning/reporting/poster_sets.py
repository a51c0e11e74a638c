"""Which published sets answer the poster's LeNet row, and the comparison of all of them as a table and as text.

Every published LeNet/MNIST set with data under ``docs/`` (the CPU profile, the released code's profile, the released
L1 US recipe), then the sensitivity variants of a base set (``docs/sensitivity/``, tables only), each read at 18 and
19 pruning steps (:mod:`pruning.analysis.poster`). The sensitivity notebook shows it in every LeNet paper and poster;
``python -m pruning readme`` writes it into the README between its markers, and a test keeps the two equal.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import store
from ..analysis import poster, sensitivity
from ..core import paths
from . import replicates

START, END = "<!-- poster-comparison:start -->", "<!-- poster-comparison:end -->"
FINDINGS_START, FINDINGS_END = "<!-- findings:start -->", "<!-- findings:end -->"


def lenet_sets(docs: Path = paths.DOCS) -> dict[str, Path]:
    """Published LeNet/MNIST sets with data in ``docs`` (name -> folder), in name order."""
    found = {}
    for exp_path in sorted(Path(docs).glob("*/experiment.json")):
        try:
            cfg = json.loads(exp_path.read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if cfg.get("arch") == "lenet" and cfg.get("dataset") == "mnist" and store.published.is_published(
                exp_path.parent):
            found[exp_path.parent.name] = exp_path.parent
    return found


def tables(base: Path | None = None, docs: Path = paths.DOCS) -> dict[str, pd.DataFrame]:
    """The tables to compare: every published LeNet set, then the sensitivity variants of ``base`` (default: of
    each published LeNet set, e.g. the released L1 US recipe beside the released code's profile), each named by
    its folder (variants as ``sensitivity/<name>``), each variant once."""
    sets = lenet_sets(docs)
    out = {name: store.load_results(folder) for name, folder in sets.items()}
    bases = [Path(base)] if base is not None else list(sets.values())
    if (Path(docs) / "sensitivity").is_dir():
        for folder in bases:
            config = store.read_experiment(folder)["config"]
            for v in sensitivity.variants(config, Path(docs) / "sensitivity"):
                if v["name"] not in sets:  # a variant also published as a whole set is shown once, as that set
                    out.setdefault(f"sensitivity/{v['name']}", v["table"])
    return out


def markdown(long: pd.DataFrame, rows=None) -> str:
    """The comparison as a Markdown table (:func:`poster.wide`, whose RMS column gives each reading's distance) and
    one sentence naming the set and reading nearest the poster over all seven techniques (over every set, also
    those ``rows``, a filter on the set's name, leaves out of the table)."""
    w = poster.wide(long)
    if rows is not None:
        w = w[[rows(str(name)) for name in w["set"]]]
    head = "| " + " | ".join(w.columns) + " |\n|" + "---|" * len(w.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in w.itertuples(index=False))
    r7 = poster.rms(long, [c for c, m in poster.COLUMNS if len(m) == 1])
    r7 = r7[r7["columns"] == 7]
    body += _interval_sentence(long if rows is None else long[long["set"].astype(str).map(rows).astype(bool)], "L1 US")
    if r7.empty:
        return head + body
    best = r7.loc[r7["rms"].idxmin()]
    seeds = int(long[long["set"] == best["set"]]["seeds"].max())
    return (head + body + f"\nNearest to the poster over all seven techniques: {best['set']} at {int(best['steps'])} "
            f"steps, RMS {float(best['rms']):.1f} points, with {seeds} seed{'s' * (seeds > 1)}"
            + (" (one seed: no interval, a lead rather than a result).\n" if seeds < 2 else ".\n"))


def _interval_sentence(long: pd.DataFrame, column: str, steps: int = 18) -> str:
    """One sentence: the poster's number for ``column`` (a label of :data:`poster.COLUMNS`) against each set's mean and 95% interval at ``steps``, and
    which intervals hold it ("" when no set has the column)."""
    d = long[(long["column"] == column) & (long["steps"] == steps)]
    if d.empty:
        return ""
    target = float(d["poster"].iloc[0])
    parts, inside = [], []
    for r in d.itertuples(index=False):
        interval = f"[{r.low:.1f}, {r.high:.1f}]" if pd.notna(r.low) else "[no interval]"
        parts.append(f"{r.set} {r.mean:.1f} {interval} (n = {r.seeds})")
        if pd.notna(r.low) and r.low <= target <= r.high:
            inside.append(r.set)
    return (f"\nThe poster's {column} ({target:.1f}) against each set at {steps} steps, mean "
            f"[95% CI]: {'; '.join(parts)}. Intervals that hold it: {', '.join(inside) or 'none'}.\n")


def readme_block(docs: Path = paths.DOCS) -> str:
    """What the README holds between :data:`START` and :data:`END`."""
    long = poster.comparison(tables(docs=docs))
    return (f"{START}\nTest accuracy (%) under rewinding, mean over seeds; each set read at 18 and at 19 pruning "
            f"steps (`python -m pruning readme` writes this block from `docs/`). The sensitivity variants' rows are "
            f"in the 10-seed paper's comparison table.\n\n"
            f"{markdown(long, rows=lambda name: not name.startswith('sensitivity/'))}{END}")


def _num(x) -> str:
    """Two decimals, or n/a where the value is undefined (an interval of one seed)."""
    return f"{x:.2f}" if pd.notna(x) else "n/a"


def findings_block(docs: Path = paths.DOCS) -> str:
    """What the README holds between :data:`FINDINGS_START` and :data:`FINDINGS_END`: per published LeNet set, each
    finding's verdict at 18 and 19 pruning steps and the iterations where it holds (``analysis.curve``)."""
    from ..analysis import curve

    parts = [FINDINGS_START]
    for name, folder in lenet_sets(docs).items():
        table = store.load_results(folder)
        exp = store.read_experiment(folder)
        cfg = exp["config"]
        seeds = exp.get("published_seeds", sorted(set(table["seed"])))
        head = (f"\n**{name}** ({cfg['training']['epochs']} epochs, seed{'s' * (len(seeds) > 1)} {curve.spans(seeds)}; "
                f"[paper]({folder.relative_to(Path(docs).parent).as_posix()}/paper.html))")  # the README sits beside docs/
        if len(set(table["technique"])) < 2:
            parts.append(head + f": one technique ({', '.join(sorted(set(table['technique'])))}), so no finding about "
                                "techniques can be read; its row is in the comparison with the poster below.")
            continue
        if len(seeds) < 2:
            parts.append(head + ": one seed gives no 95% interval, so every verdict is inconclusive until a second "
                                "seed is published.")
            continue
        c = curve.verdict_curve(table, reruns=replicates.reruns(folder))
        spans_ = curve.finding_ranges(c)
        at = c.drop_duplicates(["finding", "iteration"]).set_index(["finding", "iteration"])["verdict"]
        parts.append(head + ":\n")
        parts.append("| finding | at 18 steps | at 19 | supported at | not supported at | tie at | its number at 18 steps, "
                     "mean [95% CI] |\n|---|---|---|---|---|---|---|")
        first = c[(c["measure"] == 0) & (c["iteration"] == 18)].set_index("finding")
        for _, r in spans_.iterrows():
            k = r["finding"]
            number = (f"{_num(first.loc[k, 'mean'])} [{_num(first.loc[k, 'low'])}, {_num(first.loc[k, 'high'])}]: "
                      + str(first.loc[k, "quantity"]).replace("|", "\\|") if k in first.index else "n/a")
            parts.append(f"| {r['claim']} | {at.get((k, 18), 'n/a')} | {at.get((k, 19), 'n/a')} | "
                         f"{r['supported']} | {r['not supported']} | {r['no difference']} | {number} |")
    parts.append(FINDINGS_END)
    return "\n".join(parts)


def replace_block(text: str, start: str, end: str, block: str, readme: Path) -> str:
    """``text`` with what lies between ``start`` and ``end`` replaced by ``block``; one line if a marker is missing."""
    if start not in text or end not in text:
        raise store.StoreError(f"{readme} has no {start} ... {end} block; add the two markers where it goes")
    before, rest = text.split(start, 1)
    return before + block + rest.split(end, 1)[1]


def write_readme(readme: Path = paths.REPO_ROOT / "README.md", docs: Path = paths.DOCS) -> bool:
    """Replace the README's two computed blocks (the findings, the poster comparison); True if it changed."""
    text = readme.read_text()
    new = replace_block(text, START, END, readme_block(docs), readme)
    new = replace_block(new, FINDINGS_START, FINDINGS_END, findings_block(docs), readme)
    if new == text:
        return False
    readme.write_text(new)
    return True
