"""``experiment.json``: the one reader and writer of a results folder's experiment record."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..nets.config import ExperimentConfig
from . import layout, provenance, published
from .files import StoreError, read_json, save_json
from .provenance import hardware, now as _now


# What the last run that trained something recorded (``runner.run_experiment``): kept by later writes that
# record no run of their own, replaced whole by the next run that does.
RUN_FACTS = ("last_run_seconds", "trainer", "workers", "threads_per_worker", "executor", "cuda", "population_convs",
             "numerics")


def write_experiment(folder: Path, cfg: ExperimentConfig, source: str, device: str, extra: dict | None = None,
                     version: str | None = None, seed_runs: dict | None = None) -> None:
    """Write ``experiment.json``; left untouched when nothing but its timestamps would change, so that
    a re-run that trains nothing leaves the results' fingerprint (and the executed notebooks) as they are.
    ``version``: the code version to record (default: the checkout's now). ``seed_runs``: {seed: what one command
    that trained it recorded}, appended to the seed's list (``seed_runs``: every command that trained the seed, with
    its code version, machine and wall time)."""
    path = Path(folder) / layout.EXPERIMENT
    runs = [{"hash": r.run_hash(), "technique": r.technique, "reinit": r.reinit, "seed": r.seed} for r in cfg.runs()]
    previous = peek(folder) or {}
    content = {"name": cfg.name, "config_file": source, "config": cfg.to_dict(), "runs": runs,
               "config_hash": hashlib.sha256(json.dumps([r["hash"] for r in runs]).encode()).hexdigest()[:12],
               "code_version": version or provenance.code_version(), "hardware": hardware(device),
               "started": previous.get("started", _now())}
    content.update(extra or {k: previous[k] for k in RUN_FACTS if k in previous})
    runs_by_seed = {k: list(v) for k, v in previous.get("seed_runs", {}).items()}
    for seed, entry in (seed_runs or {}).items():
        runs_by_seed.setdefault(str(seed), []).append(entry)
    if runs_by_seed:
        content["seed_runs"] = runs_by_seed
    if {k: v for k, v in previous.items() if k != "updated"} == json.loads(json.dumps(content)):
        return
    save_json({**content, "updated": _now()}, path)


def check_owner(folder: Path, cfg: ExperimentConfig) -> None:
    """Refuse to train ``cfg`` into ``folder`` when the folder belongs to something else: a published set, another
    config's run store (another name), or a non-empty folder that is no results folder. One line names both."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    exp = peek(folder)
    fix = f"name a folder of its own with --results (default: results/{cfg.name})"
    if published.is_published(folder):
        name = exp.get("name") if isinstance(exp, dict) else folder.name
        raise StoreError(f"{folder} is the published set '{name}', not a run store for '{cfg.name}'; {fix}")
    if exp is None:
        if any(not _being_made(entry.name) for entry in folder.iterdir()):
            raise StoreError(f"{folder} is not empty and holds no experiment.json (not a results folder), so config "
                             f"'{cfg.name}' will not train into it; {fix}")
        return
    if exp.get("name") != cfg.name:
        raise StoreError(f"{folder} holds the experiment '{exp.get('name')}', not '{cfg.name}'; {fix}")


def _being_made(name: str) -> bool:
    """Whether ``name`` is what another process starting a run store here writes before its ``experiment.json``
    lands: that file's temporary copy (``core.atomic``) or the lock folder. Two commands may start together."""
    return name == layout.LOCKS or (name.startswith(f".{layout.EXPERIMENT}.") and name.endswith(".tmp"))


def recorded_version(folder: Path) -> str | None:
    """The code version ``experiment.json`` in ``folder`` records, or None."""
    try:
        return peek(folder)["code_version"]
    except (KeyError, TypeError):
        return None


def read_experiment(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.exists():
        raise StoreError(f"results folder {folder} does not exist; run `python -m pruning run configs/<name>.yaml` first")
    return read_json(folder / layout.EXPERIMENT,
                     "run `python -m pruning run` with this folder's config to rewrite it")


def peek(folder: Path) -> dict | None:
    """``experiment.json`` of ``folder``, or None where it is missing or unreadable (not a results folder)."""
    try:
        return read_json(Path(folder) / layout.EXPERIMENT, "")
    except (StoreError, OSError):
        return None


def runs_finished(folder: Path) -> tuple[int, int]:
    """(finished, planned) runs of a results folder: a run store's runs with ``done.json``, or a published
    set's runs of its published seeds."""
    folder = Path(folder)
    runs = read_experiment(folder).get("runs", [])
    if published.is_published(folder):
        seeds = set(published.seeds(folder))
        return sum(1 for r in runs if int(r["seed"]) in seeds), len(runs)
    return sum(1 for r in runs if run_done(folder, r["hash"])), len(runs)


def run_done(folder: Path, run_hash: str) -> bool:
    """Whether the run ``run_hash`` of the run store ``folder`` is finished (its ``done.json``)."""
    return (Path(folder) / f"{layout.RUN_PREFIX}{run_hash}" / layout.DONE).exists()
