"""Events end to end, all real: an RTSP server streaming ``video/vtest.avi`` (pedestrians seen
from above), the real COCO YOLO11n (``../shared/data/weights``, exported to ONNX at 416), the
daemon's service with a line and a zone on the camera, a real Mosquitto broker (with a password,
read from ``$CREDENTIALS_DIRECTORY``), a real local webhook receiver (with a bearer token from
the environment) and an events JSONL file.

Bounded in frames and seconds; no timing assertions.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.wait import wait_for

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(240)]

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "yolo11n_coco_fp32.pt"
MQTT_USER, MQTT_PASSWORD = "duskwatch", "mqtt-Pa55-word"
TOKEN = "hook-t0ken-value"


@pytest.fixture(scope="module")
def coco_detector(tmp_path_factory) -> Path:
    """The real COCO YOLO11n exported by ``duskwatch export yolo`` (416 keeps CI fast)."""
    if not WEIGHTS.is_file():
        pytest.skip(f"needs the shared COCO weights {WEIGHTS} (see shared/data/README.md)")
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("engines") / "yolo11n-416.onnx"
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "export", "yolo", "--weights",
                           str(WEIGHTS), "--imgsz", "416", "--format", "onnx", "--dynamic",
                           "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


class Subscriber:
    """A persistent-session MQTT client collecting every message under duskwatch/#."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-subscriber",
                                  clean_session=False)
        self.client.username_pw_set(MQTT_USER, MQTT_PASSWORD)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("duskwatch/#", qos=1)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def ids(self, type_: str | None = None) -> list[str]:
        return [e["id"] for _, e in list(self.messages) if type_ is None or e["type"] == type_]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()




def sample(svc, name: str, **labels) -> float:
    v = svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def total(svc, name: str, **match) -> float:
    """Sum of every sample of ``name`` whose labels include ``match``."""
    out = 0.0
    for metric in svc.metrics.registry.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                out += s.value
    return out


@pytest.fixture
def street(rtsp_server, footage, mosquitto, webhook_receiver, coco_detector, tmp_path, monkeypatch):
    """Everything but the service: ``(broker, subscriber, hook, config dict, tmp)``."""
    srv = rtsp_server({"street": "h264"})  # vtest.avi as H.264, 640x360, 15 fps
    broker = mosquitto(user=MQTT_USER, password=MQTT_PASSWORD)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text(MQTT_PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    sub = Subscriber(broker.port)
    cfg = {
        "cameras": [{
            "name": "street", "url": srv.url("street"), "fps": 5, "enhance": "never",
            "tracking": {"classes": ["person"], "min_score": 0.3, "min_age_frames": 3,
                         "lost_track_s": 1.5},
            # people in this footage walk mostly up and down the picture: a line across it at
            # half height, drawn left to right, so that walking down the picture is "in"
            "lines": [{"name": "middle", "points": [[0.05, 0.5], [0.95, 0.5]]}],
            "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
                       "loiter_s": 4}],
        }],
        "engines": {"detector": str(coco_detector), "device": "cpu", "conf": 0.25},
        "scheduler": {"max_batch": 1},
        "sinks": [
            {"type": "mqtt", "host": "127.0.0.1", "port": broker.port, "username": MQTT_USER,
             "password_credential": "mqtt_password", "backoff_max_s": 2, "queue_size": 1000},
            {"type": "webhook", "url": webhook_receiver.url, "token_env": "HOOK_TOKEN",
             "types": ["crossed"]},
            {"type": "events_jsonl", "path": str(tmp_path / "events.jsonl")},
        ],
        "events": {"recent": 5000, "evidence": {"dir": str(tmp_path / "evidence"), "pre_s": 1,
                                                "post_s": 1, "max_clip_s": 6}},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
    }
    yield broker, sub, webhook_receiver, cfg, tmp_path
    sub.close()


def start_service(cfg: dict):
    from daemon.config import parse_config
    from daemon.service.secrets import SecretsFilter
    from daemon.service.service import Service, check_runtime

    config = parse_config(cfg)
    check_runtime(config)
    secrets = SecretsFilter()
    secrets.install(logging.getLogger())
    svc = Service(config, secrets_filter=secrets)
    svc.start()
    return svc


def get(svc, path: str) -> tuple[int, bytes]:
    host, port = svc.http.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_line_crossings_arrive_once_on_mqtt_and_webhook_with_snapshots_and_clips(street, caplog):
    import cv2
    import numpy as np

    broker, sub, hook, cfg, tmp = street
    caplog.set_level(logging.INFO)
    svc = start_service(cfg)
    try:
        assert wait_for(lambda: total(svc, "duskwatch_line_crossings_total") >= 4, timeout=90), \
            f"fewer than 4 crossings; events: {[e['type'] for e in svc.view.events_list(limit=50)]}"
        status, body = get(svc, "/events?type=crossed&limit=1")
        newest = json.loads(body)["events"][0]
        assert status == 200 and newest["type"] == "crossed"
        # served evidence: the snapshot as soon as the writer wrote it, a clip once it closed
        assert wait_for(lambda: get(svc, newest["snapshot_url"])[0] == 200, timeout=20)
        jpeg = np.frombuffer(get(svc, newest["snapshot_url"])[1], np.uint8)
        assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (360, 640, 3)
        served: list[bytes] = []

        def a_clip_is_served() -> bool:
            for e in svc.view.events_list(type_="crossed"):
                status, body = get(svc, e["clip_url"])
                if status == 200:
                    served.append(body)
                    return True
            return False

        assert wait_for(a_clip_is_served, timeout=30, interval=1.0)
        (tmp / "served.mp4").write_bytes(served[0])
        assert cv2.VideoCapture(str(tmp / "served.mp4")).read()[0]
        assert get(svc, "/events/0123456789abcdef/clip.mp4")[0] == 404
        metrics_text = get(svc, "/metrics")[1].decode()
    finally:
        svc.stop()  # closes clips, flushes the sinks
    events = svc.view.events_list(limit=5000)
    crossed = [e for e in events if e["type"] == "crossed"]
    # counted per direction: the counters and the events agree
    for direction in ("in", "out"):
        n = sum(1 for e in crossed if e["direction"] == direction)
        assert sample(svc, "duskwatch_line_crossings_total", camera="street", line="middle",
                      direction=direction, **{"class": "person"}) == n
    assert len(crossed) >= 4
    assert sample(svc, "duskwatch_events_total", camera="street", type="crossed") == len(crossed)
    # every crossing once on MQTT (topic per camera and type) and once at the webhook, which
    # got the bearer token; every event of the run once on MQTT
    assert wait_for(lambda: len(sub.ids()) >= len(events), timeout=15)
    assert sorted(sub.ids("crossed")) == sorted(e["id"] for e in crossed)
    assert sorted(sub.ids()) == sorted(e["id"] for e in events)
    assert {t for t, e in sub.messages if e["type"] == "crossed"} == {"duskwatch/street/crossed"}
    hooked = [body for _, body in hook.received]
    assert sorted(e["id"] for e in hooked) == sorted(e["id"] for e in crossed)
    assert all(h.get("Authorization") == f"Bearer {TOKEN}" for h, _ in hook.received)
    # the events file has them all, one per line
    lines = [json.loads(x) for x in (tmp / "events.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(e["id"] for e in events)
    # nothing dropped anywhere
    for sink in ("mqtt", "webhook", "events_jsonl", "evidence"):
        assert sample(svc, "duskwatch_sink_events_dropped_total", sink=sink) == 0, sink
    # snapshots: one per event, a real JPEG of the full frame; clips decode with OpenCV
    for e in crossed:
        img = cv2.imread(e["snapshot"])
        assert img is not None and img.shape == (360, 640, 3), e["snapshot"]
    clips = sorted({e["clip"] for e in crossed if e["clip"]})
    assert clips
    for clip in clips:
        cap = cv2.VideoCapture(clip)
        n, ok = 0, True
        while ok:
            ok, frame = cap.read()
            n += ok
        cap.release()
        assert n >= 5 and frame is None, f"{clip}: {n} frames"
    # metrics: the series exist with the config's names; no secret anywhere
    assert 'duskwatch_zone_entries_total{camera="street",class="person",zone="left"}' in metrics_text
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    everything = log_text + metrics_text + json.dumps(events) + json.dumps(sub.messages)
    assert MQTT_PASSWORD not in everything and TOKEN not in everything
    print(f"\ncrossings in={sum(e['direction'] == 'in' for e in crossed)} "
          f"out={sum(e['direction'] == 'out' for e in crossed)}; events {len(events)} "
          f"({', '.join(sorted({e['type'] for e in events}))}); mqtt {len(sub.messages)}; "
          f"webhook {len(hooked)}; clips {len(clips)}")


def test_broker_killed_and_restarted_events_wait_then_arrive_and_detection_goes_on(street):
    broker, sub, hook, cfg, tmp = street
    svc = start_service(cfg)
    processed = lambda: sample(svc, "duskwatch_frames_total", camera="street", outcome="processed")
    mqtt_events = lambda: total(svc, "duskwatch_events_total")
    try:
        assert wait_for(lambda: len(sub.ids()) >= 3, timeout=60), "no events reached MQTT"
        f0, t0 = processed(), time.monotonic()
        time.sleep(6)
        rate_up = (processed() - f0) / (time.monotonic() - t0)
        broker.kill()
        raised_before = mqtt_events()
        f1, t1 = processed(), time.monotonic()
        # events raised while the broker is down wait in the sink's queue
        assert wait_for(lambda: mqtt_events() >= raised_before + 3, timeout=60)
        rate_down = (processed() - f1) / (time.monotonic() - t1)
        queued = svc.events.sinks.sinks[0].pending()
        broker.restart()
        ids_now = lambda: {e["id"] for e in svc.view.events_list(limit=5000)}
        assert wait_for(lambda: ids_now() <= set(sub.ids()), timeout=60), \
            f"missing after restart: {len(ids_now() - set(sub.ids()))}"
    finally:
        svc.stop()
    assert queued >= 1
    assert sample(svc, "duskwatch_sink_events_dropped_total", sink="mqtt") == 0
    # detection did not wait for the broker (the same order of frames per second)
    assert rate_down > 0.5 * rate_up, (rate_up, rate_down)
    print(f"\nprocessed fps with broker up {rate_up:.2f}, down {rate_down:.2f}; queued while "
          f"down: {queued}; mqtt messages {len(sub.messages)} (distinct {len(set(sub.ids()))})")
