"""Where things live: the one definition of the repository's folders (instead of one REPO_ROOT per module)."""
from __future__ import annotations

import re
from pathlib import Path

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "pruning"
CONFIGS = REPO_ROOT / "configs"
PROTOCOL_CONFIG = CONFIGS / "paper_lenet_mnist.yaml"  # the protocol of PROTOCOL.md, exactly
DATA = REPO_ROOT / "data"
REFERENCE = DATA / "reference"        # the poster's published numbers
RESULTS = REPO_ROOT / "results"
BUILD = REPO_ROOT / "build"
DOCS = REPO_ROOT / "docs"            # published results sets (GitHub Pages)
NOTEBOOKS = REPO_ROOT / "notebooks"
REPORT = REPO_ROOT / "report"         # the Quarto project (paper.qmd, poster.qmd)


PUBLISHED_BUILD_PREFIX = "published_"


def build_folder(results) -> Path:
    """``build/<results folder name>``: executed notebooks (``notebooks/``) and the report (``report/``).

    A published set (a folder with ``data/``, e.g. ``docs/smoke``) builds in ``build/published_<name>``,
    apart from the run store of the same name (``results/smoke``)."""
    folder = Path(results).resolve()
    prefix = PUBLISHED_BUILD_PREFIX if (folder / "data").is_dir() else ""
    return BUILD / f"{prefix}{folder.name}"


# A folder name that comes from data (a config's ``name``, ``experiment.json``'s ``name``, ``--replicate NAME``):
# ASCII letters, digits and '_', '.', '+', '-', starting with a letter, digit or '_', at most 100 characters.
NAME_RULE = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}"
NAME_MEANING = ("a plain folder name (ASCII letters, digits, '_', '.', '+', '-', starting with a letter, digit or "
                "'_', at most 100 characters)")


def named_folder(parent: Path, name, what: str) -> Path:
    """``parent/name`` for a ``name`` read from data or typed by a user: the one place that turns such a name
    into a path. Anything but a plain folder name (absolute, '..', a separator, a leading dash or dot, non-ASCII,
    over 100 characters) is a one-line error, so nothing is ever written outside ``parent``."""
    if not isinstance(name, str) or not re.fullmatch(NAME_RULE, name, flags=re.ASCII):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise UserError(f"{what} {shown} is not {NAME_MEANING}; rename it")
    folder = Path(parent) / name
    if folder.resolve().parent != Path(parent).resolve():  # e.g. a symbolic link named like a plain folder
        raise UserError(f"{what} {name!r} does not name a folder inside {parent}; rename it")
    return folder
