"""The report: embeds resolve, the offline renderer, the variables, the Quarto project.

Most tests use a synthetic results folder whose every number is chosen by hand (see
:func:`make_results`), and notebooks generated here with nbformat in the executed notebooks' format
(a labelled figure cell with a PNG output, a labelled table cell with an HTML output).
"""
from __future__ import annotations

import base64
import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml

from pruning.reporting import report
from pruning import store
from pruning.core.names import NOTEBOOK_LABELS

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "report"
SMOKE_RESULTS = REPO / "results" / "smoke"
SMOKE_NOTEBOOKS = REPO / "build" / "smoke" / "notebooks"

# The labelled cells the figure notebooks promise (the contract with the report: pruning.core.names), by file name.
CONTRACT = {f"{stem}.ipynb": list(labels) for stem, labels in NOTEBOOK_LABELS.items()}


# ----------------------------------------------------------------------------- generated notebooks


def png(width: int, height: int, rgb=(200, 60, 30)) -> bytes:
    """A solid-colour PNG, written by hand (no plotting library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def caption_of(label: str) -> str:
    return f"Caption of {label} [generated]"


def write_notebooks(folder: Path, contract=CONTRACT, figure_size=None) -> Path:
    """Executed-looking notebooks: per label a cell ``#| label`` + ``#| fig-cap``/``tbl-cap`` with one output.

    ``figure_size`` (width, height) in px: the figures' size (default: tiny, distinct per figure).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, labels) in enumerate(contract.items()):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {name}"))
        for j, label in enumerate(labels):
            if label.startswith("fig-"):
                cell = nbformat.v4.new_code_cell(f'#| label: {label}\n#| fig-cap: "{caption_of(label)}"\nplot()')
                w, h = figure_size or (40 + 10 * i + j, 20)
                data = base64.b64encode(png(w, h)).decode()
                numbers = f"series,x,y\n{label},{i},{j}\n"  # what figure_data attaches to a drawn figure
                cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": data, "text/csv": numbers,
                                                                             "text/plain": "<Figure>"})]
            else:
                cell = nbformat.v4.new_code_cell(f'#| label: {label}\n#| tbl-cap: "{caption_of(label)}"\ntable')
                html_table = pd.DataFrame({"technique": ["L1 US", "hybrid"], "accuracy": [f"{label}-a", 81.8]}
                                          ).to_html(classes="dataframe", index=False)
                cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": html_table,
                                                                               "text/plain": "table"},
                                                       execution_count=1)]
            nb.cells.append(cell)
        nbformat.write(nb, folder / name)
    return folder


# ----------------------------------------------------------------------------- a synthetic results folder
#
# 4 techniques x {rewind, finetune} x seeds {0, 1}, iterations 0..2, 10 test images (targets 0..9).
# Two layers: conv1 (2, 1, 2, 2) = entries 0..7 (kernel 0 = 0..3, kernel 1 = 4..7), fc1 (2, 4) = 8..15.
# At iteration 2 (both seeds, both modes unless said):
#   kept entries   l1_us {0-3, 8-11} (finetune: {0, 1, 4, 5, 8-11}), l2_s {0-5, 8, 9}, random_s {4-7, 12-15},
#                  random_us {0, 2, 4, ..., 14}
#   wrong images   l1_us {9}, l2_s {0, 1}, random_s {0-4}, random_us {2-8}  -> 90, 80, 50, 30 % (seed 0 one point
#                  less, seed 1 one point more in the table, so the means are these)
#   trained weight w = 0.3 + iteration * step, step: l1_us 0, l2_s 0.1, random_s 0.5, random_us 1.0
# Iteration 0 and 1: every entry kept, 8 of 10 images right (dense accuracy 80 %).

TECHS = ["l1_us", "l2_s", "random_s", "random_us"]
KEPT = {"l1_us": [0, 1, 2, 3, 8, 9, 10, 11], "l2_s": [0, 1, 2, 3, 4, 5, 8, 9], "random_s": [4, 5, 6, 7, 12, 13, 14, 15],
        "random_us": [0, 2, 4, 6, 8, 10, 12, 14]}
KEPT_FINETUNE_L1 = [0, 1, 4, 5, 8, 9, 10, 11]
WRONG = {"l1_us": {9}, "l2_s": {0, 1}, "random_s": {0, 1, 2, 3, 4}, "random_us": {2, 3, 4, 5, 6, 7, 8}}
STEP = {"l1_us": 0.0, "l2_s": 0.1, "random_s": 0.5, "random_us": 1.0}
ACC = {"l1_us": 90.0, "l2_s": 80.0, "random_s": 50.0, "random_us": 30.0}


def _masks(kept):
    flat = torch.zeros(16, dtype=torch.bool)
    flat[list(kept)] = True
    return {"conv1": flat[:8].reshape(2, 1, 2, 2).clone(), "fc1": flat[8:].reshape(2, 4).clone()}


def make_results(folder: Path) -> Path:
    """Write the synthetic results folder described above with the run store's own file helpers."""
    targets = torch.arange(10)
    runs = []
    for t_index, tech in enumerate(TECHS):
        for reinit in ("rewind", "finetune"):
            for seed in (0, 1):
                h = hashlib.sha256(f"{tech}/{reinit}/{seed}".encode()).hexdigest()[:16]
                runs.append({"hash": h, "technique": tech, "reinit": reinit, "seed": seed})
                run_dir = folder / f"run_{h}"
                store.save_json({"hash": h, "config": {"arch": "lenet", "dataset": "mnist", "technique": tech,
                                                       "reinit": reinit, "seed": seed}}, run_dir / "config.json")
                for it in range(3):
                    if it < 2:
                        kept, wrong, acc = range(16), {0, 1}, 80.0
                    else:
                        kept = KEPT_FINETUNE_L1 if (tech, reinit) == ("l1_us", "finetune") else KEPT[tech]
                        wrong, acc = WRONG[tech], ACC[tech]
                    masks = _masks(kept)
                    preds = targets.clone()
                    for img in wrong:
                        preds[img] = (img + 1 + t_index) % 10
                    value = 0.3 + it * STEP[tech]
                    weights = {"conv1.weight": torch.full((2, 1, 2, 2), value) * masks["conv1"],
                               "conv1.bias": torch.zeros(2),
                               "fc1.weight": torch.full((2, 4), value) * masks["fc1"], "fc1.bias": torch.zeros(2)}
                    rec = {"masks": masks, "weights": weights, "logits": 4.0 * torch.nn.functional.one_hot(preds, 10).float(),
                           "predictions": preds, "targets": targets}
                    pt = run_dir / "trainings" / f"{it:03d}.pt"
                    sha = store.save_tensors(rec, pt)
                    n_kept = len(list(kept))
                    store.save_json({"iteration": it, "sparsity": 1 - n_kept / 16, "weights_remaining": n_kept,
                                     "params_remaining": n_kept + 4, "val_acc": acc, "test_acc": acc + (2 * seed - 1),
                                     "val_loss": 1.0, "test_loss": 1.0, "train_loss": 1.0, "seconds": 0.1,
                                     "remaining": {"conv1": int(masks["conv1"].sum()), "fc1": int(masks["fc1"].sum())},
                                     "sha256": sha}, pt.with_suffix(".json"))
                store.save_json({"trainings": 3}, run_dir / "done.json")
    store.save_json({"name": "synthetic", "config_file": "configs/synthetic.yaml", "runs": runs,
                     "config": {"name": "synthetic", "arch": "lenet", "dataset": "mnist", "techniques": TECHS,
                                "reinit": ["rewind", "finetune"], "seeds": [0, 1], "iterations": 2,
                                "prune_fraction": 0.2, "training": {"epochs": 3, "batch_size": 32, "lr": 0.05}},
                     "config_hash": "0123abcd4567", "code_version": "cafe12345678", "hardware": "a test machine",
                     "started": "2026-01-02T03:04:05+00:00", "updated": "2026-01-03T04:05:06+00:00"},
                    folder / "experiment.json")
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("results") / "synthetic")


@pytest.fixture(scope="module")
def rendered(synthetic, tmp_path_factory):
    """The offline rendering of the synthetic results with generated notebooks."""
    build = tmp_path_factory.mktemp("build")
    write_notebooks(build / "notebooks")
    out = report.render(synthetic, renderer="pandoc", quiet=True, build=build)
    return out, build


# ----------------------------------------------------------------------------- helpers of the tests


def qmd_embeds(path: Path) -> list[tuple[str, str]]:
    """(notebook file name, label) of every embed shortcode in a .qmd, read here independently of report.py."""
    return re.findall(r"\{\{<\s*embed\s+notebooks/([\w.-]+\.ipynb)#([\w-]+)\s*>\}\}", path.read_text())


def float_order(path: Path) -> list[str]:
    """Labels of figures and tables in the order they appear in a .qmd (embeds and `{#tbl-x}` captions)."""
    text = re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.S)
    return [a or b for a, b in re.findall(r"embed\s+notebooks/[\w.-]+#((?:fig|tbl)-[\w-]+)|\{#((?:fig|tbl)-[\w-]+)\}",
                                          text)]


def labelled_outputs(notebook: Path) -> dict[str, list[str]]:
    """{label: output mime types} of a notebook's cells whose source starts with `#| label:`."""
    nb = nbformat.read(notebook, as_version=4)
    out = {}
    for cell in nb.cells:
        m = re.match(r"#\|\s*label:\s*([\w-]+)", cell.source) if cell.cell_type == "code" else None
        if m:
            out[m.group(1)] = [mime for o in cell.get("outputs", []) for mime in o.get("data", {})]
    return out


# ----------------------------------------------------------------------------- embeds


def test_every_embed_is_in_the_notebooks_contract():
    for doc in report.DOCUMENTS:
        pairs = qmd_embeds(REPORT / doc)
        assert pairs, f"{doc} embeds nothing"
        for nb, label in pairs:
            assert label in CONTRACT.get(nb, []), f"{doc} embeds {nb}#{label}, which no notebook promises"
    paper = {label for _, label in qmd_embeds(REPORT / "paper.qmd")}
    assert paper == {label for labels in CONTRACT.values() for label in labels}  # the paper shows every result


def test_every_embed_target_is_a_labelled_cell_of_the_source_notebooks():
    for doc in report.DOCUMENTS:
        for nb, label in qmd_embeds(REPORT / doc):
            assert label in labelled_outputs(REPO / "notebooks" / nb), f"notebooks/{nb} has no cell labelled {label}"


def test_every_embed_target_is_a_labelled_cell_with_output(tmp_path):
    """Against the executed smoke notebooks when the test command produced them, else generated ones."""
    folder = SMOKE_NOTEBOOKS if SMOKE_NOTEBOOKS.is_dir() else write_notebooks(tmp_path / "notebooks")
    for doc in report.DOCUMENTS:
        for nb, label in qmd_embeds(REPORT / doc):
            assert (folder / nb).exists(), f"{folder / nb} is missing"
            outputs = labelled_outputs(folder / nb)
            assert label in outputs, f"{nb} has no cell labelled {label}"
            wanted = "image/" if label.startswith("fig-") else ("text/html", "text/markdown", "image/")
            assert any(m.startswith(wanted) for m in outputs[label]), f"{nb}#{label} has no output to embed"


def test_missing_notebook_or_label_is_a_one_line_error_naming_the_notebooks_command(synthetic, tmp_path):
    with pytest.raises(report.ReportError, match=r"python -m pruning notebooks"):
        report.render(synthetic, renderer="pandoc", quiet=True, build=tmp_path / "none")
    partial = dict(CONTRACT)
    partial["agreement.ipynb"] = []  # the notebook exists but lacks the labelled cell
    write_notebooks(tmp_path / "b" / "notebooks", partial)
    with pytest.raises(report.ReportError) as err:
        report.render(synthetic, renderer="pandoc", quiet=True, build=tmp_path / "b")
    assert "fig-agreement" in str(err.value) and "python -m pruning notebooks" in str(err.value)
    assert "\n" not in str(err.value)
    write_notebooks(tmp_path / "b" / "notebooks")
    (tmp_path / "b" / "notebooks" / "filters.ipynb").unlink()
    with pytest.raises(report.ReportError, match=r"filters\.ipynb.*does not exist.*python -m pruning notebooks"):
        report.render(synthetic, renderer="pandoc", quiet=True, build=tmp_path / "b")


def test_cli_reports_missing_notebooks_in_one_line(synthetic):
    # build/<name>/notebooks does not exist for a results folder named like this one
    proc = subprocess.run([sys.executable, "-m", "pruning", "report", str(synthetic), "--renderer", "pandoc"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "python -m pruning notebooks" in lines[0]


# ----------------------------------------------------------------------------- offline renderer


def test_offline_render_writes_self_contained_paper_and_poster(rendered):
    out, build = rendered
    assert out["paper"] == build / "report" / "paper.html" and out["poster"] == build / "report" / "poster.html"
    assert out["renderer"].startswith("offline (pandoc 3")
    for key in ("paper", "poster"):
        page = out[key].read_text()
        assert "{{<" not in page and ">}}" not in page
        srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
        assert srcs and all(s.startswith("data:image/") for s in srcs)
        assert not re.search(r'<link [^>]*href="(?!data:)', page)  # stylesheets inline too
    assert ".poster-grid" in out["poster"].read_text() and ".abstract" in out["paper"].read_text()


def test_each_figure_has_its_plotted_numbers_beside_the_pages_linked_from_its_caption(rendered):
    out, build = rendered
    figures = [label for labels in CONTRACT.values() for label in labels if label.startswith("fig-")]
    assert sorted(out["data"]) == sorted(f"figures/{label}.csv" for label in figures)
    for name, path in out["data"].items():
        assert path == build / "report" / name
        label = Path(name).stem
        assert path.read_text().splitlines()[1].startswith(f"{label},")  # this figure's own numbers
    paper = out["paper"].read_text()
    for label in figures:
        if f'id="{label}"' in paper:
            block = paper[paper.find(f'id="{label}"'):][:20000]
            assert re.search(rf'<figcaption[^>]*>.*<a href="figures/{label}\.csv">The plotted numbers \(CSV\)</a>', block,
                             flags=re.S), label


@pytest.mark.parametrize("doc", report.DOCUMENTS)
def test_offline_render_numbers_figures_and_tables_in_order_with_captions(rendered, doc):
    out, _ = rendered
    page = out[Path(doc).stem].read_text()
    order = float_order(REPORT / doc)
    numbers = {"fig": 0, "tbl": 0}
    positions = []
    for label in order:
        kind = label.split("-")[0]
        numbers[kind] += 1
        name = {"fig": "Figure", "tbl": "Table"}[kind]
        start = page.find(f'id="{label}"')
        assert start >= 0, f"{label} is not in {doc}"
        positions.append(start)
        block = page[start:start + 20000]
        if label == "tbl-techniques":
            assert re.search(rf"Table {numbers[kind]}: The nine iterative pruning techniques", page)
            continue
        text = re.sub(r"\s+", " ", html_text(block))
        assert f"{name} {numbers[kind]}: {caption_of(label)}" in text, label
        assert not re.search(rf"{name} \d+: {name} \d+", text), label  # numbered once
        if kind == "fig":
            assert re.match(r'id="fig-[\w-]+"[^>]*>\s*<img [^>]*src="data:image/png;base64,', block), label
        else:
            assert "<table" in block and f"{label}-a" in block  # the notebook's own table
    assert positions == sorted(positions)  # in the order of the source
    assert len(order) == len(set(order))


def html_text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment)


def test_offline_render_turns_cross_references_into_numbered_links(rendered):
    out, _ = rendered
    page = out["paper"].read_text()
    order = [label for label in float_order(REPORT / "paper.qmd")]
    figs = [label for label in order if label.startswith("fig-")]
    tbls = [label for label in order if label.startswith("tbl-")]
    assert f'<a href="#fig-accuracy">Figure {figs.index("fig-accuracy") + 1}</a>' in page
    assert f'<a href="#tbl-ensembles">Table {tbls.index("tbl-ensembles") + 1}</a>' in page
    assert f'<a href="#tbl-techniques">Table {tbls.index("tbl-techniques") + 1}</a>' in page
    assert not re.search(r"(?<![\w.])@(fig|tbl)-", html_text(page))


def test_offline_render_quotes_the_variables(rendered):
    out, build = rendered
    values = yaml.safe_load((build / "report" / "_variables.yml").read_text())
    paper = re.sub(r"\s+", " ", html_text(out["paper"].read_text()))
    assert "best technique, L1 US (keeping 50.0% of its weights), reaches 90.0% test accuracy" in paper  # 8 of 16
    assert "config synthetic (hash 0123abcd4567" in paper
    assert "Verdict: supported." in paper and "Frankle, J. &amp; Carbin, M. (2019)" in paper
    assert "arXiv:2004.13770" in paper and "arXiv:2001.05050" in paper
    poster = re.sub(r"\s+", " ", html_text(out["poster"].read_text()))
    # finding 3 on the classes both random techniques can still output (test_findings): not supported
    assert "Not supported: random structured pruning beats random unstructured pruning" in poster
    assert "Not the full protocol" in poster  # the deviation banner
    assert values["config_hash"] in poster and values["code_version"] in poster


def test_preprocess_degrades_quarto_only_syntax(tmp_path):
    text = ("---\ntitle: T\n---\n\nSee @fig-a and -@fig-a; mail x@fig-a.org.\n\n"
            "::: {.callout-note title=\"Careful\"}\nBody {{< var k >}} {{< meta title >}}{{< pagebreak >}}\n:::\n\n"
            "![A cap](a.png){#fig-a}\n")
    meta, md = report.preprocess(text, {"k": "42"}, {}, tmp_path)
    assert meta == {"title": "T"} and md.startswith("---\ntitle: T\n---\n")
    assert "[Figure 1](#fig-a) and [1](#fig-a)" in md and "x@fig-a.org" in md
    assert "::: {.callout .callout-note}\n**Careful**\n\nBody 42 T\n:::" in md
    assert "![Figure 1: A cap](a.png){#fig-a}" in md
    _, md = report.preprocess("Counted\n{{< var n >}} items\n\n{{< var n >}} at a paragraph start", {"n": "2)"}, {},
                              tmp_path)
    assert md == "Counted 2) items\n\n2) at a paragraph start"  # a value never starts a list inside a paragraph
    _, md = report.preprocess("a\\\n{{< var n >}}\nb  \n{{< var n >}}", {"n": "x"}, {}, tmp_path)
    assert md == "a\\\nx\nb  \nx"  # hard line breaks stay
    with pytest.raises(report.ReportError, match="variable 'nope'"):
        report.preprocess("{{< var nope >}}", {}, {}, tmp_path)
    with pytest.raises(report.ReportError, match="@tbl-none"):
        report.preprocess("see @tbl-none", {}, {}, tmp_path)


# ----------------------------------------------------------------------------- variables


def test_variables_of_the_synthetic_results_are_the_hand_derived_numbers(synthetic):
    v = report.variables(synthetic)
    assert v["config_name"] == "synthetic" and v["config_hash"] == "0123abcd4567"
    assert v["code_version"] == "cafe12345678 (seeds 0-1)" and v["hardware"] == "a test machine" and v["date"] == "2026-01-03"
    assert (v["runs"], v["runs_done"], v["trainings"]) == ("16", "16", "48")  # 4 x 2 x 2 runs, 3 trainings each
    assert (v["iteration"], v["main_reinit"], v["test_images"], v["remaining_pct"]) == ("2", "rewind", "10", "50.0")
    assert (v["epochs"], v["lr"], v["prune_pct"], v["seeds"], v["seeds_n"]) == ("3", "0.05", "20", "0-1", "2")
    assert (v["seeds_text"], v["iterations_text"], v["epochs_text"]) == ("2 seeds", "2 pruning iterations", "3 epochs")
    assert v["seeds_scope"] == "seeds 0-1"  # all the config's seeds are there
    assert (v["best_technique"], v["best_acc"], v["worst_technique"], v["worst_acc"]) == ("L1 US", "90.0",
                                                                                        "random US", "30.0")
    assert (v["dense_acc"], v["near_dense_n"], v["near_dense_list"]) == ("80.0", "2", "L1 US and L2 S")
    assert (v["random_s_acc"], v["random_us_acc"]) == ("50.0", "30.0")
    # Jaccard distances: L1 US-L2 S 1 - 6/10, L1 US-random S 1 - 0/16, L2 S-random S 1 - 2/14, the rest 1 - 4/12
    assert (v["mask_closest_pair"], v["mask_closest_distance"]) == ("L1 US and L2 S", "0.40")
    assert (v["mask_farthest_pair"], v["mask_farthest_distance"]) == ("L1 US and random S", "1.00")
    assert v["mask_mean_distance"] == "0.71"  # (0.4 + 1 + 12/14 + 3 * 2/3) / 6 = 0.7095
    # random masks of these densities: every pair keeps 4 (or 6 and 2) of 8 per layer -> 1 - 4/12 = 0.67
    assert v["mask_random_distance"] == "0.67"
    assert "L1 S" in v["mask_expected_note"] and "lack" in v["mask_expected_note"]  # L1 S is not in these results
    # agreement: both right on 7, 4, 2, 5, 1, 1 images of 10 (different wrong classes never agree)
    assert (v["agreement_mean"], v["agreement_mean_pct"]) == ("3", "33.3")
    # chance a1 a2 + (1-a1)(1-a2)/9 for (.9,.8) (.9,.5) (.9,.3) (.8,.5) (.8,.3) (.5,.3): mean 2.311111/6 = 38.5 %
    assert v["agreement_chance_pct"] == "38.5"
    assert (v["agreement_max"], v["agreement_max_pair"]) == ("7", "L1 US and L2 S")
    assert v["agreement_min"] == "1"
    assert set(v["agreement_min_pair"].split(" and ")) in ({"L2 S", "random US"}, {"random S", "random US"})
    assert (v["member_best"], v["member_best_acc"]) == ("L1 US", "90.0")
    assert v["ensemble_seven_acc"] == "n/a" and v["ensemble_nine_acc"] == "n/a"  # hybrid etc. are not in the results
    # explanations: L2 S keeps output unit 0 of 2 (fc1 entries 8, 9), so only class 0 (1 image of 10) is told apart
    assert (v["output_units_min"], v["output_units_ceiling"]) == ("1.0", "10.0")
    assert "L2 S keeps 1.0 of 2 output units" in v["output_units_note"]
    assert v["collapsed_n"] == "0" and "No training collapsed" in v["collapsed_note"]  # every train loss is 1.0
    assert v["above_dense_n"] == "1" and v["above_dense_note"].startswith("L1 US is more accurate")
    # deviations from configs/paper_lenet_mnist.yaml
    assert v["is_protocol"] == "no" and int(v["deviations_n"]) >= 5
    assert "epochs 3 (protocol: 30)" in v["deviation_banner"] and "learning rate 0.05 (protocol: 0.01)" in v[
        "deviation_banner"]
    # the findings (worked out in test_findings_of_the_synthetic_results)
    assert [v[f"{k}_verdict"] for k in ("tickets", "variety", "random", "functions", "ensembles", "stability",
                                        "connectivity")] == ["supported", "supported", "not supported",
                                                             "inconclusive", "inconclusive", "supported", "supported"]
    assert v["verdict_counts"] == "4 supported, 1 not supported and 2 inconclusive of 7 findings"
    assert v["random_headline"] == "Not supported: random structured pruning beats random unstructured pruning"
    assert all(isinstance(value, str) for value in v.values())


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    """results/smoke when it holds trainings (the test command makes it), else a tiny real run."""
    if (SMOKE_RESULTS / "experiment.json").exists() and not store.load_results(SMOKE_RESULTS).empty:
        return SMOKE_RESULTS
    folder = tmp_path_factory.mktemp("real")
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"name": "tiny", "techniques": ["l1_us", "random_s"], "reinit": ["rewind", "finetune"],
                                   "seeds": [0], "iterations": 2, "training": {"epochs": 1, "lr": 0.1},
                                   "data": {"train_subset": 1000, "val_subset": 500, "test_subset": 1000}}))
    proc = subprocess.run([sys.executable, "-m", "pruning", "run", str(cfg), "--results", str(folder / "tiny"),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder / "tiny"


@pytest.mark.slow
def test_variables_of_real_results_match_the_table(real_results):
    v = report.variables(real_results)
    table = store.load_results(real_results)
    exp = json.loads((real_results / "experiment.json").read_text())
    assert v["trainings"] == f"{len(table):,}" and v["runs"] == str(len(exp["runs"]))
    assert v["config_hash"] == exp["config_hash"] and v["config_name"] == exp["name"]
    main = "rewind" if "rewind" in set(table["reinit"]) else sorted(set(table["reinit"]))[0]
    sel = table[table["reinit"] == main]
    it = int(table.groupby(["technique", "reinit", "seed"])["iteration"].max().min())  # as the notebooks
    assert v["iteration"] == str(it)
    acc = sel[sel["iteration"] == it].groupby("technique")["test_acc"].mean()
    def half_up(x, digits=1):  # the text rounds as the notebooks' tables: half up, after 6 decimals
        return str(Decimal(repr(round(float(x), 6))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))

    tied = [t for t in acc.index if half_up(acc[t], 2) == half_up(acc.min(), 2)]
    assert v["best_acc"] == half_up(acc.max()) and v["worst_acc"] == half_up(acc.min(), 2 if len(tied) > 1 else 1)
    assert v["dense_acc"] == half_up(sel[sel["iteration"] == 0]["test_acc"].mean())
    best = acc.idxmax()
    kept = 100 * (1 - sel[(sel["iteration"] == it) & (sel["technique"] == best)]["sparsity"].mean())
    assert v["best_remaining_pct"] == half_up(kept)
    n_test = store.load_training(sel.iloc[0])["targets"].numel()
    assert v["test_images"] == f"{n_test:,}"


# ----------------------------------------------------------------------------- the Quarto project


def test_quarto_project_renders_both_documents_from_stored_outputs():
    project = yaml.safe_load((REPORT / "_quarto.yml").read_text())
    assert project["project"]["type"] == "default"
    assert project["project"]["render"] == list(report.DOCUMENTS)
    assert project["execute"]["enabled"] is False
    html = project["format"]["html"]
    assert html["embed-resources"] is True and html["notebook-view"] is False and html["notebook-links"] is False
    for doc in report.DOCUMENTS:
        meta, _, _ = report._front_matter((REPORT / doc).read_text())
        css = meta["format"]["html"]["css"]
        assert (REPORT / css).exists()
        assert meta.get("title") or meta.get("pagetitle")


def test_quarto_renderer_runs_quarto_render_in_the_staged_project(synthetic, tmp_path, monkeypatch):
    """A stand-in `quarto` on PATH records what it was given and writes the two documents."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "quarto"
    fake.write_text("#!/bin/sh\n"
                    "echo \"$@\" > args.txt\n"
                    "ls notebooks/ > seen_notebooks.txt\n"
                    "echo '<html>paper</html>' > paper.html\necho '<html>poster</html>' > poster.html\n")
    fake.chmod(0o755)
    write_notebooks(tmp_path / "build" / "notebooks")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = report.render(synthetic, renderer="auto", quiet=True, build=tmp_path / "build")
    staged = tmp_path / "build" / "report"
    assert out["renderer"] == "quarto" and out["paper"].read_text().strip() == "<html>paper</html>"
    assert (staged / "args.txt").read_text().split()[0] == "render"
    assert set((staged / "seen_notebooks.txt").read_text().split()) == set(CONTRACT)
    assert yaml.safe_load((staged / "_variables.yml").read_text())["best_acc"] == "90.0"
    assert {p.name for p in staged.glob("*.qmd")} == set(report.DOCUMENTS)


def test_quarto_renderer_without_quarto_says_what_to_do(synthetic, tmp_path, monkeypatch):
    write_notebooks(tmp_path / "build" / "notebooks")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(report.ReportError, match=r"quarto is not on PATH.*--renderer pandoc"):
        report.render(synthetic, renderer="quarto", quiet=True, build=tmp_path / "build")


def test_techniques_tied_at_the_lowest_accuracy_are_all_named(synthetic):
    """Several techniques collapsed to the same constant guess: the text names every one, with two decimals."""
    from pruning.analysis import load
    from pruning.reporting import quoted

    table = load(synthetic)
    at2 = table["iteration"] == 2
    table.loc[at2 & table["technique"].isin(["random_s", "random_us"]), "test_acc"] = 11.35
    sel = table[table["reinit"] == "rewind"]
    v = quoted._accuracy_variables(table, sel, 2, ["l1_us", "l2_s", "random_s", "random_us"], "rewind")
    assert v["worst_technique"] == "random S and random US (tied)" and v["worst_acc"] == "11.35"
    assert quoted._fmt(11.35) == "11.4" and quoted._fmt(1234.5, 0) == "1,235"  # half up, as the tables round


def test_the_explanations_block_moves_to_the_first_column_only_beside_companion_figures():
    text = ("col1\n<!-- explain:first-column -->\nend1\ncol3\n<!-- explain:start -->\nBLOCK\n<!-- explain:end -->\nend3")
    moved = report._balance(text, True)
    assert moved.index("BLOCK") < moved.index("end1") and "explain:" not in moved and moved.count("BLOCK") == 1
    kept = report._balance(text, False)
    assert kept.index("BLOCK") > kept.index("col3") and "explain:first-column" not in kept and kept.count("BLOCK") == 1
    assert report._balance("no markers", True) == "no markers"


def test_sentences_that_compare_techniques_are_dropped_for_a_set_of_one_technique():
    start, end = report.SEVERAL
    text = f"A.\n{start}\nThe closest pair is X.\n{end}\nB.\n{start}\nAgreement Y.\n{end}\nC.\n"
    assert report._several_techniques(text, several=False) == "A.\n\nB.\n\nC.\n"
    assert report._several_techniques(text, several=True) == "A.\n\nThe closest pair is X.\n\nB.\n\nAgreement Y.\n\nC.\n"
    one, one_end = report.ONE
    text = f"After 18 steps {start}the best is X and the worst Y.{end}{one}L1 US reaches Z.{one_end}\n"
    assert report._several_techniques(text, several=False) == "After 18 steps L1 US reaches Z.\n"
    assert report._several_techniques(text, several=True) == "After 18 steps the best is X and the worst Y.\n"
    paper = (report.SOURCE / "paper.qmd").read_text()
    assert paper.count(start) == paper.count(end) == 4  # abstract, masks, agreement, ensembles
    assert paper.count(one) == paper.count(one_end) == 1
