"""The notebooks' executor: papermill runs of ``notebooks/*.ipynb`` for a results folder, unchanged ones skipped.

:func:`execute_all` runs every source notebook with papermill into
``build/<results folder name>/notebooks/<name>.ipynb``; the sources stay untouched. A notebook is
re-executed only when its inputs changed: the cell sources of the source notebook, the parameters it
receives, the results (``experiment.json`` and every ``trainings/*.json``, which carry the checksum of
their tensors) or the code of the ``pruning`` package. The hash of these inputs is stored beside the
output as ``<name>.inputs.json``. Outputs are written to a temporary file and renamed, so an
interrupted run never leaves half a notebook.

The source notebooks are committed with their outputs on ``results/smoke`` (``pytest --nbval-lax
notebooks/`` compares their ``# NBVAL_CHECK_OUTPUT`` cells); :func:`refresh_sources` re-executes
them in place after a change. What the notebooks themselves call (``setup``) is
:mod:`pruning.reporting.notebook_setup`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import time
from pathlib import Path

from ..core import paths
from ..core.atomic import replacing
from ..core.errors import NotebookError
from ..store import layout, published, save_json

NOTEBOOKS_DIR = paths.NOTEBOOKS
BUILD_DIR = paths.BUILD
PACKAGE_DIR = paths.PACKAGE
KERNEL = "python3"
SENSITIVITY_DIR = paths.DOCS / "sensitivity"  # the published variants the sensitivity notebook reads


# ----------------------------------------------------------------------------- inputs and their hash

def sources() -> list[Path]:
    """The source notebooks, sorted by name."""
    return sorted(p for p in NOTEBOOKS_DIR.glob("*.ipynb") if not p.name.startswith("."))


def _read_notebook(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotebookError(f"{path} cannot be read as a notebook ({exc.__class__.__name__}); restore it from git") from None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def declared_parameters(nb: dict) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (papermill's convention)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                tree = ast.parse(_source(cell))
            except SyntaxError:
                return []
            names = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                    if isinstance(node, ast.AnnAssign) else []
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    return []


def results_fingerprint(results: Path, memo: dict[Path, str] | None = None) -> str:
    """sha256 over experiment.json and every run's trainings/*.json (path relative to the folder + content);
    for a published set, over every file of its ``data/`` (``store.published.fingerprint_files``); over the
    published sensitivity variants (``docs/sensitivity/``), which the sensitivity notebook reads beside them;
    and over the companion sets found beside it (``companions.find``), which the findings notebook's deviation
    table names: a companion published or trained later re-runs the notebooks that would otherwise be skipped.
    ``memo`` (folder -> fingerprint) is filled and read, so a caller fingerprinting a set and its companions reads
    each folder once (a companion has no companions of its own: ``companions.find`` gives them to LeNet sets only)."""
    from . import companions

    results = Path(results)
    memo = {} if memo is None else memo
    if results in memo:
        return memo[results]
    h = hashlib.sha256()
    for network, folder in sorted(companions.find(results).items()):
        h.update(f"companion {network}\0{results_fingerprint(folder, memo)}\0".encode())
    files = [results / layout.EXPERIMENT] \
        + sorted(results.glob(f"{layout.RUN_PREFIX}*/{layout.TRAININGS}/*.json")) \
        + published.fingerprint_files(results) + sorted(SENSITIVITY_DIR.glob("*/*.*"))  # the variants it compares
    for path in files:
        name = path.relative_to(results) if path.is_relative_to(results) else path.relative_to(paths.DOCS)
        h.update(str(name).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except FileNotFoundError:
            h.update(b"<missing>")
        h.update(b"\0")
    memo[results] = h.hexdigest()
    return memo[results]


def code_fingerprint() -> str:
    """sha256 of the ``pruning`` package's sources: the notebooks' figures depend on them."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def published_fingerprint(docs: Path | None = None) -> str:
    """sha256 of every published table under ``docs/`` (sets, variants, replicates): notebooks read other sets than
    their own (the sensitivity study, the reruns of the noise floor, the output-exempt variant), so a notebook runs
    again when any of them changes."""
    root = Path(docs if docs is not None else paths.DOCS)
    h = hashlib.sha256()
    for path in sorted(root.rglob("results.csv")) if root.is_dir() else []:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def inputs_hash(nb: dict, parameters: dict, results_fp: str, code_fp: str) -> str:
    cells = [[c.get("cell_type"), _source(c)] for c in nb.get("cells", [])]
    text = json.dumps({"cells": cells, "parameters": parameters, "results": results_fp, "code": code_fp},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- executing

def output_folder(results) -> Path:
    """``build/<results folder name>/notebooks`` (``paths.build_folder``)."""
    return BUILD_DIR / paths.build_folder(results).name / "notebooks"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _execute(source: Path, target: Path, parameters: dict) -> None:
    """papermill ``source`` -> ``target`` atomically; NotebookError (one line) on failure."""
    import papermill as pm  # imported here: only executing needs it (slow to import)

    failed = target.with_name(f"{target.stem}.failed.ipynb")
    with replacing(target, ".tmp.ipynb") as tmp:
        try:
            pm.execute_notebook(str(source), str(tmp), parameters=parameters, kernel_name=KERNEL,
                                cwd=str(source.parent), progress_bar=False, log_output=False, report_mode=False,
                                extra_arguments=["--IPKernelApp.log_level=CRITICAL"])  # no kernel log noise
        except pm.PapermillExecutionError as exc:
            os.replace(tmp, failed)
            raise NotebookError(f"notebook {source.name} failed in cell {exc.exec_count}: {exc.ename}: "
                                f"{_one_line(exc.evalue)}; open {failed} to see the failing cell") from None
    failed.unlink(missing_ok=True)


def execute_all(results, force: bool = False, quiet: bool = False, notebooks=None, parameters=None) -> list[Path]:
    """Execute the figure notebooks for ``results`` into ``build/<results name>/notebooks/``.

    ``notebooks``: names (``"accuracy"`` or ``"accuracy.ipynb"``) to run, default all; ``parameters``:
    extra papermill parameters, each passed only to the notebooks that declare it. A notebook whose
    inputs are unchanged since its last execution is skipped unless ``force``. For a LeNet results set,
    the filters notebook also runs on every companion set found beside it (:mod:`pruning.reporting.companions`:
    AlexNet/VGG11 conv2) into ``filters_<network>.ipynb``. Every notebook is attempted; the first failure
    is then raised as a one-line :class:`NotebookError`. Returns the paths of the executed (or
    unchanged) notebooks.
    """
    from ..store import read_experiment

    results = Path(results).expanduser().resolve()
    read_experiment(results)  # StoreError (one line) for a missing or damaged folder
    parameters = dict(parameters or {})
    available = sources()
    if not available:
        raise NotebookError(f"no notebooks in {NOTEBOOKS_DIR}; restore notebooks/*.ipynb from git")
    loaded = {p: _read_notebook(p) for p in available}
    declared = {p: declared_parameters(nb) for p, nb in loaded.items()}
    unused = [k for k in parameters if not any(k in names for names in declared.values())]
    if unused:
        known = sorted({n for names in declared.values() for n in names} - {"results"})
        raise NotebookError(f"no notebook takes parameter {', '.join(unused)} (parameters: {', '.join(known)})")
    if notebooks is not None:
        wanted = [Path(n).stem for n in ([notebooks] if isinstance(notebooks, str) else notebooks)]
        names = {p.stem for p in available}
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise NotebookError(f"unknown notebook {', '.join(unknown)} (available: {', '.join(sorted(names))})")
        loaded = {p: nb for p, nb in loaded.items() if p.stem in wanted}

    out_dir = output_folder(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    code_fp = code_fingerprint() + published_fingerprint()
    jobs = [(source, nb, out_dir / source.name, {"results": str(results), **{
        k: v for k, v in parameters.items() if k in declared[source]}}, results, None) for source, nb in loaded.items()]
    jobs += _companion_jobs(results, loaded, out_dir)
    fingerprints: dict[Path, str] = {}
    done, errors = [], []
    for source, nb, target, params, folder, network in jobs:
        results_fingerprint(folder, fingerprints)  # each folder read once, companions included
        try:
            ran = _run_one(source, nb, target, params, fingerprints[folder], code_fp, force, network)
        except NotebookError as exc:
            errors.append(str(exc))
            if not quiet:
                print(f"{target.name}: FAILED")
            continue
        done.append(target)
        if not quiet:
            print(f"{target.name}: " + ("unchanged, skipped" if ran is None else f"executed in {ran:.1f}s"))
    if errors:
        more = f" ({len(errors) - 1} more notebook(s) failed too)" if len(errors) > 1 else ""
        raise NotebookError(errors[0] + more)
    return done


def _companion_jobs(results: Path, loaded: dict, out_dir: Path) -> list[tuple]:
    """The filters notebook on every companion results set found beside ``results`` (``companions``); the
    outputs of companions no longer there are removed, so the report never shows a stale figure."""
    from . import companions

    source = next((p for p in loaded if p.stem == companions.SOURCE_NOTEBOOK), None)
    found = companions.find(results) if source is not None else {}
    for network in companions.COMPANIONS:
        if network not in found:
            target = out_dir / companions.notebook_name(network)
            for path in (target, _stamp(target)):
                path.unlink(missing_ok=True)
    return [(source, loaded[source], out_dir / companions.notebook_name(network),
             companions.parameters(network, folder), folder, network) for network, folder in found.items()]


def _stamp(target: Path) -> Path:
    """``<name>.inputs.json`` beside an executed notebook: the hash of the inputs it was executed with."""
    return target.with_name(f"{target.stem}.inputs.json")


def _run_one(source: Path, nb: dict, target: Path, params: dict, results_fp: str, code_fp: str, force: bool,
             network: str | None = None) -> float | None:
    """Execute one notebook unless its inputs are unchanged; seconds taken, or None when skipped.

    ``network``: a companion's notebook, whose figure labels get the network's name (``companions.relabel``).
    """
    stamp = _stamp(target)
    digest = inputs_hash(nb, params, results_fp, code_fp)
    if not force and target.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("hash") == digest:
                return None
        except (OSError, json.JSONDecodeError):
            pass
    stamp.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        _execute(source, target, params)
    except NotebookError:
        target.unlink(missing_ok=True)  # never leave a stale figure beside a failed run
        raise
    if network is not None:
        from . import companions

        executed = json.loads(target.read_text(encoding="utf-8"))
        save_json(companions.relabel(executed, network), target)
    seconds = time.perf_counter() - start
    save_json({"hash": digest, "parameters": params, "seconds": round(seconds, 1)}, stamp)
    return seconds


def refresh_sources(notebooks=None, timeout: int = 600) -> list[Path]:
    """Re-execute the source notebooks in place on their default parameters (``../results/smoke``).

    For maintainers after changing a notebook or the analysis: the committed outputs are what
    ``pytest --nbval-lax notebooks/`` compares against. Uses nbclient without timing metadata, so
    the files change only where the outputs do.
    """
    import nbformat
    from nbclient import NotebookClient

    paths = sources() if notebooks is None else [NOTEBOOKS_DIR / f"{Path(n).stem}.ipynb" for n in notebooks]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        with replacing(path, ".tmp.ipynb") as tmp:
            nbformat.write(nb, tmp)
    return paths
