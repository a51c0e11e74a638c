"""Training, masking and reinitialisation, checked on tensors (the traps peers fell into)."""
from __future__ import annotations

import pytest
import torch

from pruning.nets import datasets, reinit, techniques, training
from pruning.execution import lifecycle, runner
from pruning import store
from pruning.nets.config import RunConfig, TrainingConfig, load_experiment
from conftest import write_config


def small_run(**kw) -> RunConfig:
    rc = RunConfig(technique=kw.pop("technique", "l1_us"), reinit=kw.pop("reinit", "rewind"), iterations=2)
    rc.data.train_subset, rc.data.val_subset, rc.data.test_subset = 640, 200, 500
    rc.training.epochs = 1
    rc.training.lr = 0.1
    for k, v in kw.items():
        setattr(rc.training, k, v)
    return rc


def test_pruned_weights_stay_exactly_zero_through_sgd_with_momentum_and_weight_decay():
    rc = small_run(momentum=0.9, weight_decay=5e-4)
    rd = lifecycle.run_data(rc, "cpu")
    init = lifecycle.initial_state(rc)
    masks, start = lifecycle.next_start(rc, 1, init, init, None, None)
    model = lifecycle.build_model(rc, start, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    idx = rd.split.train_idx
    for step in range(20):
        b = idx[step * 32:(step + 1) * 32]
        loss = torch.nn.functional.cross_entropy(model(rd.data.train_x[b]), rd.data.train_y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for name, module in techniques.models.prunable_layers(model):
            assert bool((module.weight[~masks[name]] == 0).all()), f"{name} pruned weight revived at step {step}"
    state = techniques.effective_state(model)
    for name, mask in masks.items():
        assert bool((state[f"{name}.weight"][~mask] == 0).all())
        assert bool((state[f"{name}.weight"][mask] != 0).any())


def test_rewind_restores_every_surviving_weight_and_bias_to_its_initial_value():
    rc = small_run()
    rd = lifecycle.run_data(rc, "cpu")
    init = lifecycle.initial_state(rc)
    model = lifecycle.build_model(rc, init, None)
    training.train(model, rd.data, rd.split, rc.training, seed=0, iteration=0)
    trained = techniques.effective_state(model)
    assert not torch.equal(trained["fc1.weight"], init["fc1.weight"])
    masks, start = lifecycle.next_start(rc, 1, init, trained, None, None)
    model = lifecycle.build_model(rc, start, masks)
    state = techniques.effective_state(model)
    for key, value in init.items():
        if key.endswith(".weight"):
            mask = masks[key[:-7]]
            assert torch.equal(state[key][mask], value[mask])
            assert bool((state[key][~mask] == 0).all())
        else:
            assert torch.equal(state[key], value)


def test_finetune_continues_from_the_trained_values_and_random_reinit_draws_new_ones():
    rc = small_run()
    init = lifecycle.initial_state(rc)
    trained = {k: v + 1.0 for k, v in init.items()}
    masks = techniques.prune_step("lenet", trained, None, "l1_us", 0.2, seed=0, iteration=1)
    ctx = reinit.ReinitContext("lenet", 0, 1, init, trained)
    fine = reinit.starting_state("finetune", ctx, masks)
    fresh = reinit.starting_state("random_reinit", ctx, masks)
    m = masks["fc1"]
    assert torch.equal(fine["fc1.weight"][m], trained["fc1.weight"][m])
    assert not torch.equal(fresh["fc1.weight"][m], init["fc1.weight"][m])
    assert torch.equal(fine["fc1.bias"], trained["fc1.bias"])


def test_epoch_order_is_a_seeded_permutation():
    idx = torch.arange(100, 200)
    a = training.epoch_order(0, 1, 0, idx)
    assert sorted(a.tolist()) == idx.tolist()
    assert torch.equal(a, training.epoch_order(0, 1, 0, idx))
    assert not torch.equal(a, training.epoch_order(0, 1, 1, idx))
    assert not torch.equal(a, training.epoch_order(1, 1, 0, idx))


def test_augment_keeps_shape_and_content_scale():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    y = training.augment(x, 0, 0, 0, 0)
    assert y.shape == x.shape
    # every output pixel is an input pixel or the zero padding
    assert set(y.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


@pytest.mark.slow
def test_same_config_gives_bit_identical_results(tmp_path):
    cfg = load_experiment(write_config(tmp_path / "a.yaml", techniques=["random_us"], reinit=["rewind"]))
    runner.run_experiment(cfg, tmp_path / "r1", quiet=True)
    runner.run_experiment(cfg, tmp_path / "r2", quiet=True)
    t1, t2 = store.load_results(tmp_path / "r1"), store.load_results(tmp_path / "r2")
    assert len(t1) == 3 and list(t1.test_acc) == list(t2.test_acc)
    for f1, f2 in zip(t1.file, t2.file):
        a, b = store.load_training(f1), store.load_training(f2)
        assert torch.equal(a["predictions"], b["predictions"]) and torch.equal(a["logits"], b["logits"])
        assert all(torch.equal(a["masks"][k], b["masks"][k]) for k in a["masks"])


def test_split_is_seeded_and_disjoint():
    a = datasets.split(60000, 12000, seed=0)
    b = datasets.split(60000, 12000, seed=1)
    assert len(a.train_idx) == 48000 and len(a.val_idx) == 12000
    assert not set(a.train_idx.tolist()) & set(a.val_idx.tolist())
    assert torch.equal(a.train_idx, datasets.split(60000, 12000, seed=0).train_idx)
    assert not torch.equal(a.train_idx, b.train_idx)


def test_training_config_defaults_are_the_protocol():
    t = TrainingConfig()
    assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay) == (30, 32, 0.01, 0.0, 0.0)


@pytest.mark.slow
def test_late_rewind_restarts_from_the_weights_after_rewind_epoch(tmp_path):
    cfg = load_experiment(write_config(tmp_path / "late.yaml", techniques=["l1_us"], reinit=["late_rewind"],
                                       iterations=1, rewind_epoch=1, training={"epochs": 2}))
    runner.run_experiment(cfg, tmp_path / "res", quiet=True)
    rc = cfg.runs()[0]
    st = store.RunStore(tmp_path / "res", rc)
    point, init = st.load_rewind_point(), st.load_init()
    # the rewind point is the dense net after exactly one epoch, retrained here independently
    rd = lifecycle.run_data(rc, "cpu")
    one = rc.training.__class__(**{**rc.training.__dict__, "epochs": 1})
    model = lifecycle.build_model(rc, init, None)
    training.train(model, rd.data, rd.split, one, seed=rc.seed, iteration=0)
    assert all(torch.equal(point[k], v) for k, v in model.state_dict().items())
    dense = store.load_training(store.load_results(tmp_path / "res").iloc[0])["weights"]
    assert not torch.equal(point["fc1.weight"], dense["fc1.weight"])
    # and training 1 starts from it: its surviving weights equal the rewind point's
    masks = store.load_training(store.load_results(tmp_path / "res").iloc[1])["masks"]
    ctx = reinit.ReinitContext("lenet", rc.seed, 1, init, dense, point)
    start = reinit.starting_state("late_rewind", ctx, masks)
    m = masks["fc1"]
    assert torch.equal(start["fc1.weight"][m], point["fc1.weight"][m])


def _hooked_reference(model, rd, cfg: TrainingConfig, seed: int, iteration: int):
    """The step loop with prune's forward hooks left on (weight = weight_orig * weight_mask every pass)."""
    torch.manual_seed(training.derive_seed(seed, "train", iteration))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    idx = rd.split.train_idx
    for epoch in range(cfg.epochs):
        order = training.epoch_order(seed, iteration, epoch, idx)
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(model(rd.data.train_x[b]), rd.data.train_y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def test_folded_masks_train_bit_identically_to_prune_hooks_and_leave_the_masks_attached():
    rc = small_run(momentum=0.9, weight_decay=5e-4, epochs=2)
    rd = lifecycle.run_data(rc, "cpu")
    init = lifecycle.initial_state(rc)
    masks, start = lifecycle.next_start(rc, 1, init, init, None, None)
    masks, start = lifecycle.next_start(rc, 2, init, start, masks, None)  # two steps: 36% of every layer pruned
    folded = lifecycle.build_model(rc, start, masks)
    hooked = lifecycle.build_model(rc, start, masks)
    training.train(folded, rd.data, rd.split, rc.training, seed=rc.seed, iteration=2)
    _hooked_reference(hooked, rd, rc.training, rc.seed, 2)
    a, b = techniques.effective_state(folded), techniques.effective_state(hooked)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["conv1.weight"], start["conv1.weight"] * masks["conv1"])  # it did train
    for name, module in techniques.models.prunable_layers(folded):
        assert hasattr(module, "weight_orig") and torch.equal(module.weight_mask.bool(), masks[name]), name
        assert bool((a[f"{name}.weight"][~masks[name]] == 0).all()), name
