"""The population trainer gives what the one-net trainer gives, through the same run store; its resumes are exact.

Reference: ``lifecycle.train_one`` (a ``torch.optim.SGD`` loop over one ``torch.nn.utils.prune``-masked
module). The population computes the same sums in another order (fused C++ conv kernels, or one stacked
conv1 and a grouped conv2; batched matrix products), so the two differ by float rounding, by how much
depends on the CPU and thread count, and training amplifies it. So equivalence is tested where it is a
property: a few steps from the same state, each member within a tolerance derived from float32 rounding
on this machine (``tests/rounding.py``); and whole runs at a setting that amplifies rounding little
(lr 0.01, no momentum, 32 steps per training) by what survives it: identical masks after the first
pruning step, and accuracy within ``ACC_BAND`` points.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch

from conftest import cli, write_config
from rounding import assert_within_rounding, one_net
from pruning.nets import config, datasets, models
from pruning.population import lenet_convs, batched as population
from pruning.execution import populations, runner
from pruning import store
from pruning.nets.config import ConfigError, TrainingConfig

ACC_BAND = 1.0  # points of test accuracy: rounding amplified by 3 trainings of 32 steps at lr 0.01 stays far below


def tiny_experiment(tmp_path, **overrides) -> config.ExperimentConfig:
    base = dict(techniques=["l1_us", "random_us", "hybrid"], reinit=["rewind", "finetune"], seeds=[0, 1],
                iterations=2, training={"epochs": 1, "lr": 0.01},
                data={"train_subset": 1000, "val_subset": 500, "test_subset": 1000})
    base.update(overrides)
    return config.load_experiment(write_config(tmp_path / "pop.yaml", **base))


def trainings(folder):
    table = store.load_results(folder)
    return {(r.technique, r.reinit, r.seed, r.iteration): (r, store.load_training(r)) for _, r in table.iterrows()}


def assert_same_results(got_folder, want_folder, n_expected):
    """Every training in ``got_folder`` (``n_expected`` of them) is its namesake in ``want_folder`` up to amplified
    float rounding: the same masks after the dense training and the first pruning step (pruning ranks weights
    that differ by rounding only), pruned weights exactly 0, accuracy within ``ACC_BAND`` points."""
    got, want = trainings(got_folder), trainings(want_folder)
    assert len(got) == n_expected and set(got) <= set(want)
    for key, (row, rec) in got.items():
        ref_row, ref = want[key]
        assert rec["masks"].keys() == ref["masks"].keys() and rec["weights"].keys() == ref["weights"].keys()
        if key[3] <= 1:
            for layer in ref["masks"]:
                assert torch.equal(rec["masks"][layer], ref["masks"][layer]), (key, layer)
        for layer, mask in rec["masks"].items():
            assert torch.all(rec["weights"][f"{layer}.weight"][~mask] == 0), (key, layer)
        assert abs(row.test_acc - ref_row.test_acc) <= ACC_BAND and abs(row.val_acc - ref_row.val_acc) <= ACC_BAND, key


def bitwise_equal(got_folder, want_folder) -> int:
    """Every stored training of ``want_folder`` is in ``got_folder`` with identical tensors; returns the count."""
    got, want = trainings(got_folder), trainings(want_folder)
    assert set(got) == set(want)
    for key, (row, rec) in got.items():
        ref_row, ref = want[key]
        for part in ("masks", "weights"):
            assert rec[part].keys() == ref[part].keys()
            for name in ref[part]:
                assert torch.equal(rec[part][name], ref[part][name]), (key, part, name)
        assert torch.equal(rec["logits"], ref["logits"]), key
        assert (row.test_acc, row.val_acc, row.train_loss) == (ref_row.test_acc, ref_row.val_acc, ref_row.train_loss)
    return len(got)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same 12 runs x 3 trainings, once by each trainer (one worker: both in this process)."""
    tmp = tmp_path_factory.mktemp("population")
    cfg = tiny_experiment(tmp)
    runs = cfg.runs()
    pop, single = tmp / "population", tmp / "single"
    assert runner.run_experiment(cfg, pop, quiet=True, trainer="population", device="cpu", workers=1)["trained"] == len(runs)
    assert runner.run_experiment(cfg, single, quiet=True, trainer="single", device="cpu", workers=1)["trained"] == len(runs)
    return cfg, pop, single


@pytest.mark.slow
def test_population_is_the_default_for_lenet_and_equals_the_one_net_loop(folders):
    cfg, pop, single = folders
    assert runner.choose_trainer(cfg, "cpu") == "population"
    assert_same_results(pop, single, n_expected=3 * 2 * 2 * 3)
    assert all(store.RunStore(pop, rc).is_done() for rc in cfg.runs())


@pytest.mark.slow
def test_pruned_weights_are_exactly_zero_and_sparsity_grows(folders):
    _, pop, _ = folders
    for (technique, _, _, iteration), (row, rec) in trainings(pop).items():
        for layer, mask in rec["masks"].items():
            weight = rec["weights"][f"{layer}.weight"]
            assert torch.all(weight[~mask] == 0), (technique, iteration, layer)
        assert (row.sparsity > 0) == (iteration > 0)


@pytest.mark.slow
def test_a_population_record_is_as_small_as_the_one_net_record(folders):
    """A member's weights are views into the population's stacked tensors; stored whole, each record would
    carry every member's (torch.save writes a view's whole storage)."""
    cfg, pop, single = folders
    for rc in cfg.runs():
        for it in range(1, rc.iterations + 1):
            p, s = store.RunStore(pop, rc).training_path(it), store.RunStore(single, rc).training_path(it)
            assert p.stat().st_size <= s.stat().st_size + 4096, (rc.technique, it)
        assert store.RunStore(pop, rc).checkpoint_path.stat().st_size <= \
            store.RunStore(single, rc).checkpoint_path.stat().st_size + 4096


@pytest.mark.slow
def test_dense_training_is_shared_by_the_runs_of_a_seed_and_stored_once(folders):
    cfg, pop, _ = folders
    dense_dirs = sorted(pop.glob("dense_*"))
    assert len(dense_dirs) == 2  # one per seed
    for rc in cfg.runs():
        st = store.RunStore(pop, rc)
        dense = store.RunStore(pop, store.dense_config(rc))
        assert dense.dir in dense_dirs and dense.is_done()
        # the same bytes: a hard link (or a copy where links are impossible), not a second training
        assert st.training_path(0).read_bytes() == dense.training_path(0).read_bytes()
        assert st.training_path(0).stat().st_ino == dense.training_path(0).stat().st_ino


@pytest.mark.slow
def test_shared_dense_training_gives_the_same_stored_trainings_as_unshared(tmp_path):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "random_s"], reinit=["rewind"], seeds=[0])
    unshared = dataclasses.replace(cfg, share_dense=False)
    runner.run_experiment(cfg, tmp_path / "shared", quiet=True, trainer="single", device="cpu", workers=1)
    runner.run_experiment(unshared, tmp_path / "own", quiet=True, trainer="single", device="cpu", workers=1)
    assert not list((tmp_path / "own").glob("dense_*")) and len(list((tmp_path / "shared").glob("dense_*"))) == 1
    assert bitwise_equal(tmp_path / "shared", tmp_path / "own") == 2 * 3


def test_a_members_result_does_not_depend_on_the_values_of_the_others():
    """What makes ghost slots (and so exact resumes) work: same shapes, other values, same bits."""
    data = datasets.load("mnist", "cpu")
    sp = datasets.split(len(data.train_y), 12000, 0, train_subset=320)
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    states = []
    for seed in range(4):
        torch.manual_seed(seed)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
    masks = [None, {"fc1": torch.rand(120, 400, generator=torch.Generator().manual_seed(5)) < 0.5}, None, None]
    states[1]["fc1.weight"] = states[1]["fc1.weight"] * masks[1]["fc1"]
    a, _ = population.train_population(states, masks, data, sp.train_idx, cfg, seed=0, iteration=1)
    ghosts = [states[0], states[1], {k: torch.zeros_like(v) for k, v in states[2].items()}, states[0]]
    b, _ = population.train_population(ghosts, masks[:2] + [None, None], data, sp.train_idx, cfg, seed=0, iteration=1)
    for i in (0, 1):
        assert all(torch.equal(a[i][k], b[i][k]) for k in a[i]), i
    assert not torch.equal(a[2]["fc1.weight"], b[2]["fc1.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [2, 7, 9, 15])
def test_resume_after_interruption_is_bit_identical(folders, tmp_path, stop_after):
    """Log lines: seed 0's dense training, its 6 runs at iteration 1, at iteration 2, then seed 1 likewise.
    Stop in the middle of a population's saves (2: 1 of 6 stored; 9: 2 of 6 at iteration 2), at the end of
    one (7) and in the second group (15); resume; every stored tensor equals the uninterrupted run's."""
    cfg, pop, _ = folders
    folder = tmp_path / "interrupted"
    logged = []

    def interrupt(msg):
        logged.append(msg)
        if len(logged) == stop_after:
            raise KeyboardInterrupt

    store.write_experiment(folder, cfg, "", "cpu")
    torch.set_num_threads(os.cpu_count())  # what run_experiment with one worker uses, as in `folders`
    with pytest.raises(KeyboardInterrupt):
        for group in populations.groups(cfg.runs()):
            populations.run_group(group, folder, "cpu", say=interrupt)
    assert not all(store.RunStore(folder, rc).is_done() for rc in cfg.runs())
    assert runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)["trained"] > 0
    assert bitwise_equal(folder, pop) == 36


@pytest.mark.slow
def test_resume_after_lost_last_training_and_done_mark(folders, tmp_path):
    """Remove a finished run's last training consistently (done.json, record, checkpoint back one step)."""
    cfg, pop, _ = folders
    folder = tmp_path / "copy"
    shutil.copytree(pop, folder)
    rc = cfg.runs()[0]
    st = store.RunStore(folder, rc)
    (st.dir / "done.json").unlink()
    st.training_path(2).unlink()
    st.training_path(2).with_suffix(".json").unlink()
    ckpt = st.checkpoint()
    one = store.load_training(st.training_path(1))
    meta = store.read_json(st.training_path(1).with_suffix(".json"), "")
    ckpt_1 = {"iteration": 1, "state": one["weights"], "masks": one["masks"],
              "record": store.read_tensors(st.training_path(1), ""), "metrics": meta}
    assert ckpt["iteration"] == 2
    store.save_tensors(ckpt_1, st.dir / "checkpoint.pt")
    assert runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)["trained"] == 1
    assert st.is_done() and st.completed() == [0, 1, 2]
    assert bitwise_equal(folder, pop) == 36


@pytest.mark.slow
def test_late_rewind_saves_the_same_rewind_point(tmp_path):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us"], reinit=["late_rewind"], seeds=[0], iterations=1,
                          rewind_epoch=1)
    rc = cfg.runs()[0]
    runner.run_experiment(cfg, tmp_path / "p", quiet=True, trainer="population", device="cpu", workers=1)
    runner.run_experiment(cfg, tmp_path / "s", quiet=True, trainer="single", device="cpu", workers=1)
    got = store.RunStore(tmp_path / "p", rc).load_rewind_point()
    want = store.RunStore(tmp_path / "s", rc).load_rewind_point()
    assert got is not None and got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k  # the dense training is the one-net loop in both
    assert not list((tmp_path / "p").glob("dense_*"))  # late rewind keeps its own dense training
    assert_same_results(tmp_path / "p", tmp_path / "s", n_expected=2)


@pytest.mark.slow
@pytest.mark.parametrize("convs", ["fused", "torch"])
def test_momentum_weight_decay_and_uneven_last_batch_match_torch_sgd(convs, monkeypatch):
    """Members with their own masks on a shared batch, SGD with momentum and weight decay, 3 steps (72 images at
    batch 32: the last batch has 8) from the same state, against ``training.train`` on each masked module
    alone; with the conv blocks in the C++ kernels (the CPU default) and in torch (GPUs, or no compiler).
    Each trained tensor must be as close to the float64 one-net result as the float32 one-net result is
    (``rounding.assert_within_rounding``), and pruned weights exactly 0."""
    if convs == "torch":
        monkeypatch.setattr(lenet_convs, "make", lambda device, channels: lenet_convs.Torch())
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-3)
    split = datasets.split(len(data.train_y), 12000, 1, train_subset=72)
    states, masks = [], []
    for i in range(3):
        torch.manual_seed(i)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
        g = torch.Generator().manual_seed(100 + i)
        masks.append(None if i == 0 else {name: torch.rand(m.weight.shape, generator=g) < 0.6
                                          for name, m in models.prunable_layers(models.LeNet())})
    for mk, st in zip(masks, states):  # starting states carry their masks, as reinit.starting_state makes them
        for layer, m in (mk or {}).items():
            st[f"{layer}.weight"] = st[f"{layer}.weight"] * m
    trained, stats = population.train_population(states, masks, data, split.train_idx, cfg, seed=1, iteration=3)
    for i in range(3):
        want32, ref32 = one_net(states[i], masks[i], data, split, cfg, seed=1, iteration=3)
        want64, ref64 = one_net(states[i], masks[i], data, split, cfg, seed=1, iteration=3, dtype=torch.float64)
        for name in want64:
            assert not torch.equal(want32[name], states[i][name])  # it trained
            assert_within_rounding(trained[i][name], want32[name], want64[name], (i, name))
        for layer, m in (masks[i] or {}).items():
            assert torch.all(trained[i][f"{layer}.weight"][~m] == 0)
        assert_within_rounding(torch.tensor(stats[i]["train_loss"]), torch.tensor(ref32["train_loss"]),
                               torch.tensor(ref64["train_loss"], dtype=torch.float64), (i, "train_loss"))


def test_groups_are_one_per_seed_and_training_setup_in_config_order(tmp_path):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "hybrid"], reinit=["rewind", "finetune"], seeds=[0, 1])
    runs = cfg.runs()
    other = dataclasses.replace(runs[0], data=dataclasses.replace(runs[0].data, train_subset=300))
    groups = populations.groups(runs + [other])
    assert [len(g) for g in groups] == [4, 4, 1]
    assert [[(rc.technique, rc.reinit) for rc in g] for g in groups[:2]] == [
        [("l1_us", "rewind"), ("l1_us", "finetune"), ("hybrid", "rewind"), ("hybrid", "finetune")]] * 2
    assert {rc.seed for rc in groups[0]} == {0} and {rc.seed for rc in groups[1]} == {1}


def test_split_cuts_groups_into_interleaved_parts_so_that_every_worker_trains_every_technique(tmp_path):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "hybrid", "random_s"], reinit=["rewind", "finetune"],
                          seeds=[0, 1, 2])
    groups = populations.groups(cfg.runs())  # 3 seeds x 6 runs, each technique's reinit modes together
    halves = populations.split(groups[:1], 2)  # one seed, 2 workers: runs 0, 2, 4 and 1, 3, 5
    assert halves == [groups[0][0::2], groups[0][1::2]]
    for part in halves:  # every technique once in each part, so the parts cost the same
        assert sorted(rc.technique for rc in part) == ["hybrid", "l1_us", "random_s"]
    assert [{rc.reinit for rc in part} for part in halves] == [{"rewind"}, {"finetune"}]
    assert [len(p) for p in populations.split(groups, 2)] == [3] * 6  # 3 seeds on 2 workers: 3 parts each
    assert populations.split(groups[:2], 2) == groups[:2]  # as many seeds as workers: no cut
    assert populations.split(groups[:1], 1) == groups[:1]
    assert [len(p) for p in populations.split([groups[0][:3]], 4)] == [1, 1, 1]  # at most one part per run
    assert [len(p) for p in populations.split([groups[0][:5]], 2)] == [3, 2]
    parts = populations.split(groups, 2)  # every run once, each part in config order
    assert sorted(id(rc) for p in parts for rc in p) == sorted(id(rc) for g in groups for rc in g)
    order = {id(rc): i for i, rc in enumerate(rc for g in groups for rc in g)}
    assert all([order[id(rc)] for rc in p] == sorted(order[id(rc)] for rc in p) for p in parts)


@pytest.mark.slow
def test_a_seed_split_over_two_processes_gives_the_bits_of_one_population_in_one_process(tmp_path):
    """One seed, by default on as many one-thread workers as cores: each process trains a part of the seed's runs
    (``populations.split``). One worker with every core's threads training them all must give the same bits: a
    member sees neither the other members nor the thread count (the shared dense training, the one-net loop,
    keeps one worker's threads either way)."""
    cfg = tiny_experiment(tmp_path, techniques=["l1_us", "random_s", "hybrid"], reinit=["rewind", "finetune"],
                          seeds=[0])
    two = runner.run_experiment(cfg, tmp_path / "two", quiet=True, device="cpu")
    one = runner.run_experiment(cfg, tmp_path / "one", quiet=True, device="cpu", workers=1)
    assert (one["workers"], two["workers"]) == (1, min(6, os.cpu_count()))
    assert bitwise_equal(tmp_path / "two", tmp_path / "one") == 6 * 3


def test_augmentation_runs_on_the_population_and_equals_the_one_net_loop_with_augmentation():
    """The crop and flip drawn for (seed, iteration, epoch, step) are the same for every member: the population
    augments its shared batch once. 3 steps with momentum from one state, each member within rounding of
    ``training.train`` with augmentation (``tests/rounding.py``), and not what training without it gives."""
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.9, augment=True)
    plain = dataclasses.replace(cfg, augment=False)
    split = datasets.split(len(data.train_y), 12000, 2, train_subset=96)
    states, masks = [], []
    for i in range(2):
        torch.manual_seed(10 + i)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
        g = torch.Generator().manual_seed(200 + i)
        masks.append({name: torch.rand(m.weight.shape, generator=g) < 0.7
                      for name, m in models.prunable_layers(models.LeNet())})
        for layer, m in masks[-1].items():
            states[-1][f"{layer}.weight"] = states[-1][f"{layer}.weight"] * m
    trained, _ = population.train_population(states, masks, data, split.train_idx, cfg, seed=2, iteration=1)
    for i in range(2):
        want32, _ = one_net(states[i], masks[i], data, split, cfg, seed=2, iteration=1)
        want64, _ = one_net(states[i], masks[i], data, split, cfg, seed=2, iteration=1, dtype=torch.float64)
        unaugmented, _ = one_net(states[i], masks[i], data, split, plain, seed=2, iteration=1)
        for name in want64:
            assert_within_rounding(trained[i][name], want32[name], want64[name], (i, name))
        assert not torch.allclose(trained[i]["fc1.weight"], unaugmented["fc1.weight"], rtol=0, atol=1e-5)


def test_augmented_configs_train_on_the_population(tmp_path):
    cfg = tiny_experiment(tmp_path, training={"epochs": 1, "lr": 0.05, "augment": True})
    assert runner.choose_trainer(cfg, "cpu") == "population"


def test_other_architectures_are_refused_in_one_line(tmp_path):
    rc = dataclasses.replace(tiny_experiment(tmp_path).runs()[0], arch="vgg11")
    with pytest.raises(ConfigError) as exc:
        populations.run_group([rc], tmp_path / "r", "cpu")
    assert "\n" not in str(exc.value) and "vgg11" in str(exc.value) and "--trainer single" in str(exc.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_population_trainer_end_to_end(tmp_path):
    path = write_config(tmp_path / "cli.yaml", techniques=["l1_us", "random_s"], reinit=["rewind"], seeds=[0],
                        iterations=1, data={"train_subset": 320, "val_subset": 200, "test_subset": 500})
    out = tmp_path / "results"
    proc = cli("run", path, "--results", out, "--trainer", "population", "--device", "cpu", "--quiet", check=True)
    assert proc.returncode == 0
    table = store.load_results(out)
    assert len(table) == 4 and sorted(table.technique.unique()) == ["l1_us", "random_s"]
    assert store.read_experiment(out)["trainer"] == "population"
