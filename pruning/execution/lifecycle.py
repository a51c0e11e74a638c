"""The lifecycle of one run, which every trainer and every executor drives: open or resume, next start, finish.

A run is ``iterations + 1`` trainings. Between trainings its whole state is plain tensors (trained
weights + masks) kept in the run store's checkpoint, so a run killed at any moment resumes from its
last finished training. The trainers (``training.train`` for one net, ``population`` for many) only
turn a starting state into a trained one; everything around that is here:

- :func:`open_run` begins or resumes a run; its dense training (iteration 0) is shared by every run of
  the same seed and training config (see :func:`store.dense_config`): trained once, stored once in
  ``dense_<hash>/`` and linked into each run;
- :func:`next_start` prunes and reinitialises: the masks and starting state of the next training;
- :func:`finish` evaluates a trained model (:mod:`.metrics`), stores its training and moves the run on;
- :func:`train_one` drives a run through the one-net loop (``training.train``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import store
from ..core.seeds import derive_seed
from ..nets import datasets, models, reinit, techniques, training
from ..nets.config import RunConfig
from . import metrics as metrics_


@dataclass
class RunData:
    data: datasets.Tensors
    split: datasets.Split
    test_x: torch.Tensor
    test_y: torch.Tensor


def run_data(rc: RunConfig, device: str) -> RunData:
    """The run's dataset on ``device`` (``datasets.load`` keeps it loaded), its split and test set."""
    data = datasets.load(rc.dataset, device, rc.data.input_size, rc.data.channels, normalize=rc.data.normalize)
    sp = datasets.split(len(data.train_y), rc.data.val_size, rc.seed, rc.data.train_subset, rc.data.val_subset)
    n_test = rc.data.test_subset or len(data.test_y)
    return RunData(data, sp, data.test_x[:n_test], data.test_y[:n_test])


def in_channels(rc: RunConfig) -> int:
    if rc.data.channels:
        return rc.data.channels
    return datasets.NATIVE_SHAPE[rc.dataset][0]


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


# ----------------------------------------------------------------------------- one run between trainings


@dataclass
class Run:
    """One run between two trainings: what a trainer needs to start the next one."""

    rc: RunConfig
    st: store.RunStore
    rd: RunData
    init: dict
    trained: dict | None
    masks: dict | None
    rewind_point: dict | None
    next: int  # the next training to do (0 = dense)
    on_stored: Callable | None = None  # called as on_stored(rc, iteration) after each stored training

    @property
    def finished(self) -> bool:
        return self.next > self.rc.iterations


def open_run(rc: RunConfig, root: Path, device: str, share_dense: bool = True, say=print, on_stored=None) -> Run:
    """Begin or resume ``rc`` in ``root``. With ``share_dense`` its dense training comes from (or first goes
    to) the shared dense store, so the returned run is at training 1 or later. ``on_stored``: see :class:`Run`."""
    st = store.RunStore(root, rc)
    st.begin()
    rd = run_data(rc, device)
    ckpt = st.resume(say)
    if ckpt is None and share_dense and store.dense_shareable(rc):
        dense = open_dense(rc, root, device, say, on_stored)
        st.link_dense(dense.st)
        ckpt = st.resume(say)
    if ckpt is None:
        init = initial_state(rc)
        st.save_init(init)
        return Run(rc, st, rd, init, None, None, None, 0, on_stored)
    run = Run(rc, st, rd, st.load_init(), ckpt["state"], ckpt["masks"], st.load_rewind_point(), ckpt["iteration"] + 1,
              on_stored)
    if run.finished:
        st.mark_done({"iterations": rc.iterations})
    return run


def open_dense(rc: RunConfig, root: Path, device: str, say=print, on_stored=None) -> Run:
    """The shared dense training of ``rc``'s seed and training config, trained here if it is not stored yet."""
    dense = open_run(store.dense_config(rc), root, device, share_dense=False, say=say, on_stored=on_stored)
    if not dense.finished:
        train_one(dense, say)
    return dense


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


def advance(run: Run) -> dict:
    """Prune and reinitialise ``run`` for its next training; sets ``run.masks``, returns the starting state."""
    run.masks, start = next_start(run.rc, run.next, run.init, run.trained, run.masks, run.rewind_point)
    return start


def finish(run: Run, model, stats: dict, say=print, evaluated=None) -> dict:
    """Evaluate and store ``run``'s training ``run.next``; move the run on. ``model``: the trained net (masks
    attached), or None when ``evaluated`` already holds ``describe``'s (state, record, metrics)."""
    k = run.next
    source = stats.pop("prune_source", None)
    run.trained, record, metrics = (evaluated if evaluated is not None else
                                     metrics_.evaluate(run.rc, model, run.rd, stats, k))
    if source is not None:  # training.prune_from_epoch: the next mask reads these weights, not the stored net's
        run.trained = source
    run.masks = record["masks"]  # every layer's mask, exactly what a resumed run reads from the checkpoint
    run.st.save_training(k, run.trained, run.masks, record, metrics)
    say(metrics_.log_line(run.rc, metrics))
    if run.on_stored is not None:
        run.on_stored(run.rc, k)
    run.next = k + 1
    if run.finished:
        run.st.mark_done({"iterations": run.rc.iterations})
    return metrics


def train_one(run: Run, say=print, bar=None, stop: int | None = None) -> None:
    """Every remaining training of ``run`` (those before ``stop``, if given) with the one-net loop."""
    rc, device = run.rc, run.rd.data.train_x.device
    while not run.finished and (stop is None or run.next < stop):
        k = run.next
        start = advance(run)
        model = build_model(rc, start, run.masks).to(device)
        on_epoch = None
        if k == 0 and rc.reinit == "late_rewind":
            def on_epoch(epoch, m):  # noqa: E306
                if epoch == rc.rewind_epoch:
                    run.st.save_rewind_point({key: v.cpu() for key, v in techniques.effective_state(m).items()})
        source = {}
        if rc.training.prune_from_epoch is not None:
            def on_epoch(epoch, m, late=on_epoch):  # noqa: E306
                if late is not None:
                    late(epoch, m)
                if epoch == rc.training.prune_from_epoch:
                    source["prune_source"] = {key: v.cpu() for key, v in techniques.effective_state(m).items()}
        stats = training.train(model, run.rd.data, run.rd.split, rc.training, seed=rc.seed, iteration=k,
                               on_epoch_end=on_epoch)
        stats.update(source)
        if k == 0 and rc.reinit == "late_rewind":
            run.rewind_point = run.st.load_rewind_point()
        finish(run, model, stats, say)
        if bar is not None:
            bar.update(1)
