"""The TensorRT backend: what can be checked without TensorRT, and what needs it (skipped here)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from engines.base import EngineError, open_engine
from engines.trt_backend import check_compatibility

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_built_elsewhere_says_rebuild_here(tmp_path):
    meta = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA A100-SXM4-80GB",
            "source_weights": "yolo11n.pt", "imgsz": [640, 640]}
    path = tmp_path / "y.engine"
    with pytest.raises(EngineError) as err:
        check_compatibility(path, meta, "10.8.0", "NVIDIA H200")
    msg = str(err.value)
    assert "TensorRT 10.3.0 (this machine has 10.8.0)" in msg
    assert "NVIDIA A100-SXM4-80GB" in msg and "NVIDIA H200" in msg
    assert "duskwatch export yolo --weights yolo11n.pt --imgsz 640 --format engine" in msg


def test_matching_build_passes():
    check_compatibility("y.engine", {"tensorrt_version": "10.8.0", "gpu": "NVIDIA H200"},
                        "10.8.0", "NVIDIA H200")
    check_compatibility("y.engine", {}, "10.8.0", "NVIDIA H200")  # no sidecar: TensorRT decides


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_opening_without_tensorrt_is_a_clear_error(tmp_path):
    path = tmp_path / "y.engine"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(EngineError, match=r"y\.engine: TensorRT is not installed.*\.onnx"):
        open_engine(path)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_truncated_engine_is_refused(tmp_path):
    if not HAS_TRT:
        pytest.skip("TensorRT is not installed (pip install duskwatch[trt] on an NVIDIA GPU box)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU; none is visible")
    path = tmp_path / "cut.engine"
    path.write_bytes(b"ftrt" + b"\x00" * 100)
    path.with_name("cut.engine.json").write_text(json.dumps({}))
    with pytest.raises(EngineError, match="deserialize_cuda_engine returned None"):
        open_engine(path)
