"""Many boxes, one Triton: three `duskwatch run` processes, each with its own RTSP camera, detect
through one Triton server, publish events to one Mosquitto, and one Prometheus scrapes all three
daemons and Triton (deploy/README.md, "Many boxes"). Every camera is processed; Prometheus answers
a per-box and a fleet-wide query, and sees Triton's own inference counters.

The detector is the random-weight YOLO11n of the session's Triton repository (plumbing: its
boxes are many and weak, tracked from score 0.05), so the test costs seconds of CPU.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROMETHEUS, Prometheus, _wait_prometheus_ready, free_port
from tests.test_daemon_e2e import Daemon
from tests.wait import wait_for

pytestmark = [pytest.mark.triton, pytest.mark.rtsp, pytest.mark.prometheus,
              pytest.mark.timeout(240)]
BOXES = ("box1", "box2", "box3")


def box_config(name: str, rtsp_url: str, triton_url: str, mqtt_port: int, work: Path) -> dict:
    return {
        "cameras": [{"name": f"{name}-door", "url": rtsp_url, "fps": 3, "read_timeout_s": 5,
                     "backoff_max_s": 2, "enhance": "never", "tracking": {"min_score": 0.05}}],
        "engines": {"detector": triton_url, "conf": 0.05},
        "scheduler": {"max_batch": 4, "batch_timeout_ms": 5},
        "sinks": [{"type": "mqtt", "host": "127.0.0.1", "port": mqtt_port,
                   "topic_prefix": "fleet", "backoff_max_s": 2}],
        "events": {"evidence": {"dir": str(work / "evidence"), "snapshots": False,
                                "clips": False}},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "supervision": {"heartbeat_timeout_s": 20},
    }


def fleet_prometheus(work: Path, boxes: dict[str, int], triton_metrics: str) -> Prometheus:
    """Prometheus with the fleet's two jobs, as deploy/prometheus/fleet.yml writes them."""
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "duskwatch", "scrape_timeout": "1s", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"box": box}}
                for box, port in boxes.items()]},
            {"job_name": "triton", "scrape_interval": "2s", "scrape_timeout": "2s",
             "static_configs": [{"targets": [triton_metrics]}]},
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = work / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)
    _wait_prometheus_ready(prom, 30)
    return prom


class Topics:
    """Every MQTT topic a subscriber to ``fleet/#`` has seen."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.seen: set[str] = set()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe("fleet/#", qos=1)
        self.client.on_message = lambda c, u, msg: self.seen.add(msg.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_three_boxes_share_one_triton(triton_server, rtsp_server, mosquitto, tmp_path):
    srv = rtsp_server({f"{b}-door": "h264" for b in BOXES})
    broker = mosquitto()
    topics = Topics(broker.port)
    daemons: dict[str, Daemon] = {}
    prom = None
    try:
        for box in BOXES:
            work = tmp_path / box
            work.mkdir()
            cfg = box_config(box, srv.url(f"{box}-door"), triton_server.url("yolo", timeout="10"),
                             broker.port, work)
            daemons[box] = Daemon(work, cfg)
        for d in daemons.values():
            d.notify.wait("READY=1", timeout=60)
        prom = fleet_prometheus(tmp_path, {b: d.port for b, d in daemons.items()},
                                triton_server.metrics_target)
        per_box = 'sum by (box) (duskwatch_frames_total{outcome="processed"})'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = {r["metric"]["box"]: float(r["value"][1]) for r in prom.query(per_box)}
            if len(rows) == 3 and min(rows.values()) >= 5:
                break
            time.sleep(0.5)
        assert set(rows) == set(BOXES) and min(rows.values()) >= 5, rows
        fleet = prom.value('sum(duskwatch_frames_total{outcome="processed"})')
        assert fleet >= sum(rows.values())  # later scrape, never fewer
        cams = prom.query('count by (camera) (duskwatch_camera_up == 1)')
        assert {r["metric"]["camera"] for r in cams} == {f"{b}-door" for b in BOXES}
        # Triton saw the fleet's calls, and the daemons say where their detector runs
        calls = prom.wait_for('sum(nv_inference_request_success{model="yolo"})', lambda v: v >= 15)
        assert calls >= 15
        info = prom.query('duskwatch_engine_info{engine="detector"}')
        assert {r["metric"]["device"] for r in info} == {f"triton:{triton_server.grpc_address}"}
        assert {r["metric"]["box"] for r in info} == set(BOXES)
        # every box's events reached the one broker
        want = {f"fleet/{b}-door/appeared" for b in BOXES}
        end = time.monotonic() + 30
        while time.monotonic() < end and not want <= topics.seen:
            time.sleep(0.3)
        assert want <= topics.seen, sorted(topics.seen)
        # the fleet dashboard's every query has data from this real fleet
        from tests.test_deploy_fleet import fleet_queries

        for where, expr in fleet_queries():
            q = expr.replace("$__rate_interval", "30s").replace("$box", ".*")
            assert wait_for(lambda: prom.query(q), timeout=20), f"{where}: no data for {q}"
        status, body = daemons["box2"].get("/readyz")
        assert status == 200 and json.loads(body)["inference"] == {"detector": "available"}
    finally:
        topics.close()
        if prom is not None:
            prom.stop()
        for d in daemons.values():
            d.close()
