"""The experiment runner: which trainer, which units of work, and where they run.

A config's runs are cut into *units* (``units.Unit``): one run for the one-net trainer (``single``), one
population (every run of a seed, ``populations.groups``; on the CPU cut into parts when there are fewer seeds
than cores, ``populations.split``) for the population trainer. Each unit drives the run
lifecycle (``lifecycle``) through the run store, so a unit killed at any moment resumes exactly.
Units run in this process, or in worker processes with one thread each on the CPU (two small
processes use two cores better than one process with two threads: ``benchmarks/population.py``).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import store
from ..core import numerics
from ..nets import models
from ..nets.config import ConfigError, ExperimentConfig, RunConfig
from ..population import lenet_convs
from . import executors, lifecycle, populations
from .units import Unit, dense_units


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no GPU; use --device cpu (or device: cpu in "
                          "the config)")
    return name


def configure_device(device: str) -> dict:
    """Deterministic kernels on CUDA (no TF32, no autotuned or non-deterministic algorithms), so that a
    resumed run is bit-identical to an uninterrupted one there too. Returns the settings, for experiment.json."""
    if not device.startswith("cuda"):
        return {}
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {"cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False, "cudnn.deterministic": True,
            "cudnn.benchmark": False}


def choose_trainer(cfg: ExperimentConfig, device: str) -> str:
    """'population' for models that train identically in a population (LeNet), on any device; else 'single'.

    The population trains every run of a seed on one shared batch per step: on 2 CPU cores it takes 4.25x
    the model-steps per second of the one-net loop in one-thread processes (its conv blocks in the fused
    kernels; README, benchmarks/population.py), and its resumes are exact (fixed groups, see
    ``population``). Its results equal the one-net loop's up to float rounding.
    """
    if cfg.trainer != "auto":
        return cfg.trainer
    return "population" if cfg.arch in models.POPULATION_SAFE else "single"


def default_workers(device: str, n_units: int) -> int:
    if device.startswith("cuda"):
        return 1
    return max(1, min(n_units, os.cpu_count() or 1))


def run_unit(unit: Unit, bar=None, say=None, on_stored=None) -> int:
    """Run (or resume) one unit of work; returns the number of runs in it. Every executor's entry
    (``executors``). A 'dense' unit trains the shared dense training of its first run's seed. ``say`` gets
    each log line (default: stderr unless ``unit.quiet``); ``on_stored(rc, iteration)``, if given, is called
    after each training is stored (the Ray executor sends the new files back then)."""
    if unit.threads:
        torch.set_num_threads(unit.threads)
    configure_device(unit.device)
    if say is None:
        say = (lambda *_: None) if unit.quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    results, device, runs = Path(unit.results), unit.device, list(unit.runs)
    if unit.kind == "dense":
        lifecycle.open_dense(runs[0], results, device, say, on_stored)
    elif unit.kind == "population":
        populations.run_group(runs, results, device, bar=bar, say=say, share_dense=unit.share_dense,
                              on_stored=on_stored)
    else:
        for rc in runs:
            run = lifecycle.open_run(rc, results, device, share_dense=unit.share_dense, say=say, on_stored=on_stored)
            lifecycle.train_one(run, say, bar)
    return len(runs)


def units(trainer: str, runs: list[RunConfig]) -> list[list[RunConfig]]:
    return populations.groups(runs) if trainer == "population" else [[rc] for rc in runs]


# ----------------------------------------------------------------------------- an experiment


def sgd_steps(pending: list[RunConfig], results: Path) -> int:
    """The size of what is left to train, in SGD steps of one network: printed before training starts, so that a
    config that would run for days says so (each run's dense training counted once per run)."""
    from ..nets import datasets

    steps = 0
    for rc in pending:
        n = rc.data.train_subset or datasets.TRAIN_SIZE.get(rc.dataset, 60000) - rc.data.val_size
        left = rc.iterations + 1 - len(store.RunStore(results, rc).completed())
        steps += left * rc.training.epochs * -(-max(n, 0) // rc.training.batch_size)
    return steps


def run_experiment(cfg: ExperimentConfig, results: Path, source: str = "", quiet: bool = False,
                   trainer: str | None = None, device: str | None = None, workers: int | None = None,
                   executor: str = "local", address: str | None = None, seeds=None) -> dict:
    """Run (or resume) every run of ``cfg`` into ``results``. Returns a small summary.

    ``seeds``: train only the runs of these of the config's seeds (a results set that grows seed by seed);
    each trains as it would in a run of the whole config (same populations and thread counts, same bits).

    ``executor`` 'local' (default) trains in this process or in local worker processes; 'ray' on a Ray
    cluster: embedded on this machine, or the one at ``address`` (``executors``)."""
    device = device or cfg.device
    # On Ray the GPUs are the cluster's: --device cuda needs none on the driver's machine.
    device = device if executor == "ray" and device == "cuda" else resolve_device(device)
    settings = configure_device(device)
    results = Path(results)
    runs = cfg.runs()
    if seeds is not None and not set(seeds) <= set(cfg.seeds):
        raise ConfigError(f"--seeds {sorted(set(seeds) - set(cfg.seeds))} not in the config's seeds {cfg.seeds}; "
                          f"add them to the config's seeds, or name seeds it has")
    store.check_owner(results, cfg)
    pending = [rc for rc in runs if (seeds is None or rc.seed in seeds) and not store.RunStore(results, rc).is_done()]
    store.verify_finished(results, runs)  # a damaged finished training stops the command before it writes
    results.mkdir(parents=True, exist_ok=True)
    # The code that trains: a commit made while it runs, or a later run that trains nothing, does not relabel it.
    version = store.recorded_version(results) if not pending else None
    version = version or store.code_version()
    store.write_experiment(results, cfg, source, device, version=version)
    trainer = trainer or choose_trainer(cfg, device)
    # A population is all of a seed's runs, finished ones included (as ghosts where needed).
    every_unit = units(trainer, runs)
    # Threads per unit follow from the config and the machine, never from what is left to do or from the
    # executor: a unit's float rounding depends on its thread count, and a resumed unit (or one trained
    # by Ray) must round as an uninterrupted one of the default executor.
    # The shared dense trainings (the one-net loop, whose bits depend on its thread count) keep the threads of one
    # worker per population; populations, whose bits depend on neither their thread count nor the other members
    # (``populations.split``), are cut when there are fewer of them than cores, so that every core trains.
    cores, asked = os.cpu_count() or 1, workers or cfg.workers
    dense_threads = max(1, cores // (asked or default_workers(device, len(every_unit)))) if device == "cpu" else None
    splittable = trainer == "population" and device == "cpu"
    n_workers = asked or default_workers(device, cores if splittable else len(every_unit))
    if splittable:
        every_unit = populations.split(every_unit, n_workers)
    threads = max(1, cores // n_workers) if device == "cpu" else None
    share = cfg.share_dense
    work = [Unit(trainer, tuple(u), results, device, threads, share, quiet)
            for u in every_unit if any(rc in pending for rc in u)]
    n_workers = max(1, min(n_workers, len(work) or 1))
    say = (lambda *_: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    start, cpu_start = time.perf_counter(), store.provenance.cpu_seconds()
    # Shared dense trainings first, each its own unit under its own lock; then the runs (``executors``).
    phases = [[dataclasses.replace(u, threads=dense_threads) for u in dense_units(work)], work]
    total = sum(rc.iterations + 1 - len(store.RunStore(results, rc).completed()) for rc in pending)
    ex = executors.make(executor, run_unit, n_workers, device, threads, address, say=say) if work else None
    where = ex.describe() if ex else "nothing to do"
    chosen = [rc for rc in runs if seeds is None or rc.seed in seeds]
    scope = f"{len(runs)} runs" if seeds is None else \
        f"{len(runs)} runs, {len(chosen)} of seeds {','.join(map(str, sorted(set(seeds))))}"
    if total:
        say(f"{cfg.name}: {total:,} trainings to do, {sgd_steps(pending, results):,} SGD steps of one network")
    say(f"{cfg.name}: {scope}, {len(chosen) - len(pending)} already finished, {len(pending)} to train on "
        f"{device} ({trainer} trainer, {len(work)} units, {where}) -> {results}")
    with tqdm(total=total, unit="training", disable=quiet or total == 0, file=sys.stderr, dynamic_ncols=True,
              leave=False) as bar:
        if ex is not None:
            ex.bar = bar
        if ex is not None and executor == "local" and n_workers > 1 and not quiet:
            # Worker processes store the trainings; this process counts them for the one bar over the whole run.
            total_done = sum(len(store.RunStore(results, rc).completed()) for rc in pending)

            def progress():
                nonlocal total_done
                now = sum(len(store.RunStore(results, rc).completed()) for rc in pending)
                if now != total_done:
                    bar.update(now - total_done)
                    total_done = now
            ex.progress = progress
        try:
            for phase in phases if ex else []:
                executors.drive(ex, phase, results)
        finally:
            if ex is not None:
                ex.close()
    seconds = time.perf_counter() - start
    if pending:
        trained_seeds = sorted({rc.seed for rc in pending})
        entry = {"seconds": round(seconds, 1), "seeds_together": trained_seeds, "code_version": version,
                 "hardware": store.hardware(device), "workers": n_workers, "finished": store.provenance.now(),
                 "trainings": total, "seed_trainings": sum(rc.iterations + 1 for rc in runs if rc.seed in trained_seeds)}
        if executor == "local" and device == "cpu" and seconds > 0:
            # Ray's workers are not this process's children, so their CPU time is not counted here.
            entry["cpu_share"] = round((store.provenance.cpu_seconds() - cpu_start) / (seconds * cores), 3)
        store.write_experiment(results, cfg, source, device, {
            "last_run_seconds": round(seconds, 1), "trainer": trainer, "workers": n_workers,
            "threads_per_worker": threads, "executor": executor, "numerics": numerics.describe(),
            **({"cuda": settings} if settings else {}),
            **({"population_convs": lenet_convs.describe(device)} if trainer == "population" else {})},
            version=version, seed_runs={seed: entry for seed in trained_seeds})
    say(f"{cfg.name}: done in {seconds:.1f}s -> {results}")
    return {"runs": len(runs), "trained": len(pending), "seconds": seconds, "trainer": trainer,
            "workers": n_workers, "executor": executor}
