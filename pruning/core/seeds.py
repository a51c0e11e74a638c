"""Every random stream is derived from (seed, what, iteration), never from how many numbers came before.

This is what makes a resumed run equal an uninterrupted one, and random masks independent of
how long training ran.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts) -> int:
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *parts) -> torch.Generator:
    """A CPU generator for (seed, *parts)."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))
