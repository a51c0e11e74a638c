"""Shared fixtures: tiny real-MNIST experiments written to tmp folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, **overrides) -> Path:
    """A tiny experiment on real MNIST: 2 iterations, 1 epoch on 1,000 images, 1,000 test images."""
    cfg = {
        "name": path.stem,
        "techniques": ["l1_us", "random_s"],
        "reinit": ["rewind", "finetune"],
        "seeds": [0],
        "iterations": 2,
        "training": {"epochs": 1, "lr": 0.1},
        "data": {"train_subset": 1000, "val_subset": 500, "test_subset": 1000},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_tiny(tmp_path: Path, name: str) -> Path:
    """The smallest trained set: L1 US rewound, seed 0, 1 pruning iteration on 200 images, in results/NAME."""
    from pruning.execution import runner
    from pruning.nets import config

    cfg = config.load_experiment(write_config(tmp_path / f"{name}.yaml", techniques=["l1_us"], reinit=["rewind"],
                                              iterations=1, data={"train_subset": 200, "val_subset": 100,
                                                                  "test_subset": 200}))
    folder = tmp_path / "results" / name
    runner.run_experiment(cfg, folder, quiet=True, device="cpu", workers=1)
    return folder


def cli(*args, check=False, timeout=600):
    """Run ``python -m pruning ARGS`` in a subprocess; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "pruning", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-2000:])
    return proc


@pytest.fixture(autouse=True)
def _same_working_directory():
    """Every test starts where the suite started (nbval, after tests/, opens files relative to it)."""
    cwd = os.getcwd()
    yield
    if os.getcwd() != cwd:
        os.chdir(cwd)


@pytest.fixture
def tiny_config(tmp_path):
    return write_config(tmp_path / "tiny.yaml")


def run_main(*args):
    """``python -m pruning ARGS`` in this process (shares the loaded dataset): (exit code, stderr)."""
    import contextlib
    import io

    from pruning.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def run_ok(*args) -> str:
    code, err = run_main(*args)
    if code != 0:
        raise AssertionError(err[-2000:])
    return err


def pytest_collection_modifyitems(config, items):
    """A test that reads the smoke results (``smoke_set``, which publishes results/smoke) belongs to the slow tier:
    the test command trains them first, the fast tier needs only the set-up."""
    for item in items:
        if "smoke_set" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def pytest_addoption(parser):
    parser.addoption("--fast-limit", type=float, default=None, metavar="SECONDS",
                     help="fail a test without the slow mark whose call takes longer than SECONDS (the fast loop: "
                          "`pytest -m 'not slow' --fast-limit 5`); off by default, so a loaded machine fails no test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    limit = item.config.getoption("--fast-limit", default=None)
    report = outcome.get_result()
    if limit is None or report.when != "call" or not report.passed or item.get_closest_marker("slow"):
        return
    if call.duration > limit:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {call.duration:.1f} s, over --fast-limit {limit:g} s: make it "
                           f"faster or mark it @pytest.mark.slow")
