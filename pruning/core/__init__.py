"""The bottom layer: errors (:class:`errors.UserError`), seeds, the repository's paths, the one atomic
writer and the numeric code paths (``numerics``: ``PRUNING_NUMERICS``). Imports nothing of pruning's."""
