"""Print the requirements (``name>=version``) that this Python does not satisfy, space separated.

Used by ``tests/gpu/run.sh`` to install only what the GPU box lacks from the carried wheels.
The version is compared with ``packaging`` where it is importable, else any installed version
counts as enough.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version


def unsatisfied(requirement: str) -> bool:
    """Whether ``requirement`` (``name``, ``name>=1.2``) is missing or too old here."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([\w.]+))?\s*", requirement)
    if not m:
        raise ValueError(f"unsupported requirement {requirement!r}: use name or name>=version")
    name, minimum = m.group(1), m.group(2)
    try:
        have = version(name)
    except PackageNotFoundError:
        return True
    if minimum is None:
        return False
    try:
        from packaging.version import Version
    except ImportError:
        return False
    return Version(have) < Version(minimum)


def main(argv: list[str]) -> int:
    print(" ".join(r for r in argv if unsatisfied(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
