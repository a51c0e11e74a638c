"""scripts/compare_results.py: two results tables of one config, matched training by training."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

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
