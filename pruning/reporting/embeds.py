"""The labelled outputs of executed notebooks, which the report embeds (``{{< embed nb.ipynb#label >}}``).

A code cell carries Quarto options in leading ``#| key: value`` lines; its ``label`` (``fig-x`` or
``tbl-x``) names it, its ``fig-cap``/``tbl-cap`` captions it. Used by the staging in
:mod:`pruning.reporting.report` (every embed must resolve before rendering) and by the offline renderer.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ..core.errors import ReportError

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


def _first(cell: dict, mime: str) -> str | None:
    """The first of the cell's outputs under ``mime``, or None."""
    for output in cell.get("outputs", []):
        if _data(output, mime):
            return _data(output, mime)
    return None


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


def not_drawn(cell: dict) -> str | None:
    """Why a figure cell's figure is not drawn for these results (``plots.not_drawn``), or None."""
    from .figure_data import NOT_DRAWN_MIME

    return _first(cell, NOT_DRAWN_MIME)


def caption(cell: dict, kind: str = "fig") -> str:
    """The cell's ``fig-cap`` (or ``tbl-cap``); a figure that is not drawn for these results says so first."""
    text = cell_options(cell).get(f"{kind}-cap") or ""
    if kind == "fig" and not_drawn(cell):
        return "Not drawn for these results (the reason is in its place). Where drawn: " + text
    return text


DATA_FOLDER = "figures"  # beside the pages: the plotted numbers of each figure, <label>.csv


def data_file(label: str) -> str:
    """Where the page's folder keeps the plotted numbers of figure ``label``."""
    return f"{DATA_FOLDER}/{label}.csv"


def cell_data(cell: dict) -> str | None:
    """The plotted numbers a figure cell's output carries (``figure_data``, mime text/csv), or None."""
    return _first(cell, "text/csv")


def write_data(cells: dict[str, dict], folder: Path) -> dict[str, Path]:
    """Write :func:`data_file` of every figure in ``cells`` ({label: cell}) that carries its numbers under ``folder``
    (the folder is emptied first); returns {name relative to ``folder``: path}."""
    target = Path(folder) / DATA_FOLDER
    for old in target.glob("*.csv") if target.is_dir() else ():
        old.unlink()
    written = {}
    for label, cell in cells.items():
        data = cell_data(cell) if label.startswith("fig-") else None
        if data:
            path = Path(folder) / data_file(label)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data, encoding="utf-8")
            written[data_file(label)] = path
    return written


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
                                      f"{run_notebooks_hint(results)}")
                try:
                    cache[path] = labelled_cells(path)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ReportError(f"{path} is damaged (not a notebook); {run_notebooks_hint(results)}") from None
            cell = cache[path].get(label)
            if cell is None:
                raise ReportError(f"{Path(doc).name} embeds {nb}#{label}, but {path} has no cell labelled {label}; "
                                  f"{run_notebooks_hint(results)}")
            output = cell_output(cell, label)
            if output is None:
                raise ReportError(f"{Path(doc).name} embeds {nb}#{label}, but that cell of {path} has no output; "
                                  f"{run_notebooks_hint(results)}")
            found[nb, label] = (cell, output)
    return found



def run_notebooks_hint(results) -> str:
    return f"run `python -m pruning notebooks {results}` first"
