"""`duskwatch bench pipeline`: the JSON summary, with the ultralytics comparison in the same run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_pipeline_summary(footage, tmp_path):
    from tests.yolo_exports import exported

    engine = exported("onnx", imgsz=160, batch=8, dynamic=True)
    clip = str(footage["h264"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "bench", "pipeline", "--source", clip, "--source", clip,
         "--engine", str(engine), "--seconds", "3", "--warmup", "1", "--fps", "10",
         "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = summary["pipeline"]
    assert ours["streams"] == 2 and ours["frames_processed"] > 0
    assert set(ours["per_stream_fps"]) == {"s0", "s1"}
    assert ours["fps"] == pytest.approx(ours["frames_processed"] / ours["seconds"], rel=0.01)
    for stage in ("decode", "detect", "end_to_end"):
        st = ours["stages"][stage]
        assert st["n"] > 0 and st["p50_ms"] <= st["p99_ms"]
    assert ours["stages"]["enhance"]["n"] == 0  # no enhancer given
    assert ours["frame_age"]["n"] == ours["stages"]["decode"]["n"]
    assert ours["detector"] == {"backend": "onnxruntime", "device": "cpu",
                                "provider": "CPUExecutionProvider"}
    budget = summary["budget"]
    assert set(budget["ms_per_frame"]) == {"decode", "gate", "letterbox", "enhance", "detect",
                                           "nms", "metrics"}
    assert budget["ms_per_frame"]["enhance"] is None and budget["ms_per_frame"]["detect"] > 0
    assert budget["total_ms"] == pytest.approx(
        sum(v for v in budget["ms_per_frame"].values() if v), abs=0.01)
    ultra = summary["ultralytics"]["torch"]
    assert ultra["weights"] == "yolo11n.yaml" and ultra["imgsz"] == 160 and ultra["frames"] > 0
    assert summary["ratios"]["torch"] == pytest.approx(ours["fps"] / ultra["fps"], rel=0.01)
    assert summary["ratio_vs_ultralytics"] == summary["ratios"]["torch"]
    assert ours["cpu_seconds"] > 0 and ultra["cpu_seconds"] > 0
    assert summary["cpu_efficiency_ratios"]["torch"] == pytest.approx(
        ours["frames_per_cpu_second"] / ultra["frames_per_cpu_second"], rel=0.01)


def test_ultralytics_paths_are_checked():
    from daemon.bench.pipeline import ultralytics_paths
    from engines.errors import UserError

    assert ultralytics_paths("torch, openvino") == ["torch", "openvino"]
    with pytest.raises(UserError, match="use one or more of torch, openvino"):
        ultralytics_paths("tensorrt")


@pytest.mark.slow
def test_bench_pipeline_compares_the_decoders(footage, tmp_path):
    """--decoder both: the pipeline with each decoder; the child processes' CPU is counted."""
    from tests.yolo_exports import exported

    engine = exported("onnx", imgsz=160, batch=8, dynamic=True)
    clip = str(footage["h264"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "bench", "pipeline", "--source", clip,
         "--engine", str(engine), "--seconds", "3", "--warmup", "2", "--fps", "10",
         "--device", "cpu", "--decoder", "both", "--no-ultralytics", "--no-budget"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoders = json.loads(proc.stdout.strip().splitlines()[-1])["decoders"]
    assert set(decoders) == {"thread", "process"}
    for name, d in decoders.items():
        assert d["frames_processed"] > 0 and d["cpu_ms_per_frame"] > 0, (name, d)
    assert decoders["thread"]["decoder_cpu_seconds"] == 0
    assert decoders["process"]["decoder_cpu_seconds"] > 0


@pytest.mark.slow
def test_bench_pipeline_day_and_night_side_by_side(footage, tmp_path):
    """--day-night: the same streams with enhance never (day) and always (night: every frame gets
    the views and the enhanced picture), alternating per round; night / day is their quotient.
    With --watch a viewer fetches each live snapshot: only those pictures are made."""
    from tests.yolo_exports import exported

    engine = exported("onnx", imgsz=160, batch=8, dynamic=True)
    enhancer = tmp_path / "k2.onnx"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "daemon.cli", "export", "denoiser", "--steps", "2",
                    "--out", str(enhancer)], cwd=tmp_path, env=env, check=True, capture_output=True)
    clip = str(footage["h264"])
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "bench", "pipeline", "--source", clip,
         "--engine", str(engine), "--enhancer", str(enhancer), "--seconds", "3", "--warmup", "2",
         "--fps", "10", "--device", "cpu", "--day-night", "--watch", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dn = json.loads(proc.stdout.strip().splitlines()[-1])["day_night"]
    assert dn["day"]["frames_processed"] > 0 and dn["night"]["frames_processed"] > 0
    night = dn["night"]
    # every night frame got the picture (counted at the filter, a batch apart at the window's ends)
    assert abs(night["pictures"] - night["frames_processed"]) <= 8
    assert night["snapshots_fetched"] > 0
    # the pictures somebody looked at were made, and only those (2 a second, 10 frames a second;
    # one look may straddle the window's end)
    assert 0 < night["enhanced"] <= night["snapshots_fetched"] + 1
    assert night["enhanced"] < night["pictures"] / 2
    assert dn["night_over_day"] == pytest.approx(dn["night"]["fps"] / dn["day"]["fps"], rel=0.02)
