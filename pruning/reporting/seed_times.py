"""The wall time of every seed of a published set, from its ``experiment.json`` (``seed_runs``), as a markdown table.

``python -m pruning readme`` writes it into ``docs/benchmarks.md`` between its markers; a test keeps the two equal,
so no time in that file is typed by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core import paths
from ..store import published
from .poster_sets import replace_block

START, END = "<!-- seed-times:start -->", "<!-- seed-times:end -->"
# Seconds a seed may take, where an issue set a target: the released code's profile, 48 minutes on 2 CPU cores.
TARGETS = {"authors_lenet_mnist": 48 * 60}


def rows(folder: Path) -> list[dict]:
    """One row per command that trained a seed of the published set ``folder``, from each seed's own
    ``data/seed_<s>/experiment.json``: seed, code version, machine, seconds, seeds trained together, finished (date),
    and where recorded the trainings the command did of the seed's and its share of the machine's CPU.
    A seed published before commands were listed (``seed_runs`` empty) gives its ``last_run_seconds``."""
    out = []
    for seed in published.seeds(folder):
        exp = json.loads((published.seed_folder(folder, seed) / "experiment.json").read_text())
        runs = exp.get("seed_runs") or [{"code_version": exp.get("code_version"), "hardware": exp.get("hardware"),
                                         "seconds": exp.get("last_run_seconds"), "finished": exp.get("updated")}]
        for run in runs:
            if not isinstance(run.get("seconds"), (int, float)):
                continue
            out.append({"seed": int(seed), "code_version": run.get("code_version") or "?",
                        "hardware": run.get("hardware") or "?", "seconds": float(run["seconds"]),
                        "together": run.get("seeds_together", [int(seed)]),
                        "finished": str(run.get("finished") or "")[:10],
                        "trainings": (run.get("trainings"), run.get("seed_trainings")),
                        "cpu_share": run.get("cpu_share")})
    return out


def block(docs: Path = paths.DOCS) -> str:
    """The markdown between the markers: a table per set with a target in :data:`TARGETS`. "trainings" is what the
    command trained of its seeds' trainings (fewer after a resume); "CPU share" is the CPU seconds of the command and
    its workers over wall time x cores (about 100% when nothing else shared the machine)."""
    parts = [START]
    for name, target in sorted(TARGETS.items()):
        folder = Path(docs) / name
        if not published.seeds(folder):
            continue
        parts += ["", f"`{name}`, against a target of {target / 60:.0f} minutes ({target:,} s) a seed:", "",
                  "| seed | code version | machine | finished | seeds trained together | trainings | CPU share "
                  "| wall time | against the target |",
                  "|---|---|---|---|---|---:|---:|---:|---:|"]
        for r in rows(folder):
            together = ", ".join(str(s) for s in r["together"])
            done, of = r["trainings"]
            trainings = "not recorded" if done is None else f"{done:,} of {of:,}"
            share = "not recorded" if r["cpu_share"] is None else f"{r['cpu_share']:.0%}"
            part = f" for {done / of:.0%} of its trainings" if done is not None and of and done < of else ""
            parts.append(f"| {r['seed']} | `{r['code_version']}` | {r['hardware']} | {r['finished']} | {together} | "
                         f"{trainings} | {share} | {r['seconds']:,.1f} s | {r['seconds'] / target:.2f}x{part} |")
    parts += ["", END]
    return "\n".join(parts)


def write(page: Path = paths.DOCS / "benchmarks.md", docs: Path = paths.DOCS) -> bool:
    """Replace the block in ``page``; True if it changed."""
    text = Path(page).read_text()
    new = replace_block(text, START, END, block(docs), page)
    if new == text:
        return False
    Path(page).write_text(new)
    return True
