"""Helpers of the executor tests (test_ray.py, test_concurrency.py): a small config, stored trainings
compared bit for bit, training log lines, driver subprocesses."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

# 4 runs (2 techniques x 2 seeds) of 4 trainings after the shared dense one: long enough per unit (a few
# seconds) for a kill to land in the middle of one.
SMALL = {
    "techniques": ["l1_us", "random_s"],
    "reinit": ["rewind"],
    "seeds": [0, 1],
    "iterations": 4,
    "training": {"epochs": 2, "lr": 0.1},
    "data": {"train_subset": 960, "val_subset": 500, "test_subset": 500},
}
N_TRAININGS = 2 + 4 * 4  # what is trained: 2 shared dense trainings + 4 runs x 4 pruned trainings


def small_config(folder: Path, name: str = "small") -> Path:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **SMALL}))
    return path


def stored(folder: Path) -> dict[str, object]:
    """Every stored training of a results folder: the bytes of each ``NNN.pt`` and each ``NNN.json`` but
    for its wall time (``seconds``), by path inside the folder."""
    out = {}
    for path in sorted(Path(folder).glob("*_*/trainings/[0-9][0-9][0-9].*")):
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".json":
            meta = json.loads(path.read_text())
            meta.pop("seconds")
            out[rel] = meta
        else:
            out[rel] = path.read_bytes()
    return out


def assert_bit_identical(got: Path, want: Path) -> None:
    a, b = stored(got), stored(want)
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:6]
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ[:6]
    runs = sorted(Path(got).glob("run_*"))
    assert runs and all((r / "done.json").exists() for r in runs)


LINE = re.compile(r"(\S+) (rewind|finetune|late_rewind|random_reinit)\s+s(\d+) it (\d\d)/(\d\d)")


def trained(log: str) -> list[tuple]:
    """The trainings a process logged: (technique, reinit, seed, iteration), one per finished training."""
    return [m.groups()[:4] for m in LINE.finditer(log)]


def env_with(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def pruning_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "pruning", *map(str, args)]


def run_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(pruning_cmd(*args), cwd=REPO, env=env or env_with(), capture_output=True, text=True,
                          timeout=timeout)


def start_cli(*args, env=None, log: Path) -> subprocess.Popen:
    """``python -m pruning ARGS`` in the background, stdout and stderr to ``log``."""
    return subprocess.Popen(pruning_cmd(*args), cwd=REPO, env=env or env_with(), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
