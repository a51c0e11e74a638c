"""The verdict rule, the baselines and the findings, on cases worked out by hand.

Expected values are computed in the comments from the definitions (not by the code under test); the
findings test uses the synthetic results of test_report (make_results), whose masks, predictions and
weights are chosen by hand there.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pruning import analysis as A
from pruning.reporting import deviations
from conftest import REPO
from pruning.analysis import findings as F
from pruning.analysis.stats import Summary

from test_report import make_results


# ----------------------------------------------------------------------------- baselines


def test_random_mask_distance_of_one_layer():
    # n = 100, p = q = 0.5: E|A∩B| = 25, E|A∪B| = 100 (0.5 + 0.5 - 0.25) = 75 -> 1 - 25/75 = 2/3
    assert A.random_mask_distance([(100, 0.5, 0.5)]) == pytest.approx(2 / 3)
    # identical full masks: distance 0; two empty masks: 0 by convention
    assert A.random_mask_distance([(10, 1.0, 1.0)]) == pytest.approx(0.0)
    assert A.random_mask_distance([(10, 0.0, 0.0)]) == 0.0
    # one mask empty: nothing in common -> 1
    assert A.random_mask_distance([(10, 0.0, 0.4)]) == pytest.approx(1.0)


def test_random_mask_distance_pools_two_layers_by_counts():
    # layer 1: n = 100, p = q = 0.5 -> E∩ = 25, E∪ = 75
    # layer 2: n = 300, p = 0.2, q = 0.1 -> E∩ = 300 * 0.02 = 6, E∪ = 300 * (0.3 - 0.02) = 84
    # pooled: 1 - (25 + 6) / (75 + 84) = 1 - 31/159 = 128/159 (not the mean of 2/3 and 1 - 6/84)
    assert A.random_mask_distance([(100, 0.5, 0.5), (300, 0.2, 0.1)]) == pytest.approx(128 / 159)


def test_random_distance_of_reads_the_densities_of_two_masks():
    a = {"x": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "y": torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)}
    b = {"x": torch.tensor([0, 0, 1, 1], dtype=torch.bool), "y": torch.tensor([[1, 1], [1, 1]], dtype=torch.bool)}
    # x: n 4, p .5, q .5 -> E∩ 1, E∪ 3;  y: n 4, p .25, q 1 -> E∩ 1, E∪ 4;  all: 1 - 2/7
    assert A.random_distance_of(a, b) == pytest.approx(5 / 7)
    assert A.random_distance_of(a, b, "y") == pytest.approx(1 - 1 / 4)


def test_random_mask_distance_matches_random_masks_drawn_many_times():
    rng = np.random.default_rng(0)
    n, p, q = 2000, 0.3, 0.6
    d = []
    for _ in range(200):
        a = np.zeros(n, bool)
        a[rng.choice(n, int(p * n), replace=False)] = True
        b = np.zeros(n, bool)
        b[rng.choice(n, int(q * n), replace=False)] = True
        d.append(1 - (a & b).sum() / (a | b).sum())
    # 1 - pq / (p + q - pq) = 1 - 0.18 / 0.72 = 0.75
    assert np.mean(d) == pytest.approx(0.75, abs=0.005)


def test_chance_agreement_of_two_accuracies():
    # both right a1 a2 = 0.72, both wrong on the same one of 9 wrong classes 0.1 * 0.2 / 9
    assert A.chance_agreement(0.9, 0.8, 10) == pytest.approx(0.72 + 0.02 / 9)
    # two uniform guessers over K classes agree 1/K of the time: 0.01 + 0.81 / 9 = 0.1
    assert A.chance_agreement(0.1, 0.1, 10) == pytest.approx(0.1)
    assert A.chance_agreement(1.0, 1.0) == 1.0 and A.chance_agreement(1.0, 0.0) == 0.0
    assert A.max_agreement(0.9, 0.6) == pytest.approx(0.7)


# ----------------------------------------------------------------------------- the rule


def test_t_interval_by_hand():
    assert A.t_quantile(1) == 12.706 and A.t_quantile(4) == 2.776
    assert A.t_quantile(120) == pytest.approx(1.980, abs=0.001)  # the table's value for 120 df
    s = A.summarize([1.0, 3.0])  # mean 2, std sqrt(2), half width 12.706 * sqrt(2) / sqrt(2)
    assert (s.mean, s.n) == (2.0, 2) and s.std == pytest.approx(math.sqrt(2))
    assert (s.low, s.high) == pytest.approx((2 - 12.706, 2 + 12.706))
    one = A.summarize([5.0, float("nan")])  # NaN dropped: one value, no interval
    assert (one.mean, one.std, one.n) == (5.0, 0.0, 1) and math.isnan(one.low)


def test_the_verdict_rule():
    s = A.summarize([5.0, 6.0, 7.0])  # mean 6, std 1, half width 4.303 / sqrt(3) = 2.4843 -> [3.5157, 8.4843]
    assert (s.low, s.high) == pytest.approx((3.5157, 8.4843), abs=1e-4)
    assert F.verdict(s, 0.0) == "supported"            # wholly above 0
    assert F.verdict(s, 10.0) == "not supported"       # wholly below 10
    assert F.verdict(s, 5.0) == "inconclusive"         # 5 inside the interval
    assert F.verdict(s, 10.0, above=False) == "supported"   # claim "below 10"
    assert F.verdict(s, 0.0, above=False) == "not supported"
    assert F.verdict(Summary(6.0, 1.0, 3, 3.5, 8.5), 3.5) == "inconclusive"  # touching from the claimed side
    assert F.verdict(Summary(6.0, 1.0, 3, 3.5, 8.5), 8.5) == "not supported"  # touching from the other side
    assert F.verdict(A.summarize([100.0]), 0.0) == "inconclusive"  # one seed decides nothing
    assert F.verdict(A.summarize([1.0, 3.0]), 0.0) == "inconclusive"  # [-10.7, 14.7]


def test_several_conditions_combine():
    assert F.combine(["supported", "supported"]) == "supported"
    assert F.combine(["supported", "inconclusive"]) == "inconclusive"
    assert F.combine(["supported", "not supported"]) == "not supported"
    assert F.combine([]) == "inconclusive"


# ----------------------------------------------------------------------------- the findings


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return A.load(make_results(tmp_path_factory.mktemp("findings") / "synthetic"))


def test_findings_of_the_synthetic_results(table):
    found = {f.key: f for f in F.findings(table, 2, "rewind")}
    assert list(found) == ["tickets", "variety", "random", "functions", "ensembles", "stability", "connectivity"]
    # variety: accuracy minus dense per seed: L1 US 89-79, 91-81 = 10, 10; L2 S 0, 0; random S -30; random US -50
    per = F.winning(table, 2, "rewind")
    assert [per[t].verdict for t in ("l1_us", "l2_s", "random_s", "random_us")] == [
        "supported", "supported", "not supported", "not supported"]
    assert found["variety"].verdict == "supported"
    # tickets: L1 US vs L2 S distance 0.4, random-mask distance 2/3 (both seeds) -> 0.6 > 0.5
    m = found["tickets"].measures[0]
    assert m.summary.mean == pytest.approx(0.6) and found["tickets"].verdict == "supported"
    # random, read on the classes both can still output (fc1's 2 units are classes 0 and 1; images 2-9 have none):
    # iteration 1: both keep both units, both wrong on images 0 and 1 -> 0 - 0 = 0; iteration 2: random S keeps fc1
    # entries 12-15 = unit 1 only, random US units 0 and 1 -> shared class 1 = image 1, wrong for random S (wrong
    # {0-4}), right for random US (wrong {2-8}) -> 0 - 100 = -100; mean over iterations 1-2: -50 < 0
    assert [x.summary.mean for x in found["random"].measures] == pytest.approx([-50.0, -50.0])
    assert found["random"].verdict == "not supported"
    # on every test image: 80 - 80 = 0 at iteration 1, 50 - 30 = 20 at 2 -> mean 10, said beside
    assert "on every test image: 10.0" in found["random"].measures[0].baseline
    # functions: excess agreement per pair -0.125, -0.3846, -0.6364, 0.3077, -0.6364, -0.1455 -> mean -0.2700 < 0.5
    assert found["functions"].measures[0].summary.mean == pytest.approx(-0.270018, abs=1e-5)
    assert found["functions"].measures[0].verdict == "supported"
    # the claim's second half, similarly performing networks: accuracies 90, 80, 50, 30 -> no pair within 2 points,
    # so it cannot be read and the finding stays inconclusive
    similar = found["functions"].measures[1]
    assert similar.summary.n == 0 and similar.baseline.startswith("0 of 12 working pairs")
    assert found["functions"].verdict == "inconclusive"
    # no ensemble of the poster can be formed from these four techniques
    assert found["ensembles"].verdict == "inconclusive" and not found["ensembles"].measures
    # stability: mean |Δw| 0, .1, .5, 1 against accuracy 89, 79, 49, 29 (seed 0) and +2 (seed 1): r < 0
    r = np.corrcoef([0.0, 0.1, 0.5, 1.0], [90.0, 80.0, 50.0, 30.0])[0, 1]
    assert found["stability"].measures[0].summary.mean == pytest.approx(r) and found["stability"].verdict == "supported"
    # connectivity: L1 US rewind empties 1 of 2 conv1 kernels (50%), fine-tune none; chance 0.5 ** 4 = 6.25%
    d, c = found["connectivity"].measures
    assert d.summary.mean == pytest.approx(50.0) and c.summary.mean == pytest.approx(50.0 - 6.25)
    assert found["connectivity"].verdict == "supported"
    assert found["random"].headline == "Not supported: random structured pruning beats random unstructured pruning"


def test_agreement_pairs_by_hand(table):
    pairs = A.agreement_pairs(table, 2, "rewind").set_index(["technique_a", "technique_b", "seed"])
    row = pairs.loc[("l1_us", "l2_s", 0)]
    # L1 US wrong on {9}, L2 S on {0, 1}, different wrong classes: agree on 7 of 10
    assert (row["acc_a"], row["acc_b"], row["agreement"]) == pytest.approx((0.9, 0.8, 0.7))
    assert row["chance"] == pytest.approx(0.72 + 0.02 / 9) and row["most"] == pytest.approx(0.9)
    assert row["excess"] == pytest.approx((0.7 - (0.72 + 0.02 / 9)) / (0.9 - (0.72 + 0.02 / 9)))


def test_output_units_and_collapsed_trainings(table):
    units = A.output_units(table, "rewind", techniques=["l2_s"]).set_index("iteration")
    # fc1 (2 units): L2 S keeps entries 8, 9 = unit 0 only at iteration 2; class 0 is 1 of the 10 test images
    assert units.loc[2, "units"] == 1 and units.loc[2, "ceiling"] == pytest.approx(10.0)
    assert units.loc[0, "units"] == 2 and units.loc[0, "ceiling"] == pytest.approx(20.0)  # classes 0 and 1
    t = table.copy()
    t.loc[t.index[:3], "train_loss"] = [math.log(10), math.log(10) + 0.009, math.log(10) + 0.02]
    assert list(A.collapsed(t)[:3]) == [True, True, False]  # within 0.01 of ln 10
    assert A.collapsed(table).sum() == 0


def test_deviations_list_each_differing_field_with_both_values():
    proto = deviations.protocol_config()
    assert deviations.deviations(proto, proto).empty or list(deviations.deviations(proto, proto)["field"]) == [
        "architectures"]
    small = {**proto, "seeds": [0, 1], "training": {**proto["training"], "lr": 0.05}, "device": "cuda", "workers": 3,
             "store": {**proto["store"], "masks": ["conv1"]}}
    dev = deviations.deviations(small, proto, runs_done=3, runs=4).set_index("field")
    assert dev.loc["seeds", "protocol"] == "0, 1, 2, 3, 4" and dev.loc["seeds", "this run"] == "0, 1"
    assert (dev.loc["training.lr", "protocol"], dev.loc["training.lr", "this run"]) == ("0.01", "0.05")
    assert {"device", "workers", "store.masks"}.isdisjoint(dev.index)  # how to compute or store, not what
    assert (dev.loc["runs finished", "protocol"], dev.loc["runs finished", "this run"]) == ("4", "3")
    assert dev.loc["architectures", "protocol"] == "lenet, alexnet, vgg11"
    with_companions = deviations.deviations(small, proto, companions={"alexnet": "results/alexnet_mnist_cpu"})
    assert with_companions.set_index("field").loc["architectures", "this run"] == (
        "lenet (+ alexnet conv2 kernels only, from their own reduced results sets)")


def test_a_field_added_after_a_results_set_was_stored_is_no_deviation():
    """experiment.json of a set stored before `data.normalize` existed lacks it; it computed the default."""
    import json

    stored = json.loads((REPO / "docs" / "replicates" / "paper_lenet_mnist_cpu_torch_step" / "experiment.json")
                        .read_text())["config"]  # the first paper-scale profile, stored on 2026-11-25
    assert "normalize" not in stored["data"]
    fields = set(deviations.deviations(stored)["field"])
    assert "data.normalize" not in fields and {"seeds", "training.epochs"} <= fields
    raw = {**stored, "data": {**stored["data"], "normalize": False}}
    dev = deviations.deviations(raw).set_index("field")
    assert (dev.loc["data.normalize", "protocol"], dev.loc["data.normalize", "this run"]) == ("True", "False")


def test_finding_1_states_the_rule_its_code_applies(table, monkeypatch):
    """Its text names the downgrade: a distance above the threshold with fewer than two established winning
    tickets is inconclusive. Checked by making L2 S only possibly (not shown to be) near the dense accuracy."""
    tickets = F.finding_tickets(table, 2, "rewind")
    assert "at least two techniques are shown to keep the dense accuracy" in tickets.rule
    assert tickets.verdict == "supported"  # both L1 US and L2 S are established (see above)
    real = F.winning

    def one_established(*args):
        per = real(*args)
        m = per["l2_s"]
        m.verdict = "inconclusive"  # possibly near dense: still compared, no longer established
        return per

    monkeypatch.setattr(F, "winning", one_established)
    downgraded = F.finding_tickets(table, 2, "rewind")
    assert downgraded.measures[0].verdict == "supported" and downgraded.verdict == "inconclusive"
    assert "only 1 technique(s) are shown to keep the dense accuracy" in downgraded.note


def test_collapsed_trainings_are_left_out_of_findings_4_and_6(table):
    """Two constant guesses agree by construction, and collapsed networks would make the stability correlation
    merely separate collapsed from working ones: both findings leave collapsed runs out and say how many."""
    t = table.copy()
    t.loc[(t["technique"] == "random_us") & (t["iteration"] == 2), "train_loss"] = math.log(10)
    functions = F.finding_functions(t, 2, "rewind")
    assert "6 of 12 pairs (over seeds) left out because a training collapsed" in functions.measures[0].baseline
    assert "left out" in functions.rule
    assert F.finding_functions(table, 2, "rewind").measures[0].baseline.endswith("0 of 12 pairs (over seeds) left "
                                                                                   "out because a training collapsed")
    stability = F.finding_stability(t, 2, "rewind")
    assert "2 collapsed run(s) (technique and seed) left out" in stability.measures[0].baseline
    assert stability.measures[0].condition.startswith("3 techniques")  # random US is out in both seeds


def test_finding_3_says_when_lost_output_classes_drive_it(table):
    """Random S removes output units under structured pruning of the output layer; the note counts them."""
    note = F.finding_random(table, 2, ["rewind", "finetune"]).note
    assert note.startswith("Random S keeps 1.0 of 2 output units at iteration 2")  # the synthetic fc1: 2 units
    assert "output-exempt variant" in note


def test_verdicts_by_iteration_read_each_finding_where_the_results_reach(table):
    """The synthetic results stop at iteration 2: none of 10, 15, 18 is reached, so the last iteration is used;
    asked for iterations 1 and 2, each column is the verdicts of `findings` at that iteration."""
    last = F.verdicts_by_iteration(table)
    assert list(last.columns) == ["iteration 2"]
    assert list(last.index) == ["tickets", "variety", "random", "functions", "ensembles", "stability", "connectivity"]
    assert last["iteration 2"].to_dict() == {f.key: f.verdict for f in F.findings(table, 2, "rewind")}
    both = F.verdicts_by_iteration(table, iterations=(1, 2, 18))
    assert list(both.columns) == ["iteration 1", "iteration 2"]
    assert both["iteration 1"].to_dict() == {f.key: f.verdict for f in F.findings(table, 1, "rewind")}
