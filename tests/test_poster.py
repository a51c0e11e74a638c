"""The poster comparison (analysis.poster) on hand-built tables, and the README's copy of it kept equal to the data."""
from __future__ import annotations

import json

import math

import pandas as pd
import pytest

from conftest import REPO
from pruning.analysis import poster


def _table(values: dict[tuple[str, int], list[float]], collapsed=()) -> pd.DataFrame:
    rows = []
    for (technique, it), accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"technique": technique, "reinit": "rewind", "seed": seed, "iteration": it, "test_acc": acc,
                         "collapsed": (technique, it, seed) in collapsed})
    return pd.DataFrame(rows)


def test_a_set_is_read_at_both_counts_with_per_seed_values_collapses_and_gaps():
    t = _table({("hybrid", 18): [80.0, 84.0], ("hybrid", 19): [70.0, 72.0], ("random_s", 18): [11.35, 11.35],
                ("random_s", 19): [11.35, 11.35]}, collapsed={("random_s", 18, 0), ("random_s", 19, 0),
                                                              ("random_s", 19, 1)})
    long = poster.comparison({"mine": t})
    h18 = long[(long["column"] == "hybrid") & (long["steps"] == 18)].iloc[0]
    assert h18["per_seed"] == [80.0, 84.0] and h18["mean"] == 82.0 and h18["poster"] == 81.8
    assert h18["gap"] == pytest.approx(0.2) and h18["low"] < 82.0 < h18["high"]
    r19 = long[(long["column"] == "random S") & (long["steps"] == 19)].iloc[0]
    assert r19["collapsed"] == 2
    assert set(long["column"]) == {"hybrid", "random S"}  # no ensemble without test predictions
    rms = poster.rms(long).set_index("steps")["rms"]
    assert rms[18] == pytest.approx(math.sqrt((0.2 ** 2 + 0.05 ** 2) / 2))
    assert rms[19] == pytest.approx(math.sqrt((10.8 ** 2 + 0.05 ** 2) / 2))
    near = poster.nearer_reading(long).iloc[0]
    assert near["nearer"] == 18
    w = poster.wide(long)
    assert list(w["set"]) == ["poster", "mine", "mine"]
    assert w.iloc[2]["random S"] == "11.3 (2/2 collapsed)" and w.iloc[1]["hybrid"] == "82.0"
    assert w.iloc[1]["L1 US"] == "n/a"


def test_the_readme_holds_the_comparison_that_the_published_data_give():
    from pruning.reporting import poster_sets

    text = (REPO / "README.md").read_text()
    assert poster_sets.readme_block() in text, "run `python -m pruning readme` and commit README.md"


@pytest.mark.slow
def test_the_readme_holds_the_findings_that_the_published_data_give():
    """Each finding's verdict ranges per published LeNet set, recomputed (about a minute per set)."""
    from pruning.reporting import poster_sets

    text = (REPO / "README.md").read_text()
    assert poster_sets.findings_block() in text, "run `python -m pruning readme` and commit README.md"


def test_the_benchmarks_page_holds_the_seed_times_that_the_published_sets_record():
    from pruning.reporting import seed_times

    text = (REPO / "docs" / "benchmarks.md").read_text()
    assert seed_times.block() in text, "run `python -m pruning readme` and commit docs/benchmarks.md"


def test_seed_times_read_each_seeds_own_record_and_compare_with_the_target(tmp_path):
    from pruning.reporting import seed_times

    set_ = tmp_path / "authors_lenet_mnist"
    for seed, record in {0: {"code_version": "aaa", "hardware": "m", "last_run_seconds": 1440.0, "seed_runs": [],
                             "updated": "2026-01-02T00:00:00"},
                         3: {"seed_runs": [{"code_version": "bbb", "hardware": "m", "seconds": 5760.0,
                                            "seeds_together": [3, 4], "finished": "2026-01-03T00:00:00",
                                            "trainings": 441, "seed_trainings": 882, "cpu_share": 0.934}]},
                         5: {"seed_runs": [{"code_version": "ccc", "hardware": "m", "seconds": 2880.0,
                                            "seeds_together": [5], "finished": "2026-01-04T00:00:00",
                                            "trainings": 441, "seed_trainings": 441, "cpu_share": 0.991}]}}.items():
        (set_ / "data" / f"seed_{seed}").mkdir(parents=True)
        (set_ / "data" / f"seed_{seed}" / "experiment.json").write_text(json.dumps(record))
    table = seed_times.block(tmp_path)
    assert "| 0 | `aaa` | m | 2026-01-02 | 0 | not recorded | not recorded | 1,440.0 s | 0.50x |" in table
    assert "| 3 | `bbb` | m | 2026-01-03 | 3, 4 | 441 of 882 | 93% | 5,760.0 s | 2.00x for 50% of its trainings |" in table
    assert "| 5 | `ccc` | m | 2026-01-04 | 5 | 441 of 441 | 99% | 2,880.0 s | 1.00x |" in table


def test_the_index_sums_the_commands_that_trained_a_set_counting_a_shared_command_once(tmp_path):
    """Seeds 3 and 4 trained in one 5,760-s command and seed 0 alone in 1,440 s: 7,200 s = 120 min over 2 commands."""
    from pruning.reporting import publish

    set_ = tmp_path / "authors_lenet_mnist"
    run = {"code_version": "bbb", "hardware": "m", "seconds": 5760.0, "seeds_together": [3, 4],
           "finished": "2026-01-03T00:00:00"}
    for seed, record in {0: {"seed_runs": [{**run, "seconds": 1440.0, "seeds_together": [0]}]},
                         3: {"seed_runs": [run]}, 4: {"seed_runs": [run]}}.items():
        (set_ / "data" / f"seed_{seed}").mkdir(parents=True)
        (set_ / "data" / f"seed_{seed}" / "experiment.json").write_text(json.dumps(record))
    assert publish._wall(set_, {"last_run_seconds": 5760.0}) == "120 min wall over 2 training command(s)"
    assert publish._wall(tmp_path / "none", {"last_run_seconds": 600.0}) == "10 min wall (last command)"


def test_the_comparison_holds_the_variants_of_every_published_lenet_set(tmp_path):
    """A sensitivity variant of the released code's profile (the L1 US recipe: one field apart) is compared with the
    poster beside the sets, as the CPU profile's variants are; a folder far from every set is not."""
    import shutil

    from pruning.reporting import poster_sets

    docs = tmp_path / "docs"
    for name in ("authors_lenet_mnist", "paper_lenet_mnist_cpu"):
        (docs / name / "data").mkdir(parents=True)
        for f in ("experiment.json", "results.csv"):
            shutil.copyfile(REPO / "docs" / name / f, docs / name / f)
    exp = json.loads((REPO / "docs" / "authors_lenet_mnist" / "experiment.json").read_text())
    recipe = {**exp, "config": {**exp["config"], "training": {**exp["config"]["training"], "prune_from_epoch": 1}}}
    far = {**exp, "config": {**exp["config"], "prune_fraction": 0.5, "iterations": 3, "structured_dim": 0,
                             "training": {**exp["config"]["training"], "epochs": 2, "lr": 0.5}}}
    for name, content in (("recipe", recipe), ("far", far)):
        (docs / "sensitivity" / name).mkdir(parents=True)
        (docs / "sensitivity" / name / "experiment.json").write_text(json.dumps(content))
        shutil.copyfile(REPO / "docs" / "authors_lenet_mnist" / "results.csv", docs / "sensitivity" / name / "results.csv")
    found = poster_sets.tables(docs=docs)
    assert list(found) == ["authors_lenet_mnist", "paper_lenet_mnist_cpu", "sensitivity/recipe"]
    assert list(poster_sets.tables(base=docs / "paper_lenet_mnist_cpu", docs=docs)) == list(found)[:2]
    # published as a whole set too (data, paper, poster), the recipe is compared once, under its set's name
    (docs / "recipe" / "data").mkdir(parents=True)
    shutil.copyfile(docs / "sensitivity" / "recipe" / "experiment.json", docs / "recipe" / "experiment.json")
    shutil.copyfile(docs / "sensitivity" / "recipe" / "results.csv", docs / "recipe" / "results.csv")
    assert list(poster_sets.tables(docs=docs)) == ["authors_lenet_mnist", "paper_lenet_mnist_cpu", "recipe"]


def test_a_set_of_one_technique_has_a_line_in_the_findings_block_not_a_table_of_verdicts(tmp_path):
    """The released L1 US recipe holds L1 US alone: every finding compares techniques, so the README says so in one
    line instead of listing seven verdicts that cannot be read."""
    from pruning.reporting import poster_sets
    from pruning.store import published

    folder = tmp_path / "docs" / "recipe"
    (folder / "data").mkdir(parents=True)
    exp = json.loads((REPO / "docs" / "authors_lenet_mnist" / "experiment.json").read_text())
    exp["config"]["techniques"] = ["l1_us"]
    (folder / "experiment.json").write_text(json.dumps(exp))
    table = pd.read_csv(REPO / "docs" / "authors_lenet_mnist" / "results.csv")
    for seed, rows in table[table["technique"] == "l1_us"].groupby("seed"):
        published.seed_folder(folder, seed).mkdir(parents=True)
        rows.to_csv(published.seed_folder(folder, seed) / published.TABLE, index=False)
    block = poster_sets.findings_block(docs=tmp_path / "docs")
    assert "**recipe** (30 epochs" in block
    assert "one technique (l1_us), so no finding about techniques can be read" in block
    assert "| finding |" not in block


def test_the_poster_l1_us_is_set_against_each_sets_interval_by_hand():
    """t(0.975, 1) = 12.706: [30, 34] has mean 32, std 2.83, half-width 12.706 * 2 = 25.4 and holds the poster's 32.4;
    [80, 82] has half-width 12.706 * 1 = 12.7 and does not."""
    from pruning.reporting import poster_sets

    long = poster.comparison({"a": _table({("l1_us", 18): [30.0, 34.0]}), "b": _table({("l1_us", 18): [80.0, 82.0]})})
    sentence = poster_sets._interval_sentence(long, "L1 US")
    assert ("The poster's L1 US (32.4) against each set at 18 steps, mean [95% CI]: a 32.0 [6.6, 57.4] (n = 2); "
            "b 81.0 [68.3, 93.7] (n = 2). Intervals that hold it: a.") in sentence
    assert poster_sets._interval_sentence(long, "hybrid") == ""
