"""Bad input gets one line that names the problem and what to do, a non-zero exit, and no traceback."""
from __future__ import annotations

import pytest

from pruning.nets import config
from conftest import cli, run_main, write_config


def _one_line_error(result, *needles):
    code, stderr = (result.returncode, result.stderr) if hasattr(result, "returncode") else result
    assert code == 2, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("overrides, needles", [
    ({"techniques": ["l1_us", "l3_s"]}, ["unknown technique 'l3_s'", "choose from"]),
    ({"arch": "resnet"}, ["unknown architecture 'resnet'"]),
    ({"dataset": "mnits"}, ["unknown dataset 'mnits'", "did you mean 'mnist'"]),
    ({"reinit": ["rewnd"]}, ["unknown reinit mode 'rewnd'", "did you mean 'rewind'"]),
    ({"tecniques": ["l1_us"]}, ["unknown key 'tecniques'", "did you mean 'techniques'"]),
    ({"training": {"epochs": "thirty"}}, ["'training.epochs' must be int", "'thirty'"]),
    ({"training": {"lrate": 0.1}}, ["unknown key 'training.lrate'"]),
    ({"prune_fraction": 1.5}, ["prune_fraction"]),
    ({"seeds": [0, 0]}, ["must not repeat"]),
    ({"arch": "alexnet"}, ["alexnet needs images of at least 63x63 px, got 28x28", "set data.input_size to 63"]),
    ({"arch": "vgg11"}, ["vgg11 needs images of at least 32x32 px", "set data.input_size to 32"]),
    ({"data": {"input_size": 32}}, ["lenet cannot take 1x32x32 images", "change data.input_size"]),
    ({"dataset": "cifar10", "data": {"channels": 1}}, ["cifar10 images have 3 channels", "set it to 3"]),
    ({"arch": "alexnet", "data": {"input_size": 48}}, ["alexnet needs images of at least 63x63 px, got 48x48"]),
    ({"store": {"masks": ["conv1", "conv3"]}}, ["'store.masks' names unknown layer(s) ['conv3']", "conv2"]),
    ({"store": {"weights": ["features.3"]}}, ["'store.weights' names unknown layer(s) ['features.3']", "fc1"]),
    ({"store": {"masks": "conv"}}, ["'store.masks' must be 'all' or a list of layer names"]),
    ({"reinit": ["rewind"], "reinit_techniques": {"finetune": ["l1_us"]}}, ["unknown reinit mode in 'reinit_techniques'"]),
    ({"reinit_techniques": {"finetune": ["l2_s"]}}, ["unknown technique in 'reinit_techniques.finetune' 'l2_s'"]),
])
def test_config_errors(tmp_path, overrides, needles):
    path = write_config(tmp_path / "bad.yaml", **overrides)
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), *needles)
    assert not (tmp_path / "out").exists()


def test_an_empty_config_file_is_an_error_not_a_default_job(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here yet\n")
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), "is empty", "configs/smoke.yaml")
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path):
    # once through a real subprocess: the exit code and stderr a user sees
    _one_line_error(cli("run", tmp_path / "nope.yaml"), "does not exist")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("techniques: [l1_us\nseeds: 0")
    _one_line_error(run_main("run", path), "not valid YAML")


def test_ints_are_accepted_where_floats_are_expected(tmp_path):
    cfg = config.load_experiment(write_config(tmp_path / "ok.yaml", training={"lr": 1}))
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)


def test_missing_data_file(tmp_path, monkeypatch):
    path = write_config(tmp_path / "ok.yaml")
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "nodata"))
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), "is missing", "python -m pruning fetch mnist")


def test_corrupt_data_file(tmp_path, monkeypatch):
    from pruning.nets import datasets

    raw = tmp_path / "data" / "raw" / "mnist"
    raw.mkdir(parents=True)
    for name in datasets.IDX_FILES:
        (raw / name).write_bytes((datasets.data_root() / "mnist" / name).read_bytes())
    damaged = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    path = write_config(tmp_path / "ok.yaml")
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), "corrupt", "md5", "fetch mnist")


def test_missing_results_folder(tmp_path):
    _one_line_error(run_main("table", tmp_path / "nothing"), "does not exist", "python -m pruning run")
