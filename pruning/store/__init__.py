"""The run store: one results folder on disk and the one way to read and write it. Imports ``core`` and ``nets``.

- :mod:`.layout`: every file name of a results folder, and the order they are written in;
- :mod:`.files`: JSON and tensor files, written atomically (``core.atomic``) and checked when read;
- :mod:`.provenance`: the code version and hardware recorded;
- :mod:`.runs`: one run's folder (:class:`RunStore`), the shared dense trainings;
- :mod:`.experiment`: ``experiment.json``, its one reader and writer;
- :mod:`.table`: the tidy results table and one training's record;
- :mod:`.records`: how a training's masks are stored (bit-packed); :mod:`.locks`: a run's lock.

``from pruning import store`` gives the names below.
"""
from __future__ import annotations

from .experiment import RUN_FACTS, check_owner, peek, read_experiment, recorded_version, run_done, runs_finished, write_experiment
from .files import StoreError, link, read_json, read_tensors, save_json, save_tensors, verify_sha256
from .provenance import code_version, hardware
from .runs import DENSE, RunStore, dense_config, dense_shareable, verify_finished
from . import published
from .table import COLLAPSE_TOLERANCE, NUM_CLASSES, TABLE_COLUMNS, load_results, load_training
