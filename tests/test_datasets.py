"""Datasets: real MNIST with verified checksums, Fashion-MNIST from Debian, CIFAR-10's file format."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from pruning.nets import datasets


def test_mnist_fetch_places_files_with_the_published_checksums(tmp_path):
    dest = datasets.fetch("mnist", root=tmp_path, quiet=True)
    published = {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }
    assert {f: datasets.md5(dest / f) for f in published} == published
    t = datasets.load("mnist", root=tmp_path)
    assert t.train_x.shape == (60000, 1, 28, 28) and t.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(t.test_y).tolist()[:3] == [980, 1135, 1032]  # MNIST's well-known class counts
    assert abs(float(t.train_x.mean())) < 1e-4 and abs(float(t.train_x.std()) - 1) < 1e-4


def test_fashion_mnist_from_debian(tmp_path):
    datasets.fetch("fashion_mnist", root=tmp_path, quiet=True)
    t = datasets.load("fashion_mnist", root=tmp_path)
    assert t.train_x.shape == (60000, 1, 28, 28)
    assert torch.bincount(t.train_y).tolist() == [6000] * 10  # Fashion-MNIST is balanced


def test_idx_reader_rejects_truncated_files(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(5))
    with pytest.raises(datasets.DataError, match="truncated"):
        datasets.read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    assert datasets.read_idx(path).tolist() == [1, 2, 3]


def _write_cifar(folder, n_per_batch=4, monkeypatch=None):
    """Batch files in CIFAR's format; with ``monkeypatch``, their MD5s stand in for the official ones, so that the
    loader parses them (the real files are not reachable here)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in datasets.CIFAR10_BATCHES + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name.encode()}, f)
        written[name] = (data, labels)
    if monkeypatch is not None:
        monkeypatch.setattr(datasets, "CIFAR10_MD5", {name: datasets.md5(folder / name) for name in written})
    return written


def test_cifar10_loader_reads_the_python_batch_format(tmp_path, monkeypatch):
    written = _write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", monkeypatch=monkeypatch)
    x, y = datasets.read_cifar_batches(tmp_path / "cifar10" / "cifar-10-batches-py", ["data_batch_2"])
    data, labels = written["data_batch_2"]
    assert x.shape == (4, 3, 32, 32) and y.tolist() == labels
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values, row-major
    assert x[1, 2, 0, 5].item() == data[1, 2048 + 5]
    t = datasets.load("cifar10", root=tmp_path)
    assert t.train_x.shape == (20, 3, 32, 32) and t.test_x.shape == (4, 3, 32, 32)


def test_cifar10_corrupt_batch_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(folder, monkeypatch=monkeypatch)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(datasets.DataError, match="data_batch_3 is corrupt.*fetch cifar10"):
        datasets.load("cifar10", root=tmp_path)


class _Payload:
    """A pickle that runs a command when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    _write_cifar(folder)  # not the official files: their MD5s do not match
    marker = tmp_path / "ran"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": [0]}, f)
    with pytest.raises(datasets.DataError, match="data_batch_1 is corrupt.*md5.*fetch cifar10"):
        datasets.load("cifar10", root=tmp_path)
    with pytest.raises(datasets.DataError):  # fetch checks what is there by checksum, not by unpickling it
        datasets.fetch("cifar10", root=tmp_path, quiet=True)
    # even a file whose checksum was accepted names no function to call
    monkeypatch.setattr(datasets, "CIFAR10_MD5", {**datasets.CIFAR10_MD5,
                                                  "data_batch_1": datasets.md5(folder / "data_batch_1")})
    with pytest.raises(datasets.DataError, match="data_batch_1 is corrupt"):
        datasets.read_cifar_batches(folder, ["data_batch_1"])
    assert not marker.exists()


def test_input_size_and_channels_options(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", monkeypatch=monkeypatch)
    t = datasets.load("cifar10", root=tmp_path, input_size=64)
    assert t.train_x.shape == (20, 3, 64, 64)
    m = datasets.load("mnist", input_size=32, channels=3)
    assert m.train_x.shape == (60000, 3, 32, 32)


def test_normalize_false_gives_raw_pixels_and_the_default_is_unchanged():
    """`data.normalize: false` (the sensitivity study's "inputs not normalised"): pixels in [0, 1] as stored
    (k/255); the default standardises with the training set's mean and std, as before the option existed."""
    from pruning.nets.config import RunConfig

    raw = datasets.load("mnist", normalize=False)
    assert float(raw.train_x.min()) == 0.0 and float(raw.train_x.max()) == 1.0
    assert torch.equal(torch.round(raw.test_x[:50] * 255), raw.test_x[:50] * 255)  # whole grey levels
    mean, std = raw.train_x.mean(), raw.train_x.std()
    standard = datasets.load("mnist")
    assert torch.allclose(standard.test_x[:50], (raw.test_x[:50] - mean) / std, atol=1e-5)
    default = RunConfig()
    assert RunConfig(data=dataclasses.replace(default.data, normalize=True)).run_hash() == default.run_hash()
    assert RunConfig(data=dataclasses.replace(default.data, normalize=False)).run_hash() != default.run_hash()
