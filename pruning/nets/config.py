"""Experiment configs: YAML in, validated dataclasses out, one hash per run.

An *experiment* config (``configs/*.yaml``) lists techniques, reinit modes and seeds.
It expands into one *run* config per (technique, reinit, seed); a run is named by the
hash of its resolved config (open_lth style), so identical runs share a directory and
finished runs are never repeated.

Fields that only say *how* to compute (device, trainer) are left out of the hash.
Fields added later declare a no-op default with ``_field(..., noop=True)``: while they
keep that default they are left out of the hash too, so old runs keep their names.
"""
from __future__ import annotations

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

from ..core.errors import UserError


class ConfigError(UserError, ValueError):
    """A config that cannot be used; its message is one line that says what to do."""


def _field(default, *, noop: bool = False, compute_only: bool = False, doc: str = ""):
    meta = {"noop": noop, "compute_only": compute_only, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainingConfig:
    epochs: int = _field(30, doc="epochs per training")
    batch_size: int = _field(32)
    lr: float = _field(0.01)
    momentum: float = _field(0.0)
    weight_decay: float = _field(0.0)
    augment: bool = _field(False, noop=True, doc="random crop (pad 2) + horizontal flip [F]")


@dataclass
class DataConfig:
    val_size: int = _field(12000, doc="validation images taken from the official training set")
    train_subset: int | None = _field(None, noop=True, doc="use only the first n images of the training split")
    val_subset: int | None = _field(None, noop=True, doc="use only the first n images of the validation split")
    test_subset: int | None = _field(None, noop=True, doc="use only the first n test images")
    input_size: int | None = _field(None, noop=True, doc="resize images to this side (AlexNet/VGG)")
    channels: int | None = _field(None, noop=True, doc="repeat grey images to this many channels")


@dataclass
class StoreConfig:
    weights: str | list = _field("all", doc="'all', 'none' or a list of layer names whose trained weights are stored")
    logits: bool = _field(True, doc="store test-set logits (needed for ensembles)")
    masks: str | list = _field("all", noop=True, doc="'all' or a list of layer names whose masks are stored "
                                                     "(bit-packed; the run's checkpoint keeps every layer's)")


@dataclass
class RunConfig:
    """Everything that determines one run: one technique, one reinit mode, one seed."""

    arch: str = "lenet"
    dataset: str = "mnist"
    technique: str = "l1_us"
    reinit: str = "rewind"
    seed: int = 0
    iterations: int = 20
    prune_fraction: float = 0.2
    structured_dim: int = 0
    output_layer: str = "prune"
    output_structured_dim: int | None = None
    rewind_epoch: int = 0
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    def hash_dict(self) -> dict:
        return _hash_view(self)

    def run_hash(self) -> str:
        text = json.dumps(self.hash_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Fields of RunConfig whose default is a no-op (added after the first runs were named).
_RUN_NOOP = {"output_structured_dim": None, "rewind_epoch": 0}


@dataclass
class ExperimentConfig:
    """A YAML file under configs/: the grid of runs and how to compute them."""

    name: str = "experiment"
    description: str = ""
    arch: str = "lenet"
    dataset: str = "mnist"
    techniques: list = _field(["l1_us"])
    reinit: list = _field(["rewind"])
    reinit_techniques: dict = _field({}, doc="reinit mode -> the techniques it runs with (default: every technique)")
    seeds: list = _field([0])
    iterations: int = 20
    prune_fraction: float = 0.2
    structured_dim: int = 0
    output_layer: str = _field("prune", doc="'prune' (as every layer), 'exempt' (never pruned)")
    output_structured_dim: int | None = _field(None, doc="structured dim for the output layer; null = structured_dim")
    rewind_epoch: int = _field(0, doc="epoch of dense training that late_rewind rewinds to")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    device: str = _field("auto", compute_only=True, doc="'auto', 'cpu' or 'cuda'")
    trainer: str = _field("auto", compute_only=True, doc="'auto', 'single' or 'population'")
    workers: int | None = _field(None, compute_only=True, doc="worker processes (default: one per CPU core)")
    share_dense: bool = _field(True, compute_only=True, doc="train each seed's dense network once for all its runs")

    def runs(self) -> list[RunConfig]:
        out = []
        for technique in self.techniques:
            for reinit in self.reinit:
                if reinit in self.reinit_techniques and technique not in self.reinit_techniques[reinit]:
                    continue
                for seed in self.seeds:
                    out.append(RunConfig(
                        arch=self.arch, dataset=self.dataset, technique=technique, reinit=reinit,
                        seed=int(seed), iterations=self.iterations, prune_fraction=self.prune_fraction,
                        structured_dim=self.structured_dim, output_layer=self.output_layer,
                        output_structured_dim=self.output_structured_dim, rewind_epoch=self.rewind_epoch,
                        training=dataclasses.replace(self.training), data=dataclasses.replace(self.data),
                        store=dataclasses.replace(self.store)))
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _hash_view(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("compute_only"):
            continue
        if dataclasses.is_dataclass(value):
            out[f.name] = _hash_view(value)
            continue
        noop = f.metadata.get("noop") or (isinstance(obj, RunConfig) and f.name in _RUN_NOOP)
        if noop and value == (f.default if f.default is not dataclasses.MISSING else f.default_factory()):
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
            raise ConfigError(f"{source}: '{path}' must be {_type_name(hint)}, got {value!r}; fix it in the config")
        kwargs[key] = coerced
    return cls(**kwargs)


def load_experiment(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML file; ``overrides`` are applied on top (same schema)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pick one of configs/*.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the syntax") from None
    if not data:
        raise ConfigError(f"{path} is empty; copy configs/smoke.yaml and edit it, or name another config")
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


def validate(cfg: ExperimentConfig, source: str = "config") -> None:
    """Check names against the registries and values against their ranges."""
    from . import datasets, models, techniques, reinit

    def choose(kind, value, options):
        if value not in options:
            close = difflib.get_close_matches(str(value), list(options), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown {kind} '{value}'{hint}; choose from: {', '.join(options)}")

    choose("architecture", cfg.arch, models.MODELS)
    choose("dataset", cfg.dataset, datasets.DATASETS)
    if not cfg.techniques:
        raise ConfigError(f"{source}: 'techniques' is empty; list at least one of: {', '.join(techniques.TECHNIQUES)}")
    for t in cfg.techniques:
        choose("technique", t, techniques.TECHNIQUES)
    for r in cfg.reinit:
        choose("reinit mode", r, reinit.REINIT_MODES)
    for r, only in cfg.reinit_techniques.items():
        choose("reinit mode in 'reinit_techniques'", r, cfg.reinit)
        if not isinstance(only, list) or not only:
            raise ConfigError(f"{source}: 'reinit_techniques.{r}' must be a non-empty list of techniques")
        for t in only:
            choose(f"technique in 'reinit_techniques.{r}'", t, cfg.techniques)
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError(f"{source}: 'workers' must be >= 1, got {cfg.workers}")
    choose("output_layer policy", cfg.output_layer, ("prune", "exempt"))
    choose("device", cfg.device, ("auto", "cpu", "cuda"))
    choose("trainer", cfg.trainer, ("auto", "single", "population"))
    for s in cfg.seeds:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ConfigError(f"{source}: seeds must be non-negative integers, got {s!r}")
    if len(set(cfg.seeds)) != len(cfg.seeds) or len(set(cfg.techniques)) != len(cfg.techniques):
        raise ConfigError(f"{source}: 'seeds' and 'techniques' must not repeat an entry")
    if not 0.0 < cfg.prune_fraction < 1.0:
        raise ConfigError(f"{source}: 'prune_fraction' must lie in (0, 1), got {cfg.prune_fraction}")
    if cfg.iterations < 0:
        raise ConfigError(f"{source}: 'iterations' must be >= 0, got {cfg.iterations}")
    if cfg.training.epochs < 1 or cfg.training.batch_size < 1:
        raise ConfigError(f"{source}: 'training.epochs' and 'training.batch_size' must be >= 1")
    if "late_rewind" in cfg.reinit and not 0 < cfg.rewind_epoch <= cfg.training.epochs:
        raise ConfigError(f"{source}: late_rewind needs 0 < rewind_epoch <= training.epochs, got {cfg.rewind_epoch}")
    native_channels, native_side = datasets.NATIVE_SHAPE[cfg.dataset]
    channels, side = cfg.data.channels or native_channels, cfg.data.input_size or native_side
    if channels != native_channels and native_channels != 1:
        raise ConfigError(f"{source}: {cfg.dataset} images have {native_channels} channels and cannot be turned "
                          f"into {channels}; remove 'data.channels' or set it to {native_channels}")
    problem = models.input_error(cfg.arch, channels, side)
    if problem:
        fix = (f"set data.input_size to {models.MIN_INPUT_SIZE[cfg.arch]} or more" if side < models.MIN_INPUT_SIZE[cfg.arch]
               else "change data.input_size (and data.channels)")
        raise ConfigError(f"{source}: {problem}; {fix}")
    if isinstance(cfg.store.weights, str) and cfg.store.weights not in ("all", "none"):
        raise ConfigError(f"{source}: 'store.weights' must be 'all', 'none' or a list of layer names")
    if isinstance(cfg.store.masks, str) and cfg.store.masks != "all":
        raise ConfigError(f"{source}: 'store.masks' must be 'all' or a list of layer names")
    layers = [n for n, _ in models.prunable_layers(models.build_meta(cfg.arch, channels))]
    for what in ("weights", "masks"):
        keep = getattr(cfg.store, what)
        unknown = [k for k in keep if k not in layers] if isinstance(keep, list) else []
        if unknown:
            raise ConfigError(f"{source}: 'store.{what}' names unknown layer(s) {unknown}; {cfg.arch}'s prunable "
                              f"layers are {layers}")
