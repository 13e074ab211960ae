"""Inference runtimes: arrays in, arrays out.

One interface for every backend (see :mod:`engines.base`); the file suffix picks the backend.
This package knows no camera and no training code.
"""

from engines.base import Engine, EngineError, TensorSpec, open_engine, read_sidecar, sidecar_path

__all__ = ["Engine", "EngineError", "TensorSpec", "open_engine", "read_sidecar", "sidecar_path"]
