"""The ONNX Runtime backend behind the common engine interface, with real ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from engines.base import EngineError, open_engine  # noqa: E402
from engines.onnx_backend import select_providers  # noqa: E402
from engines.yolo import Detector  # noqa: E402
from tests.onnx_models import scale_model  # noqa: E402


def test_reports_specs_and_runs(tmp_path):
    path = scale_model(tmp_path / "m.onnx", 2, {"names": "{0: 'person', 1: 'car'}", "stride": "32"})
    with open_engine(path, device="cpu") as eng:
        assert eng.backend == "onnxruntime" and eng.device == "cpu"
        assert [s.describe() for s in eng.inputs] == ["x[2,3,8,8]:float32"]
        assert [s.describe() for s in eng.outputs] == ["y[2,3,8,8]:float32"]
        assert eng.max_batch == 2
        assert eng.metadata["names"] == {"0": "person", "1": "car"} and eng.metadata["stride"] == 32
        x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
        assert np.allclose(eng.infer({"x": x})["y"], 2 * x)


def test_sidecar_overrides_file_metadata(tmp_path):
    path = scale_model(tmp_path / "m.onnx", 1, {"stride": "32"})
    (tmp_path / "m.onnx.json").write_text(json.dumps({"stride": 16, "kind": "enhancer"}))
    with open_engine(path, device="cpu") as eng:
        assert eng.metadata["stride"] == 16 and eng.metadata["kind"] == "enhancer"


def test_dynamic_batch_is_reported_as_none(tmp_path):
    path = scale_model(tmp_path / "m.onnx", "batch")
    with open_engine(path, device="cpu") as eng:
        assert eng.inputs[0].shape == (None, 3, 8, 8) and eng.max_batch is None
        out = eng.infer({"x": np.ones((5, 3, 8, 8), np.float32)})["y"]
        assert out.shape == (5, 3, 8, 8)


def test_accepts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    path = scale_model(tmp_path / "m.onnx", 1)
    with open_engine(path, device="cpu") as eng:
        out = eng.infer({"x": torch.ones(1, 3, 8, 8)})["y"]
    assert np.allclose(out, 2.0)


@pytest.mark.parametrize("feed,match", [
    ({"images": np.zeros((2, 3, 8, 8), np.float32)}, r"missing \['x'\].*unexpected \['images'\]"),
    ({"x": np.zeros((2, 3, 8), np.float32)}, "rank 3"),
    ({"x": np.zeros((3, 3, 8, 8), np.float32)}, "batch size is 3 but the engine expects 2.*--batch"),
    ({"x": np.zeros((2, 3, 8, 9), np.float32)}, "dimension 3 is 9"),
    ({"x": np.zeros((2, 3, 8, 8), np.float64)}, "dtype float64.*astype"),
])
def test_feed_mismatches_are_named(tmp_path, feed, match):
    path = scale_model(tmp_path / "m.onnx", 2)
    with open_engine(path, device="cpu") as eng, pytest.raises(EngineError, match=match):
        eng.infer(feed)


def test_missing_empty_and_truncated_files(tmp_path):
    with pytest.raises(EngineError, match="not found.*export"):
        open_engine(tmp_path / "nope.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(EngineError, match="empty"):
        open_engine(tmp_path / "empty.onnx")
    good = scale_model(tmp_path / "good.onnx", 1).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(EngineError, match=r"cut\.onnx.*truncated or not an ONNX model"):
        open_engine(tmp_path / "cut.onnx", device="cpu")


def test_non_detector_onnx_is_refused_by_detector(tmp_path):
    path = scale_model(tmp_path / "scale.onnx", 1)
    with pytest.raises(EngineError, match=r"scale\.onnx.*not a YOLO v8/11 detector"):
        Detector(path, device="cpu")


def test_provider_selection():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(avail, "cpu", Path("m.onnx")) == ["CPUExecutionProvider"]
    assert select_providers(avail, "cuda:1", Path("m.onnx")) == [
        ("TensorrtExecutionProvider", {"device_id": 1}), ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider"]
    assert select_providers(["CPUExecutionProvider"], "auto", Path("m.onnx")) == ["CPUExecutionProvider"]
    with pytest.raises(EngineError, match="onnxruntime-gpu"):
        select_providers(["CPUExecutionProvider"], "cuda:0", Path("m.onnx"))
