"""Companion results sets: the AlexNet and VGG11 conv2 kernels that a LeNet report shows beside LeNet's conv1.

The poster shows its structure finding (rewinding empties whole kernels, fine-tuning does not) on LeNet
conv1, AlexNet conv2 and VGG11 conv2. A LeNet results set is the report's subject; AlexNet and VGG11 are
results sets of their own (``configs/alexnet_mnist_cpu.yaml``, ``configs/vgg11_mnist_cpu.yaml``),
looked up beside it (``results/alexnet_mnist_cpu`` next to ``results/paper_lenet_mnist_cpu``):

- :func:`find` names the companions present (a folder with ``experiment.json`` and a finished training);
- ``notebooks.execute_all`` runs the filters notebook on each (``layer="features.3"``) into
  ``filters_<network>.ipynb`` and :func:`relabel`s its figures (``fig-filters-alexnet``), so that
  labels stay unique in the report;
- ``report.stage`` replaces :data:`MARKER` in the report's sources by :func:`section`: their figures
  and their numbers (emptied kernels against a random mask's, accuracy), or, where none was found,
  what to run to get them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from .. import store
from ..core.names import ARCH_NAMES, NOTEBOOK_LABELS

COMPANIONS = {"alexnet": ("alexnet_mnist_cpu", "features.3"), "vgg11": ("vgg11_mnist_cpu", "features.3")}
MARKER = "<!-- companions -->"
SOURCE_NOTEBOOK = "filters"
LABELS = NOTEBOOK_LABELS[SOURCE_NOTEBOOK]  # the labels relabel() suffixes
PANELS = (("l1_us", "rewind"), ("l1_us", "finetune"), ("l1_s", "rewind"))


def _arch(folder: Path) -> str | None:
    try:
        return store.peek(folder)["config"]["arch"]
    except (KeyError, TypeError):
        return None


def find(results) -> dict[str, Path]:
    """{network: results folder} of the companions beside ``results`` that hold at least one training.

    Only a LeNet results set has companions (an AlexNet set's own report is its figures page).
    """
    results = Path(results).resolve()
    if _arch(results) != "lenet":
        return {}
    found = {}
    for network, (name, _) in COMPANIONS.items():
        folder = results.parent / name
        if _arch(folder) == network and (any(folder.glob("run_*/trainings/[0-9][0-9][0-9].json"))
                                         or store.published.seeds(folder)):
            found[network] = folder
    return found


def notebook_name(network: str) -> str:
    return f"{SOURCE_NOTEBOOK}_{network}.ipynb"


def parameters(network: str, folder: Path) -> dict:
    return {"results": str(folder), "layer": COMPANIONS[network][1]}


def relabel(nb: dict, network: str) -> dict:
    """``nb`` with its figure labels suffixed by the network (``fig-filters`` -> ``fig-filters-alexnet``)."""
    pattern = re.compile(r"^(#\|\s*label:\s*)(" + "|".join(LABELS) + r")\s*$")
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        lines = (src if isinstance(src, list) else src.splitlines(True))
        cell["source"] = [pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}-{network}", line.rstrip("\n"))
                          + ("\n" if line.endswith("\n") else "") for line in lines]
    return nb


# ----------------------------------------------------------------------------- the report's section

def _last(folder: Path, network: str):
    """(table, the last iteration every run reached, the emptied-kernel curve's rows at it) of a companion."""
    from .. import analysis

    table = analysis.load(folder)
    it = analysis.last_iteration(table)
    curve = analysis.empty_kernel_curve(table, COMPANIONS[network][1])
    return table, it, curve[curve["iteration"] == it]


def numbers(folder: Path, network: str) -> str:
    """One sentence of numbers from a companion's results: emptied conv2 kernels per technique and reinit at the
    last iteration every run reached, a random mask's, and test accuracy (dense and pruned)."""
    table, it, at = _last(folder, network)
    layer = COMPANIONS[network][1]
    parts = []
    for t, mode in PANELS:
        sel = at[(at["technique"] == t) & (at["reinit"] == mode)]
        acc = table[(table["technique"] == t) & (table["reinit"] == mode) & (table["iteration"] == it)]["test_acc"]
        if sel.empty:
            continue
        name = f"{_technique_label(t)} + {'fine-tuning' if mode == 'finetune' else 'rewinding'}"
        parts.append(f"{name} {100 * float(sel['empty'].mean()):.1f}% (a random mask of its sparsity: "
                     f"{100 * float(sel['chance'].mean()):.1f}%; test accuracy {float(acc.mean()):.1f}%)")
    dense = table[table["iteration"] == 0]["test_acc"]
    seeds = int(table["seed"].nunique())
    rule = _rule(at)
    n = int(at["kernels"].iloc[0]) if len(at) else 0
    left = 100 * (1 - float(at["sparsity"].mean())) if len(at) else math.nan
    pruned = table[table["iteration"] > 0]["test_acc"]
    epochs = (store.peek(folder) or {}).get("config", {}).get("training", {}).get("epochs")
    below = ""
    if len(pruned) and len(dense) and float(pruned.max()) > float(dense.mean()):
        span = f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs else "its training"
        below = (f" The dense net is below its pruned descendants (best {float(pruned.max()):.1f}%): every training "
                 f"here lasts {span}, so these accuracies say how far a net gets in that time, not what it can "
                 f"reach; pruned, rewound nets learning faster is what Frankle & Carbin (2019) report, which this "
                 f"agrees with but does not test.")
    return (f"{ARCH_NAMES[network]} {layer} ({n:,} kernels) after {it} pruning steps "
            f"({left:.1f}% of its weights left on average): kernels emptied by " + "; ".join(parts)
            + f".{rule} Dense test accuracy "
            f"{float(dense.mean()):.1f}%.{below} {seeds} seed{'s' if seeds != 1 else ''}: "
            + ("no spread can be given, so these are an illustration, not a verdict." if seeds < 2 else
               "means over seeds."))


def _rule(at) -> str:
    """Q5's rule (``analysis.findings``: per seed, L1 US with rewinding must empty more kernels than with fine-tuning,
    and more than a random mask of its sparsity) read on a companion's rows ``at``, as a sentence; '' if a run is
    missing. No verdict: a companion has too few seeds for an interval."""
    rew = at[(at["technique"] == "l1_us") & (at["reinit"] == "rewind")]
    ft = at[(at["technique"] == "l1_us") & (at["reinit"] == "finetune")]
    if rew.empty or ft.empty:
        return ""
    vs_ft = 100 * (float(rew["empty"].mean()) - float(ft["empty"].mean()))
    vs_chance = 100 * (float(rew["empty"].mean()) - float(rew["chance"].mean()))
    reasons = ([] if vs_ft > 0 else ["fine-tuning empties more kernels than rewinding"]) + \
              ([] if vs_chance > 0 else ["rewinding empties no more than a random mask"])
    return (f" Q5's rule asks that L1 US with rewinding empty more kernels than with fine-tuning and than a random "
            f"mask of its sparsity: here {vs_ft:+.1f} and {vs_chance:+.1f} points, "
            + ("both above 0, the poster's direction" if not reasons else
               "not the poster's pattern (" + "; ".join(reasons) + ")") + ".")


def _direction(folder: Path, network: str) -> str:
    """Where a companion's own numbers file it on the poster: the poster's direction under Q5's rule, or against
    it (never under the LeNet finding's verdict, which its one seed cannot share)."""
    _, _, at = _last(folder, network)
    rule = _rule(at)
    if not rule:
        return "no reading of Q5's rule"
    return ("the poster's direction" if "the poster's direction" in rule else "against the poster's direction") + \
        " (one seed, no verdict)"


def short_numbers(folder: Path, network: str) -> str:
    """The poster's line: emptied conv2 kernels per technique and reinit beside a random mask's, one seed or more."""
    table, it, at = _last(folder, network)
    parts = []
    for t, mode in PANELS:
        sel = at[(at["technique"] == t) & (at["reinit"] == mode)]
        if len(sel):
            parts.append(f"{_technique_label(t)} {'fine-tune' if mode == 'finetune' else 'rewind'} "
                         f"{100 * float(sel['empty'].mean()):.1f}%")
    lus = at[at["technique"] == "l1_us"]
    seeds = int(table["seed"].nunique())
    return (f"kernels emptied after {it} steps: " + ", ".join(parts)
            + (f"; random mask {100 * float(lus['chance'].mean()):.1f}%" if len(lus) else "")
            + f" ({seeds} seed{'s' if seeds != 1 else ''}: "
            + ("an illustration, no verdict)." if seeds < 2 else "means)."))


def _technique_label(t: str) -> str:
    from ..nets import techniques

    return techniques.label(t)


def section(found: dict[str, Path], poster: bool = False) -> str:
    """The markdown that replaces :data:`MARKER`: embeds and numbers of each companion found, or how to get them."""
    missing = [n for n in COMPANIONS if n not in found]
    out = []
    for network, folder in found.items():
        nb = f"notebooks/{notebook_name(network)}"
        out.append(f"**{ARCH_NAMES[network]}** conv2, {_direction(folder, network)}: {short_numbers(folder, network)}"
                   if poster else
                   f"**{ARCH_NAMES[network]}** (results `{folder.name}`, config `configs/{folder.name}.yaml`): "
                   f"{numbers(folder, network)}")
        out.append(f"{{{{< embed {nb}#fig-filters-{network} >}}}}")
        if not poster:
            out.append(f"{{{{< embed {nb}#fig-empty-kernels-{network} >}}}}")
    if missing:
        names = " and ".join(ARCH_NAMES[n] for n in missing)
        configs = " ".join(f"configs/{COMPANIONS[n][0]}.yaml" for n in missing)
        out.append(f"*{names} conv2: not in this build.* Neither a run store nor a published set with data was found "
                   f"beside these results. Run `make conv2` (or `python -m pruning run` on {configs}; about half an "
                   f"hour each on 2 CPU cores), publish each (`python -m pruning publish results/<name>`) and render "
                   f"again.")
    return "\n\n".join(out)
