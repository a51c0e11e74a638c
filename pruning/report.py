"""Render the paper and the poster of a results folder: one report text, two renderers.

The text is ``report/paper.qmd`` and ``report/poster.qmd`` (Quarto markdown). Their figures and tables
are the stored outputs of the executed notebooks (``{{< embed notebooks/accuracy.ipynb#fig-accuracy >}}``)
and every number they quote is a variable computed here from the results (``{{< var best_acc >}}``).
:func:`render` stages the sources into ``build/<results>/report/``, beside the executed notebooks of
``python -m pruning notebooks RESULTS`` (``build/<results>/notebooks``, linked there as ``notebooks/``),
writes ``_variables.yml`` and renders:

- with Quarto when ``quarto`` is on PATH (``quarto render`` of the staged project; it embeds the stored
  outputs and executes nothing);
- otherwise offline with pandoc 3 from pypandoc-binary: the same ``.qmd`` files are preprocessed
  (embeds become numbered figures and tables with their captions, variables are substituted,
  ``@fig-x`` / ``@tbl-x`` become "Figure N" / "Table N" links, Quarto-only syntax is degraded), then
  pandoc writes self-contained HTML with the same CSS and the images inline.

Both write ``paper.html`` and ``poster.html`` into the staged folder.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import analysis, store
from .store import StoreError
from .techniques import label as _label

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT / "report"
BUILD = REPO_ROOT / "build"
DOCUMENTS = ("paper.qmd", "poster.qmd")
RENDERERS = ("auto", "quarto", "pandoc")
NEAR_DENSE_MARGIN = 2.0  # points of accuracy: a technique "keeps the dense accuracy" within this margin
ARCH_NAMES = {"lenet": "LeNet", "alexnet": "AlexNet", "vgg11": "VGG11"}
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


class ReportError(StoreError):
    """A report that cannot be rendered; one line that says what to do.

    A StoreError so that the command line prints it as one line (exit code 2), like a damaged results folder.
    """


def _run_notebooks_hint(results) -> str:
    return f"run `python -m pruning notebooks {results}` first"


def build_folder(results) -> Path:
    """``build/<results folder name>``: the executed notebooks (``notebooks/``) and the report (``report/``)."""
    return BUILD / Path(results).resolve().name


# ============================================================================= variables


def _fmt(x, digits: int = 1) -> str:
    """A number for the text: ``digits`` decimals, thousands separated; "n/a" for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{float(x):,.{digits}f}"


def _and(items: list[str]) -> str:
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def report_iteration(table) -> int:
    """The iteration the text quotes: the figure notebooks' default, the last one that every run reached."""
    return analysis.last_iteration(table)


def variables(results) -> dict[str, str]:
    """Every value the report quotes, computed from ``results``, as text (numbers with 1-2 decimals).

    Provenance (config name and hash, runs, trainings, code version, hardware, date), the protocol
    (from the experiment's config), and the numbers the text quotes at the iteration
    :func:`report_iteration`, for the main reinitialisation (rewind when present). A number the
    results cannot give (e.g. random US when that technique was not run) is "n/a".
    """
    folder = Path(results)
    try:
        table = analysis.load(folder)
    except analysis.ParameterError as exc:
        raise ReportError(str(exc)) from None
    exp = store.read_experiment(folder)
    cfg = exp.get("config", {})
    training = cfg.get("training", {})
    reinits = [r for r in (cfg.get("reinit") or sorted(set(table["reinit"]))) if r in set(table["reinit"])]
    main = "rewind" if "rewind" in reinits else reinits[0]
    sel = table[table["reinit"] == main]
    it = report_iteration(table)
    techs = analysis.technique_order(sel)
    seeds = sorted(int(s) for s in set(table["seed"]))
    runs_done = sum(1 for r in exp.get("runs", []) if (folder / f"run_{r['hash']}" / "done.json").exists())
    arch, dataset = str(table["arch"].iloc[0]), str(table["dataset"].iloc[0])

    v: dict[str, str] = {
        "results_folder": folder.resolve().name,
        "config_name": str(exp.get("name", cfg.get("name", folder.name))),
        "config_hash": str(exp.get("config_hash", "n/a")),
        "config_file": str(exp.get("config_file", "n/a")),
        "runs": str(len(exp.get("runs", []))),
        "runs_done": str(runs_done),
        "trainings": f"{len(table):,}",
        "code_version": str(exp.get("code_version", "unknown")),
        "hardware": str(exp.get("hardware", "unknown")),
        "date": str(exp.get("updated", exp.get("started", "")))[:10] or "n/a",
        "rendered": _dt.date.today().isoformat(),
        "arch": ARCH_NAMES.get(arch, arch),
        "dataset": DATASET_NAMES.get(dataset, dataset),
        "techniques_n": str(len(analysis.technique_order(table))),
        "techniques_list": _and([_label(t) for t in analysis.technique_order(table)]),
        "reinits": _and(reinits),
        "main_reinit": main,
        "seeds_n": str(len(seeds)),
        "seeds": analysis._ranges(seeds),
        "iterations": str(cfg.get("iterations", int(table["iteration"].max()))),
        "trainings_per_run": str(int(cfg.get("iterations", int(table["iteration"].max()))) + 1),
        "epochs": str(training.get("epochs", "n/a")),
        "lr": str(training.get("lr", "n/a")),
        "batch_size": str(training.get("batch_size", "n/a")),
        "prune_pct": _fmt(100 * float(cfg.get("prune_fraction", 0.2)), 0),
        "iteration": str(it),
        "near_dense_margin": _fmt(NEAR_DENSE_MARGIN, 0),
    }
    at = sel[sel["iteration"] == it]
    us = at[at["technique"] == "l1_us"] if "l1_us" in techs else at
    v["remaining_pct"] = _fmt(100 * (1 - float(us["sparsity"].mean())))
    v["test_images"] = f"{int(analysis.record(at.iloc[0])['targets'].numel()):,}"
    accuracy, near_dense = _accuracy_variables(sel, it, techs)
    v.update(accuracy)
    v.update(_mask_variables(sel, it, main, near_dense))
    v.update(_agreement_variables(sel, it, main))
    v.update(_ensemble_variables(sel, it, main))
    v.update(_stability_variables(sel, it, main))
    v.update(_connectivity_variables(table, it))
    return v


def _accuracy_variables(sel, it: int, techs: list[str]) -> tuple[dict[str, str], list[str]]:
    """Accuracies at ``it`` (mean over seeds), and the techniques within NEAR_DENSE_MARGIN of the dense network."""
    acc = sel[sel["iteration"] == it].groupby("technique")["test_acc"].mean()
    dense = float(sel.loc[sel["iteration"] == 0, "test_acc"].mean()) if (sel["iteration"] == 0).any() else math.nan
    best, worst = acc.idxmax(), acc.idxmin()
    near = [t for t in techs if acc[t] >= dense - NEAR_DENSE_MARGIN]
    out = {"dense_acc": _fmt(dense), "best_technique": _label(best), "best_acc": _fmt(acc[best]),
           "worst_technique": _label(worst), "worst_acc": _fmt(acc[worst]), "near_dense_n": str(len(near)),
           "near_dense_list": _and([_label(t) for t in near])}
    rs, ru = acc.get("random_s", math.nan), acc.get("random_us", math.nan)
    out["random_s_acc"], out["random_us_acc"] = _fmt(rs), _fmt(ru)
    if math.isnan(rs) or math.isnan(ru):
        out["random_verdict"] = "this configuration does not run both random techniques"
    elif rs > ru:
        out["random_verdict"] = f"random structured pruning keeps {_fmt(rs - ru)} points more accuracy"
    elif rs < ru:
        out["random_verdict"] = f"here random unstructured pruning keeps {_fmt(ru - rs)} points more accuracy"
    else:
        out["random_verdict"] = "both keep the same accuracy"
    return out, near


def _pairs(matrix) -> list[tuple[float, str, str]]:
    names = list(matrix.index)
    return [(float(matrix.loc[a, b]), a, b) for i, a in enumerate(names) for b in names[i + 1:]
            if not math.isnan(float(matrix.loc[a, b]))]


def _mask_variables(sel, it: int, main: str, near: list[str]) -> dict[str, str]:
    """Jaccard distances of same-seed masks at ``it``: mean, closest and farthest pair, closest near-dense pair."""
    out = {k: "n/a" for k in ("mask_mean_distance", "mask_closest_pair", "mask_closest_distance",
                              "mask_farthest_pair", "mask_farthest_distance", "tickets_distance")}
    out["tickets_verdict"] = "fewer than two techniques keep the dense accuracy here, so the question stays open"
    pairs = _pairs(analysis.mask_distance_matrix(sel, it, main))
    if not pairs:
        return out
    lo, hi = min(pairs), max(pairs)
    out.update(mask_mean_distance=_fmt(sum(p[0] for p in pairs) / len(pairs), 2),
               mask_closest_pair=f"{_label(lo[1])} and {_label(lo[2])}", mask_closest_distance=_fmt(lo[0], 2),
               mask_farthest_pair=f"{_label(hi[1])} and {_label(hi[2])}", mask_farthest_distance=_fmt(hi[0], 2))
    tickets = [p for p in pairs if p[1] in near and p[2] in near]
    if tickets:
        d = min(tickets)[0]
        out["tickets_distance"] = _fmt(d, 2)
        out["tickets_verdict"] = ("several different sub-networks keep the dense accuracy: there is more than one "
                                  "winning ticket, and several techniques find one" if d > 0 else
                                  "the techniques that keep the dense accuracy found the same mask")
    return out


def _agreement_variables(sel, it: int, main: str) -> dict[str, str]:
    """Test images on which two techniques' sub-networks predict the same class: mean, least and most."""
    out = {k: "n/a" for k in ("agreement_mean", "agreement_mean_pct", "agreement_min", "agreement_min_pair",
                              "agreement_max", "agreement_max_pair")}
    matrix = analysis.agreement_matrix(sel, it, main)
    pairs = _pairs(matrix)
    if not pairs:
        return out
    n = float(matrix.iloc[0, 0])
    mean = sum(p[0] for p in pairs) / len(pairs)
    lo, hi = min(pairs), max(pairs)
    out.update(agreement_mean=_fmt(mean, 0), agreement_mean_pct=_fmt(100 * mean / n),
               agreement_min=_fmt(lo[0], 0), agreement_min_pair=f"{_label(lo[1])} and {_label(lo[2])}",
               agreement_max=_fmt(hi[0], 0), agreement_max_pair=f"{_label(hi[1])} and {_label(hi[2])}")
    return out


def _ensemble_variables(sel, it: int, main: str) -> dict[str, str]:
    """The best ensemble of the ensembles table (the poster's; "all" techniques present when it has none)."""
    out = {k: "n/a" for k in ("ensemble_best", "ensemble_best_acc", "member_best", "member_best_acc",
                              "ensemble_gain")}
    out["ensemble_verdict"] = "cannot be compared with"
    present = analysis.technique_order(sel)
    groups = {name: m for name, m in analysis.poster_groups().items() if set(m) <= set(present) and len(m) > 1}
    if not groups and len(present) > 1:
        groups = {"all": present}
    if not groups:
        return out
    ens = analysis.ensemble_table(sel, it, main, groups=groups)
    best = ens.loc[ens["mean"].idxmax()]
    acc = sel[sel["iteration"] == it].groupby("technique")["test_acc"].mean()
    members = best["members"].split(", ")
    member = max(members, key=lambda t: acc[t])
    gain = round(float(best["mean"]) - float(acc[member]), 1)  # compared as the text prints them
    out.update(ensemble_best=str(best["name"]), ensemble_best_acc=_fmt(best["mean"]), member_best=_label(member),
               member_best_acc=_fmt(acc[member]), ensemble_gain=("+" if gain > 0 else "") + _fmt(gain + 0.0))
    out["ensemble_verdict"] = "beats" if gain > 0 else "matches" if gain == 0 else "does not beat"
    return out


def _stability_variables(sel, it: int, main: str) -> dict[str, str]:
    """Mean |change| of surviving weights per technique, and its correlation with accuracy across techniques."""
    out = {k: "n/a" for k in ("stable_technique", "stable_delta", "unstable_technique", "unstable_delta",
                              "stability_corr")}
    out["stability_verdict"] = "the results hold too few techniques or iterations to tell"
    if it < 1:
        return out
    try:
        per, r = analysis.stability_vs_accuracy(sel, main, it)
    except analysis.ParameterError:  # e.g. trained weights not stored
        return out
    per = per.dropna(subset=["mean_abs_delta"])
    if per.empty:
        return out
    lo, hi = per.loc[per["mean_abs_delta"].idxmin()], per.loc[per["mean_abs_delta"].idxmax()]
    out.update(stable_technique=_label(lo["technique"]), stable_delta=_fmt(lo["mean_abs_delta"], 3),
               unstable_technique=_label(hi["technique"]), unstable_delta=_fmt(hi["mean_abs_delta"], 3),
               stability_corr=_fmt(r, 2))
    if not math.isnan(r):
        out["stability_verdict"] = ("the more stable a technique's weights, the more accurate its sub-networks"
                                    if r < 0 else "here more stable weights do not go with higher accuracy")
    return out


def _empty_kernel_stats(masks: dict) -> tuple[float, float]:
    """(% of conv kernels with every entry pruned, % expected if as many entries were pruned at random).

    A kernel of k entries in a layer with a fraction p of its entries pruned is empty by chance with
    probability p**k.
    """
    kernels, empty, chance = 0, 0, 0.0
    for mask in (m for m in masks.values() if m.dim() == 4):
        counts = analysis.empty_kernels(mask.float())
        pruned = 1.0 - float(mask.float().mean())
        kernels += counts["kernels"]
        empty += counts["empty_kernels"]
        chance += counts["kernels"] * pruned ** mask[0, 0].numel()
    return (100 * empty / kernels, 100 * chance / kernels) if kernels else (math.nan, math.nan)


def _connectivity_variables(table, it: int) -> dict[str, str]:
    """Emptied conv kernels of L1 US with rewind vs finetune, and what random pruning would empty."""
    out = {k: "n/a" for k in ("empty_kernels_rewind_pct", "empty_kernels_finetune_pct", "empty_kernels_chance_pct",
                              "rewind_finetune_distance")}
    out["connectivity_verdict"] = "this needs L1 US runs with both rewind and finetune"
    both = table[(table["technique"] == "l1_us") & (table["iteration"] == it)]
    if not {"rewind", "finetune"} <= set(both["reinit"]):
        return out
    pct, chance = {}, {}
    for reinit in ("rewind", "finetune"):
        stats = [_empty_kernel_stats(analysis.record(row)["masks"])
                 for _, row in both[both["reinit"] == reinit].iterrows()]
        pct[reinit] = sum(s[0] for s in stats) / len(stats)
        chance[reinit] = sum(s[1] for s in stats) / len(stats)
    out["empty_kernels_rewind_pct"] = _fmt(pct["rewind"])
    out["empty_kernels_finetune_pct"] = _fmt(pct["finetune"])
    out["empty_kernels_chance_pct"] = _fmt(chance["rewind"])
    dist = analysis.rewind_vs_finetune(table[table["technique"] == "l1_us"])
    row = dist[dist["iteration"] == it]
    if len(row):
        out["rewind_finetune_distance"] = _fmt(float(row["mean"].iloc[0]), 2)
    if pct["rewind"] > pct["finetune"]:
        out["connectivity_verdict"] = ("rewinding empties whole kernels, a structured-looking connectivity that "
                                       "fine-tuning does not produce")
    else:
        out["connectivity_verdict"] = "here rewinding does not empty more kernels than fine-tuning"
    return out


# ============================================================================= notebooks and embeds

EMBED = re.compile(r"\{\{<\s*embed\s+([^\s#>]+)#([\w-]+)[^>]*>\}\}")


def embeds(text: str) -> list[tuple[str, str]]:
    """The (notebook path, label) of every ``{{< embed nb.ipynb#label >}}`` in ``text``, in order."""
    return [(m.group(1), m.group(2)) for m in EMBED.finditer(text)]


def cell_options(cell: dict) -> dict:
    """The Quarto options of a code cell: its leading ``#| key: value`` lines, read as YAML."""
    source = cell.get("source", "")
    lines = source.splitlines() if isinstance(source, str) else "".join(source).splitlines()
    head = []
    for line in lines:
        if not line.startswith("#|"):
            break
        head.append(line[2:].removeprefix(" "))
    try:
        options = yaml.safe_load("\n".join(head)) if head else {}
    except yaml.YAMLError:
        return {}
    return options if isinstance(options, dict) else {}


def labelled_cells(path: Path) -> dict[str, dict]:
    """{label: code cell} of a notebook (``#| label:`` options)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            label = cell_options(cell).get("label")
            if label:
                cells[str(label)] = cell
    return cells


def _data(output: dict, mime: str):
    value = output.get("data", {}).get(mime)
    return "".join(value) if isinstance(value, list) else value


IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")
TABLE_MIMES = ("text/html", "text/markdown")


def cell_output(cell: dict, label: str) -> tuple[str, str] | None:
    """(mime, data) of the output to embed: the first image of a ``fig-`` cell, the first table of a
    ``tbl-`` cell (HTML or markdown, else an image); None when the cell has none."""
    outputs = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]
    mimes = IMAGE_MIMES if label.startswith("fig-") else TABLE_MIMES + IMAGE_MIMES
    for mime in mimes:
        for output in outputs:
            if _data(output, mime):
                return mime, _data(output, mime)
    return None


def check_embeds(documents, notebooks: Path, results) -> dict[tuple[str, str], tuple[dict, tuple[str, str]]]:
    """Every embed of ``documents`` resolved against the executed notebooks in ``notebooks``.

    Returns {(notebook path, label): (cell, (mime, data))}. A missing notebook, label or output is a
    one-line ReportError that says to run ``python -m pruning notebooks RESULTS``.
    """
    found, cache = {}, {}
    for doc in documents:
        for nb, label in embeds(Path(doc).read_text(encoding="utf-8")):
            path = notebooks / Path(nb).relative_to("notebooks") if nb.startswith("notebooks/") else notebooks / nb
            if path not in cache:
                if not path.exists():
                    raise ReportError(f"{Path(doc).name} embeds {nb}, but {path} does not exist; "
                                      f"{_run_notebooks_hint(results)}")
                try:
                    cache[path] = labelled_cells(path)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ReportError(f"{path} is damaged (not a notebook); {_run_notebooks_hint(results)}") from None
            cell = cache[path].get(label)
            if cell is None:
                raise ReportError(f"{Path(doc).name} embeds {nb}#{label}, but {path} has no cell labelled {label}; "
                                  f"{_run_notebooks_hint(results)}")
            output = cell_output(cell, label)
            if output is None:
                raise ReportError(f"{Path(doc).name} embeds {nb}#{label}, but that cell of {path} has no output; "
                                  f"{_run_notebooks_hint(results)}")
            found[nb, label] = (cell, output)
    return found


# ============================================================================= staging


def stage(build: Path, values: dict) -> Path:
    """Copy report/ into ``build/report/``, link ``notebooks`` -> ``../notebooks``, write ``_variables.yml``."""
    staged = build / "report"
    staged.mkdir(parents=True, exist_ok=True)
    for old in ("paper.html", "poster.html", "_offline"):
        target = staged / old
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for src in SOURCE.iterdir():
        if src.name in ("notebooks", "_variables.yml", ".quarto", "_freeze") or src.suffix == ".html":
            continue
        if src.is_dir():
            shutil.copytree(src, staged / src.name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, staged / src.name)
    link = staged / "notebooks"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    try:
        link.symlink_to(Path("..") / "notebooks", target_is_directory=True)
    except OSError:  # no symlinks (some filesystems): copy the notebooks
        shutil.copytree(build / "notebooks", link)
    (staged / "_variables.yml").write_text(
        "# Written by pruning/report.py from the results; every number the report quotes.\n"
        + yaml.safe_dump(values, sort_keys=True, allow_unicode=True, width=1000), encoding="utf-8")
    return staged


# ============================================================================= renderer 1: Quarto


def render_quarto(staged: Path, quiet: bool = False) -> None:
    """``quarto render`` in the staged project (the documents and options are in its ``_quarto.yml``)."""
    quarto = shutil.which("quarto")
    if quarto is None:
        raise ReportError("quarto is not on PATH; install Quarto >= 1.4 (https://quarto.org) or use --renderer pandoc")
    env = {**os.environ, "QUARTO_PYTHON": sys.executable}
    log = staged / "quarto.log"
    proc = subprocess.run([quarto, "render", "--no-execute"] + (["--quiet"] if quiet else []), cwd=staged, env=env,
                          capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ReportError(f"quarto render failed ({last}); see {log}, or use --renderer pandoc")


# ============================================================================= renderer 2: offline (pandoc)

FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
SHORTCODE = re.compile(r"\{\{<\s*([\w-]+)\s*(.*?)\s*>\}\}")
LABEL_SITE = re.compile(r"\{\{<\s*embed\s+[^\s#>]+#((?:fig|tbl)-[\w-]+)[^>]*>\}\}|\{#((?:fig|tbl)-[\w-]+)[^}]*\}")
XREF = re.compile(r"\[(-?)@((?:fig|tbl)-[\w-]*\w)\]|(?<![\w@.\-])(-?)@((?:fig|tbl)-[\w-]*\w)")
CALLOUT = re.compile(r"^(:{3,})[ \t]*\{([^}\n]*\.callout-(\w+)[^}\n]*)\}[ \t]*$", re.M)
KIND = {"fig": "Figure", "tbl": "Table"}


def _front_matter(text: str) -> tuple[dict, str, str]:
    """(parsed front matter, its raw text with fences, the body)."""
    m = FRONT_MATTER.match(text)
    if not m:
        return {}, "", text
    return (yaml.safe_load(m.group(1)) or {}), m.group(0), text[m.end():]


def _meta(meta: dict, key: str):
    value = meta
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def number_labels(body: str) -> dict[str, int]:
    """{label: number}: figures and tables (embedded or written in the text) numbered in order of appearance."""
    numbers, counts = {}, {"fig": 0, "tbl": 0}
    for m in LABEL_SITE.finditer(body):
        label = m.group(1) or m.group(2)
        if label not in numbers:
            kind = label.split("-", 1)[0]
            counts[kind] += 1
            numbers[label] = counts[kind]
    return numbers


def _caption_md(text: str) -> str:
    """A caption for inside ``![...]``: one line, brackets escaped."""
    return re.sub(r"([\[\]])", r"\\\1", " ".join(str(text).split()))


def _embed_block(label: str, number: int, cell: dict, output: tuple[str, str], assets: Path) -> str:
    """Markdown for one embedded output: a numbered figure with its caption, or a numbered table."""
    mime, data = output
    options = cell_options(cell)
    kind = KIND[label.split("-", 1)[0]]
    caption = options.get("fig-cap" if kind == "Figure" else "tbl-cap") or ""
    title = f"{kind} {number}" + (f": {caption}" if caption else "")
    if mime in IMAGE_MIMES:
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}[mime]
        path = assets / f"{label}.{ext}"
        path.write_bytes(data.encode() if ext == "svg" else base64.b64decode(data))
        image = f"![{_caption_md(title)}]({assets.name}/{path.name})"
        if kind == "Figure":
            return f"\n\n{image}{{#{label}}}\n\n"
        return f"\n\n::: {{#{label} .table-float}}\n\n::: {{.table-caption}}\n{title}\n:::\n\n{image}\n\n:::\n\n"
    if mime == "text/markdown":
        return f"\n\n::: {{#{label} .table-float}}\n\n{data}\n\n: {title}\n\n:::\n\n"
    fence = "`" * max(3, max((len(s) for s in re.findall(r"`+", data)), default=0) + 1)
    return (f"\n\n::: {{#{label} .table-float}}\n\n::: {{.table-caption}}\n{title}\n:::\n\n"
            f"{fence}{{=html}}\n{data.strip()}\n{fence}\n\n:::\n\n")


def _callout(m: re.Match) -> str:
    """``::: {.callout-note title="T"}`` -> a plain div with classes callout, callout-note and a bold title line."""
    fence, attrs, kind = m.group(1), m.group(2), m.group(3)
    title = re.search(r'title="([^"]*)"', attrs)
    attrs = re.sub(r'\s*title="[^"]*"', "", attrs)
    heading = title.group(1) if title else kind.capitalize()
    return f"{fence} {{.callout {attrs.strip()}}}\n**{heading}**\n"  # the title: its own paragraph


def preprocess(text: str, values: dict, resolved: dict, assets: Path, name: str = "document") -> tuple[dict, str]:
    """Turn a .qmd into pandoc markdown: (front matter, markdown).

    ``values``: the variables; ``resolved``: :func:`check_embeds`'s {(nb, label): (cell, output)};
    ``assets``: folder for the embedded images. Raises ReportError for an unknown variable or reference.
    """
    meta, raw_front, body = _front_matter(text)
    body = re.sub(r"<!--.*?-->", "", body, flags=re.S)  # comments may mention shortcodes
    numbers = number_labels(body)

    def var(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2).strip()
        if kind == "var":
            if arg not in values:
                raise ReportError(f"{name} uses variable '{arg}', which pruning/report.py does not compute")
            return str(values[arg])
        if kind == "meta":
            value = _meta(meta, arg)
            return "" if value is None else str(value)
        if kind == "embed":
            return m.group(0)  # handled below
        return ""  # other Quarto shortcodes (pagebreak, video, ...) have no offline equivalent: dropped

    # a value that starts a line could start a list or heading ("2) ...", "+ ..."): continue the line before it,
    # as Quarto, which substitutes into parsed text, would
    # (not after a hard line break: a backslash or two spaces)
    body = re.sub(r"(?<=[^\s\\])[ \t]?\n[ \t]*(?=\{\{<\s*(?:var|meta)\b)", " ", body)
    body = SHORTCODE.sub(var, body)

    # figures and tables written in the text: ![cap](img){#fig-x} and a table caption ": cap {#tbl-x}"
    body = re.sub(r"!\[(.*?)\]\(([^)\s]+)\)\{#(fig-[\w-]+)([^}]*)\}",
                  lambda m: f"![Figure {numbers[m.group(3)]}: {m.group(1)}]({m.group(2)}){{#{m.group(3)}{m.group(4)}}}",
                  body)
    body = re.sub(r"^(?:Table)?:[ \t]+(.*?)[ \t]*\{#(tbl-[\w-]+)[^}]*\}[ \t]*$",
                  lambda m: f": []{{#{m.group(2)}}}Table {numbers[m.group(2)]}: {m.group(1)}", body, flags=re.M)

    def embed(m: re.Match) -> str:
        nb, label = m.group(1), m.group(2)
        if (nb, label) not in resolved:
            raise ReportError(f"{name} embeds {nb}#{label}, which was not resolved")
        cell, output = resolved[nb, label]
        return _embed_block(label, numbers[label], cell, output, assets)

    body = EMBED.sub(embed, body)

    def xref(m: re.Match) -> str:
        bare = m.group(1) if m.group(2) else m.group(3)
        label = m.group(2) or m.group(4)
        if label not in numbers:
            raise ReportError(f"{name} refers to @{label}, but no figure or table has that label")
        text = str(numbers[label]) if bare else f"{KIND[label.split('-', 1)[0]]} {numbers[label]}"
        return f"[{text}](#{label})"

    body = XREF.sub(xref, body)
    body = CALLOUT.sub(_callout, body)
    return meta, raw_front + body


def pandoc_path() -> str:
    try:
        import pypandoc
    except ImportError:
        raise ReportError("the offline renderer needs pandoc: `pip install pypandoc-binary` "
                          "(it is in requirements.txt)") from None
    try:
        return pypandoc.get_pandoc_path()
    except OSError:
        raise ReportError("pypandoc finds no pandoc; `pip install --force-reinstall pypandoc-binary`") from None


def pandoc_version() -> str:
    try:
        out = subprocess.run([pandoc_path(), "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.split("\n", 1)[0].strip() or "pandoc"
    except (OSError, subprocess.SubprocessError):
        return "pandoc"


def render_pandoc(staged: Path, values: dict, resolved: dict, quiet: bool = False) -> None:
    """The offline renderer: preprocess each document of the staged folder, then pandoc -> self-contained HTML."""
    pandoc = pandoc_path()
    work = staged / "_offline"
    assets = work / "embeds"
    assets.mkdir(parents=True, exist_ok=True)
    for doc in DOCUMENTS:
        meta, markdown = preprocess((staged / doc).read_text(encoding="utf-8"), values, resolved, assets, doc)
        source = work / (Path(doc).stem + ".md")
        source.write_text(markdown, encoding="utf-8")
        options = _meta(meta, "format.html") or {}
        css = options.get("css") or []
        args = [pandoc, str(source.relative_to(staged)), "--from=markdown", "--to=html5", "--standalone",
                "--embed-resources", "--wrap=none", f"--resource-path=.{os.pathsep}{work.name}", "--variable=document-css",
                f"--output={Path(doc).stem}.html"]
        args += [f"--css={c}" for c in ([css] if isinstance(css, str) else css)]
        if options.get("toc"):
            args += ["--toc", f"--toc-depth={int(options.get('toc-depth', 3))}"]
        if options.get("number-sections"):
            args.append("--number-sections")
        proc = subprocess.run(args, cwd=staged, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ReportError(f"pandoc could not render {doc} ({last}); see {source}")
        if not quiet:
            for line in proc.stderr.strip().splitlines():
                print(f"pandoc ({doc}): {line}", file=sys.stderr)


# ============================================================================= render


def render(results, renderer: str = "auto", quiet: bool = False, build: Path | None = None) -> dict:
    """Render the paper and the poster of ``results``; returns {"paper": path, "poster": path, "renderer": name}.

    ``build`` (default ``build/<results name>``) must hold the executed notebooks in ``notebooks/``;
    the report is staged and rendered in ``build/report/``. ``renderer``: "quarto", "pandoc" (offline)
    or "auto" (Quarto when it is on PATH).
    """
    if renderer not in RENDERERS:
        raise ReportError(f"unknown renderer '{renderer}' (choose one of {', '.join(RENDERERS)})")
    build = Path(build) if build is not None else build_folder(results)
    notebooks = build / "notebooks"
    if not notebooks.is_dir():
        raise ReportError(f"no executed notebooks in {notebooks}; {_run_notebooks_hint(results)}")
    documents = [SOURCE / d for d in DOCUMENTS]
    resolved = check_embeds(documents, notebooks, results)
    values = variables(results)
    staged = stage(build, values)
    if renderer == "auto":
        renderer = "quarto" if shutil.which("quarto") else "pandoc"
    if not quiet:
        print(f"rendering {', '.join(DOCUMENTS)} in {staged} with {renderer}", file=sys.stderr)
    if renderer == "quarto":
        render_quarto(staged, quiet)
        used = "quarto"
    else:
        render_pandoc(staged, values, resolved, quiet)
        used = f"offline ({pandoc_version()})"
    out = {"paper": staged / "paper.html", "poster": staged / "poster.html", "renderer": used}
    for key in ("paper", "poster"):
        if not out[key].exists():
            raise ReportError(f"{used} wrote no {out[key]}; see the messages above")
    print(f"paper:    {out['paper']}\nposter:   {out['poster']}\nrenderer: {used}")
    return out
