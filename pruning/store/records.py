"""What one training stores on disk: masks bit-packed (8 per byte), only the layers the config keeps.

A LeNet training's record is small either way, but VGG11 has about 129M prunable weights: as
booleans its masks alone are 129 MB per training, bit-packed 16 MB, and the conv layers' masks
1.2 MB. :func:`pack` turns a record as the trainers describe it (``masks`` {layer: bool tensor})
into the stored form (``packed_masks`` {layer: uint8 tensor}, ``mask_shapes`` {layer: shape}),
keeping the layers ``keep`` names; :func:`unpack` turns it back, and reads records stored before
packing existed (plain ``masks``) unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import UserError

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)  # numpy.packbits' big-endian order


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 entries per byte (the last byte zero-padded); ``unpack_bits`` inverts it."""
    flat = mask.detach().reshape(-1).to("cpu", torch.bool)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8).to(torch.uint8) * _BITS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape) -> torch.Tensor:
    """``pack_bits`` inverted: the bool tensor of ``shape`` (numpy's unpackbits: the first entry in the high bit)."""
    n = math.prod(shape)
    bits = np.unpackbits(np.ascontiguousarray(packed.reshape(-1).numpy(), dtype=np.uint8), count=n).astype(bool)
    return torch.from_numpy(bits).reshape(tuple(shape))


def select(names, keep, what: str) -> list[str]:
    """The names ``keep`` ("all", "none" or a list of layer names) selects, in their order; an unknown
    layer name is a one-line error that lists the known ones."""
    names = list(names)
    if keep == "all":
        return names
    if keep == "none":
        return []
    unknown = [k for k in keep if k not in names]
    if unknown:
        raise UserError(f"store.{what} names unknown layer(s) {unknown}; this architecture's layers are {names}")
    return [n for n in names if n in keep]


def pack_masks(masks: dict[str, torch.Tensor], keep="all") -> dict:
    layers = select(masks, keep, "masks")
    return {"packed_masks": {n: pack_bits(masks[n]) for n in layers},
            "mask_shapes": {n: list(masks[n].shape) for n in layers}}


def unpack_masks(stored: dict) -> dict[str, torch.Tensor]:
    return {n: unpack_bits(p, stored["mask_shapes"][n]) for n, p in stored["packed_masks"].items()}


def pack(record: dict, keep="all") -> dict:
    """The stored form of a training's record: its masks of the layers ``keep`` selects, bit-packed."""
    out = {k: v for k, v in record.items() if k != "masks"}
    out.update(pack_masks(record["masks"], keep))
    return out


def unpack(stored: dict) -> dict:
    """A stored record as the analyses read it: ``masks`` {layer: bool tensor} of the layers stored."""
    if "packed_masks" not in stored:
        return stored
    out = {k: v for k, v in stored.items() if k not in ("packed_masks", "mask_shapes")}
    out["masks"] = unpack_masks(stored)
    return out
