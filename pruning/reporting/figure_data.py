"""The numbers a matplotlib figure plots, as one tidy table: what the report publishes beside each figure as CSV.

:func:`figure_data` reads the drawn artists, not the code that drew them, so every figure gets its table with no
per-figure code: lines and scatter points (x, y), shaded bands and error bars (x, low, high), bars (x, y) and
heat maps (x, y, value), each row with its panel, axis titles and series label; categorical ticks are named.
:func:`register` makes a notebook kernel attach that table to each figure it displays (mime ``text/csv``), so
the executed notebook carries the picture and its numbers in one output.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

MIME = "text/csv"
# A figure drawn by ``plots.not_drawn`` carries its reason under this mime, so that a page can say so in its caption.
NOT_DRAWN_MIME = "text/x-pruning-not-drawn"
NOT_DRAWN_ATTR = "_pruning_not_drawn"
COLUMNS = ("panel", "x_axis", "y_axis", "series", "kind", "x", "y", "low", "high", "value", "x_label", "y_label")


def _series(label: str, kind: str, k: int) -> str:
    return f"({kind} {k})" if not label or label.startswith("_") else label


def _tick_names(axis) -> dict[float, str]:
    """{tick position: text} where the ticks are named by words (categories), else {}."""
    names = {float(t.get_position()[axis.axis_name == "y"]): t.get_text() for t in axis.get_ticklabels()}
    words = {pos: text for pos, text in names.items() if text}
    if not words or all(_is_number(t) for t in words.values()):
        return {}
    return words


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-").replace("%", ""))
        return True
    except ValueError:
        return False


def _container_labels(ax) -> dict[int, str]:
    """{id(artist): label} for the parts of error bar containers, whose label sits on the container."""
    labels = {}
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer) and not container.get_label().startswith("_"):
            line, caps, cols = container.lines
            for artist in [line, *caps, *cols]:
                if artist is not None:
                    labels[id(artist)] = container.get_label()
    return labels


def _label(artist, named: dict[int, str]) -> str:
    return named.get(id(artist), artist.get_label())


def _rows_of_lines(ax) -> list[dict]:
    rows, named = [], _container_labels(ax)
    for k, line in enumerate(ax.get_lines()):
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        reference = line.get_transform() != ax.transData  # axhline/axvline: one coordinate in axes fractions
        kind = "reference line" if reference else "line"
        series = _series(_label(line, named), kind, k)
        if reference:
            x, y = x[:1], y[:1]
            if line.get_transform() == ax.get_xaxis_transform():  # axvline: x in data, y in axes fractions
                y = np.array([np.nan])
            else:
                x = np.array([np.nan])
        rows += [{"series": series, "kind": kind, "x": a, "y": b} for a, b in zip(x, y)]
    return rows


def _rows_of_collections(ax) -> list[dict]:
    rows, named = [], _container_labels(ax)
    for k, coll in enumerate(ax.collections):
        label = _label(coll, named)
        if isinstance(coll, PathCollection):  # scatter
            series = _series(label, "points", k)
            rows += [{"series": series, "kind": "points", "x": x, "y": y} for x, y in np.asarray(coll.get_offsets())]
        elif isinstance(coll, LineCollection):  # error bars, vlines/hlines
            series = _series(label, "error bar", k)
            for seg in coll.get_segments():
                seg = np.asarray(seg, dtype=float)
                if len(seg) == 2 and seg[0, 0] == seg[1, 0]:
                    rows.append({"series": series, "kind": "error bar", "x": seg[0, 0],
                                 "low": seg[:, 1].min(), "high": seg[:, 1].max()})
                else:
                    rows += [{"series": series, "kind": "segment", "x": x, "y": y} for x, y in seg]
        elif isinstance(coll, PolyCollection):  # fill_between: the band's edges at each x
            series = _series(label, "band", k)
            for path in coll.get_paths():
                v = np.asarray(path.vertices, dtype=float)
                for x in np.unique(v[:, 0]):
                    ys = v[v[:, 0] == x, 1]
                    rows.append({"series": series, "kind": "band", "x": x, "low": ys.min(), "high": ys.max()})
    return rows


def _rows_of_bars(ax) -> list[dict]:
    rows = []
    for k, bars in enumerate(c for c in ax.containers if isinstance(c, BarContainer)):
        series = _series(bars.get_label(), "bars", k)
        horizontal = getattr(bars, "orientation", "vertical") == "horizontal"
        for rect in bars.patches:
            if horizontal:
                rows.append({"series": series, "kind": "bar", "x": rect.get_x() + rect.get_width(),
                             "y": rect.get_y() + rect.get_height() / 2})
            else:
                rows.append({"series": series, "kind": "bar", "x": rect.get_x() + rect.get_width() / 2,
                             "y": rect.get_y() + rect.get_height()})
    return rows


def _rows_of_images(ax) -> list[dict]:
    rows = []
    for k, image in enumerate(a for a in ax.get_children() if isinstance(a, AxesImage)):
        values = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
        if values.ndim != 2:
            continue
        series = _series(image.get_label(), "image", k)
        r, c = np.indices(values.shape)
        rows += [{"series": series, "kind": "heat map", "x": float(j), "y": float(i), "value": v}
                 for i, j, v in zip(r.ravel(), c.ravel(), values.ravel())]
    return rows


def figure_data(fig: Figure) -> pd.DataFrame:
    """One row per plotted number of ``fig``, columns :data:`COLUMNS` less those no row uses."""
    rows = []
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for i, ax in enumerate(panels):
        found = _rows_of_lines(ax) + _rows_of_collections(ax) + _rows_of_bars(ax) + _rows_of_images(ax)
        x_names, y_names = _tick_names(ax.xaxis), _tick_names(ax.yaxis)
        panel = ax.get_title() or (f"panel {i + 1}" if len(panels) > 1 else "")
        for row in found:
            row.update(panel=panel, x_axis=ax.get_xlabel(), y_axis=ax.get_ylabel())
            if x_names and row.get("x") is not None and not np.isnan(row["x"]):
                row["x_label"] = x_names.get(float(row["x"]), "")
            if y_names and row.get("y") is not None and not np.isnan(row["y"]):
                row["y_label"] = y_names.get(float(row["y"]), "")
        rows += found
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table = table.dropna(axis=1, how="all")
    return table.loc[:, [c for c in table.columns if not (table[c].astype(str) == "").all()]]


def to_csv(fig: Figure) -> str | None:
    """:func:`figure_data` as CSV text; None for a figure that plots no numbers (:func:`plots.not_drawn`)."""
    data = figure_data(fig)
    if data.empty:
        return None
    buffer = io.StringIO()
    data.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


def not_drawn_reason(fig: Figure) -> str | None:
    """The sentence :func:`plots.not_drawn` put in place of a figure, or None for a drawn figure."""
    return getattr(fig, NOT_DRAWN_ATTR, None)


def register(ip) -> None:
    """Make the IPython shell ``ip`` add :func:`to_csv` (mime ``text/csv``) to every figure it displays, and
    :func:`not_drawn_reason` (``NOT_DRAWN_MIME``) to a figure that is not drawn."""
    from IPython.core.formatters import BaseFormatter

    formatters = ip.display_formatter.formatters
    for mime, method, function in ((MIME, "_repr_csv_", to_csv),
                                   (NOT_DRAWN_MIME, "_repr_not_drawn_", not_drawn_reason)):
        if mime not in formatters:
            formatters[mime] = BaseFormatter(parent=ip.display_formatter, format_type=mime, print_method=method)
        formatters[mime].for_type(Figure, function)
