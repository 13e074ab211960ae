"""The Triton engine against a real Triton server (the bundled binary of nvidia-pytriton).

Parity: the same Detections as the local engine on the same frames (random-weight YOLO11n for
the plumbing, the real COCO int8 YOLO11n for what is detected), over gRPC and HTTP, and the
enhancer. The server's model metadata is checked like a local engine's. URL parsing and the
model repository writer are tested without a server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engines.base import EngineError, open_engine
from engines.triton_backend import TritonEngine, is_triton_url, parse_url
from engines.yolo import Detector
from tests.conftest import COCO_INT8
from tests.yolo_exports import exported, sample_images

pytestmark = pytest.mark.timeout(180)
CONF = 0.05  # the random-weight model's scores are low: a few hundred boxes per photo
VTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "vtest.avi"


# -- without a server ----------------------------------------------------------------------------
def test_url_forms_and_options():
    t = parse_url("triton://10.0.0.5:8001/yolo?timeout=2.5&tls=1&version=3")
    assert (t.protocol, t.address, t.model, t.timeout_s, t.tls, t.version) == \
        ("grpc", "10.0.0.5:8001", "yolo", 2.5, True, "3")
    assert t.name == "yolo@10.0.0.5:8001"
    h = parse_url("triton+https://gw.example:443/yolo")
    assert (h.protocol, h.tls) == ("http", True)
    assert is_triton_url("triton+http://h:8000/m") and not is_triton_url("/x/yolo.onnx")


@pytest.mark.parametrize("url, words", [
    ("triton://host/yolo", "HOST:PORT/MODEL"),
    ("triton://host:8001/", "HOST:PORT/MODEL"),
    ("triton://host:8001/a/b", "one model name"),
    ("triton://host:8001/yolo?timeout=0", "timeout"),
    ("triton://host:8001/yolo?tls=maybe", "tls must be 1 or 0"),
    ("triton://host:8001/yolo?colour=red", "unknown option"),
])
def test_bad_urls_say_what_to_write(url, words):
    with pytest.raises(EngineError, match=re.escape(words)):
        parse_url(url)


def test_a_token_never_goes_in_the_url_nor_in_its_errors():
    with pytest.raises(EngineError) as err:
        parse_url("triton://host:8001/yolo?token=s3cr3t")
    assert "token_env" in str(err.value) and "s3cr3t" not in str(err.value)
    with pytest.raises(EngineError) as err:
        parse_url("triton://user:pw@host:8001/yolo")
    assert "pw" not in str(err.value).replace("password", "")


def test_token_from_environment_or_credential(tmp_path):
    t = parse_url("triton://h:1/m?token_env=TRITON_TOKEN")
    assert t.headers({"TRITON_TOKEN": "abc\n"}) == {"authorization": "Bearer abc"}
    with pytest.raises(EngineError, match="TRITON_TOKEN.*not set"):
        t.headers({})
    (tmp_path / "tok").write_text("xyz")
    c = parse_url("triton://h:1/m?token_credential=tok&header=x-api-key")
    assert c.headers({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == {"x-api-key": "xyz"}
    assert parse_url("triton://h:1/m").headers({}) is None


def test_a_triton_token_is_among_the_secrets_the_logs_mask():
    from daemon.config import engine_name, parse_config, secrets_of

    cfg = parse_config({"cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate"}],
                        "engines": {"detector": "triton://10.0.0.2:8001/yolo?token_env=TT"},
                        "sinks": []})
    assert "s3cr3t-tok" in secrets_of(cfg, {"TT": "s3cr3t-tok"})
    assert engine_name(cfg.engines.detector) == "yolo@10.0.0.2:8001"


class _FlakyClient:
    """A client at the engine's seam: a model's metadata, then ``fails`` failed calls."""

    def __init__(self, fails: int):
        self.fails, self.calls = fails, 0

    def metadata(self):
        return {"platform": "python",
                "inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 3]}],
                "outputs": [{"name": "y", "datatype": "FP16", "shape": [-1, 3]}]}

    def config(self):
        return {"max_batch_size": 4, "parameters": {"duskwatch": {"string_value": json.dumps(
            {"kind": "test", "wire": {"input_scale": 255, "outputs": "fp16"}})}}}

    def infer(self, arrays, outputs):
        self.calls += 1
        if self.calls <= self.fails:
            raise ConnectionRefusedError("refused")
        return {"y": (arrays["x"].astype(np.float32) / 255).astype(np.float16)}

    def close(self):
        pass


def test_backoff_is_capped_and_one_success_ends_the_outage():
    now = [0.0]
    clients: list[_FlakyClient] = []
    shared = _FlakyClient(fails=6)

    def factory(target, headers):  # a fresh connection after each failure, same server
        clients.append(shared)
        return shared

    eng = TritonEngine("triton://h:1/m", client_factory=factory, clock=lambda: now[0])
    assert eng.inputs[0].dtype == np.float32 and eng.outputs[0].dtype == np.float32
    assert eng.batch_limits == (1, 4) and eng.metadata["kind"] == "test"
    feed = {"x": np.array([[0.0, 0.5, 1.0]], np.float32)}
    waits = []
    while shared.calls < 6:
        with pytest.raises(EngineError, match="Triton call failed"):
            eng.infer(feed)
        assert not eng.available and "unavailable: ConnectionRefusedError" in eng.status()
        calls = shared.calls
        with pytest.raises(EngineError, match="inference unavailable"):  # no call: waiting
            eng.infer(feed)
        assert shared.calls == calls
        waits.append(eng._retry_at - now[0])
        now[0] = eng._retry_at
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    y = eng.infer(feed)["y"]  # uint8 on the wire, fp16 back, float32 to the caller
    assert y.dtype == np.float32 and np.allclose(y, [[0, 128 / 255, 1]], atol=1e-3)
    assert eng.available and eng.status() == "available"
    assert len(clients) == 7 and eng.wire["failed_calls"] == 6 and eng.wire["calls"] == 1


def test_open_engine_takes_only_triton_urls():
    with pytest.raises(EngineError, match="triton://HOST:PORT/MODEL"):
        open_engine("grpc://host:8001/yolo")


def test_repository_config_and_the_uint8_graph_gives_the_same_floats(tmp_path):
    """The wrapped ONNX (uint8 in, Cast and Mul(1/255) folded in) computes exactly what the
    original computes on the letterboxed floats; config.pbtxt says what Triton needs."""
    import onnxruntime as ort

    from export.triton_repo import RepoOptions, write_repository
    from engines.letterbox import letterbox_cpu

    src = exported("onnx", imgsz=160, batch=8, dynamic=True)
    write_repository(tmp_path, {"det": ("detector", src)},
                     RepoOptions(server="gpu", runtime="tensorrt", max_batch=4, instances=2))
    cfg = (tmp_path / "det" / "config.pbtxt").read_text()
    for text in ('platform: "onnxruntime_onnx"', "max_batch_size: 4", "TYPE_UINT8",
                 "dynamic_batching { max_queue_delay_microseconds: 2000 }",
                 "instance_group [ { count: 2 kind: KIND_GPU } ]", 'name: "tensorrt"'):
        assert text in cfg, (text, cfg)
    meta = json.loads(json.loads(re.search(r'key: "duskwatch" value: \{ string_value: (".*") \}',
                                           cfg).group(1)))
    assert meta["kind"] == "detector" and meta["wire"]["input_scale"] == 255
    assert len(meta["names"]) == 80 and meta["rect"] is True
    assert not (tmp_path / "det" / "1" / "model.py").exists()

    floats, _ = letterbox_cpu(sample_images(2), (160, 160))
    u8 = np.rint(floats * 255).astype(np.uint8)
    plain = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    wrapped = ort.InferenceSession(str(tmp_path / "det" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert wrapped.get_inputs()[0].type == "tensor(uint8)"
    np.testing.assert_array_equal(wrapped.run(None, {"images": u8})[0],
                                  plain.run(None, {"images": floats})[0])


def test_export_triton_command_writes_a_cpu_repository(tmp_path, capsys):
    from daemon.cli.main import main

    src = exported("onnx", imgsz=160, batch=8, dynamic=True)
    rc = main(["export", "triton", "--out", str(tmp_path / "repo"), "--detector", str(src),
               "--server", "cpu", "--runtime", "openvino", "--outputs", "fp16"])
    assert rc == 0
    assert "triton://TRITON_HOST:8001/yolo" in capsys.readouterr().out
    cfg = (tmp_path / "repo" / "yolo" / "config.pbtxt").read_text()
    assert 'backend: "python"' in cfg and "KIND_CPU" in cfg and "TYPE_FP16" in cfg
    assert 'string_value: "openvino"' in cfg
    assert (tmp_path / "repo" / "yolo" / "1" / "model.py").is_file()
    rc = main(["export", "triton", "--out", str(tmp_path / "r2"), "--detector", str(src),
               "--server", "cpu", "--runtime", "tensorrt"])
    assert rc == 2
    assert main(["export", "triton", "--out", str(tmp_path / "r3"), "--detector", str(src),
                 "--candidates", "10"]) == 2
    assert main(["export", "triton", "--out", str(tmp_path / "r4"), "--detector", str(src),
                 "--candidates", "300"]) == 0
    cfg = (tmp_path / "r4" / "yolo" / "config.pbtxt").read_text()
    assert 'output [ { name: "output0" data_type: TYPE_FP32 dims: [84, -1] } ]' in cfg
    assert '\\"candidates\\": 300' in cfg


# -- against the server --------------------------------------------------------------------------
def _same(a, b, box_atol=1e-3):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        assert list(x.names) == list(y.names)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=box_atol)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)


def test_same_detections_as_the_local_engine(triton_server):
    images = sample_images(3)
    src = exported("onnx", imgsz=160, batch=8, dynamic=True)
    with Detector(src, conf=CONF, device="cpu") as local, \
            Detector(triton_server.url("yolo"), conf=CONF) as remote:
        assert remote.backend == "triton" and remote.batch_size == 8
        assert remote.names == local.names and remote.rect_stride == local.rect_stride
        want, got = local(images), remote(images)
    assert sum(len(d) for d in want) > 30  # the statement is about many boxes
    _same(want, got)
    wire = remote.engine.wire
    h, w = remote.input_size_for(images)
    assert wire["frames"] == 3 and wire["bytes_sent"] == 3 * 3 * h * w  # uint8: a byte a value


def test_http_gives_what_grpc_gives(triton_server):
    images = sample_images(2)
    with Detector(triton_server.url("yolo"), conf=CONF) as grpc, \
            Detector(triton_server.url("yolo", scheme="triton+http"), conf=CONF) as http:
        _same(grpc(images), http(images))


@pytest.mark.skipif(not (COCO_INT8.is_file() and VTEST.is_file()),
                    reason="needs ../shared/data (weights/yolo11n_coco_int8_640.onnx, video/vtest.avi)")
def test_real_weights_find_the_same_people(triton_server):
    import cv2

    cap = cv2.VideoCapture(str(VTEST))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = cap.read()
    assert ok
    with Detector(COCO_INT8, device="cpu") as local, \
            Detector(triton_server.url("coco", timeout="30")) as remote:
        want, got = local([frame, frame[:, ::-1].copy()]), remote([frame, frame[:, ::-1].copy()])
    assert sum(n == "person" for n in want[0].names) >= 10
    _same(want, got)


@pytest.mark.skipif(not (COCO_INT8.is_file() and VTEST.is_file()),
                    reason="needs ../shared/data (weights/yolo11n_coco_int8_640.onnx, video/vtest.avi)")
def test_the_best_anchors_only_give_the_same_detections_for_an_eighth_of_the_bytes(triton_server):
    """--candidates 1000: the server sends back its 1000 best anchors of 8400; on a busy real
    frame (about 500 anchors above 0.01) every threshold gives what the whole head gives."""
    import cv2

    cap = cv2.VideoCapture(str(VTEST))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    frame = cap.read()[1]
    for conf in (0.01, 0.25):
        with Detector(triton_server.url("coco", timeout="30"), conf=conf) as every, \
                Detector(triton_server.url("coco_top1000", timeout="30"), conf=conf) as best:
            _same(every([frame]), best([frame]), box_atol=0)
            assert every.engine.wire["bytes_received"] == 84 * 8400 * 4
            assert best.engine.wire["bytes_received"] == 84 * 1000 * 4


def test_fp16_outputs_keep_the_boxes(triton_server):
    images = sample_images(2)
    with Detector(triton_server.url("yolo"), conf=CONF) as f32, \
            Detector(triton_server.url("yolo_fp16"), conf=CONF) as f16:
        a, b = f32(images), f16(images)
        assert f16.engine.outputs[0].dtype == np.float32  # widened on arrival
        assert f16.engine.wire["bytes_received"] * 2 == f32.engine.wire["bytes_received"]
    for x, y in zip(a, b):
        assert len(x) > 30 and abs(len(x) - len(y)) <= max(2, len(x) // 50)
        for box, cls in zip(x.boxes[:20], x.class_ids[:20]):  # each strong box is still there
            same = y.boxes[y.class_ids == cls]
            assert np.abs(same - box).max(axis=1).min() <= 1.0, (box, cls)


def test_enhancer_through_triton_matches_local(triton_repo, triton_server):
    from engines.enhancer import Enhancer

    local_onnx = triton_repo.parent / "enh.onnx"
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 50, (70, 90, 3), dtype=np.uint8) for _ in range(2)]
    with Enhancer(local_onnx, device="cpu") as local, \
            Enhancer(triton_server.url("enhancer", timeout="30")) as remote:
        for x, y in zip(local(frames), remote(frames)):
            assert x.shape == y.shape
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_metadata_is_checked_and_errors_name_server_and_model(triton_server):
    with open_engine(triton_server.url("yolo")) as eng:
        assert isinstance(eng, TritonEngine)
        assert eng.batch_limits == (1, 8)
        assert eng.placement()["device"] == f"triton:{triton_server.grpc_address}"
        with pytest.raises(EngineError, match=rf"yolo@{triton_server.grpc_address}.*rank"):
            eng.infer({"images": np.zeros((3, 160, 160), np.float32)})
        with pytest.raises(EngineError, match="dtype"):
            eng.infer({"images": np.zeros((1, 3, 160, 160), np.float64)})
    with pytest.raises(EngineError, match=r"cannot read model 'nope'.*127\.0\.0\.1"):
        open_engine(triton_server.url("nope"))
    with pytest.raises(EngineError, match="not a detector"):
        Detector(triton_server.url("enhancer"))


def test_detect_command_takes_a_triton_url(triton_server, capsys, tmp_path):
    import cv2

    from daemon.cli.main import main

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), sample_images(1)[0])
    assert main(["detect", "--engine", triton_server.url("yolo"), "--conf", "0.05", str(img)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(line["detections"]) > 5


def test_bench_pipeline_reports_the_wire(triton_server, footage, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "bench", "pipeline", "--source", str(footage["h264"]),
         "--engine", triton_server.url("yolo", timeout="30"), "--seconds", "2", "--warmup", "1",
         "--fps", "10", "--no-ultralytics", "--no-budget"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(proc.stdout.strip().splitlines()[-1])["pipeline"]
    assert ours["detector"]["backend"] == "triton" and ours["frames_processed"] > 0
    wire = ours["wire"]
    assert wire["failed_calls"] == 0 and wire["images"] > 0
    # 640x360 frames letterboxed to 96x160 (rect inference at 160) travel as uint8 bytes
    assert wire["bytes_per_image"] == 3 * 96 * 160 + 84 * (96 * 160 // 64 + 96 * 160 // 256
                                                          + 96 * 160 // 1024) * 4
    assert wire["bytes_sent_per_frame"] == pytest.approx(3 * 96 * 160, rel=0.25)
