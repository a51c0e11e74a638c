"""The published results store (``store.published``, ``reporting.export``): the smoke run store published to a
tmp ``docs/``, read back by numpy alone and by the analyses, grown seed by seed without rewriting a seed, and
rendered and run with papermill with no run store present.

``results/smoke`` is made by the test command (``scripts/test.sh``) before pytest runs.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pruning import analysis, store
from pruning.core.errors import ReportError
from pruning.reporting import export

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "smoke"


@pytest.fixture(scope="module")
def smoke_set(tmp_path_factory):
    """results/smoke published (data and whole-set files, no render) to <tmp>/docs/smoke."""
    target = tmp_path_factory.mktemp("published") / "docs" / "smoke"
    target.mkdir(parents=True)
    assert export.add_seeds(RESULTS, target) == [0, 1]
    export.write_derived(RESULTS, target)
    return target


def _pt(path) -> dict:
    """A run store's training record read with torch alone (not through pruning)."""
    return torch.load(io.BytesIO(Path(path).read_bytes()), map_location="cpu", weights_only=True)


def test_the_published_files_open_with_numpy_alone_and_hold_the_run_stores_tensors(smoke_set):
    table = store.load_results(RESULTS)
    row = table[(table["technique"] == "l1_s") & (table["reinit"] == "rewind") & (table["seed"] == 1)]
    with np.load(smoke_set / "data" / "seed_1" / "l1_s.rewind.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    with np.load(smoke_set / "data" / "seed_1" / "test.npz", allow_pickle=False) as z:
        test = {k: z[k] for k in z.files}
    assert a["iteration"].tolist() == sorted(row["iteration"])
    for r, (it, f) in enumerate(sorted(zip(row["iteration"], row["file"]))):
        pt = _pt(f)
        for layer, packed in pt["packed_masks"].items():
            shape = tuple(pt["mask_shapes"][layer])
            mask = np.unpackbits(a[f"mask.{layer}"][r])[: int(np.prod(shape))].reshape(shape).astype(bool)
            assert np.array_equal(mask, np.unpackbits(packed.numpy())[: int(np.prod(shape))].reshape(shape))
            assert tuple(a[f"shape.{layer}"]) == shape
        assert np.array_equal(a["predictions"][r], pt["predictions"].numpy())
        assert np.array_equal(test["targets"], pt["targets"].numpy())
        for layer in ("conv1", "conv2"):  # LeNet's conv weights: float32, exactly the trained ones times the mask
            shape = tuple(pt["mask_shapes"][layer])
            mask = np.unpackbits(pt["packed_masks"][layer].numpy())[: int(np.prod(shape))].reshape(shape).astype(bool)
            assert a[f"weight.{layer}"].dtype == np.float32
            assert np.array_equal(a[f"weight.{layer}"][r], pt["weights"][f"{layer}.weight"].numpy() * mask)
        assert "weight.fc1" not in a and "logits" not in a
    # stability of iteration 2 (row 2) vs 1 in fc1, recomputed here from the run store's float32 weights
    (i1, f1), (i2, f2) = sorted(zip(row["iteration"], row["file"]))[1:3]
    p1, p2 = _pt(f1), _pt(f2)
    m1 = np.unpackbits(p1["packed_masks"]["fc1"].numpy()).reshape(120, 400).astype(bool)
    m2 = np.unpackbits(p2["packed_masks"]["fc1"].numpy()).reshape(120, 400).astype(bool)
    both = m1 & m2
    w1, w2 = p1["weights"]["fc1.weight"].numpy()[both], p2["weights"]["fc1.weight"].numpy()[both]
    j = [str(x) for x in a["layers"]].index("fc1")
    assert a["stability.count"][2, j] == both.sum()
    assert a["stability.sum_abs_delta"][2, j] == pytest.approx(np.abs(w2.astype(np.float64) - w1).sum(), rel=1e-12)
    assert np.isnan(a["stability.sum_abs_delta"][0]).all() and (a["stability.count"][0] == 0).all()


def test_a_published_ensemble_is_the_softmax_mean_of_the_members_float32_logits(smoke_set):
    table = store.load_results(RESULTS)
    at = table[(table["reinit"] == "rewind") & (table["seed"] == 0) & (table["iteration"] == 4)]
    trio = ["fc_only_l1_us", "hybrid", "l1_us"]
    probs = np.zeros((10000, 10))
    for t in trio:
        z = _pt(at.loc[at["technique"] == t, "file"].iloc[0])["logits"].numpy().astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs += z / z.sum(axis=1, keepdims=True)
    with np.load(smoke_set / "data" / "seed_0" / "test.npz") as z:
        published = z["ensemble.rewind.4." + "+".join(trio)]
    assert np.array_equal(published, np.argmax(probs, axis=1))


def test_every_analysis_reads_a_published_set_as_it_reads_the_run_store(smoke_set):
    run, pub = analysis.load(RESULTS), analysis.load(smoke_set)
    local = ["run_dir", "file"]
    pd.testing.assert_frame_equal(run.drop(columns=local), pub.drop(columns=local), check_dtype=False)
    for it in (3, 6):
        pd.testing.assert_frame_equal(analysis.agreement_matrix(run, it), analysis.agreement_matrix(pub, it))
        pd.testing.assert_frame_equal(analysis.mask_distance_matrix(run, it), analysis.mask_distance_matrix(pub, it))
        for members in (["l1_us", "hybrid", "fc_only_l1_us"], list(analysis.POSTER_SINGLES), ["l1_s"], ["random_us"]):
            for method in ("mean_prob", "vote"):
                pd.testing.assert_series_equal(analysis.ensemble_accuracy(run, it, members, method=method),
                                               analysis.ensemble_accuracy(pub, it, members, method=method))
    for layer in (None, "fc1"):
        pd.testing.assert_frame_equal(analysis.weight_stability(run, layer=layer), analysis.weight_stability(pub, layer=layer))
    pd.testing.assert_frame_equal(analysis.weight_drift(run), analysis.weight_drift(pub))
    pd.testing.assert_frame_equal(analysis.weight_traces(run, "l1_us"), analysis.weight_traces(pub, "l1_us"))
    pd.testing.assert_frame_equal(analysis.empty_kernel_curve(run, "conv2"), analysis.empty_kernel_curve(pub, "conv2"))
    assert analysis.stability_vs_accuracy(run) [1] == analysis.stability_vs_accuracy(pub)[1]
    assert analysis.findings.findings(run, 6) == analysis.findings.findings(pub, 6)


def test_what_a_published_set_does_not_keep_is_a_one_line_error_that_says_what_to_train(smoke_set):
    pub = analysis.load(smoke_set)
    with pytest.raises(analysis.ParameterError) as err:
        analysis.weight_traces(pub, "l1_us", layer="fc1")
    msg = str(err.value)
    assert "\n" not in msg and "stored: conv1, conv2" in msg and "python -m pruning run configs/smoke.yaml" in msg
    with pytest.raises(analysis.ParameterError) as err:  # an ensemble the set did not precompute
        analysis.ensemble_accuracy(pub, 3, ["random_us", "l1_s"], method="mean_prob")
    msg = str(err.value)
    assert "\n" not in msg and "method='vote'" in msg and "python -m pruning run" in msg
    assert analysis.ensemble_accuracy(pub, 3, ["random_us", "l1_s"], method="vote").notna().all()
    shutil.copytree(smoke_set, smoke_set.parent / "fewer")  # a set whose ensembles stop at iteration 3
    for seed in (0, 1):
        path = smoke_set.parent / "fewer" / "data" / f"seed_{seed}" / "test.npz"
        with np.load(path) as z:
            kept = {k: z[k] for k in z.files if not k.startswith("ensemble.") or int(k.split(".")[2]) <= 3}
        np.savez_compressed(path, **kept)
    fewer = analysis.load(smoke_set.parent / "fewer")
    with pytest.raises(analysis.ParameterError) as err:
        analysis.ensemble_accuracy(fewer, 5, ["l1_us", "hybrid", "fc_only_l1_us"], method="mean_prob")
    assert "\n" not in str(err.value) and "only at iterations 0-3" in str(err.value)


def test_the_data_card_lists_every_array_with_its_dtype_and_shape_and_the_size_of_each_part(smoke_set):
    card = (smoke_set / "data" / "README.md").read_text()
    with np.load(smoke_set / "data" / "seed_0" / sorted(p.name for p in (smoke_set / "data" / "seed_0").glob("*.*.npz"))[0]) as z:
        for k in z.files:
            assert f"`{k}`: {z[k].dtype} {tuple(z[k].shape)}" in card
    sizes = {m.group(1): int(m.group(2).replace(",", "")) for m in re.finditer(r"\| (\w[\w ]*) \| ([\d,]+) \|", card)}
    total = sum(p.stat().st_size for p in (smoke_set / "data").rglob("*") if p.is_file() and p.name != "README.md")
    assert sizes["total"] == total
    assert {"masks", "predictions", "weights", "stability", "ensembles", "tables"} <= set(sizes)
    assert sum(v for k, v in sizes.items() if k != "total") == pytest.approx(total, rel=0.02)


@pytest.mark.slow  # reads the smoke results
def test_a_set_grows_seed_by_seed_and_never_rewrites_a_published_seed(tmp_path, monkeypatch):
    target = tmp_path / "docs" / "smoke"
    real = export.finished_seeds
    monkeypatch.setattr(export, "finished_seeds", lambda results, exp: [0])  # as if seed 1 were still training
    assert export.add_seeds(RESULTS, target) == [0]
    export.write_derived(RESULTS, target)
    assert sorted(store.load_results(target)["seed"].unique()) == [0]
    assert json.loads((target / "experiment.json").read_text())["published_seeds"] == [0]
    from pruning.reporting import quoted
    assert quoted.variables(target)["seeds_scope"] == "seeds 0 of the config's 0-1; more are added as they are trained"
    assert store.runs_finished(target) == (len(store.load_results(RESULTS)) // 7 // 2, len(store.load_results(RESULTS)) // 7)
    seed0 = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (target / "data" / "seed_0").iterdir()}
    monkeypatch.setattr(export, "finished_seeds", real)
    assert export.add_seeds(RESULTS, target) == [1]
    assert export.add_seeds(RESULTS, target) == []
    export.write_derived(RESULTS, target)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (target / "data" / "seed_0").iterdir()} == seed0
    assert sorted(store.load_results(target)["seed"].unique()) == [0, 1]
    assert len(pd.read_csv(target / "results.csv")) == len(store.load_results(RESULTS))
    assert not [p for p in (target / "data").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_seeds_of_another_config_are_a_one_line_error_before_anything_is_written(smoke_set, tmp_path):
    target = tmp_path / "smoke"
    shutil.copytree(smoke_set, target)
    exp = json.loads((target / "experiment.json").read_text())
    exp["config_hash"] = "0123456789ab"
    (target / "experiment.json").write_text(json.dumps(exp))
    shutil.rmtree(target / "data" / "seed_1")
    with pytest.raises(ReportError) as err:
        export.add_seeds(RESULTS, target)
    assert "\n" not in str(err.value) and "another config" in str(err.value)
    assert store.published.seeds(target) == [0]


@pytest.mark.slow
def test_papermill_runs_a_notebook_on_a_published_set_with_no_run_store(smoke_set, tmp_path):
    moved = tmp_path / "elsewhere" / "smoke"
    shutil.copytree(smoke_set, moved)
    out = tmp_path / "agreement.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "agreement.ipynb"), str(out),
                           "-p", "results", str(moved), "-p", "iteration", "3", "--cwd", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "iteration 3" in text
    bad = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "weight_stability.ipynb"),
                          str(tmp_path / "ws.ipynb"), "-p", "results", str(moved), "-p", "layer", "fc1",
                          "--cwd", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "stores no trained weights of layer 'fc1'" in bad.stderr and "python -m pruning run" in bad.stderr


def _text(html_path: Path) -> list[str]:
    """The words of a rendered page, images and markup removed."""
    text = re.sub(r"data:[^\"')]+", "", html_path.read_text())
    return re.sub(r"<[^>]+>", " ", text).split()


@pytest.mark.slow
def test_a_set_published_and_rendered_from_its_data_quotes_what_the_run_store_report_quotes(tmp_path, monkeypatch):
    """``publish`` renders from the published data; its paper and poster say word for word what the report of
    ``results/smoke`` (rendered by the test command into build/smoke/report) says."""
    from pruning.core import paths
    from pruning.reporting import notebooks, publish

    monkeypatch.setattr(notebooks, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    docs = tmp_path / "docs"
    target = publish.publish(RESULTS, docs=docs, quiet=True)
    assert sorted(p.name for p in target.iterdir()) == ["data", "experiment.json", "figures", "paper.html",
                                                         "poster.html", "results.csv"]
    beside_store = REPO / "build" / "smoke" / "report" / "figures"
    assert sorted(p.name for p in (target / "figures").iterdir()) == sorted(p.name for p in beside_store.iterdir())
    index = (docs / "index.html").read_text()
    assert 'href="smoke/paper.html"' in index and 'href="smoke/data/README.md"' in index
    n = len(store.load_results(RESULTS)) // 7  # runs: 7 trainings each
    assert f"{n} of {n} runs, {7 * n} trainings, seeds [0, 1] of [0, 1]" in index
    for page in ("paper", "poster"):
        # dates masked: the render date is part of the page, and the two renders may fall on either side of midnight
        assert _words(target / f"{page}.html") == _words(REPO / "build" / "smoke" / "report" / f"{page}.html"), page
    # rendered from the published set alone: test_a_committed_paper_and_poster_are_what_the_committed_data_renders


def _words(path: Path) -> list[str]:
    """A page's words with dates masked (the render date is part of the page)."""
    return [re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", w) for w in _text(path)]


COMMITTED = sorted(p.parent for p in (REPO / "docs").glob("*/data") if (p.parent / "paper.html").exists())


@pytest.mark.slow
@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_a_committed_paper_and_poster_are_what_the_committed_data_renders(folder, tmp_path, monkeypatch):
    """The published report cannot go stale: rendered again here from the committed data alone (no run store),
    the paper and the poster say word for word what the committed pages say."""
    from pruning.core import paths
    from pruning.reporting import notebooks, publish

    monkeypatch.setattr(notebooks, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")
    pages = publish._render(folder, "auto", quiet=True)
    tables = sorted(name for name in pages if name.endswith(".csv"))
    assert sorted(set(pages) - set(tables)) == ["paper.html", "poster.html"]
    assert tables == sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.csv"))  # none stale, none missing
    for name, rendered in pages.items():
        if name in tables:
            _same_table(rendered, folder / name)
        else:
            assert _words(rendered) == _words(folder / name), name


def _same_table(a: Path, b: Path) -> None:
    """Two CSV tables hold the same rows: words equal, numbers equal within float rounding (another CPU's sums)."""
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and x.shape == y.shape, b
    for column in x.columns:
        if pd.api.types.is_numeric_dtype(x[column]) and pd.api.types.is_numeric_dtype(y[column]):
            assert np.allclose(x[column], y[column], rtol=1e-4, atol=1e-6, equal_nan=True), (b, column)
        else:
            assert x[column].fillna("").astype(str).tolist() == y[column].fillna("").astype(str).tolist(), (b, column)


def test_the_paper_scale_set_is_published_with_its_data():
    """The parametrised test above has at least the paper-scale set to render (it is never skipped for lack of one)."""
    assert "paper_lenet_mnist_cpu" in [p.name for p in COMMITTED]
    exp = json.loads((REPO / "docs" / "paper_lenet_mnist_cpu" / "experiment.json").read_text())
    assert exp["published_seeds"] == store.published.seeds(REPO / "docs" / "paper_lenet_mnist_cpu")
    sizes = store.published.sizes(REPO / "docs" / "paper_lenet_mnist_cpu")
    assert sizes["total"] <= 10e6 * len(exp["published_seeds"])  # the 100 MB budget for 10 seeds, seed by seed


@pytest.mark.slow  # computes each LeNet set's findings at 18 pruning steps
def test_the_committed_index_is_what_the_committed_sets_write(tmp_path):
    """docs/index.html holds each set's findings in one line, its scale and wall time: written again here from the
    committed sets alone, it says word for word what the committed page says (no number in it is typed)."""
    from pruning.reporting import publish

    docs = tmp_path / "docs"
    docs.mkdir()
    for entry in (REPO / "docs").iterdir():
        if entry.name not in ("index.html", ".nojekyll"):
            (docs / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    written = publish.write_index(docs)
    assert _words(written) == _words(REPO / "docs" / "index.html")


def test_a_sensitivity_variant_publishes_only_its_finished_seeds(tmp_path):
    """A variant published while a seed still trains keeps that seed's rows out; with none finished, one line."""
    from conftest import write_config
    from pruning.execution import runner
    from pruning.nets import config
    from pruning.reporting import publish

    cfg = config.load_experiment(write_config(tmp_path / "variant.yaml", techniques=["l1_us"], reinit=["rewind"],
                                              seeds=[0, 1], iterations=1,
                                              data={"train_subset": 200, "val_subset": 100, "test_subset": 200}))
    results = tmp_path / "results"
    runner.run_experiment(cfg, results, quiet=True, device="cpu", workers=1)
    unfinished = [r for r in store.read_experiment(results)["runs"] if r["seed"] == 1]
    for run in unfinished:  # seed 1 as if still training: its rows are there, its done marks are not
        (results / f"run_{run['hash']}" / "done.json").unlink()
    target = publish.sensitivity(results, "variant", docs=tmp_path / "docs")
    table = pd.read_csv(target / "results.csv")
    assert sorted(set(table["seed"])) == [0] and len(table) == 2
    for run in store.read_experiment(results)["runs"]:
        (results / f"run_{run['hash']}" / "done.json").unlink(missing_ok=True)
    with pytest.raises(ReportError, match="no seed whose runs are all finished"):
        publish.sensitivity(results, "variant", docs=tmp_path / "docs")
