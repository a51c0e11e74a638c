"""Numerical noise against seeds (analysis.noise) on the smoke run store, checked with numpy on its files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from pruning import analysis

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "smoke"


def _masks(path) -> dict[str, np.ndarray]:
    pt = torch.load(io.BytesIO(Path(path).read_bytes()), map_location="cpu", weights_only=True)
    return {n: np.unpackbits(p.numpy())[: int(np.prod(pt["mask_shapes"][n]))].astype(bool)
            for n, p in pt["packed_masks"].items()}


def _jaccard(a, b) -> float:
    inter = sum(int((a[n] & b[n]).sum()) for n in a)
    union = sum(int((a[n] | b[n]).sum()) for n in a)
    return 1 - inter / union if union else 0.0


@pytest.mark.slow  # reads results/smoke, which the test command trains
def test_a_run_store_against_itself_is_no_noise_and_seed_pairs_are_the_hand_computed_distances():
    table = analysis.load(RESULTS)
    out = analysis.noise.mask_noise(table, table).set_index("iteration")
    assert (out["replicate"] == 0).all() and (out["acc_replicate"] == 0).all()
    # random masks come from (seed, iteration) alone: a replicate draws the same ones, so they are left out
    techs = sorted(set(table["technique"]) - {"random_us", "random_s"})
    assert len(techs) == len(set(table["technique"])) - 2
    assert (out["n_replicate"] == len(techs) * 2).all() and (out["n_seeds"] == len(techs)).all()  # 2 seeds: 1 pair
    rew = table[table["reinit"] == "rewind"]
    for it in (0, 3, 6):
        at = rew[rew["iteration"] == it]
        dists, gaps = [], []
        for t in techs:
            rows = at[at["technique"] == t].sort_values("seed")
            (_, r0), (_, r1) = list(rows.iterrows())
            dists.append(_jaccard(_masks(r0["file"]), _masks(r1["file"])))
            gaps.append(abs(r0["test_acc"] - r1["test_acc"]))
        assert out.loc[it, "seeds"] == pytest.approx(np.mean(dists), abs=1e-12)
        assert out.loc[it, "acc_seeds"] == pytest.approx(np.mean(gaps), abs=1e-12)
    assert out.loc[0, "seeds"] == 0 and out.loc[0, "random"] == 0  # dense: every weight kept
    assert out.loc[6, "random"] > 0 and out.loc[6, "seeds"] > 0


@pytest.mark.slow  # reads results/smoke, which the test command trains
def test_replicates_with_nothing_in_common_are_a_one_line_error():
    table = analysis.load(RESULTS)
    other = table.assign(seed=table["seed"] + 10)
    with pytest.raises(analysis.ParameterError) as err:
        analysis.noise.mask_noise(table, other)
    assert "\n" not in str(err.value) and "no (technique, seed, iteration) in common" in str(err.value)
