"""What the results are not: the run's config against the protocol's (``configs/paper_lenet_mnist.yaml``)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import store
from ..core import paths
from ..nets.config import flat, resolved

# Fields that change how a run is computed or stored, not what it computes.
IGNORED = {"name", "description", "device", "trainer", "workers", "share_dense", "store.logits", "store.weights",
           "store.masks"}
# The protocol's figures also show AlexNet and VGG11 conv2 kernels (unstructured pruning + rewinding).
PROTOCOL_ARCHS = ["lenet", "alexnet", "vgg11"]


def protocol_config() -> dict:
    """The protocol's resolved config (every field, defaults filled in) as a dict."""
    from ..nets.config import load_experiment

    return load_experiment(paths.PROTOCOL_CONFIG).to_dict()


def _show(value) -> str:
    if value is None:
        return "not set (all)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    return json.dumps(value) if isinstance(value, str) else str(value)


def deviations(run_config: dict, protocol: dict | None = None, runs_done: int | None = None,
               runs: int | None = None, companions=()) -> pd.DataFrame:
    """One row per field where ``run_config`` differs from the protocol: field, protocol, this run.

    Both configs are the resolved ones (``experiment.json``'s ``config``); fields that only choose how
    to compute or store (:data:`IGNORED`) are left out. Rows are added for the architectures the
    protocol's figures cover and the run does not, and for unfinished runs. ``companions``: the architectures
    whose conv2 figures come from companion results sets (``pruning.reporting.companions``), named in that row.
    """
    protocol = protocol_config() if protocol is None else protocol
    a, b = flat(protocol), flat(resolved(run_config))
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        if key in IGNORED:
            continue
        pa, pb = a.get(key), b.get(key)
        if pa != pb:
            rows.append({"field": key, "protocol": _show(pa), "this run": _show(pb)})
    archs = [run_config.get("arch")]
    missing = [x for x in PROTOCOL_ARCHS if x not in archs]
    if missing:
        extra = [x for x in missing if x in companions]
        rows.append({"field": "architectures", "protocol": ", ".join(PROTOCOL_ARCHS),
                     "this run": ", ".join(str(x) for x in archs)
                     + (f" (+ {', '.join(extra)} conv2 kernels only, from their own reduced results sets)" if extra else "")})
    if runs is not None and runs_done is not None and runs_done < runs:
        rows.append({"field": "runs finished", "protocol": str(runs), "this run": str(runs_done)})
    return pd.DataFrame(rows, columns=["field", "protocol", "this run"])


def read_deviations(results) -> pd.DataFrame:
    """:func:`deviations` of a results folder (its ``experiment.json``)."""
    folder = Path(results)
    exp = store.read_experiment(folder)
    done, planned = store.runs_finished(folder)
    from . import companions

    return deviations(exp.get("config", {}), runs_done=done, runs=planned, companions=companions.find(folder))
