"""Config checks: every field against the checks ``config._field`` declared beside it, then names against the
registries and the rules that join several fields. Each failure is one line that says what to fix."""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import operator
import re

from ..core.errors import ConfigError


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


_BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt), "lt": ("<", operator.lt)}


def shown(value, limit: int = 60) -> str:
    """``value`` as an error line shows it: its repr, cut to ``limit`` characters (a YAML file of nested aliases
    expands to megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check(f: dataclasses.Field, value, path: str, source: str) -> None:
    """Apply the checks ``_field`` declared for ``f`` (and finiteness, for any float) to its ``value``."""
    m = f.metadata
    if m.get("nonempty") and not value:
        raise ConfigError(f"{source}: '{path}' is empty, so nothing would run; list at least one entry, e.g. "
                          f"{path}: {json.dumps(_default(f))}")
    if m.get("choices") and not any(value == c and type(value) is type(c) for c in m["choices"]):
        names = [str(c) if c is not None else "null" for c in m["choices"]]
        close = difflib.get_close_matches(str(value), names, n=1) if isinstance(value, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{source}: unknown {path} {shown(value)}{hint}; choose from: {', '.join(names)}")
    bounds = [(sign, test, m[key]) for key, (sign, test) in _BOUNDS.items() if m.get(key) is not None]
    wanted = None
    if isinstance(value, float) and not math.isfinite(value):
        wanted = "a finite number"
    elif m.get("pattern") and not re.fullmatch(m["pattern"][0], value, flags=re.ASCII):
        wanted = m["pattern"][1]
    elif value is not None and not all(test(value, bound) for _, test, bound in bounds):
        wanted = " and ".join(f"{sign} {bound}" for sign, _, bound in bounds)
    if wanted:
        raise ConfigError(f"{source}: '{path}' must be {wanted}, got {shown(value)}; fix it in the config")


def _check_fields(obj, where: str, source: str) -> None:
    """``_check`` every field of the dataclass ``obj`` and of the dataclasses it holds."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            _check_fields(value, path, source)
        else:
            _check(f, value, path, source)


def validate(cfg, source: str = "config") -> None:
    """Check every field against its declared checks (``_field``), then names against the registries and
    the rules that join several fields."""
    from . import datasets, models, techniques, reinit

    def choose(kind, value, options):
        if not isinstance(value, str):
            raise ConfigError(f"{source}: every {kind} must be a name (a string), got {shown(value)}; choose from: "
                              f"{', '.join(options)}")
        if value not in options:
            close = difflib.get_close_matches(str(value), list(options), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown {kind} '{value}'{hint}; choose from: {', '.join(options)}")

    _check_fields(cfg, "", source)
    choose("architecture", cfg.arch, models.MODELS)
    choose("dataset", cfg.dataset, datasets.DATASETS)
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
    for s in cfg.seeds:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ConfigError(f"{source}: seeds must be non-negative integers, got {shown(s)}")
    for what in ("seeds", "techniques", "reinit"):
        entries = getattr(cfg, what)
        if len(set(entries)) != len(entries):
            twice = sorted({str(e) for e in entries if entries.count(e) > 1})
            raise ConfigError(f"{source}: '{what}' must not repeat an entry ({', '.join(twice)} twice); "
                              f"list each once")
    if "late_rewind" in cfg.reinit and not 0 < cfg.rewind_epoch <= cfg.training.epochs:
        raise ConfigError(f"{source}: late_rewind needs 0 < rewind_epoch <= training.epochs, got {cfg.rewind_epoch}")
    t = cfg.training
    if not t.augment and (t.augment_padding, t.augment_flip, t.augment_fill) != (2, True, "mean"):
        raise ConfigError(f"{source}: training.augment_padding, augment_flip and augment_fill shape the "
                          f"augmentation, which is off; set training.augment: true or remove them")
    if t.prune_from_epoch is not None:
        if not t.prune_from_epoch < t.epochs:
            raise ConfigError(f"{source}: training.prune_from_epoch must be below training.epochs ({t.epochs}), got "
                              f"{t.prune_from_epoch}")
        if set(cfg.reinit) - {"rewind", "random_reinit"}:
            raise ConfigError(f"{source}: training.prune_from_epoch works with reinit rewind or random_reinit only "
                              f"(the next training must not start from the pruned network); remove it or the others")
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
