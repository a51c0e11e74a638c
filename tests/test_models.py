"""Architectures: LeNet exactly as the protocol; AlexNet and VGG11 from torchvision with 10 classes."""
from __future__ import annotations

import pytest
import torch

from pruning.nets import models, techniques
from pruning.execution import runner
from pruning import store
from pruning.nets.config import load_experiment
from conftest import write_config


def test_lenet_layers_are_the_protocols():
    model = models.build("lenet")
    shapes = {name: tuple(m.weight.shape) for name, m in models.prunable_layers(model)}
    assert shapes == {"conv1": (6, 1, 3, 3), "conv2": (16, 6, 3, 3), "fc1": (120, 400), "fc2": (84, 120),
                      "fc3": (10, 84)}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_alexnet_and_vgg11_take_configurable_input_sizes_and_channels():
    alex = models.build("alexnet", 10, in_channels=1)
    assert alex(torch.zeros(2, 1, 64, 64)).shape == (2, 10)
    vgg = models.build("vgg11", 10, in_channels=3)
    assert vgg(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    names = [n for n, _ in models.prunable_layers(vgg)]
    assert len(names) == 11 and names[-1] == "classifier.6"  # 8 conv + 3 linear, output layer last


@pytest.mark.slow
def test_a_big_net_runs_end_to_end_with_a_subset_of_stored_weights(tmp_path):
    cfg = load_experiment(write_config(
        tmp_path / "alex.yaml", arch="alexnet", techniques=["l1_us"], reinit=["rewind"], iterations=1,
        data={"train_subset": 64, "val_subset": 64, "test_subset": 64, "input_size": 64},
        store={"weights": ["features.3"]}))
    runner.run_experiment(cfg, tmp_path / "res", quiet=True)
    table = store.load_results(tmp_path / "res")
    assert list(table.iteration) == [0, 1]
    rec = store.load_training(table.iloc[1])
    assert set(rec["weights"]) == {"features.3.weight", "features.3.bias"}
    assert set(rec["masks"]) == {n for n, _ in models.prunable_layers(models.build("alexnet", 10, 1))}
    kept = techniques.remaining(rec["masks"])
    total = {n: m.weight.numel() for n, m in models.prunable_layers(models.build("alexnet", 10, 1))}
    assert all(kept[n] == total[n] - round(0.2 * total[n]) for n in total)
