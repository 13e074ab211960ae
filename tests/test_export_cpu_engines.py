"""`duskwatch export yolo --format openvino`, `--format openvino --int8` (NNCF) and `--format onnx
--int8` (ONNX Runtime QDQ), calibrated on frames from a folder, run through the real CLI on a
small random-weight YOLO11n.

Accuracy on real weights is a benchmark, not a test (docs/BENCHMARKS.md); here: the files,
their sidecars, that they open on their runtimes and agree with the float32 ONNX export.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ultralytics")
pytest.importorskip("onnx")

from daemon.cli.main import main  # noqa: E402
from engines.base import open_engine, read_sidecar  # noqa: E402
from engines.yolo import Detector  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.quantize import calibration_files, calibration_frames, float_head_nodes  # noqa: E402
from export.yolo import ExportOptions  # noqa: E402
from tests.yolo_exports import exported, sample_images  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_WEIGHTS = SHARED / "weights" / "yolo11n_coco_fp32.pt"
VTEST = SHARED / "video" / "vtest.avi"


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Two photos and a 12-frame clip: calibration takes images and videos."""
    root = tmp_path_factory.mktemp("calib")
    for i, img in enumerate(sample_images(2)):
        cv2.imwrite(str(root / f"photo{i}.jpg"), img)
    frames = sample_images(3)
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 180))
    for i in range(12):
        writer.write(cv2.resize(frames[i % 3], (320, 180)))
    writer.release()
    return root


def _export(tmp_path, *extra: str) -> tuple[int, str]:
    out = tmp_path / extra[-1]
    rc = main(["export", "yolo", "--weights", "yolo11n.yaml", "--imgsz", "160", "--dynamic",
               "--batch", "4", *extra[:-1], "--out", str(out)])
    return rc, out


def test_openvino_export_opens_by_suffix_and_runs_rect(tmp_path):
    pytest.importorskip("openvino")
    rc, out = _export(tmp_path, "--format", "openvino", "y.xml")
    assert rc == 0 and out.is_file() and out.with_suffix(".bin").is_file()
    meta = read_sidecar(out)
    assert meta["format"] == "openvino" and meta["backend"] == "openvino"
    assert meta["rect"] is True and meta["precision"] == "fp32"
    from export.openvino_int8 import count_fake_quantize

    assert count_fake_quantize(__import__("openvino").Core().read_model(str(out))) == 0
    with open_engine(out, device="auto", precision="f32") as eng:
        assert eng.placement()["provider"] == "openvino:CPU/f32"
        assert eng.metadata["names"]["0"] == "person"  # the IR's own model_info agrees
        det = Detector(eng)
        wide = np.full((90, 160, 3), 100, np.uint8)
        assert det.input_size_for([wide]) == (96, 160)  # rect, as on ONNX Runtime
        assert len(det([wide, wide])) == 2


def test_int8_openvino_export_has_fake_quantize_and_float_decoding(tmp_path, calib_dir):
    """NNCF's int8 IR: FakeQuantize in front of the convolutions, none in the head's decoding,
    the IR's model_info kept, and it runs through the Detector at rect sizes."""
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from export.openvino_int8 import count_fake_quantize

    rc, out = _export(tmp_path, "--format", "openvino", "--int8", "--calib-dir", str(calib_dir),
                      "--calib-frames", "6", "q.xml")
    assert rc == 0 and out.with_suffix(".bin").is_file()
    meta = read_sidecar(out)
    assert meta["precision"] == "int8" and meta["rect"] is True
    assert meta["calibration"]["tool"] == "nncf" and meta["calibration"]["frames"] == 6
    model = ov.Core().read_model(str(out))
    convs = [op for op in model.get_ops() if op.get_type_name() == "Convolution"]
    assert count_fake_quantize(model) >= len(convs) - 2  # every conv but the stem and the DFL
    quantized = {op.get_friendly_name().removesuffix("/WithoutBiases")
                 for op in convs if _fed_by_fake_quantize(op)}
    assert "/model.1/conv/Conv" in quantized and "/model.23/cv3.0/cv3.0.2/Conv" in quantized
    assert "/model.0/conv/Conv" not in quantized  # the stem reads the image: float
    assert meta["calibration"]["float"].startswith("first convolution and head decoding")
    for op in model.get_ops():
        if op.get_type_name() in ("Sigmoid", "Softmax") or "/dfl/" in op.get_friendly_name():
            assert not _fed_by_fake_quantize(op), op.get_friendly_name()
    assert model.get_rt_info(["model_info", "stride"]).astype(str) == "32"
    with open_engine(out, device="cpu", precision="f32") as eng:
        assert eng.placement()["provider"] == "openvino:CPU/int8+f32"
        det = Detector(eng)
        wide = np.full((90, 160, 3), 100, np.uint8)
        assert det.input_size_for([wide]) == (96, 160)
        assert len(det([wide, wide])) == 2


def _fed_by_fake_quantize(op) -> bool:
    return any(inp.get_source_output().get_node().get_type_name() == "FakeQuantize"
               for inp in op.inputs())


def test_float_head_ops_of_the_ir():
    ov = pytest.importorskip("openvino")
    from export.openvino_int8 import float_head_ops

    onnx_path = exported("onnx", imgsz=160, batch=1, dynamic=True)
    model = ov.convert_model(str(onnx_path))
    decode = set(float_head_ops(model))
    assert "/model.23/dfl/conv/Conv" in decode and "/model.23/Sigmoid" in decode
    assert not any("/cv2." in n or "/cv3." in n for n in decode)
    assert not any(n.startswith("/model.22/") for n in decode)
    outputs = {n.removesuffix("/WithoutBiases")
               for n in set(float_head_ops(model, keep_head_outputs=True)) - decode}
    assert outputs == {f"/model.23/cv{b}.{i}/cv{b}.{i}.2/Conv" for b in (2, 3) for i in range(3)}


def test_openvino_matches_onnx_runtime_in_f32():
    ov = pytest.importorskip("openvino")
    onnx_path = exported("onnx", imgsz=160, batch=1, dynamic=True)
    ir = onnx_path.with_name("parity.xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(ir), compress_to_fp16=False)
    x = np.random.default_rng(0).random((2, 3, 96, 160), dtype=np.float32)
    with open_engine(onnx_path, device="cpu") as ort_eng, \
            open_engine(ir, device="cpu", precision="f32") as ov_eng:
        a = ort_eng.infer({"images": x})["output0"]
        b = ov_eng.infer({"images": x})["output0"]
    assert np.allclose(a, b, atol=1e-3, rtol=1e-3)


def test_int8_onnx_export_is_qdq_and_finds_what_fp32_finds(tmp_path, calib_dir):
    """Real weights: random ones have no meaningful activation ranges to calibrate."""
    import onnx

    if not REAL_WEIGHTS.is_file():
        pytest.skip(f"{REAL_WEIGHTS} is absent (the shared data's real YOLO11n)")
    common = ["export", "yolo", "--weights", str(REAL_WEIGHTS), "--imgsz", "320", "--dynamic",
              "--batch", "4", "--format", "onnx"]
    assert main([*common, "--out", str(tmp_path / "f.onnx")]) == 0
    assert main([*common, "--int8", "--calib-dir", str(calib_dir), "--calib-frames", "8",
                 "--out", str(tmp_path / "q.onnx")]) == 0
    meta = read_sidecar(tmp_path / "q.onnx")
    assert meta["precision"] == "int8" and meta["rect"] is True
    assert meta["calibration"]["frames"] == 8 and meta["calibration"]["format"] == "QDQ"
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert any(p.key == "names" for p in model.metadata_props)  # ultralytics' metadata kept
    img = _street_frame()
    a = Detector(tmp_path / "f.onnx", conf=0.4, device="cpu")([img])[0]
    b = Detector(tmp_path / "q.onnx", conf=0.4, device="cpu")([img])[0]
    assert len(a) >= 3 and set(a.names) == {"person"}
    assert abs(len(a) - len(b)) <= 2 and set(b.names) == {"person"}


def _street_frame() -> np.ndarray:
    """Frame 100 of the shared pedestrian clip (the data README's reference frame)."""
    cap = cv2.VideoCapture(str(VTEST))
    for _ in range(100):
        cap.read()
    ok, frame = cap.read()
    cap.release()
    if not ok:
        pytest.skip(f"{VTEST} is absent or unreadable (the shared data's sample clip)")
    return frame


def test_head_output_and_decoding_stay_float():
    import onnx

    model = onnx.load(str(exported("onnx", imgsz=160, batch=1, dynamic=True)))
    keep = set(float_head_nodes(model))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert "/model.23/cv3.0/cv3.0.2/Conv" in keep and "/model.23/cv2.2/cv2.2.2/Conv" in keep
    assert "/model.23/cv2.0/cv2.0.0/conv/Conv" not in keep and "/model.0/conv/Conv" not in keep
    assert any("dfl" in k for k in keep)
    assert len(keep & set(convs)) == 6  # 3 scales x (box, class) output convolutions


def test_calibration_frames_from_images_and_video(calib_dir):
    assert [p.name for p in calibration_files(calib_dir)] == ["clip.avi", "photo0.jpg", "photo1.jpg"]
    frames = list(calibration_frames(calib_dir, limit=6))
    assert len(frames) == 6 and all(f.ndim == 3 and f.shape[2] == 3 for f in frames)


def test_calibration_folder_errors(tmp_path):
    with pytest.raises(ExportError, match="no such folder"):
        calibration_files(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ExportError, match="no images"):
        calibration_files(tmp_path)


@pytest.mark.parametrize("opts,match", [
    (ExportOptions(fmt="torchscript", int8=True, calib_dir="d"), "--format openvino .NNCF., onnx"),
    (ExportOptions(fmt="openvino", int8=True), "--calib-dir DIR"),
    (ExportOptions(fmt="onnx", int8=True), "--calib-dir DIR"),
    (ExportOptions(fmt="onnx", int8=True, half=True, calib_dir="d"), "exclude each other"),
])
def test_option_errors_name_the_fix(opts, match):
    with pytest.raises(ExportError, match=match):
        opts.check()


def test_openvino_out_suffix_is_checked(tmp_path, capsys):
    rc = main(["export", "yolo", "--weights", "yolo11n.yaml", "--format", "openvino",
               "--out", str(tmp_path / "m.onnx")])
    assert rc == 2 and "must end in .xml" in capsys.readouterr().err


def test_ap_validation_is_one_for_the_float_model_and_returns_outputs():
    """NNCF's accuracy-control metric: 1 + the worst AP50 change against the float model's
    (which the first whole-set call records), with the raw outputs per item for NNCF's ranking."""
    ov = pytest.importorskip("openvino")
    from engines.evaluation import read_labelled_set
    from export.openvino_int8 import APValidation

    coco = SHARED / "coco128"
    if not coco.is_dir():
        pytest.skip(f"{coco} is absent (the shared data's labelled photos)")
    model = ov.convert_model(str(exported("onnx", imgsz=160, batch=1, dynamic=True)))
    v = APValidation({"coco": read_labelled_set(coco, "coco", limit=3)}, "images", 32, imgsz=160)
    compiled = ov.Core().compile_model(model, "CPU")
    assert v.transform(v.items[0]).shape[:2] == (1, 3)
    metric, outputs = v(compiled, v.items[:1])  # a subset: no reference taken yet
    assert v.reference is None and len(outputs) == 1
    metric, outputs = v(compiled, v.items)
    assert metric == 1.0 and set(v.reference) == {"coco"} and len(outputs) == 3
    assert outputs[0][0].shape[:2] == (1, 84) and v.history[-1]["worst_change"] == 0.0


def test_openvino_int8_from_an_f32_ir_names_its_source_and_runs(tmp_path, calib_dir):
    """`export openvino-int8`: what the daemon runs once it has frames (no weights needed): the
    int8 IR beside the f32 one, its sidecar naming the f32 IR's SHA-256 (daemon.int8.sibling)."""
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from daemon.int8.sibling import Sibling
    from engines.ir_files import ir_sha256
    from export.openvino_int8 import count_fake_quantize

    rc, f32 = _export(tmp_path, "--format", "openvino", "y.xml")
    assert rc == 0
    assert main(["export", "openvino-int8", "--ir", str(f32), "--calib-dir", str(calib_dir),
                 "--calib-frames", "6"]) == 0
    sib = Sibling(f32)
    meta = read_sidecar(sib.int8)
    assert meta["precision"] == "int8" and meta["rect"] is True and meta["names"]["0"] == "person"
    assert meta["source_ir"] == {"file": "y.xml", "sha256": ir_sha256(f32)}
    assert meta["calibration"]["frames"] == 6 and sib.matches_f32() and not sib.usable()
    assert count_fake_quantize(ov.Core().read_model(str(sib.int8))) > 0
    assert not list(tmp_path.glob("*.partial.*"))
    with Detector(sib.int8) as det:
        assert det.engine.placement()["provider"].startswith("openvino:CPU/int8")
        assert len(det([np.full((90, 160, 3), 100, np.uint8)])) == 1
    assert main(["export", "openvino-int8", "--ir", str(sib.int8), "--calib-dir",
                 str(calib_dir)]) == 2  # already int8
