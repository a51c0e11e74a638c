"""The one base class of the errors a user can fix.

Each is raised with a one-line message that names the bad value or file and says what to do; the
command line (``python -m pruning``) prints that line and exits with code 2, and a notebook shows it
without a traceback. ConfigError, DataError, StoreError, ParameterError, ReportError and NotebookError
derive from :class:`UserError`.
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message is one line that says what to do."""

    def _render_traceback_(self):  # IPython/Jupyter show this line instead of a deep traceback
        return [f"{type(self).__name__}: {self}"]


class ReportError(UserError):
    """A report that cannot be rendered; one line that says what to do."""
