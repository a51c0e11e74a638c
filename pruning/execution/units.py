"""A unit of work: what one worker trains at a time, described whole by one frozen dataclass.

Every executor hands a :class:`Unit` to the same function (``runner.run_unit``), in this process, in a
worker process or in a Ray task (which trains it in a store of its own: :meth:`Unit.at`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .. import store
from ..core.errors import ExecutorError  # noqa: F401  (the old path: execution.units.ExecutorError)
from ..nets.config import RunConfig


@dataclass(frozen=True)
class Unit:
    """One unit of work and everything a worker needs to train it.

    ``kind`` is 'dense' (the shared dense training of ``runs[0]``'s seed), 'single' (one run, the one-net
    trainer) or 'population' (every run of a seed, trained together); ``results`` is the results folder;
    ``device``, ``threads`` (torch threads, None: leave as is), ``share_dense`` and ``quiet`` (no log
    lines) are the experiment's, the same for all of its units."""

    kind: str
    runs: tuple[RunConfig, ...]
    results: Path
    device: str = "cpu"
    threads: int | None = None
    share_dense: bool = True
    quiet: bool = False

    def at(self, results) -> "Unit":
        """This unit, trained into the results folder ``results`` instead."""
        return dataclasses.replace(self, results=Path(results))

    def stores(self) -> list[store.RunStore]:
        if self.kind == "dense":
            return [store.RunStore(self.results, store.dense_config(self.runs[0]))]
        return [store.RunStore(self.results, rc) for rc in self.runs]

    def lock_names(self) -> list[str]:
        return [st.dir.name for st in self.stores()]

    def done(self) -> bool:
        return all(st.is_done() for st in self.stores())

    @property
    def name(self) -> str:
        rc = self.runs[0]
        if self.kind == "dense":
            return f"dense s{rc.seed}"
        if self.kind == "population":
            return f"population s{rc.seed} ({len(self.runs)} runs)"
        return f"{rc.technique} {rc.reinit} s{rc.seed}"


def dense_units(units: list[Unit]) -> list[Unit]:
    """The shared dense trainings that ``units`` still need, one unit each. They are trained first and each
    under its own lock, so that runs of one seed that train in different workers (or processes) never
    train their common dense network twice."""
    out: dict[str, Unit] = {}
    for unit in units:
        if not unit.share_dense:
            continue
        for rc in unit.runs:
            if not store.dense_shareable(rc) or store.RunStore(unit.results, rc).checkpoint_path.exists():
                continue
            dense = store.RunStore(unit.results, store.dense_config(rc))
            if not dense.is_done():
                out.setdefault(dense.hash, dataclasses.replace(unit, kind="dense", runs=(rc,)))
    return list(out.values())
