"""Where engines run: ONNX Runtime provider selection and its refusal of a silent CPU fallback,
the OpenVINO backend, and the device/provider every engine reports.

The provider lists are the seam: a CPU machine cannot load a CUDA provider, but it can check
what the engine asks ONNX Runtime for and what it does with the providers a session reports.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from engines.base import EngineError, open_engine  # noqa: E402
from engines.onnx_backend import (GPU_INSTALL_FIX, placed_device, select_providers,  # noqa: E402
                                  warn_if_gpu_unused)
from tests.onnx_models import scale_model  # noqa: E402

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["CPUExecutionProvider"]
M = Path("m.onnx")


# -- ONNX Runtime: which providers are asked for -------------------------------------------------
def test_auto_takes_the_gpu_providers_when_the_build_has_them():
    assert select_providers(GPU_BUILD, "auto", M) == [
        ("TensorrtExecutionProvider", {"device_id": 0}), ("CUDAExecutionProvider", {"device_id": 0}),
        "CPUExecutionProvider"]
    only_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(only_cuda, "cuda:2", M) == [
        ("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]


def test_cpu_is_cpu_even_on_a_gpu_build():
    assert select_providers(GPU_BUILD, "cpu", M) == ["CPUExecutionProvider"]


def test_cuda_on_a_cpu_only_build_names_the_install_and_a_real_flag():
    with pytest.raises(EngineError) as err:
        select_providers(CPU_BUILD, "cuda:0", M)
    msg = str(err.value)
    assert "CPU-only build" in msg and "onnxruntime-gpu" in msg and "duskwatch[gpu]" in msg
    assert "--device cpu" in msg and "engines.device: cpu" in msg


def test_bad_device_words_are_refused():
    for bad in ("cuda:x", "gpu", "cuda:"):
        with pytest.raises(EngineError, match="bad device"):
            select_providers(GPU_BUILD, bad, M)


# -- ONNX Runtime: what the session really got ---------------------------------------------------
def test_placed_device_follows_the_session():
    assert placed_device("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], M) == "cuda:0"
    assert placed_device("cuda:1", ["TensorrtExecutionProvider", "CPUExecutionProvider"], M) == "cuda:1"
    assert placed_device("auto", CPU_BUILD, M) == "cpu"
    assert placed_device("cpu", CPU_BUILD, M) == "cpu"


def test_a_gpu_dropped_by_onnx_runtime_is_an_error_not_a_fallback():
    """onnxruntime-gpu without its CUDA libraries makes a CPU session with only a warning."""
    with pytest.raises(EngineError) as err:
        placed_device("cuda:0", CPU_BUILD, M)
    msg = str(err.value)
    assert "could not start its CUDA provider" in msg and GPU_INSTALL_FIX in msg
    assert "--device cpu" in msg


def test_auto_warns_when_a_gpu_is_present_but_unusable(caplog):
    with caplog.at_level(logging.WARNING, logger="engines.onnx_backend"):
        assert warn_if_gpu_unused("auto", CPU_BUILD, M, gpu_present=lambda: True)
    assert "CPU-only build" in caplog.text and "onnxruntime-gpu" in caplog.text
    assert not warn_if_gpu_unused("auto", GPU_BUILD, M, gpu_present=lambda: True)
    assert not warn_if_gpu_unused("auto", CPU_BUILD, M, gpu_present=lambda: False)
    assert not warn_if_gpu_unused("cpu", CPU_BUILD, M, gpu_present=lambda: True)


def test_onnx_engine_reports_its_placement(tmp_path):
    path = scale_model(tmp_path / "m.onnx")
    with open_engine(path, device="auto", spin=False, threads=1) as eng:
        assert eng.placement() == {"backend": "onnxruntime", "device": "cpu",
                                   "provider": "CPUExecutionProvider"}
        assert np.allclose(eng.infer({"x": np.ones((3, 3, 8, 8), np.float32)})["y"], 2.0)


# -- OpenVINO ------------------------------------------------------------------------------------
ov = pytest.importorskip("openvino")


def test_openvino_reads_onnx_directly(tmp_path):
    path = scale_model(tmp_path / "m.onnx", meta={"names": "{0: 'person'}", "stride": "32"})
    with open_engine(path, device="cpu", backend="openvino", precision="f32", threads=1) as eng:
        assert eng.placement() == {"backend": "openvino", "device": "cpu",
                                   "provider": "openvino:CPU/f32"}
        assert [s.describe() for s in eng.inputs] == ["x[?,3,8,8]:float32"]
        assert eng.metadata["names"] == {"0": "person"} and eng.metadata["stride"] == 32
        x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
        assert np.allclose(eng.infer({"x": x})["y"], 2 * x)


def test_openvino_ir_by_suffix_with_its_rt_info(tmp_path):
    model = ov.Core().read_model(str(scale_model(tmp_path / "m.onnx")))
    model.set_rt_info("{0: 'person', 1: 'car'}", ["model_info", "names"])
    ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
    with open_engine(tmp_path / "m.xml", device="auto") as eng:
        assert eng.backend == "openvino" and eng.device == "cpu"
        assert eng.provider.startswith("openvino:CPU/")
        assert eng.metadata["names"] == {"0": "person", "1": "car"}
        out = eng.infer({"x": np.ones((1, 3, 8, 8), np.float32)})["y"]
    assert np.allclose(out, 2.0, atol=1e-2)  # bf16 where the CPU has it


def test_openvino_refuses_cuda_and_names_the_gpu_routes(tmp_path):
    path = scale_model(tmp_path / "m.onnx")
    with pytest.raises(EngineError) as err:
        open_engine(path, device="cuda:0", backend="openvino")
    msg = str(err.value)
    assert "cannot run on NVIDIA GPUs" in msg and "duskwatch[gpu]" in msg and "--device cpu" in msg


def test_openvino_ir_without_weights_file(tmp_path):
    model = ov.Core().read_model(str(scale_model(tmp_path / "m.onnx")))
    ov.save_model(model, str(tmp_path / "m.xml"))
    (tmp_path / "m.bin").unlink()
    with pytest.raises(EngineError, match=r"m\.bin is missing"):
        open_engine(tmp_path / "m.xml", device="cpu")


def test_named_backend_must_read_the_file(tmp_path):
    path = scale_model(tmp_path / "m.onnx")
    with pytest.raises(EngineError, match="unknown backend 'tensorflow'"):
        open_engine(path, backend="tensorflow")
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(EngineError, match="openvino backend reads .onnx and .xml files"):
        open_engine(tmp_path / "m.engine", backend="openvino")


def test_openvino_precision_is_checked(tmp_path):
    path = scale_model(tmp_path / "m.onnx")
    with pytest.raises(EngineError, match="precision 'int4'"):
        open_engine(path, device="cpu", backend="openvino", precision="int4")


def test_openvino_batches_split_over_streams_give_the_same_result(tmp_path):
    path = scale_model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).random((5, 3, 8, 8), dtype=np.float32)
    with open_engine(path, device="cpu", backend="openvino", precision="f32") as auto, \
            open_engine(path, device="cpu", backend="openvino", precision="f32",
                        hint="latency") as latency:
        assert auto.hint == "auto" and latency.hint == "LATENCY"
        assert np.array_equal(auto.infer({"x": x})["y"], latency.infer({"x": x})["y"])
        assert np.array_equal(auto.infer({"x": x[:1]})["y"], 2 * x[:1])
    with pytest.raises(EngineError, match="hint 'fast'"):
        open_engine(path, device="cpu", backend="openvino", hint="fast")


def test_openvino_compiles_once_per_input_size_up_to_a_limit(tmp_path, monkeypatch):
    import engines.openvino_backend as ovb

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, "h", "w"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "s", [x], [y],
                              initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "d.onnx"))
    monkeypatch.setattr(ovb, "MAX_FIXED_SIZES", 1)
    with open_engine(tmp_path / "d.onnx", device="cpu", backend="openvino", precision="f32") as eng:
        for h, w in ((8, 16), (8, 16), (4, 4)):
            out = eng.infer({"x": np.ones((1, 3, h, w), np.float32)})["y"]
            assert out.shape == (1, 3, h, w) and np.allclose(out, 2.0)
        sizes = [k[1] for k in eng._requests]
    assert sizes.count((8, 16)) == 1 and (4, 4) not in sizes  # past the limit: the dynamic model
