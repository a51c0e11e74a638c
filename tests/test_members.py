"""Whole members on the sparse path (``members.Members``, the C++ ``member_step``): forward, loss, backward and the
SGD update of a member over its surviving weights, the batch in the SIMD lanes.

Reference: the dense step (``Population(..., sparse=False)``: every weight computed, gradients masked), on real
MNIST batches (whose blank borders give ties in max pooling). The member kernel sums in its own fixed order, so
values are compared within float32 tolerances, never against a recorded number; its bits are compared with
themselves: across thread counts, alone against inside a population, and killed-and-resumed runs.
"""
from __future__ import annotations


import pytest
import torch

from pruning.execution import runner
from pruning.nets import datasets, models
from pruning.nets.config import TrainingConfig
from pruning.population import batched as population
from pruning.population.members import Members, cost_density, csr
from test_population import tiny_experiment, trainings
from test_sparse import members, resumed_after_an_interrupt

CFG = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-3)


@pytest.fixture(scope="module")
def data():
    return datasets.load("mnist", "cpu")


def batch(data, step: int, n: int = 32):
    return data.train_x[n * step:n * step + n], data.train_y[n * step:n * step + n]


def edge_members():
    """The test_sparse members (dense, 30%, structured, 2%, linear layers empty) plus a member with everything pruned
    in every layer and one with whole conv filters and a whole linear layer's inputs gone."""
    states, masks = members(5)
    layers = models.prunable_layers(models.LeNet())
    torch.manual_seed(7)
    for kind in ("empty", "filters"):
        st = {k: v.clone() for k, v in models.LeNet().state_dict().items()}
        mk = {name: torch.zeros(mod.weight.shape, dtype=torch.bool) for name, mod in layers}
        if kind == "filters":
            mk["conv1"][1:3] = True   # two of six conv1 filters
            mk["conv2"][::4, 1:3] = True  # four conv2 filters reading only those two channels
            mk["fc1"][:, :100] = True  # fc1 reads only the first four conv2 channels
            mk["fc2"][:10] = True
            mk["fc3"][:] = True
        for layer, k in mk.items():
            st[f"{layer}.weight"] = st[f"{layer}.weight"] * k
        states.append(st)
        masks.append(mk)
    return states, masks


def test_csr_lists_each_rows_surviving_columns_in_order():
    mk = torch.tensor([[[1, 0, 1], [0, 0, 0]], [[0, 1, 0], [1, 1, 1]]])
    rowptr, cols = csr(mk)
    assert rowptr.tolist() == [[0, 2, 2], [2, 3, 6]]
    assert cols.tolist() == [0, 2, 1, 0, 1, 2]


def test_cost_density_weights_conv_taps_by_their_positions():
    layers = dict(models.prunable_layers(models.LeNet()))
    full = {name: torch.ones(mod.weight.shape) for name, mod in layers.items()}
    assert cost_density(full) == 1.0 and cost_density({}) == 1.0
    no_conv2 = dict(full, conv2=torch.zeros(layers["conv2"].weight.shape))
    # conv2's 864 taps at 100 positions each: 86,400 of 54*676 + 86,400 + 48,000 + 10,080 + 840 multiply-adds
    assert cost_density(no_conv2) == pytest.approx(1 - 86400 / (54 * 676 + 86400 + 48000 + 10080 + 840))
    empty = {name: torch.zeros(mod.weight.shape) for name, mod in layers.items()}
    assert cost_density(empty) == 0.0


def test_member_kernel_equals_the_dense_step_within_rounding(data):
    """16 steps from the same states: losses and every parameter within float32 tolerances; pruned weights exactly
    0; a member with everything pruned trains only its biases."""
    states, masks = edge_members()
    dense = population.Population(states, masks, "cpu", sparse=False)
    ref = population.Population(states, masks, "cpu", sparse=False)
    whole = Members(ref.params, ref.masks)  # every member on the member kernel, updating ref's tensors
    for step in range(16):
        x, y = batch(data, step)
        want, got = dense.train_step(x, y, CFG), whole.step(x, y, CFG.lr, CFG.momentum, CFG.weight_decay)
        assert torch.allclose(want, got, rtol=0, atol=1e-5)
        if step == 0:
            for name in dense.names:
                assert torch.allclose(dense.params[name], ref.params[name], rtol=0, atol=1e-6), name
    for name in dense.names:
        assert torch.allclose(dense.params[name], ref.params[name], rtol=0, atol=1e-4), name
        assert not torch.equal(ref.params[name], population.Population(states, masks, "cpu").params[name]), name
    for i, mk in enumerate(masks):
        for layer, k in mk.items():
            assert torch.all(ref.params[f"{layer}.weight"][i][k == 0] == 0), (i, layer)
    assert torch.all(ref.params["fc1.weight"][5] == 0)  # the empty member: weights stay 0 ...
    assert not torch.equal(ref.params["fc3.bias"][5], states[5]["fc3.bias"])  # ... its biases learn


@pytest.mark.parametrize("n", [32, 8, 45])
def test_member_kernel_takes_any_batch_size(data, n):
    states, masks = edge_members()
    dense = population.Population(states, masks, "cpu", sparse=False)
    ref = population.Population(states, masks, "cpu", sparse=False)
    whole = Members(ref.params, ref.masks)
    x, y = batch(data, 3, n)
    assert torch.allclose(dense.train_step(x, y, CFG), whole.step(x, y, CFG.lr, CFG.momentum, CFG.weight_decay),
                          rtol=0, atol=1e-5)
    for name in dense.names:
        assert torch.allclose(dense.params[name], ref.params[name], rtol=0, atol=1e-6), name


def test_population_routes_sparse_members_to_the_member_kernel_and_keeps_their_order(data):
    states, masks = edge_members()
    pop = population.Population(states, masks, "cpu")
    whole = [i for i, mk in enumerate(masks) if cost_density(mk) <= population.MEMBER_DENSITY]
    assert whole == [1, 2, 3, 4, 5, 6] and pop.md == 1 and pop.whole.s == 6
    dense = population.Population(states, masks, "cpu", sparse=False)
    for step in range(4):
        x, y = batch(data, step)
        assert torch.allclose(dense.train_step(x, y, CFG), pop.train_step(x, y, CFG), rtol=0, atol=1e-5)
    for want, got in zip(dense.states(), pop.states()):  # states come back in the order given
        for name in want:
            assert torch.allclose(want[name], got[name], rtol=0, atol=1e-5), name
    assert torch.allclose(dense.logits(data.test_x[:600]), pop.logits(data.test_x[:600]), rtol=0, atol=1e-4)


def test_member_bits_do_not_depend_on_threads_or_on_the_other_members(data):
    states, masks = edge_members()

    def train(idx, threads):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            pop = population.Population([states[i] for i in idx], [masks[i] for i in idx], "cpu")
            losses = [pop.train_step(*batch(data, step), CFG) for step in range(6)]
            return pop.states(), torch.stack(losses)
        finally:
            torch.set_num_threads(old)

    one, l1 = train(range(7), 1)
    two, l2 = train(range(7), 2)
    # members 1-6 train on the member kernel (member 0, dense, takes MKL's batched products, whose bits may follow
    # the thread count; the workers run one thread each)
    assert torch.equal(l1[:, 1:], l2[:, 1:])
    for a, b in zip(one[1:], two[1:]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    alone, la = train([3], 1)  # the 2% member by itself
    assert torch.equal(la[:, 0], l1[:, 3]) and all(torch.equal(alone[0][k], one[3][k]) for k in alone[0])


def test_member_logits_equal_the_dense_forward_and_their_bits_are_each_members_own(data):
    """Evaluation on the member kernel (``Members.logits``, 32 images at a time): within float32 rounding of the dense
    kernels' logits, for a count of images that leaves a partial chunk; a member's bits the same alone, beside the
    others and at 2 threads."""
    states, masks = edge_members()
    dense = population.Population(states, masks, "cpu", sparse=False)
    whole = Members(dense.params, dense.masks)
    x = data.test_x[:45]
    got = whole.logits(x)
    assert got.shape == (len(states), 45, 10)
    assert torch.allclose(dense.logits(x), got, rtol=0, atol=1e-4)
    alone = Members({n: t[3:4] for n, t in dense.params.items()}, {k: m[3:4] for k, m in dense.masks.items()})
    assert torch.equal(alone.logits(x)[0], got[3])
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(whole.logits(x), got)
    finally:
        torch.set_num_threads(old)


def test_member_kernel_refuses_a_batch_of_the_wrong_channels(data):
    states, masks = edge_members()
    ref = population.Population(states, masks, "cpu", sparse=False)
    whole = Members(ref.params, ref.masks)
    x, y = batch(data, 0)
    with pytest.raises(ValueError, match="does not fit this LeNet"):
        whole.step(x.expand(-1, 3, -1, -1), y, 0.1, 0.0, 0.0)


def test_a_short_run_on_the_member_kernel_has_the_dense_paths_masks_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Every pruned member trained whole: the same masks as the dense path, weights within rounding; interrupted in
    the middle of a population's saves, it resumes to the bits of an uninterrupted run."""
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "l1_s"], reinit=["rewind"], seeds=[0], iterations=2,
                          data={"train_subset": 320, "val_subset": 200, "test_subset": 500})
    monkeypatch.setenv("PRUNING_KERNELS", "dense")
    runner.run_experiment(cfg, tmp_path / "dense", quiet=True, trainer="population", device="cpu", workers=1)
    monkeypatch.delenv("PRUNING_KERNELS")
    monkeypatch.setattr(population, "MEMBER_DENSITY", 1.0)  # every pruned member on the member kernel
    built = []
    monkeypatch.setattr(population, "Members", lambda *a: built.append(Members(*a)) or built[-1])
    runner.run_experiment(cfg, tmp_path / "whole", quiet=True, trainer="population", device="cpu", workers=1)
    assert [w.s for w in built] == [2, 2]  # iterations 1 and 2: both runs whole
    got, want = trainings(tmp_path / "whole"), trainings(tmp_path / "dense")
    assert set(got) == set(want) and len(got) == 2 * 3
    for key, (row, rec) in got.items():
        ref = want[key][1]
        for layer in ref["masks"]:
            assert torch.equal(rec["masks"][layer], ref["masks"][layer]), (key, layer)
        for name in ref["weights"]:
            assert torch.allclose(rec["weights"][name], ref["weights"][name], rtol=0, atol=1e-4), (key, name)
    assert resumed_after_an_interrupt(cfg, tmp_path / "interrupted", tmp_path / "whole") == 6


def test_member_kernel_refuses_images_of_another_size(data):
    states, masks = edge_members()
    ref = population.Population(states, masks, "cpu", sparse=False)
    x, y = batch(data, 0)
    with pytest.raises(ValueError, match="1x32x32 images does not fit"):
        Members(ref.params, ref.masks).step(torch.nn.functional.pad(x, (2, 2, 2, 2)), y, 0.1, 0.0, 0.0)
