"""`duskwatch export yolo` and `duskwatch detect` end to end, run through the real CLI."""

from __future__ import annotations

import importlib.util
import json
import logging

import cv2
import numpy as np
import pytest

pytest.importorskip("ultralytics")

from daemon.cli.main import main  # noqa: E402
from engines.base import read_sidecar  # noqa: E402
from engines.yolo import Detector  # noqa: E402
from tests.yolo_exports import exported, sample_images  # noqa: E402


@pytest.fixture(scope="module")
def cli_onnx(tmp_path_factory):
    """`export yolo --weights yolo11n.yaml --imgsz 160 --format onnx`, with its log."""
    out = tmp_path_factory.mktemp("export") / "y.onnx"
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("export.yolo").addHandler(handler)
    try:
        rc = main(["export", "yolo", "--weights", "yolo11n.yaml", "--imgsz", "160",
                   "--format", "onnx", "--out", str(out)])
    finally:
        logging.getLogger("export.yolo").removeHandler(handler)
    return rc, out, "\n".join(r.getMessage() for r in records)


def test_yaml_export_warns_and_writes_sidecar(cli_onnx):
    rc, out, log_text = cli_onnx
    assert rc == 0 and out.is_file()
    assert "RANDOM" in log_text and "yolo11n.yaml" in log_text
    meta = read_sidecar(out)
    assert meta["kind"] == "detector" and meta["backend"] == "onnxruntime"
    assert meta["imgsz"] == [160, 160] and meta["stride"] == 32
    assert meta["batch"] == 1 and meta["dynamic"] is False and meta["precision"] == "fp32"
    assert len(meta["names"]) == 80 and meta["names"]["0"] == "person"
    assert meta["source_weights"] == "yolo11n.yaml" and meta["random_weights"] is True
    assert meta["duskwatch_version"] and meta["outputs"][0]["shape"] == [1, 84, 525]


def test_detect_prints_one_json_line_per_image(cli_onnx, tmp_path, capsys):
    _, engine, _ = cli_onnx
    paths = []
    for i, img in enumerate(sample_images(2)):
        paths.append(str(tmp_path / f"f{i}.png"))
        cv2.imwrite(paths[-1], img)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    capsys.readouterr()
    rc = main(["detect", "--engine", str(engine), "--conf", "0.0", paths[0],
               str(tmp_path / "broken.png"), paths[1]])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert rc == 1 and "broken.png" in err and "cannot read" in err
    assert [line["image"] for line in lines] == paths  # the others were still processed
    img0 = cv2.imread(paths[0])
    assert (lines[0]["height"], lines[0]["width"]) == img0.shape[:2]
    det = lines[0]["detections"]
    assert det and set(det[0]) == {"box", "score", "class_id", "class"}
    boxes = np.array([d["box"] for d in det])
    assert boxes.min() >= 0 and boxes[:, 2].max() <= img0.shape[1] and boxes[:, 3].max() <= img0.shape[0]


def test_detect_missing_and_truncated_engine(tmp_path, capsys):
    rc = main(["detect", "--engine", str(tmp_path / "none.onnx"), "x.png"])
    assert rc == 1 and "none.onnx: engine file not found" in capsys.readouterr().err
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07\x12\x04junk")
    rc = main(["detect", "--engine", str(tmp_path / "cut.onnx"), "x.png"])
    assert rc == 1 and "cut.onnx: ONNX Runtime cannot load" in capsys.readouterr().err


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    rc = main(["export", "yolo", "--weights", str(tmp_path / "mine.pt"), "--out",
               str(tmp_path / "m.onnx")])
    assert rc == 1 and "mine.pt: weights file not found" in capsys.readouterr().err


def test_missing_official_weights_offline(tmp_path, capsys, monkeypatch):
    from ultralytics.utils import ONLINE

    if ONLINE:
        pytest.skip("this machine is online: ultralytics would download yolo11n.pt")
    monkeypatch.chdir(tmp_path)
    rc = main(["export", "yolo", "--weights", "yolo11n.pt", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "yolo11n.pt: weights file not found" in err and "no internet" in err


def test_wrong_out_suffix(tmp_path, capsys):
    rc = main(["export", "yolo", "--weights", "yolo11n.yaml", "--format", "torchscript",
               "--out", str(tmp_path / "m.onnx")])
    assert rc == 2 and "must end in .torchscript" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_engine_format_without_tensorrt(tmp_path, capsys):
    rc = main(["export", "yolo", "--weights", "yolo11n.yaml", "--format", "engine", "--imgsz", "160",
               "--out", str(tmp_path / "m.engine")])
    assert rc == 1 and "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


def test_static_batch_is_chunked_and_padded():
    images = sample_images(3)  # 3 images through a batch-2 engine: 2 + (1 + padding)
    with Detector(exported("onnx", 320, 2), conf=0.05, device="cpu") as det:
        det.warmup()
        together = det(images)
        alone = [det([img])[0] for img in images]
    for a, b in zip(together, alone):
        assert len(a) == len(b) > 0 and np.allclose(a.boxes, b.boxes, atol=1e-3)


def test_dynamic_export_takes_any_batch():
    path = exported("onnx", 160, dynamic=True)
    meta = read_sidecar(path)
    assert meta["dynamic"] is True and meta["batch"] is None
    with Detector(path, conf=0.05, device="cpu") as det:
        assert det.engine.max_batch is None and det.imgsz == (160, 160)
        out = det(sample_images(3))
    assert len(out) == 3 and all(len(d) for d in out)


def test_detector_rejects_bad_images():
    with Detector(exported("onnx", 320, 2), device="cpu") as det:
        with pytest.raises(ValueError, match="image 1: expected a BGR uint8 HxWx3"):
            det([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)])


def test_calibration_frames_and_batches(tmp_path):
    from export.trt_build import calibration_batches, calibration_frames
    from export.yolo import ExportError

    with pytest.raises(ExportError, match="no images found"):
        calibration_frames(tmp_path, 10)
    for i, img in enumerate(sample_images(3)):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img)
    (tmp_path / "notes.txt").write_text("not a frame")
    files = calibration_frames(tmp_path, 10)
    assert [f.name for f in files] == ["0.jpg", "1.jpg", "2.jpg"]
    batches = list(calibration_batches(files, 160, 2))  # the incomplete last batch is dropped
    assert len(batches) == 1 and batches[0].shape == (2, 3, 160, 160)
    assert batches[0].dtype == np.float32 and 0.0 <= batches[0].min() <= batches[0].max() <= 1.0


def test_dynamic_onnx_runs_rect_inputs_for_wide_frames():
    """A --dynamic ONNX detector pads a 16:9 frame to a stride-multiple rectangle, not a square,
    and maps the boxes back into the frame."""
    from engines.letterbox import rect_size

    assert rect_size([(720, 1280)], (640, 640), 32) == (384, 640)
    assert rect_size([(720, 1280), (1280, 720)], (640, 640), 32) == (640, 640)
    assert rect_size([(241, 321)], (160, 160), 32) == (128, 160)
    path = exported("onnx", 160, dynamic=True)
    assert read_sidecar(path)["rect"] is True
    fed = []
    with Detector(path, conf=0.01, device="cpu") as det:
        run = det.engine._run
        det.engine._run = lambda feed: fed.append(next(iter(feed.values())).shape) or run(feed)
        wide = cv2.resize(sample_images(1)[0], (320, 180))
        out = det([wide, wide])
    assert fed == [(2, 3, 96, 160)]
    assert len(out[0]) > 0
    boxes = out[0].boxes
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 320).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 180).all()


def test_static_onnx_keeps_square_inputs():
    path = exported("onnx", 160, 2)
    with Detector(path, conf=0.01, device="cpu") as det:
        assert det.rect_stride is None
        assert det.input_size_for([np.zeros((180, 320, 3), np.uint8)]) == (160, 160)
