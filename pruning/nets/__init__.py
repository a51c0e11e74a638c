"""What an experiment is made of and how one net trains: the config and the registries it names (models,
datasets, pruning techniques, reinit modes), and the one-net training step. Imports ``core``."""
