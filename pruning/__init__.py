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
