"""The run store: hashed run names, skipping, resuming after kill -9, damaged files, the tidy table."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pruning import store
from pruning.nets.config import ExperimentConfig, RunConfig, load_experiment
from conftest import REPO, cli, run_main, run_ok, write_config


def test_run_hash_ignores_compute_only_fields_and_noop_defaults():
    a = ExperimentConfig(device="cpu", trainer="single").runs()[0]
    b = ExperimentConfig(device="cuda", trainer="population").runs()[0]
    assert a.run_hash() == b.run_hash()
    c = RunConfig()
    assert "rewind_epoch" not in c.hash_dict() and "augment" not in c.hash_dict()["training"]
    c.training.augment = True
    assert c.run_hash() != RunConfig().run_hash()
    d = RunConfig(seed=1)
    assert d.run_hash() != RunConfig().run_hash()


def _snapshot(folder):
    table = store.load_results(folder)
    out = {}
    for row in table.itertuples():
        rec = store.load_training(row.file)
        out[(row.technique, row.reinit, row.seed, row.iteration)] = (rec, row.test_acc)
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        (ra, acc_a), (rb, acc_b) = a[key], b[key]
        assert acc_a == acc_b, key
        assert torch.equal(ra["predictions"], rb["predictions"]), key
        assert torch.equal(ra["logits"], rb["logits"]), key
        for layer in ra["masks"]:
            assert torch.equal(ra["masks"][layer], rb["masks"][layer]), (key, layer)
        for name in ra["weights"]:
            assert torch.equal(ra["weights"][name], rb["weights"][name]), (key, name)


@pytest.mark.slow
def test_a_view_is_saved_with_its_own_elements_only(tmp_path):
    stacked = torch.arange(64 * 1000, dtype=torch.float32).reshape(64, 1000)
    obj = {"w": stacked[3], "t": stacked[:, 5], "nested": [{"x": stacked[7, :10]}], "n": 3}
    store.save_tensors(obj, tmp_path / "one.pt")
    assert (tmp_path / "one.pt").stat().st_size < 1000 * 4 * 4  # one row and one column, not 64 rows
    back = torch.load(tmp_path / "one.pt", weights_only=True)
    assert torch.equal(back["w"], stacked[3]) and torch.equal(back["t"], stacked[:, 5])
    assert torch.equal(back["nested"][0]["x"], stacked[7, :10]) and back["n"] == 3


@pytest.mark.slow
def test_finished_runs_are_skipped_and_their_files_untouched(tmp_path, tiny_config):
    out = tmp_path / "res"
    run_ok("run", tiny_config, "--results", out, "--quiet")
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "experiment.json"}
    proc = cli("run", tiny_config, "--results", out, check=True)  # a real second invocation
    assert "4 already finished, 0 to train" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == files


def _orphans() -> list[str]:
    """Processes started under this test whose parent is gone (a killed driver's workers and resource tracker):
    found by the test name in their environment (inherited from pytest); pytest's own children are not orphans."""
    marker = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].encode()
    mine, pid = set(), os.getpid()
    while pid > 1:  # this process and its ancestors
        mine.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            env, cmd = (entry / "environ").read_bytes(), (entry / "cmdline").read_bytes()
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if marker and marker in env and state != "Z" and int(parent) not in mine:
            found.append(f"{entry.name} {state}: " + cmd.replace(b"\0", b" ").decode(errors="replace")[:120])
    return found


@pytest.mark.slow
def test_kill_9_mid_run_resumes_to_the_same_results(tmp_path):
    cfg = write_config(tmp_path / "k.yaml", techniques=["l1_us", "random_us"], reinit=["rewind", "finetune"],
                       iterations=3)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run_ok("run", cfg, "--results", ref, "--quiet")
    proc = subprocess.Popen([sys.executable, "-m", "pruning", "run", str(cfg), "--results", str(killed), "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # kill half-way: the 4 runs train as one population (one seed), in lockstep, 4 trainings each
    while time.time() < deadline:
        if len(list(killed.glob("run_*/trainings/[0-9][0-9][0-9].json"))) >= 7:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(killed.glob("run_*/done.json"))) < 4, "the run finished before it could be killed"
    # no worker outlives the killed driver, not even one that was still starting (it once stayed as an orphan)
    deadline = time.time() + 60
    while _orphans() and time.time() < deadline:
        time.sleep(0.5)
    assert not _orphans()
    resumed = run_ok("run", cfg, "--results", killed)
    assert "already finished" in resumed
    _assert_same(_snapshot(ref), _snapshot(killed))
    assert not list(killed.rglob("*.tmp")) or all(p.name.startswith(".") for p in killed.rglob("*.tmp"))


@pytest.mark.slow
def test_resume_completes_a_record_whose_checkpoint_was_written(tmp_path, tiny_config):
    """kill -9 between checkpoint.pt and trainings/NNN.pt: the record is rebuilt from the checkpoint."""
    out = tmp_path / "res"
    run_ok("run", tiny_config, "--results", out, "--quiet")
    ref = _snapshot(out)
    run_dir = sorted(out.glob("run_*"))[0]
    last = sorted((run_dir / "trainings").glob("*.json"))[-1]
    (run_dir / "done.json").unlink()
    last.unlink()
    last.with_suffix(".pt").unlink()
    run_ok("run", tiny_config, "--results", out, "--quiet")
    _assert_same(ref, _snapshot(out))


@pytest.mark.slow
def test_a_truncated_training_file_gives_a_one_line_error_and_touches_nothing(tmp_path, tiny_config):
    out = tmp_path / "res"
    run_ok("run", tiny_config, "--results", out, "--quiet")
    run_dir = sorted(out.glob("run_*"))[0]
    (run_dir / "done.json").unlink()  # make the runner look at this run again
    victim = run_dir / "trainings" / "000.pt"
    victim.write_bytes(victim.read_bytes()[:100])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "experiment.json"}
    code, stderr = run_main("run", tiny_config, "--results", out)
    assert code == 2
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "000.pt" in lines[0] and "damaged" in lines[0] and "delete" in lines[0]
    assert "Traceback" not in stderr
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.slow
def test_damaged_config_json_is_reported(tmp_path, tiny_config):
    out = tmp_path / "res"
    run_ok("run", tiny_config, "--results", out, "--quiet")
    run_dir = sorted(out.glob("run_*"))[0]
    (run_dir / "done.json").unlink()
    (run_dir / "config.json").write_text("{not json")
    proc = cli("run", tiny_config, "--results", out)  # the exit code a user's shell sees
    assert proc.returncode == 2 and "config.json is damaged" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_table_has_one_row_per_training_with_the_documented_columns(tmp_path, tiny_config):
    out = tmp_path / "res"
    run_ok("run", tiny_config, "--results", out, "--quiet")
    table = store.load_results(out)
    cfg = load_experiment(tiny_config)
    assert len(table) == len(cfg.runs()) * (cfg.iterations + 1)
    assert set(store.TABLE_COLUMNS) <= set(table.columns)
    dense = table[table.iteration == 0]
    assert (dense.sparsity == 0).all() and (dense.weights_remaining == 59838).all()
    assert (dense.params_remaining == 60074).all()
    # sparsity and remaining weights agree with the stored masks
    row = table[table.iteration == 2].iloc[0]
    rec = store.load_training(row)
    kept = sum(int(m.sum()) for m in rec["masks"].values())
    assert kept == row.weights_remaining
    assert abs(row.sparsity - (1 - kept / 59838)) < 1e-12
    assert abs(row.test_acc - 100 * float((rec["predictions"] == rec["targets"]).double().mean())) < 1e-9
    # stored weights are masked: pruned entries are exactly zero
    for layer, mask in rec["masks"].items():
        assert bool((rec["weights"][f"{layer}.weight"][~mask] == 0).all())
    exp = json.loads((out / "experiment.json").read_text())
    assert {r["hash"] for r in exp["runs"]} == set(table.run_hash)


@pytest.mark.slow
def test_experiment_json_keeps_the_code_version_that_trained(tmp_path, monkeypatch):
    """The version is read when a run starts (a commit made while it trains does not relabel it) and kept by
    a later run that trains nothing; the run's facts (trainer, workers, conv path) are kept too."""
    from pruning.execution import runner

    cfg = load_experiment(write_config(tmp_path / "v.yaml", techniques=["l1_us"], reinit=["rewind"], iterations=1,
                                       data={"train_subset": 200, "val_subset": 100, "test_subset": 200}))
    calls = []

    def version():  # the checkout moves on after the first read: a commit made while the run trains
        calls.append(1)
        return now if now else ("trained-with" if len(calls) == 1 else "committed-meanwhile")

    now = None
    monkeypatch.setattr(store, "code_version", version)
    folder = tmp_path / "results"
    assert runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)["trained"] == 1
    exp = json.loads((folder / "experiment.json").read_text())
    assert exp["code_version"] == "trained-with"
    assert exp["trainer"] == "population" and exp["population_convs"].startswith("fused")
    assert runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)["trained"] == 0
    again = json.loads((folder / "experiment.json").read_text())
    assert again["code_version"] == "trained-with" and again["population_convs"] == exp["population_convs"]
    now = "later"
    more = load_experiment(write_config(tmp_path / "v.yaml", techniques=["l1_us", "random_us"], reinit=["rewind"],
                                        iterations=1, data={"train_subset": 200, "val_subset": 100,
                                                            "test_subset": 200}))
    assert runner.run_experiment(more, folder, quiet=True, device="cpu", workers=1, trainer="single")["trained"] == 1
    last = json.loads((folder / "experiment.json").read_text())  # a run that trains: its own facts, whole
    assert last["code_version"] == "later" and last["trainer"] == "single" and "population_convs" not in last


@pytest.mark.slow
def test_seeds_subset_trains_those_seeds_as_a_whole_run_would(tmp_path):
    """`run --seeds 1` trains seed 1's runs only; the rest later; the union is bit for bit one run of everything."""
    from test_population import bitwise_equal

    path = write_config(tmp_path / "seeds.yaml", techniques=["l1_us", "random_s"], reinit=["rewind"], seeds=[0, 1],
                        iterations=1, data={"train_subset": 320, "val_subset": 200, "test_subset": 500})
    grown, whole = tmp_path / "grown", tmp_path / "whole"
    said = run_ok("run", path, "--results", grown, "--seeds", "1")
    assert "4 runs, 2 of seeds 1, 0 already finished, 2 to train" in said, said  # not "2 already finished"
    table = store.load_results(grown)
    assert sorted(table["seed"].unique()) == [1] and len(table) == 2 * 2  # 2 runs x 2 trainings
    run_ok("run", path, "--results", grown, "--seeds", "0-1", "--quiet")
    run_ok("run", path, "--results", whole, "--quiet")
    assert bitwise_equal(grown, whole) == 2 * 2 * 2


@pytest.mark.parametrize("given", ["2", "1-0", "x", "0,,1"])
def test_seeds_outside_the_config_or_malformed_are_one_line_errors(tmp_path, given):
    path = write_config(tmp_path / "seeds.yaml", seeds=[0, 1])
    code, err = run_main("run", path, "--results", tmp_path / "out", "--seeds", given, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "--seeds" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pinned_numerics_reach_the_workers_and_are_recorded(tmp_path):
    """PRUNING_NUMERICS=pinned sets the libraries' code-path variables before torch loads, in the command and
    (inherited) in its worker processes; experiment.json records the mode, the variables and the CPU model."""
    path = write_config(tmp_path / "pinned.yaml", techniques=["l1_us"], reinit=["rewind"], seeds=[0, 1],
                        iterations=1, data={"train_subset": 96, "val_subset": 100, "test_subset": 100})
    env = {**os.environ, "PRUNING_NUMERICS": "pinned"}
    for key in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "pruning", "run", str(path), "--results", str(tmp_path / "r"),
                           "--quiet"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exp = json.loads((tmp_path / "r" / "experiment.json").read_text())
    assert exp["numerics"] == {"mode": "pinned", "environment": {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                                                 "ATEN_CPU_CAPABILITY": "avx2",
                                                                 "OMP_WAIT_POLICY": env.get("OMP_WAIT_POLICY",
                                                                                            "PASSIVE")}}
    cpuinfo = open("/proc/cpuinfo").read()
    model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
    assert model in exp["hardware"]
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env={**env, "ATEN_CPU_CAPABILITY": exp["numerics"]["environment"]["ATEN_CPU_CAPABILITY"]},
                           capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == "AVX2"  # what the recorded variable makes torch dispatch to


def test_an_unknown_numerics_mode_is_one_line_before_anything_runs(tmp_path):
    path = write_config(tmp_path / "bad.yaml")
    proc = subprocess.run([sys.executable, "-m", "pruning", "run", str(path), "--results", str(tmp_path / "r")],
                          cwd=REPO, env={**os.environ, "PRUNING_NUMERICS": "fast"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "PRUNING_NUMERICS=fast" in proc.stderr
    assert "native, pinned" in proc.stderr and not (tmp_path / "r").exists()
