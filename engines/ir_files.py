"""An OpenVINO IR's files on disk: the ``.xml`` graph and its ``.bin`` weights, and the digest
that names one exact pair (an int8 IR's sidecar records the digest of the f32 IR it was made
from, so that a later run can tell whether it still belongs to the configured detector)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def ir_files(xml: str | Path) -> tuple[Path, Path]:
    """``model.xml`` -> (``model.xml``, ``model.bin``)."""
    xml = Path(xml)
    return xml, xml.with_suffix(".bin")


def ir_sha256(xml: str | Path) -> str:
    """SHA-256 over the ``.xml`` then the ``.bin`` (a missing ``.bin`` counts as empty); raises
    OSError when the ``.xml`` cannot be read."""
    h = hashlib.sha256()
    for i, path in enumerate(ir_files(xml)):
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            if i == 0:
                raise
        h.update(b"\0")
    return h.hexdigest()
