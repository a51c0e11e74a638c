"""The population trainer gives what the one-at-a-time trainer gives, through the same run store.

Reference: ``runner.run_single`` (a ``torch.optim.SGD`` loop over one ``torch.nn.utils.prune``-masked
module). The population computes the same sums in a different order (grouped convolutions, batched
matrix products), so trained weights may differ by float rounding: they are compared with
``WEIGHT_ATOL`` (absolute, on weights of magnitude ~0.1); masks must be identical.
"""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from conftest import cli, write_config
from pruning import config, datasets, models, population, runner, store, techniques, training
from pruning.config import ConfigError, TrainingConfig

WEIGHT_ATOL = 1e-4


def tiny_experiment(tmp_path, **overrides) -> config.ExperimentConfig:
    base = dict(techniques=["l1_us", "random_us", "hybrid"], reinit=["rewind", "finetune"], seeds=[0, 1],
                iterations=2, training={"epochs": 1, "lr": 0.05},
                data={"train_subset": 1000, "val_subset": 500, "test_subset": 1000})
    base.update(overrides)
    return config.load_experiment(write_config(tmp_path / "pop.yaml", **base))


def trainings(folder):
    table = store.load_results(folder)
    return {(r.technique, r.reinit, r.seed, r.iteration): (r, store.load_training(r)) for _, r in table.iterrows()}


def assert_same_results(got_folder, want_folder, n_expected):
    """Every training in ``got_folder`` (``n_expected`` of them) equals its namesake in ``want_folder``."""
    got, want = trainings(got_folder), trainings(want_folder)
    assert len(got) == n_expected and set(got) <= set(want)
    for key, (row, rec) in got.items():
        ref_row, ref = want[key]
        assert rec["masks"].keys() == ref["masks"].keys()
        for layer in ref["masks"]:
            assert torch.equal(rec["masks"][layer], ref["masks"][layer]), (key, layer)
        agree = (rec["predictions"] == ref["predictions"]).float().mean().item()
        assert agree >= 0.995, (key, agree)
        assert abs(row.test_acc - ref_row.test_acc) <= 0.5 and abs(row.val_acc - ref_row.val_acc) <= 0.5, key
        assert rec["weights"].keys() == ref["weights"].keys()
        for name in ref["weights"]:
            assert torch.allclose(rec["weights"][name], ref["weights"][name], rtol=0, atol=WEIGHT_ATOL), (key, name)
        assert row.train_loss == pytest.approx(ref_row.train_loss, abs=1e-4), key


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same 12 runs x 3 trainings, once by each trainer."""
    tmp = tmp_path_factory.mktemp("population")
    cfg = tiny_experiment(tmp)
    runs = cfg.runs()
    pop, single = tmp / "population", tmp / "single"
    assert runner.run_experiment(cfg, pop, quiet=True, trainer="population", device="cpu")["trained"] == len(runs)
    assert runner.run_experiment(cfg, single, quiet=True, trainer="single", device="cpu")["trained"] == len(runs)
    return cfg, pop, single


def test_population_equals_one_at_a_time(folders):
    cfg, pop, single = folders
    assert_same_results(pop, single, n_expected=3 * 2 * 2 * 3)
    assert all(store.RunStore(pop, rc).is_done() for rc in cfg.runs())


def test_pruned_weights_are_exactly_zero_and_sparsity_grows(folders):
    _, pop, _ = folders
    for (technique, _, _, iteration), (row, rec) in trainings(pop).items():
        for layer, mask in rec["masks"].items():
            weight = rec["weights"][f"{layer}.weight"]
            assert torch.all(weight[~mask] == 0), (technique, iteration, layer)
        # 20% of the remaining entries (or channels) of each layer go at every step
        assert (row.sparsity > 0) == (iteration > 0)


def test_resume_after_interruption_finishes_equal(folders, tmp_path):
    cfg, _, single = folders
    runs = cfg.runs()[:6]
    folder = tmp_path / "interrupted"
    store.write_experiment(folder, cfg, "", "cpu")
    logged = []

    def interrupt_after_8(msg):  # 6 dense trainings, then 2 of the first pruned ones
        logged.append(msg)
        if len(logged) == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        population.run_population(runs, folder, "cpu", say=interrupt_after_8)
    done = [len(store.RunStore(folder, rc).completed()) for rc in runs]
    assert sorted(done) == [1] * 4 + [2] * 2 and not any(store.RunStore(folder, rc).is_done() for rc in runs)
    # the resumed population mixes members at iterations 1 and 2 in one batched step (in chunks of 4)
    pending = [rc for rc in runs if not store.RunStore(folder, rc).is_done()]
    population.run_population(pending, folder, "cpu", say=lambda *_: None, max_members=4)
    assert all(store.RunStore(folder, rc).is_done() for rc in runs)
    assert_same_results(folder, single, n_expected=18)


def test_resume_after_lost_last_training_and_done_mark(folders, tmp_path):
    """Remove a finished run's last training consistently (done.json, record, checkpoint back one step)."""
    cfg, pop, single = folders
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
    population.run_population([rc], folder, "cpu", say=lambda *_: None)
    assert st.is_done() and st.completed() == [0, 1, 2]
    assert_same_results(folder, single, n_expected=36)


def test_late_rewind_saves_the_same_rewind_point(tmp_path):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us"], reinit=["late_rewind"], seeds=[0], iterations=1,
                          rewind_epoch=1)
    rc = cfg.runs()[0]
    runner.run_experiment(cfg, tmp_path / "p", quiet=True, trainer="population", device="cpu")
    runner.run_experiment(cfg, tmp_path / "s", quiet=True, trainer="single", device="cpu")
    got = store.RunStore(tmp_path / "p", rc).load_rewind_point()
    want = store.RunStore(tmp_path / "s", rc).load_rewind_point()
    assert got is not None and got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=0, atol=WEIGHT_ATOL), k
    assert_same_results(tmp_path / "p", tmp_path / "s", n_expected=2)


@pytest.mark.parametrize("augment", [False, True])
def test_momentum_weight_decay_and_uneven_last_batch_match_torch_sgd(augment):
    """Members with their own masks and data order, SGD with momentum and weight decay, 2 epochs of
    200 images at batch 32 (last batch 8), against ``training.train`` on each masked module alone."""
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-3, augment=augment)
    members = [(0, 0), (1, 3), (2, 1)]  # (seed, iteration)
    states, masks, splits = [], [], []
    for seed, it in members:
        torch.manual_seed(seed)
        states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
        g = torch.Generator().manual_seed(100 + seed)
        masks.append(None if it == 0 else {name: torch.rand(m.weight.shape, generator=g) < 0.6
                                           for name, m in models.prunable_layers(models.LeNet())})
        splits.append(datasets.split(len(data.train_y), 12000, seed, train_subset=200))
    for mk, st in zip(masks, states):  # starting states carry their masks, as reinit.starting_state makes them
        for layer, m in (mk or {}).items():
            st[f"{layer}.weight"] = st[f"{layer}.weight"] * m
    nonzero_pruned = []

    def check_pruned(epoch, pop):  # the raw stacked parameters, not a masked copy
        for layer, mask in pop.masks.items():
            nonzero_pruned.append(int((pop.params[f"{layer}.weight"].detach()[mask == 0] != 0).sum()))

    trained, stats = population.train_population(
        states, masks, data, [s.train_idx for s in splits], cfg,
        seeds=[s for s, _ in members], iterations=[i for _, i in members], on_epoch_end=check_pruned)
    assert nonzero_pruned == [0] * 10  # 2 epochs x 5 layers
    for i, (seed, it) in enumerate(members):
        model = models.LeNet()
        model.load_state_dict(states[i])
        techniques.apply_masks(model, masks[i])
        ref = training.train(model, data, splits[i], cfg, seed=seed, iteration=it)
        want = techniques.effective_state(model)
        for name in want:
            assert torch.allclose(trained[i][name], want[name], rtol=0, atol=WEIGHT_ATOL), (i, name)
        for layer, m in (masks[i] or {}).items():
            assert torch.all(trained[i][f"{layer}.weight"][~m] == 0)
        assert stats[i]["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-4)


def test_different_training_set_sizes_train_in_separate_groups(tmp_path, monkeypatch):
    cfg = tiny_experiment(tmp_path, techniques=["l1_us"], reinit=["rewind"], seeds=[0], iterations=1)
    big = cfg.runs()[0]
    small = dataclasses.replace(big, data=dataclasses.replace(big.data, train_subset=300))
    sizes = []
    real = population.train_population

    def spy(states, masks, data, train_idx, *args, **kwargs):
        sizes.append(sorted(len(t) for t in train_idx))
        return real(states, masks, data, train_idx, *args, **kwargs)

    monkeypatch.setattr(population, "train_population", spy)
    population.run_population([big, small], tmp_path / "p", "cpu", say=lambda *_: None)
    assert sorted(sizes) == [[300], [300], [1000], [1000]]  # 2 trainings x 2 groups of one member
    for rc in (big, small):
        runner.run_single(rc, tmp_path / "s", "cpu", say=lambda *_: None)
        for it in (0, 1):
            got = store.load_training(store.RunStore(tmp_path / "p", rc).training_path(it))
            want = store.load_training(store.RunStore(tmp_path / "s", rc).training_path(it))
            for layer in want["masks"]:
                assert torch.equal(got["masks"][layer], want["masks"][layer])
            for name in want["weights"]:
                assert torch.allclose(got["weights"][name], want["weights"][name], rtol=0, atol=WEIGHT_ATOL)


def test_other_architectures_are_refused_in_one_line(tmp_path):
    rc = dataclasses.replace(tiny_experiment(tmp_path).runs()[0], arch="vgg11")
    with pytest.raises(ConfigError) as exc:
        population.run_population([rc], tmp_path / "r", "cpu")
    assert "\n" not in str(exc.value) and "vgg11" in str(exc.value) and "--trainer single" in str(exc.value)
    assert not (tmp_path / "r").exists()


def test_cli_population_trainer_end_to_end(tmp_path):
    path = write_config(tmp_path / "cli.yaml", techniques=["l1_us", "random_s"], reinit=["rewind"], seeds=[0],
                        iterations=1, data={"train_subset": 320, "val_subset": 200, "test_subset": 500})
    out = tmp_path / "results"
    proc = cli("run", path, "--results", out, "--trainer", "population", "--device", "cpu", "--quiet", check=True)
    assert proc.returncode == 0
    table = store.load_results(out)
    assert len(table) == 4 and sorted(table.technique.unique()) == ["l1_us", "random_s"]
    assert store.read_experiment(out)["trainer"] == "population"
