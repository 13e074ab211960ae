"""Home Assistant MQTT discovery against a real Mosquitto: the retained discovery payloads read
back and checked against the fields Home Assistant documents for each entity type, the states
the daemon publishes (from its metrics), the snapshot image, entities removed by a reload, and
availability flipping to offline when the daemon process is killed. Bounded; no timed asserts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from daemon.config import EVENT_TYPES, CameraConfig, MqttSinkConfig
from daemon.events.homeassistant import HomeAssistantPublisher, camera_entities
from daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]

# What Home Assistant's MQTT integration documents for each entity type (the keys we may use,
# unabbreviated) and which of them it requires. https://www.home-assistant.io/integrations/
# binary_sensor.mqtt/, sensor.mqtt/, image.mqtt/ and mqtt/#mqtt-discovery.
COMMON = {"name", "unique_id", "availability_topic", "payload_available", "payload_not_available",
          "device", "origin", "icon", "object_id", "default_entity_id"}
ALLOWED = {
    "binary_sensor": COMMON | {"state_topic", "payload_on", "payload_off", "device_class"},
    "sensor": COMMON | {"state_topic", "state_class", "unit_of_measurement", "device_class"},
    "image": COMMON | {"image_topic", "url_topic", "content_type", "image_encoding"},
}
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "image": set()}
BINARY_SENSOR_CLASSES = {"connectivity", "occupancy", "motion", "presence", "light", "problem"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DISCOVERY_TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor|image)/([a-zA-Z0-9_-]+)/"
                             r"([a-zA-Z0-9_-]+)/config$")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


def check_discovery(topic: str, payload: dict) -> str:
    """Validate one discovery message as Home Assistant would; returns its component."""
    m = DISCOVERY_TOPIC.match(topic)
    assert m, topic
    component = m.group(1)
    assert set(payload) <= ALLOWED[component], set(payload) - ALLOWED[component]
    assert REQUIRED[component] <= set(payload), (topic, payload)
    assert isinstance(payload["name"], str) and payload["name"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", payload["unique_id"])
    dev = payload["device"]
    assert dev["identifiers"] and all(isinstance(i, str) for i in dev["identifiers"]) and dev["name"]
    assert payload["availability_topic"] == "duskwatch-ha/status"
    assert (payload["payload_available"], payload["payload_not_available"]) == ("online", "offline")
    if component == "binary_sensor":
        assert (payload["payload_on"], payload["payload_off"]) == ("ON", "OFF")
        assert payload.get("device_class", "occupancy") in BINARY_SENSOR_CLASSES
    if component == "sensor":
        assert payload["state_class"] in STATE_CLASSES
    if component == "image":
        assert ("image_topic" in payload) != ("url_topic" in payload)  # exactly one of them
        assert payload["content_type"] == "image/jpeg"
    return component


class Retained:
    """A subscriber collecting the last payload per topic (bytes), with a wait helper."""

    def __init__(self, port: int, *patterns: str):
        import paho.mqtt.client as mqtt

        self.last: dict[str, bytes] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in patterns]
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            if msg.payload:
                self.last[msg.topic] = msg.payload
            else:
                self.last.pop(msg.topic, None)
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 20) -> bool:
        end = time.monotonic() + timeout
        with self.cond:
            while not pred(self.last):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def configs(self) -> dict[str, dict]:
        return {t: json.loads(p) for t, p in list(self.last.items()) if t.endswith("/config")}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def camera(name: str, zones=(), lines=(), classes=()) -> CameraConfig:
    return CameraConfig.model_validate({
        "name": name, "url": "rtsp://127.0.0.1:9/x", "tracking": {"classes": list(classes)},
        "zones": [{"name": z, "points": [[0, 0], [0.5, 0], [0.5, 1]], **extra} for z, extra in zones],
        "lines": [{"name": ln, "points": [[0, 0.5], [1, 0.5]]} for ln in lines]})


def test_every_entity_has_the_fields_home_assistant_documents():
    sink = MqttSinkConfig(type="mqtt", host="h")
    cam = camera("yard", zones=[("drive", {"classes": ["person", "car"]}), ("door", {})],
                 lines=["gate"])
    entities = camera_entities(cam, sink, "1.2.3")
    kinds = [check_discovery(e.topic, e.config) for e in entities]
    # up, low light, image; 2 + 1 zone/class pairs x (occupancy, count); 1 line x 2 directions
    assert sorted(kinds) == sorted(["binary_sensor"] * 5 + ["sensor"] * 5 + ["image"])
    assert len({e.config["unique_id"] for e in entities}) == len(entities)
    assert {e.config["device"]["identifiers"][0] for e in entities} == {"duskwatch_yard"}
    names = {e.config["name"] for e in entities}
    assert {"drive car occupancy", "drive person count", "door person occupancy",
            "gate crossings in", "gate crossings out", "Camera up", "Low light"} <= names


@pytest.fixture
def metrics():
    m = Metrics()
    m.set_classes(["person", "car"])
    for cam in ("yard", "porch"):
        m.add_camera(cam)
        m.add_event_camera(cam, ["person", "car"], ["drive", "door"], ["gate"], EVENT_TYPES)
    return m


def test_discovery_states_snapshot_and_removal_on_a_real_broker(mosquitto, metrics, tmp_path):
    broker = mosquitto()
    sink = MqttSinkConfig(type="mqtt", host="127.0.0.1", port=broker.port, backoff_max_s=1)
    yard = camera("yard", zones=[("drive", {}), ("door", {})], lines=["gate"])
    porch = camera("porch")
    metrics.camera_up.labels("yard").set(1)
    metrics.zone_objects.labels("yard", "drive", "person").set(2)
    metrics.line_crossings.labels("yard", "gate", "in", "person").inc(3)
    metrics.line_crossings.labels("yard", "gate", "in", "car").inc(1)
    snap = tmp_path / "e1.jpg"
    snap.write_bytes(JPEG)
    latest = {"yard": str(snap)}
    pub = HomeAssistantPublisher(sink, metrics.registry, latest.get, "1.2.3", interval_s=0.2)
    sub = Retained(broker.port, "homeassistant/#", "duskwatch-ha/#")
    expected = {e.topic for c in (yard, porch) for e in camera_entities(c, sink, "1.2.3")}
    try:
        pub.start([yard, porch])
        assert sub.wait(lambda last: expected <= set(last) and "duskwatch-ha/yard/snapshot" in last)
        for topic, payload in sub.configs().items():
            check_discovery(topic, payload)
        last = sub.last
        assert last["duskwatch-ha/status"] == b"online"
        assert last["duskwatch-ha/yard/up"] == b"ON" and last["duskwatch-ha/porch/up"] == b"OFF"
        assert last["duskwatch-ha/yard/zone/drive/person/occupied"] == b"ON"
        assert last["duskwatch-ha/yard/zone/drive/person/count"] == b"2"
        assert last["duskwatch-ha/yard/zone/door/person/occupied"] == b"OFF"
        assert last["duskwatch-ha/yard/line/gate/in"] == b"4"  # summed over classes
        assert last["duskwatch-ha/yard/line/gate/out"] == b"0"
        assert last["duskwatch-ha/yard/snapshot"] == JPEG
        # every state topic a config names is published (an image: once its camera had an event)
        for payload in sub.configs().values():
            assert payload.get("state_topic", "duskwatch-ha/yard/snapshot") in last

        metrics.zone_objects.labels("yard", "drive", "person").set(0)  # states follow the metrics
        assert sub.wait(lambda last: last.get("duskwatch-ha/yard/zone/drive/person/count") == b"0")

        # a reload: the door zone and the porch camera are gone
        pub.configure([camera("yard", zones=[("drive", {})], lines=["gate"])])
        gone = {t for t in expected if "_door_" in t or "/porch_" in t}
        assert len(gone) == 5  # door occupancy + count; porch up, low light, image
        states_gone = {"duskwatch-ha/porch/up", "duskwatch-ha/yard/zone/door/person/count"}
        assert sub.wait(lambda last: not ((gone | states_gone) & set(last))), sorted(sub.last)
    finally:
        pub.stop()
        assert sub.wait(lambda last: last.get("duskwatch-ha/status") == b"offline")
        sub.close()
    fresh = Retained(broker.port, "homeassistant/#")  # what a new Home Assistant would find
    try:
        assert fresh.wait(lambda last: len(last) == len(expected) - 5)
        assert not any("_door_" in t or "/porch_" in t for t in fresh.last)
    finally:
        fresh.close()


def test_killing_the_daemon_turns_it_offline_in_home_assistant(mosquitto, tmp_path):
    from tests.yolo_exports import exported

    broker = mosquitto()
    config = tmp_path / "duskwatch.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:9/none",
                     "zones": [{"name": "path", "points": [[0, 0], [1, 0], [1, 1]]}]}],
        "engines": {"detector": str(exported("onnx", imgsz=64, batch=1, dynamic=True)),
                    "device": "cpu"},
        "sinks": [{"type": "mqtt", "host": "127.0.0.1", "port": broker.port}],
        "events": {"evidence": {"dir": str(tmp_path / "evidence")}},
        "http": {"listen": "127.0.0.1:0"}}))
    sub = Retained(broker.port, "homeassistant/#", "duskwatch-ha/#")
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.wait(lambda last: last.get("duskwatch-ha/status") == b"online"
                        and "homeassistant/binary_sensor/duskwatch/gate_path_person_occupancy/config"
                        in last and "duskwatch-ha/gate/up" in last, 120), proc.poll()
        for topic, payload in sub.configs().items():
            check_discovery(topic, payload)
        assert sub.last["duskwatch-ha/gate/up"] == b"OFF"  # nothing listens at that camera URL
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert sub.wait(lambda last: last.get("duskwatch-ha/status") == b"offline", 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
