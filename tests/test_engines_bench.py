"""`duskwatch bench engine`: the JSON summary's shape and its errors (no timing assertions)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ultralytics")

from daemon.cli.main import main  # noqa: E402
from tests.yolo_exports import exported  # noqa: E402


def test_summary_is_the_last_line(capsys):
    engine = str(exported("onnx", 160, 1))
    rc = main(["bench", "engine", "--engine", engine, "--batch", "1", "--seconds", "0.3",
               "--warmup", "0.1", "--threads", "1", "--compare-bare", "yolo11n.yaml"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    summary = json.loads(out[-1])
    (res,) = summary["engines"]
    assert res["engine"] == engine and res["backend"] == "onnxruntime" and res["device"] == "cpu"
    assert res["images_per_s"] > 0 and res["iterations"] >= 1
    assert res["latency_ms_p99"] >= res["latency_ms_p50"] > 0
    (bare,) = summary["bare"]  # CPU: eager only (CUDA graphs need a GPU)
    assert bare["mode"] == "eager" and bare["device"] == "cpu"
    ratio = summary["ratios"][f"{engine} / bare eager"]
    assert ratio == pytest.approx(res["images_per_s"] / bare["images_per_s"], rel=1e-2)


def test_batch_must_fit_a_static_engine(capsys):
    engine = str(exported("onnx", 160, 1))
    rc = main(["bench", "engine", "--engine", engine, "--batch", "4", "--seconds", "0.1"])
    err = capsys.readouterr().err
    assert rc == 1 and "static batch of 1" in err and "--dynamic" in err
