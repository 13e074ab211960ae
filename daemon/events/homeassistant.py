"""Home Assistant MQTT discovery: each camera appears in Home Assistant by itself.

For every ``mqtt`` event sink with ``discovery`` on, a publisher with its own MQTT connection
(so that its last will is the daemon's, not one sink's) keeps on the broker, retained:

- ``<discovery_prefix>/<component>/<node>/<object_id>/config``: one discovery message per
  entity (the fields Home Assistant documents for ``binary_sensor``, ``sensor`` and ``image``),
  each camera a device: camera up (connectivity), low light, per zone and class of interest an
  occupancy binary sensor and an object count, per line and direction a crossing counter, and
  an image of the latest event's snapshot;
- the states those entities read, under ``<topic_prefix>-ha/<camera>/...``, taken from the
  daemon's own metrics once a second and published when they change; the snapshot JPEG at
  ``<topic_prefix>-ha/<camera>/snapshot``;
- ``<topic_prefix>-ha/status``: ``online`` while the daemon runs; ``offline`` on a clean stop,
  and as the connection's last will, so the broker says ``offline`` when the process dies.

(``<topic_prefix>-ha``, not under ``<topic_prefix>/``: whoever subscribes to
``<topic_prefix>/#`` for the events keeps getting JSON events only.)

Entities that a reload removes (a camera, zone or line gone) get an empty retained config, which
removes them from Home Assistant, and their retained states are cleared.

``<node>`` is the sink's ``topic_prefix`` (two daemons on one broker already need different
ones). The classes of interest of a zone are its ``classes``, else the camera's
``tracking.classes``, else ``person``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from daemon.config import CameraConfig, MqttSinkConfig, sink_secret

log = logging.getLogger("duskwatch.homeassistant")

DEFAULT_CLASSES = ("person",)
ONLINE, OFFLINE = "online", "offline"
MAX_SNAPSHOT_BYTES = 4 << 20
#: Metric samples the states are read from.
_SAMPLES = ("duskwatch_camera_up", "duskwatch_camera_lowlight", "duskwatch_zone_objects",
            "duskwatch_line_crossings_total")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LatestSnapshot = Callable[[str], str | None]


def slug(text: str) -> str:
    """``text`` as a topic level and object id: ``[a-z0-9_-]`` only."""
    return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_") or "x"


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: where its config goes, the config, and how to read its state."""

    topic: str  # the discovery config topic
    config: dict[str, Any]
    state_topic: str | None = None
    state: Callable[[Samples], str] | None = None


# -- what to publish (pure: tested without a broker) --------------------------------------------
def zone_classes(cam: CameraConfig, zone: Any) -> list[str]:
    return list(zone.classes or cam.tracking.classes or DEFAULT_CLASSES)


def state_root(sink: MqttSinkConfig) -> str:
    """Where the entities' states and the availability live."""
    return f"{sink.topic_prefix}-ha"


def camera_entities(cam: CameraConfig, sink: MqttSinkConfig, version: str) -> list[Entity]:
    """The entities of one camera (a Home Assistant device)."""
    node, base = slug(sink.topic_prefix), f"{state_root(sink)}/{cam.name}"
    common = {
        "availability_topic": f"{state_root(sink)}/status",
        "payload_available": ONLINE, "payload_not_available": OFFLINE,
        "device": {"identifiers": [f"{node}_{cam.name}"], "name": cam.name,
                   "manufacturer": "duskwatch", "model": "duskwatch camera",
                   "sw_version": version},
        "origin": {"name": "duskwatch", "sw_version": version},
    }

    def make(component: str, key: str, name: str, extra: dict, state_topic: str | None = None,
             state: Callable[[Samples], str] | None = None) -> Entity:
        object_id = slug(f"{cam.name}_{key}")
        config = {"name": name, "unique_id": f"{node}_{object_id}", **extra, **common}
        if state_topic is not None:
            config["state_topic"] = state_topic
        topic = f"{sink.discovery_prefix}/{component}/{node}/{object_id}/config"
        return Entity(topic, config, state_topic, state)

    onoff = {"payload_on": "ON", "payload_off": "OFF"}
    out = [
        make("binary_sensor", "up", "Camera up", {"device_class": "connectivity", **onoff},
             f"{base}/up", _flag("duskwatch_camera_up", camera=cam.name)),
        make("binary_sensor", "lowlight", "Low light", {"icon": "mdi:weather-night", **onoff},
             f"{base}/lowlight", _flag("duskwatch_camera_lowlight", camera=cam.name)),
        make("image", "snapshot", "Last event", {"image_topic": f"{base}/snapshot",
                                                 "content_type": "image/jpeg"}),
    ]
    for zone in cam.zones:
        for cls in zone_classes(cam, zone):
            labels = {"camera": cam.name, "zone": zone.name, "class": cls}
            where = f"{base}/zone/{zone.name}/{slug(cls)}"
            out.append(make("binary_sensor", f"{zone.name}_{cls}_occupancy",
                            f"{zone.name} {cls} occupancy", {"device_class": "occupancy", **onoff},
                            f"{where}/occupied", _flag("duskwatch_zone_objects", **labels)))
            out.append(make("sensor", f"{zone.name}_{cls}_count", f"{zone.name} {cls} count",
                            {"state_class": "measurement", "unit_of_measurement": "objects",
                             "icon": "mdi:counter"},
                            f"{where}/count", _count("duskwatch_zone_objects", **labels)))
    for line in cam.lines:
        for direction in ("in", "out"):
            out.append(make("sensor", f"{line.name}_{direction}_crossings",
                            f"{line.name} crossings {direction}",
                            {"state_class": "total_increasing", "unit_of_measurement": "crossings",
                             "icon": "mdi:transit-transfer"},
                            f"{base}/line/{line.name}/{direction}",
                            _crossings(cam.name, line.name, direction)))
    return out


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def _flag(name: str, **labels: str) -> Callable[[Samples], str]:
    key = _key(name, labels)
    return lambda s: "ON" if s.get(key, 0.0) > 0 else "OFF"


def _count(name: str, **labels: str) -> Callable[[Samples], str]:
    key = _key(name, labels)
    return lambda s: str(int(s.get(key, 0.0)))


def _crossings(camera: str, line: str, direction: str) -> Callable[[Samples], str]:
    def read(s: Samples) -> str:
        total = sum(v for (name, labels), v in s.items()
                    if name == "duskwatch_line_crossings_total"
                    and ("camera", camera) in labels and ("line", line) in labels
                    and ("direction", direction) in labels)
        return str(int(total))
    return read


def read_samples(registry: Any) -> Samples:
    """The metric samples the states come from, read once (one pass over the registry)."""
    out: Samples = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in _SAMPLES:
                out[_key(sample.name, sample.labels)] = sample.value
    return out


# -- the publisher ----------------------------------------------------------------------------
class HomeAssistantPublisher:
    """Keeps one broker's discovery messages and states in step with the cameras and metrics."""

    def __init__(self, sink: MqttSinkConfig, registry: Any, latest_snapshot: LatestSnapshot,
                 version: str, environ: dict[str, str] | None = None, interval_s: float = 1.0):
        import paho.mqtt.client as mqtt

        self.sink, self.registry, self.latest_snapshot = sink, registry, latest_snapshot
        self.version, self.interval = version, interval_s
        self.root = state_root(sink)
        self.status_topic = f"{self.root}/status"
        base_id = sink.client_id or f"duskwatch-{socket.gethostname()}-{os.getpid()}-{sink.label}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=(base_id[:58] + "-ha"), clean_session=True)
        password = sink_secret(sink, environ)
        if sink.username is not None or password is not None:
            self.client.username_pw_set(sink.username or "", password)
        if sink.tls:
            self.client.tls_set(ca_certs=sink.ca_file)
        self.client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(sink.backoff_max_s)))
        self.client.on_connect = self._on_connect
        self._lock = threading.Lock()
        self._cameras: list[CameraConfig] = []
        self._published: dict[str, str | None] = {}  # topic -> payload, as the broker holds it
        self._snapshots: dict[str, str] = {}  # camera -> snapshot path published
        self._connected = threading.Event()
        self._resend = threading.Event()  # a new connection: say everything again
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duskwatch-homeassistant",
                                        daemon=True)

    # lifecycle
    def start(self, cameras: Sequence[CameraConfig]) -> None:
        self.configure(cameras)
        self.client.connect_async(self.sink.host, self.sink.port, keepalive=self.sink.keepalive_s)
        self.client.loop_start()
        self._thread.start()

    def configure(self, cameras: Sequence[CameraConfig]) -> None:
        """The cameras now (start, reload); what they no longer have is removed on the next sync."""
        with self._lock:
            self._cameras = list(cameras)
        self._wake.set()

    def stop(self, remove: bool = False) -> None:
        """Clean stop: ``offline`` (and, with ``remove``, every entity removed), then disconnect."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self._connected.is_set():
            if remove:
                self.configure([])
                self.sync()
            self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True).wait_for_publish(1.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("home assistant discovery: broker %s:%d refused the connection: %s",
                        self.sink.host, self.sink.port, reason_code)
            return
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self._resend.set()
        self._connected.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("home assistant discovery: %s: %s", type(exc).__name__, exc)

    # one round
    def sync(self) -> None:
        """Publish what changed: configs (removals first), then states, then snapshots."""
        if not self.client.is_connected():
            self._connected.clear()
            return
        with self._lock:
            cameras = list(self._cameras)
        if self._resend.is_set():  # retained on the broker, but a restarted broker may have lost them
            self._resend.clear()
            self._snapshots.clear()
            self._published = {t: None for t in self._published}  # known (for removal), unsaid
        entities = [e for cam in cameras for e in camera_entities(cam, self.sink, self.version)]
        samples = read_samples(self.registry)
        wanted: dict[str, str] = {e.topic: json.dumps(e.config, sort_keys=True) for e in entities}
        for e in entities:
            if e.state_topic is not None and e.state is not None:
                wanted[e.state_topic] = e.state(samples)
        for topic in [t for t in self._published if t not in wanted]:
            self._publish(topic, "")
            if topic.endswith("/config"):
                log.info("home assistant discovery: removed %s", topic)
        for topic, payload in wanted.items():
            if self._published.get(topic) != payload:
                self._publish(topic, payload)
        self._sync_snapshots([c.name for c in cameras])

    def _sync_snapshots(self, cameras: list[str]) -> None:
        for cam in [c for c in self._snapshots if c not in cameras]:  # removed: clear its picture
            self.client.publish(f"{self.root}/{cam}/snapshot", b"", qos=1, retain=True)
            del self._snapshots[cam]
        for cam in cameras:
            path = self.latest_snapshot(cam)
            if not path or self._snapshots.get(cam) == path:
                continue
            data = _read_jpeg(path)
            if data is None:  # not written yet (the evidence writer is behind): next round
                continue
            self.client.publish(f"{self.root}/{cam}/snapshot", data, qos=1, retain=True)
            self._snapshots[cam] = path

    def _publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1, retain=True)
        if payload:
            self._published[topic] = payload
        else:
            self._published.pop(topic, None)


def _read_jpeg(path: str) -> bytes | None:
    try:
        p = Path(path)
        if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_SNAPSHOT_BYTES:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\xff\xd8") else None


# -- the set the service holds -----------------------------------------------------------------
class HomeAssistant:
    """One publisher per ``mqtt`` sink with discovery on; reconfigured on reload."""

    def __init__(self, registry: Any, latest_snapshot: LatestSnapshot, version: str,
                 environ: dict[str, str] | None = None):
        self.registry, self.latest_snapshot, self.version = registry, latest_snapshot, version
        self.environ = environ
        self.publishers: dict[str, HomeAssistantPublisher] = {}  # by sink name

    def apply(self, sinks: Iterable[Any], cameras: Sequence[CameraConfig]) -> None:
        """Start publishers for new discovery sinks, reconfigure kept ones, and remove the
        entities of sinks that are gone or changed (a changed sink starts afresh)."""
        wanted = {s.label: s for s in sinks if isinstance(s, MqttSinkConfig) and s.discovery}
        for name in [n for n, p in self.publishers.items() if wanted.get(n) != p.sink]:
            self.publishers.pop(name).stop(remove=True)
        for name, cfg in wanted.items():
            pub = self.publishers.get(name)
            if pub is None:
                pub = HomeAssistantPublisher(cfg, self.registry, self.latest_snapshot,
                                             self.version, self.environ)
                self.publishers[name] = pub
                pub.start(cameras)
                log.info("home assistant discovery: %d cameras under %s/ on %s:%d", len(cameras),
                         cfg.discovery_prefix, cfg.host, cfg.port)
            else:
                pub.configure(cameras)

    def stop(self) -> None:
        for pub in self.publishers.values():
            pub.stop()
        self.publishers.clear()
