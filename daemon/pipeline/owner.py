"""Owner-thread checks: a structure that one thread owns says so, and in debug runs a change
from any other thread fails at once, naming the structure and both threads.

A structure is bound to its owner while that thread runs (the scheduler binds its loop thread
at the start of :meth:`~daemon.pipeline.scheduler.Scheduler.run` and releases it when the loop
ends); while unbound (before the loop starts, after it ended) the caller may change it.

The checks run when Python runs without ``-O`` and ``DUSKWATCH_CHECK_OWNERS=1`` is in the
environment (``tests/conftest.py`` sets it), or after :func:`set_checks(True) <set_checks>`.
Off, a check is one global read.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_checks = __debug__ and os.environ.get("DUSKWATCH_CHECK_OWNERS", "") not in ("", "0")


def set_checks(on: bool) -> None:
    """Turn the owner checks on or off for the whole process (never under ``python -O``)."""
    global _checks
    _checks = __debug__ and on


def checks_on() -> bool:
    return _checks


class Owner:
    """The thread that may change a structure, once bound."""

    def __init__(self, what: str):
        self.what = what
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def bind(self, thread: threading.Thread | None = None) -> None:
        """From now on only ``thread`` (the caller's by default) may change the structure."""
        self._thread = thread or threading.current_thread()

    def release(self) -> None:
        """Nobody owns it any more (the owner ended): the caller may change it."""
        self._thread = None

    def check(self, what: str | None = None) -> None:
        """Raise AssertionError when checks are on, an owner is bound and it is not the caller."""
        if not _checks:
            return
        owner = self._thread
        here = threading.current_thread()
        if owner is not None and owner is not here:
            raise AssertionError(
                f"{what or self.what} belongs to thread {owner.name!r} but thread {here.name!r} "
                "changed it: hand the change to its owner as a command "
                "(Scheduler.submit) instead")


class OwnedDict(dict):
    """A dict whose changes are checked against its :class:`Owner` (reads are free)."""

    def __init__(self, owner: Owner, what: str):
        super().__init__()
        self._owner = owner
        self._what = what

    def _check(self) -> None:
        self._owner.check(self._what)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check()
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._check()
        super().__delitem__(key)

    def pop(self, *args: Any) -> Any:
        self._check()
        return super().pop(*args)

    def popitem(self) -> Any:
        self._check()
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._check()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._check()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> "OwnedDict":
        self._check()
        return super().__ior__(other)

    def clear(self) -> None:
        self._check()
        super().clear()
