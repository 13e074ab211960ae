"""Defence in depth for secrets: every configured password is masked in log records, in case
one slips into a message (camera URLs are shown redacted everywhere already)."""

from __future__ import annotations

import logging
from typing import Iterable


class SecretsFilter(logging.Filter):
    """Masks every configured password in log records (in case one slips into a message)."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a password containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string still gets logged
            msg = str(record.msg)
        masked = self.mask(msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if masked != msg or record.args:
            record.msg, record.args = masked, ()
        return True

    def install(self, logger: logging.Logger | None = None) -> None:
        """Attach to every handler of ``logger`` (the root logger by default)."""
        target = logger or logging.getLogger()
        for handler in target.handlers:
            if self not in handler.filters:
                handler.addFilter(self)

