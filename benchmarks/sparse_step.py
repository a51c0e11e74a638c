"""Model-steps per second of the population step at the masks of a real run: dense fused step vs sparse step.

    python benchmarks/sparse_step.py                       # 1 thread, M=10, iterations 0, 5, 10, 15, 20
    python benchmarks/sparse_step.py --steps 40 --repeat 5 --all-iterations

Real masks: a LeNet is trained for ``--train-steps`` SGD steps on MNIST (the one-net loop), then each technique
of ``pruning/techniques.py`` prunes it 20 times, 20% of what remains per layer (``techniques.prune_step``, as a
run prunes; the weights are not retrained between iterations, so the masks are those of that trained net). At
each iteration shown, four populations of M members take ``--steps`` SGD steps on real MNIST batches:

- ``unstructured``: every member L1 US;  ``structured``: every member L1 S;  ``hybrid``: every member hybrid;
- ``paper``: one seed's population of ``configs/paper_lenet_mnist_cpu.yaml`` (the nine techniques with
  rewinding, and L1 US fine-tuned), every member at the same iteration, as a population trains.

Each population is timed with the dense fused step (``Population(..., sparse=False)``: every weight computed,
then masked) and with the sparse step (``sparse=True``), in interleaved rounds, best of ``--repeat``. The
one-net loop (``training.train`` over one masked LeNet, same thread count) and a 2048x2048 sgemm are timed in
the same run. The run-averaged ratio is what a 21-training run would see: sum over iterations 0..20 of the
dense step's time over the sum of the sparse step's (trainings of equal length), interpolated linearly between
the measured iterations unless ``--all-iterations``.
"""
from __future__ import annotations

import argparse
import time

import torch

from population import sgemm_gflops  # benchmarks/population.py (this script's folder)
from pruning.nets import datasets, models, techniques, training
from pruning.nets.config import TrainingConfig
from pruning.population import batched as population

BATCH = 32
PAPER = ["l1_us", "l1_us", "random_us", "l1_s", "l2_s", "linf_s", "lneginf_s", "random_s", "hybrid",
         "fc_only_l1_us"]  # one seed's runs of paper_lenet_mnist_cpu (L1 US twice: rewound and fine-tuned)
# one seed's runs of authors_lenet_mnist, interleaved as populations.split cuts them for 2 workers (one part):
# nine techniques rewound and fine-tuned, and L1 US, hybrid and fc-only L1 US randomly reinitialised
AUTHORS = ["l1_us", "l1_us", "random_us", "l1_s", "l2_s", "linf_s", "lneginf_s", "random_s", "hybrid",
           "fc_only_l1_us", "hybrid"]
POPULATIONS = {"unstructured": ["l1_us"], "structured": ["l1_s"], "hybrid": ["hybrid"], "paper": PAPER,
               "authors": AUTHORS}
REST = [t for t in PAPER if not t.endswith("_s")]  # the paper population less its five structured members


def trained_state(data, steps: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = models.LeNet()
    idx = datasets.split(60000, 12000, 0).train_idx[: steps * BATCH]
    training.train(model, data, datasets.Split(idx, idx[:1]), TrainingConfig(epochs=1, batch_size=BATCH, lr=0.05),
                   seed=0, iteration=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def mask_sequences(state, iterations: int, structured_dim: int = 0) -> dict[str, list[dict[str, torch.Tensor]]]:
    """technique -> the masks of iterations 0..iterations (prune 20% of what remains, per layer, each time)."""
    out = {}
    for tech in dict.fromkeys(PAPER):
        masks, seq = None, [None]
        for k in range(1, iterations + 1):
            masks = techniques.prune_step("lenet", state, masks, tech, 0.2, seed=0, iteration=k,
                                          structured_dim=structured_dim)
            seq.append(masks)
        out[tech] = seq
    return out


def members(state, seqs, techs: list[str], k: int, m: int):
    masks = [seqs[techs[i % len(techs)]][k] for i in range(m)]
    states = [{n: v * masks[i][n.split(".")[0]] if masks[i] and n.endswith("weight") else v.clone()
               for n, v in state.items()} for i in range(m)]
    return states, masks


def density(masks) -> float:
    """Kept fraction of the prunable weights, over all members."""
    kept = total = 0
    for mk in masks:
        for layer, mod in models.prunable_layers(models.LeNet()):
            kept += int(mk[layer].sum()) if mk else mod.weight.numel()
            total += mod.weight.numel()
    return kept / total


def time_population(pop, batches, cfg) -> float:
    start = time.perf_counter()
    for x, y in batches:
        pop.train_step(x, y, cfg)
    return (time.perf_counter() - start) / len(batches)


def time_one_net(state, masks, data, steps: int, cfg) -> float:
    model = models.LeNet()
    model.load_state_dict(state)
    techniques.apply_masks(model, masks)
    idx = datasets.split(60000, 12000, 0).train_idx[: steps * BATCH]
    start = time.perf_counter()
    training.train(model, data, datasets.Split(idx, idx[:1]), cfg, seed=0, iteration=1)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30, help="SGD steps per timing")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each path is kept")
    ap.add_argument("--train-steps", type=int, default=400, help="SGD steps of the net whose masks are used")
    ap.add_argument("--iterations", default="0,5,10,15,20")
    ap.add_argument("--all-iterations", action="store_true", help="measure the paper population at 0..20")
    ap.add_argument("--populations", default=",".join(POPULATIONS))
    ap.add_argument("--ceiling", action="store_true",
                    help="also time the paper population without its structured members (sparse step): the most "
                         "that making structured members free (e.g. as smaller dense nets) could give")
    ap.add_argument("--structured-dim", type=int, default=0, choices=(0, 1),
                    help="what structured techniques remove: 0 output channels/units (the CPU profile), 1 inputs "
                         "(the released code: configs/authors_lenet_mnist.yaml)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = args.members
    data = datasets.load("mnist", "cpu")
    state = trained_state(data, args.train_steps)
    seqs = mask_sequences(state, 20, args.structured_dim)
    cfg = TrainingConfig(epochs=1, batch_size=BATCH, lr=0.01)
    idx = datasets.split(60000, 12000, 0).train_idx
    batches = [(data.train_x[idx[i * BATCH:(i + 1) * BATCH]], data.train_y[idx[i * BATCH:(i + 1) * BATCH]])
               for i in range(args.steps)]
    shown = [int(k) for k in args.iterations.split(",")]
    cases = [(name, k) for name in args.populations.split(",") for k in shown]
    if args.all_iterations:
        cases += [(name, k) for name in args.populations.split(",") if name in ("paper", "authors")
                  for k in range(21) if k not in shown]
    paper_ks = sorted(k for name, k in cases if name == "paper")
    best: dict[tuple, float] = {}
    pops = {}
    for name, k in cases:
        states, masks = members(state, seqs, POPULATIONS[name], k, m)
        pops[name, k] = (density(masks), {s: population.Population(states, masks, "cpu", sparse=s == "sparse")
                                          for s in ("dense", "sparse")})
        for pop in pops[name, k][1].values():
            time_population(pop, batches[:3], cfg)  # warm-up: buffers, the kernels' library
    rest_m = m * len(REST) // len(PAPER)
    rest = {k: population.Population(*members(state, seqs, REST, k, rest_m), "cpu", sparse=True)
            for k in (paper_ks if args.ceiling else [])}
    for pop in rest.values():
        time_population(pop, batches[:3], cfg)
    one_net = {}
    for _ in range(args.repeat):
        for k in (0, 10):
            one_net[k] = min(one_net.get(k, float("inf")), time_one_net(state, seqs["l1_us"][k], data, args.steps, cfg))
        for case in cases:
            for path, pop in pops[case][1].items():
                best[case + (path,)] = min(best.get(case + (path,), float("inf")), time_population(pop, batches, cfg))
        for k, pop in rest.items():
            best["rest", k] = min(best.get(("rest", k), float("inf")), time_population(pop, batches, cfg))
    gemm = sgemm_gflops()
    onenet_rate = 1 / min(one_net.values())
    print(f"torch {torch.__version__}, {args.threads} thread(s), M={m}, batch {BATCH}, best of {args.repeat} x "
          f"{args.steps} steps; masks of a LeNet trained {args.train_steps} steps; structured along dim "
          f"{args.structured_dim}")
    print(f"one-net loop: {1 / one_net[0]:.0f} model-steps/s at iteration 0, {1 / one_net[10]:.0f} at 10 (L1 US "
          f"masks); sgemm 2048x2048: {gemm:.1f} GFLOP/s")
    print(f"{'population':<13} {'iter':>4} {'density':>8} {'dense m-steps/s':>16} {'sparse m-steps/s':>17} "
          f"{'sparse/dense':>13} {'sparse/one-net':>15}")
    for name, k in sorted(key[:2] for key in best if len(key) == 3 and key[2] == "dense"):
        d, s = best[name, k, "dense"], best[name, k, "sparse"]
        print(f"{name:<13} {k:>4} {pops[name, k][0]:>8.3f} {m / d:>16.0f} {m / s:>17.0f} {d / s:>12.2f}x "
              f"{m / s / onenet_rate:>14.2f}x")
    for name in args.populations.split(","):
        ks = sorted(key[1] for key in best if len(key) == 3 and key[0] == name and key[2] == "dense")
        if len(ks) < 2:
            continue
        dense = [_interp(ks, [best[name, k, "dense"] for k in ks], i) for i in range(21)]
        sparse = [_interp(ks, [best[name, k, "sparse"] for k in ks], i) for i in range(21)]
        print(f"{name}: over a 21-training run ({'measured' if len(ks) == 21 else 'interpolated'} at "
              f"{len(ks)} iterations) sparse/dense {sum(dense) / sum(sparse):.2f}x, sparse/one-net "
              f"{21 * m / sum(sparse) / onenet_rate:.2f}x, dense/one-net {21 * m / sum(dense) / onenet_rate:.2f}x")
    if rest:
        print(f"ceiling: the paper population's {rest_m} non-structured members alone (sparse step), as if its "
              f"{m - rest_m} structured members cost nothing; dense(paper, M={m}) / sparse(rest, M={rest_m}):")
        print("  " + ", ".join(f"{k}: {best['paper', k, 'dense'] / best['rest', k]:.2f}x" for k in paper_ks))
        dense = [_interp(paper_ks, [best["paper", k, "dense"] for k in paper_ks], i) for i in range(21)]
        free = [_interp(paper_ks, [best["rest", k] for k in paper_ks], i) for i in range(21)]
        print(f"  over a 21-training run: {sum(dense) / sum(free):.2f}x the dense fused step, "
              f"{21 * m / sum(free) / onenet_rate:.2f}x the one-net loop")


def _interp(xs, ys, x):
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[0] if x < xs[0] else ys[-1]


if __name__ == "__main__":
    main()
