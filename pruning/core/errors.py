"""The errors a user can fix, all in one place: :class:`UserError` and one subclass per part of the package.

Each is raised with a one-line message that names the bad value or file and says what to do; the
command line (``python -m pruning``) prints that line and exits with code 2, and a notebook shows it
without a traceback. The modules that raise them import them from here and keep them under their old
names too (``pruning.nets.config.ConfigError``, ``store.StoreError``, ``analysis.ParameterError``, ...).
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message is one line that says what to do."""

    def _render_traceback_(self):  # IPython/Jupyter show this line instead of a deep traceback
        return [f"{type(self).__name__}: {self}"]


class ConfigError(UserError, ValueError):
    """A config that cannot be used; its message is one line that says what to do."""


class DataError(UserError, RuntimeError):
    """Missing or corrupt data; the message says which file and what to run."""


class StoreError(UserError, RuntimeError):
    """A damaged or inconsistent results folder; the message says which file and what to do."""


class ExecutorError(UserError):
    """An executor that cannot run (e.g. no Ray cluster at the given address); one line that says what to do."""

    exit_now = False  # True: the command line exits at once (os._exit), without the interpreter's clean-up


class ParameterError(UserError, ValueError):
    """A notebook parameter the results cannot answer; one line that names it and the available values."""


class NotebookError(UserError):
    """A notebook that failed or cannot be run; one line that names it and what to open or do."""


class ReportError(UserError):
    """A report that cannot be rendered; one line that says what to do."""
