"""Tests of the figure notebooks (notebooks/*.ipynb), their first cell's setup
(pruning/reporting/notebook_setup.py) and their executor (pruning/reporting/notebooks.py).

- The executor is tested on two tiny notebooks of our own in a tmp folder (monkeypatched
  NOTEBOOKS_DIR / BUILD_DIR) and a results folder of JSON files: it executes, skips unchanged
  inputs and re-executes when a parameter, the results or a notebook changes.
- A bad parameter is tested by executing a real notebook (accuracy.ipynb) with papermill on a
  hand-written results folder; it must stop in the cell right after the parameters.
- The committed notebooks' structure and outputs (labels, one image per figure, an HTML table per
  table) are checked on the files, without executing them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from pruning.reporting import notebook_setup, notebooks
from pruning.core.errors import UserError
from pruning.core.names import NOTEBOOK_LABELS
from pruning.store import StoreError

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "notebooks"

# The report embeds these: the notebook contract (pruning.core.names), not read from the notebooks.
LABELS = {stem: set(labels) for stem, labels in NOTEBOOK_LABELS.items()}


# ----------------------------------------------------------------------------- helpers

def write_results(folder: Path, techniques=("l1_us", "l1_s"), iterations=3) -> Path:
    """A results folder of JSON files only (what store.load_results reads): 1 seed, rewind, 0..iterations-1."""
    runs = []
    for t in techniques:
        h = f"{t}000"
        runs.append({"hash": h, "technique": t, "reinit": "rewind", "seed": 0})
        run = folder / f"run_{h}"
        (run / "trainings").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"hash": h, "config": {
            "arch": "lenet", "dataset": "mnist", "technique": t, "reinit": "rewind", "seed": 0}}))
        for it in range(iterations):
            (run / "trainings" / f"{it:03d}.json").write_text(json.dumps({
                "iteration": it, "sparsity": 1 - 0.8 ** it, "test_acc": 90.0 - it, "val_acc": 90.0 - it,
                "sha256": "0" * 64}))
    (folder / "experiment.json").write_text(json.dumps({"name": folder.name, "runs": runs}))
    return folder


def tiny_notebook(path: Path, body: str, params: str = 'results = "."\nfactor = 1') -> Path:
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def stdout_of(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def statuses(capsys) -> dict[str, str]:
    """{notebook file: 'executed' | 'skipped' | 'failed'} from execute_all's printed lines."""
    out = {}
    for line in capsys.readouterr().out.splitlines():
        name, _, rest = line.partition(": ")
        out[name] = "executed" if rest.startswith("executed in") else "skipped" if "skipped" in rest else "failed"
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Two tiny notebooks (a takes `factor`, b does not), a results folder and a tmp build dir."""
    src, build = tmp_path / "nb", tmp_path / "build"
    src.mkdir()
    tiny_notebook(src / "a.ipynb", "print('a', factor * 2, results)")
    tiny_notebook(src / "b.ipynb", "print('b', results)", params='results = "."')
    monkeypatch.setattr(notebooks, "NOTEBOOKS_DIR", src)
    monkeypatch.setattr(notebooks, "BUILD_DIR", build)
    return {"src": src, "build": build, "results": write_results(tmp_path / "res")}


# ----------------------------------------------------------------------------- the executor

@pytest.mark.slow
def test_executes_into_build_and_skips_or_reexecutes_on_changes(sandbox, capsys):
    res, out = sandbox["results"], sandbox["build"] / "res" / "notebooks"

    paths = notebooks.execute_all(res)
    assert paths == [out / "a.ipynb", out / "b.ipynb"]
    assert statuses(capsys) == {"a.ipynb": "executed", "b.ipynb": "executed"}
    assert stdout_of(out / "a.ipynb") == f"a 2 {res.resolve()}\n"  # results passed as an absolute path
    assert (out / "a.inputs.json").exists()
    assert stdout_of(sandbox["src"] / "a.ipynb") == ""  # the source notebook is untouched
    mtime = (out / "a.ipynb").stat().st_mtime_ns

    notebooks.execute_all(res)
    assert statuses(capsys) == {"a.ipynb": "skipped", "b.ipynb": "skipped"}
    assert (out / "a.ipynb").stat().st_mtime_ns == mtime

    notebooks.execute_all(res, parameters={"factor": 3})  # only a declares factor
    assert statuses(capsys) == {"a.ipynb": "executed", "b.ipynb": "skipped"}
    assert stdout_of(out / "a.ipynb").startswith("a 6 ")
    notebooks.execute_all(res, parameters={"factor": 3})
    assert statuses(capsys) == {"a.ipynb": "skipped", "b.ipynb": "skipped"}

    (res / "run_l1_us000" / "trainings" / "003.json").write_text(json.dumps({"iteration": 3}))  # a new training
    notebooks.execute_all(res, parameters={"factor": 3})
    assert statuses(capsys) == {"a.ipynb": "executed", "b.ipynb": "executed"}

    tiny_notebook(sandbox["src"] / "b.ipynb", "print('b changed')", params='results = "."')
    notebooks.execute_all(res, parameters={"factor": 3}, notebooks=["b"])
    assert statuses(capsys) == {"b.ipynb": "executed"}
    assert stdout_of(out / "b.ipynb") == "b changed\n"

    notebooks.execute_all(res, parameters={"factor": 3}, force=True, quiet=True)
    assert capsys.readouterr().out == ""
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_a_failing_notebook_is_one_line_naming_it_and_the_copy_to_open(sandbox, capsys):
    tiny_notebook(sandbox["src"] / "c.ipynb", "raise ValueError('boom\\nsecond line')", params='results = "."')
    with pytest.raises(notebooks.NotebookError) as err:
        notebooks.execute_all(sandbox["results"])
    message = str(err.value)
    out = sandbox["build"] / "res" / "notebooks"
    assert "\n" not in message
    assert "c.ipynb" in message and "ValueError: boom" in message
    assert str(out / "c.failed.ipynb") in message
    assert (out / "c.failed.ipynb").exists() and not (out / "c.ipynb").exists()
    assert (out / "a.ipynb").exists() and (out / "b.ipynb").exists()  # the others still ran
    assert isinstance(err.value, UserError)  # so the CLI prints it as one line (exit code 2)


def test_an_interrupted_execution_leaves_the_previous_output_and_no_temp_file(sandbox, monkeypatch):
    res, out = sandbox["results"], sandbox["build"] / "res" / "notebooks"
    notebooks.execute_all(res, quiet=True, notebooks=["a"])
    before = (out / "a.ipynb").read_bytes()

    def killed(source, target, **kwargs):
        Path(target).write_text("{half a notebook")
        raise KeyboardInterrupt

    monkeypatch.setattr(pm, "execute_notebook", killed)
    with pytest.raises(KeyboardInterrupt):
        notebooks.execute_all(res, quiet=True, notebooks=["a"], force=True)
    assert (out / "a.ipynb").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["a.ipynb"]  # no temp file; no stamp: re-executed next time


def test_bad_executor_arguments_are_one_line_errors(sandbox, tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        notebooks.execute_all(tmp_path / "nowhere")
    with pytest.raises(notebooks.NotebookError, match=r"unknown notebook nope \(available: a, b\)"):
        notebooks.execute_all(sandbox["results"], notebooks=["nope"])
    with pytest.raises(notebooks.NotebookError, match="no notebook takes parameter colour"):
        notebooks.execute_all(sandbox["results"], parameters={"colour": "red"})


def test_resolve_results_from_the_working_directory_or_notebooks(tmp_path, monkeypatch):
    (tmp_path / "repo" / "notebooks").mkdir(parents=True)
    (tmp_path / "repo" / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "cwd" / "mine").mkdir(parents=True)
    monkeypatch.setattr(notebook_setup, "NOTEBOOKS_DIR", tmp_path / "repo" / "notebooks")
    monkeypatch.chdir(tmp_path / "cwd")
    assert notebook_setup.resolve_results("../results/smoke") == tmp_path / "repo" / "results" / "smoke"
    assert notebook_setup.resolve_results("mine") == tmp_path / "cwd" / "mine"
    assert notebook_setup.resolve_results(tmp_path / "abs") == tmp_path / "abs"
    assert notebook_setup.resolve_results("missing") == tmp_path / "cwd" / "missing"


# ----------------------------------------------------------------------------- bad parameters, real notebook

BAD_PARAMETERS = {  # case: (parameters, expected message)
    "iteration": ({"iteration": 7}, r"iteration 7 is not in .* \(available: 0-2\)"),
    "technique": ({"techniques": ["l1_us", "l9_s"]}, r"unknown technique 'l9_s' \(available: l1_us, l1_s\)"),
    "folder": ({"results": "/nonexistent/results/folder"}, r"results folder /nonexistent/results/folder does not exist"),
}


def run_accuracy(out: Path, parameters: dict):
    """Execute notebooks/accuracy.ipynb with papermill; returns (error, index of the failing code cell,
    index of the parameters cell)."""
    try:
        pm.execute_notebook(str(SOURCES / "accuracy.ipynb"), str(out), parameters=parameters, kernel_name="python3",
                            cwd=str(SOURCES), progress_bar=False, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except pm.PapermillExecutionError as exc:
        error = exc
    else:
        return None, None, None
    code = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    failing = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    params = [i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", [])]
    return error, failing, params


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """The three bad-parameter executions, one after the other: kernels started side by side from threads can die
    before they reply (each picks its TCP ports alone, and two may pick the same)."""
    tmp = tmp_path_factory.mktemp("bad")
    results = write_results(tmp / "res")
    return {case: run_accuracy(tmp / f"{case}.ipynb", {"results": str(results), **params})
            for case, (params, _) in BAD_PARAMETERS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_PARAMETERS))
def test_a_bad_parameter_stops_the_notebook_in_its_first_cells(bad_runs, case):
    error, failing, params = bad_runs[case]
    assert error is not None, f"{case}: the notebook ran through"
    assert error.ename == "ParameterError"
    assert re.search(BAD_PARAMETERS[case][1], error.evalue), error.evalue
    assert "\n" not in error.evalue.strip()
    # one failing cell: the loading cell, after the parameters and papermill's injected parameters
    assert len(params) == 1 and failing == [params[0] + 2]


def test_a_figure_a_set_cannot_draw_is_named_with_what_the_set_has():
    """The released L1 US recipe has one technique and only rewinding: a figure that needs more says so in one
    sentence (shown in its place by ``plots.not_drawn``); a set that has what the figure needs gets None."""
    import pandas as pd

    recipe = pd.DataFrame({"technique": ["l1_us"] * 2, "reinit": ["rewind"] * 2})
    both = pd.DataFrame({"technique": ["l1_s", "l1_us", "l1_us"], "reinit": ["rewind", "rewind", "finetune"]})
    assert notebook_setup.lacks(recipe, reinits=["rewind", "finetune"]) == (
        "this figure needs fine-tune; this results set has L1 US with rewind.")
    assert notebook_setup.lacks(recipe, techniques=["l1_s"], n_techniques=2) == (
        "this figure needs L1 S and at least 2 techniques; this results set has L1 US with rewind.")
    assert notebook_setup.lacks(both, techniques=["l1_s"], reinits=["finetune"], n_techniques=2) is None


# ----------------------------------------------------------------------------- plotting helpers

def hue(hex_color: str) -> float:
    import colorsys
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[0] * 360


def test_every_technique_has_its_own_colour_grouped_by_family():
    from pruning.reporting import plots
    from pruning.nets import techniques
    assert set(plots.COLORS) == set(techniques.TECHNIQUES)
    assert len(set(plots.COLORS.values())) == len(plots.COLORS)
    structured = ["l1_s", "l2_s", "linf_s", "lneginf_s", "random_s"]
    unstructured = ["l1_us", "random_us"]
    assert all(170 <= hue(plots.COLORS[t]) <= 290 for t in structured)       # cool: teal, blues, purple

    def rgb(c):
        return [int(c[i:i + 2], 16) for i in (1, 3, 5)]
    # told apart by colour, not only by marker: every two structured colours at least 60 apart in RGB
    for i, a in enumerate(structured):
        for b in structured[i + 1:]:
            assert sum((x - y) ** 2 for x, y in zip(rgb(plots.COLORS[a]), rgb(plots.COLORS[b]))) ** 0.5 >= 60, (a, b)
    assert all(15 <= hue(plots.COLORS[t]) <= 45 for t in unstructured)       # orange / vermillion
    others = [hue(plots.COLORS[t]) for t in ("hybrid", "fc_only_l1_us")]
    assert all(not 170 <= h <= 290 and not 15 <= h <= 45 for h in others)
    # the structured norms differ by marker and line style too, not only by (similar, blue) colour
    looks = [(plots.style(t)["marker"], str(plots.style(t)["linestyle"])) for t in structured]
    assert len({m for m, _ in looks}) == len(looks) and len({ls for _, ls in looks}) == len(looks)
    assert plots.style("lneginf_s")["label"] == "L-∞ S"


def test_kernel_mosaic_places_kernels_and_flags_the_emptied_ones():
    import torch
    from pruning.reporting import plots
    w = torch.arange(1, 2 * 2 * 2 * 2 + 1, dtype=torch.float32).view(2, 2, 2, 2)  # 2 filters x 2 inputs, 2x2
    w1 = w.clone()
    w1[1, 0] = 0  # filter 1, input 0 emptied
    image, cells = plots.kernel_mosaic({0: w, 1: w1})
    # rows: 2 iterations of 2 px + 1 gap; columns: 4 kernels of 2 px, gaps of 1, one extra gap between filters
    assert image.shape == (5, 4 * 2 + 3 + 1)
    assert [empty for _, _, empty in cells] == [False] * 4 + [False, False, True, False]
    y, x, _ = cells[6]
    assert (y, x) == (3, 7) and (image[3:5, 7:9] == 0).all()
    assert image[0, 0] == 1 and image[1, 1] == 4  # kernel (0, 0) is [[1, 2], [3, 4]]


# ----------------------------------------------------------------------------- the committed notebooks

def committed():
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SOURCES.glob("*.ipynb"))}


def options(cell) -> dict:
    lines = "".join(cell["source"]).splitlines()
    head = []
    for line in lines:
        if not line.startswith("#|"):
            break
        key, _, value = line[2:].strip().partition(":")
        head.append((key.strip(), value.strip()))
    return dict(head)


def test_the_notebooks_and_their_labels_are_the_ones_the_report_embeds():
    found = {name: {options(c).get("label") for c in nb["cells"] if c["cell_type"] == "code"} - {None}
             for name, nb in committed().items()}
    assert found == LABELS


def test_every_notebook_starts_with_the_papermill_parameters():
    for name, nb in committed().items():
        assert nb["metadata"]["kernelspec"]["name"] == "python3", name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code[0]["metadata"].get("tags") == ["parameters"], name
        source = "".join(code[0]["source"])
        for line in ('results = "../results/smoke"', "iteration = None", 'reinit = "rewind"', "techniques = None"):
            assert re.search(rf"^{re.escape(line)}(\s|$)", source, re.M), (name, line)
        assert "setup(results, iteration, reinit, techniques" in "".join(code[1]["source"]), name  # one setup
        assert "analysis.load(" not in "".join(code[1]["source"]), name  # not a copied setup cell


def test_every_figure_cell_has_one_svg_image_with_its_numbers_and_every_table_cell_an_html_table():
    for name, nb in committed().items():
        for cell in nb["cells"]:
            if cell["cell_type"] != "code" or "label" not in options(cell):
                continue
            opts, label = options(cell), options(cell)["label"]
            lines = "".join(cell["source"]).splitlines()
            outputs = cell["outputs"]
            if label.startswith("fig-"):
                assert lines[1].startswith("#| fig-cap: \""), (name, label)
                data = outputs[0].get("data", {}) if len(outputs) == 1 else {}
                assert "image/svg+xml" in data and "text/csv" in data, (name, label)  # the picture and its numbers
            else:
                assert label.startswith("tbl-") and lines[1].startswith("#| tbl-cap: \""), (name, label)
                assert len(outputs) == 1 and "<table" in "".join(outputs[0]["data"]["text/html"]), (name, label)
            assert opts.get("fig-cap", opts.get("tbl-cap", "")).strip('"'), (name, label)


def test_the_committed_notebooks_are_executed_small_and_checked():
    for name, nb in committed().items():
        path = SOURCES / f"{name}.ipynb"
        assert path.stat().st_size < 1_000_000, name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["execution_count"] is not None for c in code), name
        assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"], name
        assert not [o for c in code for o in c["outputs"] if o.get("name") == "stderr"], name
        checked = [c for c in code if "".join(c["source"]).startswith("# NBVAL_CHECK_OUTPUT")]
        assert checked and all(c["outputs"] and c["outputs"][0].get("name") == "stdout" for c in checked), name
        text = "".join("".join(o.get("text", "")) for c in checked for o in c["outputs"])
        assert str(REPO) not in text and "results/" not in text and " at 0x" not in text, name  # no paths, reprs
        assert [c for c in nb["cells"] if c["cell_type"] == "markdown"], name


def test_a_companion_set_appearing_beside_a_lenet_set_changes_its_fingerprint(tmp_path):
    """The findings notebook names the companion conv2 sets found beside a LeNet set (its deviation table), so a
    companion trained or published later must re-run the notebooks instead of leaving them skipped as unchanged."""
    lenet = tmp_path / "paper_lenet_mnist_cpu"
    lenet.mkdir()
    (lenet / "experiment.json").write_text(json.dumps({"config": {"arch": "lenet"}}))
    alone = notebooks.results_fingerprint(lenet)
    assert notebooks.results_fingerprint(lenet) == alone  # nothing changed, nothing re-runs
    alexnet = tmp_path / "alexnet_mnist_cpu"
    (alexnet / "run_0" / "trainings").mkdir(parents=True)
    (alexnet / "experiment.json").write_text(json.dumps({"config": {"arch": "alexnet"}}))
    (alexnet / "run_0" / "trainings" / "000.json").write_text("{}")
    with_companion = notebooks.results_fingerprint(lenet)
    assert with_companion != alone
    (alexnet / "run_0" / "trainings" / "001.json").write_text("{}")
    assert notebooks.results_fingerprint(lenet) != with_companion  # the companion trained further


def test_a_change_to_any_published_table_runs_the_notebooks_again(tmp_path):
    """The sensitivity notebook reads the other published sets: a notebook cached on an older table of another set
    would show stale numbers, so the cache key covers every published results.csv."""
    from pruning.reporting import notebooks
    (tmp_path / "a").mkdir()
    (tmp_path / "sensitivity" / "b").mkdir(parents=True)
    (tmp_path / "a" / "results.csv").write_text("seed\n0\n")
    (tmp_path / "sensitivity" / "b" / "results.csv").write_text("seed\n0\n")
    before = notebooks.published_fingerprint(tmp_path)
    assert notebooks.published_fingerprint(tmp_path) == before
    (tmp_path / "sensitivity" / "b" / "results.csv").write_text("seed\n0\n1\n")
    assert notebooks.published_fingerprint(tmp_path) != before
