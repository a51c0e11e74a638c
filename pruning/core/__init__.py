"""The bottom layer: errors (:class:`errors.UserError`), seeds, the repository's paths and the one atomic
writer. Imports nothing of pruning's."""
