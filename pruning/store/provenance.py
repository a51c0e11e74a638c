"""Provenance: the code version and the hardware a results set records."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import subprocess

import torch

from ..core import numerics
from ..core.paths import REPO_ROOT


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
    cpu = ", ".join(x for x in (numerics.cpu_model(), platform.machine()) if x)
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}"
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name()} + " + text
    return text


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def cpu_seconds() -> float:
    """CPU seconds (user + system) used by this process and its children that have ended. Over a command, their
    difference divided by wall time and cores is the share of the machine the command had: near 1 on a quiet
    machine with every core busy, lower when other work shared the cores."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime
