"""``figure_data``: the numbers a figure plots, read back from the drawn figure, checked against what was drawn."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pruning.reporting.figure_data import figure_data, to_csv  # noqa: E402


def test_lines_bands_and_reference_lines_come_back_with_their_panel_axes_and_series():
    fig, (left, right) = plt.subplots(1, 2)
    left.plot([1, 2, 4], [10.0, 20.0, 40.0], label="L1 US")
    left.fill_between([1, 2, 4], [9.0, 18.0, 35.0], [11.0, 22.0, 45.0], alpha=0.2)
    left.axhline(10.0, label="chance")
    left.set(title="rewind", xlabel="weights left (%)", ylabel="accuracy (%)")
    right.errorbar([0, 1], [5.0, 6.0], yerr=[1.0, 2.0], label="hybrid", fmt="o")
    t = figure_data(fig)
    plt.close(fig)
    line = t[(t.series == "L1 US") & (t.kind == "line")]
    assert line[["x", "y"]].values.tolist() == [[1, 10], [2, 20], [4, 40]]
    assert set(line.panel) == {"rewind"} and set(line.x_axis) == {"weights left (%)"}
    band = t[t.kind == "band"].sort_values("x")
    assert band[["x", "low", "high"]].values.tolist() == [[1, 9, 11], [2, 18, 22], [4, 35, 45]]
    ref = t[t.series == "chance"]
    assert ref.kind.tolist() == ["reference line"] and ref.y.tolist() == [10.0] and ref.x.isna().all()
    bars = t[(t.kind == "error bar")].sort_values("x")
    assert bars[["x", "low", "high"]].values.tolist() == [[0, 4, 6], [1, 4, 8]]
    assert set(t[t.series == "hybrid"].panel) == {"panel 2"}


def test_points_bars_with_named_categories_and_heat_maps():
    fig, (a, b, c) = plt.subplots(1, 3)
    a.scatter([0.5, 0.7], [0.1, 0.3], label="runs")
    b.bar(["L1 US", "L2 S"], [3.0, 7.0], label="kept")
    image = c.imshow(np.array([[1.0, 2.0], [3.0, 4.0]]))
    c.set_xticks([0, 1], ["A", "B"])
    c.set_yticks([0, 1], ["A", "B"])
    fig.colorbar(image, ax=c)
    t = figure_data(fig)
    plt.close(fig)
    assert t[t.kind == "points"][["x", "y"]].values.tolist() == [[0.5, 0.1], [0.7, 0.3]]
    bars = t[t.kind == "bar"]
    assert bars.y.tolist() == [3.0, 7.0] and bars.x_label.tolist() == ["L1 US", "L2 S"]
    heat = t[t.kind == "heat map"]
    assert heat[["y_label", "x_label", "value"]].values.tolist() == [["A", "A", 1], ["A", "B", 2], ["B", "A", 3],
                                                                     ["B", "B", 4]]
    assert len(set(t.panel)) == 3  # the colour bar is no panel


def test_the_csv_reads_back_as_the_table_and_unused_columns_are_left_out():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0.25, 0.5], label="a")
    back = pd.read_csv(io.StringIO(to_csv(fig)))
    plt.close(fig)
    assert list(back.columns) == ["series", "kind", "x", "y"]
    assert back.y.tolist() == [0.25, 0.5]


def test_a_figure_not_drawn_says_why_and_carries_no_numbers(monkeypatch):
    from pruning.reporting import plots

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    plots.not_drawn("this figure needs fine-tune; this results set has L1 US with rewind.")
    fig = shown[0]
    words = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)
    assert words.startswith("Not drawn: this figure needs fine-tune;") and "L1 US with rewind" in words.replace("\n", " ")
    assert to_csv(fig) is None  # no CSV beside it, so no caption link to an empty table


def test_a_kernel_marks_a_figure_not_drawn_and_the_pages_caption_says_so(monkeypatch, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from pruning.reporting import embeds, figure_data, plots
    from pruning.reporting.render_offline import _embed_block

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    plots.not_drawn("this figure needs 2 techniques; this results set has l1_us.")
    drawn, ax = plt.subplots()
    ax.plot([0, 1], [1, 2])
    shell = InteractiveShell.instance()
    figure_data.register(shell)
    absent, _ = shell.display_formatter.format(shown[0])
    present, _ = shell.display_formatter.format(drawn)
    plt.close("all")
    assert absent[figure_data.NOT_DRAWN_MIME] == "this figure needs 2 techniques; this results set has l1_us."
    assert figure_data.MIME not in absent and figure_data.NOT_DRAWN_MIME not in present and figure_data.MIME in present

    cell = {"source": '#| label: fig-x\n#| fig-cap: "Agreement between techniques."\n',
            "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", **absent}}]}
    assert embeds.caption(cell) == ("Not drawn for these results (the reason is in its place). Where drawn: "
                                    "Agreement between techniques.")
    drawn_cell = {**cell, "outputs": [{"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}}]}
    assert embeds.caption(drawn_cell) == "Agreement between techniques."
    block = _embed_block("fig-x", 3, cell, ("image/png", "iVBORw0KGgo="), tmp_path)
    assert "Figure 3: Not drawn for these results" in block and "Agreement between techniques." in block
