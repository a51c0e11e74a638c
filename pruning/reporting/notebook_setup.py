"""What every figure notebook calls in its first cell: :func:`setup` (style, results table, parameters checked).

``from pruning.reporting.notebook_setup import setup`` is the notebooks' one import of this module; the
executor that runs them with papermill is :mod:`pruning.reporting.notebooks`.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import analysis
from ..core import paths
from . import figure_data, plots

NOTEBOOKS_DIR = paths.NOTEBOOKS


def resolve_results(results) -> Path:
    """The results folder a notebook parameter names, as an absolute path.

    An absolute path is taken as is. A relative one is looked up from the working directory, then from
    ``notebooks/`` (the parameter's default ``../results/smoke`` is relative to the notebooks), so a
    notebook finds its results whether it runs from the repository root, ``notebooks/`` or elsewhere.
    A folder found nowhere is returned relative to the working directory (the error then names it).
    """
    path = Path(results).expanduser()
    if path.is_absolute():
        return path
    for base in (Path.cwd(), NOTEBOOKS_DIR):
        if (base / path).is_dir():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


def setup(results, iteration=None, reinit="rewind", techniques=None, **checked):
    """The first cell of every figure notebook: plotting style, the results table, parameters checked once.

    Loads ``results`` (:func:`resolve_results`), checks every parameter the notebook was given
    (``iteration``, ``reinit``, ``techniques`` and any of ``seed``/``layer`` in ``checked``) with one
    :func:`pruning.analysis.check`, so a bad value stops here with one line. Returns a namespace with
    ``table``, ``iteration`` (None: the last iteration every run reached), ``selected`` (the techniques
    shown, in registry order when None) and ``n_seeds``.
    """
    try:  # inside a kernel: inline SVG figures (no date written: the same data draw the same bytes), each with its
        # plotted numbers as CSV in the same output
        ip = get_ipython()  # noqa: F821  (defined by IPython)
        ip.run_line_magic("matplotlib", "inline")
        ip.run_line_magic("config", "InlineBackend.figure_formats = ['svg']")
        ip.run_line_magic("config", "InlineBackend.print_figure_kwargs = "
                                    "{'bbox_inches': 'tight', 'metadata': {'Date': None}}")
        figure_data.register(ip)
    except NameError:
        pass
    plots.use_style()
    table = analysis.load(resolve_results(results))
    if iteration is None:
        analysis.check(table, reinit=reinit, techniques=techniques, **checked)
        iteration = analysis.report_iteration(table)
    analysis.check(table, reinit=reinit, techniques=techniques, iteration=iteration, **checked)
    selected = analysis.technique_order(table) if techniques is None else [str(t) for t in np.atleast_1d(techniques)]
    return SimpleNamespace(table=table, iteration=int(iteration), selected=selected,
                           n_seeds=int(table["seed"].nunique()), lacks=lambda **needs: lacks(table, **needs))


def lacks(table, techniques=(), reinits=(), n_techniques: int = 0) -> str | None:
    """Why ``table`` cannot draw a figure that needs ``techniques``, ``reinits`` and at least ``n_techniques``
    techniques, in one sentence that names what the set has; None when it can.

    For figures whose needs come from the notebook, not from a parameter the user gave: a results set with one
    technique or one reinitialisation mode (the released L1 US recipe) then shows :func:`plots.not_drawn` in
    their place. A parameter the user gave is checked by :func:`setup` and stops with a ParameterError.
    """
    have_t = analysis.technique_order(table)
    have_r = sorted(table["reinit"].unique())
    missing_t = [t for t in techniques if t not in have_t]
    missing_r = [r for r in reinits if r not in have_r]
    if not (missing_t or missing_r or len(have_t) < n_techniques):
        return None
    need = [", ".join(plots.label(t) for t in missing_t)] if missing_t else []
    need += [" and ".join(plots.REINIT_LABELS.get(r, r) for r in missing_r)] if missing_r else []
    need += [f"at least {n_techniques} techniques"] if len(have_t) < n_techniques else []
    return (f"this figure needs {' and '.join(need)}; this results set has "
            f"{', '.join(plots.label(t) for t in have_t)} with {' and '.join(plots.REINIT_LABELS.get(r, r) for r in have_r)}.")
