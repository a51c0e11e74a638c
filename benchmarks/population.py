"""Model-steps per second: the one-net loop vs the population paths, and the share of the machine's sgemm rate.

    python benchmarks/population.py                    # CPU: one-net loop vs populations, processes vs threads
    python benchmarks/population.py --device cuda      # GPU: one-net loop vs populations of M, peak memory
    python benchmarks/population.py --steps 300 --members 10 --repeat 3

Every path is the project's own code on real MNIST tensors kept on the device, LeNet at batch 32:
- one-net, threads: ``training.train`` (a ``torch.optim.SGD`` loop over one LeNet whose weights carry
  ``torch.nn.utils.prune`` masks), all CPU threads (the path the project used before the population);
- one-net, processes: the same in W worker processes with one thread each, one net each, started
  together (how ``python -m pruning run --trainer single`` runs on the CPU). The ratios are taken
  against the faster of the two one-net paths;
- population, threads: ``population.train_population`` over M members of one seed on a shared batch,
  in one process with all CPU threads;
- population, processes: the same in W worker processes with one thread each, started together
  (what ``python -m pruning run`` does on the CPU): the rate is the sum over the workers.
- sgemm: a 2048x2048 float32 matrix product with all CPU threads, timed in the same run, so the
  achieved share of the machine's matrix-multiply rate is measured, not quoted.

A model-step is one SGD step of one network (LeNet: about 38 MFLOP forward and backward at batch 32,
counted below from its layer shapes). ``--steps`` larger than one epoch of the 48k training split is
capped, and the steps actually taken are the ones counted. After a warm-up, ``--repeat`` rounds run every
path in turn and the best round of each is printed (robust to a busy shared machine).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import time

import torch

from pruning.nets import datasets, models, techniques, training
from pruning.population import batched as population
from pruning.nets.config import TrainingConfig

BATCH = 32


def lenet_step_flops(batch: int = BATCH) -> float:
    """Multiply-adds x 2 of LeNet's forward (conv1, conv2, fc1-3), x 3 for forward + backward."""
    conv1 = 26 * 26 * 6 * (1 * 3 * 3)
    conv2 = 11 * 11 * 16 * (6 * 3 * 3)
    fc = 400 * 120 + 120 * 84 + 84 * 10
    return 2.0 * 3.0 * batch * (conv1 + conv2 + fc)


def masks_for(seed: int) -> dict[str, torch.Tensor]:
    """A random half of every layer's weights kept (a mid-sparsity mask; its values do not affect speed)."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(m.weight.shape, generator=g) < 0.5 for name, m in models.prunable_layers(models.LeNet())}


def state_for(seed: int, masks: dict) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in models.LeNet().state_dict().items()}
    for layer, m in masks.items():
        state[f"{layer}.weight"] *= m
    return state


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_idx(steps: int, device: str) -> torch.Tensor:
    idx = datasets.split(60000, 12000, 0).train_idx
    return idx[: min(steps * BATCH, len(idx))].to(device)


def time_one_net(data, idx, cfg, device) -> float:
    model = techniques.apply_masks(models.LeNet(), masks_for(0)).to(device)
    sync(device)
    start = time.perf_counter()
    training.train(model, data, datasets.Split(idx, idx[:1]), cfg, seed=0, iteration=0)  # reads the loss: syncs
    return time.perf_counter() - start


def time_population(m: int, data, idx, cfg, device) -> float:
    masks = [masks_for(i) for i in range(m)]
    states = [state_for(i, mk) for i, mk in enumerate(masks)]
    sync(device)
    start = time.perf_counter()
    population.train_population(states, masks, data, idx, cfg, seed=0, iteration=1)
    sync(device)
    return time.perf_counter() - start


def _worker(kind: str, m: int, steps: int, barrier) -> tuple[float, float]:
    """One worker process, one thread: warm up, wait for the others, time one-net or one population. (start, end)."""
    torch.set_num_threads(1)
    data = datasets.load("mnist", "cpu")
    cfg = TrainingConfig(epochs=1, batch_size=BATCH, lr=0.01)
    idx = train_idx(steps, "cpu")
    run = (lambda i: time_one_net(data, i, cfg, "cpu")) if kind == "one-net" else \
        (lambda i: time_population(m, data, i, cfg, "cpu"))
    run(idx[: 10 * BATCH])
    barrier.wait()
    start = time.perf_counter()
    run(idx)
    return start, time.perf_counter()


def time_processes(kind: str, workers: int, m: int, steps: int, pool, barrier) -> float:
    """Wall seconds for ``workers`` processes to take ``steps`` steps each (one net, or a population of ``m``)."""
    spans = list(pool.map(_worker, [kind] * workers, [m] * workers, [steps] * workers, [barrier] * workers))
    return max(e for _, e in spans) - min(s for s, _ in spans)


def sgemm_gflops(n: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2.0 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--members", default=None, help="comma-separated population sizes (default: 10 on CPU, "
                   "the paper CPU config's group; 1,10,90 on CUDA)")
    p.add_argument("--steps", type=int, default=None, help="SGD steps per network (default: 300 on CPU, 1500 on CUDA;"
                   " at most one epoch of 1,500)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes for the process path")
    p.add_argument("--repeat", type=int, default=2, help="rounds over all paths; the best round of each is kept")
    args = p.parse_args(argv)
    device, cuda = args.device, args.device.startswith("cuda")
    threads = torch.get_num_threads()
    members = [int(m) for m in (args.members or ("1,10,90" if cuda else "10")).split(",")]
    cfg = TrainingConfig(epochs=1, batch_size=BATCH, lr=0.01)
    data = datasets.load("mnist", device)
    idx = train_idx(args.steps or (1500 if cuda else 300), device)
    steps = (len(idx) + BATCH - 1) // BATCH  # the steps actually taken
    flops = lenet_step_flops()
    name = torch.cuda.get_device_name() if cuda else f"{os.cpu_count()} CPU cores"
    print(f"device {device} ({name}), torch {torch.__version__}, LeNet batch {BATCH}, {steps} steps per network, "
          f"{flops / 1e6:.1f} MFLOP per model-step, best of {args.repeat}")

    rates: dict[str, float] = {}
    peaks: dict[str, float] = {}
    pool = barrier = None
    if not cuda:
        ctx = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(args.workers, mp_context=ctx)
        barrier = ctx.Manager().Barrier(args.workers)
    time_one_net(data, idx[: 10 * BATCH], cfg, device)
    for m in members:
        time_population(m, data, idx[: 10 * BATCH], cfg, device)
    resident = torch.cuda.memory_allocated() if cuda else 0
    for _ in range(args.repeat):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        key = f"one-net, {'GPU' if cuda else f'{threads} threads'}"
        rates[key] = max(rates.get(key, 0.0), steps / time_one_net(data, idx, cfg, device))
        if pool is not None:
            key = f"one-net, {args.workers} processes x 1 thread"
            rates[key] = max(rates.get(key, 0.0), args.workers * steps / time_processes(
                "one-net", args.workers, 1, steps, pool, barrier))
        for m in members:
            key = f"population M={m}, {'GPU' if cuda else f'{threads} threads'}"
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            rates[key] = max(rates.get(key, 0.0), m * steps / time_population(m, data, idx, cfg, device))
            if cuda:
                peaks[key] = (torch.cuda.max_memory_allocated() - resident) / 2**20
            if pool is not None:
                key = f"population M={m}, {args.workers} processes x 1 thread"
                seconds = time_processes("population", args.workers, m, steps, pool, barrier)
                rates[key] = max(rates.get(key, 0.0), args.workers * m * steps / seconds)
    gemm = sgemm_gflops() if not cuda else None
    if pool is not None:
        pool.shutdown()

    base_key = max((k for k in rates if k.startswith("one-net")), key=rates.get)  # the faster one-net path
    base = rates[base_key]
    print(f"ratios against the faster one-net path: {base_key}")
    print(f"{'path':<44} {'model-steps/s':>14} {'vs one-net':>11} {'GFLOP/s':>9}"
          + (f" {'of sgemm':>9}" if gemm else "") + ("  peak MiB (w/o data)" if cuda else ""))
    for key, rate in rates.items():
        line = f"{key:<44} {rate:>14.1f} {rate / base:>10.2f}x {rate * flops / 1e9:>9.1f}"
        if gemm:
            line += f" {100 * rate * flops / 1e9 / gemm:>8.1f}%"
        if key in peaks:
            line += f"  {peaks[key]:10.1f}"
        print(line)
    if gemm:
        print(f"sgemm 2048x2048, {threads} threads: {gemm:.1f} GFLOP/s")
    best = max(rates, key=rates.get)
    print(f"fastest: {best}: {rates[best] / base:.2f}x the faster one-net path")


if __name__ == "__main__":
    main()
