"""The released code's settings (configs/authors_lenet_mnist.yaml): each new field's effect on tensors, and the
profile's runs resuming bit for bit."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision.transforms as T

from conftest import REPO, write_config
from pruning import store
from pruning.core.errors import ConfigError
from pruning.execution import lifecycle, runner
from pruning.nets import config, datasets, techniques, training
from pruning.nets.config import RunConfig, TrainingConfig, load_experiment
from test_sparse import resumed_after_an_interrupt

NEW_TRAINING_FIELDS = {"augment_padding": 2, "augment_flip": True, "augment_fill": "mean",
                       "data_order": "per_training", "prune_from_epoch": None}


@pytest.mark.parametrize("name", sorted(NEW_TRAINING_FIELDS))
def test_a_new_field_at_its_default_leaves_the_run_hash_unchanged(name):
    plain = RunConfig()
    spelled = RunConfig(training=TrainingConfig(**{name: NEW_TRAINING_FIELDS[name]}))
    assert spelled.run_hash() == plain.run_hash()
    moved = {"augment_padding": 4, "augment_flip": False, "augment_fill": "black",
             "data_order": "same_every_round", "prune_from_epoch": 1}[name]
    assert RunConfig(training=TrainingConfig(**{name: moved})).run_hash() != plain.run_hash()


def test_the_same_order_setting_repeats_each_epochs_batches_in_every_round():
    idx = torch.arange(1000)
    same = [training.epoch_order(3, k, 0, idx, "same_every_round") for k in range(4)]
    assert all(torch.equal(same[0], o) for o in same[1:])
    assert not torch.equal(same[0], training.epoch_order(3, 0, 1, idx, "same_every_round"))  # epochs differ
    fresh = [training.epoch_order(3, k, 0, idx) for k in range(4)]
    assert all(not torch.equal(fresh[0], o) for o in fresh[1:])


def test_the_l1_us_recipe_restarts_the_order_after_the_epoch_its_mask_reads():
    cfg = TrainingConfig(epochs=30, prune_from_epoch=1, data_order="same_every_round")
    assert [training.order_epoch(cfg, e) for e in range(4)] == [0, 0, 1, 2]
    assert training.order_epoch(dataclasses.replace(cfg, data_order="per_training"), 3) == 3
    assert training.order_epoch(TrainingConfig(), 3) == 3


def _raw_batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8).float().div(255)
    raw[:, :, :, :5] = 1.0  # a bright left edge: a flip or an offset that goes wrong shows
    return raw


def test_crop_with_padding_4_and_flip_equal_torchvisions_on_the_same_draw(monkeypatch):
    raw = _raw_batch()
    mean, std = 0.1307, 0.3081
    black = torch.tensor([-mean / std])
    ours = training.augment((raw - mean) / std, 5, 2, 7, 11, padding=4, flip=True, fill=black)
    flips, dy, dx = training.augment_draw(5, 2, 7, 11, len(raw), padding=4)
    assert flips.any() and not flips.all() and int(dy.max()) > 4  # the draw exercises both sides
    pipeline = []
    for i in range(len(raw)):
        monkeypatch.setattr(T.RandomCrop, "get_params", staticmethod(lambda img, size, i=i: (int(dy[i]), int(dx[i]),
                                                                                             28, 28)))
        steps = T.Compose([T.RandomCrop(28, padding=4), T.RandomHorizontalFlip(p=float(flips[i])),
                           T.Normalize((mean,), (std,))])
        pipeline.append(steps(raw[i]))
    assert torch.allclose(ours, torch.stack(pipeline), atol=1e-6)
    # the crop keeps pixels: a border is black, not the mean grey of the default augmentation
    assert torch.isclose(ours.min(), black[0], atol=1e-6)
    unflipped = training.augment((raw - mean) / std, 5, 2, 7, 11, padding=4, flip=False, fill=black)
    assert torch.equal(unflipped[~flips], ours[~flips]) and not torch.equal(unflipped[flips], ours[flips])


def test_the_default_augmentation_is_unchanged():
    """Pad 2 with the mean pixel after the flip: what the published augmentation variant trained with."""
    x = _raw_batch(8)
    flips, dy, dx = training.augment_draw(0, 1, 2, 3, 8)
    out = training.augment(x, 0, 1, 2, 3)
    for i in range(8):
        img = x[i].flip(-1) if flips[i] else x[i]
        want = torch.nn.functional.pad(img, (2, 2, 2, 2))[:, int(dy[i]):int(dy[i]) + 28, int(dx[i]):int(dx[i]) + 28]
        assert torch.equal(out[i], want)


def test_whole_set_training_uses_60000_images_and_no_validation():
    sp = datasets.split(60000, 0, seed=4)
    assert len(sp.train_idx) == 60000 and len(sp.val_idx) == 0
    assert torch.equal(sp.train_idx, torch.arange(60000))
    cfg = load_experiment(REPO / "configs" / "authors_lenet_mnist.yaml")
    rd = lifecycle.run_data(cfg.runs()[0], "cpu")
    assert len(rd.split.train_idx) == 60000 == len(rd.data.train_y) and len(rd.split.val_idx) == 0
    assert len(rd.test_y) == 10000


def test_structured_pruning_along_inputs_leaves_conv1_and_the_10_output_units_whole():
    state = lifecycle.initial_state(RunConfig())
    for technique in ("l1_s", "l2_s", "linf_s", "lneginf_s", "random_s", "hybrid"):
        masks = None
        for k in range(1, 21):
            masks = techniques.prune_step("lenet", state, masks, technique, 0.2, seed=0, iteration=k,
                                          structured_dim=1)
        assert bool(masks["conv1"].all()), technique
        assert int(masks["conv2"].any(dim=(0, 2, 3)).sum()) == 2, technique  # 6 -> 5 -> 4 -> 3 -> 2 channels
        if technique == "hybrid":  # L1 unstructured on the linear layers: an output unit may lose every input
            continue
        assert int(masks["fc3"].any(dim=1).sum()) == 10, technique          # every output unit keeps inputs
        assert bool((masks["fc1"].any(dim=0) == masks["fc1"].all(dim=0)).all()), technique  # whole input columns


@pytest.mark.slow
def test_a_run_without_validation_stores_no_validation_accuracy(tmp_path):
    cfg = load_experiment(write_config(tmp_path / "whole.yaml", techniques=["l1_us"], reinit=["rewind"],
                                       iterations=1, data={"val_size": 0, "train_subset": 200, "val_subset": None,
                                                           "test_subset": 200}))
    folder = tmp_path / "whole"
    runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)
    table = store.load_results(folder)
    assert len(table) == 2 and table["val_acc"].isna().all() and table["test_acc"].notna().all()


def test_augment_fields_without_augmentation_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="set training.augment: true"):
        load_experiment(write_config(tmp_path / "a.yaml", training={"epochs": 1, "augment_padding": 4}))


def test_prune_from_epoch_is_refused_where_the_next_training_would_start_from_the_pruned_net(tmp_path):
    with pytest.raises(ConfigError, match="rewind or random_reinit only"):
        load_experiment(write_config(tmp_path / "a.yaml", training={"epochs": 3, "prune_from_epoch": 1}))
    with pytest.raises(ConfigError, match="below training.epochs"):
        load_experiment(write_config(tmp_path / "b.yaml", reinit=["rewind"], training={"epochs": 1,
                                                                                       "prune_from_epoch": 1}))


def _profile(tmp_path, name, **over):
    """The authors' profile, tiny: its training fields as committed, 1-3 epochs on 640 images."""
    authors = config.load_experiment(REPO / "configs" / "authors_lenet_mnist.yaml")
    training_fields = {**dataclasses.asdict(authors.training), "epochs": 2}
    fields = dict(techniques=["l1_us", "l1_s", "fc_only_l1_us"], reinit=["rewind", "finetune", "random_reinit"],
                  reinit_techniques={"random_reinit": ["l1_us"]}, iterations=2, structured_dim=1,
                  training=training_fields, data={"val_size": 0, "train_subset": 640, "test_subset": 300})
    fields.update(over)
    return load_experiment(write_config(tmp_path / f"{name}.yaml", **fields))


@pytest.mark.slow
def test_the_authors_profile_resumes_bit_identical(tmp_path):
    cfg = _profile(tmp_path, "authors")
    reference = tmp_path / "uninterrupted"
    runner.run_experiment(cfg, reference, quiet=True, device="cpu", workers=1)
    assert resumed_after_an_interrupt(cfg, tmp_path / "resumed", reference) == len(cfg.runs()) * 3


@pytest.mark.slow
def test_the_l1_us_recipe_prunes_the_net_after_its_first_epoch(tmp_path):
    over = dict(techniques=["l1_us"], reinit=["rewind"], reinit_techniques={}, iterations=1)
    cfg = _profile(tmp_path, "recipe", **over)
    cfg.training.epochs, cfg.training.prune_from_epoch = 3, 1
    folder = tmp_path / "recipe"
    runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)
    table = store.load_results(folder)
    dense, pruned = (store.load_training(table[table.iteration == k].iloc[0]) for k in (0, 1))
    # the same seed's first epoch alone, in the one-net loop
    rc = dataclasses.replace(cfg.runs()[0], training=dataclasses.replace(cfg.training, epochs=1,
                                                                         prune_from_epoch=None))
    run = lifecycle.open_run(rc, tmp_path / "one_epoch", "cpu", share_dense=False, say=lambda *_: None)
    lifecycle.train_one(run, say=lambda *_: None, stop=1)
    after_one = techniques.prune_step("lenet", run.trained, None, "l1_us", 0.2, seed=0, iteration=1,
                                      structured_dim=1)
    after_all = techniques.prune_step("lenet", dense["weights"], None, "l1_us", 0.2, seed=0, iteration=1,
                                      structured_dim=1)
    assert all(torch.equal(pruned["masks"][k], after_one[k]) for k in after_one)
    assert not all(torch.equal(pruned["masks"][k], after_all[k]) for k in after_all)
    assert not torch.equal(dense["weights"]["fc1.weight"], run.trained["fc1.weight"])  # stored: epoch 3's net


def test_asking_a_set_without_validation_for_validation_accuracy_is_one_line():
    import pandas as pd

    from pruning import analysis
    from pruning.analysis.table import ParameterError

    table = pd.DataFrame({"technique": ["l1_us"] * 2, "reinit": ["rewind"] * 2, "seed": [0, 1], "iteration": [0, 0],
                          "sparsity": [0.0, 0.0], "test_acc": [97.0, 98.0], "val_acc": [None, None],
                          "train_loss": [0.1, 0.1], "test_loss": [0.1, 0.1], "collapsed": [False, False]})
    assert list(analysis.accuracy_summary(table)["mean"]) == [97.5]
    with pytest.raises(ParameterError, match="no validation accuracy; use metric 'test_acc'"):
        analysis.accuracy_summary(table, "val_acc")


def test_each_command_records_its_seeds_wall_time_code_version_and_machine(tmp_path):
    cfg = load_experiment(write_config(tmp_path / "two.yaml", techniques=["l1_us"], reinit=["rewind"], seeds=[0, 1],
                                       iterations=1, data={"train_subset": 100, "val_subset": 50, "test_subset": 100}))
    out = tmp_path / "two"
    runner.run_experiment(cfg, out, quiet=True, device="cpu", workers=1, seeds=[1])
    runner.run_experiment(cfg, out, quiet=True, device="cpu", workers=1, seeds=[0])
    runner.run_experiment(cfg, out, quiet=True, device="cpu", workers=1)  # nothing left: records nothing
    seed_runs = store.read_experiment(out)["seed_runs"]
    assert sorted(seed_runs) == ["0", "1"] and all(len(v) == 1 for v in seed_runs.values())
    entry = seed_runs["1"][0]
    assert entry["seeds_together"] == [1] and entry["seconds"] > 0 and entry["code_version"]
    assert entry["hardware"] == store.hardware("cpu")
    assert entry["trainings"] == entry["seed_trainings"] == 2  # one run of 2 trainings (iterations 0 and 1)
    assert 0 < entry["cpu_share"] <= 1.01  # CPU seconds over wall time x cores
