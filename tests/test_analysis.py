"""Tests of pruning/analysis.py.

Most tests read a synthetic results folder written with the run store's own writers, holding masks,
weights and test-set logits chosen by hand (see ``SYNTH`` below), so every expected value is worked
out by hand in the comments. One slow test runs the real runner on a tiny config and checks invariants.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pruning import analysis as A
from pruning import store
from pruning.nets.config import DataConfig, ExperimentConfig, TrainingConfig

# ----------------------------------------------------------------------------- the synthetic folder
# Two prunable "layers": a (2x2, flattened below as a0..a3) and b (1x2). 6 weights in all.
# Three techniques x {rewind, finetune} x seeds {0, 1}, iterations 0..2.

ALL = ([1, 1, 1, 1], [1, 1])
MASKS = {  # (technique, seed, iteration) -> (mask a, mask b) for rewind
    ("l1_us", 0, 1): ([1, 1, 0, 0], [1, 1]), ("l1_us", 0, 2): ([1, 0, 0, 0], [1, 1]),
    ("l1_s", 0, 1): ([1, 1, 1, 0], [1, 0]), ("l1_s", 0, 2): ([1, 0, 0, 0], [1, 0]),
    ("hybrid", 0, 1): ([0, 0, 1, 1], [1, 1]), ("hybrid", 0, 2): ([0, 0, 1, 0], [1, 1]),
    # seed 1: l1_s finds the same masks as l1_us; hybrid the same as with seed 0
    ("l1_us", 1, 1): ([1, 1, 0, 0], [1, 1]), ("l1_us", 1, 2): ([1, 0, 0, 0], [1, 1]),
    ("l1_s", 1, 1): ([1, 1, 0, 0], [1, 1]), ("l1_s", 1, 2): ([1, 0, 0, 0], [1, 1]),
    ("hybrid", 1, 1): ([0, 0, 1, 1], [1, 1]), ("hybrid", 1, 2): ([0, 0, 1, 0], [1, 1]),
}
FINETUNE_DIFFERS = {("l1_us", 0, 2): ([0, 1, 0, 0], [1, 1])}  # every other finetune mask = the rewind one

# l1_us: hand-made trained weights (values of a, values of b) at iterations 0, 1, 2 (both seeds).
L1_US_WEIGHTS = {0: ([1.0, -2.0, 3.0, 0.5], [1.0, 1.0]),
                 1: ([1.5, -2.5, 0.0, 0.0], [2.0, 1.0]),
                 2: ([1.0, 0.0, 0.0, 0.0], [2.0, 3.0])}
# l1_s: weight = mask * (iteration + 1)   -> every surviving weight moves by 1 per iteration
# hybrid: weight = mask * 2 * (iteration + 1) -> by 2

TARGETS = [0, 1, 2, 1]
PROBS = {  # (technique, seed) -> softmax probabilities on the 4 test images (same at every iteration)
    ("l1_us", 0): [[.9, .05, .05], [.1, .8, .1], [.6, .3, .1], [.2, .7, .1]],       # predicts 0 1 0 1: 75 %
    ("l1_s", 0): [[.35, .4, .25], [.1, .2, .7], [.1, .2, .7], [.5, .4, .1]],        # predicts 1 2 2 0: 25 %
    ("hybrid", 0): [[.35, .4, .25], [.2, .5, .3], [.3, .3, .4], [.3, .6, .1]],      # predicts 1 1 2 1: 75 %
}
PROBS[("l1_us", 1)] = PROBS[("l1_us", 0)]
PROBS[("l1_s", 1)] = PROBS[("l1_us", 0)]                                            # 75 %
PROBS[("hybrid", 1)] = PROBS[("hybrid", 0)]
ACC_IT01 = {"l1_us": 75.0, "l1_s": {0: 25.0, 1: 75.0}, "hybrid": 75.0}
ACC_IT2 = {"l1_us": 50.0, "l1_s": 40.0, "hybrid": 10.0}  # = 70 - 30 * stability, see test_stability_vs_accuracy


def _mask(pair):
    return {"a": torch.tensor(pair[0], dtype=torch.bool).view(2, 2),
            "b": torch.tensor(pair[1], dtype=torch.bool).view(1, 2)}


def _weights(technique, iteration, masks):
    if technique == "l1_us":
        a, b = L1_US_WEIGHTS[iteration]
        w = {"a": torch.tensor(a).view(2, 2), "b": torch.tensor(b).view(1, 2)}
    else:
        scale = (iteration + 1) * (1 if technique == "l1_s" else 2)
        w = {k: m.float() * scale for k, m in masks.items()}
    out = {f"{k}.weight": (w[k] * masks[k]).float() for k in w}
    out.update({"a.bias": torch.zeros(2), "b.bias": torch.zeros(1)})
    return out


def _accuracy(technique, seed, iteration):
    if iteration == 2:
        return ACC_IT2[technique]
    acc = ACC_IT01[technique]
    return acc[seed] if isinstance(acc, dict) else acc


def write_synthetic(folder):
    cfg = ExperimentConfig(name="synthetic", techniques=["l1_us", "l1_s", "hybrid"], reinit=["rewind", "finetune"],
                           seeds=[0, 1], iterations=2, training=TrainingConfig(epochs=1), data=DataConfig())
    store.write_experiment(folder, cfg, "synthetic", "cpu")
    for rc in cfg.runs():
        st = store.RunStore(folder, rc)
        st.begin()
        st.save_init({})
        for it in range(3):
            key = (rc.technique, rc.seed, it)
            pair = ALL if it == 0 else MASKS[key]
            if rc.reinit == "finetune":
                pair = FINETUNE_DIFFERS.get(key, pair)
            masks = _mask(pair)
            weights = _weights(rc.technique, it, masks)
            logits = torch.tensor(PROBS[rc.technique, rc.seed]).log()
            record = {"iteration": it, "masks": masks, "weights": weights, "logits": logits,
                      "predictions": logits.argmax(1).to(torch.uint8),
                      "targets": torch.tensor(TARGETS, dtype=torch.uint8)}
            kept = {k: int(m.sum()) for k, m in masks.items()}
            metrics = {"iteration": it, "sparsity": 1 - sum(kept.values()) / 6, "weights_remaining": sum(kept.values()),
                       "params_remaining": sum(kept.values()) + 3, "remaining": kept,
                       "val_acc": 0.0, "val_loss": 0.0, "test_acc": _accuracy(rc.technique, rc.seed, it),
                       "test_loss": 0.0, "train_loss": 0.0, "seconds": 0.0}
            st.save_training(it, weights, masks=masks, record=record, metrics=metrics)
        st.mark_done({"iterations": 2})
    return folder


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = write_synthetic(tmp_path_factory.mktemp("synthetic") / "synthetic")
    return A.load(folder)


# ----------------------------------------------------------------------------- Jaccard


def test_jaccard_identical_disjoint_partial_and_empty():
    m = lambda *v: torch.tensor(v, dtype=torch.bool)  # noqa: E731
    same = A.jaccard_distance({"x": m(1, 0, 1, 1)}, {"x": m(1, 0, 1, 1)})
    assert same == {"x": 0.0, "all": 0.0}
    disjoint = A.jaccard_distance({"x": m(1, 1, 0, 0)}, {"x": m(0, 0, 1, 1)})
    assert disjoint == {"x": 1.0, "all": 1.0}
    # 2 of 4 kept vs 3 of 4 kept, the 2 inside the 3: |A∩B| = 2, |A∪B| = 3 -> 1/3
    part = A.jaccard_distance({"x": m(1, 1, 0, 0)}, {"x": m(1, 1, 1, 0)})
    assert part["x"] == pytest.approx(1 / 3)
    # an empty layer in both masks counts as identical (0); "all" pools the counts of every layer:
    # x: ∩ 2, ∪ 3; e: ∩ 0, ∪ 0 -> all = 1 - 2/3
    both = A.jaccard_distance({"x": m(1, 1, 0, 0), "e": m(0, 0)}, {"x": m(1, 1, 1, 0), "e": m(0, 0)})
    assert both["e"] == 0.0 and both["all"] == pytest.approx(1 / 3)
    assert A.jaccard_distance({"e": m(0, 0)}, {"e": m(0, 0)}) == {"e": 0.0, "all": 0.0}


def test_jaccard_pools_layers_by_counts_not_by_mean():
    m = lambda *v: torch.tensor(v, dtype=torch.bool)  # noqa: E731
    # x: ∩ 0, ∪ 2 (distance 1); y: ∩ 4, ∪ 4 (distance 0) -> all = 1 - 4/6, not the mean 0.5
    d = A.jaccard_distance({"x": m(1, 0), "y": m(1, 1, 1, 1)}, {"x": m(0, 1), "y": m(1, 1, 1, 1)})
    assert d == {"x": 1.0, "y": 0.0, "all": pytest.approx(1 / 3)}


def test_jaccard_rejects_mismatched_layers():
    with pytest.raises(ValueError):
        A.jaccard_distance({"x": torch.ones(2, dtype=torch.bool)}, {"y": torch.ones(2, dtype=torch.bool)})


# ----------------------------------------------------------------------------- table, check, load


def test_load_reads_the_synthetic_folder(table):
    assert len(table) == 3 * 2 * 2 * 3
    assert A.last_iteration(table) == 2
    assert A.technique_order(table) == ["l1_us", "l1_s", "hybrid"]  # registry order, not alphabetical
    assert A.layer_names(table) == ["a", "b"]


def test_last_iteration_is_the_one_every_run_reached(table):
    unfinished = table[~((table.technique == "l1_s") & (table.seed == 1) & (table.reinit == "finetune")
                         & (table.iteration == 2))]
    assert A.last_iteration(unfinished) == 1


def test_check_names_the_bad_value_and_the_available_ones(table):
    with pytest.raises(A.ParameterError, match=r"iteration 18 is not in .*synthetic \(available: 0-2\)"):
        A.check(table, iteration=18)
    with pytest.raises(A.ParameterError, match=r"unknown technique 'l3_s' \(available: l1_us, l1_s, hybrid\)"):
        A.check(table, techniques="l3_s")
    with pytest.raises(A.ParameterError, match=r"technique 'random_s' is not in"):
        A.check(table, techniques=["l1_us", "random_s"])
    with pytest.raises(A.ParameterError, match=r"reinit 'late_rewind' is not in .*available: finetune, rewind"):
        A.check(table, reinit="late_rewind")
    with pytest.raises(A.ParameterError, match=r"seed 4 is not in .*available: 0-1"):
        A.check(table, seed=4)
    with pytest.raises(A.ParameterError, match=r"unknown layer 'conv1' \(available: a, b, all\)"):
        A.check(table, layer="conv1")
    A.check(table, iteration=2, techniques=["l1_us", "hybrid"], reinit="rewind", seed=1, layer="all")  # no error
    # one line for IPython
    err = A.ParameterError("iteration 18 is not in x")
    assert err._render_traceback_() == ["ParameterError: iteration 18 is not in x"]
    assert isinstance(err, ValueError)


def test_table_functions_raise_parameter_error(table):
    with pytest.raises(A.ParameterError, match="iteration 7"):
        A.mask_distance_matrix(table, 7)
    with pytest.raises(A.ParameterError, match="unknown technique 'l3_s'"):
        A.agreement_matrix(table, 1, techniques=["l1_us", "l3_s"])
    with pytest.raises(A.ParameterError, match="unknown technique 'nope'"):
        A.ensemble_accuracy(table, 1, ["nope"])
    with pytest.raises(A.ParameterError, match="unknown ensemble method"):
        A.ensemble_accuracy(table, 1, ["l1_us"], method="median")
    with pytest.raises(A.ParameterError, match="seed 3"):
        A.weight_traces(table, "l1_us", seed=3, layer="a")
    with pytest.raises(A.ParameterError, match="not a conv layer"):
        A.filter_kernels(table, "l1_us", layer="a")


def test_load_missing_empty_and_non_results_folders(tmp_path):
    with pytest.raises(A.ParameterError, match=r"results folder .*nowhere does not exist"):
        A.load(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(A.ParameterError, match="not a results folder"):
        A.load(tmp_path / "plain")
    cfg = ExperimentConfig(name="empty", techniques=["l1_us"], iterations=1)
    store.write_experiment(tmp_path / "empty", cfg, "test", "cpu")
    with pytest.raises(A.ParameterError, match="holds no finished training"):
        A.load(tmp_path / "empty")


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_summary(table):
    s = A.accuracy_summary(table)
    assert list(s.columns) == ["technique", "reinit", "iteration", "sparsity", "mean", "std", "n"]
    row = s[(s.technique == "l1_s") & (s.reinit == "rewind") & (s.iteration == 1)].iloc[0]
    # seeds 25 % and 75 %: mean 50, std (ddof 1) = sqrt(2 * 25^2) = 35.355...
    assert row["mean"] == pytest.approx(50.0) and row["std"] == pytest.approx(25 * math.sqrt(2)) and row["n"] == 2
    assert row["sparsity"] == pytest.approx(2 / 6)  # both seeds keep 4 of 6
    one = A.accuracy_summary(table[table.seed == 0])
    assert (one["std"] == 0).all() and (one["n"] == 1).all()  # a single seed: std 0, not NaN
    assert list(one.technique.unique()) == ["l1_us", "l1_s", "hybrid"]


# ----------------------------------------------------------------------------- mask distances


def test_mask_distance_matrix_by_hand(table):
    d = A.mask_distance_matrix(table, 1)
    assert list(d.index) == list(d.columns) == ["l1_us", "l1_s", "hybrid"]
    assert np.allclose(np.diag(d.values), 0.0)
    assert np.allclose(d.values, d.values.T)
    # l1_us vs l1_s: seed 0: ∩ 3, ∪ 5 -> 0.4; seed 1: identical -> 0; mean 0.2
    assert d.loc["l1_us", "l1_s"] == pytest.approx(0.2)
    # l1_us vs hybrid: both seeds ∩ 2 (b), ∪ 6 -> 2/3
    assert d.loc["l1_us", "hybrid"] == pytest.approx(2 / 3)
    assert d.loc["l1_s", "hybrid"] == pytest.approx(2 / 3)
    a = A.mask_distance_matrix(table, 1, layer="a")
    # layer a: us/s seed 0 ∩ 2 ∪ 3 -> 1/3, seed 1 -> 0; s/hybrid seed 0: ∩ 1 ∪ 4 -> 3/4, seed 1: disjoint -> 1
    assert a.loc["l1_us", "l1_s"] == pytest.approx(1 / 6)
    assert a.loc["l1_us", "hybrid"] == pytest.approx(1.0)
    assert a.loc["hybrid", "l1_s"] == pytest.approx(7 / 8)
    dense = A.mask_distance_matrix(table, 0, techniques=["hybrid", "l1_us"])
    assert list(dense.index) == ["hybrid", "l1_us"] and (dense.values == 0).all()


def test_mask_distance_curve_by_hand(table):
    c = A.mask_distance_curve(table, pairs=[("l1_us", "l1_s")])
    assert list(c.columns)[:6] == ["technique_a", "technique_b", "iteration", "sparsity", "mean", "std"]
    assert list(c.iteration) == [0, 1, 2]
    assert list(c["mean"]) == pytest.approx([0.0, 0.2, 1 / 6])  # iteration 2: seed 0 ∩ 2 ∪ 3 -> 1/3, seed 1 -> 0
    assert list(c["std"]) == pytest.approx([0.0, 0.4 / math.sqrt(2), (1 / 3) / math.sqrt(2)])
    # iteration 2 sparsity: l1_us 3/6 (both seeds), l1_s 4/6 (seed 0) and 3/6 (seed 1) -> mean 13/24
    assert c["sparsity"].iloc[2] == pytest.approx(13 / 24)
    every = A.mask_distance_curve(table)
    assert len(every) == 3 * 3  # 3 pairs x 3 iterations
    pairs = set(zip(every.technique_a, every.technique_b))
    assert pairs == {("l1_us", "l1_s"), ("l1_us", "hybrid"), ("l1_s", "hybrid")}
    row = every[(every.technique_a == "l1_s") & (every.technique_b == "hybrid") & (every.iteration == 2)].iloc[0]
    # seed 0: ∩ 1 (b0) ∪ 4 -> 3/4; seed 1 (l1_s = l1_us): ∩ 2 ∪ 4 -> 1/2
    assert row["mean"] == pytest.approx(5 / 8)


def test_rewind_vs_finetune_by_hand(table):
    r = A.rewind_vs_finetune(table)
    us = r[r.technique == "l1_us"].set_index("iteration")
    # identical masks up to iteration 1; at 2, seed 0: a=[1,0,0,0] vs [0,1,0,0], b kept: ∩ 2 ∪ 4 -> 1/2; seed 1: 0
    assert list(us["mean"]) == pytest.approx([0.0, 0.0, 0.25])
    assert us.loc[2, "std"] == pytest.approx(0.5 / math.sqrt(2))
    assert (r.loc[r.technique != "l1_us", "mean"] == 0).all()
    assert list(r.technique.unique()) == ["l1_us", "l1_s", "hybrid"]


# ----------------------------------------------------------------------------- agreement and ensembles


def test_agreement_matrix_by_hand(table):
    g = A.agreement_matrix(table, 1)
    assert (np.diag(g.values) == len(TARGETS)).all()
    assert np.allclose(g.values, g.values.T)
    # predictions seed 0: l1_us 0101, l1_s 1220, hybrid 1121; seed 1: l1_s = l1_us
    assert g.loc["l1_us", "l1_s"] == pytest.approx((0 + 4) / 2)
    assert g.loc["l1_us", "hybrid"] == pytest.approx(2.0)
    assert g.loc["l1_s", "hybrid"] == pytest.approx(2.0)


def test_single_member_ensemble_is_that_members_accuracy(table):
    for method in A.ENSEMBLE_METHODS:
        acc = A.ensemble_accuracy(table, 1, ["l1_s"], method=method)
        assert acc.to_dict() == pytest.approx({0: 25.0, 1: 75.0})
        rows = table[(table.technique == "l1_s") & (table.reinit == "rewind") & (table.iteration == 1)]
        assert acc.to_dict() == pytest.approx(dict(zip(rows.seed, rows.test_acc)))


def test_vote_and_mean_prob_by_hand(table):
    # seed 0, image 0: l1_us says 0 with p .9, the others say 1 with p .4 (.35 for 0):
    # mean prob of class 0 = (.9 + .35 + .35) / 3 = .53 -> 0 (right); vote 1, 1, 0 -> 1 (wrong). Images 1-3: both right.
    # seed 1, image 2: two members say 0, hybrid 2 -> both methods wrong; the rest right.
    members = ["l1_us", "l1_s", "hybrid"]
    assert A.ensemble_accuracy(table, 1, members).to_dict() == pytest.approx({0: 100.0, 1: 75.0})
    assert A.ensemble_accuracy(table, 1, members, method="vote").to_dict() == pytest.approx({0: 75.0, 1: 75.0})
    # two members, seed 0: votes tie on every image; the lowest class wins: 0, 1, 0, 0 vs targets 0, 1, 2, 1 -> 50 %
    assert A.ensemble_accuracy(table, 1, ["l1_us", "l1_s"], method="vote")[0] == pytest.approx(50.0)
    assert A.ensemble_accuracy(table, 1, ["l1_s", "l1_us"], method="vote")[0] == pytest.approx(50.0)


def test_ensemble_predictions_break_ties_to_the_lowest_class():
    p = A.ensemble_predictions(predictions=[torch.tensor([2, 1, 0]), torch.tensor([1, 2, 0])], method="vote",
                               num_classes=3)
    assert p.tolist() == [1, 1, 0]
    equal = torch.zeros(2, 3)  # equal logits: every class has probability 1/3 -> class 0
    assert A.ensemble_predictions(logits=[equal, equal]).tolist() == [0, 0]


def test_ensemble_table_default_and_custom_groups(table):
    t = A.ensemble_table(table, 1)
    # the poster's groups whose techniques exist, in the poster's order; "all" and the trio need absent techniques
    assert list(t.columns) == ["name", "members", "mean", "std", "n"]
    assert list(t.name) == ["L1 S", "L1 US", "hybrid"]
    assert list(t.members) == ["l1_s", "l1_us", "hybrid"]
    assert t.set_index("name").loc["L1 S", "mean"] == pytest.approx(50.0)
    assert t.set_index("name").loc["L1 S", "std"] == pytest.approx(25 * math.sqrt(2))
    custom = A.ensemble_table(table, 1, groups={"three": ["l1_us", "l1_s", "hybrid"]}, method="vote")
    assert custom.iloc[0]["mean"] == pytest.approx(75.0) and custom.iloc[0]["n"] == 2
    listed = A.ensemble_table(table, 1, groups=[["hybrid", "l1_us"]])
    assert list(listed.name) == ["hybrid + L1 US"] and listed.iloc[0]["members"] == "hybrid, l1_us"


def test_poster_reference_numbers_and_groups():
    assert A.POSTER_ENSEMBLES == {"L2 S": 36.7, "L1 S": 37.8, "L1 US": 32.4, "hybrid": 81.8, "random S": 11.3,
                                  "L-∞ S": 14.5, "fc-only L1 US": 87.4, "all": 91.0, "hybrid + fc-only + L1 US": 91.6}
    groups = A.poster_groups()
    # the poster's order; its "all" is its seven techniques, named so here
    assert list(groups) == ["L2 S", "L1 S", "L1 US", "hybrid", "random S", "L-∞ S", "fc-only L1 US", A.SEVEN,
                            "hybrid + fc-only + L1 US"]
    assert groups[A.SEVEN] == ["l2_s", "l1_s", "l1_us", "hybrid", "random_s", "lneginf_s", "fc_only_l1_us"]
    assert A.poster_reference(A.SEVEN) == 91.0 and A.poster_reference("L1 US") == 32.4
    assert math.isnan(A.poster_reference(A.NINE))  # the poster has no ensemble of all nine
    assert groups["hybrid + fc-only + L1 US"] == ["hybrid", "fc_only_l1_us", "l1_us"]


# ----------------------------------------------------------------------------- weights


def test_weight_traces_by_hand(table):
    w = A.weight_traces(table, "l1_us", seed=0, layer="a", n_weights=2)
    assert list(w.columns) == ["weight", "rank", "iteration", "sparsity", "value", "survives"]
    # dense |a| = 1, 2, 3, .5 -> the two largest: index 2 (3.0), then index 1 (-2.0)
    got = {(r.weight, r.iteration): (r.value, r.survives) for r in w.itertuples()}
    assert got == {(2, 0): (3.0, True), (2, 1): (0.0, False), (2, 2): (0.0, False),
                   (1, 0): (-2.0, True), (1, 1): (-2.5, True), (1, 2): (0.0, False)}
    assert set(w.loc[w.weight == 2, "rank"]) == {0}
    some = A.weight_traces(table, "l1_us", seed=0, layer="a", n_weights=1, iterations=[0, 2])
    assert list(some.iteration) == [0, 2] and list(some.value) == [3.0, 0.0]


def test_weight_stability_by_hand(table):
    s = A.weight_stability(table)
    assert list(s.columns)[:5] == ["technique", "seed", "iteration", "sparsity", "mean_abs_delta"]
    us = s[(s.technique == "l1_us") & (s.seed == 0)].set_index("iteration")
    # k=1: survivors in both a0, a1 (|Δ| .5, .5), b0, b1 (1, 0) -> 2/4; k=2: a0 (.5), b0 (0), b1 (2) -> 2.5/3
    assert us.loc[1, "mean_abs_delta"] == pytest.approx(0.5)
    assert us.loc[2, "mean_abs_delta"] == pytest.approx(2.5 / 3)
    assert list(us["n_weights"]) == [4, 3]
    assert s.loc[s.technique == "l1_s", "mean_abs_delta"].tolist() == pytest.approx([1.0] * 4)
    assert s.loc[s.technique == "hybrid", "mean_abs_delta"].tolist() == pytest.approx([2.0] * 4)
    a = A.weight_stability(table, layer="a")
    us_a = a[(a.technique == "l1_us") & (a.seed == 0)].set_index("iteration")
    assert list(us_a["mean_abs_delta"]) == pytest.approx([0.5, 0.5])
    assert len(s) == 3 * 2 * 2  # technique x seed x k in {1, 2}


def test_mean_abs_delta_with_no_common_survivor_is_nan():
    before = {"masks": {"x": torch.tensor([True, False])}, "weights": {"x.weight": torch.tensor([1.0, 0.0])}}
    after = {"masks": {"x": torch.tensor([False, True])}, "weights": {"x.weight": torch.tensor([0.0, 5.0])}}
    value, n = A.mean_abs_delta(before, after, ["x"])
    assert math.isnan(value) and n == 0


def test_stability_vs_accuracy(table):
    df, r = A.stability_vs_accuracy(table)
    df = df.set_index("technique")
    # l1_us: mean of (.5, 2.5/3) over both seeds = 2/3; l1_s 1; hybrid 2; accuracy at 2 = 70 - 30 x -> r = -1
    assert df.loc["l1_us", "mean_abs_delta"] == pytest.approx(2 / 3)
    assert df.loc["l1_s", "mean_abs_delta"] == pytest.approx(1.0)
    assert df.loc["hybrid", "mean_abs_delta"] == pytest.approx(2.0)
    assert df["test_acc"].to_dict() == pytest.approx(ACC_IT2)
    assert r == pytest.approx(-1.0)
    df1, _ = A.stability_vs_accuracy(table, iteration=1)
    assert df1.set_index("technique").loc["l1_us", "mean_abs_delta"] == pytest.approx(0.5)
    _, r2 = A.stability_vs_accuracy(table[table.technique != "hybrid"])
    assert math.isnan(r2)  # fewer than 3 techniques
    with pytest.raises(A.ParameterError, match="iteration >= 1"):
        A.stability_vs_accuracy(table, iteration=0)


def test_pearson():
    assert A.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert math.isnan(A.pearson([1, 2], [3, 4]))
    assert math.isnan(A.pearson([1, 1, 1], [1, 2, 3]))
    assert A.pearson([1, 2, 3, np.nan], [3, 2, 1, 7]) == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- connectivity


def test_empty_kernels_by_hand():
    w = torch.zeros(3, 2, 2, 2)
    w[0, 1, 0, 0] = 1.0   # filter 0: kernel (0,0) empty, kernel (0,1) not
    # filter 1: both kernels empty -> an empty filter
    w[2, 1, 1, 1] = -0.5  # filter 2: kernel (2,0) empty, (2,1) not
    # input channel 0 is read by no filter
    assert A.empty_kernels(w) == {"kernels": 6, "empty_kernels": 4, "filters": 3, "empty_filters": 1,
                                  "inputs": 2, "empty_inputs": 1}
    assert A.empty_kernels(torch.ones(4, 3, 5, 5))["empty_kernels"] == 0


def test_effective_sparsity_linear_chain_by_hand():
    masks = {
        "l1": torch.tensor([[1, 0], [0, 0], [0, 1]], dtype=torch.bool),  # h1 has no incoming weight
        "l2": torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.bool),    # o0 <- h0, h1; o1 <- h2
        "l3": torch.tensor([[1, 0]], dtype=torch.bool),                  # o1 feeds nothing
    }
    e = A.effective_sparsity(masks)
    # effective: l1 (h0 <- x0) only (h2 feeds only o1, a dead end); l2 (o0 <- h0) only; l3 (y <- o0)
    assert e["l1"] == pytest.approx(5 / 6)
    assert e["l2"] == pytest.approx(5 / 6)
    assert e["l3"] == pytest.approx(1 / 2)
    assert e["all"] == pytest.approx(11 / 14)
    dense = {k: torch.ones_like(v) for k, v in masks.items()}
    assert A.effective_sparsity(dense) == {"l1": 0.0, "l2": 0.0, "l3": 0.0, "all": 0.0}


def test_effective_sparsity_conv_flatten_by_hand():
    conv1 = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool).view(2, 1, 1, 2)  # channels c0, c1 (kernel 1x2)
    conv2 = torch.tensor([[1, 0], [0, 0]], dtype=torch.bool).view(2, 2, 1, 1)  # d0 <- c0; d1 <- nothing
    fc = torch.ones(1, 4, dtype=torch.bool)  # inputs 0, 1 = channel d0 (2 positions), 2, 3 = d1
    e = A.effective_sparsity({"conv1": conv1, "conv2": conv2, "fc": fc})
    # conv1: c0 feeds d0 -> its 1 kept entry stays; c1 feeds nothing -> cut: 1 of 4 kept
    # conv2: d0 <- c0 stays: 1 of 4; fc: inputs from d0 stay, from d1 (unreachable) are cut: 2 of 4
    assert e == {"conv1": 0.75, "conv2": 0.75, "fc": 0.5, "all": pytest.approx(1 - 4 / 12)}
    with pytest.raises(ValueError, match="do not chain"):
        A.effective_sparsity({"a": torch.ones(3, 2, dtype=torch.bool), "b": torch.ones(1, 4, dtype=torch.bool)})


# ----------------------------------------------------------------------------- the record cache


def test_record_cache_returns_the_stored_training(table):
    row = table.iloc[0]
    rec = A.record(row)
    assert A.record(row["file"]) is rec  # cached by file
    assert torch.equal(rec["targets"], torch.tensor(TARGETS))
    A.clear_cache()
    again = A.record(row)
    assert again is not rec and torch.equal(again["predictions"], rec["predictions"])


# ----------------------------------------------------------------------------- the real runner


@pytest.mark.slow
def test_invariants_on_a_real_tiny_run(tmp_path):
    from pruning.execution import runner

    cfg = ExperimentConfig(name="tiny", techniques=["l1_us", "l1_s"], reinit=["rewind", "finetune"], seeds=[0],
                           iterations=2, training=TrainingConfig(epochs=1, lr=0.1),
                           data=DataConfig(train_subset=64, val_subset=100, test_subset=300), device="cpu")
    runner.run_experiment(cfg, tmp_path / "tiny", quiet=True)
    table = A.load(tmp_path / "tiny")
    assert len(table) == 2 * 2 * 3 and A.last_iteration(table) == 2
    for it in range(3):
        d = A.mask_distance_matrix(table, it)
        assert np.allclose(np.diag(d.values), 0) and np.allclose(d.values, d.values.T)
        assert ((d.values >= 0) & (d.values <= 1)).all()
        g = A.agreement_matrix(table, it)
        assert (np.diag(g.values) == 300).all() and np.allclose(g.values, g.values.T)
    assert (A.mask_distance_matrix(table, 0).values == 0).all()  # dense masks
    # rewind and finetune share the dense training, hence the first pruning step
    rf = A.rewind_vs_finetune(table)
    assert (rf.loc[rf.iteration <= 1, "mean"] == 0).all()
    for tech in ("l1_us", "l1_s"):
        acc = A.ensemble_accuracy(table, 2, [tech])
        stored = table[(table.technique == tech) & (table.reinit == "rewind") & (table.iteration == 2)].test_acc
        assert acc[0] == pytest.approx(float(stored.iloc[0]), abs=1e-3)
    kernels = A.filter_kernels(table, "l1_s", layer="conv1")
    assert set(kernels) == {0, 1, 2} and kernels[0].shape == (6, 1, 3, 3)
    last = table[(table.technique == "l1_s") & (table.reinit == "rewind") & (table.iteration == 2)].iloc[0]
    masks = A.record(last)["masks"]
    assert (kernels[2][~masks["conv1"]] == 0).all()
    # structured pruning of conv1 (6 filters, round(.2 * 6) = 1 then round(.2 * 5) = 1) empties 2 filters
    assert A.empty_kernels(kernels[2])["empty_filters"] == 2
    eff = A.effective_sparsity(masks)
    assert eff["all"] >= float(last["sparsity"]) - 1e-9
    traces = A.weight_traces(table, "l1_us", n_weights=5)
    assert len(traces) == 5 * 3 and (traces.loc[~traces.survives, "value"] == 0).all()
    stab = A.weight_stability(table)
    assert (stab["mean_abs_delta"] > 0).all() and len(stab) == 2 * 2
    ens = A.ensemble_table(table, 2)
    assert list(ens.name) == ["L1 S", "L1 US"]
