"""The one error type every layer raises for a failure the user can fix.

:class:`UserError` carries a message that names what was wrong and how to fix it, and the exit
status a command should end with. The command line (``daemon.cli.main``) prints it on one line,
without a traceback. It lives in ``engines`` because that is the package every other one may
import: ``daemon`` and ``export`` never import each other, yet both contribute commands.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; printed by the command line without a traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
