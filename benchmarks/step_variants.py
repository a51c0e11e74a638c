"""Which population step is fastest on this CPU: the choices behind ``pruning/population.py``, timed side by side.

    python benchmarks/step_variants.py                 # 1 thread, M=10 (one worker of the paper CPU config)
    python benchmarks/step_variants.py --threads 2 --members 18

M LeNets on one shared batch of 32 MNIST images (random weights and half-pruned masks), one full SGD step
(forward, backward, update) per call. The variants, all but the last through autograd:

- ``nchw``: conv1 output and conv2 in the default NCHW memory order;
- ``channels_last``: conv1's output converted to channels_last before pooling, so pooling and the
  grouped conv2 run in NHWC (the population's step before it was written out by hand);
- ``amax_pool``: channels_last, with 2x2 max pooling as a reshape + ``amax`` instead of ``max_pool2d``;
- ``unfold_conv2``: conv2 as ``unfold`` (im2col) + one batched matrix product per member instead of a
  grouped convolution;
- ``pool_then_relu``: channels_last, ReLU after pooling instead of before (same values, fewer elements);
- ``hand_written_torch``: ``population.Population.train_step`` with its conv blocks in torch
  (``lenet_convs.Torch``, the path on GPUs or without a C++ compiler): conv1 as one matrix product over the
  shared patches, ReLU after pooling, forward and backward by hand;
- ``hand_written``: the same step with both conv blocks in the fused C++ kernels (``lenet_convs.Fused``),
  the step the population trainer takes on the CPU.

Prints ms per step and model-steps/s per variant, best of ``--repeat`` rounds.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pruning.nets import datasets
from pruning.population import lenet_convs, batched as population
from pruning.nets.config import TrainingConfig

VARIANTS = ("nchw", "channels_last", "amax_pool", "unfold_conv2", "pool_then_relu", "hand_written_torch",
            "hand_written")


def make(m: int):
    g = torch.Generator().manual_seed(0)

    def p(*shape):
        return (torch.randn(*shape, generator=g) * 0.1).requires_grad_(True)

    params = dict(w1=p(m, 6, 1, 3, 3), b1=p(m, 6), w2=p(m, 16, 6, 3, 3), b2=p(m, 16), w3=p(m, 120, 400),
                  b3=p(m, 120), w4=p(m, 84, 120), b4=p(m, 84), w5=p(m, 10, 84), b5=p(m, 10))
    masks = {k: (torch.rand(v.shape, generator=g) > 0.5).float() for k, v in params.items() if k[0] == "w"}
    return params, masks


def pool(h, variant):
    if variant != "amax_pool":
        return F.max_pool2d(h, 2)
    n, c, hh, ww = h.shape
    h = h[:, :, : hh // 2 * 2, : ww // 2 * 2]
    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).amax((3, 5))


def act_pool(h, variant):
    return F.relu(pool(h, variant)) if variant == "pool_then_relu" else pool(F.relu(h), variant)


def forward(x, params, masks, m, variant):
    b = x.shape[0]
    w = {k: params[k] * masks[k] for k in masks}
    h = F.conv2d(x, w["w1"].reshape(m * 6, 1, 3, 3), params["b1"].reshape(-1))
    if variant != "nchw":
        h = h.contiguous(memory_format=torch.channels_last)
    h = act_pool(h, variant)
    if variant == "unfold_conv2":
        u = F.unfold(h, 3).view(b, m, 54, 121).permute(1, 2, 0, 3).reshape(m, 54, b * 121)
        h = torch.baddbmm(params["b2"].unsqueeze(2), w["w2"].reshape(m, 16, 54), u)
        h = h.view(m, 16, b, 11, 11).permute(2, 0, 1, 3, 4).reshape(b, m * 16, 11, 11)
    else:
        h = F.conv2d(h, w["w2"].reshape(m * 16, 6, 3, 3), params["b2"].reshape(-1), groups=m)
    h = act_pool(h, variant)
    h = h.contiguous().reshape(b, m, 400).transpose(0, 1)
    for i in (3, 4, 5):
        h = torch.baddbmm(params[f"b{i}"].unsqueeze(1), h, w[f"w{i}"].transpose(1, 2))
        if i != 5:
            h = F.relu(h)
    return h


def as_population(params, masks, m) -> population.Population:
    """The same members as ``population.Population`` (its layer names; weights masked as it keeps them)."""
    names = {"1": "conv1", "2": "conv2", "3": "fc1", "4": "fc2", "5": "fc3"}
    states = [{f"{names[k[1]]}.{'weight' if k[0] == 'w' else 'bias'}": v[i].detach().clone() for k, v in params.items()}
              for i in range(m)]
    member_masks = [{names[k[1]]: masks[k][i] > 0 for k in masks} for i in range(m)]
    return population.Population(states, member_masks, "cpu")


def step(x, y, params, masks, m, variant):
    if variant.startswith("hand_written"):
        return params.train_step(x, y, TrainingConfig(epochs=1, batch_size=x.shape[0], lr=0.01))
    logits = forward(x, params, masks, m, variant)
    loss = F.cross_entropy(logits.reshape(m * x.shape[0], -1), y.repeat(m), reduction="none").view(m, -1).mean(1).sum()
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    with torch.no_grad():
        torch._foreach_add_([params[n] for n in names], grads, alpha=-0.01)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = args.members
    data = datasets.load("mnist", "cpu")
    x, y = data.train_x[:32].clone(), data.train_y[:32].clone()
    best = {}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            params, masks = make(m)
            if variant.startswith("hand_written"):
                params = as_population(params, masks, m)
                if variant == "hand_written_torch":
                    params.convs = lenet_convs.Torch()
            for _ in range(10):
                step(x, y, params, masks, m, variant)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x, y, params, masks, m, variant)
            best[variant] = min(best.get(variant, float("inf")), (time.perf_counter() - start) / args.steps)
    print(f"torch {torch.__version__}, {args.threads} thread(s), M={m} LeNets on a shared batch of 32 MNIST images, "
          f"best of {args.repeat} x {args.steps} steps")
    for variant in VARIANTS:
        print(f"{variant:<20} {1e3 * best[variant]:7.2f} ms/step {m / best[variant]:8.0f} model-steps/s "
              f"{best['nchw'] / best[variant]:6.2f}x nchw")


if __name__ == "__main__":
    main()
