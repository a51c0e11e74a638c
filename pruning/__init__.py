"""Iterative pruning, reinitialisation and the similarity of masks (Paganini & Forde 2020), reproduced.

The package by layer, bottom first; a layer imports only itself and the layers below it
(``tests/test_layers.py`` checks this, and that no import makes a cycle):

- ``core``: errors, seeds, paths, the atomic writer;
- ``nets``: the config and what it names (models, datasets, techniques, reinit modes), the one-net step;
- ``population``: the batched step of many LeNets at once, its conv paths and C++ kernels;
- ``store``: a results folder on disk: its layout, runs, ``experiment.json``, the results table, locks;
- ``execution``: a run's lifecycle, units of work, the runner, the local and Ray executors;
- ``analysis``: pure functions of the results table;
- ``reporting``: notebooks, plots, quoted numbers, deviations, companions, replicates, rendering, publishing;
- ``__main__``: the command line (``python -m pruning``).
"""

import os as _os

# OpenMP threads that wait for work sleep instead of spinning. The bits are the same; on a machine whose cores are
# shared with other work, spinning threads burn the time slices that the threads they wait for need
# (benchmarks/shared_machine.py: 2 torch threads took 14.1 s spinning, 6.0 s sleeping, for work that 1 thread does
# in 1.8 s beside a busy 2-core run). Set before torch is imported; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
