"""Connectivity (question 5): conv kernels across iterations, emptied kernels, effective sparsity."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .table import ParameterError, _folder, _np, check, record
from .weights import _iterations, _layer_weight, _run_files

def filter_kernels(table: pd.DataFrame, technique: str, reinit: str = "rewind", seed: int = 0, layer: str = "conv1",
                   iterations=None) -> dict[int, torch.Tensor]:
    """iteration -> trained weights * mask of conv ``layer`` of one run, shape (out, in, k, k)."""
    check(table, layer=layer)
    run = _run_files(table, technique, reinit, seed)
    its = _iterations(run, iterations, table, technique, reinit, seed)
    out = {}
    for it in its:
        w = _layer_weight(record(run[it][0]), layer, _folder(table))
        if w.dim() != 4:
            raise ParameterError(f"layer '{layer}' is not a conv layer (its weight has shape {tuple(w.shape)})")
        out[it] = w.clone()
    return out


def empty_kernels(kernels: torch.Tensor) -> dict:
    """Counts of emptied connectivity in a conv weight (out, in, k, k).

    ``kernels``/``empty_kernels``: (out, in) kernels in all / all of whose k x k entries are 0;
    ``filters``/``empty_filters``: output channels in all / whose whole (in, k, k) weight is 0;
    ``inputs``/``empty_inputs``: input channels in all / that no output channel reads.
    """
    if kernels.dim() != 4:
        raise ValueError(f"expected a conv weight (out, in, k, k), got shape {tuple(kernels.shape)}")
    nonzero = kernels != 0
    per_kernel = nonzero.flatten(2).any(2)  # (out, in)
    return {"kernels": per_kernel.numel(), "empty_kernels": int((~per_kernel).sum()),
            "filters": kernels.shape[0], "empty_filters": int((~per_kernel.any(1)).sum()),
            "inputs": kernels.shape[1], "empty_inputs": int((~per_kernel.any(0)).sum())}


def effective_sparsity(masks: dict[str, torch.Tensor], layers_in_order: list[str] | None = None) -> dict[str, float]:
    """Fraction of weights that are pruned or cut off, per layer and "all", for a plain feed-forward chain.

    A kept weight is cut off when its input unit (channel) is unreachable from the network's input,
    or its output unit (channel) reaches no network output, through kept weights; unreachability
    cascades through the layers. Biases are ignored: a unit with no incoming weight outputs a
    constant, which the next layer's bias can absorb, so its outgoing weights are removable too.
    ``layers_in_order`` (default: the order of ``masks``) must chain: each layer's input size equals
    the previous layer's output size, or a multiple of it (a flatten of channels x positions, as
    LeNet's conv2 (16) -> fc1 (400 = 16 x 5 x 5)).
    """
    names = list(layers_in_order or masks)
    full = [_np(masks[n]).astype(bool, copy=False) for n in names]
    conn = [m.reshape(m.shape[0], m.shape[1], -1).any(2) if m.ndim > 2 else m for m in full]  # (out, in)
    repeat = []  # for each layer after the first: how many of its inputs each previous output feeds
    for prev, cur, name_p, name_c in zip(conn, conn[1:], names, names[1:]):
        if cur.shape[1] % prev.shape[0]:
            raise ValueError(f"layers {name_p} ({prev.shape[0]} outputs) and {name_c} ({cur.shape[1]} inputs) "
                             f"do not chain")
        repeat.append(cur.shape[1] // prev.shape[0])
    # forward: which input units of each layer are reachable from the network's input
    reach_in = [np.ones(conn[0].shape[1], dtype=bool)]
    for i, c in enumerate(conn[:-1]):
        reach_out = (c & reach_in[i]).any(1)
        reach_in.append(np.repeat(reach_out, repeat[i]))
    # backward: which output units of each layer reach the network's output
    useful_out = [None] * len(conn)
    useful_out[-1] = np.ones(conn[-1].shape[0], dtype=bool)
    for i in range(len(conn) - 1, 0, -1):
        useful_in = (conn[i] & useful_out[i][:, None]).any(0)
        useful_out[i - 1] = useful_in.reshape(-1, repeat[i - 1]).any(1)
    out, kept_total, size_total = {}, 0, 0
    for i, (name, m) in enumerate(zip(names, full)):
        alive = useful_out[i][:, None] & reach_in[i][None, :]  # (out, in)
        kept = int(np.count_nonzero(m.reshape(m.shape[0], m.shape[1], -1) & alive[:, :, None])) if m.ndim > 2 \
            else int(np.count_nonzero(m & alive))
        out[name] = 1.0 - kept / m.size if m.size else 0.0
        kept_total += kept
        size_total += m.size
    out["all"] = 1.0 - kept_total / size_total if size_total else 0.0
    return out


def effective_sparsity_curve(table: pd.DataFrame, reinit: str = "rewind") -> pd.DataFrame:
    """Per technique, seed and iteration: sparsity (pruned) and effective_sparsity (pruned or cut off)."""
    check(table, reinit=reinit)
    sel = table[table["reinit"] == reinit]
    rows = []
    for tech, seed, it, sp, f in zip(sel["technique"], sel["seed"], sel["iteration"], sel["sparsity"], sel["file"]):
        eff = effective_sparsity(record(f)["masks"])["all"]
        rows.append({"technique": tech, "seed": int(seed), "iteration": int(it), "sparsity": float(sp),
                     "effective_sparsity": eff})
    return pd.DataFrame(rows, columns=["technique", "seed", "iteration", "sparsity", "effective_sparsity"])


def chance_empty_fraction(mask: torch.Tensor) -> float:
    """The fraction of ``mask``'s kernels (out, in, k, k) expected empty if as many entries were pruned at random.

    With a fraction p of the layer's entries pruned, a kernel of n = k*k entries is empty with p**n
    (sampling with replacement; exact enough for layers of thousands of entries).
    """
    pruned = 1.0 - float(mask.float().mean())
    return pruned ** mask[0, 0].numel()


def empty_kernel_curve(table: pd.DataFrame, layer: str, techniques=None) -> pd.DataFrame:
    """Per technique, reinit, seed and iteration: the fraction of conv ``layer``'s kernels whose every entry is
    pruned (``empty``), and the fraction a random mask of the same sparsity would empty (``chance``).

    Read from the stored masks, so it needs ``layer`` among the config's ``store.masks``. Columns:
    technique, reinit, seed, iteration, sparsity (of the layer), kernels, empty_kernels, empty, chance.
    """
    check(table, layer=layer, techniques=techniques)
    sel = table if techniques is None else table[table["technique"].isin(np.atleast_1d(techniques))]
    rows = []
    for tech, mode, seed, it, f in zip(sel["technique"], sel["reinit"], sel["seed"], sel["iteration"], sel["file"]):
        masks = record(f)["masks"]
        if layer not in masks:
            raise ParameterError(f"{_folder(table)} stores no mask of layer '{layer}' (stored: "
                                 f"{', '.join(masks) or 'none'}; see store.masks in the config)")
        mask = masks[layer]
        if mask.dim() != 4:
            raise ParameterError(f"layer '{layer}' is not a conv layer (its mask has shape {tuple(mask.shape)})")
        counts = empty_kernels(mask)
        rows.append({"technique": tech, "reinit": mode, "seed": int(seed), "iteration": int(it),
                     "sparsity": 1.0 - float(mask.float().mean()), "kernels": counts["kernels"],
                     "empty_kernels": counts["empty_kernels"], "empty": counts["empty_kernels"] / counts["kernels"],
                     "chance": chance_empty_fraction(mask)})
    columns = ["technique", "reinit", "seed", "iteration", "sparsity", "kernels", "empty_kernels", "empty", "chance"]
    return pd.DataFrame(rows, columns=columns).sort_values(["technique", "reinit", "seed", "iteration"],
                                                           ignore_index=True)
