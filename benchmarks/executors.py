"""Wall time of one config with the default executor vs Ray on this machine, side by side in one run.

    .venv/bin/python benchmarks/executors.py [--config configs/smoke.yaml] [--trainer single|population]

Each executor runs the whole config from scratch into its own temporary results folder, as
``python -m pruning run CONFIG --quiet [--executor ray]`` in a fresh process (so Ray's start-up, the
workers' imports and the dataset load count, as they do for a user). Ray runs embedded (``ray.init()`` on
this machine, one worker per core); the default executor uses one worker process per core; both give
each unit the same number of threads, so both store the same bits, which is checked. Printed: the
command's wall time and the training time inside it (``last_run_seconds``) for each, and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(config: Path, results: Path, extra: list[str]) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pruning", "run", str(config), "--results", str(results), "--quiet",
                           *extra], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(extra) or 'default executor'} failed:\n{proc.stderr[-3000:]}")
    inner = json.loads((results / "experiment.json").read_text()).get("last_run_seconds", float("nan"))
    return wall, inner


def same_bits(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.glob("*_*/trainings/*.pt"))
    return bool(files) and files == sorted(p.relative_to(b) for p in b.glob("*_*/trainings/*.pt")) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "smoke.yaml")
    p.add_argument("--trainer", choices=["single", "population"], help="force a trainer (default: the config's)")
    args = p.parse_args()
    extra = ["--trainer", args.trainer] if args.trainer else []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        local = run(args.config, Path(tmp) / "local", extra)
        ray = run(args.config, Path(tmp) / "ray", extra + ["--executor", "ray"])
        identical = same_bits(Path(tmp) / "local", Path(tmp) / "ray")
        trainer = json.loads((Path(tmp) / "local" / "experiment.json").read_text()).get("trainer")
    print(f"{args.config.name}, {trainer} trainer, on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"no GPU used; load average before: {load:.2f}")
    print(f"{'executor':<34}{'wall s':>9}{'training s':>12}")
    print(f"{'default (local worker processes)':<34}{local[0]:>9.1f}{local[1]:>12.1f}")
    print(f"{'ray (embedded, one worker a core)':<34}{ray[0]:>9.1f}{ray[1]:>12.1f}")
    print(f"ray / default: {ray[0] / local[0]:.2f}x wall, {ray[1] / local[1]:.2f}x training; "
          f"stored trainings bit-identical: {identical}")


if __name__ == "__main__":
    main()
