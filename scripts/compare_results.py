"""Two results tables of one config, side by side: how far apart are the same trainings?

    python scripts/compare_results.py docs/replicates/paper_lenet_mnist_cpu_autograd_step/results.csv \
        docs/paper_lenet_mnist_cpu/results.csv --iteration 18

Made for replicates that should agree up to float rounding: the same config trained by two trainers, or
by one trainer after a change to its arithmetic (``pruning/replicates.py``, whose functions this uses,
puts the same comparison in the paper). Matches trainings by (technique, reinit, seed,
iteration) and prints, per iteration, the median and largest absolute difference in test accuracy, then
each technique's mean ± std over seeds at ``--iteration`` in both tables, and the collapsed trainings.
"""
from __future__ import annotations

import argparse

import pandas as pd

from pruning.reporting import replicates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="results.csv of the first set")
    p.add_argument("b", help="results.csv of the second set")
    p.add_argument("--iteration", type=int, default=18, help="iteration of the per-technique table (default 18)")
    args = p.parse_args(argv)
    a, b = pd.read_csv(args.a), pd.read_csv(args.b)
    both = replicates.compare(a, b)
    if both.empty:
        raise SystemExit("no training is in both tables: compare two results sets of one config")
    print(f"{len(both)} trainings in both ({len(a)} in a, {len(b)} in b); "
          f"{int((both['diff'] == 0).sum())} with identical test accuracy")
    per_it = both.groupby("iteration")["diff"].agg(["median", "max"]).round(3)
    print("|test accuracy a - b| (points) per iteration:")
    print(per_it.T.to_string())
    print(f"test accuracy at iteration {args.iteration}, mean and std over seeds (a, b), and whether the means "
          "differ by more than the larger std:")
    print(replicates.moved(both, args.iteration).round(2).to_string())
    print(f"collapsed trainings: a {int(a.collapsed.sum())}, b {int(b.collapsed.sum())}")


if __name__ == "__main__":
    main()
