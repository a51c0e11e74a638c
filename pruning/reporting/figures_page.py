"""The published page of a companion results set (AlexNet, VGG11): its figures, numbers and table, one HTML file.

A companion set (``companions``) has no paper or poster of its own: its filters notebook's figures go into
the LeNet report beside LeNet's, and :func:`write` makes its page in ``docs/<name>/figures.html``: the
config's header (what was cut from the paper and why), the numbers sentence, both figures with their
captions, test accuracy and emptied kernels per training, the store's size per training and the wall time.
Images are embedded (base64), so the file stands alone.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .. import store
from ..core import paths
from ..core.names import ARCH_NAMES
from . import companions, embeds


def _config_header(exp: dict) -> str:
    """The leading ``#`` comment block of the results set's config file (empty when the file is not here)."""
    path = Path(exp.get("config_file", ""))
    path = path if path.is_absolute() else paths.REPO_ROOT / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    head = []
    for line in lines:
        if not line.startswith("#"):
            break
        head.append(line[1:].removeprefix(" "))
    return "\n".join(head)


def _figure(cell: dict, label: str) -> str:
    mime, data = embeds.cell_output(cell, label)
    data = base64.b64encode(data.encode()).decode() if mime == "image/svg+xml" else data.strip()
    caption = html.escape(embeds.caption(cell))
    if embeds.cell_data(cell):
        caption += f' <a href="{embeds.data_file(label)}">The plotted numbers (CSV)</a>'
    return f'<figure><img alt="{html.escape(label)}" src="data:{mime};base64,{data}"><figcaption>{caption}</figcaption></figure>'



def store_size(results: Path) -> dict:
    """Bytes on disk: per training record (mean), per run checkpoint (mean) and the whole folder."""
    records = [p.stat().st_size for p in results.glob("*_*/trainings/[0-9][0-9][0-9].pt")]
    ckpts = [p.stat().st_size for p in results.glob("run_*/checkpoint.pt")]
    seen, total = set(), 0
    for p in results.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:  # hard links (a shared dense training) count once
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return {"record": sum(records) / len(records) if records else 0, "checkpoint": sum(ckpts) / len(ckpts) if ckpts else 0,
            "total": total}


def _store_sentence(results: Path, size: dict) -> str:
    if store.published.is_published(results):
        total, n = store.published.sizes(results)["total"], len(store.load_results(results))
        return (f"Published data: {total / 1e6:.1f} MB for {n:,} trainings ({total / max(n, 1) / 1e3:.0f} KB a "
                f"training: bit-packed masks, conv2 weights in float16, test predictions), every file described in "
                f'<a href="data/README.md">data/README.md</a>; no figure here needs training again.')
    return (f"Store: {size['record'] / 1e6:.2f} MB per training record (bit-packed masks of the conv layers, conv1/conv2 "
            f"weights, test logits), {size['checkpoint'] / 1e6:.0f} MB per run checkpoint (the latest full state, for "
            f"resuming), {size['total'] / 1e9:.2f} GB in all.")


def _table(results: Path, network: str) -> str:
    from .. import analysis

    table = analysis.load(results)
    curve = analysis.empty_kernel_curve(table, companions.COMPANIONS[network][1])
    merged = table.merge(curve[["technique", "reinit", "seed", "iteration", "empty", "chance"]],
                         on=["technique", "reinit", "seed", "iteration"])
    merged["run"] = [f"{t} / {r} / s{s}" for t, r, s in zip(merged["technique"], merged["reinit"], merged["seed"])]
    merged["cell"] = [f"{a:.1f}% | {100 * e:.1f}%" + (" (collapsed)" if c else "")
                      for a, e, c in zip(merged["test_acc"], merged["empty"], merged["collapsed"])]
    pivot = merged.pivot(index="iteration", columns="run", values="cell")
    chance = merged.groupby("iteration")["chance"].mean()
    pivot["random mask: emptied (mean over runs)"] = [f"{100 * chance[i]:.1f}%" for i in pivot.index]
    weights = merged.groupby("iteration")["sparsity"].mean()
    pivot.insert(0, "weights left", [f"{100 * (1 - weights[i]):.1f}%" for i in pivot.index])
    return pivot.reset_index().to_html(index=False, classes="data", border=0)


def write(results, build_notebook: Path, target: Path) -> dict[str, Path]:
    """Write ``target`` (``figures.html``) for the companion results set ``results`` from its executed filters
    notebook ``build_notebook``, and its figures' numbers beside it; returns {name beside the page: path} of those."""
    results = Path(results)
    exp = store.read_experiment(results)
    network = exp["config"]["arch"]
    cells = embeds.labelled_cells(build_notebook)
    size = store_size(results)
    seconds = exp.get("last_run_seconds")
    e = html.escape
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(exp['name'])}: {e(ARCH_NAMES[network])} conv2 kernels</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
img{{max-width:100%}}figure{{margin:1.5rem 0}}figcaption{{font-size:.9rem;color:#333}}pre{{background:#f6f6f6;padding:.8rem;
white-space:pre-wrap;font-size:.85rem}}table.data{{border-collapse:collapse;font-size:.8rem}}table.data td,table.data th{{
border-bottom:1px solid #ddd;padding:.25rem .5rem;text-align:right}}</style></head><body>
<p><a href="../index.html">all published results</a></p>
<h1>{e(ARCH_NAMES[network])} conv2 kernels under iterative pruning: <code>{e(exp['name'])}</code></h1>
<p>{e(exp['config'].get('description', ''))}. This set feeds the AlexNet/VGG11 figures of the LeNet report's question 5
(does L1 unstructured pruning with rewinding empty whole kernels, as structured pruning does, while fine-tuning does not?).
It is far smaller than the paper's setting; the config's header says what was cut and why:</p>
<pre>{e(_config_header(exp))}</pre>
<p><b>Numbers.</b> {e(companions.numbers(results, network))}</p>
{_figure(cells['fig-filters'], 'fig-filters')}
{_figure(cells['fig-empty-kernels'], 'fig-empty-kernels')}
<h2>Every training</h2>
<p>Per iteration and run (technique / reinit / seed): test accuracy | conv2 kernels emptied; last column: the share a
random mask of the same sparsity empties. "collapsed": the final training loss is within
{store.COLLAPSE_TOLERANCE} of ln 10 (the training learned nothing).</p>
{_table(results, network)}
<h2>Provenance</h2>
<p>Config hash <code>{e(exp.get('config_hash', ''))}</code>, code version <code>{e(exp.get('code_version', ''))}</code>,
hardware: {e(exp.get('hardware', ''))}; wall time of the last run: {f'{seconds / 60:.1f} min' if isinstance(seconds, (int, float)) else 'n/a'}.
{_store_sentence(results, size)} The tidy table is <a href="results.csv">results.csv</a>; the config, run hashes and
dates are in <a href="experiment.json">experiment.json</a>.</p>
</body></html>
"""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return embeds.write_data({label: cells[label] for label in ("fig-filters", "fig-empty-kernels")}, target.parent)
