"""Verdicts along the curve (analysis.curve) on hand-built inputs."""
from __future__ import annotations

import pandas as pd

from pruning.analysis import curve
from pruning.analysis.stats import summarize


def test_spans_write_iterations_as_ranges():
    assert curve.spans([9, 10, 11, 12, 13, 14, 15]) == "9-15"
    assert curve.spans([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
    assert curve.spans([]) == "none"


def test_a_finding_supported_at_some_iterations_and_not_others_gives_the_right_ranges():
    verdicts = (["not supported"] * 7 + ["inconclusive"] + ["supported"] * 7 + ["inconclusive"]
                + ["not supported"] * 4)
    frame = pd.DataFrame({"finding": "tickets", "iteration": range(1, 21), "verdict": verdicts})
    r = curve.ranges(frame).iloc[0]
    assert r["supported"] == "9-15" and r["not supported"] == "1-7, 17-20" and r["inconclusive"] == "8, 16"
    assert r["no difference"] == "none"


def test_the_margin_calls_a_tie_no_difference_and_a_real_gap_not():
    tie = summarize([-0.05, -0.13, -0.08, -0.1])      # finding 5 at iteration 10: a deficit of 0.05-0.13 points
    assert curve.verdict_with_margin(tie, 0.0, True, 0.5) == "no difference"
    gap = summarize([-2.0, -2.5, -1.8, -2.2])
    assert curve.verdict_with_margin(gap, 0.0, True, 0.5) == "not supported"
    win = summarize([1.0, 1.2, 0.9, 1.1])
    assert curve.verdict_with_margin(win, 0.0, True, 0.5) == "supported"
    wide = summarize([-3.0, 3.0, 0.1])                # straddles the margin: no answer
    assert curve.verdict_with_margin(wide, 0.0, True, 0.5) == "inconclusive"


def _ticket_table(own, fresh, collapsed=()):
    rows = []
    for reinit, accs in (("rewind", own), ("random_reinit", fresh)):
        for seed, acc in enumerate(accs):
            rows.append({"technique": "l1_us", "reinit": reinit, "seed": seed, "iteration": 5, "test_acc": acc,
                         "collapsed": (reinit, seed) in collapsed})
    return pd.DataFrame(rows)


def test_the_ticket_test_pairs_by_seed_and_leaves_collapsed_pairs_out():
    t = _ticket_table([98.0, 97.5, 97.9, 11.35], [96.0, 95.0, 96.4, 96.0], collapsed={("rewind", 3)})
    r = curve.ticket_test(t).iloc[0]
    assert r["seeds"] == 3 and r["collapsed"] == 1
    assert r["per_seed"] == [2.0, 2.5, 1.5] and r["verdict"] == "supported"
    same = curve.ticket_test(_ticket_table([97.0, 97.1, 96.9], [97.05, 97.0, 96.95])).iloc[0]
    assert same["verdict"] == "no difference"
    assert curve.ticket_test(_ticket_table([97.0], [96.0]).query("reinit == 'rewind'")).empty


def test_ties_under_one_condition_make_the_finding_a_tie_unless_another_is_not_supported():
    assert curve._combine_with_ties(["supported", "no difference"]) == "no difference"
    assert curve._combine_with_ties(["not supported", "no difference"]) == "not supported"
    assert curve._combine_with_ties(["supported", "supported"]) == "supported"
    assert curve._combine_with_ties(["supported", "inconclusive"]) == "inconclusive"
