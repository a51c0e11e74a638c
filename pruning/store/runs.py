"""The store of one run: one directory per run (``layout``), named by the hash of its resolved config."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from pathlib import Path

from ..nets.config import RunConfig
from . import layout, provenance, records
from .files import StoreError, link, read_json, read_tensors, save_json, save_tensors, verify_sha256
from .provenance import now as _now


DENSE = "dense"  # the technique name of a shared dense training


def dense_shareable(rc: RunConfig) -> bool:
    """Whether ``rc``'s dense training is the same computation as that of every other run of its seed.

    It is for every reinit mode but late_rewind, whose dense training also saves a rewind point.
    """
    return rc.reinit != "late_rewind" and rc.technique != DENSE


def dense_config(rc: RunConfig) -> RunConfig:
    """The config of ``rc``'s dense training: what decides iteration 0 (arch, data, seed, training, what is
    stored), with the pruning fields set to fixed values. Runs with equal dense configs share one training."""
    return dataclasses.replace(rc, technique=DENSE, reinit="rewind", iterations=0, prune_fraction=0.2,
                               structured_dim=0, output_layer="prune", output_structured_dim=None, rewind_epoch=0)


class RunStore:
    """The directory of one run (``run_<hash>``), or of a shared dense training (``dense_<hash>``)."""

    #: resume() verifies every finished training's checksum. A Ray task's temporary copy of a run, whose
    #: trainings the driver verified and did not send, turns this off (``executors``).
    verify_trainings = True

    def __init__(self, root: Path, cfg: RunConfig):
        self.cfg = cfg
        self.hash = cfg.run_hash()
        prefix = layout.DENSE_PREFIX if cfg.technique == DENSE else layout.RUN_PREFIX
        self.dir = Path(root) / f"{prefix}{self.hash}"

    @property
    def redo(self) -> str:
        return f"to redo only this run, delete {self.dir} and run the same command again"

    def is_done(self) -> bool:
        return (self.dir / layout.DONE).exists()

    def begin(self) -> None:
        path = self.dir / layout.RUN_CONFIG
        if path.exists():
            stored = read_json(path, self.redo)
            if stored.get("hash") != self.hash:
                raise StoreError(f"{path} belongs to another config (hash {stored.get('hash')}); {self.redo}")
            return
        save_json({"hash": self.hash, "config": self.cfg.to_dict(), "hashed": self.cfg.hash_dict(),
                   "code_version": provenance.code_version(), "created": _now()}, path)

    # states -----------------------------------------------------------------
    def save_init(self, state) -> None:
        save_tensors(state, self.dir / layout.INIT)

    def load_init(self):
        return read_tensors(self.dir / layout.INIT, self.redo)

    def save_rewind_point(self, state) -> None:
        save_tensors(state, self.dir / layout.REWIND_POINT)

    def load_rewind_point(self):
        path = self.dir / layout.REWIND_POINT
        return read_tensors(path, self.redo) if path.exists() else None

    def checkpoint(self, say=None) -> dict | None:
        """The latest trained state: iteration, state, masks (every layer, unpacked), record (as stored), metrics.

        A damaged checkpoint is never used: it is set aside (``checkpoint.pt.damaged``) and rebuilt from the
        newest verified training whose record holds the whole state (every weight and mask), which the run then
        continues from; where no record does, one line says what to delete."""
        path = self.checkpoint_path
        if not path.exists():
            return None
        try:
            ckpt = read_tensors(path, self.redo)
        except StoreError:
            ckpt = self._rebuild_checkpoint(say)
        if "packed_masks" in ckpt["masks"]:
            ckpt["masks"] = records.unpack_masks(ckpt["masks"])
        return ckpt

    def _rebuild_checkpoint(self, say=None) -> dict:
        path, done = self.checkpoint_path, self.completed()
        why = f"{path} is damaged and cannot be rebuilt from the run's records"
        if not done:
            raise StoreError(f"{why} (none is finished); {self.redo}")
        if self.cfg.training.prune_from_epoch is not None:  # its next mask reads a state no record keeps
            raise StoreError(f"{why} (training.prune_from_epoch: the records lack the state it prunes); {self.redo}")
        k = done[-1]
        meta = read_json(self.training_path(k).with_suffix(".json"), self.redo)
        stored = read_tensors(self.training_path(k), self.redo, meta.get("sha256"))
        if self.cfg.store.weights != "all" or self.cfg.store.masks != "all":
            raise StoreError(f"{why} (they keep only some layers: store.weights or store.masks); {self.redo}")
        masks = records.unpack_masks(stored) if "packed_masks" in stored else stored["masks"]
        state = stored["weights"]
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        metrics = {key: value for key, value in meta.items() if key != "sha256"}
        ckpt = {"iteration": k, "state": state, "masks": records.pack_masks(masks), "record": stored,
                "metrics": metrics}
        save_tensors(ckpt, path)
        (say or print)(f"{path} was damaged: set aside as {aside.name}; the run continues from training {k}")
        return ckpt

    # trainings --------------------------------------------------------------
    def training_path(self, iteration: int) -> Path:
        return self.dir / layout.training_file(iteration)

    def save_training(self, iteration: int, state: dict, masks: dict, record: dict, metrics: dict) -> None:
        """Checkpoint first (it carries the stored record), then the record, then its metrics (the commit mark).

        The checkpoint keeps every layer's mask (what the next training starts from); the record keeps the
        layers ``store.masks`` names. Both bit-pack them (``records``)."""
        stored = records.pack(record, self.cfg.store.masks)
        save_tensors({"iteration": iteration, "state": state, "masks": records.pack_masks(masks), "record": stored,
                      "metrics": metrics}, self.checkpoint_path)
        self._write_record(iteration, stored, metrics)

    def _write_record(self, iteration: int, stored: dict, metrics: dict) -> None:
        sha = save_tensors(stored, self.training_path(iteration))
        save_json({**metrics, "iteration": iteration, "sha256": sha}, self.training_path(iteration).with_suffix(".json"))

    def resume(self, say=None) -> dict | None:
        """The latest checkpoint, after verifying every finished training and completing the last record.

        Returns None for a run with nothing trained yet.
        """
        ckpt = self.checkpoint(say)
        done = self.completed()
        for it in done if self.verify_trainings else ():  # every finished training must be intact first
            meta = read_json(self.training_path(it).with_suffix(".json"), self.redo)
            verify_sha256(self.training_path(it), meta.get("sha256"), self.redo)
        if ckpt is None:
            if done:
                raise StoreError(f"{self.checkpoint_path} is missing but trainings exist; {self.redo}")
            return None
        if done and max(done) > ckpt["iteration"]:
            raise StoreError(f"{self.dir} has trainings beyond its checkpoint; {self.redo}")
        if ckpt["iteration"] not in done:  # killed between checkpoint and record: finish the record
            self._write_record(ckpt["iteration"], ckpt["record"], ckpt["metrics"])
        return ckpt

    def link_dense(self, dense: "RunStore") -> None:
        """Make the finished shared dense training ``dense`` this run's training 0 (hard links where the
        filesystem allows, else copies); the record's metrics file is written last, as for any training."""
        if self.completed() or self.checkpoint_path.exists():
            raise StoreError(f"{self.dir} already has trainings; it cannot take a shared dense training")
        for name in (layout.INIT, layout.CHECKPOINT, layout.training_file(0)):
            link(dense.dir / name, self.dir / name)
        meta = read_json(dense.training_path(0).with_suffix(".json"), dense.redo)
        save_json(meta, self.training_path(0).with_suffix(".json"))

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / layout.CHECKPOINT

    def completed(self) -> list[int]:
        folder = self.dir / layout.TRAININGS
        if not folder.exists():
            return []
        return sorted(int(p.stem) for p in folder.glob(layout.TRAINING_METRICS))

    def mark_done(self, summary: dict) -> None:
        save_json({**summary, "finished": _now()}, self.dir / layout.DONE)


def verify_finished(root: Path, runs: list[RunConfig]) -> None:
    """Check every training of each finished run in ``runs`` against the sha256 its ``.json`` records.

    The run command skips finished runs, so without this a damaged file would surface only later, in a
    notebook. Raises StoreError naming the first damaged or missing file and what to do. Each file is read
    once (a shared dense training is one file hard-linked into several runs), on every core (hashlib
    releases the GIL). Cost: reading the finished trainings once; for the smoke experiments' 1.4 GB (218
    files) 2.1 s on 2 cores busy with other jobs (3.3 s on one thread).
    """
    checks, seen = [], set()
    for rc in runs:
        st = RunStore(root, rc)
        if not st.is_done():
            continue
        if st.completed() != list(range(rc.iterations + 1)):
            raise StoreError(f"{st.dir} is marked finished but lacks trainings; {st.redo}")
        for it in st.completed():
            path = st.training_path(it)
            meta = read_json(path.with_suffix(".json"), st.redo)
            inode = (path.stat().st_dev, path.stat().st_ino) if path.exists() else path
            if inode not in seen:
                seen.add(inode)
                checks.append((path, meta.get("sha256"), st.redo))
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for _ in pool.map(lambda check: verify_sha256(*check), checks):  # raises the first failure, in order
            pass
