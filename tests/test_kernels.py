"""The fused C++ conv kernels (``pruning/population/kernels/`` through ``lenet_convs.Fused``) compute LeNet's conv
blocks.

Reference: each member's own ``models.LeNet`` conv blocks (conv, ReLU, 2x2 max pooling, twice, then
flatten) through autograd. The kernels sum in another order, so values are compared to float rounding.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from rounding import FACTOR, one_net, rounding_error
from pruning.core import numerics
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
    """A run's workers build on first use: editing a file of kernels/ meanwhile must not give them a library that
    does not match the wrappers they imported. The build compiles the text read at import, not the files on disk."""
    monkeypatch.setattr(kernels, "FOLDER", tmp_path / "missing")
    monkeypatch.setattr(kernels.paths, "BUILD", tmp_path / "build")
    monkeypatch.setattr(kernels, "_loaded", {})
    assert kernels.library() is not None
    built = sorted(p.name for p in (tmp_path / "build" / "kernels").iterdir())
    assert len(built) == 1 and built[0].startswith("kernels-") and built[0].endswith(".so")  # no stray source or tmp


def _cpp_entry_points() -> dict[str, list[tuple[str, str]]]:
    """Each ``extern "C"`` function of kernels/*.cpp: its parameters' names and kinds as :data:`kernels.ENTRY_POINTS`
    spells them (``const float *x`` -> ("x", "f32*"), ``float *const *w`` -> ("w", "f32**"), ``int64_t n`` -> i64)."""
    kinds = {"float": "f32", "uint8_t": "u8", "int32_t": "i32", "int64_t": "i64"}
    found = {}
    for path in sorted(kernels.FOLDER.glob("*.cpp")):
        for m in re.finditer(r'extern "C" \w+ (\w+)\(([^)]*)\)', path.read_text()):
            params = []
            for param in filter(None, (s.strip() for s in m[2].split(","))):
                words = re.findall(r"\w+", param)
                params.append((words[-1], kinds[next(w for w in words if w in kinds)] + "*" * param.count("*")))
            found[m[1]] = params
    return found


def test_the_entry_points_table_names_every_cpp_parameter_in_order():
    """The wrappers fill each entry point's arguments by name: the table must be the C++ signatures, exactly."""
    want = {entry: [(name, kind.rstrip("?")) for name, kind in spec] for entry, spec in kernels.SIGNATURES.items()}
    assert _cpp_entry_points() == want
    assert len(want) == 12 and len(want["member_step"]) == 20


def test_entry_points_take_each_argument_by_name_with_its_dtype():
    p, g = torch.zeros(64), torch.ones(64)
    args = dict(p=p, grad=g, buf=None, mask=None, n=64, lr=0.5, momentum=0.0, wd=0.0, first=0, threads=1)
    kernels.call("masked_sgd", **args)
    assert torch.equal(p, torch.full((64,), -0.5))
    with pytest.raises(TypeError, match=r"missing \['first'\], unknown \['frist'\]"):
        kernels.call("masked_sgd", **{k: v for k, v in args.items() if k != "first"}, frist=0)
    with pytest.raises(ValueError, match="masked_sgd: grad: takes a contiguous torch.float32 CPU tensor, got torch.f"):
        kernels.call("masked_sgd", **{**args, "grad": g.double()})
    with pytest.raises(ValueError, match="masked_sgd: mask: takes a contiguous torch.uint8"):
        kernels.call("masked_sgd", **{**args, "mask": torch.ones(64, dtype=torch.bool)})
    with pytest.raises(ValueError, match="masked_sgd: p may not be None"):
        kernels.call("masked_sgd", **{**args, "p": None})
    with pytest.raises(ValueError, match="contiguous"):
        kernels.pointer_array(torch.float32, [torch.zeros(4, 4).t()])
    assert torch.equal(p, torch.full((64,), -0.5))  # nothing ran


def test_the_library_is_built_for_the_asked_instruction_set():
    """``PRUNING_KERNELS_ISA=avx2``: a library of its own whose 16-lane vectors are two 8-lane halves; by default one
    AVX-512 register wherever this CPU has AVX-512."""
    name = Path(kernels.library()._name).name
    if kernels.isa() == "avx2":
        assert name.startswith("kernels-avx2-") and kernels.library().register_lanes() == 8
    else:
        avx512 = "avx512f" in numerics.cpuinfo_line("flags").split()
        assert not name.startswith("kernels-avx2-") and kernels.library().register_lanes() == (16 if avx512 else 8)


# The comparisons with the torch path (and the dense step) that the default build passes, run again on the build
# without AVX-512 (the AVX2 path), so that every x86 machine compiles and tests both halves of the kernels.
WITHOUT_AVX512 = [
    "tests/test_kernels.py::test_conv_blocks_equal_each_members_lenet_bit_for_bit_on_exact_arithmetic",
    "tests/test_kernels.py::test_fused_forward_equals_each_members_lenet_on_real_weights",
    "tests/test_kernels.py::test_fused_and_torch_paths_agree_after_training_steps",
    "tests/test_kernels.py::test_ties_go_to_the_first_window_position_and_dead_units_get_no_gradient",
    "tests/test_kernels.py::test_kernels_are_deterministic_whatever_the_thread_count_and_refuse_wrong_layouts",
    "tests/test_kernels.py::test_the_library_is_built_for_the_asked_instruction_set",
    "tests/test_sparse.py::test_sparse_linear_kernels_equal_the_dense_products_within_rounding",
    "tests/test_sparse.py::test_sparse_step_equals_the_dense_step_within_rounding",
    "tests/test_sparse.py::test_conv2_tap_kernels_give_the_dense_kernels_forward_bits_and_gradients_within_rounding",
    "tests/test_sparse.py::test_masked_sgd_gives_torchs_update_of_masked_gradients_bit_for_bit",
    "tests/test_sparse.py::test_conv1_live_kernels_give_the_dense_kernels_bits",
    "tests/test_members.py::test_member_kernel_equals_the_dense_step_within_rounding",
    "tests/test_members.py::test_member_kernel_takes_any_batch_size",
    "tests/test_members.py::test_member_logits_equal_the_dense_forward_and_their_bits_are_each_members_own",
    "tests/test_members.py::test_member_bits_do_not_depend_on_threads_or_on_the_other_members",
]


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="AVX-512 and AVX2 are x86's")
def test_the_build_without_avx512_agrees_with_the_torch_path():
    """``PRUNING_KERNELS_ISA=avx2`` in a fresh process: the kernels' two-halves path (an AVX2-only CPU's) passes the
    default build's comparisons. Not compared bit for bit with the AVX-512 build: the member kernel's register
    blocks differ, so its sums do."""
    env = {**os.environ, "PRUNING_KERNELS_ISA": "avx2"}
    env.pop("PRUNING_KERNELS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *WITHOUT_AVX512], cwd=REPO,
                          capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout) and not re.search(r"failed|error|skipped", proc.stdout)
