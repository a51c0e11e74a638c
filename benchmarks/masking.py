"""Time per LeNet/MNIST epoch at batch 32, unpruned vs pruned (torch.nn.utils.prune masks), in one run.

    .venv/bin/python benchmarks/masking.py [--device cpu|cuda] [--fraction 1.0] [--repeats 2]
    .venv/bin/python benchmarks/masking.py --arch alexnet|vgg11 [--steps 6]

With ``--arch``: ms per batch-32 SGD step (momentum 0.9) of AlexNet at 63x63 or VGG11 at 32x32, unmasked,
masked through prune's forward hooks (weight = weight_orig * weight_mask in every pass) and masked the way
``training.train`` does it (``training.fold_masks``: a plain weight whose gradient is masked), side by side.

The pruned net carries prune's forward pre-hooks (weight = weight_orig * weight_mask) after 5 L1 US steps
(32.8% of weights left); the ratio pruned / unpruned is the masking overhead. --fraction times part of an
epoch and scales it up (for a quick look); the default times whole epochs.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from pruning.nets import datasets, techniques, training
from pruning.execution import runner
from pruning.nets.config import RunConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fraction", type=float, default=1.0, help="part of the 48k-image epoch to time")
    p.add_argument("--repeats", type=int, default=2, help="best of N")
    p.add_argument("--arch", choices=["alexnet", "vgg11"], help="time one step of a big net instead (see above)")
    p.add_argument("--steps", type=int, default=6, help="--arch: timed steps per variant (after 2 warm-up steps)")
    args = p.parse_args()
    if args.arch:
        return big_net(args.arch, args.steps, args.device)

    rc = RunConfig()
    rc.training.epochs = 1
    data = datasets.load("mnist", args.device)
    sp = datasets.split(60000, 12000, seed=0)
    n = int(len(sp.train_idx) * args.fraction)
    sp = datasets.Split(sp.train_idx[:n], sp.val_idx)
    init = runner.initial_state(rc)
    masks = None
    for it in range(1, 6):
        masks = techniques.prune_step("lenet", init, masks, "l1_us", 0.2, seed=0, iteration=it)
    left = sum(techniques.remaining(masks).values()) / 59838

    def epoch_seconds(with_masks) -> float:
        best = float("inf")
        for r in range(args.repeats + 1):  # the first pass warms up
            model = runner.build_model(rc, init, masks if with_masks else None).to(args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            training.train(model, data, sp, rc.training, seed=0, iteration=r)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if r:
                best = min(best, (time.perf_counter() - t) / args.fraction)
        return best

    plain = epoch_seconds(False)
    pruned = epoch_seconds(True)
    steps = -(-48000 // 32)
    print(f"device {args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}")
    print(f"LeNet/MNIST, batch 32, {steps} steps per 48k-image epoch (timed: {args.fraction:.0%} of an epoch, "
          f"best of {args.repeats})")
    print(f"unpruned           {plain:7.2f} s/epoch  {1000 * plain / steps:6.3f} ms/step")
    print(f"pruned ({left:.1%} left) {pruned:7.2f} s/epoch  {1000 * pruned / steps:6.3f} ms/step")
    print(f"masking overhead: pruned / unpruned = {pruned / plain:.3f}")


def big_net(arch: str, steps: int, device: str) -> None:
    from pruning.nets import models

    side = {"alexnet": 63, "vgg11": 32}[arch]
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in models.build(arch, 10, 1).state_dict().items()}
    masks = techniques.prune_step(arch, init, None, "l1_us", 0.2, seed=0, iteration=1)
    x, y = torch.randn(32, 1, side, side, device=device), torch.randint(0, 10, (32,), device=device)

    def step_ms(kind: str) -> float:
        model = models.build(arch, 10, 1)
        model.load_state_dict(init)
        if kind != "unmasked":
            techniques.apply_masks(model, masks)
        model.to(device)
        folded = training.fold_masks(model) if kind == "folded" else []
        masked = [(module.weight, mask) for module, mask in folded]
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for i in range(steps + 2):
            if i == 2:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for weight, mask in masked:
                weight.grad.mul_(mask)
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - t) / steps

    ms = {kind: step_ms(kind) for kind in ("unmasked", "hooks", "folded")}
    print(f"device {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}")
    print(f"{arch} at {side}x{side}, batch 32, one L1 US step (80% of each layer left), {steps} timed steps each")
    for kind, value in ms.items():
        print(f"{kind:9} {value:8.1f} ms/step")
    print(f"hooks / folded = {ms['hooks'] / ms['folded']:.2f}x; folded / unmasked = {ms['folded'] / ms['unmasked']:.2f}")


if __name__ == "__main__":
    main()
