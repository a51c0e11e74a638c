"""Render the paper and the poster of a results folder: stage the sources, then choose a renderer.

The text is ``report/paper.qmd`` and ``report/poster.qmd`` (Quarto markdown). Their figures and tables
are the stored outputs of the executed notebooks (``{{< embed notebooks/accuracy.ipynb#fig-accuracy >}}``,
read by :mod:`pruning.reporting.embeds`) and every number they quote is a variable computed from the results by
:mod:`pruning.reporting.quoted` (``{{< var best_acc >}}``). :func:`render` stages the sources into
``build/<results>/report/``, beside the executed notebooks of ``python -m pruning notebooks RESULTS``
(``build/<results>/notebooks``, linked there as ``notebooks/``), writes ``_variables.yml`` and renders:

- with Quarto when ``quarto`` is on PATH (``quarto render`` of the staged project; it embeds the stored
  outputs and executes nothing). ``pip install -e .[quarto]`` installs it (the quarto-cli wheel) where
  the internet is reachable;
- otherwise offline with pandoc 3 from pypandoc-binary (:mod:`pruning.reporting.render_offline`, the subset of
  Quarto the sources use).

Both write ``paper.html`` and ``poster.html`` into the staged folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import companions, replicates
from ..core import paths
from . import quoted
from ..analysis import ParameterError
from .embeds import DATA_FOLDER, check_embeds, run_notebooks_hint, write_data
from ..core.errors import ReportError
from .render_offline import _front_matter, pandoc_version, preprocess, render_pandoc  # noqa: F401 (re-exported)

SOURCE = paths.REPORT
DOCUMENTS = ("paper.qmd", "poster.qmd")
RENDERERS = ("auto", "quarto", "pandoc")


def build_folder(results) -> Path:
    """``build/<results folder name>``: the executed notebooks (``notebooks/``) and the report (``report/``)."""
    return paths.build_folder(results)


def variables(results) -> dict[str, str]:
    """Every value the report quotes (:func:`pruning.reporting.quoted.variables`); a ReportError when it cannot."""
    try:
        return quoted.variables(results)
    except ParameterError as exc:
        raise ReportError(str(exc)) from None


# ============================================================================= staging

def stage(build: Path, values: dict, found: dict | None = None, sections: dict[str, str] | None = None) -> Path:
    """Copy report/ into ``build/report/``, link ``notebooks`` -> ``../notebooks``, write ``_variables.yml``, and
    put the companions' section (``companions.section`` of ``found``) where the documents hold its marker,
    and each of ``sections`` ({marker: markdown}, e.g. the replicates' paragraph) where they hold its marker."""
    staged = build / "report"
    staged.mkdir(parents=True, exist_ok=True)
    for old in ("paper.html", "poster.html", "_offline", DATA_FOLDER):
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
    for doc in DOCUMENTS:
        path = staged / doc
        text = path.read_text(encoding="utf-8")
        if companions.MARKER in text:
            text = text.replace(companions.MARKER, companions.section(found or {}, doc.startswith("poster")))
        text = _balance(text, bool(found))
        text = _several_techniques(text, values.get("techniques_n") != "1")
        for marker, section in (sections or {}).items():
            text = text.replace(marker, section)
        path.write_text(text, encoding="utf-8")
    (staged / "_variables.yml").write_text(
        "# Written by pruning/report.py from the results; every number the report quotes.\n"
        + yaml.safe_dump(values, sort_keys=True, allow_unicode=True, width=1000), encoding="utf-8")
    return staged


SEVERAL = ("<!-- several-techniques:start -->", "<!-- several-techniques:end -->")
ONE = ("<!-- one-technique:start -->", "<!-- one-technique:end -->")


def _several_techniques(text: str, several: bool) -> str:
    """Sentences between :data:`SEVERAL`'s markers compare techniques: a set of one technique (the released L1 US
    recipe) drops them, since their figures say in one line what they need, and keeps those between :data:`ONE`'s
    markers instead; other sets do the opposite. The markers themselves are removed."""
    for (start, end), keep in ((SEVERAL, several), (ONE, not several)):
        out = []
        while start in text:
            before, rest = text.split(start, 1)
            block, text = rest.split(end, 1)
            out.append(before + (block if keep else ""))
        text = "".join(out) + text
    return text


EXPLAIN = ("<!-- explain:start -->", "<!-- explain:end -->", "<!-- explain:first-column -->")


def _balance(text: str, companions_found: bool) -> str:
    """The poster's explanations block sits under the third column's findings, unless companion figures (AlexNet,
    VGG11) make that column the tallest: then it moves to the end of the first, so the columns stay within 75%."""
    start, end, first = EXPLAIN
    if start not in text or end not in text or first not in text:
        return text
    before, rest = text.split(start, 1)
    block, after = rest.split(end, 1)
    if companions_found:
        return (before + after).replace(first, block.strip("\n") + "\n")
    return (before + block + after).replace(first, "")


# ============================================================================= renderer 1: Quarto


def render_quarto(staged: Path, quiet: bool = False) -> None:
    """``quarto render`` in the staged project (the documents and options are in its ``_quarto.yml``)."""
    quarto = shutil.which("quarto")
    if quarto is None:
        raise ReportError("quarto is not on PATH; `pip install -e .[quarto]` (or Quarto >= 1.4 from https://quarto.org) or use --renderer pandoc")
    env = {**os.environ, "QUARTO_PYTHON": sys.executable}
    log = staged / "quarto.log"
    proc = subprocess.run([quarto, "render", "--no-execute"] + (["--quiet"] if quiet else []), cwd=staged, env=env,
                          capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ReportError(f"quarto render failed ({last}); see {log}, or use --renderer pandoc")




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
        raise ReportError(f"no executed notebooks in {notebooks}; {run_notebooks_hint(results)}")
    values = variables(results)
    staged = stage(build, values, companions.find(results), replicates.sections(results))
    resolved = check_embeds([staged / d for d in DOCUMENTS], notebooks, results)
    if renderer == "auto":
        renderer = "quarto" if shutil.which("quarto") else "pandoc"
    if not quiet:
        print(f"rendering {', '.join(DOCUMENTS)} in {staged} with {renderer}", file=sys.stderr)
    if renderer == "quarto":
        render_quarto(staged, quiet)
        used = "quarto"
    else:
        render_pandoc(staged, values, resolved, DOCUMENTS, quiet)
        used = f"offline ({pandoc_version()})"
    out = {"paper": staged / "paper.html", "poster": staged / "poster.html", "renderer": used,
           "data": write_data({label: cell for (_, label), (cell, _) in resolved.items()}, staged)}
    for key in ("paper", "poster"):
        if not out[key].exists():
            raise ReportError(f"{used} wrote no {out[key]}; see the messages above")
    print(f"paper:    {out['paper']}\nposter:   {out['poster']}\nrenderer: {used}")
    return out
