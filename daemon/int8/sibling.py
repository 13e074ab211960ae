"""The int8 sibling of an f32 OpenVINO IR: its paths, and whether the one on disk may be used.

``yolo11n.xml`` (f32, configured) has beside it ``yolo11n.int8.xml`` (+ ``.bin``, + the
``.int8.xml.json`` sidecar) and ``yolo11n.int8-frames/`` (``calib/``: the calibration frames,
``check/``: the held-out frames of the check, ``build.log``: the last build's output). The
sidecar names the f32 IR it was made from (``source_ir.sha256``) and, once checked, the check's
result (``int8_check``): an int8 IR is used only when both match.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import read_sidecar, sidecar_path
from engines.ir_files import ir_sha256

log = logging.getLogger("duskwatch.int8")


@dataclass(frozen=True)
class Sibling:
    """Paths of the int8 IR that goes with the f32 IR ``f32``."""

    f32: Path

    @property
    def int8(self) -> Path:
        return self.f32.with_name(self.f32.stem + ".int8.xml")

    @property
    def frames(self) -> Path:
        return self.f32.with_name(self.f32.stem + ".int8-frames")

    @property
    def calib(self) -> Path:
        return self.frames / "calib"

    @property
    def check(self) -> Path:
        return self.frames / "check"

    @property
    def build_log(self) -> Path:
        return self.frames / "build.log"

    def derived(self) -> list[Path]:
        """Everything the daemon makes from ``f32``: the int8 IR, its weights and sidecar, and
        its frames folder (whichever exist). They go when the f32 IR goes."""
        paths = [self.int8, self.int8.with_suffix(".bin"), sidecar_path(self.int8), self.frames]
        return [p for p in paths if p.exists()]

    def meta(self) -> dict[str, Any]:
        """The int8 IR's sidecar, ``{}`` when there is none or it is unreadable."""
        try:
            return read_sidecar(self.int8) if self.int8.is_file() else {}
        except Exception:  # noqa: BLE001 - a broken sidecar: as if there were no int8 IR
            return {}

    def matches_f32(self, meta: dict[str, Any] | None = None) -> bool:
        """The int8 IR on disk was made from the f32 IR as it is now (same SHA-256)."""
        meta = self.meta() if meta is None else meta
        want = (meta.get("source_ir") or {}).get("sha256")
        try:
            return bool(want) and want == ir_sha256(self.f32)
        except OSError:
            return False

    def verdict(self) -> dict[str, Any] | None:
        """The recorded check of the int8 IR on disk when it belongs to the f32 IR now; else
        None (no int8 IR, another f32's, or never checked)."""
        meta = self.meta()
        check = meta.get("int8_check")
        if not isinstance(check, dict) or not self.matches_f32(meta):
            return None
        return check

    def usable(self) -> bool:
        verdict = self.verdict()
        return bool(verdict and verdict.get("passed"))

    def record_check(self, result: dict[str, Any]) -> None:
        """Write the check's result into the int8 IR's sidecar (atomically)."""
        meta = self.meta()
        meta["int8_check"] = result
        path = sidecar_path(self.int8)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def remove_frames(self) -> None:
        """The collected frames are not needed once an int8 IR passed its check."""
        for folder in (self.calib, self.check):
            shutil.rmtree(folder, ignore_errors=True)

    def remove_int8(self) -> None:
        for path in (self.int8, self.int8.with_suffix(".bin"), sidecar_path(self.int8)):
            path.unlink(missing_ok=True)


def is_f32_ir(path: str | Path) -> bool:
    """``path`` is an OpenVINO IR that is not int8 (by its sidecar; an IR without one counts as
    f32, which is what ``export yolo --format openvino`` writes without ``--int8``)."""
    text = str(path)
    if "://" in text or Path(text).suffix != ".xml":
        return False
    try:
        return read_sidecar(path).get("precision", "fp32") not in ("int8",)
    except Exception:  # noqa: BLE001
        return False
