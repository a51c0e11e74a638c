"""Architectures: one registry, name -> constructor(num_classes, in_channels)."""
from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """The PyTorch pruning-tutorial LeNet [F]: 59,838 weights + 236 biases = 60,074 parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = nn.functional.relu(self.fc1(x))
        x = nn.functional.relu(self.fc2(x))
        return self.fc3(x)


def _alexnet(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.alexnet(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    return model


def _vgg11(num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.vgg11(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    return model


MODELS = {
    "lenet": LeNet,
    "alexnet": _alexnet,
    "vgg11": _vgg11,
}

# Smallest input side each architecture accepts (torchvision's AlexNet needs >= 63 px).
MIN_INPUT_SIZE = {"lenet": 28, "alexnet": 63, "vgg11": 32}

# Models without dropout or batch norm train identically one at a time or in a population.
POPULATION_SAFE = {"lenet"}


def input_error(arch: str, in_channels: int, side: int) -> str | None:
    """Why ``arch`` cannot take (in_channels, side, side) images, or None when it can.

    The model is built and run on the meta device: every shape is checked, nothing is computed or allocated.
    """
    if side < MIN_INPUT_SIZE.get(arch, 1):
        return f"{arch} needs images of at least {MIN_INPUT_SIZE[arch]}x{MIN_INPUT_SIZE[arch]} px, got {side}x{side}"
    try:
        with torch.device("meta"):
            build_meta(arch, in_channels)(torch.zeros(1, in_channels, side, side))
    except RuntimeError as exc:
        return f"{arch} cannot take {in_channels}x{side}x{side} images ({str(exc).splitlines()[0][:120]})"
    return None


def build_meta(arch: str, in_channels: int = 1) -> nn.Module:
    """``arch`` on the meta device: its layers and shapes, with no memory allocated (VGG11 has 129M weights)."""
    with torch.device("meta"):
        return build(arch, 10, in_channels)


def build(arch: str, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return MODELS[arch](num_classes, in_channels)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and linear layer, in forward order (the last one is the output layer)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
