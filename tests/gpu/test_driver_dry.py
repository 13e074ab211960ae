"""The GPU check's logic on a CPU: `tests/gpu/run.sh --dry` runs every stage with tiny sizes and
writes every summary into one folder; plus the driver's pieces that need no run at all."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.gpu import driver
from tests.gpu.missing import unsatisfied

RUN_SH = Path(__file__).with_name("run.sh")
STAGES = ["pytest", "export_detector", "export_enhancer", "export_detector_onnx",
          "bench_engine_b1", "bench_engine_b2", "bench_pipeline_2", "bench_pipeline_triton", "train"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dry_run_writes_every_summary(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    proc = subprocess.run(["bash", str(RUN_SH), "--dry", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=230)
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert list(status) == STAGES, status
    from tests.triton_server import triton_missing

    if triton_missing() is not None:  # no .venv-triton (make triton-env): skipped, and said so
        assert status.pop("bench_pipeline_triton") == "skipped"
    assert all(v == "ok" for v in status.values()), (status, proc.stderr[-2000:])
    assert proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])["ok"] is True
    assert summary["dry"] is True and summary["device"] == "cpu"
    for b in (1, 2):
        bench = json.loads((out / f"bench_engine_b{b}.json").read_text())
        assert bench["batch"] == b and bench["engines"][0]["backend"] == "torch"
        assert bench["bare"][0]["mode"] == "eager"
    pipe = json.loads((out / "bench_pipeline_2.json").read_text())["pipeline"]
    assert pipe["streams"] == 2 and pipe["enhanced"] >= pipe["frames_processed"] > 0  # every frame
    if "bench_pipeline_triton" in status:  # the detector served by the bundled Triton server
        tri = json.loads((out / "bench_pipeline_triton.json").read_text())
        assert tri["pipeline"]["detector"]["backend"] == "triton"
        assert tri["pipeline"]["frames_processed"] > 0 and tri["server_split_ms"]["compute_infer"] > 0
    assert (out / "denoiser_teacher.pt").is_file()
    assert all((out / f"{s}.log").is_file() for s in STAGES)
    assert not (out / "work").exists()  # engines and clips are not left behind


def test_run_sh_needs_an_output_folder_and_knows_its_options():
    proc = subprocess.run(["bash", str(RUN_SH)], capture_output=True, text=True)
    assert proc.returncode == 2 and "give the output folder" in proc.stderr
    proc = subprocess.run(["bash", str(RUN_SH), "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --fast" in proc.stderr


def test_full_plan_fits_the_nine_minutes():
    plan = driver.full_plan()
    assert plan.device == "cuda:0" and plan.batches == (1, 8, 32) and plan.streams == (8, 32)
    assert plan.enhancer_format == "pt2"
    cmds = driver.bench_pipeline_steps(plan, Path("d.torchscript"), Path("e.pt2"), Path("c.avi"),
                                       "w.pt")
    assert cmds["bench_pipeline_32"].count("--source") == 32
    assert "always" in cmds["bench_pipeline_8"] and "--no-ultralytics" in cmds["bench_pipeline_32"]
    assert "--time-budget" in driver.train_step(plan, Path("imgs"), Path("out"))
    # worst case of the stage limits stays inside run.sh's 530 s after install
    worst = (plan.limits["pytest"] + 2 * plan.limits["export"] + 3 * plan.limits["bench_engine"]
             + 2 * plan.limits["bench_pipeline"] + plan.limits["train"])
    assert worst > 530  # so the shared budget, not the stage limits, bounds the run:
    budget = driver.Budget(10.0, clock=iter([0.0, 4.0, 9.0, 12.0]).__next__)
    assert budget.limit(100) == 6.0 and budget.limit(3) == 1.0 and budget.left() == 0.0


def test_a_stage_without_time_left_is_skipped(tmp_path):
    res = driver.run_stage("x", ["true"], tmp_path, 2.0, {})
    assert res["status"] == "skipped" and "budget" in res["reason"]


def test_stage_timeout_and_summary_line(tmp_path):
    import sys

    res = driver.run_stage("slow", [sys.executable, "-c", "import time; print('{\"a\": 1}', flush=True); time.sleep(30)"],
                           tmp_path, 5.0, {})
    assert res["status"] == "timeout" and res["summary"] == {"a": 1}
    assert (tmp_path / "slow.json").is_file() and (tmp_path / "slow.log").is_file()


def test_last_json_line_and_requirements():
    assert driver.last_json_line("progress\n{\"x\": 2}\n") == {"x": 2}
    assert driver.last_json_line("no json here") is None
    assert not unsatisfied("pytest") and unsatisfied("surely-not-installed-pkg")
    assert unsatisfied("pytest>=999")
