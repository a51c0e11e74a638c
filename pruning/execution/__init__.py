"""Training an experiment into its run store: a run's lifecycle (``lifecycle``), the population groups
(``populations``), units of work (``units``), the runner (``runner``), and where units run (``executors``:
local processes; ``ray_executor``: a Ray cluster). Imports ``core``, ``nets``, ``population`` and ``store``."""
