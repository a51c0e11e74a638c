"""The experiment runner: for every (technique, reinit, seed) train dense, then prune / reinit / retrain.

One run = ``iterations + 1`` trainings. Between trainings the whole state of a run is plain tensors
(trained weights + masks), kept in the run store's checkpoint, so a run killed at any moment resumes
from its last finished training and ends exactly as an uninterrupted one would.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import datasets, models, reinit, store, techniques, training
from .config import ExperimentConfig, RunConfig
from .seeds import derive_seed


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use --device cpu")
    return name


def choose_trainer(cfg: ExperimentConfig, device: str, n_pending: int) -> str:
    """'population' on a GPU for models that train identically in a population; 'single' on the CPU.

    On 2 CPU cores the population path is about 1.5x faster per step for LeNet (1.26x end to end,
    benchmarks/population.py), but a member's rounding depends on the population it trains in (logits
    differ by ~1e-5 between a population of 4 and of 1), so a resumed population run equals an
    uninterrupted one only up to float tolerance. On the CPU the default keeps resumes bit-identical;
    ``--trainer population`` takes the speed-up. On a GPU, where the population is the difference
    between hours and minutes, it is the default.
    """
    if cfg.trainer != "auto":
        return cfg.trainer
    if device.startswith("cuda") and cfg.arch in models.POPULATION_SAFE and n_pending > 1:
        return "population"
    return "single"


# ----------------------------------------------------------------------------- shared by both trainers


@dataclass
class RunData:
    data: datasets.Tensors
    split: datasets.Split
    test_x: torch.Tensor
    test_y: torch.Tensor


def run_data(rc: RunConfig, device: str) -> RunData:
    data = datasets.load(rc.dataset, device, rc.data.input_size, rc.data.channels)
    sp = datasets.split(len(data.train_y), rc.data.val_size, rc.seed, rc.data.train_subset, rc.data.val_subset)
    n_test = rc.data.test_subset or len(data.test_y)
    return RunData(data, sp, data.test_x[:n_test], data.test_y[:n_test])


def in_channels(rc: RunConfig) -> int:
    if rc.data.channels:
        return rc.data.channels
    return 3 if rc.dataset == "cifar10" else 1


def initial_state(rc: RunConfig) -> dict[str, torch.Tensor]:
    """Default PyTorch init, seeded by the run's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(rc.seed, "init"))
        model = models.build(rc.arch, 10, in_channels(rc))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build_model(rc: RunConfig, state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None):
    model = models.build(rc.arch, 10, in_channels(rc))
    model.load_state_dict(state)
    return techniques.apply_masks(model, masks)


def next_start(rc: RunConfig, iteration: int, init, trained, masks, rewind_point):
    """Masks and starting state of training ``iteration`` (0 = dense)."""
    if iteration == 0:
        return None, init
    new_masks = techniques.prune_step(
        rc.arch, trained, masks, rc.technique, rc.prune_fraction, seed=rc.seed, iteration=iteration,
        structured_dim=rc.structured_dim, output_layer=rc.output_layer,
        output_structured_dim=rc.output_structured_dim, in_channels=in_channels(rc))
    ctx = reinit.ReinitContext(rc.arch, rc.seed, iteration, init, trained, rewind_point,
                               in_channels=in_channels(rc))
    return new_masks, reinit.starting_state(rc.reinit, ctx, new_masks)


def finish_training(rc: RunConfig, model, rd: RunData, stats: dict, iteration: int):
    """Evaluate a trained model: (trained state, stored record, metrics)."""
    state = techniques.effective_state(model)
    state = {k: v.cpu() for k, v in state.items()}
    all_masks = techniques.get_masks(model)
    val = training.evaluate(model, rd.data.train_x[rd.split.val_idx.to(rd.data.train_x.device)],
                            rd.data.train_y[rd.split.val_idx.to(rd.data.train_y.device)])
    test = training.evaluate(model, rd.test_x, rd.test_y)
    remaining = techniques.remaining(all_masks)
    total = sum(m.numel() for m in all_masks.values())
    n_bias = sum(v.numel() for k, v in state.items() if not k.endswith(".weight") or k[:-7] not in all_masks)
    keep = rc.store.weights
    if keep == "all":
        weights = state
    elif keep == "none":
        weights = {}
    else:
        weights = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] in keep}
    record = {
        "iteration": iteration,
        "masks": all_masks,
        "weights": weights,
        "logits": test.logits if rc.store.logits else None,
        "predictions": test.logits.argmax(1).to(torch.uint8 if test.logits.shape[1] <= 256 else torch.int64),
        "targets": rd.test_y.cpu().to(torch.uint8 if test.logits.shape[1] <= 256 else torch.int64),
    }
    metrics = {
        "iteration": iteration,
        "sparsity": 1.0 - sum(remaining.values()) / total,
        "weights_remaining": sum(remaining.values()),
        "params_remaining": sum(remaining.values()) + n_bias,
        "remaining": remaining,
        "val_acc": round(100.0 * val.accuracy, 6), "val_loss": val.loss,
        "test_acc": round(100.0 * test.accuracy, 6), "test_loss": test.loss,
        "train_loss": stats["train_loss"], "seconds": stats["seconds"],
    }
    return state, record, metrics


def log_line(rc: RunConfig, metrics: dict) -> str:
    return (f"{rc.technique:>13} {rc.reinit:<8} s{rc.seed} it {metrics['iteration']:02d}/{rc.iterations:02d}"
            f"  {100 * (1 - metrics['sparsity']):5.1f}% left  val {metrics['val_acc']:5.2f}"
            f"  test {metrics['test_acc']:5.2f}  loss {metrics['train_loss']:.3f}  {metrics['seconds']:.1f}s")


# ----------------------------------------------------------------------------- one run at a time


def run_single(rc: RunConfig, root: Path, device: str, bar=None, say=print) -> None:
    st = store.RunStore(root, rc)
    st.begin()
    rd = run_data(rc, device)
    ckpt = st.resume()
    if ckpt is None:
        init = initial_state(rc)
        st.save_init(init)
        first, trained, masks = 0, None, None
    else:
        init = st.load_init()
        first, trained, masks = ckpt["iteration"] + 1, ckpt["state"], ckpt["masks"]
    rewind_point = st.load_rewind_point()
    for k in range(first, rc.iterations + 1):
        masks, start = next_start(rc, k, init, trained, masks, rewind_point)
        model = build_model(rc, start, masks).to(device)
        on_epoch = None
        if k == 0 and rc.reinit == "late_rewind":
            def on_epoch(epoch, m):  # noqa: E306
                if epoch == rc.rewind_epoch:
                    st.save_rewind_point({key: v.cpu() for key, v in techniques.effective_state(m).items()})
        stats = training.train(model, rd.data, rd.split, rc.training, seed=rc.seed, iteration=k, on_epoch_end=on_epoch)
        if k == 0 and rc.reinit == "late_rewind":
            rewind_point = st.load_rewind_point()
        trained, record, metrics = finish_training(rc, model, rd, stats, k)
        masks = record["masks"]  # every layer's mask, exactly what a resumed run reads from the checkpoint
        st.save_training(k, trained, masks, record, metrics)
        say(log_line(rc, metrics))
        if bar is not None:
            bar.update(1)
    st.mark_done({"iterations": rc.iterations})


# ----------------------------------------------------------------------------- an experiment


def run_experiment(cfg: ExperimentConfig, results: Path, source: str = "", quiet: bool = False,
                   trainer: str | None = None, device: str | None = None) -> dict:
    """Run (or resume) every run of ``cfg`` into ``results``. Returns a small summary."""
    device = resolve_device(device or cfg.device)
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    store.write_experiment(results, cfg, source, device)
    runs = cfg.runs()
    pending = [rc for rc in runs if not store.RunStore(results, rc).is_done()]
    trainer = trainer or choose_trainer(cfg, device, len(pending))
    say = (lambda *_: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    say(f"{cfg.name}: {len(runs)} runs, {len(runs) - len(pending)} already finished, "
        f"{len(pending)} to train on {device} ({trainer} trainer) -> {results}")
    total = sum(rc.iterations + 1 - len(store.RunStore(results, rc).completed()) for rc in pending)
    start = time.perf_counter()
    with tqdm(total=total, unit="training", disable=quiet or total == 0, file=sys.stderr,
              dynamic_ncols=True, leave=False) as bar:
        if trainer == "population" and pending:
            from . import population
            population.run_population(pending, results, device, bar=bar, say=say)
        else:
            for rc in pending:
                run_single(rc, results, device, bar=bar, say=say)
    seconds = time.perf_counter() - start
    if pending:
        store.write_experiment(results, cfg, source, device, {"last_run_seconds": round(seconds, 1), "trainer": trainer})
    say(f"{cfg.name}: done in {seconds:.1f}s -> {results}")
    return {"runs": len(runs), "trained": len(pending), "seconds": seconds, "trainer": trainer}
