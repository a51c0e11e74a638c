"""Replicates (pruning/replicates.py, scripts/compare_results.py): two results tables of one config, matched
training by training; the paper's paragraph on them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import json

import pandas as pd
import pytest

from pruning.reporting import replicates

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_results.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(rows):
    return pd.DataFrame(rows, columns=["technique", "reinit", "seed", "iteration", "test_acc", "collapsed"])


def test_differences_per_iteration_and_means_at_the_chosen_iteration(tmp_path, capsys):
    a = table([("l1_us", "rewind", 0, 1, 98.0, False), ("l1_us", "rewind", 1, 1, 97.0, False),
               ("l1_us", "rewind", 0, 2, 90.0, False), ("l1_us", "rewind", 1, 2, 11.35, True),
               ("l1_s", "rewind", 0, 2, 50.0, False)])  # not in b: left out
    b = table([("l1_us", "rewind", 0, 1, 98.0, False), ("l1_us", "rewind", 1, 1, 96.5, False),
               ("l1_us", "rewind", 0, 2, 80.0, False), ("l1_us", "rewind", 1, 2, 70.0, False)])
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    load_script().main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--iteration", "2"])
    out = capsys.readouterr().out
    assert "4 trainings in both (5 in a, 4 in b); 1 with identical test accuracy" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    # iteration 1: |0|, |0.5| -> median 0.25, max 0.5; iteration 2: |10|, |58.65| -> median 34.325, max 58.65
    assert [float(v) for v in lines["median"]] == [0.25, 34.325]
    assert [float(v) for v in lines["max"]] == [0.5, 58.65]
    # iteration 2, l1_us rewind: a mean (90 + 11.35) / 2 = 50.675 -> 50.67 or 50.68; b mean 75.0
    assert [float(v) for v in lines["l1_us"][1:2]] in ([50.67], [50.68]) and float(lines["l1_us"][3]) == 75.0
    assert "collapsed trainings: a 1, b 0" in out


def test_tables_with_no_training_in_common_say_so_in_one_line(tmp_path):
    table([("l1_us", "rewind", 0, 1, 98.0, False)]).to_csv(tmp_path / "a.csv", index=False)
    table([("l1_us", "rewind", 5, 1, 98.0, False)]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(SystemExit, match="no training is in both tables"):
        load_script().main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])


def write_set(folder: Path, config_hash: str, rows) -> pd.DataFrame:
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"config_hash": config_hash, "code_version": "v1"}))
    t = table(rows)
    t.to_csv(folder / "results.csv", index=False)
    return t


def test_a_replicate_is_found_by_its_config_hash_and_the_paper_paragraph_quotes_its_drift(tmp_path):
    own = write_set(tmp_path / "results" / "set", "abc", [
        ("l1_us", "rewind", 0, 1, 98.0, False), ("l1_us", "rewind", 1, 1, 97.0, False),
        ("l1_us", "rewind", 0, 2, 80.0, False), ("l1_us", "rewind", 1, 2, 82.0, False),
        ("l1_s", "rewind", 0, 1, 50.0, False), ("l1_s", "rewind", 1, 1, 52.0, False),
        ("l1_s", "rewind", 0, 2, 40.0, False), ("l1_s", "rewind", 1, 2, 42.0, False)])
    docs = tmp_path / "docs"
    write_set(docs / "replicates" / "other_config", "zzz", [("l1_us", "rewind", 0, 1, 0.0, False)])
    write_set(docs / "replicates" / "same_config", "abc", [
        ("l1_us", "rewind", 0, 1, 98.0, False), ("l1_us", "rewind", 1, 1, 97.5, False),
        ("l1_us", "rewind", 0, 2, 90.0, False), ("l1_us", "rewind", 1, 2, 92.0, False),
        ("l1_s", "rewind", 0, 1, 50.0, False), ("l1_s", "rewind", 1, 1, 52.0, False),
        ("l1_s", "rewind", 0, 2, 40.5, False), ("l1_s", "rewind", 1, 2, 42.0, False)])
    assert replicates.find(tmp_path / "results" / "set", docs) == [docs / "replicates" / "same_config"]
    text = replicates.section(tmp_path / "results" / "set", own, docs)
    # iteration 1 diffs: 0, 0.5, 0, 0 -> median 0, max 0.5; iteration 2 (the last): 10, 10, 0.5, 0 -> median 5.25, max 10
    assert "(8 trainings)" in text and "`docs/replicates/same_config/`" in text and "`v1`" in text
    assert "median of 0.00 points at iteration 1 and 5.25 at iteration 2;" in text
    assert "largest difference is 0.5 points at iteration 1 and 10.0 at iteration 2," in text
    # at iteration 2, L1 US moved 91 -> 81 (stds 1.41): beyond the spread; L1 S 41.25 -> 41 (std 1.06, 1.41): not
    assert "1 of 2 technique means moved" in text and "L1 US rewind (91.0 ± 1.4 to 81.0 ± 1.4)" in text
    assert "trained once more" in text
    # a second replicate of the same config: one comparison each, in folder order
    write_set(docs / "replicates" / "same_config_again", "abc", [
        ("l1_us", "rewind", 0, 1, 97.0, False), ("l1_us", "rewind", 1, 1, 97.0, False)])
    text = replicates.section(tmp_path / "results" / "set", own, docs)
    assert "trained 2 more times" in text and text.count("Against the training with code version") == 2
    first, second = text.index("`docs/replicates/same_config/`"), text.index("`docs/replicates/same_config_again/`")
    assert first < second and "(2 trainings)" in text[second:]  # iteration 1 only: diffs 1.0, 0.0
    assert "median of 0.50 points at iteration 1;" in text[second:]


def experiment(folder: Path, config_hash: str, run_hashes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.json").write_text(json.dumps({"config_hash": config_hash, "code_version": "v1",
                                                        "runs": [{"hash": h} for h in run_hashes]}))
    (folder / "results.csv").write_text("technique,reinit,seed,iteration,test_acc,collapsed\n")


def test_a_replicate_of_some_of_the_runs_is_found_by_their_run_hashes(tmp_path):
    """A replicate config may hold only some of a set's runs (configs/replicates/: the rewound runs of two seeds):
    it is found when every run hash it records is one of the set's, and not when one is foreign."""
    docs = tmp_path / "docs"
    experiment(tmp_path / "set", "abc", ["r1", "r2", "r3"])
    experiment(docs / "replicates" / "a_subset", "sub", ["r1", "r3"])
    experiment(docs / "replicates" / "b_foreign_run", "sub2", ["r1", "r9"])
    experiment(docs / "replicates" / "c_no_runs", "sub3", [])
    experiment(docs / "replicates" / "d_same_config", "abc", ["r1", "r2", "r3"])
    assert replicates.find(tmp_path / "set", docs) == [docs / "replicates" / "a_subset",
                                                        docs / "replicates" / "d_same_config"]


def test_the_noise_replicate_config_holds_runs_of_the_paper_config_only():
    """configs/replicates/paper_lenet_mnist_cpu_rewind.yaml must train runs of the paper CPU config, hash for hash
    (else `make noise` trains a replicate the paper never finds): its nine techniques rewound, seeds 0 and 1."""
    from pruning.nets.config import load_experiment

    configs = Path(__file__).resolve().parents[1] / "configs"
    paper = {r.run_hash() for r in load_experiment(configs / "paper_lenet_mnist_cpu.yaml").runs()}
    noise = load_experiment(configs / "replicates" / "paper_lenet_mnist_cpu_rewind.yaml").runs()
    assert {r.run_hash() for r in noise} <= paper
    assert {(r.reinit, r.seed) for r in noise} == {("rewind", 0), ("rewind", 1)} and len(noise) == 18


def test_without_a_replicate_the_paper_says_the_drift_is_not_measured(tmp_path):
    own = write_set(tmp_path / "results" / "set", "abc", [("l1_us", "rewind", 0, 1, 98.0, False)])
    text = replicates.section(tmp_path / "results" / "set", own, tmp_path / "docs")
    assert text.startswith("**Replicates.** No replicate of this configuration is stored")


@pytest.mark.slow
def test_a_trained_set_is_kept_as_a_replicate_and_found_by_its_config_hash(tmp_path):
    """``python -m pruning publish RESULTS --replicate NAME``: the table, experiment.json and the data of its
    finished seeds, where the paper of the same config finds them; a name that is not a plain folder name is
    refused in one line."""
    from conftest import run_main, train_tiny
    from pruning.reporting import publish
    from pruning import analysis, store

    folder = train_tiny(tmp_path, "rep")
    docs = tmp_path / "docs"
    kept = publish.replicate(folder, "rep_again", docs=docs)
    assert kept == docs / "replicates" / "rep_again"
    assert sorted(p.name for p in kept.iterdir()) == ["data", "experiment.json", "results.csv"]
    csv = pd.read_csv(kept / "results.csv")
    assert len(csv) == len(store.load_results(folder)) == 2 and "run_dir" not in csv.columns
    masks = store.load_training(store.load_results(kept).iloc[1])["masks"]  # what analysis.noise compares
    assert all(m.equal(store.load_training(store.load_results(folder).iloc[1])["masks"][n]) for n, m in masks.items())
    assert replicates.find(folder, docs) == [kept]
    text = replicates.section(folder, docs=docs)  # the same bits: no verdict moves
    assert "Verdicts at iteration 1, this set against each replicate that keeps its data" in text
    n = len(analysis.findings.findings(store.load_results(folder), 1))
    assert f"(0 of {n} moved in at least one)" in text and "| finding | this set (seed 0) | rep_again (seed 0) |" in text
    assert text.count("| inconclusive |") + text.count("| supported |") + text.count("| not supported |") >= n
    assert "(moved)" not in text
    code, err = run_main("publish", folder, "--replicate", "../elsewhere")
    assert code == 2 and err.strip().count("\n") == 0 and "plain folder name" in err
    assert not (tmp_path / "elsewhere").exists()


def test_the_posters_sentence_on_reruns(tmp_path):
    """At the report's iteration (2, the last here) the replicate's differences are 10, 10, 0.5, 0: median 5.25."""
    own = write_set(tmp_path / "results" / "set", "abc", [
        ("l1_us", "rewind", 0, 2, 80.0, False), ("l1_us", "rewind", 1, 2, 82.0, False),
        ("l1_s", "rewind", 0, 2, 40.0, False), ("l1_s", "rewind", 1, 2, 42.0, False)])
    docs = tmp_path / "docs"
    assert replicates.short(tmp_path / "results" / "set", own, docs).startswith("**Reruns.** How far training the "
                                                                                "same config again")
    write_set(docs / "replicates" / "same_config", "abc", [
        ("l1_us", "rewind", 0, 2, 90.0, False), ("l1_us", "rewind", 1, 2, 92.0, False),
        ("l1_s", "rewind", 0, 2, 40.5, False), ("l1_s", "rewind", 1, 2, 42.0, False)])
    text = replicates.short(tmp_path / "results" / "set", own, docs)
    assert "Trained again (1 replicate of the whole config, 4 trainings matched at iteration 2," in text
    assert "at iteration 2 moved by a median 5.25 points, up to 10.0" in text
    write_set(docs / "replicates" / "some_runs", "xyz", [("l1_us", "rewind", 0, 2, 70.0, False)])
    (docs / "replicates" / "some_runs" / "experiment.json").write_text(json.dumps(
        {"config_hash": "xyz", "code_version": "v0", "runs": [{"hash": "r1"}]}))
    (tmp_path / "results" / "set" / "experiment.json").write_text(json.dumps(
        {"config_hash": "abc", "code_version": "v1", "runs": [{"hash": "r1"}, {"hash": "r2"}]}))
    text = replicates.short(tmp_path / "results" / "set", own, docs)  # 10, 10, 0.5, 0 and 10: median 10
    assert "Trained again (1 replicate of the whole config and 1 of some of its runs, 5 trainings matched" in text
    assert "moved by a median 10.00 points, up to 10.0" in text


def test_the_paper_and_poster_texts_come_together(tmp_path):
    own = write_set(tmp_path / "results" / "set", "abc", [("l1_us", "rewind", 0, 2, 80.0, False)])
    docs = tmp_path / "docs"
    write_set(docs / "replicates" / "same_config", "abc", [("l1_us", "rewind", 0, 2, 81.0, False)])
    both = replicates.sections(tmp_path / "results" / "set", own, docs)
    assert both == {replicates.MARKER: replicates.section(tmp_path / "results" / "set", own, docs),
                    replicates.SHORT_MARKER: replicates.short(tmp_path / "results" / "set", own, docs),
                    replicates.NOISE_MARKER: replicates.noise_section(own, []),  # the replicate keeps no data
                    replicates.NOISE_SHORT_MARKER: replicates.noise_short(own, [])}


def test_the_noise_paragraph_without_a_replicate_that_keeps_masks_says_how_to_measure_it():
    text = replicates.noise_section(None, [])
    assert text.startswith("**Is a different ticket just numerical noise?** Not measured") and "`make noise`" in text


@pytest.mark.slow  # reads results/smoke, which the test command trains
def test_the_noise_paragraph_tabulates_the_distances_and_says_what_they_support(monkeypatch):
    """On the smoke store against itself (the same bits: a rerun distance of 0), then on hand-made distances either
    side of the floor (two techniques farther apart than a rerun: beyond rounding; not farther: no evidence)."""
    from pruning import analysis
    from pruning.analysis import noise

    smoke = Path(__file__).resolve().parents[1] / "results" / "smoke"
    table = analysis.load(smoke)
    text = replicates.noise_section(table, [smoke])
    assert "| iteration | sparsity | rerun |" in text and "Per layer at iteration" in text
    assert "`docs/replicates/smoke/`" in text and "trained seeds 0, 1" in text
    assert "| conv1 | 0.000 |" in text  # the smoke store against itself: every rerun distance is 0

    def fake(rerun, techniques, seeds, rnd_aligned):
        rows = []
        for layer in ("conv1", "fc1", "layers"):
            for kind, v in (("rerun", rerun), ("techniques", techniques), ("seeds, aligned", seeds),
                            ("random, aligned", rnd_aligned), ("random", 0.9)):
                rows.append({"iteration": 5, "sparsity": 0.67, "kind": kind, "technique": "l1_us", "layer": layer,
                             "distance": v, "std": 0.0, "n": 2})
        return lambda *a, **k: pd.DataFrame(rows)
    monkeypatch.setattr(noise, "noise_curve", fake(0.30, 0.50, 0.40, 0.80))
    text = replicates.noise_section(table, [smoke])
    assert "| 5 | 0.670 | 0.300 | 0.500 | 0.400 | 0.800 | 0.900 |" in text
    assert "two of these techniques on one seed are 0.50 apart, more than a rerun's 0.30" in text
    assert "two seeds of one technique, hidden units aligned, are 0.40 apart against 0.80 for aligned random masks " \
           "(50% of the way to unrelated masks)" in text
    assert replicates.noise_short(table, [smoke]).startswith("**Noise.** At iteration 5, for L1 US, hybrid and fc-only")
    monkeypatch.setattr(noise, "noise_curve", fake(0.60, 0.50, 0.40, 0.80))
    assert "no more than a rerun's 0.60: their masks differ by no more than float rounding moves one" in \
        replicates.noise_section(table, [smoke])
    assert replicates.noise_short(table, []).startswith("**Noise.** Whether a different ticket is more than float")


def test_the_verdict_table_compares_both_sets_on_the_runs_they_share(tmp_path, monkeypatch):
    """A rewind-only replicate of two seeds: this set's verdicts are read on those runs too, not on all of it, and
    the columns say which runs they are."""
    from types import SimpleNamespace
    from pruning import store
    from pruning.analysis import findings

    def rows(reinits, seeds):
        return table([("l1_us", r, s, 1, 90.0, False) for r in reinits for s in seeds])
    own, other = rows(["rewind", "finetune"], [0, 1, 2]), rows(["rewind"], [0, 1, 5])
    monkeypatch.setattr(store, "load_results", lambda folder: other)
    # a stand-in finding whose verdict tells which rows it read
    monkeypatch.setattr(findings, "findings", lambda t, it: [SimpleNamespace(
        key="rows", verdict=",".join(sorted({f"{r}{s}" for r, s in zip(t["reinit"], t["seed"])})))])
    text = replicates.verdict_table(own, [tmp_path / "rep"], 1)
    assert "| finding | this set (seeds 0,1, rewind only) | rep (seeds 0,1, rewind only) |" in text
    assert "| 1 (rows) | rewind0,rewind1 | rewind0,rewind1 |" in text and "(0 of 1 moved in at least one)" in text
