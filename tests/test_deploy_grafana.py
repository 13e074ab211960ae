"""deploy/grafana/duskwatch.json: every PromQL expression in the dashboard is valid PromQL
(promtool check rules) and returns data from series shaped like the daemon's metrics
(promtool test rules), and the dashboard has the panels the operator's guide promises.

Grafana itself is not packaged for Debian, so the dashboard's rendering is not tested here;
see deploy/README.md ("Grafana").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "duskwatch.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's prometheus package (`make sysdeps`)",
)

# What Grafana substitutes before a query reaches Prometheus.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${camera}": "gate|yard",
    "$camera": "gate|yard",
    "${instance}": ".*",
    "$instance": ".*",
}
# Metric names from the metrics contract (deploy/README.md, "Reading the metrics") plus the failure and state metrics the service adds.
KNOWN_METRICS = {
    "up",
    "ALERTS",
    "duskwatch_frames_total",
    "duskwatch_frames_enhanced_total",
    "duskwatch_detections_total",
    "duskwatch_stage_duration_seconds_bucket",
    "duskwatch_camera_up",
    "duskwatch_camera_reconnects_total",
    "duskwatch_camera_lowlight",
    "duskwatch_frame_age_seconds",
    "duskwatch_build_info",
    "duskwatch_engine_failures_total",
    "duskwatch_sink_failures_total",
    "duskwatch_camera_state",
    "duskwatch_objects",
    "duskwatch_tracks_total",
    "duskwatch_zone_objects",
    "duskwatch_zone_entries_total",
    "duskwatch_line_crossings_total",
    "duskwatch_events_total",
    "duskwatch_sink_events_dropped_total",
}
PROMQL_WORDS = {
    "sum", "max", "min", "count", "by", "without", "rate", "increase", "histogram_quantile",
    "sort_desc", "on", "and", "or", "unless", "le",
}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p["type"] != "row"]


def dashboard_queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's selector."""
    out = [(f"panel '{p['title']}' {t['refId']}", t["expr"]) for p in panels(dash) for t in p["targets"]]
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, f"variable {var['name']}: unexpected query {var['query']['query']!r}"
        out.append((f"variable {var['name']}", m.group(1)))
    return out


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"unsubstituted variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_strings)
    no_labels = re.sub(r"\{[^}]*\}", "", no_ranges)
    no_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", no_labels)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", no_groupings))
    return words - PROMQL_WORDS


def recording_rules(queries: list[tuple[str, str]]) -> dict:
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(e)} for i, (_, e) in enumerate(queries)]
    return {"groups": [{"name": "dashboard", "rules": rules}]}


def test_dashboard_structure():
    dash = load()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "camera"} <= names
    for p in panels(dash):
        assert p["targets"], f"panel {p['title']} has no query"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


def test_dashboard_has_the_promised_panels():
    queries = [e for _, e in dashboard_queries(load())]
    joined = "\n".join(queries)
    assert re.search(r'duskwatch_frames_total\{[^}]*outcome="processed"', joined)
    assert re.search(r'duskwatch_frames_total\{[^}]*outcome="dropped"', joined)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, stage) (rate(duskwatch_stage_duration_seconds_bucket" in joined
    for metric in ("duskwatch_frame_age_seconds", "duskwatch_camera_lowlight",
                   "duskwatch_camera_reconnects_total"):
        assert metric in joined
    assert "sum by (class) (rate(duskwatch_detections_total" in joined
    # events: objects, crossings by direction, zones, events by type, drops by sink
    for metric in ("duskwatch_objects", "duskwatch_zone_objects", "duskwatch_zone_entries_total",
                   "duskwatch_events_total", "duskwatch_tracks_total"):
        assert metric in joined, metric
    assert "sum by (camera, line, direction) (rate(duskwatch_line_crossings_total" in joined
    assert "sum by (sink) (increase(duskwatch_sink_events_dropped_total" in joined
    per_camera = [e for e in queries if e.startswith(("sum by (camera)", "max by (camera)"))]
    assert per_camera and all('camera=~"$camera"' in e for e in per_camera)


def test_every_query_uses_known_metrics_only():
    for where, expr in dashboard_queries(load()):
        unknown = metric_names(expr) - KNOWN_METRICS
        assert not unknown, f"{where}: unknown metric names {unknown} in {expr!r}"


@needs_promtool
def test_every_query_is_valid_promql(tmp_path):
    queries = dashboard_queries(load())
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(recording_rules(queries), sort_keys=False))
    res = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(queries)} rules found" in res.stdout


def synthetic_series() -> list[dict]:
    """Ten minutes of series shaped as the daemon exports them (deploy/README.md), two cameras."""
    base = 'job="duskwatch",instance="box:9872"'
    s = [(f"up{{{base}}}", "1x40"), (f'ALERTS{{alertname="DuskwatchCameraDown",alertstate="firing",camera="yard",{base}}}', "1x40"),
         (f'duskwatch_build_info{{{base},version="0.1.0",backend="onnxruntime",detector="yolo11n.onnx",enhancer="denoiser.onnx"}}', "1x40")]
    for cam in ("gate", "yard"):
        c = f'{base},camera="{cam}"'
        s += [(f'duskwatch_frames_total{{{c},outcome="processed"}}', "0+150x40"),
              (f'duskwatch_frames_total{{{c},outcome="dropped"}}', "0+100x40"),
              (f'duskwatch_frames_total{{{c},outcome="failed"}}', "0+1x40"),
              (f"duskwatch_frames_enhanced_total{{{c}}}", "0+75x40"),
              (f'duskwatch_detections_total{{{c},class="person"}}', "0+30x40"),
              (f'duskwatch_detections_total{{{c},class="car"}}', "0+3x40"),
              (f"duskwatch_camera_up{{{c}}}", "1x40"),
              (f"duskwatch_camera_lowlight{{{c}}}", "0x20 1x20"),
              (f"duskwatch_frame_age_seconds{{{c}}}", "0.2x40"),
              (f"duskwatch_camera_reconnects_total{{{c}}}", "0x20 1x20"),
              (f'duskwatch_objects{{{c},class="person"}}', "2x40"),
              (f'duskwatch_tracks_total{{{c},class="person"}}', "0+1x40"),
              (f'duskwatch_zone_objects{{{c},zone="door",class="person"}}', "1x40"),
              (f'duskwatch_zone_entries_total{{{c},zone="door",class="person"}}', "0+1x40"),
              (f'duskwatch_line_crossings_total{{{c},line="gate",direction="in",class="person"}}', "0+1x40"),
              (f'duskwatch_line_crossings_total{{{c},line="gate",direction="out",class="person"}}', "0+2x40"),
              (f'duskwatch_events_total{{{c},type="crossed"}}', "0+3x40")]
        s += [(f'duskwatch_camera_state{{{c},state="{st}"}}', "1x40" if st == "streaming" else "0x40")
              for st in ("connecting", "streaming", "stalled", "backing_off", "stopped")]
    for stage in ("decode", "enhance", "detect", "end_to_end"):
        for le, per_step in (("0.01", 50), ("0.05", 280), ("0.25", 299), ("+Inf", 300)):
            s.append((f'duskwatch_stage_duration_seconds_bucket{{{base},stage="{stage}",le="{le}"}}', f"0+{per_step}x40"))
    s += [(f'duskwatch_engine_failures_total{{{base},stage="{st}"}}', "0x40") for st in ("enhance", "detect")]
    s.append((f'duskwatch_sink_failures_total{{{base},sink="jsonl:-"}}', "0x40"))
    s.append((f'duskwatch_sink_events_dropped_total{{{base},sink="mqtt"}}', "0x40"))
    return [{"series": name, "values": values} for name, values in s]


@needs_promtool
def test_every_query_returns_data_from_daemon_shaped_series(tmp_path):
    """For each query a recording rule plus an alert `absent(<rule>)`; promtool's unit test then
    shows none of those alerts firing, i.e. every query returns at least one series."""
    queries = dashboard_queries(load())
    rules = recording_rules(queries)
    rules["groups"].append({"name": "dashboard-empty", "rules": [
        {"alert": f"DashboardQueryEmpty{i}", "expr": f"absent(dashboard:query_{i})"}
        for i in range(len(queries))]})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": synthetic_series(),
        "alert_rule_test": [{"eval_time": "9m", "alertname": f"DashboardQueryEmpty{i}", "exp_alerts": []}
                            for i in range(len(queries))]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    res = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    failing = re.findall(r"DashboardQueryEmpty(\d+)", res.stdout + res.stderr)
    empty = [queries[int(i)][0] for i in sorted(set(failing))]
    assert res.returncode == 0, f"queries returning nothing: {empty}\n{res.stdout}{res.stderr}"
