"""Every file name of a results folder: the one description of its layout.

Layout of a results folder (e.g. ``results/smoke/``)::

    experiment.json                 resolved experiment config, its run hashes, code version, hardware
    run_<hash>/config.json          resolved run config + code version (written once)
    run_<hash>/init.pt              weights and biases at initialisation
    run_<hash>/rewind_point.pt      weights after rewind_epoch epochs of dense training (late_rewind only)
    run_<hash>/checkpoint.pt        the latest trained state: what a resumed run continues from
    run_<hash>/trainings/007.pt     training 7 (after 7 pruning steps): masks (bit-packed, the layers
                                    ``store.masks`` keeps), weights (of ``store.weights``), test logits
                                    (if ``store.logits``), predicted classes, test labels
    run_<hash>/trainings/007.json   its metrics and the sha256 of 007.pt (written last: the commit mark)
    run_<hash>/done.json            written when all trainings are finished; a done run is skipped
    dense_<hash>/...                a shared dense training, laid out as a run (linked into each run)
    .locks/<run folder>.lock        the lock of each run (``locks``)

Every file is written atomically (``core.atomic``), so ``kill -9`` at any moment leaves either the old or
the new file, never half of one; :data:`WRITE_ORDER` is the order that keeps a run resumable.
"""
from __future__ import annotations

EXPERIMENT = "experiment.json"
RUN_CONFIG = "config.json"
INIT = "init.pt"
REWIND_POINT = "rewind_point.pt"
CHECKPOINT = "checkpoint.pt"
TRAININGS = "trainings"
DONE = "done.json"
LOCKS = ".locks"
RUN_PREFIX, DENSE_PREFIX = "run_", "dense_"
TRAINING_METRICS = "[0-9][0-9][0-9].json"  # the glob of a run's finished trainings (their commit marks)

# A run's files in the order that keeps it resumable; a training's record and metrics come between the
# checkpoint and the done mark, the record first (``ray_executor.receive``).
WRITE_ORDER = {RUN_CONFIG: 0, INIT: 1, REWIND_POINT: 2, CHECKPOINT: 3, DONE: 9}


def training_file(iteration: int) -> str:
    """The record of training ``iteration`` inside its run's folder; its metrics are the same name in ``.json``."""
    return f"{TRAININGS}/{iteration:03d}.pt"
