"""The run store: one directory per run, named by the hash of its resolved config; one tidy table.

Layout of a results folder (e.g. ``results/smoke/``)::

    experiment.json                 resolved experiment config, its run hashes, code version, hardware
    run_<hash>/config.json          resolved run config + code version (written once)
    run_<hash>/init.pt              weights and biases at initialisation
    run_<hash>/rewind_point.pt      weights after rewind_epoch epochs of dense training (late_rewind only)
    run_<hash>/checkpoint.pt        the latest trained state: what a resumed run continues from
    run_<hash>/trainings/007.pt     training 7 (after 7 pruning steps): masks (bit-packed, the layers
                                    ``store.masks`` keeps), weights (of ``store.weights``), test logits
                                    (if ``store.logits``), predicted classes, test labels
    run_<hash>/trainings/007.json   its metrics and the sha256 of 007.pt (written last: the commit mark)
    run_<hash>/done.json            written when all trainings are finished; a done run is skipped

Every file is written atomically (temp file, then ``os.replace``), so ``kill -9`` at any moment
leaves either the old or the new file, never half of one.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import torch

from . import records
from .config import ExperimentConfig, RunConfig
from .errors import UserError
from .paths import REPO_ROOT


class StoreError(UserError, RuntimeError):
    """A damaged or inconsistent results folder; the message says which file and what to do."""


# ----------------------------------------------------------------------------- atomic files


def _atomic_bytes(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_json(obj, path: Path) -> None:
    _atomic_bytes((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), path)


def save_tensors(obj, path: Path) -> str:
    """torch.save ``obj`` atomically; returns the sha256 of the bytes written."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    _atomic_bytes(data, path)
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path, what_to_do: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError(f"{path} is damaged (not valid JSON); {what_to_do}") from None


def verify_sha256(path: Path, sha256: str | None, what_to_do: str) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"{path} is damaged (checksum mismatch); {what_to_do}")


def read_tensors(path: Path, what_to_do: str, sha256: str | None = None):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {what_to_do}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"{path} is damaged (checksum mismatch); {what_to_do}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise StoreError(f"{path} is damaged (cannot be read); {what_to_do}") from None


# ----------------------------------------------------------------------------- provenance


def code_version() -> str:
    """The commit of the code this process runs (read once: a commit made while a long run goes on must not
    be recorded as the code that trained it), with "-dirty" when tracked files differed from it."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        _CODE_VERSION = _read_code_version()
    return _CODE_VERSION


_CODE_VERSION: str | None = None


def _read_code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware(device: str | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}"
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name()} + " + text
    return text


# ----------------------------------------------------------------------------- one run


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
        prefix = "dense" if cfg.technique == DENSE else "run"
        self.dir = Path(root) / f"{prefix}_{self.hash}"

    @property
    def redo(self) -> str:
        return f"to redo only this run, delete {self.dir} and run the same command again"

    def is_done(self) -> bool:
        return (self.dir / "done.json").exists()

    def begin(self) -> None:
        path = self.dir / "config.json"
        if path.exists():
            stored = read_json(path, self.redo)
            if stored.get("hash") != self.hash:
                raise StoreError(f"{path} belongs to another config (hash {stored.get('hash')}); {self.redo}")
            return
        save_json({"hash": self.hash, "config": self.cfg.to_dict(), "hashed": self.cfg.hash_dict(),
                   "code_version": code_version(), "created": _now()}, path)

    # states -----------------------------------------------------------------
    def save_init(self, state) -> None:
        save_tensors(state, self.dir / "init.pt")

    def load_init(self):
        return read_tensors(self.dir / "init.pt", self.redo)

    def save_rewind_point(self, state) -> None:
        save_tensors(state, self.dir / "rewind_point.pt")

    def load_rewind_point(self):
        path = self.dir / "rewind_point.pt"
        return read_tensors(path, self.redo) if path.exists() else None

    def checkpoint(self) -> dict | None:
        """The latest trained state: iteration, state, masks (every layer, unpacked), record (as stored), metrics."""
        path = self.dir / "checkpoint.pt"
        if not path.exists():
            return None
        ckpt = read_tensors(path, self.redo)
        if "packed_masks" in ckpt["masks"]:
            ckpt["masks"] = records.unpack_masks(ckpt["masks"])
        return ckpt

    # trainings --------------------------------------------------------------
    def training_path(self, iteration: int) -> Path:
        return self.dir / "trainings" / f"{iteration:03d}.pt"

    def save_training(self, iteration: int, state: dict, masks: dict, record: dict, metrics: dict) -> None:
        """Checkpoint first (it carries the stored record), then the record, then its metrics (the commit mark).

        The checkpoint keeps every layer's mask (what the next training starts from); the record keeps the
        layers ``store.masks`` names. Both bit-pack them (``records``)."""
        stored = records.pack(record, self.cfg.store.masks)
        save_tensors({"iteration": iteration, "state": state, "masks": records.pack_masks(masks), "record": stored,
                      "metrics": metrics}, self.dir / "checkpoint.pt")
        self._write_record(iteration, stored, metrics)

    def _write_record(self, iteration: int, stored: dict, metrics: dict) -> None:
        sha = save_tensors(stored, self.training_path(iteration))
        save_json({**metrics, "iteration": iteration, "sha256": sha}, self.training_path(iteration).with_suffix(".json"))

    def resume(self) -> dict | None:
        """The latest checkpoint, after verifying every finished training and completing the last record.

        Returns None for a run with nothing trained yet.
        """
        ckpt = self.checkpoint()
        done = self.completed()
        for it in done if self.verify_trainings else ():  # every finished training must be intact first
            meta = read_json(self.training_path(it).with_suffix(".json"), self.redo)
            verify_sha256(self.training_path(it), meta.get("sha256"), self.redo)
        if ckpt is None:
            if done:
                raise StoreError(f"{self.dir / 'checkpoint.pt'} is missing but trainings exist; {self.redo}")
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
        for name in ("init.pt", "checkpoint.pt", "trainings/000.pt"):
            _link(dense.dir / name, self.dir / name)
        meta = read_json(dense.training_path(0).with_suffix(".json"), dense.redo)
        save_json(meta, self.training_path(0).with_suffix(".json"))

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def completed(self) -> list[int]:
        folder = self.dir / "trainings"
        if not folder.exists():
            return []
        return sorted(int(p.stem) for p in folder.glob("[0-9][0-9][0-9].json"))

    def mark_done(self, summary: dict) -> None:
        save_json({**summary, "finished": _now()}, self.dir / "done.json")


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


def _link(src: Path, dst: Path) -> None:
    """Atomically place ``src``'s bytes at ``dst``: a hard link where possible, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------- an experiment


# What the last run that trained something recorded (``runner.run_experiment``): kept by later writes that
# record no run of their own, replaced whole by the next run that does.
RUN_FACTS = ("last_run_seconds", "trainer", "workers", "threads_per_worker", "executor", "cuda", "population_convs")


def write_experiment(folder: Path, cfg: ExperimentConfig, source: str, device: str, extra: dict | None = None,
                     version: str | None = None) -> None:
    """Write ``experiment.json``; left untouched when nothing but its timestamps would change, so that
    a re-run that trains nothing leaves the results' fingerprint (and the executed notebooks) as they are.
    ``version``: the code version to record (default: the checkout's now)."""
    path = Path(folder) / "experiment.json"
    runs = [{"hash": r.run_hash(), "technique": r.technique, "reinit": r.reinit, "seed": r.seed} for r in cfg.runs()]
    previous = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
    content = {"name": cfg.name, "config_file": source, "config": cfg.to_dict(), "runs": runs,
               "config_hash": hashlib.sha256(json.dumps([r["hash"] for r in runs]).encode()).hexdigest()[:12],
               "code_version": version or code_version(), "hardware": hardware(device),
               "started": previous.get("started", _now())}
    content.update(extra or {k: previous[k] for k in RUN_FACTS if k in previous})
    if {k: v for k, v in previous.items() if k != "updated"} == json.loads(json.dumps(content)):
        return
    save_json({**content, "updated": _now()}, path)


def recorded_version(folder: Path) -> str | None:
    """The code version ``experiment.json`` in ``folder`` records, or None."""
    try:
        return json.loads((Path(folder) / "experiment.json").read_text())["code_version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_experiment(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.exists():
        raise StoreError(f"results folder {folder} does not exist; run `python -m pruning run configs/<name>.yaml` first")
    return read_json(folder / "experiment.json",
                     f"run `python -m pruning run` with this folder's config to rewrite it")


# ----------------------------------------------------------------------------- the tidy table

TABLE_COLUMNS = ["arch", "dataset", "technique", "reinit", "seed", "iteration", "sparsity", "weights_remaining",
                 "params_remaining", "val_acc", "test_acc", "val_loss", "test_loss", "train_loss", "collapsed",
                 "seconds", "run_hash", "run_dir", "file"]

# A training whose final training loss is within this of ln(classes), the loss of a uniform guess, learned
# nothing: the table flags it (``collapsed``) so that no average takes it in silently.
COLLAPSE_TOLERANCE = 0.01
NUM_CLASSES = 10


def load_results(folder: str | Path, all_runs: bool = False) -> pd.DataFrame:
    """Load a results folder into one tidy table, one row per training.

    Columns: arch, dataset, technique, reinit, seed, iteration (pruning steps so far), sparsity
    (fraction of prunable weights removed), weights_remaining (prunable weights left),
    params_remaining (all weights and biases left), val_acc and test_acc (in %), val_loss, test_loss,
    train_loss, collapsed (final train loss within ``COLLAPSE_TOLERANCE`` of ln 10: the training learned
    nothing), seconds (training time), run_hash, run_dir, file (the training's ``.pt``), and one
    ``remaining.<layer>`` column per prunable layer. Only the runs listed in ``experiment.json`` are
    read unless ``all_runs``; unfinished runs contribute the trainings they have.
    """
    folder = Path(folder)
    exp = read_experiment(folder)
    wanted = None if all_runs else {r["hash"] for r in exp["runs"]}
    rows = []
    for run_dir in sorted(folder.glob("run_*")):
        h = run_dir.name[len("run_"):]
        if wanted is not None and h not in wanted:
            continue
        redo = f"to redo only this run, delete {run_dir} and run the same command again"
        if not (run_dir / "config.json").exists():
            continue  # created but killed before its config was written: nothing trained yet
        cfg = read_json(run_dir / "config.json", redo)["config"]
        for meta_path in sorted((run_dir / "trainings").glob("[0-9][0-9][0-9].json")):
            meta = read_json(meta_path, redo)
            row = {"arch": cfg["arch"], "dataset": cfg["dataset"], "technique": cfg["technique"],
                   "reinit": cfg["reinit"], "seed": cfg["seed"], "iteration": meta["iteration"],
                   "run_hash": h, "run_dir": str(run_dir), "file": str(meta_path.with_suffix(".pt"))}
            for key in ("sparsity", "weights_remaining", "params_remaining", "val_acc", "test_acc", "val_loss",
                        "test_loss", "train_loss", "seconds"):
                row[key] = meta.get(key)
            for layer, n in meta.get("remaining", {}).items():
                row[f"remaining.{layer}"] = n
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = pd.DataFrame(rows)
    table["collapsed"] = (table["train_loss"].astype(float) - math.log(NUM_CLASSES)).abs() <= COLLAPSE_TOLERANCE
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[TABLE_COLUMNS + extra].sort_values(["technique", "reinit", "seed", "iteration"]).reset_index(drop=True)


def load_training(row_or_path) -> dict:
    """Everything stored for one training: ``masks`` {layer: bool tensor} (the layers ``store.masks`` keeps), ``weights`` {"conv1.weight": tensor, ...},
    ``logits`` (N, classes) float32, ``predictions`` (N,) int64, ``targets`` (N,) int64.

    Accepts a row of :func:`load_results` (or its ``file``), so ``load_training(table.iloc[0])`` works.
    The file's checksum is verified against its ``.json``.
    """
    path = Path(row_or_path["file"] if not isinstance(row_or_path, (str, Path)) else row_or_path)
    meta = read_json(path.with_suffix(".json"), f"delete {path.parent.parent} and run the same command again")
    record = records.unpack(read_tensors(path, f"delete {path.parent.parent} and run the same command again",
                                         meta.get("sha256")))
    record["predictions"] = record["predictions"].long()
    record["targets"] = record["targets"].long()
    return record
