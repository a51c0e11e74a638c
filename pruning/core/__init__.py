"""The bottom layer: errors (:class:`errors.UserError` and every one-line error), names (display names and
the report's notebook contract), seeds, the repository's paths, the one atomic writer and the numeric code
paths (``numerics``: ``PRUNING_NUMERICS``). Imports nothing of pruning's."""
