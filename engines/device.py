"""One device resolver for the whole project: ``auto | cpu | cuda | cuda:N`` -> ``torch.device``.

Engines, benchmarks and the training tools all take the same ``--device`` words; this is the one
place that turns them into a device and says, in the error, what to use instead. torch is
imported when a device is resolved, so importing this module costs nothing on a CPU-only install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.base import EngineError


class DeviceError(EngineError, ValueError):
    """A device that is malformed or absent here. Both an :class:`EngineError` (what engine code
    catches) and a ``ValueError`` (what configuration and training code catch)."""


def resolve_device(device: str = "auto", what: Path | str = "device") -> Any:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> ``torch.device``.

    ``auto`` is the first CUDA GPU when PyTorch sees one, else the CPU. ``what`` names the thing
    the device is for (an engine file, a training run) in the error message.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{what}: bad device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what}: device {device} asked for but PyTorch sees no CUDA GPU; "
                              "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{what}: device {device} does not exist "
                              f"({torch.cuda.device_count()} GPU(s) visible)")
    elif dev.type != "cpu":
        raise DeviceError(f"{what}: device {device} is not supported; use auto, cpu, cuda or cuda:N")
    return dev
