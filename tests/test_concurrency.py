"""Several ``pruning run`` processes on one results folder: the store's locks (``pruning/locks.py``).

Two processes started at once on one config never train the same run (or shared dense training) at once,
and their union is bit for bit what one process stores. The Ray version is in tests/test_ray.py.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from executor_helpers import N_TRAININGS, assert_bit_identical, run_cli, small_config, start_cli, trained
from pruning.store.locks import StoreLocks

HOLD = """
import sys, time
from pruning.store.locks import StoreLocks
claim = StoreLocks(sys.argv[1]).try_claim(sys.argv[2:])
print("held" if claim else "busy", flush=True)
time.sleep(60)
"""


def hold(results, *names) -> subprocess.Popen:
    """Another process that takes the locks ``names`` and keeps them until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(results), *names], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_claim_is_all_or_nothing_exclusive_across_processes_and_freed_by_kill_9(tmp_path):
    locks = StoreLocks(tmp_path)
    other = hold(tmp_path, "run_b")
    try:
        assert locks.try_claim(["run_a", "run_b"]) is None  # one of them is held: none is taken
        mine = locks.try_claim(["run_a"])  # so run_a is still free
        assert mine is not None
        assert locks.try_claim(["run_a"]) is None  # exclusive within one process too
        mine.release()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    start = time.time()
    claim = locks.claim(["run_a", "run_b"])  # the kernel freed the killed holder's lock
    assert time.time() - start < 5
    claim.release()


def test_a_blocking_claim_waits_for_the_holder(tmp_path):
    locks = StoreLocks(tmp_path)
    other = hold(tmp_path, "dense_x")
    start = time.time()
    killer = subprocess.Popen([sys.executable, "-c", f"import os,time,signal; time.sleep(1.5); "
                                                     f"os.kill({other.pid}, signal.SIGKILL)"])
    claim = locks.claim(["dense_x"])
    assert time.time() - start >= 1.0
    claim.release()
    killer.wait()
    other.wait()


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["single", "population"])
def test_two_processes_on_one_store_train_each_run_once_and_equal_one_process(tmp_path, trainer):
    cfg = small_config(tmp_path)
    ref = tmp_path / "one"
    assert run_cli("run", cfg, "--results", ref, "--trainer", trainer, "--quiet").returncode == 0
    out = tmp_path / "two"
    logs = [tmp_path / f"two_{i}.log" for i in range(2)]
    procs = [start_cli("run", cfg, "--results", out, "--trainer", trainer, log=log) for log in logs]
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    done = [t for log in logs for t in trained(log.read_text())]
    assert len(done) == len(set(done)) == N_TRAININGS  # never the same training twice, nothing left out
    assert_bit_identical(out, ref)
    assert not [p for p in out.rglob(".*.tmp")]  # no temp file left behind


def test_a_worker_whose_driver_died_while_it_started_ends_itself():
    """The workers' initialiser asks to die with the driver (PR_SET_PDEATHSIG); a worker whose driver was already
    gone when it asked (its parent is no longer the driver) exits at once instead of waiting forever as an orphan."""
    code = ("import os, sys; from pruning.execution.executors import _die_with_parent; "
            "_die_with_parent(int(sys.argv[1]) if sys.argv[1] != 'parent' else os.getppid()); print('alive')")
    gone = subprocess.run([sys.executable, "-c", code, "-1"], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "alive" not in gone.stdout
    kept = subprocess.run([sys.executable, "-c", code, "parent"], capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0 and kept.stdout.strip() == "alive"
