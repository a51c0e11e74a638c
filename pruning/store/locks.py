"""Locks on a run store, so that several ``pruning run`` processes can share one results folder.

Every run (``run_<hash>``) and every shared dense training (``dense_<hash>``) has a lock file,
``<results>/.locks/<name>.lock``, locked with ``fcntl.flock``. A process *claims* a unit of work (one run,
a population of runs, one dense training) by taking the locks of every run in it, all or none, and holds
them while the unit trains, wherever it trains (in this process, a worker process or a Ray task, all of
which end when this process ends). So two processes never train the same run at once. The kernel
releases a lock when its holder dies, even by ``kill -9``, so a killed process never leaves a stale lock.

Lock files are never deleted: deleting one while another process holds or waits for it would let a third
process lock a new file of the same name.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .layout import LOCKS


class Claim:
    """The locks of one unit, held until :meth:`release`."""

    def __init__(self, fds: list[int]):
        self._fds = fds

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the descriptor releases its flock
        self._fds = []


class StoreLocks:
    """The lock files of one results folder."""

    def __init__(self, results: Path):
        self.dir = Path(results) / LOCKS

    def _open(self, name: str) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        return os.open(self.dir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def try_claim(self, names: list[str]) -> Claim | None:
        """Take every lock of ``names`` now, or none of them (returns None) if another process holds one."""
        fds: list[int] = []
        try:
            for name in sorted(set(names)):
                fd = self._open(name)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            Claim(fds).release()
            return None
        except BaseException:
            Claim(fds).release()
            raise
        return Claim(fds)

    def claim(self, names: list[str]) -> Claim:
        """Take every lock of ``names``, waiting for each (always in the same order, so two waiting
        processes cannot deadlock)."""
        fds: list[int] = []
        try:
            for name in sorted(set(names)):
                fd = self._open(name)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            Claim(fds).release()
            raise
        return Claim(fds)
