"""The sensitivity study's functions on hand-made tables, expected values worked out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from pruning.analysis import sensitivity as S


def table(rows):
    """rows: (technique, seed, iteration, test_acc, collapsed), all under rewinding."""
    return pd.DataFrame([{"technique": t, "reinit": "rewind", "seed": s, "iteration": i, "test_acc": a,
                          "collapsed": c} for t, s, i, a, c in rows])


BASE = table([("l1_us", 0, 18, 90.0, False), ("l1_us", 1, 18, 94.0, False),
              ("l1_us", 0, 19, 30.0, False), ("l1_us", 1, 19, 34.0, False),
              ("l1_s", 0, 18, 11.35, True), ("l1_s", 1, 18, 95.0, False),
              ("l1_s", 0, 19, 11.35, True), ("l1_s", 1, 19, 11.35, True)])
VARIANT = table([("l1_us", 0, 18, 33.0, False), ("l1_us", 1, 18, 35.0, False),
                 ("l1_s", 0, 18, 40.0, False), ("l1_s", 1, 18, 36.0, False)])


def test_per_seed_values_mean_interval_and_collapsed_counts():
    at = S.at_iteration(BASE, 18).set_index("technique")
    assert list(at.index) == ["l1_s", "l1_us"]  # the poster's order: L2 S, L1 S, L1 US, ...
    assert at.loc["l1_us", "per_seed"] == [90.0, 94.0] and at.loc["l1_us", "mean"] == 92.0
    half = 12.7062047 * math.sqrt(8) / math.sqrt(2)  # t(0.975, 1) * std / sqrt(n); std of 90, 94 is sqrt(8)
    assert at.loc["l1_us", "low"] == pytest.approx(92.0 - half, rel=1e-4)  # t from a 3-decimal table
    assert at.loc["l1_us", "high"] == pytest.approx(92.0 + half, rel=1e-4)
    assert at.loc["l1_s", "collapsed"] == 1 and at.loc["l1_us", "collapsed"] == 0
    assert at.loc["l1_us", "poster"] == 32.4 and at.loc["l1_s", "poster"] == 37.8  # data/reference/poster_ensembles.csv


def test_distance_to_the_poster_and_the_closest_set_per_technique():
    frame = S.study({"base": BASE, "variant": VARIANT}, 18)
    rms = S.distance_to_poster(frame)
    # base: l1_us 92 - 32.4 = 59.6, l1_s 53.175 - 37.8 = 15.375; variant: 34 - 32.4 = 1.6, 38 - 37.8 = 0.2
    assert rms["base"] == pytest.approx(math.sqrt((59.6 ** 2 + 15.375 ** 2) / 2))
    assert rms["variant"] == pytest.approx(math.sqrt((1.6 ** 2 + 0.2 ** 2) / 2))
    near = S.closest(frame).set_index("technique")
    assert near.loc["l1_us", "within"] == ["variant"] and near.loc["l1_us", "closest"] == "variant"
    assert near.loc["l1_us", "gap"] == pytest.approx(1.6)
    assert near.loc["l1_s", "within"] == ["variant"]
    assert S.closest(frame, within=0.1).set_index("technique").loc["l1_s", "within"] == []


def test_counting_reads_the_posters_iteration_as_18_and_as_19_steps():
    c = S.counting(BASE).set_index("technique")
    assert c.loc["l1_us", "mean_18"] == 92.0 and c.loc["l1_us", "mean_19"] == 32.0 and c.loc["l1_us", "nearer"] == 19
    assert c.loc["l1_s", "collapsed_19"] == 2 and c.loc["l1_s", "nearer"] == 18  # |53.2 - 37.8| < |11.35 - 37.8|
