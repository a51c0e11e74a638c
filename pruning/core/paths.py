"""Where things live: the one definition of the repository's folders (instead of one REPO_ROOT per module)."""
from __future__ import annotations

from pathlib import Path

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
