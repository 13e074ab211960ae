"""deploy/prometheus/fleet.yml and deploy/grafana/duskwatch-fleet.json (deploy/README.md, "Many
boxes"): the scrape config passes promtool; every dashboard query is valid PromQL (promtool check
rules) and returns data from series shaped like three boxes' and a Triton server's (promtool test
rules). tests/test_triton_fleet.py runs the same queries against a real fleet.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_deploy_grafana import PROMTOOL, needs_promtool

ROOT = Path(__file__).resolve().parents[1]
FLEET_DASHBOARD = ROOT / "deploy" / "grafana" / "duskwatch-fleet.json"
FLEET_PROMETHEUS = ROOT / "deploy" / "prometheus" / "fleet.yml"
VARIABLES = {"$__rate_interval": "1m", "${box}": ".*", "$box": ".*"}


def fleet_queries() -> list[tuple[str, str]]:
    dash = json.loads(FLEET_DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        out += [(f"panel '{p['title']}' {t['refId']}", t["expr"]) for t in p["targets"]]
    return out


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, expr
    return expr


def test_dashboard_covers_boxes_cameras_and_triton():
    joined = "\n".join(e for _, e in fleet_queries())
    assert "sum by (box) (rate(duskwatch_frames_total" in joined
    assert "sum by (box, camera) (rate(duskwatch_frames_total" in joined
    for metric in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                   "nv_inference_exec_count", "nv_inference_request_failure"):
        assert metric in joined, metric
    ids = [p["id"] for p in json.loads(FLEET_DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


@needs_promtool
def test_fleet_scrape_config_passes_promtool(tmp_path):
    shutil.copy(FLEET_PROMETHEUS, tmp_path / "fleet.yml")
    shutil.copy(ROOT / "deploy" / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    (tmp_path / "duskwatch.token").write_text("0" * 64 + "\n")
    res = subprocess.run([PROMTOOL, "check", "config", "fleet.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = {j["job_name"]: j for j in yaml.safe_load(FLEET_PROMETHEUS.read_text())["scrape_configs"]}
    assert set(jobs) == {"duskwatch", "triton"}
    assert all("box" in sc["labels"] for sc in jobs["duskwatch"]["static_configs"])


def synthetic_fleet() -> list[dict]:
    s = []
    for box in ("b1", "b2", "b3"):
        base = f'job="duskwatch",instance="{box}:9872",box="{box}"'
        s += [(f"up{{{base}}}", "1x40"),
              (f'duskwatch_build_info{{{base},version="0.1.0",backend="triton",detector="yolo",enhancer=""}}', "1x40"),
              (f'duskwatch_engine_failures_total{{{base},stage="detect"}}', "0+1x40")]
        for cam in ("door", "yard"):
            c = f'{base},camera="{cam}"'
            s += [(f'duskwatch_frames_total{{{c},outcome="{o}"}}', f"0+{n}x40")
                  for o, n in (("processed", 150), ("dropped", 20), ("failed", 1))]
            s += [(f"duskwatch_camera_up{{{c}}}", "1x40"), (f"duskwatch_frame_age_seconds{{{c}}}", "0.3x40")]
        for stage in ("detect", "end_to_end"):
            for le, n in (("0.05", 100), ("0.25", 290), ("+Inf", 300)):
                s.append((f'duskwatch_stage_duration_seconds_bucket{{{base},stage="{stage}",le="{le}"}}', f"0+{n}x40"))
    t = 'job="triton",instance="triton:8002",model="yolo",version="1"'
    s += [('up{job="triton",instance="triton:8002"}', "1x40")]
    s += [(f"{m}{{{t}}}", f"0+{n}x40") for m, n in (
        ("nv_inference_count", 900), ("nv_inference_exec_count", 300),
        ("nv_inference_request_success", 450), ("nv_inference_request_failure", 1),
        ("nv_inference_queue_duration_us", 900000), ("nv_inference_compute_infer_duration_us", 9000000),
        ("nv_inference_compute_input_duration_us", 90000), ("nv_inference_compute_output_duration_us", 90000))]
    return [{"series": n, "values": v} for n, v in s]


@needs_promtool
def test_every_fleet_query_is_valid_and_returns_data(tmp_path):
    queries = fleet_queries()
    rules = {"groups": [
        {"name": "fleet", "rules": [{"record": f"fleet:q{i}", "expr": substitute(e)}
                                    for i, (_, e) in enumerate(queries)]},
        {"name": "empty", "rules": [{"alert": f"FleetQueryEmpty{i}", "expr": f"absent(fleet:q{i})"}
                                    for i in range(len(queries))]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    res = subprocess.run([PROMTOOL, "check", "rules", "rules.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": synthetic_fleet(),
        "alert_rule_test": [{"eval_time": "9m", "alertname": f"FleetQueryEmpty{i}", "exp_alerts": []}
                            for i in range(len(queries))]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    res = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    empty = sorted({queries[int(i)][0] for i in re.findall(r"FleetQueryEmpty(\d+)", res.stdout + res.stderr)})
    assert res.returncode == 0, f"queries returning nothing: {empty}\n{res.stdout[-2000:]}"
