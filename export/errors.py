"""Errors of the export tools (one type, so the command line prints them without a traceback)."""

from __future__ import annotations

from engines.errors import UserError


class ExportError(UserError):
    """Exporting or building a model failed for a reason the message names, with the fix."""
