"""The names shown to a reader and the report's notebook contract, each defined once.

- :data:`ARCH_NAMES`, :data:`DATASET_NAMES`: the display name of each architecture and dataset key of a
  config (``"vgg11"`` -> ``"VGG11"``); the report, the companion sections, the figures pages and the
  figure notebooks show these;
- :data:`NOTEBOOK_LABELS`: {figure notebook (its file stem in ``notebooks/``): the labels of its cells
  that the report embeds (``{{< embed accuracy.ipynb#fig-accuracy >}}``)}, in the notebook's order.
  The tests check the notebooks and ``report/*.qmd`` against it.
"""
from __future__ import annotations

ARCH_NAMES = {"lenet": "LeNet", "alexnet": "AlexNet", "vgg11": "VGG11"}
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

NOTEBOOK_LABELS = {
    "accuracy": ("fig-accuracy", "fig-random", "fig-output-units", "tbl-accuracy"),
    "agreement": ("fig-agreement",),
    "ensembles": ("tbl-ensembles",),
    "weight_stability": ("fig-weight-drift", "fig-stability", "tbl-stability"),
    "filters": ("fig-filters", "fig-empty-kernels"),
    "mask_similarity": ("fig-mask-distance", "fig-mask-drift", "fig-rewind-finetune", "fig-noise-curve"),
    "findings": ("tbl-verdicts", "tbl-verdicts-by-iteration", "fig-verdict-curve", "tbl-verdict-ranges", "tbl-verdict-spans",
                 "tbl-deviations", "tbl-poster", "tbl-ticket-test",
                 "tbl-collapsed", "fig-collapse-rates", "tbl-readings"),
    "sensitivity": ("tbl-sensitivity", "tbl-sensitivity-closest", "tbl-poster-readings",
                    "tbl-poster-nearer"),
}
