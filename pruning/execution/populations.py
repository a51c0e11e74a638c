"""The population trainer through the run store: the fixed groups of runs that train together, and one
group's run (or resume) from training to training (``lifecycle``), each step batched (``population.batched``).

A group is fixed by the config: every run of one seed and one training setup, in config order, always in
the same slots; a run that has already stored the training being done keeps its slot as a *ghost* (zero
weights, result discarded), so the others train in exactly the shapes of an uninterrupted run. On the CPU, when
there are fewer groups than cores, groups are cut into interleaved parts (:func:`split`), one worker each.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..nets.config import RunConfig
from ..population.batched import check_arch, train_population
from . import lifecycle, metrics



def group_key(rc: RunConfig) -> tuple:
    """Runs with equal keys train in one population: same seed (same batches), same optimiser, same data."""
    return (rc.arch, rc.dataset, rc.seed, dataclasses.astuple(rc.training), dataclasses.astuple(rc.data))


def groups(runs: list[RunConfig]) -> list[list[RunConfig]]:
    """The fixed populations of a config's runs, each in config order (see the module's note on resumes)."""
    out: dict[tuple, list[RunConfig]] = {}
    for rc in runs:
        out.setdefault(group_key(rc), []).append(rc)
    return list(out.values())


def split(groups_: list[list[RunConfig]], workers: int) -> list[list[RunConfig]]:
    """Cut each group into interleaved parts (part i takes runs i, i + k, i + 2k, ... in config order) so that
    ``workers`` one-thread processes share the work evenly: every group into ``workers / gcd(len(groups), workers)``
    parts of near-equal size (at most one per run). One seed on 2 cores: 2 parts; 3 seeds on 2 cores: 6 parts, 3 per
    worker; 2 or 10 seeds: no cut.

    Interleaved, not contiguous: a config lists each technique's reinit modes together, so with two reinit modes on
    two cores each part gets every technique once, and a technique whose runs stay costly (fc-only pruning keeps its
    conv layers dense) lands in every part. Contiguous halves put both fc-only runs in one part: on the paper CPU
    config (one seed, 1 epoch, 2026-12-03) one worker then finished 38 s (24%) after the other.

    Two one-thread processes beat one two-thread process (``benchmarks/population.py``), and a member's bits do
    not depend on which other members share its population or on the thread count (every kernel computes each
    member on its own: ``tests/test_population.py``), so a cut changes speed only, never results."""
    parts = workers // math.gcd(len(groups_), workers) if groups_ and workers > 1 else 1
    out = []
    for group in groups_:
        k = min(parts, len(group))
        out += [group[i::k] for i in range(k)]
    return out


def _ghost(state: dict) -> dict:
    return {k: torch.zeros_like(v) for k, v in state.items()}


def run_group(group: list[RunConfig], results: Path, device: str, bar=None, say=print,
              share_dense: bool = True, on_stored=None) -> None:
    """Run (or resume) one population: every run of ``group`` (the whole group, finished runs included,
    so that the population's shapes never depend on what was already done)."""
    for rc in group:
        check_arch(rc.arch)
    runs = [lifecycle.open_run(rc, Path(results), device, share_dense=share_dense, say=say, on_stored=on_stored)
            for rc in group]
    for run in runs:  # runs whose dense training is their own (late_rewind, or no sharing)
        if run.next == 0:
            lifecycle.train_one(run, say, bar, stop=1)
    while any(not run.finished for run in runs):
        k = min(run.next for run in runs if not run.finished)
        live = [run.next == k for run in runs]
        starts = [lifecycle.advance(run) if is_live else _ghost(run.init) for run, is_live in zip(runs, live)]
        masks = [run.masks if is_live else None for run, is_live in zip(runs, live)]
        lead = runs[live.index(True)]
        # Members of one group share the split and test set: one batched evaluation pass for all of them.
        trained, stats, (val, test) = train_population(
            starts, masks, lead.rd.data, lead.rd.split.train_idx, lead.rc.training, seed=lead.rc.seed, iteration=k,
            evaluate_on=(metrics.val_set(lead.rd)[0], lead.rd.test_x))
        for i, (run, is_live, state, member_stats) in enumerate(zip(runs, live, trained, stats)):
            if not is_live:
                continue
            evaluated = metrics.describe(run.rc, state, run.masks, run.rd, val[i], test[i], member_stats, k)
            lifecycle.finish(run, None, member_stats, say, evaluated=evaluated)
            if bar is not None:
                bar.update(1)
