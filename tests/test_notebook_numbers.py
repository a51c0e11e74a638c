"""The numbers the notebooks' checked cells print, recomputed from the stored trainings by this file's own code.

nbval checks those cells with their values masked (``notebooks/nbval_sanitize.cfg``): float rounding differs
between CPUs and thread counts, training amplifies it, and so the values differ from machine to machine.
Here the values are checked on whatever machine runs the tests: every number a checked cell printed in the
executed notebooks (``build/smoke/notebooks``, made by the test command from ``results/smoke``) is
recomputed from the run store's own files (``config.json``, ``trainings/NNN.json`` and ``NNN.pt``) with
numpy and torch, independently of ``pruning.analysis``, and must equal it to the digits printed.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "smoke"
pytestmark = pytest.mark.slow  # reads (or trains) the smoke results
EXECUTED = REPO / "build" / "smoke" / "notebooks"
NOTEBOOKS = ("accuracy", "agreement", "ensembles", "filters", "findings", "mask_similarity", "sensitivity",
             "weight_stability")

# The display names of the techniques, as the paper writes them (a fact, not read from the package).
LABELS = {"l1_us": "L1 US", "random_us": "random US", "l1_s": "L1 S", "l2_s": "L2 S", "linf_s": "L∞ S",
          "lneginf_s": "L-∞ S", "random_s": "random S", "hybrid": "hybrid", "fc_only_l1_us": "fc-only L1 US"}
BY_LABEL = {v: k for k, v in LABELS.items()}
# The poster's ensemble table (PROTOCOL.md): seven single techniques, "all" of them, and its best trio.
POSTER_SEVEN = ["l2_s", "l1_s", "l1_us", "hybrid", "random_s", "lneginf_s", "fc_only_l1_us"]
POSTER_TRIO = ["hybrid", "fc_only_l1_us", "l1_us"]
# The poster's accuracies (%) at iteration 18 under rewinding (PROTOCOL.md's table).
POSTER = {"l2_s": 36.7, "l1_s": 37.8, "l1_us": 32.4, "hybrid": 81.8, "random_s": 11.3, "lneginf_s": 14.5,
          "fc_only_l1_us": 87.4}
T_975 = {1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511, 5: 2.57058184, 6: 2.44691185,
         7: 2.36462425, 8: 2.30600414, 9: 2.26215716}  # t(0.975, df), from tables


# ----------------------------------------------------------------------------- the stored results, read directly


class Store:
    """A run store read from its files: runs[(technique, reinit, seed)][iteration] = (metrics, .pt path)."""

    def __init__(self, folder: Path):
        wanted = {r["hash"] for r in json.loads((folder / "experiment.json").read_text())["runs"]}
        self.runs: dict = defaultdict(dict)
        for run_dir in sorted(folder.glob("run_*")):
            if run_dir.name[len("run_"):] not in wanted or not (run_dir / "config.json").exists():
                continue
            cfg = json.loads((run_dir / "config.json").read_text())["config"]
            for meta in sorted((run_dir / "trainings").glob("[0-9][0-9][0-9].json")):
                m = json.loads(meta.read_text())
                self.runs[cfg["technique"], cfg["reinit"], cfg["seed"]][m["iteration"]] = (m, meta.with_suffix(".pt"))
        self._records: dict = {}

    def seeds(self, technique, reinit, iteration):
        return sorted(s for (t, r, s), its in self.runs.items() if t == technique and r == reinit and iteration in its)

    def metric(self, technique, reinit, seed, iteration, key="test_acc") -> float:
        return float(self.runs[technique, reinit, seed][iteration][0][key])

    def record(self, technique, reinit, seed, iteration) -> dict:
        path = self.runs[technique, reinit, seed][iteration][1]
        if path not in self._records:
            stored = torch.load(path, map_location="cpu", weights_only=False)
            masks = {name: np.unpackbits(packed.numpy())[: math.prod(stored["mask_shapes"][name])]
                     .reshape(stored["mask_shapes"][name]).astype(bool)
                     for name, packed in stored["packed_masks"].items()}
            self._records[path] = {"masks": masks, "weights": {k: v.numpy() for k, v in stored["weights"].items()},
                                   "logits": stored["logits"].numpy().astype(np.float64),
                                   "predictions": stored["predictions"].numpy(), "targets": stored["targets"].numpy()}
        return self._records[path]


def mean(values) -> float:
    return float(np.mean(np.asarray(list(values), dtype=np.float64)))


def std(values) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def near(printed: str, value: float, what) -> None:
    """``printed`` (a number with d decimals) is ``value`` rounded to d decimals.

    The report rounds to 6 decimals first (``plots.number``), so a value within 5e-7 of a rounding
    boundary (0.0285499690 -> 0.02855 -> "0.0286") may print on either side of it.
    """
    digits = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(float(printed.replace(",", "")) - value) <= 0.5 * 10 ** -digits + 5e-7 + 1e-9, (what, printed, value)


# ----------------------------------------------------------------------------- the executed notebooks


@pytest.fixture(scope="module")
def executed():
    """(store, {notebook: the text its checked cells printed}): the test command's smoke results and notebooks,
    made here by the same command when they are not there yet."""
    if not all((EXECUTED / f"{n}.ipynb").exists() for n in NOTEBOOKS) or not (RESULTS / "experiment.json").exists():
        proc = subprocess.run([sys.executable, "-m", "pruning", "all", "configs/smoke.yaml", "--quiet"], cwd=REPO,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]
    printed = {}
    for name in NOTEBOOKS:
        nb = json.loads((EXECUTED / f"{name}.ipynb").read_text())
        cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("# NBVAL_CHECK_OUTPUT")]
        assert cells, name
        printed[name] = "".join("".join(o.get("text", "")) for c in cells for o in c["outputs"] if o.get("name") == "stdout")
    return Store(RESULTS), printed


def header(text: str, pattern: str) -> re.Match:
    m = re.search(pattern, text)
    assert m, (pattern, text[:300])
    return m


def number_list(text: str) -> list[tuple[str, str]]:
    """"L1 US 92.13, random US 10.73" -> [("L1 US", "92.13"), ("random US", "10.73")]."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"\s*([^,]+?) (-?[\d.]+|n/a)(?:,|$)", text)]


def matrix(lines: list[str]) -> dict[tuple[str, str], str]:
    """A square table printed by pandas with technique labels as row and column names: {(row, column): cell}."""
    labels = sorted(LABELS.values(), key=len, reverse=True)
    out = {}
    rows = []
    for line in lines:
        label = next((lab for lab in labels if line.startswith(lab + " ")), None)
        cells = line[len(label):].split() if label else []
        if cells and all(re.fullmatch(r"-?[\d.]+|n/a", c) for c in cells):
            rows.append((label, cells))
    columns = [r[0] for r in rows]
    for label, cells in rows:
        assert len(cells) == len(columns), (label, cells)
        out.update({(label, c): v for c, v in zip(columns, cells)})
    return out


def last_common_iteration(store: Store, reinit: str) -> int:
    """The notebooks' default iteration: the poster's 18, or the last every run of ``reinit`` reached."""
    return min(18, min(max(its) for (_, r, _), its in store.runs.items() if r == reinit))


# ----------------------------------------------------------------------------- one test per notebook


def test_accuracy_means_over_seeds(executed):
    store, printed = executed
    m = header(printed["accuracy"], r"test_acc at iteration (\d+), mean over (\d+) seeds")
    it, n_seeds = int(m.group(1)), int(m.group(2))
    assert it == last_common_iteration(store, "rewind")
    checked = 0
    for line in printed["accuracy"].splitlines()[1:]:
        reinit, _, rest = line.partition(": ")
        for label, value in number_list(rest):
            t = BY_LABEL[label]
            seeds = store.seeds(t, reinit, it)
            assert len(seeds) == n_seeds
            near(value, mean(store.metric(t, reinit, s, it) for s in seeds), (reinit, t))
            checked += 1
    assert checked == 2 * 9


def test_prediction_agreement_and_its_chance_baseline(executed):
    store, printed = executed
    text = printed["agreement"]
    m = header(text, r"agreement \(% of test images\) at iteration (\d+), (\w+), of (\d+) test images \(mean over (\d+) seeds\)")
    it, reinit, n_test = int(m.group(1)), m.group(2), int(m.group(3))
    cells = matrix(text.splitlines())
    assert len(cells) == 9 * 9
    for (la, lb), value in cells.items():
        a, b = BY_LABEL[la], BY_LABEL[lb]
        seeds = sorted(set(store.seeds(a, reinit, it)) & set(store.seeds(b, reinit, it)))
        agree = [np.sum(store.record(a, reinit, s, it)["predictions"] == store.record(b, reinit, s, it)["predictions"])
                 for s in seeds]
        assert len(store.record(a, reinit, seeds[0], it)["predictions"]) == n_test
        near(value, 100 * mean(agree) / n_test, (la, lb))
    chance = []
    for a, b in itertools.combinations(LABELS, 2):
        for s in sorted(set(store.seeds(a, reinit, it)) & set(store.seeds(b, reinit, it))):
            a1, a2 = store.metric(a, reinit, s, it) / 100, store.metric(b, reinit, s, it) / 100
            chance.append(a1 * a2 + (1 - a1) * (1 - a2) / 9)
    near(header(text, r"chance expectation, mean over pairs: ([\d.]+)% of the test images").group(1),
         100 * mean(chance), "chance")


def ensemble_accuracy(store: Store, members, reinit, it, seed, method) -> float:
    recs = [store.record(t, reinit, seed, it) for t in members]
    if method == "mean_prob":
        probs = sum(torch.softmax(torch.from_numpy(r["logits"]), dim=1).numpy() for r in recs) / len(recs)
        pred = probs.argmax(axis=1)  # ties: the first (lowest) class
    else:
        votes = np.zeros((len(recs[0]["predictions"]), 10), dtype=np.int64)
        for r in recs:
            np.add.at(votes, (np.arange(len(r["predictions"])), r["predictions"]), 1)
        pred = votes.argmax(axis=1)
    return 100.0 * float(np.mean(pred == recs[0]["targets"]))


def test_ensembles_by_softmax_mean_and_by_vote(executed):
    store, printed = executed
    text = printed["ensembles"]
    m = header(text, r"ensemble accuracy \(%\) at iteration (\d+), (\w+), mean over (\d+) seeds")
    it, reinit = int(m.group(1)), m.group(2)
    groups = {LABELS[t]: [t] for t in POSTER_SEVEN}
    groups["poster's 7 (its \"all\")"] = POSTER_SEVEN
    groups[" + ".join(LABELS[t].replace(" L1 US", "") if t == "fc_only_l1_us" else LABELS[t] for t in POSTER_TRIO)] = POSTER_TRIO
    groups["all 9"] = list(LABELS)
    lines = re.findall(r"^(.+): (-?[\d.]+) ± ([\d.]+) / (-?[\d.]+) ± ([\d.]+)$", text, re.M)
    assert [name for name, *_ in lines] == list(groups)
    for name, pm, ps, vm, vs in lines:
        members = groups[name]
        seeds = sorted(set.intersection(*(set(store.seeds(t, reinit, it)) for t in members)))
        soft = [ensemble_accuracy(store, members, reinit, it, s, "mean_prob") for s in seeds]
        vote = [ensemble_accuracy(store, members, reinit, it, s, "vote") for s in seeds]
        near(pm, mean(soft), (name, "softmax mean")), near(ps, std(soft), (name, "softmax std"))
        near(vm, mean(vote), (name, "vote mean")), near(vs, std(vote), (name, "vote std"))


def test_emptied_conv1_kernels(executed):
    store, printed = executed
    text = printed["filters"]
    m = header(text, r"conv1 kernels fully pruned \(of (\d+)\) at iterations \[([\d, ]+)\], seed (\d+)")
    n_kernels, rows, seed = int(m.group(1)), [int(x) for x in m.group(2).split(",")], int(m.group(3))
    lines = re.findall(r"^(.+) \+ (\w+): \[([\d, ]+)\]$", text, re.M)
    assert [(BY_LABEL[a], b) for a, b, _ in lines] == [("l1_s", "rewind"), ("l1_us", "rewind"), ("l1_us", "finetune")]
    for label, reinit, counts in lines:
        want = []
        for it in rows:
            mask = store.record(BY_LABEL[label], reinit, seed, it)["masks"]["conv1"]
            kernels = mask.reshape(mask.shape[0] * mask.shape[1], -1)
            assert len(kernels) == n_kernels
            want.append(int((~kernels.any(axis=1)).sum()))
        assert [int(x) for x in counts.split(",")] == want, (label, reinit)


def jaccard(a: dict, b: dict) -> float:
    """1 - |A∩B| / |A∪B| over every layer's kept weights together."""
    inter = sum(int(np.sum(a[k] & b[k])) for k in a)
    union = sum(int(np.sum(a[k] | b[k])) for k in a)
    return 1.0 - inter / union if union else 0.0


def test_mask_distances(executed):
    store, printed = executed
    text = printed["mask_similarity"]
    m = header(text, r"Jaccard distance at iteration (\d+), (\w+), layer all, mean over (\d+) seeds")
    it, reinit = int(m.group(1)), m.group(2)

    def distance(a, ra, b, rb, iteration):
        seeds = sorted(set(store.seeds(a, ra, iteration)) & set(store.seeds(b, rb, iteration)))
        return mean(jaccard(store.record(a, ra, s, iteration)["masks"], store.record(b, rb, s, iteration)["masks"])
                    for s in seeds)

    cells = matrix(text.splitlines())
    assert len(cells) == 9 * 9
    for (la, lb), value in cells.items():
        near(value, distance(BY_LABEL[la], reinit, BY_LABEL[lb], reinit, it), (la, lb))
    curve = header(text, r"L1 S vs L2 S by iteration: (.*)").group(1)
    points = [p.split(": ") for p in curve.split(", ")]
    assert [int(i) for i, _ in points] == list(range(it + 1))
    for i, value in points:
        near(value, distance("l1_s", reinit, "l2_s", reinit, int(i)), ("l1_s vs l2_s", i))
    rf = number_list(header(text, rf"rewind vs fine-tune at iteration {it}: (.*)").group(1))
    assert [BY_LABEL[label] for label, _ in rf] == list(LABELS)
    for label, value in rf:
        near(value, distance(BY_LABEL[label], "rewind", BY_LABEL[label], "finetune", it), ("rewind vs finetune", label))


def test_weight_stability_and_its_correlation_with_accuracy(executed):
    store, printed = executed
    text = printed["weight_stability"]
    m = header(text, r"weight stability \((\w+), iterations 1-(\d+), all layers\) vs test accuracy at iteration (\d+)")
    reinit, it = m.group(1), int(m.group(2))
    lines = re.findall(r"^(.+): mean \|dw\| ([\d.]+), accuracy ([\d.]+)$", text, re.M)
    assert [BY_LABEL[label] for label, *_ in lines] == list(LABELS)
    xs, ys = [], []
    for label, dw, acc in lines:
        t = BY_LABEL[label]
        deltas = []
        for s in store.seeds(t, reinit, it):
            for k in range(1, it + 1):
                before, after = store.record(t, reinit, s, k - 1), store.record(t, reinit, s, k)
                total, count = 0.0, 0
                for layer in after["masks"]:
                    both = before["masks"][layer] & after["masks"][layer]
                    w0 = before["weights"][f"{layer}.weight"][both].astype(np.float64)
                    w1 = after["weights"][f"{layer}.weight"][both].astype(np.float64)
                    total, count = total + float(np.abs(w1 - w0).sum()), count + int(both.sum())
                if count:
                    deltas.append(total / count)
        xs.append(mean(deltas))
        ys.append(mean(store.metric(t, reinit, s, it) for s in store.seeds(t, reinit, it)))
        near(dw, xs[-1], (label, "mean |dw|"))
        near(acc, ys[-1], (label, "accuracy"))
    near(header(text, r"Pearson r = (-?[\d.]+)").group(1), float(np.corrcoef(xs, ys)[0, 1]), "Pearson r")


def test_findings_random_structured_vs_unstructured_follows_the_rule(executed):
    """Finding 3, recomputed: per seed, random S minus random US accuracy on the test images whose class both can
    still output (an output unit with a kept weight in the last layer, fc3), averaged over iterations 1..it, under
    each reinit; supported when every 95% t-interval lies above 0, not supported when one lies at or below it."""
    store, printed = executed
    text = printed["findings"]
    m = header(text, r"iteration (\d+), (\w+), (\d+) seeds")
    it = int(m.group(1))
    verdicts = dict(re.findall(r"^(\w+): (supported|not supported|inconclusive)$", text, re.M))
    assert list(verdicts) == ["tickets", "variety", "random", "functions", "ensembles", "stability", "connectivity"]
    each = []
    for reinit in ("rewind", "finetune"):
        seeds = sorted(set(store.seeds("random_s", reinit, it)) & set(store.seeds("random_us", reinit, it)))
        def shared(s, i):
            a, b = store.record("random_s", reinit, s, i), store.record("random_us", reinit, s, i)
            alive = a["masks"]["fc3"].any(axis=1) & b["masks"]["fc3"].any(axis=1)
            keep = alive[a["targets"]]
            y = a["targets"][keep]
            return 100.0 * (float(np.mean(a["predictions"][keep] == y)) - float(np.mean(b["predictions"][keep] == y)))
        values = [mean(shared(s, i) for i in range(1, it + 1)) for s in seeds]
        if len(values) < 2:
            each.append("inconclusive")
            continue
        half = T_975[len(values) - 1] * std(values) / math.sqrt(len(values))
        low, high = mean(values) - half, mean(values) + half
        each.append("supported" if low > 0 else "not supported" if high <= 0 else "inconclusive")
    want = ("not supported" if "not supported" in each else
            "supported" if all(v == "supported" for v in each) else "inconclusive")
    assert verdicts["random"] == want


def test_sensitivity_distance_to_the_poster_and_the_nearest_set(executed):
    """The smoke set has no published variant (docs/sensitivity/ holds variants of the paper CPU config), so its
    row is the only one: its RMS to the poster over the seven techniques, and per technique its mean."""
    store, printed = executed
    m = header(printed["sensitivity"], r"iteration (\d+), rewind; variants published for this config: (\d+), "
                                       r"with this iteration: (\d+)")
    it = int(m.group(1))
    assert it == last_common_iteration(store, "rewind") and m.group(3) == "0"
    means = {t: mean(store.metric(t, "rewind", s, it) for s in store.seeds(t, "rewind", it)) for t in POSTER}
    rms = math.sqrt(sum((means[t] - POSTER[t]) ** 2 for t in POSTER) / len(POSTER))
    near(header(printed["sensitivity"], r"this set: RMS to poster ([\d.]+)").group(1), rms, "rms")
    checked = 0
    for t, poster in POSTER.items():
        line = header(printed["sensitivity"], rf"{re.escape(LABELS[t])}: poster ([\d.]+), nearest this set ([\d.]+), "
                                              rf"within 5: (.*)")
        near(line.group(1), poster, t)
        near(line.group(2), means[t], t)
        assert line.group(3) == ("this set" if abs(means[t] - poster) <= 5 else "none")
        checked += 1
    assert checked == 7
