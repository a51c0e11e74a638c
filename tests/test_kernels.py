"""The fused C++ conv kernels (``pruning/kernels.cpp`` through ``lenet_convs.Fused``) compute LeNet's conv blocks.

Reference: each member's own ``models.LeNet`` conv blocks (conv, ReLU, 2x2 max pooling, twice, then
flatten) through autograd. The kernels sum in another order, so values are compared to float rounding.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from rounding import FACTOR, one_net, rounding_error
from pruning.nets import datasets, models
from pruning.nets.config import TrainingConfig
from pruning.population import kernels, lenet_convs, batched as population

M = 3


def members(seed: int = 0):
    """M LeNets with their own half-pruned masks, as the population stacks them."""
    states, masks = [], []
    for i in range(M):
        torch.manual_seed(seed + i)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
        g = torch.Generator().manual_seed(100 + seed + i)
        masks.append({name: torch.rand(m.weight.shape, generator=g) < 0.5 for name, m in
                      models.prunable_layers(models.LeNet())})
        for layer, mk in masks[-1].items():
            states[-1][f"{layer}.weight"] = states[-1][f"{layer}.weight"] * mk
    return states, masks


def reference(states, x, dh):
    """Each member's conv-block output (flattened) and the conv layers' gradients of sum(output * dh[i])."""
    outs, grads = [], []
    for i, state in enumerate(states):
        net = models.LeNet()
        net.load_state_dict(state)
        h = torch.nn.functional.max_pool2d(torch.relu(net.conv1(x)), 2)
        h = torch.nn.functional.max_pool2d(torch.relu(net.conv2(h)), 2).flatten(1)
        (h * dh[i]).sum().backward()
        outs.append(h.detach())
        grads.append({f"{layer}.{kind}": getattr(getattr(net, layer), kind).grad
                      for layer in ("conv1", "conv2") for kind in ("weight", "bias")})
    return torch.stack(outs), grads


def batch(n: int = 32) -> torch.Tensor:
    return datasets.load("mnist", "cpu").train_x[:n].clone()


def test_the_cpu_default_is_the_fused_path():
    """g++ is on this machine (and on CI's): the population's conv blocks run in the C++ kernels."""
    assert kernels.library() is not None
    assert isinstance(lenet_convs.make("cpu", 16), lenet_convs.Fused)
    assert isinstance(lenet_convs.make("meta", 16), lenet_convs.Torch)  # any other device: torch
    assert isinstance(population.Population(*members(), "cpu").convs, lenet_convs.Fused)


def exact(states, x):
    """Weights in steps of 1/8 and a binarised batch: every sum in the conv blocks is exact in float32 whatever
    its order, so two correct implementations agree bit for bit, ties between window positions included."""
    for state in states:
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
            state[name] = (state[name] * 16).round() / 8
    return (x > 0.5).float()


@pytest.mark.parametrize("path", [lenet_convs.Fused, lenet_convs.Torch])
def test_conv_blocks_equal_each_members_lenet_bit_for_bit_on_exact_arithmetic(path):
    states, masks = members()
    x = exact(states, batch())
    pop = population.Population(states, masks, "cpu")
    dh = torch.randint(-8, 9, (M, x.shape[0], 400), generator=torch.Generator().manual_seed(7)) / 8
    want, want_grads = reference(states, x, dh)
    convs = path()
    got, saved = convs.forward(pop.params, M, x, train=True)
    assert got.shape == (M, x.shape[0], 400)
    assert torch.equal(got, want)
    assert 0.2 < (got > 0).float().mean() < 0.9  # many units live, many dead
    grads = convs.backward(pop.params, M, dh, saved)
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        ref = torch.stack([g[name] for g in want_grads])
        assert ref.abs().max() > 0
        assert torch.equal(grads[name], ref), name


def test_fused_forward_equals_each_members_lenet_on_real_weights():
    """Real MNIST and real initial weights: the same values up to float rounding (a near-tie between window
    positions may pick another winner, which changes gradients but not the pooled value)."""
    states, masks = members(seed=5)
    x = batch(64)
    want, _ = reference(states, x, torch.zeros(M, 64, 400))
    got, _ = lenet_convs.Fused().forward(population.Population(states, masks, "cpu").params, M, x, train=False)
    assert torch.allclose(got, want, rtol=0, atol=1e-5)


def test_fused_and_torch_paths_agree_after_training_steps(monkeypatch):
    """3 SGD steps with momentum from the same state: the two conv paths differ by at most twice the rounding a
    float32 one-net computation of the same steps incurs (``tests/rounding.py``), and both trained."""
    states, masks = members(seed=3)
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    split = datasets.split(len(data.train_y), 12000, 0, train_subset=96)
    fused, _ = population.train_population(states, masks, data, split.train_idx, cfg, seed=0, iteration=1)
    monkeypatch.setattr(lenet_convs, "make", lambda device, channels: lenet_convs.Torch())
    in_torch, _ = population.train_population(states, masks, data, split.train_idx, cfg, seed=0, iteration=1)
    for i in range(M):
        want32, _ = one_net(states[i], masks[i], data, split, cfg, seed=0, iteration=1)
        want64, _ = one_net(states[i], masks[i], data, split, cfg, seed=0, iteration=1, dtype=torch.float64)
        for name in want64:
            assert not torch.equal(fused[i][name], states[i][name]), name  # they trained
            diff = float((fused[i][name] - in_torch[i][name]).abs().max())
            assert diff <= 2 * FACTOR * rounding_error(want32[name], want64[name]), (i, name, diff)


def test_ties_go_to_the_first_window_position_and_dead_units_get_no_gradient():
    """Zero filters: every window is a tie (max_pool2d takes the first position); a negative bias makes the
    unit dead after ReLU. Bias gradients then equal autograd's exactly as sums over the live units."""
    states, masks = members()
    for state in states:
        state["conv1.weight"].zero_()
        state["conv1.bias"][:] = torch.tensor([0.5, -0.5, 0.25, -1.0, 1.0, 0.0])
    pop = population.Population(states, [None] * M, "cpu")
    x = batch(8)
    dh = torch.randn(M, 8, 400, generator=torch.Generator().manual_seed(1))
    want, want_grads = reference(states, x, dh)
    convs = lenet_convs.Fused()
    got, saved = convs.forward(pop.params, M, x, train=True)
    _, a1, i1, _ = saved
    assert torch.all(i1 == 0)  # ties: the first window position
    assert torch.all(a1[..., 1::6][..., :M] == 0) and torch.all(a1[..., 3::6][..., :M] == 0)  # dead: ReLU
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    grads = convs.backward(pop.params, M, dh, saved)
    ref_bias = torch.stack([g["conv1.bias"] for g in want_grads])
    assert torch.all(grads["conv1.bias"][:, [1, 3, 5]] == 0)  # dead (or exactly 0) units: no gradient
    assert torch.allclose(grads["conv1.bias"], ref_bias, rtol=0, atol=1e-4 * ref_bias.abs().max().item())


def test_kernels_are_deterministic_whatever_the_thread_count_and_refuse_wrong_layouts():
    states, masks = members()
    pop = population.Population(states, masks, "cpu")
    x = batch()
    dh = torch.randn(M, 32, 400, generator=torch.Generator().manual_seed(2))
    runs, before = [], torch.get_num_threads()
    try:
        for threads in (1, 1, 2, 3):
            torch.set_num_threads(threads)
            convs = lenet_convs.Fused()
            out, saved = convs.forward(pop.params, M, x, train=True)
            runs.append((out.clone(), saved[1].clone(), convs.backward(pop.params, M, dh, saved)))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        assert torch.equal(runs[0][0], run[0]) and torch.equal(runs[0][1], run[1])
        assert all(torch.equal(runs[0][2][k], run[2][k]) for k in runs[0][2])
    a = torch.empty(32, 13, 13, 16)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.conv1_pool_forward(x, torch.zeros(16, 10).t(), a, torch.empty(a.shape, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shapes do not match"):
        kernels.conv1_pool_forward(x, torch.zeros(10, 16), a[:, :12], torch.empty(a.shape, dtype=torch.uint8))


def _which_path(**env) -> subprocess.CompletedProcess:
    code = ("from pruning.population import kernels, lenet_convs\n"
            "print(kernels.library() is None, type(lenet_convs.make('cpu', 16)).__name__)")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.mark.slow
def test_without_a_working_compiler_the_step_stays_in_torch_with_one_line():
    proc = _which_path(CXX="false")  # a "compiler" that fails: the build fails, the step falls back
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "Torch"]
    assert proc.stderr.count("\n") == 1 and "did not build" in proc.stderr and "stays in torch" in proc.stderr
    asked = _which_path(PRUNING_KERNELS="torch")  # the torch path on purpose: no build, no message
    assert asked.stdout.split() == ["True", "Torch"] and asked.stderr == ""


@pytest.mark.slow
def test_the_library_is_built_from_the_source_read_at_import(tmp_path, monkeypatch):
    """A run's workers build on first use: editing kernels.cpp meanwhile must not give them a library that does
    not match the wrappers they imported. The build compiles the text read at import, not the file on disk."""
    monkeypatch.setattr(kernels, "SOURCE", tmp_path / "missing.cpp")
    monkeypatch.setattr(kernels.paths, "BUILD", tmp_path / "build")
    monkeypatch.setattr(kernels, "_loaded", {})
    assert kernels.library() is not None
    built = sorted(p.name for p in (tmp_path / "build" / "kernels").iterdir())
    assert len(built) == 1 and built[0].startswith("kernels-") and built[0].endswith(".so")  # no stray source or tmp
