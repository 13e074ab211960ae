"""The PyTorch backend: TorchScript and torch.export files behind the common engine interface."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engines.base import EngineError, open_engine  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CUDA graphs, fp16); none is visible")


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu().mean((2, 3))


def _sidecar(path, batch):
    path.with_name(path.name + ".json").write_text(json.dumps({
        "kind": "test",
        "inputs": [{"name": "x", "shape": [batch, 3, 16, 16], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [batch, 4], "dtype": "float32"}]}))


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    path = tmp_path_factory.mktemp("ts") / "net.torchscript"
    net = _Net().eval()
    torch.jit.trace(net, torch.zeros(2, 3, 16, 16)).save(str(path))
    _sidecar(path, 2)
    return path, net


def test_torchscript_specs_numpy_and_torch(scripted):
    path, net = scripted
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    with open_engine(path, device="cpu") as eng:
        assert eng.backend == "torch" and str(eng.device) == "cpu" and not eng.half
        assert [s.describe() for s in eng.inputs] == ["x[2,3,16,16]:float32"]
        out = eng.infer({"x": x})["y"]
        assert isinstance(out, np.ndarray) and out.shape == (2, 4)
        tout = eng.infer({"x": torch.from_numpy(x)})["y"]
        assert isinstance(tout, torch.Tensor)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.allclose(out, ref, atol=1e-5) and np.allclose(tout.numpy(), ref, atol=1e-5)


def test_torchscript_feed_checked(scripted):
    path, _ = scripted
    with open_engine(path, device="cpu") as eng, pytest.raises(EngineError, match="batch size is 4"):
        eng.infer({"x": np.zeros((4, 3, 16, 16), np.float32)})


def test_fp16_path_runs_on_cpu(scripted):
    path, net = scripted
    x = np.random.default_rng(1).random((2, 3, 16, 16), dtype=np.float32)
    with open_engine(path, device="cpu", half=True) as eng:
        out = eng.infer({"x": x})["y"]
    assert out.dtype == np.float32  # cast back for the caller
    with torch.no_grad():
        assert np.allclose(out, net(torch.from_numpy(x)).numpy(), atol=2e-2)


def test_exported_program_specs_from_file(tmp_path):
    net = _Net().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(net, (torch.zeros(2, 3, 16, 16),), dynamic_shapes=({0: batch},))
    path = tmp_path / "net.pt2"
    torch.export.save(program, str(path))
    with open_engine(path, device="cpu") as eng:
        assert eng.inputs[0].shape == (None, 3, 16, 16) and eng.max_batch is None
        x = np.random.default_rng(2).random((5, 3, 16, 16), dtype=np.float32)
        out = eng.infer({eng.inputs[0].name: x})["output0"]
    with torch.no_grad():
        assert np.allclose(out, net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_ultralytics_torchscript_without_sidecar(tmp_path):
    pytest.importorskip("ultralytics")
    from tests.yolo_exports import exported

    src = exported("torchscript", 320, 2)
    bare = tmp_path / "bare.torchscript"
    shutil.copy(src, bare)  # no sidecar: specs and names from ultralytics' config.txt
    with open_engine(bare, device="cpu") as eng:
        assert eng.inputs[0].shape == (2, 3, 320, 320)
        assert eng.metadata["names"]["0"] == "person"


def test_truncated_file(tmp_path, scripted):
    path, _ = scripted
    cut = tmp_path / "cut.torchscript"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(EngineError, match=r"cut\.torchscript.*truncated"):
        open_engine(cut, device="cpu")


def test_cuda_device_without_gpu_is_a_clear_error(scripted):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    with pytest.raises(EngineError, match="no CUDA GPU.*--device cpu"):
        open_engine(scripted[0], device="cuda:0")


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_replay_matches_eager(scripted):
    path, net = scripted
    x = torch.rand(2, 3, 16, 16, device="cuda")
    with open_engine(path, device="cuda:0") as eng:
        assert eng.half and eng.cuda_graph
        first = eng.infer({"x": x})["y"]
        second = eng.infer({"x": x * 0.5})["y"]  # replayed graph, new input
        assert len(eng._graphs) == 1 and first.device.type == "cuda"
    with torch.no_grad():
        ref = net.cuda()(x * 0.5)
    assert torch.allclose(second, ref, atol=2e-2)
    assert not torch.allclose(first, second)  # outputs were cloned, not overwritten
