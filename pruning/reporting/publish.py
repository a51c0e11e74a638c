"""Publishing a results set to ``docs/`` (served as-is by GitHub Pages): readers open it without running anything.

``python -m pruning publish RESULTS`` (or ``make publish CONFIG=configs/NAME.yaml``) executes the
notebooks on the run store (unchanged ones are skipped), renders the paper and the poster, and writes
``docs/<name>/``:

    paper.html, poster.html   the rendered report (self-contained); a LeNet report shows the AlexNet and
                              VGG11 conv2 figures of the companion sets found beside it (``companions``)
    figures.html              instead of paper and poster, for a companion set (AlexNet, VGG11): its
                              figures, numbers and every training (``figures_page``)
    results.csv               the tidy results table, one row per training (store.load_results)
    experiment.json           the config, run hashes, code version, hardware, dates, wall time

then rewrites ``docs/index.html``, which links every published set. Published files are written to a
temporary folder first and swapped in whole, so a failed render never leaves a half-updated set.
``python -m pruning publish RESULTS --replicate NAME`` keeps only the table and ``experiment.json``, in
``docs/replicates/NAME/``: a second training of a published config, which its paper compares against.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

from . import companions, figures_page, notebooks, report
from ..core import paths
from .. import store
from ..core.errors import ReportError

FILES = ("paper.html", "poster.html", "figures.html", "results.csv", "experiment.json")


def publish(results, docs: Path | None = None, renderer: str = "auto", quiet: bool = False) -> Path:
    """Render ``results`` and publish it to ``docs/<experiment name>/``; returns that folder."""
    results = Path(results)
    docs = Path(docs) if docs is not None else paths.DOCS
    exp = store.read_experiment(results)
    target = docs / exp["name"]
    tmp = docs / f".{exp['name']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    network = exp["config"]["arch"]
    if network in companions.COMPANIONS:
        layer = companions.COMPANIONS[network][1]
        executed = notebooks.execute_all(results, quiet=quiet, notebooks=[companions.SOURCE_NOTEBOOK],
                                         parameters={"layer": layer})
        figures_page.write(results, executed[0], tmp / "figures.html")
    else:
        notebooks.execute_all(results, quiet=quiet)
        out = report.render(results, renderer=renderer, quiet=quiet)
        shutil.copyfile(out["paper"], tmp / "paper.html")
        shutil.copyfile(out["poster"], tmp / "poster.html")
    _write_table(results, tmp)
    old = docs / f".{exp['name']}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    write_index(docs)
    if not quiet:
        print(f"published: {target}  (index: {docs / 'index.html'})")
    return target


def _write_table(results: Path, folder: Path) -> None:
    """``results.csv`` (the tidy table, without local paths) and ``experiment.json`` of ``results`` into ``folder``."""
    table = store.load_results(results)
    table.drop(columns=["run_dir", "file"]).to_csv(folder / "results.csv", index=False, float_format="%.6g")
    shutil.copyfile(Path(results) / "experiment.json", folder / "experiment.json")


def replicate(results, name: str, docs: Path | None = None) -> Path:
    """Keep ``results`` as a replicate: only its table and ``experiment.json``, in ``docs/replicates/<name>/``,
    where ``replicates.section`` finds it by its config hash (a second training of a published config)."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ReportError(f"replicate name '{name}' must be a plain folder name, e.g. paper_lenet_mnist_cpu_v2")
    store.read_experiment(results)  # a missing results folder stops here with one line
    target = Path(docs if docs is not None else paths.DOCS) / "replicates" / name
    target.mkdir(parents=True, exist_ok=True)
    _write_table(Path(results), target)
    return target


def _row(folder: Path) -> str:
    exp = store.read_experiment(folder)
    n_rows = sum(1 for _ in (folder / "results.csv").open()) - 1
    cfg = exp.get("config", {})
    seconds = exp.get("last_run_seconds")
    wall = f"{seconds / 60:.0f} min" if isinstance(seconds, (int, float)) else "n/a"
    links = " · ".join(f'<a href="{folder.name}/{f}">{f.split(".")[0] if f.endswith("html") else f}</a>'
                       for f in FILES if (folder / f).exists())
    e = html.escape
    return (f"<tr><td><b>{e(exp['name'])}</b><br><small>{e(exp.get('description', ''))}</small></td>"
            f"<td>{e(cfg.get('arch', ''))} / {e(cfg.get('dataset', ''))}</td>"
            f"<td>{len(exp.get('runs', []))} runs, {n_rows} trainings, seeds {e(str(cfg.get('seeds')))}, "
            f"{cfg.get('iterations')} iterations, {cfg.get('training', {}).get('epochs')} epochs</td>"
            f"<td>{e(exp.get('hardware', ''))}<br>{wall} wall ({e(str(exp.get('trainer', '')))} trainer"
            + (f", conv blocks: {e(exp['population_convs'])}" if exp.get("population_convs") else "") + ")</td>"
            f"<td><code>{e(exp.get('code_version', ''))}</code><br>{e(exp.get('updated', exp.get('started', '')))}"
            f"</td><td>{links}</td></tr>")


def write_index(docs: Path) -> Path:
    """``docs/index.html``: one row per published results set (every ``docs/*/experiment.json``)."""
    sets = sorted(p.parent for p in Path(docs).glob("*/experiment.json"))
    rows = "\n".join(_row(folder) for folder in sets)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Iterative pruning, reinitialisation and the similarity of masks: results</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}}small{{color:#555}}</style></head><body>
<h1>Iterative pruning, reinitialisation and the similarity of masks</h1>
<p>Published results of this repository's reproduction of Paganini &amp; Forde (2020), <i>On Iterative Neural Network
Pruning, Reinitialization, and the Similarity of Masks</i> (arXiv:2001.05050). Each LeNet results set has its paper and
poster (rendered from the stored results, with every difference from the paper's protocol stated in them); the AlexNet
and VGG11 sets, whose conv2 kernels the LeNet report shows beside LeNet's conv1, have a page of figures. Every set has
its tidy results table (one row per training) and its <code>experiment.json</code> (config, run hashes, code version, hardware,
dates). Re-publish a set with <code>make publish CONFIG=configs/NAME.yaml</code>.</p>
<table><thead><tr><th>results set</th><th>model / data</th><th>scale</th><th>machine and wall time</th>
<th>code version and date</th><th>files</th></tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""
    path = Path(docs) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    (Path(docs) / ".nojekyll").touch()
    return path
