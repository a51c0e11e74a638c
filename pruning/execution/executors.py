"""Where units of work run: in this process, in local worker processes, or on a Ray cluster.

A *unit* is what one worker trains at a time (see ``runner``): the shared dense training of a seed
(``dense``), one run (``single`` trainer) or one population of runs (``population`` trainer). Every
executor drives units through the same function (``runner.run_unit``, passed in as ``work``), so
the lifecycle of a run is the same wherever it trains.

:func:`drive` hands units to an executor. Before a unit starts it is *claimed*: the locks of its runs
are taken (``locks``), so that two processes on one results folder never train the same run at once.
A unit claimed by another process is skipped for now and tried again later; when nothing else is left
to do, this process waits for its lock, then skips it if the other process finished it. So every process
ends with every unit finished, and their union is what one process would have stored.

- :class:`LocalExecutor`: the default. This process (one worker) or a pool of spawned worker processes.
  Workers write straight into the store.
- :class:`pruning.ray_executor.RayExecutor`: tasks on a Ray cluster, their files streamed back to this
  process, which writes them (see that module); imported only for ``--executor ray``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import store
from .config import RunConfig
from .errors import UserError
from .locks import Claim, StoreLocks

EXECUTORS = ("local", "ray")
RAY_RETRIES = 3  # times a unit is started again after its worker or node died


class ExecutorError(UserError):
    """An executor that cannot run (e.g. no Ray cluster at the given address); one line that says what to do."""

    exit_now = False  # True: the command line exits at once (os._exit), without the interpreter's clean-up


# ----------------------------------------------------------------------------- units


@dataclass
class Unit:
    """What one worker trains at a time: ``kind`` is 'dense', 'single' or 'population'."""

    kind: str
    runs: tuple[RunConfig, ...]

    def stores(self, results: Path) -> list[store.RunStore]:
        if self.kind == "dense":
            return [store.RunStore(results, store.dense_config(self.runs[0]))]
        return [store.RunStore(results, rc) for rc in self.runs]

    def lock_names(self, results: Path) -> list[str]:
        return [st.dir.name for st in self.stores(results)]

    def done(self, results: Path) -> bool:
        return all(st.is_done() for st in self.stores(results))

    @property
    def name(self) -> str:
        rc = self.runs[0]
        if self.kind == "dense":
            return f"dense s{rc.seed}"
        if self.kind == "population":
            return f"population s{rc.seed} ({len(self.runs)} runs)"
        return f"{rc.technique} {rc.reinit} s{rc.seed}"


def dense_units(units: list[Unit], results: Path, share_dense: bool) -> list[Unit]:
    """The shared dense trainings that ``units`` still need, one unit each. They are trained first and each
    under its own lock, so that runs of one seed that train in different workers (or processes) never
    train their common dense network twice."""
    out: dict[str, Unit] = {}
    if not share_dense:
        return []
    for unit in units:
        for rc in unit.runs:
            if not store.dense_shareable(rc) or store.RunStore(results, rc).checkpoint_path.exists():
                continue
            dense = store.RunStore(results, store.dense_config(rc))
            if not dense.is_done():
                out.setdefault(dense.hash, Unit("dense", (rc,)))
    return list(out.values())


@dataclass
class Spec:
    """How every unit of one experiment trains: ``work(kind, runs, results, device, threads, share_dense,
    quiet, bar, say)`` is ``runner.run_unit``."""

    work: Callable
    results: Path
    device: str
    threads: int | None
    share_dense: bool
    quiet: bool

    def args(self, unit: Unit, results: Path | None = None) -> tuple:
        return (unit.kind, list(unit.runs), str(results or self.results), self.device, self.threads,
                self.share_dense, self.quiet)


# ----------------------------------------------------------------------------- claiming and driving


def drive(executor, units: list[Unit], results: Path) -> None:
    """Run every unit of ``units`` on ``executor``, each under its claim (see the module's note)."""
    locks = StoreLocks(results)
    todo = list(units)
    running: dict[object, Claim] = {}

    def start(unit: Unit, claim: Claim) -> None:
        if unit.done(results):  # finished by another process meanwhile
            claim.release()
            return
        try:
            running[executor.start(unit)] = claim
        except BaseException:
            claim.release()
            raise

    try:
        while todo or running:
            for unit in list(todo):
                if len(running) >= executor.slots:
                    break
                claim = locks.try_claim(unit.lock_names(results))
                if claim is not None:
                    todo.remove(unit)
                    start(unit, claim)
            if running:
                for job in executor.wait(list(running), timeout=1.0 if todo else None):
                    running.pop(job).release()
            elif todo:  # every unit left is claimed by another process: wait for the first one's locks
                unit = todo.pop(0)
                start(unit, locks.claim(unit.lock_names(results)))
    finally:
        executor.cancel(list(running))
        for claim in running.values():
            claim.release()


# ----------------------------------------------------------------------------- the default executor


class LocalExecutor:
    """Units in this process (``workers == 1``) or in spawned worker processes with ``threads`` threads each."""

    name = "local"

    def __init__(self, spec: Spec, workers: int, bar=None):
        self.spec, self.slots, self.bar = spec, max(1, workers), bar
        self.pool = None
        if self.slots > 1:
            import concurrent.futures as cf
            import multiprocessing

            self.pool = cf.ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_die_with_parent)

    def describe(self) -> str:
        return f"{self.slots} worker{'s' * (self.slots > 1)}"

    def start(self, unit: Unit):
        if self.pool is None:
            self.spec.work(*self.spec.args(unit), self.bar)
            return _Done(unit)
        return self.pool.submit(self.spec.work, *self.spec.args(unit))

    def wait(self, jobs: list, timeout: float | None) -> list:
        import concurrent.futures as cf

        done = [j for j in jobs if isinstance(j, _Done)]
        futures = [j for j in jobs if not isinstance(j, _Done)]
        if futures and not done:
            finished, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                fut.result()  # a worker's exception is raised here
            done = list(finished)
        return done

    def cancel(self, jobs: list) -> None:
        for job in jobs:
            if not isinstance(job, _Done):
                job.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


@dataclass(eq=False)
class _Done:
    unit: Unit


def _die_with_parent() -> None:
    """Worker initialiser: on Linux, end this worker when the driver dies (even by SIGKILL), so that no
    orphan keeps training a unit whose lock died with the driver."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- choosing one


def make(name: str, spec: Spec, workers: int, address: str | None = None, say=print, bar=None):
    if name == "local":
        if address:
            raise ExecutorError("--address is for --executor ray")
        return LocalExecutor(spec, workers, bar)
    if name == "ray":
        from .ray_executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(spec, address, say, bar)
    raise ExecutorError(f"unknown executor '{name}'; use one of {', '.join(EXECUTORS)}")


def ray_address(given: str | None) -> str | None:
    """``--address``, else ``RAY_ADDRESS``, else None (an embedded Ray instance)."""
    return given or os.environ.get("RAY_ADDRESS") or None
