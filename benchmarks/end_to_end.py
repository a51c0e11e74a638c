"""End to end: one seed of a config trained with the dense fused step, then with the sparse step, wall times side by side.

    python benchmarks/end_to_end.py                                # paper CPU config, seed 0, 1 epoch per training
    python benchmarks/end_to_end.py --epochs 10                    # the config's own training length (~1 h)

The config (default ``configs/paper_lenet_mnist_cpu.yaml``: nine techniques rewound and fine-tuned, 21 trainings)
is cut to one seed and ``--epochs`` epochs per training, and trained twice with ``python -m pruning run`` into
fresh folders under a temporary directory, one run after the other: first with ``PRUNING_KERNELS=dense`` (the
fused kernels without any sparse path: the step before issue 19), then with the default step (a member whose mask is sparse enough
trains whole in the member kernel, ``members.Members``; others may take conv2's tap kernels, fc1's sparse rows and
the masked SGD update). Everything a run does is
timed: worker start-up, the shared dense training, every pruning iteration, evaluation and storage. Both train the
same runs on the same masks up to float rounding; the script prints both wall times, their ratio, and both runs'
mean test accuracy at the last iteration as a check that they trained the same thing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "paper_lenet_mnist_cpu.yaml"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1, help="epochs per training (the config's own: see its file)")
    args = ap.parse_args()
    from pruning import store
    from pruning.nets.config import load_experiment

    cfg = load_experiment(Path(args.config)).to_dict()
    if args.seed not in cfg["seeds"]:
        sys.exit(f"end_to_end: seed {args.seed} is not one of the config's seeds {cfg['seeds']}; pass --seed")
    cfg.update(name=f"{cfg['name']}_e2e", seeds=[args.seed], training={**cfg["training"], "epochs": args.epochs})
    print(f"{cfg['name']}: seed {args.seed}, {len(cfg['techniques'])} techniques x {len(cfg['reinit'])} reinit, "
          f"{cfg['iterations'] + 1} trainings of {args.epochs} epoch(s), {os.cpu_count()} cores")
    times, acc = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        for step, kernels in (("dense fused step", "dense"), ("sparse step", "")):
            out = Path(tmp) / (kernels or "sparse")
            env = {**os.environ, "PRUNING_KERNELS": kernels}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pruning", "run", str(path), "--results", str(out), "--quiet"],
                           env=env, check=True, cwd=REPO)
            times[step] = time.perf_counter() - start
            table = store.load_results(out)
            last = table[table["iteration"] == table["iteration"].max()]
            acc[step] = (len(table), float(last["test_acc"].mean()))
            print(f"{step:>17}: {times[step]:7.1f} s  ({acc[step][0]} trainings; mean test accuracy at the last "
                  f"iteration {acc[step][1]:.2f}%)", flush=True)
    print(f"end to end: the sparse step is {times['dense fused step'] / times['sparse step']:.2f}x the dense fused "
          f"step")


if __name__ == "__main__":
    main()
