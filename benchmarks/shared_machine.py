"""How a training slows down when other processes share the cores, by thread count and OpenMP wait policy.

    .venv/bin/python benchmarks/shared_machine.py [--load 4] [--steps 400]

Times the same dense LeNet steps (batch 32, augmented) in fresh processes, first on a quiet machine, then beside
``--load`` busy processes, each with: torch's default threads and OpenMP's default wait policy (threads spin
while they wait at a barrier), the same threads with ``OMP_WAIT_POLICY=PASSIVE`` (they sleep), and one thread.
Prints each time and its slow-down (loaded / quiet); fair sharing of n cores among k busy processes is about k/n.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
from pruning.nets import datasets, models, training
from pruning.nets.config import TrainingConfig
steps, threads = int(sys.argv[1]), int(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
data = datasets.load("mnist")
cfg = TrainingConfig(epochs=1, augment=True, augment_padding=4, augment_fill="black")
torch.manual_seed(0)
model = models.build("lenet", 10, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
order = training.epoch_order(0, 0, 0, torch.arange(60000))
start = time.perf_counter()
for step in range(steps):
    idx = order[step * 32:(step + 1) * 32]
    x = training.augment_batch(data.train_x[idx], data, cfg, 0, 0, 0, step)
    loss = torch.nn.functional.cross_entropy(model(x), data.train_y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
print(json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))
"""


def _busy(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


def _time(steps: int, threads: int, passive: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(threads)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load", type=int, default=4, help="busy processes beside the training")
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    variants = [("default threads, spinning waits", 0, False), ("default threads, OMP_WAIT_POLICY=PASSIVE", 0, True),
                ("one thread", 1, False)]
    quiet = {name: _time(args.steps, t, pas) for name, t, pas in variants}
    stop = mp.Event()
    load = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for proc in load:
        proc.start()
    time.sleep(1)
    try:
        loaded = {name: _time(args.steps, t, pas) for name, t, pas in variants}
    finally:
        stop.set()
        for proc in load:
            proc.join()
    print(f"{args.steps} augmented LeNet steps, {cores} cores, {args.load} busy processes beside it "
          f"(fair sharing: about {(args.load + 1) / cores:.1f}x)")
    for name, *_ in variants:
        q, l_ = quiet[name], loaded[name]
        print(f"  {name:<44} threads {q['threads']}: quiet {q['seconds']:6.2f} s, shared {l_['seconds']:7.2f} s, "
              f"slow-down {l_['seconds'] / q['seconds']:5.1f}x")


if __name__ == "__main__":
    main()
