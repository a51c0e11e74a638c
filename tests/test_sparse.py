"""The population step's sparse path: linear layers (``sparse.SparseRows``), conv2 (``kernels.Conv2Taps``) and
conv1 (``sparse.Conv1Live``) computed over surviving weights or live filters only.

Reference: the dense step (``Population(..., sparse=False)``: every weight computed, gradients masked). The
sparse kernels sum in their own fixed order, so values are compared within float32 rounding: a tolerance of a
few ulps of the largest term's magnitude times the number of terms (``_tol``), never a recorded number; conv2's
forward pass and bias gradients on the tap kernels do the dense kernel's operations in its order, so they are
compared bit for bit, and so is everything conv1's live-channel kernels compute. Which path a member takes is a function of its own mask
(``population.SPARSE_DENSITY``); the tests force the sparse path with that threshold.
"""
from __future__ import annotations

import os

import pytest
import torch

from pruning import store
from pruning.execution import populations, runner
from pruning.nets import datasets, models
from pruning.nets.config import TrainingConfig
from pruning.population import kernels, sparse, batched as population
from test_population import bitwise_equal, tiny_experiment, trainings

EPS = torch.finfo(torch.float32).eps
ALL = {"fc1": 1.0, "fc2": 1.0, "fc3": 1.0, "conv2": 1.0}  # every member of every layer that has one on the sparse path


def _tol(terms: int, scale: float) -> float:
    """A bound on the difference of two float32 sums of ``terms`` terms of magnitude <= ``scale`` in any order."""
    return 2 * terms * EPS * scale


def masks_for(m: int, out: int, inp: int, seed: int = 0) -> torch.Tensor:
    """Members: dense, random halves, pruned units (rows) and inputs (columns), one entry, and empty."""
    g = torch.Generator().manual_seed(seed)
    mk = torch.rand(m, out, inp, generator=g) < 0.5
    mk[0] = True
    mk[2, : out // 2] = False  # structured: whole units pruned
    mk[2, :, ::3] = False      # and inputs
    mk[3] = False
    mk[3, 1, 2] = True         # one surviving weight
    mk[4] = False              # everything pruned in this layer
    return mk


@pytest.mark.parametrize("n", [32, 8, 45])
def test_sparse_linear_kernels_equal_the_dense_products_within_rounding(n):
    m, out, inp = 6, 24, 70
    g = torch.Generator().manual_seed(1)
    mk = masks_for(m, out, inp)
    w = torch.randn(m, out, inp, generator=g) * mk
    b, x, dz = torch.randn(m, out, generator=g), torch.randn(m, n, inp, generator=g), torch.randn(m, n, out, generator=g)
    slots = [1, 2, 3, 4, 5]
    rows = sparse.SparseRows(mk, slots)
    y = torch.full((m, n, out), 7.0)
    rows.forward(x, w, b, y)
    want = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
    assert torch.equal(y[0], torch.full((n, out), 7.0))  # slot 0 is not on the sparse path: untouched
    tol = _tol(inp, (x.abs().max() * w.abs().max()).item()) + _tol(1, b.abs().max().item())
    assert torch.allclose(y[slots], want[slots], rtol=0, atol=tol)
    assert torch.equal(y[4], b[4].expand(n, out))  # everything pruned: the bias exactly
    gw, dx = torch.full((m, out, inp), 0.0), torch.full((m, n, inp), 3.0)
    rows.backward(x, w, dz, gw, dx)
    want_gw = torch.bmm(dz.transpose(1, 2), x) * mk
    want_dx = torch.bmm(dz, w)
    assert torch.allclose(gw[slots], want_gw[slots], rtol=0, atol=_tol(n, (dz.abs().max() * x.abs().max()).item()))
    assert torch.all(gw[mk == 0] == 0)  # pruned entries never written
    assert torch.allclose(dx[slots], want_dx[slots], rtol=0, atol=_tol(out, (dz.abs().max() * w.abs().max()).item()))
    assert torch.equal(dx[4], torch.zeros(n, inp)) and torch.equal(dx[0], torch.full((n, inp), 3.0))
    with pytest.raises(ValueError, match="shapes do not match"):
        rows.forward(x[:, :, 1:].contiguous(), w, b, y)


def members(m: int = 5, seed: int = 0):
    """LeNets with masks: unpruned, random 30%, structured (pruned filters and units), 2% and everything pruned
    in the linear layers (the conv layers keep a few weights)."""
    states, masks = [], []
    layers = models.prunable_layers(models.LeNet())
    for i in range(m):
        torch.manual_seed(seed + i)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
        g = torch.Generator().manual_seed(100 + seed + i)
        keep = [1.0, 0.3, 0.6, 0.02, 0.0][i % 5]
        mk = {name: torch.rand(mod.weight.shape, generator=g) < keep for name, mod in layers}
        if i % 5 == 2:  # structured: pruned conv filters and linear units
            mk["conv1"][:4] = False
            mk["conv2"][::2] = False
            mk["fc1"][::3] = False
            mk["fc2"][:60] = False
        if i % 5 == 4:
            mk["conv1"][0, 0, 1, 1] = mk["conv2"][:, :, 1, 1] = True
        masks.append(mk)
        for layer, k in mk.items():
            states[-1][f"{layer}.weight"] = states[-1][f"{layer}.weight"] * k
    return states, masks


def test_sparse_step_equals_the_dense_step_within_rounding(monkeypatch):
    """One step from the same state, then 15 more: weights within a float32 tolerance, pruned weights 0."""
    monkeypatch.setattr(population, "MEMBER_DENSITY", -1.0)  # the layer-wise paths (members: test_members)
    monkeypatch.setattr(population, "SPARSE_DENSITY", ALL)
    states, masks = members()
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-3)
    dense = population.Population(states, masks, "cpu", sparse=False)
    sparse = population.Population(states, masks, "cpu")
    assert not dense.sparse and sorted(sparse.sparse) == ["fc1", "fc2", "fc3"]
    assert dense.convs.taps is None and sparse.convs.taps.members == list(range(5))
    assert sparse.sparse["fc1"][0].members.tolist() == list(range(5))
    for step in range(16):
        x, y = data.train_x[32 * step:32 * step + 32], data.train_y[32 * step:32 * step + 32]
        losses = [pop.train_step(x, y, cfg) for pop in (dense, sparse)]
        assert torch.allclose(losses[0], losses[1], rtol=0, atol=1e-5)
        if step == 0:
            for name in dense.names:  # one step: a few ulps of the weights' scale
                assert torch.allclose(dense.params[name], sparse.params[name], rtol=0, atol=1e-6), name
    for name in dense.names:
        assert torch.allclose(dense.params[name], sparse.params[name], rtol=0, atol=1e-4), name
    for i, mk in enumerate(masks):
        for layer, k in mk.items():
            assert torch.all(sparse.params[f"{layer}.weight"][i][~k] == 0), (i, layer)
    x = data.test_x[:300]
    assert torch.allclose(dense.logits(x), sparse.logits(x, batch_size=70), rtol=0, atol=1e-4)


def test_the_path_is_a_function_of_the_mask_and_a_member_does_not_see_the_others(monkeypatch):
    """Members 0-1 keep their masks and values; the others change values and paths (threshold-crossing
    masks, a ghost): members 0-1 end with the same bits. And the bits do not depend on the thread count."""
    monkeypatch.setattr(population, "MEMBER_DENSITY", -1.0)  # the layer-wise paths (members: test_members)
    monkeypatch.setattr(population, "SPARSE_DENSITY", {"fc1": 0.5, "fc2": 0.5, "fc3": 0.5, "conv2": 0.5})
    states, masks = members()
    data = datasets.load("mnist", "cpu")
    sp = datasets.split(len(data.train_y), 12000, 0, train_subset=160)
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    order = [1, 3, 0, 2, 4]
    a, _ = population.train_population([states[i] for i in order], [masks[i] for i in order], data, sp.train_idx,
                                       cfg, seed=0, iteration=1)
    other_states, other_masks = members(seed=7)
    ghost = {k: torch.zeros_like(v) for k, v in states[0].items()}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        b, _ = population.train_population([states[1], states[3], ghost, other_states[3], other_states[1]],
                                           [masks[1], masks[3], None, other_masks[3], other_masks[2]], data,
                                           sp.train_idx, cfg, seed=0, iteration=1)
    finally:
        torch.set_num_threads(before)
    for i in (0, 1):
        assert all(torch.equal(a[i][k], b[i][k]) for k in a[i]), i
    pop = population.Population([states[i] for i in (1, 0, 3, 0, 2)], [masks[i] for i in (1, 0, 3, 0, 2)], "cpu")
    assert pop.sparse["fc1"][0].members.tolist() == [0, 2, 4] and pop.sparse["fc1"][1] == [(1, 2), (3, 4)]
    assert pop.convs.taps.members == [0, 2, 4]  # conv2 keeps 30%, 2% and 0.1% of its weights there


def test_sparse_kernels_give_the_same_bits_whatever_the_thread_count():
    m, out, inp, n = 7, 40, 90, 32
    g = torch.Generator().manual_seed(3)
    mk = torch.rand(m, out, inp, generator=g) < 0.3
    w, b = torch.randn(m, out, inp, generator=g) * mk, torch.randn(m, out, generator=g)
    x, dz = torch.randn(m, n, inp, generator=g), torch.randn(m, n, out, generator=g)
    rows = sparse.SparseRows(mk, list(range(m)))
    runs, before = [], torch.get_num_threads()
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            y, gw, dx = torch.empty(m, n, out), torch.zeros(m, out, inp), torch.empty(m, n, inp)
            rows.forward(x, w, b, y)
            rows.backward(x, w, dz, gw, dx)
            runs.append((y, gw, dx))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        assert all(torch.equal(p, q) for p, q in zip(runs[0], run))


def test_a_short_run_on_the_sparse_path_has_the_dense_paths_masks_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Every linear layer of every member on the sparse path: the same masks as the dense path, weights within
    rounding; interrupted in the middle of a population's saves, it resumes to the bits of an uninterrupted run."""
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "l1_s"], reinit=["rewind"], seeds=[0], iterations=2,
                          data={"train_subset": 320, "val_subset": 200, "test_subset": 500})
    runner.run_experiment(cfg, tmp_path / "dense", quiet=True, trainer="population", device="cpu", workers=1)
    monkeypatch.setattr(population, "SPARSE_DENSITY", ALL)
    runner.run_experiment(cfg, tmp_path / "sparse", quiet=True, trainer="population", device="cpu", workers=1)
    got, want = trainings(tmp_path / "sparse"), trainings(tmp_path / "dense")
    assert set(got) == set(want) and len(got) == 2 * 3
    for key, (row, rec) in got.items():
        ref = want[key][1]
        for layer in ref["masks"]:
            assert torch.equal(rec["masks"][layer], ref["masks"][layer]), (key, layer)
        for name in ref["weights"]:
            assert torch.allclose(rec["weights"][name], ref["weights"][name], rtol=0, atol=1e-4), (key, name)
    assert resumed_after_an_interrupt(cfg, tmp_path / "interrupted", tmp_path / "sparse") == 6


def resumed_after_an_interrupt(cfg, folder, reference) -> int:
    """Runs ``cfg`` into ``folder``, killed after the dense training and one stored run of iteration 1, then resumes
    it; returns how many trainings match ``reference`` bit for bit (``bitwise_equal``)."""
    logged = []

    def interrupt(msg):
        logged.append(msg)
        if len(logged) == 2:  # the dense training, then 1 of the 2 runs of iteration 1 stored
            raise KeyboardInterrupt

    store.write_experiment(folder, cfg, "", "cpu")
    torch.set_num_threads(os.cpu_count())  # what run_experiment with one worker uses
    with pytest.raises(KeyboardInterrupt):
        for group in populations.groups(cfg.runs()):
            populations.run_group(group, folder, "cpu", say=interrupt)
    assert not all(store.RunStore(folder, rc).is_done() for rc in cfg.runs())
    assert runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)["trained"] > 0
    return bitwise_equal(folder, reference)


def conv2_case(n: int, seed: int = 0):
    """Conv2 inputs and filters of 6 members: dense, random 30%, whole filters pruned, one surviving weight,
    everything pruned, random 5%. Images 1 and 2 have all-zero inputs, so every window position of a pooling
    window ties (bias only): the first position must win, as in max_pool2d."""
    m, ci, hw = 6, 6, 13
    g = torch.Generator().manual_seed(seed)
    mk = torch.rand(m, 16, ci, 3, 3, generator=g) < 0.3
    mk[0] = True
    mk[2] = torch.rand(16, ci, 3, 3, generator=g) < 0.7
    mk[2, ::2] = False
    mk[3] = False
    mk[3, 5, 2, 1, 0] = True
    mk[4] = False
    mk[5] = torch.rand(16, ci, 3, 3, generator=g) < 0.05
    w2 = torch.randn(m, 16, ci, 3, 3, generator=g) * mk
    wt = w2.permute(0, 3, 4, 2, 1).contiguous().view(m, 9 * ci, 16)
    bias = torch.randn(m, 16, generator=g)
    cs = -(-m * ci // 16) * 16
    a1 = torch.rand(n, hw, hw, cs, generator=g).sub_(0.3).clamp_(min=0)  # pooled ReLU outputs: many zeros
    a1[1:3] = 0
    return mk, w2, wt, bias, a1


def conv2_run(mk, w2, wt, bias, a1, taps, ga2=None):
    n, m = a1.shape[0], w2.shape[0]
    a2, idx = torch.full((m, n, 400), 7.0), torch.full((n, 5, 5, m, 16), 9, dtype=torch.uint8)
    cache = torch.empty(taps.cache_shape(n, 169)) if taps is not None else None
    kernels.conv2_pool_forward(a1, wt, bias, a2, idx, taps, cache)
    if ga2 is None:
        return a2, idx
    gwt, gb, da1 = torch.full(wt.shape, 5.0), torch.full((m, 16), 5.0), torch.full(a1.shape, 5.0)
    kernels.conv2_pool_backward(a1, kernels.placed_filters(w2), idx, ga2, gwt, gb, da1, None, wt, taps, cache)
    return a2, idx, gwt, gb, da1


@pytest.mark.parametrize("n", [32, 45, 7])
def test_conv2_tap_kernels_give_the_dense_kernels_forward_bits_and_gradients_within_rounding(n):
    mk, w2, wt, bias, a1 = conv2_case(n)
    g = torch.Generator().manual_seed(5)
    ga2 = torch.randn(6, n, 400, generator=g)
    slots = [1, 2, 3, 4, 5]
    a2, idx, gwt, gb, da1 = conv2_run(mk, w2, wt, bias, a1, None, ga2)
    t = conv2_run(mk, w2, wt, bias, a1, kernels.Conv2Taps(mk, slots), ga2)
    assert torch.equal(t[0], a2) and torch.equal(t[1], idx)  # pooled values and winners: the same bits
    assert (idx[1:3] % 4 == 0).all()  # ties (zero inputs): the first window position, or 4 (ReLU inactive)
    assert torch.equal(t[3], gb)  # bias gradients: the same bits
    want = torch.nn.functional.conv2d(a1[..., :36].permute(0, 3, 1, 2), w2.reshape(96, 6, 3, 3), bias.reshape(-1),
                                      groups=6)[:, :, :10, :10]
    want = torch.nn.functional.max_pool2d(want, 2).relu().reshape(n, 6, 400).transpose(0, 1)
    assert torch.allclose(a2, want, rtol=0, atol=_tol(54, a1.abs().max().item() * w2.abs().max().item()))
    gwt_t = t[2].view(6, 3, 3, 6, 16).permute(0, 4, 3, 1, 2)
    assert torch.all(gwt_t[slots][~mk[slots]] == 0)  # pruned weights: gradient 0
    gwt_d = gwt.view(6, 3, 3, 6, 16).permute(0, 4, 3, 1, 2) * mk
    scale = ga2.abs().max().item() * a1.abs().max().item()
    assert torch.allclose(gwt_t * mk, gwt_d, rtol=0, atol=_tol(n * 25, scale))
    assert torch.allclose(t[4], da1, rtol=0, atol=_tol(64, ga2.abs().max().item() * w2.abs().max().item()))
    assert torch.equal(t[4][..., 24:30], torch.zeros(n, 13, 13, 6))  # member 4: everything pruned
    assert torch.equal(t[4][..., 36:], torch.zeros(n, 13, 13, a1.shape[-1] - 36))  # padding channels


def test_conv2_tap_kernels_give_the_same_bits_whatever_the_thread_count_and_the_other_members():
    mk, w2, wt, bias, a1 = conv2_case(32, seed=2)
    ga2 = torch.randn(6, 32, 400, generator=torch.Generator().manual_seed(1))
    runs, before = [], torch.get_num_threads()
    try:
        for threads in (1, 2, 3, 5):
            torch.set_num_threads(threads)
            runs.append(conv2_run(mk, w2, wt, bias, a1, kernels.Conv2Taps(mk, [1, 2, 3, 4, 5]), ga2))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        assert all(torch.equal(p, q) for p, q in zip(runs[0], run))
    # member 1 alone on the taps, the others on the dense kernels: its outputs and gradients keep their bits
    alone = conv2_run(mk, w2, wt, bias, a1, kernels.Conv2Taps(mk, [1]), ga2)
    assert torch.equal(alone[0][1], runs[0][0][1]) and torch.equal(alone[2][1], runs[0][2][1])
    assert torch.equal(alone[4][..., 6:12], runs[0][4][..., 6:12])


def test_conv2_taps_list_the_surviving_weights_in_the_kernels_order():
    mk = torch.zeros(3, 16, 2, 3, 3, dtype=torch.bool)
    mk[1, 0, 1, 0, 2] = mk[1, 0, 0, 2, 1] = mk[1, 15, 0, 0, 0] = True  # member 1: taps k = (ky*3 + kx)*Ci + ci
    taps = kernels.Conv2Taps(mk, [1, 2])
    assert taps.op[0].tolist() == [-1] * 17  # not on the path
    assert taps.op[1].tolist() == [0, 2] + [2] * 14 + [3]
    assert taps.taps[:3].tolist() == [(0 * 3 + 2) * 2 + 1, (2 * 3 + 1) * 2 + 0, 0]
    assert taps.op[2].tolist() == [3] * 17  # everything pruned: empty ranges
    assert taps.cache_shape(45, 169) == (3, 3, 169 * 2 * 16)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same bits, except that 0 and -0 are one value (+ 0.0 turns -0 into 0 and changes nothing else): a pruned
    weight's zero gets its sign from its gradient's in torch's update, and keeps it where the update is skipped."""
    a, b = (t.contiguous() + 0.0 for t in (a, b))
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-3), (0.9, 1e-3)])
def test_masked_sgd_gives_torchs_update_of_masked_gradients_bit_for_bit(momentum, weight_decay):
    """Three steps of kernels.masked_sgd against the torch update the dense step does (gradients times the float
    mask, then torch's foreach ops): the same bits, pruned weights exactly 0 although their gradients are NaN,
    whole empty blocks and a tail shorter than a vector included, at 1, 2 and 3 threads."""
    g = torch.Generator().manual_seed(3)
    n = 4 * 64 * 10 + 37
    keep = torch.rand(n, generator=g) < 0.3
    keep[:300] = False  # empty blocks
    keep[-5:] = True    # the tail
    start = torch.randn(n, generator=g) * keep
    grads = [torch.randn(n, generator=g) for _ in range(3)]
    ref, buf = start.clone(), None
    for grad in grads:
        gm = grad * keep.float()
        if weight_decay:
            gm = torch._foreach_add([gm], [ref], alpha=weight_decay)[0]
        if momentum:
            buf = gm.clone() if buf is None else buf.mul_(momentum).add_(gm)
            gm = buf
        torch._foreach_add_([ref], [gm], alpha=-0.01)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            p, mbuf = start.clone(), (torch.zeros(n) if momentum else None)
            for step, grad in enumerate(grads):
                grad = grad.masked_fill(~keep, float("nan"))  # a pruned entry's gradient is never read
                kernels.masked_sgd(p, grad, mbuf, keep.to(torch.uint8), 0.01, momentum, weight_decay, step == 0)
            assert _same_bits(p, ref), threads
            assert torch.all(p[~keep] == 0) and not torch.equal(p[keep], start[keep])
            if momentum:
                assert _same_bits(mbuf[keep], buf[keep]) and torch.all(mbuf[~keep] == 0)
    finally:
        torch.set_num_threads(before)


def test_the_sparse_update_gives_the_dense_steps_bits(monkeypatch):
    """With every layer dense, the step that updates through kernels.masked_sgd equals the dense reference (masked
    gradients, torch's update) bit for bit over 5 steps with momentum and weight decay."""
    monkeypatch.setattr(population, "MEMBER_DENSITY", -1.0)  # the layer-wise paths (members: test_members)
    monkeypatch.setattr(population, "SPARSE_DENSITY", {})
    states, masks = members()
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-3)
    dense = population.Population(states, masks, "cpu", sparse=False)
    fused = population.Population(states, masks, "cpu")
    assert dense.mask_bytes is None and fused.mask_bytes is not None and not fused.sparse
    assert dense.convs.live is None and fused.convs.live is not None  # conv1's live-channel kernels: the same bits
    assert fused.convs.live.nl < 5 * 6
    for step in range(5):
        x, y = data.train_x[32 * step:32 * step + 32], data.train_y[32 * step:32 * step + 32]
        assert _same_bits(dense.train_step(x, y, cfg), fused.train_step(x, y, cfg))
    for name in dense.names:
        assert _same_bits(dense.params[name], fused.params[name]), name


def test_pruning_kernels_dense_keeps_the_fused_kernels_without_a_sparse_path(monkeypatch):
    """PRUNING_KERNELS=dense (benchmarks/end_to_end.py's reference): the fused conv kernels, every layer dense,
    the update in torch, and experiment.json's description says so."""
    from pruning.population import lenet_convs

    monkeypatch.setattr(population, "MEMBER_DENSITY", -1.0)  # the layer-wise paths (members: test_members)
    monkeypatch.setattr(population, "SPARSE_DENSITY", ALL)
    states, masks = members()
    monkeypatch.setenv("PRUNING_KERNELS", "dense")
    pop = population.Population(states, masks, "cpu")
    assert isinstance(pop.convs, lenet_convs.Fused) and pop.convs.taps is None and pop.convs.live is None
    assert not pop.sparse and pop.mask_bytes is None
    assert lenet_convs.describe("cpu").endswith("dense only (PRUNING_KERNELS=dense)")
    monkeypatch.delenv("PRUNING_KERNELS")
    pop = population.Population(states, masks, "cpu")
    assert pop.sparse and pop.convs.taps is not None and pop.mask_bytes is not None and pop.convs.live is not None
    assert pop.whole is None
    assert lenet_convs.describe("cpu").endswith(", sparse paths")
    monkeypatch.setattr(population, "MEMBER_DENSITY", 0.5)
    assert population.Population(states, masks, "cpu").whole.s == 4  # all but the unpruned member
    monkeypatch.setenv("PRUNING_KERNELS", "dense")
    assert population.Population(states, masks, "cpu").whole is None


def conv1_case(n: int, seed: int = 0):
    """A batch and 6 members' conv1 filters: dense, random 30%, two filters left (structured), one weight, all
    pruned, random 10%; biases of both signs and zeros of both signs on pruned filters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    mk = torch.rand(6, 6, 1, 3, 3, generator=g) < 0.3
    mk[0] = True
    mk[2, 2:] = False
    mk[3] = False
    mk[3, 1, 0, 2, 2] = True
    mk[4] = False
    mk[5] = torch.rand(6, 1, 3, 3, generator=g) < 0.1
    w = torch.randn(6, 6, 1, 3, 3, generator=g) * mk
    b = torch.randn(6, 6, generator=g)
    b[4, 0], b[4, 1] = 0.0, -0.0
    ft = kernels.padded_filters(torch.cat([w.reshape(36, -1), b.reshape(-1, 1)], 1))
    return x, mk, ft, torch.randn(n, 13, 13, ft.shape[1], generator=g)


@pytest.mark.parametrize("n", [32, 7, 45])
def test_conv1_live_kernels_give_the_dense_kernels_bits(n):
    """Pooled values (dead filters: relu of their bias, zeros of either sign alike), winners, the live filters'
    gradients and every bias's gradient equal the dense kernels' bit for bit, at 1-3 threads; a dead filter's
    weight gradients are 0 (pruned: the update never reads them)."""
    x, mk, ft, ga = conv1_case(n)
    cp = ft.shape[1]
    live = sparse.Conv1Live(mk)
    dead_filters = ~mk.flatten(2).any(2).flatten()
    assert live.live.tolist() == (~dead_filters).nonzero().flatten().tolist()
    assert dead_filters[24:30].all() and dead_filters[14:18].all()  # member 4, member 2's pruned filters
    a, i = torch.empty(n, 13, 13, cp), torch.empty(n, 13, 13, cp, dtype=torch.uint8)
    g = torch.empty(10, cp)
    kernels.conv1_pool_forward(x, ft, a, i)
    kernels.conv1_pool_backward(x, i, a, ga, g)
    on = live.live.long()
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            a2, (ac, ic), g2 = torch.full(a.shape, 7.0), live.buffers(a), torch.full(g.shape, 5.0)
            live.forward(x, ft, a2, ac, ic)
            live.backward(x, ac, ic, a2, ga, g2)
            assert _same_bits(a2, a) and _same_bits(ac[..., :live.nl], a[..., on])
            assert torch.equal(ic[..., :live.nl], i[..., on])
            assert _same_bits(g2[-1], g[-1]) and _same_bits(g2[:-1, on], g[:-1, on])
            assert torch.all(g2[:-1][:, dead_filters.nonzero().flatten()] == 0)
            assert torch.all(g2[:, 36:] == 0)  # padding channels
    finally:
        torch.set_num_threads(before)
    bias = ft[-1, 24:30]
    assert torch.equal(a2[:, :, :, 24:30], bias.clamp(min=0).expand(n, 13, 13, 6))  # a dead member: its biases


def test_conv1_live_kernels_take_a_population_with_every_filter_dead_or_live():
    """No live filter (only constant rows and biases' gradients) and every filter live (the dense kernels' bits)."""
    x, mk, ft, ga = conv1_case(32)
    for keep in (torch.zeros_like(mk), torch.ones_like(mk)):
        live = sparse.Conv1Live(keep)
        w = ft.clone()  # conv1_case's filters, with every weight pruned for the all-dead case
        if not keep.any():
            w[:-1] = 0.0
        a, i, g = torch.empty(32, 13, 13, 48), torch.empty(32, 13, 13, 48, dtype=torch.uint8), torch.empty(10, 48)
        kernels.conv1_pool_forward(x, w, a, i)
        kernels.conv1_pool_backward(x, i, a, ga, g)
        a2, (ac, ic), g2 = torch.empty(a.shape), live.buffers(a), torch.empty(g.shape)
        live.forward(x, w, a2, ac, ic)
        live.backward(x, ac, ic, a2, ga, g2)
        assert live.nl == (36 if keep.all() else 0)
        assert _same_bits(a2, a) and _same_bits(g2[-1], g[-1])
        assert _same_bits(g2[:-1], g[:-1]) if keep.all() else torch.all(g2[:-1] == 0)
