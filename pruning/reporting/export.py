"""From a run store to a published set's data (``store.published``): each finished seed once, never rewritten.

:func:`add_seeds` writes every seed of ``results`` whose runs are all finished and that ``target`` does not
hold yet; the seeds already published are left as they are. :func:`write_derived` then rewrites what is
derived from all seeds: the whole-set ``results.csv``, ``experiment.json`` (the config, every planned run,
``published_seeds``) and the data card ``data/README.md``. What a seed keeps:

- every layer's mask, bit-packed (numpy.packbits order), and the test predictions (uint8);
- the trained weights of the layers the figures show (:func:`kept_weights`: LeNet's conv layers in
  float32, the companions' conv2 in float16);
- per layer, the sums weight stability needs, from the full float32 weights;
- the softmax-mean ensembles' predictions of every ensemble the report and the ensembles notebook show
  (``analysis.ensemble_groups``) at every iteration, computed from the float32 logits, which are not kept;
  for a single technique its softmax-mean prediction where it differs from its stored prediction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis, store
from ..core.errors import ReportError
from ..store import layout, published
from . import companions

def kept_weights(arch: str, layers: list[str]) -> tuple[list[str], type]:
    """The layers whose trained weights a published set keeps (those its figures read), and their dtype:
    LeNet's conv layers in float32 (about 1 KB a training compressed, so its figures are exact), a
    companion's conv2 in float16 (AlexNet's is 307k weights: 0.6 MB a training even so)."""
    if arch in companions.COMPANIONS:
        return [companions.COMPANIONS[arch][1]], np.float16
    return [n for n in layers if n.startswith("conv")], np.float32


def finished_seeds(results: Path, exp: dict) -> list[int]:
    """The seeds of ``results`` all of whose runs are finished (``done.json``)."""
    by_seed: dict[int, list[bool]] = {}
    for r in exp.get("runs", []):
        by_seed.setdefault(int(r["seed"]), []).append(store.run_done(results, r["hash"]))
    return sorted(s for s, flags in by_seed.items() if all(flags))


def _ensembles(table: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    out = {}
    sel = table[table["seed"] == seed]
    for reinit in sorted(set(sel["reinit"])):
        part = sel[sel["reinit"] == reinit]
        for it in sorted(set(part["iteration"])):
            at = part[part["iteration"] == it]
            files = dict(zip(at["technique"], at["file"]))
            groups = analysis.ensemble_groups(files)
            wanted = {tuple(sorted(m)): tuple(m) for m in [*groups.values(), *([t] for t in files)]}
            for members in wanted.values():  # each computed in the order its group names them
                if not all(m in files for m in members):
                    continue
                recs = [analysis.record(files[m]) for m in members]
                pred = analysis.ensemble_predictions(logits=[r["logits"] for r in recs], method="mean_prob").numpy()
                if len(members) == 1 and np.array_equal(pred, recs[0]["predictions"].numpy()):
                    continue  # a single technique's softmax-mean prediction is its stored prediction
                out[published.ensemble_key(reinit, it, members)] = pred.astype(np.uint8)
    return out


def add_seeds(results, target) -> list[int]:
    """Publish every finished seed of ``results`` not yet in ``target``; returns the seeds added."""
    results, target = Path(results), Path(target)
    exp = store.read_experiment(results)
    old = store.peek(target)
    if old is not None and published.seeds(target) and old.get("config_hash") != exp.get("config_hash"):
        raise ReportError(f"{results} was trained with another config (hash {exp.get('config_hash')}) than the one "
                          f"{target} publishes ({old.get('config_hash')}); a published set only grows with seeds of its "
                          f"own config: publish under another name (set `name:` in the config)")
    if not exp["config"].get("store", {}).get("logits", True):
        raise ReportError(f"{results} stores no logits (store.logits: false); the published ensembles need them: "
                          f"train with store.logits: true")
    table = store.load_results(results)
    have = set(published.seeds(target))
    added = []
    for seed in finished_seeds(results, exp):
        if seed in have:
            continue
        sel = table[table["seed"] == seed]
        runs = {}
        for (tech, reinit), rows in sel.groupby(["technique", "reinit"], sort=False):
            rows = rows.sort_values("iteration")
            recs = [analysis.record(f) for f in rows["file"]]
            layers, dtype = kept_weights(exp["config"]["arch"], list(recs[0]["masks"]))
            runs[tech, reinit] = published.run_arrays(recs, [int(i) for i in rows["iteration"]], layers, dtype)
        first = analysis.record(sel["file"].iloc[0])
        test = {"targets": first["targets"].numpy().astype(np.uint8), **_ensembles(table, seed)}
        provenance = {k: exp[k] for k in ("code_version", "hardware", "numerics", "trainer", "population_convs",
                                          "config_hash", "started", "updated", "last_run_seconds") if k in exp}
        provenance["runs"] = [r for r in exp["runs"] if int(r["seed"]) == seed]
        provenance["seed_runs"] = exp.get("seed_runs", {}).get(str(seed), [])  # each command that trained it
        provenance["source"] = results.name
        if published.write_seed(target, seed, sel, runs, test, provenance) is not None:
            added.append(seed)
        analysis.clear_cache()
    return added


def write_derived(results, target) -> None:
    """The whole-set files of ``target``: ``results.csv``, ``experiment.json`` and the data card."""
    target = Path(target)
    exp = store.read_experiment(results) if results is not None else store.read_experiment(target)
    seeds = published.seeds(target)
    kept = (store.peek(target) or {}).get("seed_runs", {})  # seeds published from earlier run stores keep theirs
    by_seed = {str(s): exp.get("seed_runs", {}).get(str(s)) or kept.get(str(s)) for s in seeds}
    merged = {**exp, "published_seeds": seeds}
    if any(by_seed.values()):
        merged["seed_runs"] = {s: v for s, v in by_seed.items() if v}
    store.save_json(merged, target / layout.EXPERIMENT)
    table = store.load_results(target)
    table.drop(columns=[c for c in published.UNWRITTEN if c in table.columns]).to_csv(target / "results.csv",
                                                                                 index=False)
    (target / published.DATA / published.CARD).write_text(card(target, merged))


def _describe(path: Path) -> list[str]:
    lines = []
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            a = z[k]
            lines.append(f"  - `{k}`: {a.dtype} {tuple(a.shape)}")
    return lines


def card(target: Path, exp: dict) -> str:
    """The data card: what each file holds, its arrays with dtype and shape, and the size of each part."""
    seeds = published.seeds(target)
    sizes = published.sizes(target)
    cfg = exp.get("config", {})
    first = published.seed_folder(target, seeds[0]) if seeds else None
    example_run = sorted(first.glob("*.npz"))[0] if first else None
    lines = [f"# Data card: {exp.get('name')}", "",
             f"{cfg.get('arch')} on {cfg.get('dataset')}; seeds published: {', '.join(map(str, seeds)) or 'none'} "
             f"(the config plans {', '.join(map(str, cfg.get('seeds', [])))}). Written by `python -m pruning publish`; "
             "every file opens with numpy or pandas alone (`np.load(path)`, `pd.read_csv(path)`), and "
             "`pruning.store.load_results` reads the folder as it reads a run store.", "",
             "## Files", "",
             "- `../results.csv`: the tidy table of every published seed, one row per training (derived; rewritten "
             "when a seed is added). Columns as `store.load_results` documents them.",
             "- `../experiment.json`: the resolved config, every planned run (`runs`), `published_seeds`.",
             "- `seed_<s>/`: written once when seed s was published, never rewritten.",
             "  - `results.csv`: seed s's rows of the table, floats at full precision.",
             "  - `experiment.json`: its provenance: code version, hardware, numerics, trainer, run hashes, wall time.",
             "  - `<technique>.<reinit>.npz`: one run, its trainings in iteration order (row r = `iteration[r]`):"]
    if example_run is not None:
        lines += ["    " + line for line in _describe(example_run)]
    lines += ["    - `mask.<layer>`: uint8 (trainings, ceil(n/8)), the layer's bool mask (True = kept) flattened and "
              "bit-packed: `np.unpackbits(a[r])[:n].reshape(shape.<layer>)`.",
              "    - `weight.<layer>`: the trained weights times the mask, only of the layers the figures show (LeNet: "
              "its conv layers in float32; AlexNet and VGG11: conv2 in float16).",
              "    - `stability.sum_abs_delta`, `stability.count`: float64 and int64 (trainings, layers): the sum of "
              "|w_k - w_(k-1)| over the weights kept at both k-1 and k, and their number, from the float32 weights "
              "(row 0: NaN and 0). Their ratio is `analysis.weight_stability`'s mean.",
              "    - `predictions`: uint8 (trainings, test images), the predicted class of each test image.",
              "  - `test.npz`: `targets` uint8 (test images), the labels; `ensemble.<reinit>.<iteration>.<a+b+...>` uint8, "
              "the softmax-mean ensemble's predicted classes (ties: lowest class), from the float32 logits, which "
              "are not published. A single technique's entry is there only where it differs from its `predictions`.",
              "", "## Size", "", "| part | bytes |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in sizes.items()]
    return "\n".join(lines) + "\n"
