"""AlexNet/VGG11 conv2: reduced records (bit-packed masks of chosen layers), emptied kernels, companion figures."""
from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pruning import analysis, store
from pruning.reporting import companions, notebooks
from pruning.nets import models
from pruning.store import records
from pruning.execution import runner
from pruning.nets.config import load_experiment
from conftest import write_config


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5, 5), (16, 6, 3, 3), (10, 84)])
def test_bit_packing_round_trips_and_takes_one_bit_per_entry(shape):
    g = torch.Generator().manual_seed(sum(shape))
    mask = torch.rand(shape, generator=g) < 0.3
    packed = records.pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(mask.numel() / 8)
    assert torch.equal(records.unpack_bits(packed, shape), mask)


def test_bit_packing_uses_numpys_bit_order():
    mask = torch.tensor([True, False, False, False, False, False, False, True, True])
    assert records.pack_bits(mask).tolist() == [0b10000001, 0b10000000]


def test_emptied_kernels_are_counted_on_a_hand_built_mask():
    mask = torch.ones(3, 2, 2, 2, dtype=torch.bool)
    mask[0, 0] = False             # kernel (0, 0) empty
    mask[1, :] = False             # filter 1 empty: kernels (1, 0) and (1, 1)
    mask[2, 1, 0, 0] = False       # one entry only: not empty
    counts = analysis.empty_kernels(mask)
    assert counts == {"kernels": 6, "empty_kernels": 3, "filters": 3, "empty_filters": 1, "inputs": 2,
                      "empty_inputs": 0}
    # 13 of 24 entries pruned: a random mask empties a 4-entry kernel with (13/24)**4
    assert analysis.chance_empty_fraction(mask) == pytest.approx((13 / 24) ** 4)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A tiny LeNet set and a tiny AlexNet set beside it (results/lenet_tiny, results/alexnet_mnist_cpu)."""
    root = tmp_path_factory.mktemp("conv2")
    common = dict(techniques=["l1_us", "l1_s"], reinit=["rewind", "finetune"], reinit_techniques={"finetune": ["l1_us"]})
    lenet = load_experiment(write_config(root / "lenet_tiny.yaml", **common,
                                         data={"train_subset": 320, "val_subset": 100, "test_subset": 200}))
    alex = load_experiment(write_config(
        root / "alexnet_mnist_cpu.yaml", arch="alexnet", **common,
        data={"train_subset": 64, "val_subset": 32, "test_subset": 64, "input_size": 63},
        store={"weights": ["features.3"], "masks": ["features.0", "features.3"]}))
    runner.run_experiment(lenet, root / "results" / "lenet_tiny", quiet=True)
    runner.run_experiment(alex, root / "results" / "alexnet_mnist_cpu", quiet=True)
    yield root / "results" / "lenet_tiny", root / "results" / "alexnet_mnist_cpu"
    shutil.rmtree(root, ignore_errors=True)  # four AlexNet checkpoints, about 1 GB


@pytest.mark.slow
def test_reduced_records_keep_the_chosen_layers_bit_packed_and_the_checkpoint_keeps_every_mask(sets):
    _, alex = sets
    table = store.load_results(alex)
    assert len(table) == 9 and set(table["technique"]) == {"l1_us", "l1_s"}
    raw = torch.load(io.BytesIO(open(table["file"].iloc[-1], "rb").read()), weights_only=True)
    assert set(raw["packed_masks"]) == {"features.0", "features.3"} and "masks" not in raw
    assert raw["packed_masks"]["features.3"].dtype == torch.uint8
    assert raw["packed_masks"]["features.3"].numel() == 192 * 64 * 25 // 8
    rec = store.load_training(table.iloc[-1])
    assert set(rec["masks"]) == {"features.0", "features.3"} and rec["masks"]["features.3"].dtype == torch.bool
    assert set(rec["weights"]) == {"features.3.weight", "features.3.bias"}
    layers = [n for n, _ in models.prunable_layers(models.build_meta("alexnet"))]
    ckpt = store.RunStore(alex, load_experiment_runs(alex)[0]).checkpoint()
    assert list(ckpt["masks"]) == layers and all(m.dtype == torch.bool for m in ckpt["masks"].values())
    # the stored conv2 mask is the one the run prunes with: 20% of what remains per step
    for _, row in table.iterrows():
        kept = int(store.load_training(row)["masks"]["features.3"].sum())
        assert kept == row["remaining.features.3"]


def load_experiment_runs(folder):
    from pruning.nets.config import ExperimentConfig, _build

    exp = json.loads((folder / "experiment.json").read_text())
    return _build(ExperimentConfig, exp["config"], "", "experiment.json").runs()


@pytest.mark.slow
def test_reduced_records_feed_the_filter_analysis(sets):
    _, alex = sets
    table = analysis.load(alex)
    kernels = analysis.filter_kernels(table, "l1_s", reinit="rewind", layer="features.3")
    assert set(kernels) == {0, 1, 2} and kernels[2].shape == (192, 64, 5, 5)
    curve = analysis.empty_kernel_curve(table, "features.3")
    assert len(curve) == 9
    for _, row in curve.iterrows():
        mask = store.load_training(table[(table.technique == row.technique) & (table.reinit == row.reinit)
                                         & (table.iteration == row.iteration)].iloc[0])["masks"]["features.3"]
        assert row.empty_kernels == int((~mask.flatten(2).any(2)).sum())
    # L1 structured pruning removes whole filters: 20% of 192, then 20% of the 154 left
    s = curve[curve.technique == "l1_s"].set_index("iteration")["empty_kernels"]
    assert s[1] == 38 * 64 and s[2] == (38 + 31) * 64
    with pytest.raises(analysis.ParameterError, match="stores no mask of layer 'features.6'"):
        analysis.empty_kernel_curve(table, "features.6")


@pytest.mark.slow
def test_a_lenet_report_runs_the_filters_notebook_on_its_companions(sets, tmp_path, monkeypatch):
    monkeypatch.setattr(notebooks, "BUILD_DIR", tmp_path / "build")  # not the repository's build/
    lenet, alex = sets
    assert companions.find(lenet) == {"alexnet": alex}
    assert companions.find(alex) == {}  # a companion has no companions
    done = notebooks.execute_all(lenet, notebooks=["filters"], quiet=True)
    assert [p.name for p in done] == ["filters.ipynb", "filters_alexnet.ipynb"]
    nb = json.loads(done[1].read_text())
    labels = {line.split(":", 1)[1].strip() for c in nb["cells"] for line in "".join(c["source"]).splitlines()
              if line.startswith("#| label:")}
    assert labels == {"fig-filters-alexnet", "fig-empty-kernels-alexnet"}
    params = json.loads(done[1].with_name("filters_alexnet.inputs.json").read_text())["parameters"]
    assert params == {"results": str(alex), "layer": "features.3"}
    text = companions.section(companions.find(lenet))
    assert "{{< embed notebooks/filters_alexnet.ipynb#fig-filters-alexnet >}}" in text
    assert "AlexNet features.3 (12,288 kernels) after 2 pruning steps" in text and "a random mask of its sparsity" in text
    assert "VGG11 conv2: not in this build" in text and "make conv2" in text


@pytest.mark.slow
def test_the_report_sources_get_the_companions_section_where_their_marker_is(sets, tmp_path):
    from pruning.reporting import report

    lenet, alex = sets
    staged = report.stage(tmp_path / "build", {}, companions.find(lenet))
    paper = (staged / "paper.qmd").read_text()
    poster = (staged / "poster.qmd").read_text()
    assert companions.MARKER not in paper and companions.MARKER not in poster
    for text in (paper, poster):
        assert "{{< embed notebooks/filters_alexnet.ipynb#fig-filters-alexnet >}}" in text
        assert "VGG11 conv2: not in this build" in text
    assert "#fig-empty-kernels-alexnet" in paper and "#fig-empty-kernels-alexnet" not in poster
    alone = report.stage(tmp_path / "build2", {}, {})
    assert "AlexNet and VGG11 conv2: not in this build" in (alone / "paper.qmd").read_text()


@pytest.mark.slow
def test_a_companion_set_publishes_a_page_of_figures_and_the_index_links_it(sets, tmp_path, monkeypatch):
    from pruning.reporting import publish

    monkeypatch.setattr(notebooks, "BUILD_DIR", tmp_path / "build")

    _, alex = sets
    target = publish.publish(alex, docs=tmp_path / "docs", quiet=True)
    assert sorted(p.name for p in target.iterdir()) == ["data", "experiment.json", "figures", "figures.html",
                                                        "results.csv"]
    page = (target / "figures.html").read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 2
    for label in ("fig-filters", "fig-empty-kernels"):  # each figure's numbers beside the page, linked
        assert f'<a href="figures/{label}.csv">' in page
        assert (target / "figures" / f"{label}.csv").read_text().startswith("panel,")
    assert "AlexNet features.3 (12,288 kernels) after 2 pruning steps" in page
    assert "KB a training" in page and 'href="data/README.md"' in page
    with np.load(target / "data" / "seed_0" / "l1_us.rewind.npz") as z:  # what its figures read: conv2 in float16
        assert z["weight.features.3"].dtype == np.float16 and "weight.features.0" not in z.files
        assert {"mask.features.0", "mask.features.3"} <= set(z.files)
    index = (tmp_path / "docs" / "index.html").read_text()
    assert 'href="alexnet_mnist_cpu/figures.html"' in index and "alexnet_mnist_cpu/paper.html" not in index


@pytest.mark.slow  # trains a tiny AlexNet set (the module's fixture)
def test_the_companion_numbers_say_when_the_dense_net_is_below_its_pruned_descendants(sets):
    _, alex = sets
    table = store.load_results(alex)
    text = companions.numbers(alex, "alexnet")
    below = float(table[table.iteration > 0].test_acc.max()) > float(table[table.iteration == 0].test_acc.mean())
    epochs = json.loads((alex / "experiment.json").read_text())["config"]["training"]["epochs"]
    assert ("is below its pruned descendants" in text) == below
    assert (f"every training here lasts {epochs} epoch" in text) == below


def _rows(rewind, finetune, chance):
    return pd.DataFrame({"technique": ["l1_us", "l1_us", "l1_s"], "reinit": ["rewind", "finetune", "rewind"],
                         "empty": [rewind, finetune, 0.9], "chance": [chance, chance, 0.05]})


def test_a_companion_is_read_against_q5s_rule_in_both_directions():
    # AlexNet's published numbers: fine-tuning empties more kernels than rewinding (the poster's claim reversed)
    text = companions._rule(_rows(0.068, 0.205, 0.058))
    assert "here -13.7 and +1.0 points" in text
    assert "not the poster's pattern (fine-tuning empties more kernels than rewinding)" in text
    # rewinding below a random mask, above fine-tuning
    text = companions._rule(_rows(0.30, 0.20, 0.35))
    assert "here +10.0 and -5.0 points" in text and "(rewinding empties no more than a random mask)" in text
    assert "both above 0, the poster's direction" in companions._rule(_rows(0.5, 0.2, 0.1))
    assert companions._rule(_rows(0.5, 0.2, 0.1)[lambda d: d.reinit == "rewind"]) == ""  # no fine-tuned run: no reading
