"""The nine techniques, checked by their effect on masks (torch.nn.utils.prune's arithmetic)."""
from __future__ import annotations

import math

import pytest
import torch

from pruning.nets import models, techniques
from pruning.execution.lifecycle import initial_state
from pruning.nets.config import RunConfig


def lenet_state(seed=0):
    return initial_state(RunConfig(seed=seed))


def prune_k(technique, k, seed=0, **kw):
    state, masks = lenet_state(seed), None
    history = []
    for it in range(1, k + 1):
        masks = techniques.prune_step("lenet", state, masks, technique, 0.2, seed=seed, iteration=it, **kw)
        history.append(masks)
    return history


def expected_unstructured(n, k):
    """Remaining entries after k steps of 'prune round(0.2 * remaining)', computed independently."""
    for _ in range(k):
        n -= int(round(0.2 * n))
    return n


def test_lenet_has_the_protocol_parameter_count():
    model = models.build("lenet")
    weights = sum(m.weight.numel() for _, m in models.prunable_layers(model))
    assert weights == 59838
    assert models.count_parameters(model) == 60074


def test_l1_us_layer_counts_after_19_and_20_steps_match_the_protocol():
    history = prune_k("l1_us", 20)
    assert techniques.remaining(history[18]) == {"conv1": 2, "conv2": 12, "fc1": 691, "fc2": 145, "fc3": 12}
    assert techniques.remaining(history[19]) == {"conv1": 2, "conv2": 10, "fc1": 553, "fc2": 116, "fc3": 10}


def test_parameter_counts_follow_the_protocol_table():
    # PROTOCOL.md: weights + biases after k unstructured steps, in thousands (rounded to 0.1k)
    table = [60.1, 48.1, 38.5, 30.9, 24.7, 19.8, 15.9, 12.8, 10.3, 8.3, 6.7, 5.4, 4.3, 3.5, 2.9, 2.3, 1.9, 1.6,
             1.3, 1.1, 0.9]
    history = prune_k("l1_us", 20)
    counts = [60074] + [sum(techniques.remaining(m).values()) + 236 for m in history]
    assert [round(c / 1000, 1) for c in counts] == pytest.approx(table, abs=0.11)
    sizes = {"conv1": 54, "conv2": 864, "fc1": 48000, "fc2": 10080, "fc3": 840}
    for k, masks in enumerate(history, start=1):
        assert techniques.remaining(masks) == {n: expected_unstructured(s, k) for n, s in sizes.items()}


@pytest.mark.parametrize("name", ["l1_s", "l2_s", "linf_s", "lneginf_s", "random_s"])
def test_structured_techniques_empty_whole_output_channels(name):
    masks = prune_k(name, 5)[-1]
    for layer, mask in masks.items():
        per_unit = mask.reshape(mask.shape[0], -1)
        kept = per_unit.all(dim=1)
        emptied = ~per_unit.any(dim=1)
        assert bool((kept | emptied).all()), f"{name}: {layer} has partially pruned units"
        assert int(emptied.sum()) > 0


def test_hybrid_is_structured_in_conv_and_unstructured_in_linear():
    masks = prune_k("hybrid", 5)[-1]
    for layer in ("conv1", "conv2"):
        rows = masks[layer].reshape(masks[layer].shape[0], -1)
        assert bool((rows.all(1) | ~rows.any(1)).all())
    for layer in ("fc1", "fc2", "fc3"):
        rows = masks[layer]
        partial = rows.any(1) & ~rows.all(1)
        assert int(partial.sum()) > 0, f"{layer} should have partially pruned units"


def test_fc_only_leaves_conv_dense():
    masks = prune_k("fc_only_l1_us", 5)[-1]
    assert bool(masks["conv1"].all()) and bool(masks["conv2"].all())
    assert techniques.remaining(masks)["fc1"] == expected_unstructured(48000, 5)


def test_l1_us_keeps_the_largest_magnitudes():
    state = lenet_state()
    masks = techniques.prune_step("lenet", state, None, "l1_us", 0.2, seed=0, iteration=1)
    w = state["fc1.weight"].abs()
    assert w[masks["fc1"]].min() >= w[~masks["fc1"]].max()


def test_ln_structured_norms_choose_different_channels():
    state = lenet_state()
    norms = {}
    for name, p in [("l1_s", 1), ("linf_s", math.inf), ("lneginf_s", -math.inf)]:
        masks = techniques.prune_step("lenet", state, None, name, 0.2, seed=0, iteration=1)
        units = state["fc1.weight"]
        kept = masks["fc1"].all(1)
        score = torch.linalg.vector_norm(units, ord=p, dim=1)
        assert score[kept].min() >= score[~kept].max()
        norms[name] = kept
    assert not torch.equal(norms["l1_s"], norms["lneginf_s"])


def test_pruning_only_removes_previously_kept_entries():
    history = prune_k("random_us", 4)
    for before, after in zip(history, history[1:]):
        for layer in before:
            assert not bool((after[layer] & ~before[layer]).any())


def test_random_masks_depend_on_seed_and_iteration_only():
    a = prune_k("random_us", 2, seed=0)
    b = prune_k("random_us", 2, seed=0)
    c = prune_k("random_us", 2, seed=1)
    torch.manual_seed(12345)  # the global RNG must not matter
    d = techniques.prune_step("lenet", lenet_state(0), a[0], "random_us", 0.2, seed=0, iteration=2)
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert all(torch.equal(a[1][k], d[k]) for k in a[1])
    assert any(not torch.equal(a[1][k], c[1][k]) for k in a[1])


def test_output_layer_can_be_exempt_or_pruned_along_another_dim():
    exempt = prune_k("l1_s", 3, output_layer="exempt")[-1]
    assert bool(exempt["fc3"].all())
    dim1 = prune_k("l1_s", 3, output_structured_dim=1)[-1]
    cols = dim1["fc3"]
    assert bool(cols.all(0).logical_or(~cols.any(0)).all())  # whole input columns emptied
    assert bool(cols.any(1).all())  # every class keeps a unit


def test_every_registered_technique_prunes_something():
    assert len(techniques.TECHNIQUES) == 9
    for name in techniques.TECHNIQUES:
        masks = prune_k(name, 1)[-1]
        assert sum(techniques.remaining(masks).values()) < 59838
