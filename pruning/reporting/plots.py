"""Plotting helpers shared by the figure notebooks: one colour per technique, one style, a few axes.

Every figure of the report goes through here so that a technique has the same colour, marker and
label everywhere. The colours are colour-blind friendly (Okabe-Ito based) and grouped by family:
structured techniques are blues, unstructured ones orange/vermillion, hybrid reddish purple and
fc-only bluish green. Techniques of one family are told apart by marker and line style as well as
colour (the four structured norms: circle solid, square dashed, triangle dotted, down-triangle
dash-dot). Labels are the poster's names (:func:`pruning.nets.techniques.label`).

Figures are drawn at the size they are shown: :data:`WIDTH` inches at :data:`DPI` dots per inch is
560 px, the width of a poster column at 1920 px, with text of at least :data:`MIN_FONT_PT` points
(:data:`MIN_TEXT_PX` = 14.6 px) so that a figure shown at its natural size has text at least 14 px high.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import patches, ticker

from ..nets import techniques as _techniques
from . import figure_data

# ----------------------------------------------------------------------------- identity of a technique

COLORS: dict[str, str] = {
    # structured: cool hues (navy, blue, sky, purple, teal) far apart in colour, each with its own marker
    "l1_s": "#0B2A6F",
    "l2_s": "#0072B2",
    "linf_s": "#56B4E9",
    "lneginf_s": "#6A3D9A",
    "random_s": "#2A9D8F",
    # unstructured: vermillion / orange
    "l1_us": "#D55E00",
    "random_us": "#E69F00",
    # distinct
    "hybrid": "#CC79A7",
    "fc_only_l1_us": "#009E73",
}
MARKERS: dict[str, str] = {
    "l1_s": "o", "l2_s": "s", "linf_s": "^", "lneginf_s": "v", "random_s": "D",
    "l1_us": "o", "random_us": "D", "hybrid": "P", "fc_only_l1_us": "X",
}
LINESTYLES: dict[str, object] = {
    "l1_s": "-", "l2_s": "--", "linf_s": ":", "lneginf_s": "-.", "random_s": (0, (5, 1, 1, 1, 1, 1)),
    "l1_us": "-", "random_us": "--", "hybrid": "-", "fc_only_l1_us": "-.",
}
_FALLBACK = ["#444444", "#999933", "#882255", "#44AA99", "#AA4499"]

DPI = 100                      # PNG pixels per inch
WIDTH = 5.6                    # inches: 560 px, one poster column at 1920 px
FIGSIZE = (WIDTH, 3.6)
MIN_FONT_PT = 10.5             # the smallest text of any figure (tick labels, cell annotations)
MIN_TEXT_PX = MIN_FONT_PT * DPI / 72  # 14.6 px at natural size
REINIT_LABELS = {"rewind": "rewind", "finetune": "fine-tune", "late_rewind": "late rewind",
                 "random_reinit": "random reinit"}


def label(name: str) -> str:
    """The poster's name of a technique (e.g. "L1 US")."""
    return _techniques.label(name)


def color(name: str) -> str:
    if name in COLORS:
        return COLORS[name]
    return _FALLBACK[sum(map(ord, name)) % len(_FALLBACK)]


def style(name: str) -> dict:
    """Keyword arguments for ``ax.plot``: colour, marker, line style and label of a technique."""
    random = name in _techniques.TECHNIQUES and _techniques.TECHNIQUES[name].random
    return {"color": color(name), "marker": MARKERS.get(name, "o"),
            "linestyle": LINESTYLES.get(name, "--" if random else "-"), "label": label(name)}


def use_style() -> None:
    """Figures drawn at the size they are shown: 5.6 in (560 px) wide at 100 dpi, no text under 10.5 pt (14.6 px)."""
    mpl.rcParams.update({
        "figure.figsize": FIGSIZE, "figure.dpi": DPI, "savefig.dpi": DPI,
        "font.size": 11.5, "axes.titlesize": 12, "axes.labelsize": 11.5, "legend.fontsize": MIN_FONT_PT,
        "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "figure.titlesize": 12.5,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.linewidth": 1.6, "lines.markersize": 4.5, "legend.frameon": False,
        "image.cmap": "viridis", "svg.hashsalt": "pruning",
    })


# ----------------------------------------------------------------------------- accuracy vs sparsity axes

def remaining_percent(sparsity) -> np.ndarray:
    """% of prunable weights remaining, from sparsity as a fraction removed (0..1)."""
    return 100.0 * (1.0 - np.asarray(sparsity, dtype=float))


def remaining_axis(ax, remaining, fraction: float = 0.2, max_ticks: int = 8) -> None:
    """x = % weights remaining on a log scale, decreasing left to right, ticked at the pruning ladder.

    ``remaining`` are the plotted x values (in %); ticks sit at 100 * (1 - fraction)^k.
    """
    remaining = np.asarray(remaining, dtype=float)
    low = float(np.nanmin(remaining)) if remaining.size else 1.0
    ax.set_xscale("log")
    ticks = [100.0 * (1 - fraction) ** k for k in range(200) if 100.0 * (1 - fraction) ** k >= low * 0.98]
    step = max(1, math.ceil(len(ticks) / max_ticks))
    ticks = ticks[::step]
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.set_xlim(104, low * 0.93)  # decreasing left to right
    ax.set_xlabel("weights left (%, log scale)")


def number(value, digits: int = 2) -> str:
    """``value`` rounded half up to ``digits`` decimals, after a first rounding to 6 decimals.

    The first rounding makes a number computed two ways (94.82499999 from the table, 94.82500001 from
    the logits) print the same everywhere; NaN prints as "n/a".
    """
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    q = Decimal(repr(round(float(value), 6))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{abs(q) if q == 0 else q:.{digits}f}"


def mean_std(mean, std, digits: int = 2) -> str:
    """ "94.83 ± 0.16" (std NaN, e.g. a single seed, prints as 0)."""
    std = 0.0 if std is None or not math.isfinite(float(std)) else std
    return f"{number(mean, digits)} ± {number(std, digits)}"


def percent(value: float) -> str:
    """A short tick label for a percentage: 100, 64, 51, 8.6, 1.2."""
    return f"{value:.0f}" if value >= 9.95 else f"{value:.1f}"


def sparsity_axis(ax) -> None:
    """x = sparsity in % of prunable weights removed, linear."""
    ax.set_xlim(-2, 102)
    ax.set_xlabel("sparsity (% of weights removed)")


def curve(ax, x, mean, std=None, technique: str = "", band: bool = True, **kwargs):
    """One technique's mean line with a ±std band (std over seeds)."""
    kw = {**style(technique), **kwargs}
    x, mean = np.asarray(x, dtype=float), np.asarray(mean, dtype=float)
    line, = ax.plot(x, mean, **kw)
    if band and std is not None:
        std = np.nan_to_num(np.asarray(std, dtype=float))
        ax.fill_between(x, mean - std, mean + std, color=kw["color"], alpha=0.15, linewidth=0)
    return line


def not_drawn(reason: str, height: float = 1.4):
    """Show a figure that says, in place of the plot, why this results set cannot draw it (``reason``: one
    sentence naming what the figure needs and what the set has). It plots no numbers, so it has no CSV."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, height), layout="constrained")
    ax.set_axis_off()
    ax.text(0.5, 0.5, textwrap.fill(f"Not drawn: {reason}", 64), ha="center", va="center", transform=ax.transAxes)
    setattr(fig, figure_data.NOT_DRAWN_ATTR, reason)  # the pages' captions say that it is not drawn
    plt.show()


def legend_below(fig, ax=None, ncol: int = 5, **kwargs):
    """One figure-level legend under the axes (figures made with ``layout="constrained"``)."""
    ax = ax if ax is not None else fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    return fig.legend(handles, labels, loc="outside lower center", ncol=ncol, **kwargs)


# ----------------------------------------------------------------------------- heatmaps

def heatmap(ax, matrix, fmt="{:.2f}", cmap: str = "viridis", vmin=None, vmax=None, cbar_label: str = "",
            labels: bool = True):
    """An annotated heatmap of a square or rectangular DataFrame (index = rows, columns = columns).

    ``fmt``: a format string or a function of the value (e.g. :func:`number`) for the cell text.

    Row/column names that are technique keys are shown with their poster labels. Cell text is
    black on light cells and white on dark ones. Returns the image (for a shared colour bar).
    """
    values = np.asarray(matrix, dtype=float)
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    rows = [label(str(r)) if labels else str(r) for r in getattr(matrix, "index", range(values.shape[0]))]
    cols = [label(str(c)) if labels else str(c) for c in getattr(matrix, "columns", range(values.shape[1]))]
    ax.set_xticks(range(values.shape[1]), cols, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(values.shape[0]), rows)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    norm = im.norm
    cm = im.get_cmap()
    size = MIN_FONT_PT
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cm(norm(v))
            text_color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, fmt(v) if callable(fmt) else fmt.format(v), ha="center", va="center", fontsize=size, color=text_color)
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    if cbar_label:
        cbar.set_label(cbar_label)
    return im


# ----------------------------------------------------------------------------- kernel grids

KERNEL_CMAP = "RdBu_r"
PRUNED_COLOR = "#FFD21F"   # a pruned weight: saturated yellow, which the red-white-blue weight scale never takes
EMPTY_COLOR = "#000000"    # outline of a kernel whose every weight is pruned


def _to_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def kernel_mosaic(kernels, gap: int = 1) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
    """Lay out conv kernels {iteration: (out, in, k, k)} as one image.

    One row of kernels per iteration; along a row, the kernels of filter 0 (all its input channels),
    then filter 1, and so on. Gaps between kernels are NaN (drawn as background). Returns the image
    and, for every kernel, (row pixel, column pixel, emptied?) of its top-left corner.
    """
    iterations = list(kernels)
    first = _to_numpy(kernels[iterations[0]])
    out_c, in_c, kh, kw = first.shape
    n_cols = out_c * in_c
    height = len(iterations) * (kh + gap) - gap
    width = n_cols * (kw + gap) - gap + (out_c - 1) * gap  # an extra gap between filters
    image = np.full((height, width), np.nan)
    cells = []
    for r, it in enumerate(iterations):
        w = _to_numpy(kernels[it])
        y = r * (kh + gap)
        for o in range(out_c):
            for i in range(in_c):
                x = (o * in_c + i) * (kw + gap) + o * gap
                image[y:y + kh, x:x + kw] = w[o, i]
                cells.append((y, x, bool(np.all(w[o, i] == 0))))
    return image, cells


def kernel_grid(ax, kernels, vmax: float | None = None, title: str = "", row_labels=None):
    """Draw conv kernels across iterations (rows) with a diverging colormap centred at 0.

    A kept weight is coloured red (positive) to blue (negative) through white (0); a pruned weight
    (exactly 0 in the stored weights) is drawn in :data:`PRUNED_COLOR`, a yellow the weight scale
    never takes, so a pruned cell cannot be mistaken for a small weight; a kernel whose weights were
    all pruned is also outlined in black. Returns the weight image (for a shared colour bar).
    """
    image, cells = kernel_mosaic(kernels)
    first = _to_numpy(next(iter(kernels.values())))
    out_c, in_c, kh, kw = first.shape
    if vmax is None:
        vmax = float(np.nanmax(np.abs(image))) or 1.0
    cmap = mpl.colormaps[KERNEL_CMAP].copy()
    cmap.set_bad("white", alpha=0)
    pruned = np.where(image == 0, 1.0, np.nan)
    kept = np.where(image == 0, np.nan, image)
    im = ax.imshow(kept, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    yellow = mpl.colors.ListedColormap([PRUNED_COLOR])
    yellow.set_bad("white", alpha=0)
    ax.imshow(pruned, cmap=yellow, vmin=0, vmax=1, interpolation="nearest")
    for y, x, empty in cells:
        if empty:
            ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), kw, kh, fill=False, edgecolor=EMPTY_COLOR,
                                           linewidth=1.0, linestyle="-"))
    iterations = list(kernels)
    ax.set_yticks([r * (kh + 1) + (kh - 1) / 2 for r in range(len(iterations))],
                  row_labels if row_labels is not None else [str(i) for i in iterations])
    starts = [o * in_c * (kw + 1) + o for o in range(out_c)]
    ax.set_xticks([x0 + (in_c * (kw + 1) - 2) / 2 for x0 in starts], [str(o) for o in range(out_c)])
    ax.set_xlabel("filter" if in_c == 1 else "filter (its input-channel kernels side by side)")
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return im


def empty_marker_handle():
    """Legend entries: a pruned weight, and the outline of a fully pruned kernel."""
    return [patches.Patch(facecolor=PRUNED_COLOR, edgecolor="none", label="pruned weight"),
            patches.Patch(facecolor=PRUNED_COLOR, edgecolor=EMPTY_COLOR, linewidth=1.0, label="kernel fully pruned")]


def html_table(df, wrap_over: int = 24):
    """A table for the report: HTML with no index column (no stray index header).

    Cells stay on one line (numbers never wrap) except in columns whose longest value is over
    ``wrap_over`` characters (member lists, claims), which wrap and get the class ``wrap``.
    """
    from html import escape

    from IPython.display import HTML

    wrap = [bool(len(df)) and int(df[c].astype(str).str.len().max()) > wrap_over for c in df.columns]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f'<td class="{"wrap" if w else "nowrap"}">{escape(str(v))}</td>'
                                    for v, w in zip(row, wrap)) + "</tr>" for row in df.itertuples(index=False))
    return HTML(f'<table class="dataframe report-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')


def findings_table(found: list) -> pd.DataFrame:
    """One row per finding: the poster's claim, our numbers (with condition and uncertainty), the verdict."""
    return pd.DataFrame({"finding": [f"{i + 1}" for i in range(len(found))],
                         "the poster's claim": [f.claim for f in found],
                         "our numbers (condition: value, mean ± std over seeds, 95% CI, n)":
                             [f.numbers or f.note for f in found],
                         "verdict": [f.verdict for f in found]})
