"""Where units of work run: in this process, in local worker processes, or on a Ray cluster.

A *unit* (``units.Unit``) is what one worker trains at a time (see ``runner``): the shared dense training
of a seed (``dense``), one run (``single`` trainer) or one population of runs (``population`` trainer).
Every executor drives units through the same function (``runner.run_unit``, passed in as ``work``), so
the lifecycle of a run is the same wherever it trains.

:func:`drive` hands units to an executor. Before a unit starts it is *claimed*: the locks of its runs
are taken (``locks``), so that two processes on one results folder never train the same run at once.
A unit claimed by another process is skipped for now and tried again later; when nothing else is left
to do, this process waits for its lock, then skips it if the other process finished it. So every process
ends with every unit finished, and their union is what one process would have stored.

- :class:`LocalExecutor`: the default. This process (one worker) or a pool of spawned worker processes.
  Workers write straight into the store.
- :class:`pruning.execution.ray_executor.RayExecutor`: tasks on a Ray cluster, their files streamed back to this
  process, which writes them (see that module); imported only for ``--executor ray``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import ExecutorError
from ..store.locks import Claim, StoreLocks
from .units import Unit

EXECUTORS = ("local", "ray")


# ----------------------------------------------------------------------------- claiming and driving


def drive(executor, units: list[Unit], results: Path) -> None:
    """Run every unit of ``units`` (all of the results folder ``results``) on ``executor``, each under its
    claim (see the module's note)."""
    locks = StoreLocks(results)
    todo = list(units)
    running: dict[object, Claim] = {}

    def start(unit: Unit, claim: Claim) -> None:
        if unit.done():  # finished by another process meanwhile
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
                claim = locks.try_claim(unit.lock_names())
                if claim is not None:
                    todo.remove(unit)
                    start(unit, claim)
            if running:
                watch = getattr(executor, "progress", None)  # worker processes store; this process counts
                for job in executor.wait(list(running), timeout=1.0 if todo or watch else None):
                    running.pop(job).release()
                if watch is not None:
                    watch()
            elif todo:  # every unit left is claimed by another process: wait for the first one's locks
                unit = todo.pop(0)
                start(unit, locks.claim(unit.lock_names()))
    finally:
        executor.cancel(list(running))
        for claim in running.values():
            claim.release()


# ----------------------------------------------------------------------------- the default executor


class LocalExecutor:
    """Units in this process (``workers == 1``) or in spawned worker processes, ``work(unit)`` each."""

    name = "local"

    def __init__(self, work: Callable, workers: int, bar=None):
        self.work, self.slots, self.bar = work, max(1, workers), bar
        self.pool = None
        if self.slots > 1:
            import concurrent.futures as cf
            import multiprocessing

            self.pool = cf.ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_die_with_parent, initargs=(os.getpid(),))

    def describe(self) -> str:
        return f"{self.slots} worker{'s' * (self.slots > 1)}"

    def start(self, unit: Unit):
        if self.pool is None:
            self.work(unit, self.bar)
            return _Done(unit)
        return self.pool.submit(self.work, unit)

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


def _die_with_parent(parent: int | None = None) -> None:
    """Worker initialiser: on Linux, end this worker when the driver dies (even by SIGKILL), so that no
    orphan keeps training a unit whose lock died with the driver. A driver that died while this worker was still
    starting (before the signal was asked for: the worker was already an orphan, and no signal comes) is caught
    by comparing the parent's pid with the driver's, ``parent``."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


# ----------------------------------------------------------------------------- choosing one


def make(name: str, work: Callable, workers: int, device: str, threads: int | None, address: str | None = None,
         say=print, bar=None):
    """The executor ``name`` that trains units with ``work`` (``runner.run_unit``): ``workers`` at once
    (local), or as many as the Ray cluster holds of ``threads`` CPUs (or one GPU for ``device`` cuda)."""
    if name == "local":
        if address:
            raise ExecutorError("--address is for --executor ray")
        return LocalExecutor(work, workers, bar)
    if name == "ray":
        from .ray_executor import RayExecutor  # Ray is imported only when asked for

        return RayExecutor(work, device, threads, address, say, bar)
    raise ExecutorError(f"unknown executor '{name}'; use one of {', '.join(EXECUTORS)}")


def ray_address(given: str | None) -> str | None:
    """``--address``, else ``RAY_ADDRESS``, else None (an embedded Ray instance)."""
    return given or os.environ.get("RAY_ADDRESS") or None
