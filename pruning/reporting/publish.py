"""Publishing a results set to ``docs/`` (served as-is by GitHub Pages): readers open it without running anything.

``python -m pruning publish RESULTS`` (or ``make publish CONFIG=configs/NAME.yaml``) adds the finished seeds
of the run store ``RESULTS`` that ``docs/<name>/`` does not hold yet to its published data, then renders the set
from that data alone (``python -m pruning publish docs/<name>`` re-renders it; no run store is needed):

    data/                     the published store (``store.published``, written by ``export``): one folder per
                              seed, immutable once written, and the data card ``data/README.md``
    paper.html, poster.html   the rendered report (self-contained); a LeNet report shows the AlexNet and
                              VGG11 conv2 figures of the companion sets found beside it (``companions``)
    figures/<label>.csv       the numbers each figure of the pages plots (``figure_data``), linked from its caption
    figures.html              instead of paper and poster, for a companion set (AlexNet, VGG11): its
                              figures, numbers and every training (``figures_page``)
    results.csv               the tidy results table of every published seed, one row per training
    experiment.json           the config, run hashes, code version, hardware, dates, wall time, published seeds

then rewrites ``docs/index.html``, which links every published set. A seed's folder is written under a
temporary name and renamed, and each page is written beside its old version and moved over it, so a failed
publish leaves no half-written file; a failed render leaves the old pages beside the new data (publish again).
``python -m pruning publish RESULTS --replicate NAME`` keeps only the table and ``experiment.json``, in
``docs/replicates/NAME/``: a second training of a published config, which its paper compares against;
``--sensitivity NAME`` keeps them in ``docs/sensitivity/NAME/``: a variant for the sensitivity study.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

from . import companions, export, figures_page, notebooks, replicates, report
from ..core import paths
from ..core.atomic import replacing
from .. import store
from ..store import layout, published
from ..core.errors import ReportError
from .embeds import DATA_FOLDER

FILES = ("paper.html", "poster.html", "figures.html", "results.csv", layout.EXPERIMENT, "data/README.md")


def publish(results, docs: Path | None = None, renderer: str = "auto", quiet: bool = False) -> Path:
    """Publish ``results`` to ``docs/<experiment name>/``; returns that folder.

    From a run store: its finished seeds that the set does not hold yet are added to the set's data
    (:mod:`.export`; published seeds are never rewritten), then the whole-set files are rewritten and the
    notebooks and the report run on the published set itself, so that every number the pages quote is
    what anyone recomputes from the committed data. From a published set (``docs/<name>``): only that.
    """
    results = Path(results)
    docs = Path(docs) if docs is not None else paths.DOCS
    exp = store.read_experiment(results)
    if published.is_published(results):
        target, source = results, None
    else:
        target, source = paths.named_folder(docs, exp.get("name"), f"the experiment name in {results}/experiment.json,"), \
            results
        target.mkdir(parents=True, exist_ok=True)
        have = published.seeds(target)
        added = export.add_seeds(results, target)
        if not published.seeds(target):
            raise ReportError(f"{results} has no seed whose runs are all finished; finish one (`python -m pruning run "
                              f"{exp.get('config_file', 'configs/<name>.yaml')} --seeds N`) and publish again")
        if not quiet:
            print(f"seeds added to {target}: {added or 'none'}; already there (kept as they are): {have or 'none'}")
    export.write_derived(source, target)
    pages = _render(target, renderer, quiet)
    for name, path in pages.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        with replacing(target / name) as tmp:
            shutil.copyfile(path, tmp)
    for old in (target / DATA_FOLDER).glob("*.csv"):  # a figure the report no longer draws
        if f"{DATA_FOLDER}/{old.name}" not in pages:
            old.unlink()
    index = write_index(docs if source is not None else target.parent)
    if not quiet:
        print(f"published: {target}  (index: {index})")
    return target


def _render(target: Path, renderer: str, quiet: bool) -> dict[str, Path]:
    """The pages of a published set, rendered from it: {file name in the set: rendered file}."""
    network = store.read_experiment(target)["config"]["arch"]
    if network in companions.COMPANIONS:
        layer = companions.COMPANIONS[network][1]
        executed = notebooks.execute_all(target, quiet=quiet, notebooks=[companions.SOURCE_NOTEBOOK],
                                         parameters={"layer": layer})
        page = paths.build_folder(target) / "figures.html"
        data = figures_page.write(target, executed[0], page)
        return {"figures.html": page, **data}
    notebooks.execute_all(target, quiet=quiet)
    out = report.render(target, renderer=renderer, quiet=quiet)
    return {"paper.html": out["paper"], "poster.html": out["poster"], **out["data"]}


def _write_table(results: Path, folder: Path, seeds: list[int] | None = None) -> None:
    """``results.csv`` (the tidy table, without local paths; only ``seeds`` where given) and ``experiment.json`` of
    ``results`` into ``folder``."""
    table = store.load_results(results)
    if seeds is not None:
        table = table[table["seed"].isin(seeds)]
    table = table.drop(columns=[c for c in published.UNWRITTEN if c in table.columns])
    table.to_csv(folder / "results.csv", index=False, float_format="%.6g")
    shutil.copyfile(Path(results) / layout.EXPERIMENT, folder / layout.EXPERIMENT)


def replicate(results, name: str, docs: Path | None = None) -> Path:
    """Keep ``results`` as a replicate in ``docs/replicates/<name>/``, where ``replicates.section`` finds it by its
    config hash (a second training of a published config): its table, ``experiment.json`` and, as for a published
    set, the data of its finished seeds (``data/``: masks, predictions, what ``analysis.noise`` compares)."""
    target = paths.named_folder(Path(docs if docs is not None else paths.DOCS) / "replicates", name, "replicate name")
    store.read_experiment(results)  # a missing results folder stops here with one line
    target.mkdir(parents=True, exist_ok=True)
    export.add_seeds(Path(results), target)
    if published.seeds(target):
        export.write_derived(Path(results), target)
    else:
        _write_table(Path(results), target)
    return target


def sensitivity(results, name: str, docs: Path | None = None) -> Path:
    """Keep ``results`` as a variant of the sensitivity study in ``docs/sensitivity/<name>/``: its table and
    ``experiment.json``, which ``analysis.sensitivity`` compares with the set a paper is rendered for. A variant
    trained further is published again over its own files (the table grows; nothing else is kept there). Only
    seeds whose runs are all finished go into the table."""
    target = paths.named_folder(Path(docs if docs is not None else paths.DOCS) / "sensitivity", name,
                                "sensitivity variant name")
    exp = store.read_experiment(results)  # a missing results folder stops here with one line
    seeds = export.finished_seeds(Path(results), exp)
    if not seeds:
        raise ReportError(f"{results} has no seed whose runs are all finished; finish one (`python -m pruning run "
                          f"{exp.get('config_file', 'configs/<name>.yaml')} --seeds N`) and publish again")
    target.mkdir(parents=True, exist_ok=True)
    _write_table(Path(results), target, seeds)  # a seed still training is left out until it finishes
    return target


def _wall(folder: Path, exp: dict) -> str:
    """The set's training wall time: the sum over the commands that trained its published seeds (a command that trained
    several seeds together counted once), else the last command's."""
    from . import seed_times

    # one command recorded under each seed it trained: the same seconds on the same day are that one command
    commands = {(r["seconds"], r["finished"]): r["seconds"] for r in seed_times.rows(folder)}
    if commands:
        return f"{sum(commands.values()) / 60:,.0f} min wall over {len(commands)} training command(s)"
    seconds = exp.get("last_run_seconds")
    return f"{seconds / 60:.0f} min wall (last command)" if isinstance(seconds, (int, float)) else "wall time n/a"


def _row(folder: Path) -> str:
    exp = store.read_experiment(folder)
    n_rows = sum(1 for _ in (folder / "results.csv").open()) - 1
    cfg = exp.get("config", {})
    wall = _wall(folder, exp)
    names = {"data/README.md": "data (what the notebooks read; its card)"}
    links = " · ".join(f'<a href="{folder.name}/{f}">{names.get(f, f.split(".")[0] if f.endswith("html") else f)}</a>'
                       for f in FILES if (folder / f).exists())
    e = html.escape
    seeds = f"seeds {e(str(exp['published_seeds']))} of {e(str(cfg.get('seeds')))}" if "published_seeds" in exp \
        else f"seeds {e(str(cfg.get('seeds')))}"
    done, planned = store.runs_finished(folder)
    findings = _findings_line(folder) if cfg.get("arch") == "lenet" and (folder / "data").is_dir() else ""
    return (f"<tr><td><b>{e(exp['name'])}</b><br><small>{e(exp.get('description', ''))}</small>{findings}</td>"
            f"<td>{e(cfg.get('arch', ''))} / {e(cfg.get('dataset', ''))}</td>"
            f"<td>{done} of {planned} runs, {n_rows} trainings, {seeds}, "
            f"{cfg.get('iterations')} iterations, {cfg.get('training', {}).get('epochs')} epochs</td>"
            f"<td>{e(exp.get('hardware', ''))}<br>{e(wall)} ({e(str(exp.get('trainer', '')))} trainer"
            + (f", conv blocks: {e(exp['population_convs'])}" if exp.get("population_convs") else "") + ")</td>"
            f"<td><code>{e(exp.get('code_version', ''))}</code><br>{e(exp.get('updated', exp.get('started', '')))}"
            f"</td><td>{links}</td></tr>")


def _findings_line(folder: Path) -> str:
    """One line of a LeNet set's findings at the poster's iteration (18 pruning steps): which are supported."""
    from .. import analysis

    try:
        table = store.load_results(folder)
        last = int(table[table["reinit"] == "rewind"]["iteration"].max())
        it = min(18, last)
        found = analysis.findings.findings(table, it, "rewind", replicates.reruns(folder))
    except Exception:  # noqa: BLE001 - a set the findings cannot read (a companion, a table without data)
        return ""
    by = {}
    for f in found:
        by.setdefault(f.verdict, []).append(f.short)
    parts = [f"<b>{e}</b>: {html.escape('; '.join(by[e]))}" for e in ("supported", "not supported", "inconclusive")
             if e in by]
    return f"<br><small>At iteration {it}, " + " · ".join(parts) + " (the paper reads every iteration).</small>"


def _plain_rows(folder: Path, what: str) -> str:
    """A list item per kept table (sensitivity variants, replicates) under ``folder``."""
    items = []
    for exp_path in sorted(Path(folder).glob("*/experiment.json")):
        sub = exp_path.parent
        try:
            desc = store.read_experiment(sub).get("config", {}).get("description", "")
        except Exception:  # noqa: BLE001
            desc = ""
        files = " · ".join(f'<a href="{folder.name}/{sub.name}/{f}">{f}</a>' for f in ("results.csv", "experiment.json")
                           if (sub / f).exists())
        items.append(f"<li><b>{html.escape(sub.name)}</b>: {html.escape(desc)} ({files})</li>")
    return f"<h2>{what}</h2><ul>{''.join(items)}</ul>" if items else ""


def write_index(docs: Path) -> Path:
    """``docs/index.html``: one row per published results set (every ``docs/*/experiment.json``) with its findings
    in one line, then the sensitivity variants, the replicates, and the guide, benchmarks and history."""
    sets = sorted(p.parent for p in Path(docs).glob("*/experiment.json"))
    rows = "\n".join(_row(folder) for folder in sets)
    extra = (_plain_rows(Path(docs) / "sensitivity", "Sensitivity variants (tables only)")
             + _plain_rows(Path(docs) / "replicates", "Replicates (a config trained again)"))
    guides = " · ".join(f'<a href="{f}">{t}</a>' for f, t in (("guide.md", "guide"), ("benchmarks.md", "benchmarks"),
                                                              ("history.md", "history")) if (Path(docs) / f).exists())
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
</tbody></table>
{extra}
<h2>Reading</h2><p>{guides}</p></body></html>
"""
    path = Path(docs) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    (Path(docs) / ".nojekyll").touch()
    return path
