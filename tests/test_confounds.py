"""Confounds of the findings (analysis.confounds), hidden-unit alignment and the noise floor (analysis.noise), on
inputs built by hand; expected values are worked out in the comments from the definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pruning import analysis as A
from pruning.analysis import confounds, findings as F, noise, readings

from test_report import make_results

LENET = {"conv1": (6, 1, 3, 3), "conv2": (16, 6, 3, 3), "fc1": (120, 400), "fc2": (84, 120), "fc3": (10, 84)}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return A.load(make_results(tmp_path_factory.mktemp("confounds") / "synthetic"))


def _collapse(table, technique, iteration):
    t = table.copy()
    t.loc[(t["technique"] == technique) & (t["iteration"] == iteration), "train_loss"] = math.log(10)
    return t


# ----------------------------------------------------------------------------- collapsed trainings


def test_wilson_interval_by_hand():
    # k = 0, n = 10: centre z²/2n / (1 + z²/n) = 0.19207 / 1.38415 = 0.13876, half the same -> [0, 27.75]%
    low, high = confounds.wilson(0, 10)
    assert low == pytest.approx(0.0) and high == pytest.approx(27.75, abs=0.01)
    # k = 5, n = 10: centre 0.5, half 1.96 * sqrt(0.025 + 0.009604) / 1.38415 = 0.26335 -> [23.66, 76.34]%
    low, high = confounds.wilson(5, 10)
    assert (low, high) == pytest.approx((23.66, 76.34), abs=0.01)
    assert all(math.isnan(x) for x in confounds.wilson(0, 0))


def test_collapse_rates_count_each_technique_and_iteration(table):
    t = _collapse(table, "random_us", 2)
    r = confounds.collapse_rates(t, "rewind").set_index(["technique", "iteration"])
    assert r.loc[("random_us", 2), "collapsed"] == 2 and r.loc[("random_us", 2), "trainings"] == 2
    assert r.loc[("random_us", 2), "rate"] == 100.0 and r.loc[("random_us", 1), "collapsed"] == 0
    assert r.loc[("l1_us", 2), "rate"] == 0.0


def test_a_collapsed_training_is_left_out_of_the_findings_that_compare_masks_functions_or_weights(table):
    """Findings 1, 4, 6 and 7 leave a collapsed training out; 2, 3 and 5, whose quantity is an accuracy, keep it and
    count it (a collapse is the loss of accuracy itself)."""
    t = _collapse(table, "l2_s", 2)
    tickets = F.finding_tickets(t, 2, "rewind")
    # L2 S collapsed in both seeds at iteration 2 (its accuracy unchanged, so it still "keeps the dense accuracy"):
    # its pairs with L1 US, the only other candidate, are out, and no pair is left to read
    assert not tickets.measures and tickets.verdict == "inconclusive"
    assert tickets.note.startswith("Every pair of these techniques had a collapsed training (2 pairs over seeds)")
    functions = F.finding_functions(t, 2, "rewind")
    assert "6 of 12 pairs (over seeds) left out because a training collapsed" in functions.measures[0].baseline
    stability = F.finding_stability(t, 2, "rewind")
    assert stability.measures[0].condition.startswith("3 techniques")
    l1 = _collapse(table, "l1_us", 2)
    connectivity = F.finding_connectivity(l1, 2)
    assert connectivity.measures[0].summary.n == 0  # both seeds of L1 US collapsed: nothing left to compare
    assert "4 of 4 trainings collapsed and are left out" in connectivity.measures[0].baseline
    variety = F.winning(t, 2, "rewind")["l2_s"]
    assert variety.summary.n == 2 and "2 of 2 trainings collapsed (kept" in variety.baseline


# ----------------------------------------------------------------------------- output classes, similar pairs


def test_finding_3_on_the_classes_both_can_output(table):
    d = confounds.class_differences(table, "rewind").set_index(["seed", "iteration"])
    # iteration 2 (see test_findings): random S keeps output unit 1 only, random US both -> class 1 = image 1:
    # random S wrong (0%), random US right (100%) -> -100; on every image 50 - 30 = 20
    assert d.loc[(0, 2), "shared"] == pytest.approx(-100.0) and d.loc[(0, 2), "all"] == pytest.approx(20.0)
    assert d.loc[(0, 2), "classes"] == 1 and d.loc[(0, 1), "classes"] == 2


def test_similar_pairs_are_those_within_two_points():
    import pandas as pd
    pairs = pd.DataFrame({"acc_a": [0.90, 0.90, 0.95], "acc_b": [0.885, 0.85, 0.95]})
    assert list(confounds.similar(pairs).index) == [0, 2]


def test_unstructured_techniques_are_those_without_a_structured_rule():
    assert confounds.unstructured(["l1_us", "l1_s", "hybrid", "random_us", "fc_only_l1_us"]) == [
        "l1_us", "random_us", "fc_only_l1_us"]


# ----------------------------------------------------------------------------- alignment and the noise floor


def _permuted(masks, rng):
    p1, p2, p3, p4 = (rng.permutation(k) for k in (6, 16, 120, 84))
    return {"conv1": masks["conv1"][p1], "conv2": masks["conv2"][p2][:, p1],
            "fc1": masks["fc1"].reshape(120, 16, 25)[p3][:, p2].reshape(120, 400),
            "fc2": masks["fc2"][p4][:, p3], "fc3": masks["fc3"][:, p4]}


def test_the_aligned_distance_of_a_network_and_its_hidden_unit_permutation_is_zero():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.05):
        a = {n: torch.from_numpy(rng.random(s) < density) for n, s in LENET.items()}
        b = _permuted(a, rng)
        assert noise.layer_distances(a, b)["layers"] > 0.5  # unaligned, the permutation looks like another mask
        aligned = noise.align(a, b)
        assert all(d == 0.0 for d in noise.layer_distances(a, aligned).values())
        assert all(int(aligned[n].sum()) == int(b[n].sum()) for n in LENET)  # a permutation keeps every weight


def test_alignment_brings_random_masks_closer_than_chance_but_not_to_zero():
    """Aligning two unrelated random masks still finds some overlap: that is the aligned seeds' baseline."""
    rng = np.random.default_rng(1)
    a = {n: torch.from_numpy(rng.random(s) < 0.2) for n, s in LENET.items()}
    b = {n: torch.from_numpy(rng.random(s) < 0.2) for n, s in LENET.items()}
    before, after = noise.layer_distances(a, b)["layers"], noise.layer_distances(a, noise.align(a, b))["layers"]
    assert 0.2 < after < before


def test_the_noise_floor_raises_finding_1s_threshold(table):
    plain = F.finding_tickets(table, 2, "rewind")
    assert plain.measures[0].threshold == 0.5 and plain.verdict == "supported"  # 0.6 > 0.5 (test_findings)
    floored = F.finding_tickets(table, 2, "rewind", floors={"l1_us": 0.7, "l2_s": 0.3})
    # a rerun of L1 US alone moves its mask 0.7 of the random distance: 0.6 apart is no longer different tickets
    assert floored.measures[0].threshold == pytest.approx(0.7) and floored.verdict == "not supported"


def test_rerun_floors_of_a_set_against_itself_are_zero(table):
    floors = noise.rerun_floors(table, [table], "rewind", 2, techniques=["l1_us", "l2_s"])
    assert floors == {"l1_us": 0.0, "l2_s": 0.0}


def test_readings_mark_the_reading_each_verdict_uses(table):
    r = readings.readings(table, 2, "rewind")
    used = r[r["verdicts"]]
    assert set(used["finding"]) == {"tickets", "random", "functions", "stability"}
    random = r[r["finding"] == "random"].set_index("reading")
    assert random.loc["every test image", "mean"] == pytest.approx(10.0)  # 0 and 20 at iterations 1, 2
    assert random.loc["classes both can still output", "mean"] == pytest.approx(-50.0)
