"""What pinning the numeric code paths costs: the population step, native vs pinned, side by side in one run.

    python benchmarks/numerics.py [--steps 300] [--rounds 3]

``PRUNING_NUMERICS=pinned`` (``pruning/core/numerics.py``) sets MKL_CBWR, ONEDNN_MAX_CPU_ISA and
ATEN_CPU_CAPABILITY, which the libraries read when they load: so each setting trains in a fresh
process. The settings: native (the default), the two variables the README's "another CPU" simulation sets
(MKL and oneDNN on AVX2), ATen's dispatch on AVX2, and all three together (pinned). Each process times ``--steps`` steps of a 10-member LeNet
population (1 thread, batch 32, real MNIST); rounds go through the settings in turn, so that a machine
that speeds up or slows down during the run weighs on all of them alike; the best round of each is
printed with its ratio to native.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

SETTINGS = {
    "native": {},
    "MKL + oneDNN on AVX2": {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ATen on AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "pinned (PRUNING_NUMERICS=pinned)": {"PRUNING_NUMERICS": "pinned", "MKL_CBWR": "AVX2",
                                         "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}

CHILD = r"""
import sys, time, torch
from pruning.nets import datasets, models
from pruning.nets.config import TrainingConfig
from pruning.population import batched as population
torch.set_num_threads(1)
steps = int(sys.argv[1])
data = datasets.load("mnist", "cpu")
states = []
for i in range(10):
    torch.manual_seed(i)
    states.append({k: v.clone() for k, v in models.LeNet().state_dict().items()})
pop = population.Population(states, [None] * 10, "cpu")
cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.01)
x, y = data.train_x[:32 * 50], data.train_y[:32 * 50]
for i in range(20):
    pop.train_step(x[32 * (i % 50):32 * (i % 50) + 32], y[32 * (i % 50):32 * (i % 50) + 32], cfg)
start = time.perf_counter()
for i in range(steps):
    pop.train_step(x[32 * (i % 50):32 * (i % 50) + 32], y[32 * (i % 50):32 * (i % 50) + 32], cfg)
print(time.perf_counter() - start)
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    best = {name: float("inf") for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            done = subprocess.run([sys.executable, "-c", CHILD, str(args.steps)], env={**os.environ, **env},
                                  capture_output=True, text=True, check=True)
            best[name] = min(best[name], float(done.stdout.split()[-1]))
    print(f"population step, M=10, 1 thread, batch 32, best of {args.rounds} rounds x {args.steps} steps")
    for name, seconds in best.items():
        rate = 10 * args.steps / seconds
        print(f"{name:36s} {1000 * seconds / args.steps:7.2f} ms/step  {rate:8.1f} model-steps/s  "
              f"{best['native'] / seconds:5.2f}x native")


if __name__ == "__main__":
    main()
