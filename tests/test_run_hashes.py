"""Run hashes are pinned: a change to the config code that renamed stored runs would fail here.

A run's folder is named by its hash (``RunConfig.run_hash``), so a hash that changes silently orphans every
stored run of that config. The paper CPU, AlexNet and VGG11 hashes are the published ones (each
docs/<name>/experiment.json lists them); the smoke and dense-training hashes, and those of single fields
set away from their no-op defaults, were recorded from the code before the config fields were defined once
(``RunFields``). A deliberate change of the hash must rename the published results too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from pruning import store
from pruning.nets.config import DataConfig, ExperimentConfig, RunConfig, StoreConfig, TrainingConfig, load_experiment
from conftest import REPO

# (technique, reinit, seed, run hash) in the order of ExperimentConfig.runs(); for the paper CPU config, the 30 runs
# of its first published profile (seeds 0-2, fine-tuning for L1 US only), which its 10-seed config keeps.
PINNED = {
    "paper_lenet_mnist_cpu": [
        ("l1_us", "rewind", 0, "1f0ee6074668edcc"),
        ("l1_us", "rewind", 1, "d741540dae113fa3"),
        ("l1_us", "rewind", 2, "f9c4f41d64018bc3"),
        ("l1_us", "finetune", 0, "d1a8d20724f9e27a"),
        ("l1_us", "finetune", 1, "017285e5a810e476"),
        ("l1_us", "finetune", 2, "7430604211f54b92"),
        ("random_us", "rewind", 0, "1d19b37aef4b74f7"),
        ("random_us", "rewind", 1, "f4cd512dcf70bbfc"),
        ("random_us", "rewind", 2, "9197d8162e329cb1"),
        ("l1_s", "rewind", 0, "ce89a7534097abe0"),
        ("l1_s", "rewind", 1, "d9b6f40477c593b6"),
        ("l1_s", "rewind", 2, "963d968ed04921e9"),
        ("l2_s", "rewind", 0, "4db1c2749591e70c"),
        ("l2_s", "rewind", 1, "13e308e9c28f3b49"),
        ("l2_s", "rewind", 2, "3a475e95fbd34ccf"),
        ("linf_s", "rewind", 0, "d80bec2afd254e52"),
        ("linf_s", "rewind", 1, "d322bb1b91d6faa3"),
        ("linf_s", "rewind", 2, "9fecc98af4b2f435"),
        ("lneginf_s", "rewind", 0, "c0cc61ba3b73339d"),
        ("lneginf_s", "rewind", 1, "351f2f2b2369c763"),
        ("lneginf_s", "rewind", 2, "bbb0dd2766200eb6"),
        ("random_s", "rewind", 0, "cc691ae68782bb99"),
        ("random_s", "rewind", 1, "6c6c99d2fb3b8294"),
        ("random_s", "rewind", 2, "1bf29a63445e8729"),
        ("hybrid", "rewind", 0, "ea35a647e1476f8b"),
        ("hybrid", "rewind", 1, "72842dcbfe63d2d3"),
        ("hybrid", "rewind", 2, "8ce3aab22c7ada65"),
        ("fc_only_l1_us", "rewind", 0, "b0a001efae933ce6"),
        ("fc_only_l1_us", "rewind", 1, "b9af3f9c9653d59c"),
        ("fc_only_l1_us", "rewind", 2, "570f57a35d092fc0"),
    ],
    "smoke": [
        ("l1_us", "rewind", 0, "2674cb5fd36b914a"),
        ("l1_us", "rewind", 1, "dc35fa4de5774e40"),
        ("l1_us", "finetune", 0, "eec967a205d7f3c1"),
        ("l1_us", "finetune", 1, "f3bc1e62aa1334d3"),
        ("random_us", "rewind", 0, "765e200e07fdcb0c"),
        ("random_us", "rewind", 1, "c61ce056b5698aa9"),
        ("random_us", "finetune", 0, "5a1cd76a2012f850"),
        ("random_us", "finetune", 1, "1903d22dbd3290f0"),
        ("l1_s", "rewind", 0, "60fef12292878c1f"),
        ("l1_s", "rewind", 1, "b00ce23b2ead5441"),
        ("l1_s", "finetune", 0, "4b1696892a840696"),
        ("l1_s", "finetune", 1, "5794934304cbbe4f"),
        ("l2_s", "rewind", 0, "3acd1502b65df200"),
        ("l2_s", "rewind", 1, "c55a52c3afa267e6"),
        ("l2_s", "finetune", 0, "31c061c140b94d8f"),
        ("l2_s", "finetune", 1, "adc46cdfe9d6979a"),
        ("linf_s", "rewind", 0, "2122b32d2feb5859"),
        ("linf_s", "rewind", 1, "d7a4459f7a8acad4"),
        ("linf_s", "finetune", 0, "a9657ab69117f562"),
        ("linf_s", "finetune", 1, "3826bcc3f69b4781"),
        ("lneginf_s", "rewind", 0, "f30bc98b62783301"),
        ("lneginf_s", "rewind", 1, "a4bfa42871f3bf16"),
        ("lneginf_s", "finetune", 0, "592d1604b22574d4"),
        ("lneginf_s", "finetune", 1, "41b7deb3ad2d5f93"),
        ("random_s", "rewind", 0, "d11897d945c42eed"),
        ("random_s", "rewind", 1, "db03dda5394dad45"),
        ("random_s", "finetune", 0, "268ba62f624a76c2"),
        ("random_s", "finetune", 1, "0fd118be33e03f99"),
        ("hybrid", "rewind", 0, "5aee309d373ec32f"),
        ("hybrid", "rewind", 1, "6c031fde1c530226"),
        ("hybrid", "finetune", 0, "07789f1b60fca9e6"),
        ("hybrid", "finetune", 1, "e8ef4a4bb1c032e9"),
        ("fc_only_l1_us", "rewind", 0, "bd0168efc189276a"),
        ("fc_only_l1_us", "rewind", 1, "d7422953bdd11fd6"),
        ("fc_only_l1_us", "finetune", 0, "2fed3305bacc6119"),
        ("fc_only_l1_us", "finetune", 1, "28815a90c4ff24be"),
    ],
    "alexnet_mnist_cpu": [
        ("l1_us", "rewind", 0, "643919c51816a742"),
        ("l1_us", "finetune", 0, "82733747c26dcfc1"),
        ("l1_s", "rewind", 0, "91a7ce77b776ee2a"),
    ],
    "vgg11_mnist_cpu": [
        ("l1_us", "rewind", 0, "38cd3b2d809dff29"),
        ("l1_us", "finetune", 0, "a32e1b120145d3e1"),
        ("l1_s", "rewind", 0, "3d55fb5d577bf885"),
    ],
}

# The 10-seed paper CPU config's runs, all 180: sha256 of the JSON list of (technique, reinit, seed, hash), its first
# 16 hex digits, recorded when the config grew to seeds 0-9 with fine-tuning for all nine techniques (2026-12-01).
DIGEST = {"paper_lenet_mnist_cpu": ("7b2b98bd26566aa1", 180),
          # the released code's profiles: every run, by a digest of (technique, reinit, seed, hash) in order
          "authors_lenet_mnist": ("3c16fd94bd4e2319", 105),
          "authors_lenet_mnist_l1us_recipe": ("6f5e6bc015bee889", 5)}
EARLIER = {"paper_lenet_mnist_cpu"}  # PINNED holds a part of its runs, in order

# seed -> hash of its shared dense training (store.dense_config), the dense_<hash> folders
DENSE = {
    "paper_lenet_mnist_cpu": {0: "0b97512a7df26da2", 1: "42093f87b666206b", 2: "3fa69194759be6e4"},
    "smoke": {0: "17c08942601aca44", 1: "d59764c0df63feb8"},
    "authors_lenet_mnist": {0: "9cfcaaaca1b4ea34", 4: "e581b25b1da5ef2f"},
    "authors_lenet_mnist_l1us_recipe": {0: "2355a9e7f29ba15b", 4: "234029f8f16df22e"},
}

PUBLISHED = ("paper_lenet_mnist_cpu", "alexnet_mnist_cpu", "vgg11_mnist_cpu")


def _runs(name: str) -> list[tuple]:
    cfg = load_experiment(REPO / "configs" / f"{name}.yaml")
    return [(rc.technique, rc.reinit, rc.seed, rc.run_hash()) for rc in cfg.runs()]


@pytest.mark.parametrize("name", list(PINNED))
def test_run_hashes_of_the_committed_configs_are_pinned(name):
    runs = _runs(name)
    if name in EARLIER:
        assert [r for r in runs if r in PINNED[name]] == PINNED[name]
        digest, n = DIGEST[name]
        assert len(runs) == n and hashlib.sha256(json.dumps(runs).encode()).hexdigest()[:16] == digest
    else:
        assert runs == PINNED[name]


@pytest.mark.parametrize("name", ["authors_lenet_mnist", "authors_lenet_mnist_l1us_recipe"])
def test_the_released_code_profiles_are_pinned(name):
    runs = _runs(name)
    digest, n = DIGEST[name]
    assert len(runs) == n and hashlib.sha256(json.dumps(runs).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_pinned_hashes_are_the_published_ones(name):
    published = json.loads((REPO / "docs" / name / "experiment.json").read_text())["runs"]
    runs = [(r["technique"], r["reinit"], r["seed"], r["hash"]) for r in published]
    assert runs == (_runs(name) if name in EARLIER else PINNED[name])
    assert all(r in runs for r in PINNED[name])


@pytest.mark.parametrize("name", list(DENSE))
def test_shared_dense_training_hashes_are_pinned(name):
    cfg = load_experiment(REPO / "configs" / f"{name}.yaml")
    dense = {rc.seed: store.dense_config(rc).run_hash() for rc in cfg.runs()}
    assert {s: h for s, h in dense.items() if s in DENSE[name]} == DENSE[name]
    assert len(set(dense.values())) == len(cfg.seeds)  # one shared dense training per seed


def test_a_field_off_its_noop_default_changes_the_hash_by_a_pinned_value():
    assert RunConfig().run_hash() == "0c09d1983b55b334"
    assert RunConfig(reinit="late_rewind", rewind_epoch=2).run_hash() == "5310cb5649df5196"
    assert RunConfig(output_layer="exempt", output_structured_dim=1).run_hash() == "12c1bff90aaabfe2"


def test_every_run_field_but_technique_reinit_and_seed_comes_from_the_experiment_as_a_copy():
    exp = ExperimentConfig(arch="alexnet", dataset="cifar10", iterations=3, prune_fraction=0.5, structured_dim=1,
                           output_layer="exempt", output_structured_dim=0, rewind_epoch=2,
                           training=TrainingConfig(epochs=2, lr=0.5, momentum=0.9, augment=True),
                           data=DataConfig(train_subset=10, input_size=63), store=StoreConfig(masks=["features.0"]),
                           techniques=["l1_us"], reinit=["late_rewind"], seeds=[4, 5])
    first, second = exp.runs()
    per_run = {"technique": "l1_us", "reinit": "late_rewind"}
    for f in dataclasses.fields(RunConfig):
        if f.name == "seed":
            assert (first.seed, second.seed) == (4, 5)
        else:
            expected = per_run.get(f.name, getattr(exp, f.name, None))
            assert getattr(first, f.name) == getattr(second, f.name) == expected, f.name
    first.store.masks.append("features.3")
    first.training.lr = 0.1
    assert second.store.masks == exp.store.masks == ["features.0"] and second.training.lr == exp.training.lr == 0.5
