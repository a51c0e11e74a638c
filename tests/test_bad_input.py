"""Bad input gets one line that names the problem and what to do, a non-zero exit, and no traceback."""
from __future__ import annotations

import hashlib

import pytest

from pruning.nets import config
from conftest import REPO, cli, run_main, run_ok, write_config


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
    ({"seeds": []}, ["'seeds' is empty, so nothing would run", "seeds: [0]"]),
    ({"techniques": []}, ["'techniques' is empty"]),
    ({"training": {"lr": float("nan")}}, ["'training.lr' must be a finite number, got nan"]),
    ({"training": {"lr": -0.1}}, ["'training.lr' must be > 0.0, got -0.1"]),
    ({"training": {"momentum": float("inf")}}, ["'training.momentum' must be a finite number"]),
    ({"data": {"train_subset": 0}}, ["'data.train_subset' must be >= 1, got 0"]),
    ({"iterations": -1}, ["'iterations' must be >= 0 and < 1000, got -1"]),
    ({"device": "gpu"}, ["unknown device 'gpu'", "choose from: auto, cpu, cuda"]),
    ({"name": "../../x"}, ["'name' must be a plain folder name", "'../../x'"]),
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


def test_a_name_that_climbs_out_of_results_creates_nothing(tmp_path):
    path = write_config(tmp_path / "bad.yaml", name="../../escaped")
    _one_line_error(run_main("run", path), "'name' must be a plain folder name")
    assert not (REPO / "results" / ".." / ".." / "escaped").exists()


def test_a_yaml_list_at_the_top_level(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- techniques: [l1_us]\n- seeds: [0]\n")
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), "top level must be a mapping", "list")
    assert not (tmp_path / "out").exists()


def test_a_config_path_that_is_a_folder(tmp_path):
    _one_line_error(run_main("run", tmp_path, "--results", tmp_path / "out"), "is a folder, not a file")
    assert not (tmp_path / "out").exists()


def test_results_naming_an_existing_file(tmp_path):
    path = write_config(tmp_path / "ok.yaml")
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    _one_line_error(run_main("run", path, "--results", taken), f"results folder {taken} is a file", "--results")
    assert taken.read_text() == "mine\n"


@pytest.mark.slow
def test_a_damaged_finished_training_is_found_by_the_run_command_before_it_writes(tmp_path):
    path = write_config(tmp_path / "one.yaml", techniques=["l1_us"], reinit=["rewind"], iterations=1)
    out = tmp_path / "out"
    run_ok("run", path, "--results", out, "--quiet")
    damaged = next(out.glob("run_*/trainings/001.pt"))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the size is unchanged and the file still exists
    damaged.write_bytes(bytes(data))
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.rglob("*")
              if p.is_file()}
    _one_line_error(run_main("run", path, "--results", out), f"{damaged} is damaged (checksum mismatch)",
                    f"delete {damaged.parent.parent}")
    assert {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.rglob("*")
            if p.is_file()} == before


def test_missing_results_folder(tmp_path):
    _one_line_error(run_main("table", tmp_path / "nothing"), "does not exist", "python -m pruning run")
