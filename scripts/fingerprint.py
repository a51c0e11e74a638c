"""The bits a run store holds, as one hash: do two machines (or two settings) train the same bits?

    python scripts/fingerprint.py results/smoke
    python scripts/fingerprint.py results/smoke --by-iteration

Hashes every stored tensor of every training (masks, weights, logits, predictions; the run's
technique, reinit mode, seed and iteration name it) in a fixed order, so the hash depends on the
trained values only, not on file timestamps, paths or timings. Two stores with the same hash hold
bit-identical trainings. ``--by-iteration`` prints one hash per pruning iteration as well: where two
machines first differ. ``docs/benchmarks.md`` records the smoke config's hash on the machines it was run on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import torch


def training_hashes(folder: Path) -> dict[tuple, str]:
    """{(technique, reinit, seed, iteration): sha256 of the training's tensors} of the runs experiment.json lists."""
    wanted = {r["hash"] for r in json.loads((folder / "experiment.json").read_text())["runs"]}
    out = {}
    for run_dir in sorted(folder.glob("run_*")):
        if run_dir.name[len("run_"):] not in wanted or not (run_dir / "config.json").exists():
            continue
        cfg = json.loads((run_dir / "config.json").read_text())["config"]
        for pt in sorted((run_dir / "trainings").glob("[0-9][0-9][0-9].pt")):
            record = torch.load(pt, map_location="cpu", weights_only=True)
            h = hashlib.sha256()
            for key in sorted(record):
                value = record[key]
                items = sorted(value.items()) if isinstance(value, dict) else [("", value)]
                for name, tensor in items:
                    if isinstance(tensor, torch.Tensor):
                        h.update(f"{key}/{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                        h.update(tensor.contiguous().numpy().tobytes())
            out[cfg["technique"], cfg["reinit"], cfg["seed"], int(pt.stem)] = h.hexdigest()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results folder (results/<config name>)")
    p.add_argument("--by-iteration", action="store_true", help="also one hash per pruning iteration")
    args = p.parse_args(argv)
    if not (args.results / "experiment.json").is_file():
        raise SystemExit(f"{args.results} is not a results folder (no experiment.json); run `python -m pruning run` first")
    hashes = training_hashes(args.results)
    total = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()
    print(f"{len(hashes)} trainings, sha256 {total[:16]}")
    if args.by_iteration:
        by_it = defaultdict(list)
        for (t, r, s, it), v in sorted(hashes.items()):
            by_it[it].append(f"{t},{r},{s}={v}")
        for it, items in sorted(by_it.items()):
            print(f"iteration {it}: {hashlib.sha256(chr(10).join(items).encode()).hexdigest()[:16]} ({len(items)})")


if __name__ == "__main__":
    main()
