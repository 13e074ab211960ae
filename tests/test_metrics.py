"""The metrics contract (deploy/README.md, "Reading the metrics"): names, types, and every label value present from the start."""

from prometheus_client.parser import text_string_to_metric_families

from daemon.pipeline.frames import CameraState
from daemon.metrics import OUTCOMES, STAGES, Metrics


def families(m: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(m.render().decode())}


def test_design_table_exists_with_types():
    m = Metrics()
    m.set_classes(["person", "car"])
    m.add_camera("gate")
    m.set_build_info("0.1.0", "onnxruntime", "yolo11n.onnx", "denoiser.onnx")
    fam = families(m)
    want = {
        "duskwatch_frames": "counter",
        "duskwatch_frames_enhanced": "counter",
        "duskwatch_detections": "counter",
        "duskwatch_stage_duration_seconds": "histogram",
        "duskwatch_camera_up": "gauge",
        "duskwatch_camera_reconnects": "counter",
        "duskwatch_camera_lowlight": "gauge",
        "duskwatch_frame_age_seconds": "gauge",
        "duskwatch_build_info": "gauge",
        "duskwatch_engine_failures": "counter",
        "duskwatch_sink_failures": "counter",
        "duskwatch_camera_state": "gauge",
    }
    for name, typ in want.items():
        assert name in fam, name
        assert fam[name].type == typ, name


def test_every_label_value_created_at_start():
    m = Metrics()
    m.set_classes(["person", "car"])
    m.add_camera("gate")
    m.add_camera("yard")
    text = m.render().decode()
    r = m.registry
    for cam in ("gate", "yard"):
        for outcome in OUTCOMES:
            assert r.get_sample_value("duskwatch_frames_total", {"camera": cam, "outcome": outcome}) == 0
        for cls in ("person", "car"):
            assert r.get_sample_value("duskwatch_detections_total", {"camera": cam, "class": cls}) == 0
        assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": cam}) == 0
        assert r.get_sample_value("duskwatch_frames_enhanced_total", {"camera": cam}) == 0
        assert r.get_sample_value("duskwatch_camera_state", {"camera": cam, "state": "connecting"}) == 1
    for stage in STAGES:
        assert r.get_sample_value("duskwatch_stage_duration_seconds_count", {"stage": stage}) == 0
    for stage in ("enhance", "detect"):
        assert r.get_sample_value("duskwatch_engine_failures_total", {"stage": stage}) == 0
    assert "rtsp" not in text


def test_classes_added_after_cameras_and_removal():
    m = Metrics()
    m.add_camera("gate")
    m.set_classes(["dog"])
    assert m.registry.get_sample_value("duskwatch_detections_total", {"camera": "gate", "class": "dog"}) == 0
    m.remove_camera("gate")
    assert 'camera="gate"' not in m.render().decode()
    m.count_frames("gate", "processed")  # a late event for a removed camera creates nothing
    assert 'camera="gate"' not in m.render().decode()


def test_state_enum_gauge_and_up():
    m = Metrics()
    m.add_camera("gate")
    m.set_state("gate", CameraState.STREAMING)
    r = m.registry
    assert r.get_sample_value("duskwatch_camera_up", {"camera": "gate"}) == 1
    states = {s.value: r.get_sample_value("duskwatch_camera_state", {"camera": "gate", "state": s.value})
              for s in CameraState}
    assert states == {s.value: (1.0 if s == CameraState.STREAMING else 0.0) for s in CameraState}
    m.set_state("gate", CameraState.BACKING_OFF)
    assert r.get_sample_value("duskwatch_camera_up", {"camera": "gate"}) == 0


def test_registries_are_separate():
    a, b = Metrics(), Metrics()
    a.add_camera("x")
    a.count_frames("x", "processed", 3)
    b.add_camera("x")
    assert b.registry.get_sample_value("duskwatch_frames_total", {"camera": "x", "outcome": "processed"}) == 0


def test_build_info_replaces_labels():
    m = Metrics()
    m.set_build_info("1", "onnxruntime", "a.onnx", "")
    m.set_build_info("1", "onnxruntime", "b.onnx", "e.onnx")
    fam = families(m)["duskwatch_build_info"]
    assert [s.labels["detector"] for s in fam.samples] == ["b.onnx"]
