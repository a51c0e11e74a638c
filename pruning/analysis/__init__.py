"""Analyses behind the figures and the report: pure functions over the tidy results table, by question.
Imports ``core``, ``nets`` and ``store``.


- :mod:`.table`: loading the results, checking parameters (:class:`ParameterError`), the record cache;
- :mod:`.stats`: mean, std and 95% t-interval over seeds, Pearson r;
- :mod:`.accuracy`: accuracy over seeds, collapsed trainings, output units left (the accuracy ceiling);
- :mod:`.masks`: Jaccard distances between masks (question 1) and the random-mask baseline;
- :mod:`.predictions`: prediction agreement and its chance baseline, ensembles (question 2);
- :mod:`.weights`: weight traces, stability and drift (question 4);
- :mod:`.connectivity`: conv kernels, emptied kernels, effective sparsity (question 5);
- :mod:`.findings`: the poster's findings, each with numbers, uncertainty, baseline and verdict;
- :mod:`.sensitivity`: config variants at the poster's iteration beside the poster (why our row differs).
- :mod:`.noise`: masks of replicates (float rounding only) against masks of other seeds and random masks.

Conventions used everywhere: techniques are their registry keys in data (``l1_us``, ``hybrid``);
:func:`pruning.nets.techniques.label` is for display only. Seeds are paired: technique A with seed s is
compared with technique B with the same seed s, and a statistic over seeds is the mean (std with
ddof=1, 0 for a single seed) over the seeds both have. Accuracies are in %; sparsity is the fraction
of prunable weights removed (0..1); a mask is True where a weight is kept; stored weights are already
multiplied by their masks. ``from pruning import analysis`` gives every public function below.
"""
from __future__ import annotations

from .accuracy import COLLAPSE_TOLERANCE, accuracy_summary, collapsed, collapsed_summary, output_units, \
    paired_difference
from .connectivity import chance_empty_fraction, effective_sparsity, effective_sparsity_curve, empty_kernel_curve, \
    empty_kernels, filter_kernels
from .masks import jaccard_distance, mask_distance_curve, mask_distance_matrix, pair_distances, random_distance_matrix, \
    random_distance_of, random_mask_distance, rewind_vs_finetune
from .predictions import ENSEMBLE_METHODS, NINE, POSTER_ENSEMBLES, POSTER_ITERATION, POSTER_SINGLES, POSTER_TRIO, \
    SEVEN, agreement_matrix, agreement_pairs, chance_agreement, ensemble_accuracy, ensemble_groups, \
    ensemble_predictions, ensemble_table, max_agreement, poster_groups, poster_reference
from .stats import Summary, pearson, summarize, t_quantile
from .table import RECORD_CACHE_BYTES, RECORD_CACHE_SIZE, ParameterError, _ranges, check, clear_cache, last_iteration, \
    layer_names, load, record, report_iteration, technique_order
from .weights import mean_abs_delta, stability_vs_accuracy, weight_drift, weight_stability, weight_traces
from . import confounds, curve, findings, noise, readings, sensitivity  # noqa: E402  (modules: analysis.findings.findings(...), ...)
