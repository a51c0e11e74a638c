"""The Ray executor: units of work as Ray tasks, their files streamed back to the driver, which writes them.

Used by :func:`pruning.execution.executors.make` for ``--executor ray``. ``ray.init`` starts Ray embedded on this
machine, or joins the running cluster at ``--address``. Workers need not share a filesystem with this
process (the *driver*). The round trip of one unit:

- a task gets the files of its unit's runs as bytes (:func:`snapshot`);
- it trains them in a temporary store on its node (:func:`_ray_unit`);
- after every finished training it streams the new files back (a Ray generator task);
- the driver writes them into the store (:func:`receive`), atomically, in the order that keeps the
  store resumable: checkpoint, record, its metrics, done mark.

A task whose worker or node dies is started again by the driver with the files as they then are in the
store, so it resumes from its last finished training.
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import store
from ..core.atomic import write_bytes
from ..core.errors import ExecutorError, UserError
from ..store import layout
from .units import Unit

RAY_RETRIES = 3  # times a unit is started again after its worker or node died


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail in one line, within ``timeout`` seconds, when nothing answers at a HOST:PORT address."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"Ray address '{address}' is not HOST:PORT (e.g. 10.0.0.1:6379, the head's "
                            f"`ray start --head --port`)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorError(f"no Ray cluster answers at {address} ({reason}); start one there with "
                            f"`ray start --head --port={port}`, or leave out --address to run Ray on this "
                            f"machine") from None


def ray_connect(address: str | None) -> str:
    """``ray.init``: embedded on this machine (no address) or joining the cluster at ``address``.
    Returns a description of the cluster."""
    import logging

    if address:
        # Joining: give up on an address that answers but is no Ray head after ~10 s of tries (Ray: ~20 s).
        os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "10")
    import ray

    if address and address != "auto" and "://" not in address:
        check_address(address)
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING)
    if not address:
        kwargs.update(address="local", include_dashboard=False)  # never join a cluster by accident
    else:
        kwargs.update(address=address)
    try:
        with _captured_stderr(enabled=bool(address)):  # Ray's C++ client logs each failed try on stderr
            ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, RuntimeError, ...
        root = exc
        while root.__cause__ is not None:  # e.g. AuthenticationError under ConnectionError
            root = root.__cause__
        why = [_first_line(exc)] + ([_first_line(root).split(". ")[0]] if root is not exc else [])
        where = f"the Ray cluster at {address}" if address else "an embedded Ray instance"
        text, link = "", exc
        while link is not None:
            text, link = text + str(link), link.__cause__
        if "AuthToken" in text or "AuthenticationError" in text:
            why = ["the cluster wants its authentication token: copy it from the head (`ray get-auth-token`) "
                   "into RAY_AUTH_TOKEN or a file named by RAY_AUTH_TOKEN_PATH"]
        error = ExecutorError(f"cannot start or join {where}: {': '.join(why)[:400]}")
        error.exit_now = True  # Ray's half-made client can hang the interpreter's exit: the CLI skips it
        raise error from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
    gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
    return f"{len(nodes)} node{'s' * (len(nodes) > 1)}, {cpus:g} CPUs" + (f", {gpus:g} GPUs" if gpus else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _captured_stderr(enabled: bool = True):
    """Send file descriptor 2 (where Ray's C++ code logs) to a temporary file while the block runs."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@dataclass(eq=False)
class _RayJob:
    unit: Unit
    gen: object = None
    attempts: int = 0


class RayExecutor:
    """Units as Ray tasks (one CPU worker with ``threads`` threads, or one GPU, each); see the module's note."""

    name = "ray"

    def __init__(self, work, device: str, threads: int | None, address: str | None, say=print, bar=None):
        import ray

        self.work, self.say, self.bar = work, say, bar
        self.cluster = ray_connect(address)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if device.startswith("cuda"):
            gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
            if not gpus:
                ray.shutdown()
                raise ExecutorError(f"device {device} was asked for but the Ray cluster has no GPU; "
                                    f"use --device cpu")
            self.resources = {"num_cpus": 1, "num_gpus": 1}
            self.slots = int(gpus)
        else:
            # A unit asks for as many CPUs as it uses threads (never more than the largest node has).
            biggest = max(n["Resources"].get("CPU", 0) for n in nodes)
            cpus = max(1, min(threads or 1, int(biggest) or 1))
            self.resources = {"num_cpus": cpus}
            self.slots = max(1, int(sum(n["Resources"].get("CPU", 0) for n in nodes) // cpus))
        # The driver, not Ray, starts a unit again after its worker died (max_retries=0): Ray would start it
        # with the files it had at the first start; the driver sends what the store holds now.
        self.task = ray.remote(_ray_unit)

    def describe(self) -> str:
        return f"Ray: {self.cluster}, {self.slots} units at once"

    def start(self, unit: Unit, job: _RayJob | None = None) -> _RayJob:
        job = job or _RayJob(unit)
        linked = prepare(unit)
        if self.bar is not None and linked:
            self.bar.update(linked)
        job.gen = self.task.options(name=f"pruning {unit.name}", max_retries=0, **self.resources).remote(
            self.work, unit.at("."), snapshot(unit))
        return job

    def wait(self, jobs: list[_RayJob], timeout: float | None) -> list[_RayJob]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        by_gen = {job.gen: job for job in jobs}
        ready, _ = ray.wait(list(by_gen), num_returns=1, timeout=timeout)
        finished = []
        for gen in ready:
            job = by_gen[gen]
            try:
                try:
                    ref = next(gen)
                except StopIteration:
                    finished.append(job)
                    continue
                batch = ray.get(ref)
            except RayTaskError as exc:  # the unit itself failed: a user error shows as one line
                cause = getattr(exc, "cause", None)
                if isinstance(cause, UserError):
                    raise cause from None
                raise
            except RayError as exc:  # its worker or node died: start it again from the store
                job.attempts += 1
                if job.attempts > RAY_RETRIES:
                    raise ExecutorError(f"{job.unit.name}: its Ray worker died {job.attempts} times "
                                        f"({type(exc).__name__}); see the Ray logs, then run the same "
                                        f"command again to resume") from None
                self.say(f"{job.unit.name}: Ray worker lost ({type(exc).__name__}); starting it again "
                         f"({job.attempts}/{RAY_RETRIES}) from the trainings in the store")
                self.start(job.unit, job)
                continue
            n = receive(batch["files"], job.unit.results)
            if self.bar is not None and n:
                self.bar.update(n)
            for line in batch["log"]:
                self.say(line)
        return finished

    def cancel(self, jobs: list[_RayJob]) -> None:
        import ray

        for job in jobs:
            try:
                ray.cancel(job.gen, force=True)
            except Exception:  # noqa: BLE001 - best effort; the tasks end with this driver anyway
                pass

    def close(self) -> None:
        import ray

        ray.shutdown()


# -- driver side: what a task gets, what comes back


def prepare(unit: Unit) -> int:
    """On the driver, before a unit's task starts: verify each run's finished trainings (and complete a
    record whose checkpoint was written), and give a run with nothing trained yet its finished shared dense
    training, as ``lifecycle.open_run`` would do. Then the task needs none of the trainings' tensors, and
    everything it sends back is one new training at a time. Returns the number of dense trainings linked."""
    linked = 0
    for rc, st in zip(unit.runs, unit.stores()):
        st.begin()
        if st.resume() is None and unit.kind != "dense" and unit.share_dense and store.dense_shareable(rc):
            dense = store.RunStore(unit.results, store.dense_config(rc))
            if dense.is_done():
                st.link_dense(dense)
                linked += 1
    return linked


def snapshot(unit: Unit) -> dict[str, bytes]:
    """The files a unit's task starts from: each run's folder without the trainings' tensors (verified by
    :func:`prepare`; the task does not verify them again), and a dense folder in full where a run still
    has to link it."""
    results = unit.results
    dirs = [(st.dir, False) for st in unit.stores()]
    if unit.kind != "dense" and unit.share_dense:
        for rc in unit.runs:
            if store.dense_shareable(rc) and not store.RunStore(results, rc).checkpoint_path.exists():
                dirs.append((store.RunStore(results, store.dense_config(rc)).dir, True))
    files = {}
    for folder, full in dirs:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if not full and path.parent.name == layout.TRAININGS and path.suffix == ".pt":
                continue
            files[path.relative_to(results).as_posix()] = path.read_bytes()
    return files


def _write_order(item) -> tuple:
    parts = item[0].split("/")
    top, name = parts[0], parts[-1]
    if len(parts) == 3 and parts[1] == layout.TRAININGS:
        rank = (5, name.split(".")[0], 0 if name.endswith(".pt") else 1)  # record, then its metrics
    else:
        rank = (layout.WRITE_ORDER.get(name, 4), "", 0)
    return (0 if top.startswith(layout.DENSE_PREFIX) else 1, top, rank)


def receive(files: list[tuple[str, bytes, str | None]], results: Path) -> int:
    """Write files sent back by a task into the store, atomically and in commit order; returns the number
    of trainings added. Nothing finished is rewritten: a training whose metrics file exists, and every
    file but the checkpoint that exists, is left as it is."""
    added = 0
    for rel, data, link in sorted(files, key=_write_order):
        parts = rel.split("/")
        if not parts or parts[0].split("_")[0] not in ("run", "dense") or ".." in parts or rel.startswith("/"):
            raise ExecutorError(f"a Ray task sent an unexpected file '{rel}'")
        path = results / rel
        if parts[-2:-1] == [layout.TRAININGS]:
            if path.with_suffix(".json").exists():
                continue
        elif path.name != layout.CHECKPOINT and path.exists():
            continue
        source = results / link if link else None
        if source is not None and source.exists() and source.read_bytes() == data:
            store.link(source, path)  # the shared dense training, linked as the task linked it
        else:
            write_bytes(data, path)
        if parts[0].startswith(layout.RUN_PREFIX) and parts[-2:-1] == [layout.TRAININGS] and path.suffix == ".json":
            added += 1
    return added


# -- worker side


class _Tracker:
    """The files of a task's temporary store, and which of them have changed since last sent."""

    def __init__(self, root: Path):
        self.root, self.seen = root, {}
        self.changes()

    def changes(self) -> list[tuple[str, bytes, str | None]]:
        out, dense_inodes, changed = [], {}, []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            st = path.stat()
            rel = path.relative_to(self.root).as_posix()
            if rel.startswith(layout.DENSE_PREFIX):
                dense_inodes.setdefault(st.st_ino, rel)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self.seen.get(rel) != key:
                self.seen[rel] = key
                changed.append((rel, path, st.st_ino))
        for rel, path, ino in changed:
            link = dense_inodes.get(ino)
            out.append((rel, path.read_bytes(), link if link and link != rel else None))
        return out


def _ray_unit(work, unit: Unit, files):
    """The Ray task of one unit (a generator): trains it in a temporary store and yields, after every
    finished training, ``{"files": [(path, bytes, linked-from)], "log": [lines]}``."""
    store.RunStore.verify_trainings = False  # the driver verified them and did not send their tensors
    root = Path(tempfile.mkdtemp(prefix="pruning-unit-"))
    try:
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        tracker = _Tracker(root)
        out: queue.Queue = queue.Queue()
        end = object()
        log: list[str] = []  # the lines said since the last batch (only the training thread touches it)

        def on_stored(*_) -> None:  # called by the lifecycle after each stored training
            out.put({"files": tracker.changes(), "log": log[:]})
            log.clear()

        def train() -> None:
            try:
                work(unit.at(root), None, log.append, on_stored)
                out.put(end)
            except BaseException as exc:  # noqa: BLE001 - handed to the generator, which raises it
                out.put(exc)

        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        while True:
            item = out.get()
            if item is end:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        thread.join()
        yield {"files": tracker.changes(), "log": log}  # done marks
    finally:
        shutil.rmtree(root, ignore_errors=True)
