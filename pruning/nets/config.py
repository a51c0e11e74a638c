"""Experiment configs: YAML in, validated dataclasses out, one hash per run.

An *experiment* config (``configs/*.yaml``) lists techniques, reinit modes and seeds.
It expands into one *run* config per (technique, reinit, seed); a run is named by the
hash of its resolved config (open_lth style), so identical runs share a directory and
finished runs are never repeated.

Each field is defined once, with its checks beside it (``_field``: range, finiteness,
non-empty, choices), which ``validate`` applies to every field. The fields a run shares with
its experiment live in :class:`RunFields`, which both configs extend; ``runs()`` copies them by
iterating over it. Fields that only say *how* to compute (device, trainer) are left out of
the hash. Fields added later declare a no-op default with ``_field(..., noop=True)``: while
they keep that default they are left out of the hash too, so old runs keep their names
(``tests/test_run_hashes.py`` pins them).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from ..core.errors import ConfigError
from ..core.paths import NAME_MEANING, NAME_RULE


def _field(default, *, noop: bool = False, compute_only: bool = False, doc: str = "", ge=None, gt=None, lt=None,
           nonempty: bool = False, choices: tuple = (), pattern: tuple[str, str] | None = None):
    """A config field with its documentation and its checks, which ``validate`` applies (``_check``).

    ``ge``/``gt``/``lt`` bound a number (a None value is not checked); ``nonempty`` asks for at least one
    entry; ``choices`` lists the allowed strings; ``pattern`` is (regex, what it means). Every float value
    must also be finite. ``noop``: a default that leaves the run hash unchanged; ``compute_only``: never hashed.
    """
    meta = {"noop": noop, "compute_only": compute_only, "doc": doc, "ge": ge, "gt": gt, "lt": lt,
            "nonempty": nonempty, "choices": choices, "pattern": pattern}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainingConfig:
    epochs: int = _field(30, ge=1, doc="epochs per training")
    batch_size: int = _field(32, ge=1)
    lr: float = _field(0.01, gt=0.0, doc="learning rate of SGD")
    momentum: float = _field(0.0, ge=0.0)
    weight_decay: float = _field(0.0, ge=0.0)
    augment: bool = _field(False, noop=True, doc="random crop + horizontal flip [F]")
    augment_padding: int = _field(2, noop=True, ge=0, lt=28,
                                  doc="pixels of padding on each side before the random crop (the released code: 4)")
    augment_flip: bool = _field(True, noop=True, doc="flip half the images horizontally")
    augment_fill: str = _field("mean", noop=True, choices=("mean", "black"),
                               doc="'mean': flip, then pad with the training set's mean pixel (0 after "
                                   "normalising) and crop; 'black': crop with a black border (raw pixel 0), then "
                                   "flip, as torchvision's RandomCrop and RandomHorizontalFlip before Normalize "
                                   "(the released code)")
    prune_from_epoch: int | None = _field(None, noop=True, ge=1,
                                          doc="the next pruning step reads the weights after this many epochs of "
                                              "each training, not its last; the stored network is the last "
                                              "epoch's (the released L1 US recipe: 1)")
    data_order: str = _field("per_training", noop=True, choices=("per_training", "same_every_round"),
                             doc="'per_training': a new batch order for every training; 'same_every_round': "
                                 "epoch e has the same order in every pruning round of a seed (the released code "
                                 "calls torch.manual_seed(seed) before each training)")


@dataclass
class DataConfig:
    val_size: int = _field(12000, ge=0, doc="validation images taken from the official training set (0: train on "
                                            "all of it, no validation accuracy)")
    train_subset: int | None = _field(None, noop=True, ge=1, doc="use only the first n images of the training split")
    val_subset: int | None = _field(None, noop=True, ge=1, doc="use only the first n images of the validation split")
    test_subset: int | None = _field(None, noop=True, ge=1, doc="use only the first n test images")
    input_size: int | None = _field(None, noop=True, ge=1, doc="resize images to this side (AlexNet/VGG)")
    channels: int | None = _field(None, noop=True, ge=1, doc="repeat grey images to this many channels")
    normalize: bool = _field(True, noop=True, doc="standardise inputs per channel with the training set's mean "
                                                  "and std (false: raw pixels in [0, 1])")


@dataclass
class StoreConfig:
    weights: str | list = _field("all", doc="'all', 'none' or a list of layer names whose trained weights are stored")
    logits: bool = _field(True, doc="store test-set logits (needed for ensembles)")
    masks: str | list = _field("all", noop=True, doc="'all' or a list of layer names whose masks are stored "
                                                     "(bit-packed; the run's checkpoint keeps every layer's)")


@dataclass
class RunFields:
    """The fields a run shares with its experiment: set once in the experiment, copied into each of its runs."""

    arch: str = "lenet"
    dataset: str = "mnist"
    iterations: int = _field(20, ge=0, lt=1000, doc="pruning steps after the dense training (the store names "
                                                     "trainings 000-999)")
    prune_fraction: float = _field(0.2, gt=0.0, lt=1.0, doc="fraction of each layer's remaining weights pruned "
                                                              "per step")
    structured_dim: int = _field(0, choices=(0, 1), doc="what a structured technique removes: 0 = output channels "
                                                          "and units, 1 = input channels and units")
    output_layer: str = _field("prune", choices=("prune", "exempt"),
                               doc="'prune' (as every layer), 'exempt' (never pruned)")
    output_structured_dim: int | None = _field(None, noop=True, choices=(None, 0, 1),
                                               doc="structured dim for the output layer; null = structured_dim")
    rewind_epoch: int = _field(0, noop=True, ge=0, doc="epoch of dense training that late_rewind rewinds to")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


@dataclass
class RunConfig(RunFields):
    """Everything that determines one run: one technique, one reinit mode, one seed."""

    technique: str = "l1_us"
    reinit: str = "rewind"
    seed: int = 0

    def hash_dict(self) -> dict:
        return _hash_view(self)

    def run_hash(self) -> str:
        text = json.dumps(self.hash_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ExperimentConfig(RunFields):
    """A YAML file under configs/: the grid of runs and how to compute them."""

    name: str = _field("experiment", pattern=(NAME_RULE, NAME_MEANING + "; it names results/<name>"))
    description: str = ""
    techniques: list = _field(["l1_us"], nonempty=True)
    reinit: list = _field(["rewind"], nonempty=True)
    reinit_techniques: dict = _field({}, doc="reinit mode -> the techniques it runs with (default: every technique)")
    seeds: list = _field([0], nonempty=True)
    device: str = _field("auto", compute_only=True, choices=("auto", "cpu", "cuda"), doc="'auto', 'cpu' or 'cuda'")
    trainer: str = _field("auto", compute_only=True, choices=("auto", "single", "population"),
                          doc="'auto', 'single' or 'population'")
    workers: int | None = _field(None, compute_only=True, ge=1, doc="worker processes (default: one per CPU core)")
    share_dense: bool = _field(True, compute_only=True, doc="train each seed's dense network once for all its runs")

    def runs(self) -> list[RunConfig]:
        shared = [f.name for f in dataclasses.fields(RunFields)]
        out = []
        for technique in self.techniques:
            for reinit in self.reinit:
                if reinit in self.reinit_techniques and technique not in self.reinit_techniques[reinit]:
                    continue
                for seed in self.seeds:
                    out.append(RunConfig(technique=technique, reinit=reinit, seed=int(seed),
                                         **{name: copy.deepcopy(getattr(self, name)) for name in shared}))
        return out

    def to_dict(self) -> dict:
        """Every field, in the order a config file reads: its name, the grid, then what each run shares."""
        d = dataclasses.asdict(self)
        first = ["name", "description", "arch", "dataset", "techniques", "reinit", "reinit_techniques", "seeds"]
        return {**{k: d[k] for k in first}, **{k: v for k, v in d.items() if k not in first}}


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _hash_view(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("compute_only"):
            continue
        if dataclasses.is_dataclass(value):
            out[f.name] = _hash_view(value)
            continue
        if f.metadata.get("noop") and value == _default(f):
            continue
        out[f.name] = value
    return out


# ----------------------------------------------------------------------------- loading


def _type_ok(value, hint) -> tuple[bool, Any]:
    """Check (and gently coerce: int -> float) a YAML value against a dataclass type hint."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        for option in get_args(hint):
            if option is type(None):
                if value is None:
                    return True, None
                continue
            ok, coerced = _type_ok(value, option)
            if ok:
                return True, coerced
        return False, value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return True, float(value)
    if hint is int and isinstance(value, bool):
        return False, value
    return isinstance(value, hint), value


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls, data: dict, where: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{path}'{hint}; valid keys here: {', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, path, source)
            continue
        ok, coerced = _type_ok(value, hint)
        if not ok:
            raise ConfigError(f"{source}: '{path}' must be {_type_name(hint)}, got {shown(value)}; fix it in the config")
        kwargs[key] = coerced
    return cls(**kwargs)


def from_dict(data: dict, source: str = "config") -> ExperimentConfig:
    """An experiment config from its dict form (e.g. ``experiment.json``'s ``config``), every field a stored config
    lacks (added since) at its default."""
    return _build(ExperimentConfig, data, "", source)


def resolved(stored: dict) -> dict:
    """A stored config (``experiment.json``'s ``config``) with every field added since it was written at its
    default (a no-op: it computed that), so that a field new to the code is no difference from an old results
    set; as stored if it no longer parses."""
    try:
        return from_dict(stored, "experiment.json").to_dict()
    except ConfigError:
        return stored


def flat(cfg: dict, prefix: str = "") -> dict:
    """A nested config dict as {dotted field name: value}, e.g. ``training.epochs``."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_experiment(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML file; ``overrides`` are applied on top (same schema)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pick one of configs/*.yaml")
    if not path.is_file():
        raise ConfigError(f"config {path} is a folder, not a file; name a YAML file such as configs/smoke.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; name a YAML file such as configs/smoke.yaml") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the syntax") from None
    if not data:
        raise ConfigError(f"{path} is empty; copy configs/smoke.yaml and edit it, or name another config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name:, techniques:, ...), got a "
                          f"{type(data).__name__}; see configs/smoke.yaml")
    if overrides:
        data = _merge(data, overrides)
    data.setdefault("name", path.stem)
    cfg = _build(ExperimentConfig, data, "", str(path))
    validate(cfg, str(path))
    return cfg


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def shown(value, limit: int = 60) -> str:
    from .validation import shown as _shown

    return _shown(value, limit)


def validate(cfg: ExperimentConfig, source: str = "config") -> None:
    """Check every field against its declared checks and the rules that join fields (:mod:`.validation`)."""
    from .validation import validate as _validate

    _validate(cfg, source)
