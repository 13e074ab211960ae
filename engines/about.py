"""What this installation is: the one place the version is read (from the package metadata,
which ``pyproject.toml`` sets)."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version as _dist_version

DISTRIBUTION = "duskwatch"


@lru_cache(maxsize=1)
def version() -> str:
    """The installed duskwatch version; ``0+unknown`` when run from files that were never
    installed (``pip install -e .`` or ``pip install .`` records it)."""
    try:
        return _dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
