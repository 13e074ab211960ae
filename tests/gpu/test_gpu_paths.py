"""What only a GPU can check: ONNX Runtime on its CUDA provider, and the torch letterbox and NMS
on the device agreeing with the CPU versions. Skipped (with the reason) where there is no GPU."""

from __future__ import annotations


import numpy as np
import pytest

from engines.base import open_engine
from engines.letterbox import letterbox_cpu
from engines.nms import decode_numpy
from tests.onnx_models import scale_model

torch = pytest.importorskip("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def _ort_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.gpu
@needs_cuda
def test_onnx_runtime_runs_on_the_cuda_provider(tmp_path):
    if not _ort_has_cuda():
        pytest.skip("this ONNX Runtime is a CPU-only build: carry the onnxruntime-gpu wheel in "
                    "tests/gpu/wheels (run.sh installs it)")
    with open_engine(scale_model(tmp_path / "m.onnx"), device="cuda:0") as eng:
        assert eng.device == "cuda:0"
        assert eng.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        x = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
        assert np.allclose(eng.infer({"x": x})["y"], 2 * x)
    with open_engine(tmp_path / "m.onnx", device="auto") as eng:
        assert eng.device == "cuda:0"  # auto takes the GPU where onnxruntime-gpu has it


@pytest.mark.gpu
@needs_cuda
def test_torch_letterbox_on_the_gpu_matches_opencv():
    from engines.letterbox import letterbox_torch

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8),
              rng.integers(0, 255, (480, 300, 3), dtype=np.uint8)]
    cpu, cpu_boxes = letterbox_cpu(images, (640, 640))
    gpu, gpu_boxes = letterbox_torch([torch.as_tensor(im, device="cuda") for im in images], (640, 640))
    assert gpu.device.type == "cuda" and cpu_boxes == gpu_boxes
    assert np.abs(gpu.cpu().numpy() - cpu).mean() < 2 / 255


@pytest.mark.gpu
@needs_cuda
def test_torch_nms_on_the_gpu_matches_numpy():
    pytest.importorskip("torchvision")
    from engines.nms import decode_torch

    rng = np.random.default_rng(1)
    pred = np.zeros((2, 84, 400), np.float32)
    pred[:, :2] = rng.uniform(20, 600, (2, 2, 400))
    pred[:, 2:4] = rng.uniform(10, 80, (2, 2, 400))
    pred[:, 4:] = rng.uniform(0, 0.6, (2, 80, 400)) ** 3
    ref = decode_numpy(pred, 0.1, 0.5)
    got = decode_torch(torch.as_tensor(pred, device="cuda"), 0.1, 0.5)
    for (rb, rs, rc), (gb, gs, gc) in zip(ref, got):
        assert len(rb) == len(gb) and np.array_equal(rc, gc)
        assert np.allclose(rb, gb, atol=1e-3) and np.allclose(rs, gs, atol=1e-6)
