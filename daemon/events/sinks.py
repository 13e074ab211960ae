"""Event sinks: JSON lines (rotated by size), MQTT, webhook.

Each sink has a bounded queue and its own sender thread, so a slow or dead receiver never slows
detection: :meth:`QueuedSink.offer` never blocks, and an event that finds the queue full is
dropped and counted (``duskwatch_sink_events_dropped_total{sink}``), as is one whose retries ran
out or that the receiver refused (a webhook's 4xx). A receiver that cannot be reached is an
outage (:mod:`daemon.events.outage`): logged when it begins (with the reason in words), when the
receiver is back, and in one closing line with its length and the events delivered late and
dropped. Secrets (MQTT password, webhook token) are resolved from the environment or
``$CREDENTIALS_DIRECTORY`` when the sink is built and never logged; the webhook URL is logged
as :func:`daemon.config.redact_url` writes it (no password, no secret query values).
"""

from __future__ import annotations

import abc
import json
import logging
import os
import queue
import socket
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import requests

from daemon.config import (
    EventsJsonlSinkConfig,
    MqttSinkConfig,
    WebhookSinkConfig,
    redact_url,
    sink_secret,
)
from daemon.events import webhook_http
from daemon.events.outage import Outage
from daemon.pipeline.ratelog import RateLimitedLog

log = logging.getLogger("duskwatch.events")

OnDrop = Callable[[str], None]


class NotDelivered(Exception):
    """Raised by :meth:`QueuedSink.deliver`: the event is dropped, for the reason given (words,
    no secrets)."""


class QueuedSink(abc.ABC):
    """A bounded queue drained by a sender thread; subclasses implement :meth:`deliver`."""

    #: What the outage lines call the receiver (subclasses name it: "broker HOST:PORT", ...).
    target = "the receiver"

    def __init__(self, name: str, queue_size: int, types: Sequence[str], on_drop: OnDrop):
        self.name = name
        self.types = frozenset(types)
        # (monotonic time offered, event): the time tells a late delivery from a prompt one
        self._queue: queue.Queue[tuple[float, dict]] = queue.Queue(maxsize=queue_size)
        self._on_drop = on_drop
        self._stop = threading.Event()  # stop now (after close's grace period)
        self._closing = threading.Event()  # deliver what is queued, then stop
        self._errors = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run, name=f"duskwatch-sink-{name}", daemon=True)
        self.delivered = 0
        self.dropped = 0
        self.outage = Outage(name, self.target, log)

    def start(self) -> None:
        self._thread.start()

    def offer(self, event: dict[str, Any]) -> bool:
        """Queue an event (never blocks); False when it was dropped (queue full)."""
        if event["type"] not in self.types:
            return True
        try:
            self._queue.put_nowait((time.monotonic(), event))
            return True
        except queue.Full:
            self._drop("queue full")
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout``, then stop; what is left is counted as
        dropped."""
        self._closing.set()
        end = time.monotonic() + timeout
        while self._thread.is_alive() and self._queue.qsize() and time.monotonic() < end:
            time.sleep(0.05)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.1, end - time.monotonic()))
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._drop("shut down with the event undelivered")
        self.shutdown()
        self.outage.close()
        self._errors.flush()

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self._on_drop(self.name)
        self.outage.dropped_one()
        self._errors.error(f"drop:{why}", "sink %s: event dropped (%s)", self.name, why)

    def _run(self) -> None:
        while True:
            try:
                offered_at, event = self._queue.get(timeout=0.2)
            except queue.Empty:
                self.outage.settle(0)
                if self._stop.is_set() or self._closing.is_set():
                    return
                continue
            try:
                ok = self.deliver(event)
            except NotDelivered as exc:
                self._drop(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a sink thread never dies of one event
                self._errors.error("deliver", "sink %s: %s: %s", self.name, type(exc).__name__, exc)
                self.outage.failed(f"{type(exc).__name__}: {exc}")
                self._drop("error")
                continue
            if ok:
                self.delivered += 1
                self.outage.recovered(self._queue.qsize())
                self.outage.delivered(offered_at, self._queue.qsize())
            else:
                self._drop("not delivered")

    @abc.abstractmethod
    def deliver(self, event: dict[str, Any]) -> bool:
        """Send one event; True when the receiver has it (each sink type says how), False or
        :class:`NotDelivered` (with the reason) when it is dropped."""

    def shutdown(self) -> None:
        """Release connections and files (after the thread ended)."""


def stamped(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a sink sends it: with ``sent``, the time of this send (ISO 8601, UTC)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return {**event, "sent": now}


# -- JSON lines ---------------------------------------------------------------------------------
class EventsJsonlSink(QueuedSink):
    """One event per line, appended to a file rotated at ``max_bytes`` (path.1 ... path.N)."""

    def __init__(self, cfg: EventsJsonlSinkConfig, on_drop: OnDrop):
        self.target = f"file {cfg.path}"
        super().__init__(cfg.label, cfg.queue_size, cfg.types, on_drop)
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._fh = None

    def deliver(self, event: dict[str, Any]) -> bool:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(stamped(event), separators=(",", ":")) + "\n")
        self._fh.flush()
        if self._fh.tell() >= self.cfg.max_bytes:
            self._rotate()
        return True

    def _rotate(self) -> None:
        self._fh.close()
        self._fh = None
        for i in range(self.cfg.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.cfg.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def shutdown(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- webhook ------------------------------------------------------------------------------------
class WebhookSink(QueuedSink):
    """POST each event as JSON over one kept-alive connection (:mod:`daemon.events.webhook_http`
    says what is retried and how long it waits); what is not delivered is dropped and counted."""

    def __init__(self, cfg: WebhookSinkConfig, on_drop: OnDrop, environ: dict[str, str] | None = None):
        self._url = cfg.url.get_secret_value()
        self.display_url = redact_url(self._url)
        self.target = f"webhook {self.display_url}"
        super().__init__(cfg.label, cfg.queue_size, cfg.types, on_drop)
        self.cfg = cfg
        self._failures: list[str] = []  # this event's failed attempts, in words
        retry = webhook_http.retry_policy(cfg.retries, cfg.backoff_max_s, self._stop.wait,
                                          self._attempt_failed)
        self._session = webhook_http.open_session(retry, sink_secret(cfg, environ))

    def deliver(self, event: dict[str, Any]) -> bool:
        if self._stop.is_set():
            raise NotDelivered("shut down with the event undelivered")
        body = json.dumps(stamped(event)).encode()
        self._failures.clear()
        try:
            with self._session.post(self._url, data=body, timeout=self.cfg.timeout_s,
                                    allow_redirects=False) as answer:
                status = answer.status_code
        except webhook_http.Stopped:
            raise NotDelivered("shut down with the event undelivered") from None
        except requests.RequestException as exc:
            if not self._failures:  # not sent at all (the message may quote the URL: not logged)
                raise NotDelivered(f"not sent: {type(exc).__name__}") from None
            raise NotDelivered(self._gave_up_words()) from None
        if 200 <= status < 300:
            return True
        if status in webhook_http.RETRIED_STATUSES:
            self._failures = self._failures or [webhook_http.status_words(status)]
            raise NotDelivered(self._gave_up_words())
        self.outage.recovered(self._queue.qsize())  # it answers: reachable, but refuses this
        raise NotDelivered(self._refused_words(status))

    def _attempt_failed(self, reason: str, attempt: int) -> None:
        self._failures.append(reason)
        self.outage.failed(reason)
        self._errors.error("post", "sink %s: POST %s failed (attempt %d of %d): %s", self.name,
                           self.display_url, attempt, self.cfg.retries + 1, reason)

    def _gave_up_words(self) -> str:
        """The retries ran out: how many attempts, and the last one's failure."""
        return f"not delivered in {len(self._failures)} attempts: {self._failures[-1]}"

    def _refused_words(self, status: int) -> str:
        if status in (401, 403):
            hint = "check the sink's token (token_env / token_credential)"
        elif 300 <= status < 400:
            hint = "redirects are not followed: set url to the address it points to"
        else:
            hint = "check the sink's url and what the receiver expects"
        answer = webhook_http.status_words(status, phrase=True)
        return f"POST {self.display_url} answered {answer}, not retried; {hint}"

    def shutdown(self) -> None:
        self._session.close()


# -- MQTT ---------------------------------------------------------------------------------------
class MqttSink(QueuedSink):
    """Publish each event to ``<topic_prefix>/<camera>/<type>`` with paho-mqtt.

    paho's network thread connects and reconnects (backoff up to ``backoff_max_s``). The sender
    thread publishes one event at a time while connected and waits for the broker's
    acknowledgement (QoS 1 and 2, seen in ``on_publish``); a message whose connection dropped
    before that stays in paho's session, which sends it again after reconnecting. While the
    broker is down, events wait in this sink's bounded queue, so paho never holds more than one.
    """

    def __init__(self, cfg: MqttSinkConfig, on_drop: OnDrop, environ: dict[str, str] | None = None):
        self.target = f"broker {cfg.host}:{cfg.port}"
        super().__init__(cfg.label, cfg.queue_size, cfg.types, on_drop)
        import paho.mqtt.client as mqtt

        self.cfg = cfg
        self._connected = threading.Event()
        client_id = cfg.client_id or f"duskwatch-{socket.gethostname()}-{os.getpid()}-{cfg.label}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id[:64],
                                  clean_session=True)
        password = sink_secret(cfg, environ)
        if cfg.username is not None or password is not None:
            self.client.username_pw_set(cfg.username or "", password)
        if cfg.tls:
            self.client.tls_set(ca_certs=cfg.ca_file)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(cfg.backoff_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._acked: set[int] = set()
        self._ack = threading.Condition()

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        super().start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if getattr(reason_code, "is_failure", False):
            self.outage.failed(connack_words(reason_code))
            return
        if self.outage.active:
            self.outage.recovered(self._queue.qsize())
        else:
            log.info("sink %s: connected to %s:%d", self.name, self.cfg.host, self.cfg.port)
        self._connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError:`: the exception says what happened
        self.outage.failed(connect_error_words(sys.exc_info()[1]))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._stop.is_set() or self._closing.is_set():
            log.info("sink %s: disconnected from %s:%d (shutting down)", self.name,
                     self.cfg.host, self.cfg.port)
        elif was_connected:
            self.outage.failed(disconnect_words(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._ack:
            self._acked.add(mid)
            self._ack.notify_all()

    def deliver(self, event: dict[str, Any]) -> bool:
        import paho.mqtt.client as mqtt

        while not self._connected.wait(0.5):
            if self._stop.is_set():
                return False
        topic = f"{self.cfg.topic_prefix}/{event['camera']}/{event['type']}"
        info = self.client.publish(topic, json.dumps(stamped(event)), qos=self.cfg.qos,
                                   retain=self.cfg.retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return False
        if self.cfg.qos == 0:
            return info.rc == mqtt.MQTT_ERR_SUCCESS
        # Acknowledged by the broker, now or after paho's reconnect (the connection may have
        # dropped between the check above and the publish: paho keeps the message then).
        with self._ack:
            while info.mid not in self._acked:
                if self._stop.is_set():
                    return False
                self._ack.wait(0.5)
            self._acked.discard(info.mid)
        return True

    def shutdown(self) -> None:
        self._stop.set()  # a disconnect from here on is ours: no outage, no reconnect
        self.client.disconnect()
        self.client.loop_stop()


#: CONNACK refusals (MQTT 3.1.1 return codes and their MQTT 5 reason codes), in words.
_AUTH_FAILED = ("auth failed: the broker refused the user name or password (check the sink's "
                "username and password_env / password_credential)")
_CONNACK = {
    "Bad user name or password": _AUTH_FAILED,
    "Not authorized": _AUTH_FAILED,
    "Server unavailable": "refused: the broker says it is unavailable",
    "Client identifier not valid": "refused: the client_id is not valid for this broker",
    "Unsupported protocol version": "refused: the broker does not speak MQTT 3.1.1",
    "Banned": "refused: this client is banned by the broker",
}


def connack_words(reason_code: Any) -> str:
    """A refused connection (CONNACK failure), in words."""
    return _CONNACK.get(str(reason_code), f"refused by the broker ({reason_code})")


def disconnect_words(reason_code: Any) -> str:
    """Why an established connection ended, in words. paho reports a connection that simply
    broke (the broker died, the network went away) as "Unspecified error"."""
    text = str(reason_code)
    if text in ("Unspecified error", "Success", "Normal disconnection"):
        return "connection lost"
    if text == "Keep alive timeout":
        return "connection lost: no answer within the keep-alive"
    if text == "Session taken over":
        return "another client connected with the same client_id"
    if text in ("Server shutting down", "Server unavailable"):
        return "the broker is shutting down"
    if text in _CONNACK:
        return _CONNACK[text]
    return f"connection lost ({text})"


def connect_error_words(exc: BaseException | None) -> str:
    """A TCP/TLS connection attempt that failed, in words."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens there; is the broker running?"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connection timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    return "cannot connect"


# -- the set --------------------------------------------------------------------------------------
def make_event_sink(cfg: Any, on_drop: OnDrop, environ: dict[str, str] | None = None) -> QueuedSink:
    """The sink for one event-sink config (events_jsonl, mqtt, webhook)."""
    if isinstance(cfg, EventsJsonlSinkConfig):
        return EventsJsonlSink(cfg, on_drop)
    if isinstance(cfg, MqttSinkConfig):
        return MqttSink(cfg, on_drop, environ)
    if isinstance(cfg, WebhookSinkConfig):
        return WebhookSink(cfg, on_drop, environ)
    raise ValueError(f"sink type '{getattr(cfg, 'type', cfg)}' is not an event sink")


class EventSinkSet:
    """Hands every event to every event sink; started, and closed, as a whole."""

    def __init__(self, sinks: Sequence[QueuedSink]):
        self.sinks = list(sinks)

    def start(self) -> None:
        for s in self.sinks:
            s.start()

    def offer(self, event: dict[str, Any]) -> None:
        for s in self.sinks:
            s.offer(event)

    def close(self, timeout: float = 5.0) -> None:
        """Close every sink in parallel, all within ``timeout`` (what a sink could not deliver
        by then is counted as dropped)."""

        def close_one(sink: QueuedSink) -> None:
            try:
                sink.close(timeout)
            except Exception as exc:  # noqa: BLE001
                log.warning("sink %s: close failed: %s", sink.name, exc)

        threads = [threading.Thread(target=close_one, args=(s,), daemon=True) for s in self.sinks]
        for t in threads:
            t.start()
        end = time.monotonic() + timeout + 0.5
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
