"""The Ray executor on a real local cluster: a head and a second worker node on this machine (free ports,
no dashboard, token authentication on, their own temp dir), torn down afterwards. No mocks of Ray.

Every stored training equals the default executor's bit for bit: with both trainers, after a worker is
killed (SIGKILL) in the middle of a unit, after the driver is killed and run again, and with two drivers
on one store at once.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from executor_helpers import N_TRAININGS, assert_bit_identical, env_with, run_cli, small_config, start_cli, trained

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = root / "token"
        token.write_text(secrets.token_hex(32))
        # Token authentication on, with this cluster's own token (not ~/.ray/auth_token).
        self.env = env_with(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0")
        self.env.pop("RAY_ADDRESS", None)

    def start(self) -> None:
        common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats",
                  f"--dashboard-agent-listen-port={free_port()}"]
        self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false",
                  f"--temp-dir={self.root / 'ray'}", *common)
        self._ray("start", f"--address={self.address}", *common)

    def _ray(self, *args) -> None:
        proc = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def ours(self, pid: int) -> bool:
        """Whether ``pid`` belongs to this cluster: it, or a process above it, names its temp dir."""
        mark = str(self.root)
        for _ in range(6):
            if pid <= 1:
                return False
            if mark in _cmdline(pid):
                return True
            pid = _parent(pid)
        return False

    def busy_workers(self) -> dict[int, str]:
        """This cluster's worker processes that are running a unit: {pid: unit name}."""
        out = {}
        for pid in _pids():
            title = _cmdline(pid)
            if title.startswith("ray::pruning ") and self.ours(pid):
                out[pid] = title[len("ray::pruning "):].strip()
        return out

    def stop(self) -> None:
        """Kill every process of this cluster (found by its temp dir), and nothing else."""
        doomed = [pid for pid in _pids() if pid != os.getpid() and self.ours(pid)]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    # A short temp dir: Ray's Unix socket paths under it must stay below 108 characters.
    c = Cluster(Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The small config and the default executor's results, once per trainer."""
    tmp = tmp_path_factory.mktemp("ray_work")
    cfg = small_config(tmp)
    refs = {}
    for trainer in ("single", "population"):
        refs[trainer] = tmp / f"local_{trainer}"
        proc = run_cli("run", cfg, "--results", refs[trainer], "--trainer", trainer, "--quiet")
        assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp, cfg, refs


def test_ray_cluster_gives_the_default_executors_results_bit_for_bit(cluster, work):
    tmp, cfg, refs = work
    out = tmp / "ray_single"
    proc = run_cli("run", cfg, "--results", out, "--trainer", "single", "--executor", "ray",
                   "--address", cluster.address, env=cluster.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray: 2 nodes, 2 CPUs" in proc.stderr
    assert_bit_identical(out, refs["single"])
    assert sorted(trained(proc.stderr)) == sorted(set(trained(proc.stderr))) and len(trained(proc.stderr)) == N_TRAININGS
    # the shared dense training is linked into each run on the driver, as the default executor links it
    for run in out.glob("run_*"):
        assert (run / "init.pt").stat().st_nlink > 1


def test_population_groups_fan_out_on_ray_given_by_RAY_ADDRESS(cluster, work):
    tmp, cfg, refs = work
    out = tmp / "ray_population"
    proc = run_cli("run", cfg, "--results", out, "--trainer", "population", "--executor", "ray", "--quiet",
                   env={**cluster.env, "RAY_ADDRESS": cluster.address})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_bit_identical(out, refs["population"])


def test_a_worker_killed_mid_unit_is_started_again_and_resumes(cluster, work):
    tmp, cfg, refs = work
    out, log = tmp / "ray_kill_worker", tmp / "ray_kill_worker.log"
    driver = start_cli("run", cfg, "--results", out, "--trainer", "single", "--executor", "ray",
                       "--address", cluster.address, env=cluster.env, log=log)
    killed = {}
    deadline = time.time() + 120
    while not killed and driver.poll() is None and time.time() < deadline:
        # a run unit whose first pruned training is stored and whose last is not: kill its worker
        started = [r for r in out.glob("run_*") if (r / "trainings" / "001.json").exists()
                   and not (r / "done.json").exists()]
        if started:
            for pid, name in cluster.busy_workers().items():
                if not name.startswith("dense"):
                    os.kill(pid, signal.SIGKILL)
                    killed[pid] = name
        time.sleep(0.02)
    assert driver.wait(timeout=180) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert killed, "no worker was found mid-unit"
    assert "Ray worker lost (WorkerCrashedError)" in text, text[-3000:]
    # resumed, not started over: every training was trained (and logged) exactly once
    assert sorted(trained(text)) == sorted(set(trained(text))) and len(trained(text)) == N_TRAININGS
    assert_bit_identical(out, refs["single"])


def test_a_killed_driver_run_again_skips_what_is_finished(cluster, work):
    tmp, cfg, refs = work
    out = tmp / "ray_kill_driver"
    args = ("run", cfg, "--results", out, "--trainer", "single", "--executor", "ray", "--address", cluster.address)
    driver = start_cli(*args, env=cluster.env, log=tmp / "ray_kill_driver.log")
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None and len(list(out.glob("run_*/trainings/002.json"))) < 1:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    # finished trainings: those whose metrics file (the commit mark, written last) exists, and their tensors; a
    # training killed between its tensors and its metrics is unfinished, and its tensors are written again
    marks = list(out.glob("*_*/trainings/[0-9][0-9][0-9].json"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for m in marks for p in (m, m.with_suffix(".pt"))}
    assert before and len(list(out.glob("run_*/done.json"))) < 4
    deadline = time.time() + 30  # its tasks end with it (their owner died)
    while cluster.busy_workers() and time.time() < deadline:
        time.sleep(0.2)
    assert not cluster.busy_workers()
    proc = run_cli(*args, env=cluster.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before  # nothing finished rewritten
    again = trained(proc.stderr)
    assert len(again) == len(set(again)) and not set(again) & finished_before(before)
    assert_bit_identical(out, refs["single"])


def finished_before(files) -> set[tuple]:
    """The trainings among ``files`` (paths of stored trainings), as ``trained`` names them; a run's
    training 0 is its linked dense training."""
    out = set()
    for path in files:
        if path.suffix != ".json":
            continue
        cfg = json.loads((path.parent.parent / "config.json").read_text())["config"]
        technique = "dense" if path.parent.parent.name.startswith("dense_") else cfg["technique"]
        if technique != "dense" and path.stem == "000":
            continue
        out.add((technique, cfg["reinit"], str(cfg["seed"]), path.stem[1:]))
    return out


def test_two_drivers_on_one_store_train_each_run_once(cluster, work):
    """As tests/test_concurrency.py does for the default executor."""
    tmp, cfg, refs = work
    out = tmp / "two_ray"
    logs = [tmp / f"two_ray_{i}.log" for i in range(2)]
    procs = [start_cli("run", cfg, "--results", out, "--trainer", "single", "--executor", "ray",
                       "--address", cluster.address, env=cluster.env, log=log) for log in logs]
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    done = [t for log in logs for t in trained(log.read_text())]
    assert len(done) == len(set(done)) == N_TRAININGS  # never the same training twice, nothing left out
    assert_bit_identical(out, refs["single"])


def test_an_address_with_no_cluster_is_one_line_within_30_seconds(tmp_path):
    cfg = small_config(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    start = time.time()
    proc = run_cli("run", cfg, "--results", tmp_path / "out", "--executor", "ray", "--address", address)
    assert time.time() - start < 30
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and lines[0].startswith("error:"), proc.stderr
    assert not list((tmp_path / "out").glob("run_*"))
