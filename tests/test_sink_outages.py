"""Sink outages, told in logs that add up: a real Mosquitto killed and restarted, a real webhook
receiver answering 500 then 200. The log's numbers are read back and checked against the
metrics and against what the receivers got. Bounded in events and seconds; no timing asserts."""

from __future__ import annotations

import json
import logging
import re

import pytest

from daemon.config import MqttSinkConfig, WebhookSinkConfig
from daemon.events.sinks import (
    MqttSink,
    WebhookSink,
    connack_words,
    connect_error_words,
    disconnect_words,
)
from daemon.metrics import Metrics
from tests.conftest import start_again
from tests.wait import wait_for

OVER = re.compile(r"sink (\S+): (outage over|outage ended by shutdown): ([\d.]+) s without (.+?) "
                  r"\((.+)\), (\d+) events delivered late, (\d+) dropped$")




def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "duskwatch.events"]


def dropped_metric(m: Metrics, sink: str) -> float:
    return m.registry.get_sample_value("duskwatch_sink_events_dropped_total", {"sink": sink}) or 0.0


def event(i: int) -> dict:
    return {"id": f"{i:016x}", "type": "crossed", "camera": "gate"}


class Subscriber:
    """A persistent-session subscriber: it gets what was published while the broker was down
    and its own connection too, once both are back."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.ids: list[str] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-sub",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("duskwatch/#", qos=1)
        self.client.on_message = lambda c, u, msg: self.ids.append(json.loads(msg.payload)["id"])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_broker_outage_ends_with_one_line_whose_numbers_match_the_metrics(mosquitto, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    broker = mosquitto()
    m = Metrics()
    cfg = MqttSinkConfig(type="mqtt", host="127.0.0.1", port=broker.port, queue_size=5,
                         backoff_max_s=1, keepalive_s=5)
    sink = MqttSink(cfg, on_drop=lambda name: m.sink_events_dropped.labels(name).inc())
    m.add_event_sink(sink.name)
    sub = Subscriber(broker.port)
    try:
        sink.start()
        for i in range(3):
            sink.offer(event(i))
        assert wait_for(lambda: len(sub.ids) == 3, 20), sub.ids

        broker.kill()
        assert wait_for(lambda: sink.outage.active, 20), lines(caplog)
        sink.offer(event(100))  # taken by the sender thread, which waits for the broker
        assert wait_for(lambda: sink.pending() == 0, 10)
        offered = [sink.offer(event(101 + i)) for i in range(19)]
        assert offered.count(True) == 5 and offered.count(False) == 14  # 5 queued, 14 dropped
        assert wait_for(lambda: any("still unreachable" in ln for ln in lines(caplog)), 20)

        start_again(broker.start, 20)
        assert wait_for(lambda: sink.outage.ended == 1, 30), lines(caplog)
        waited = {event(100)["id"]} | {event(101 + i)["id"] for i in range(5)}
        assert wait_for(lambda: waited <= set(sub.ids), 20), sub.ids
    finally:
        sub.close()
        sink.close(timeout=5)

    text = lines(caplog)
    assert not any("Unspecified error" in ln for ln in text), text
    begin = [ln for ln in text if "events wait in the queue" in ln]
    assert begin == [f"sink mqtt: broker 127.0.0.1:{broker.port} unreachable (connection lost); "
                     "events wait in the queue, and are dropped when it is full"]
    assert any("still unreachable (connection refused: nothing listens there" in ln for ln in text)
    back = [ln for ln in text if "reachable again after" in ln]
    assert len(back) == 1 and back[0].endswith("delivering the 5 queued events"), back
    [over] = [OVER.match(ln) for ln in text if OVER.match(ln)]
    assert over.group(1, 2, 4, 5) == ("mqtt", "outage over", f"broker 127.0.0.1:{broker.port}",
                                      "connection lost")
    late, dropped = int(over.group(6)), int(over.group(7))
    assert dropped == 14 == dropped_metric(m, "mqtt") == sink.dropped
    assert late == 6 == len(waited)  # the one being sent and the 5 queued, all received
    assert float(over.group(3)) > 0
    # the drops themselves: one line at once, the other 13 summed (here by the close's flush)
    drops = [ln for ln in text if ln.startswith("sink mqtt: event dropped (queue full)")]
    assert drops[0] == "sink mqtt: event dropped (queue full)" and len(drops) == 2, drops
    assert re.fullmatch(r".*: repeated 13 more times in the last \d+ s", drops[1]), drops
    # a clean stop: said as such, nothing reconnects and no outage begins
    after = text[text.index(back[0]):]
    assert any(ln.endswith("(shutting down)") for ln in after), after
    assert not any("unreachable" in ln or "reconnect" in ln for ln in after), after


def test_refused_credentials_are_reported_as_auth_failed(mosquitto, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    broker = mosquitto(user="cam", password="right-pw")
    monkeypatch.setenv("DW_TEST_MQTT_PW", "wrong-pw")
    cfg = MqttSinkConfig(type="mqtt", host="127.0.0.1", port=broker.port, username="cam",
                         password_env="DW_TEST_MQTT_PW", backoff_max_s=1)
    sink = MqttSink(cfg, on_drop=lambda name: None)
    try:
        sink.start()
        assert wait_for(lambda: sink.outage.active, 20)
    finally:
        sink.close(timeout=1)
    text = lines(caplog)
    assert any("unreachable (auth failed: the broker refused the user name or password" in ln
               for ln in text), text
    assert not any("wrong-pw" in ln for ln in text)
    assert any(OVER.match(ln) and "outage ended by shutdown" in ln for ln in text), text


def test_a_webhook_outage_counts_late_and_dropped_like_the_metrics(webhook_receiver, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    m = Metrics()
    webhook_receiver.status = 500
    cfg = WebhookSinkConfig(type="webhook", url=webhook_receiver.url, queue_size=4, retries=1,
                            backoff_max_s=0.05, timeout_s=2)
    sink = WebhookSink(cfg, on_drop=lambda name: m.sink_events_dropped.labels(name).inc())
    m.add_event_sink(sink.name)
    try:
        sink.start()
        sink.offer(event(0))
        assert wait_for(lambda: sink.outage.active, 20)  # the first POST failed: it began
        for i in range(1, 12):
            sink.offer(event(i))
        assert wait_for(lambda: sink.dropped >= 1, 20)
        webhook_receiver.status = 200
        assert wait_for(lambda: sink.outage.ended == 1, 30), lines(caplog)
    finally:
        sink.close(timeout=5)
    [over] = [OVER.match(ln) for ln in lines(caplog) if OVER.match(ln)]
    assert over.group(5) == "HTTP 500"
    late, dropped = int(over.group(6)), int(over.group(7))
    assert dropped == dropped_metric(m, "webhook") == sink.dropped >= 1
    assert late == len(webhook_receiver.received) == sink.delivered
    assert late + dropped == 12  # every event offered is in one of the two numbers


@pytest.mark.parametrize("words, expected", [
    (disconnect_words("Unspecified error"), "connection lost"),
    (disconnect_words("Keep alive timeout"), "connection lost: no answer within the keep-alive"),
    (disconnect_words("Session taken over"), "another client connected with the same client_id"),
    (connack_words("Not authorized").split(":")[0], "auth failed"),
    (connack_words("Server unavailable"), "refused: the broker says it is unavailable"),
    (connect_error_words(ConnectionRefusedError()).split(":")[0], "connection refused"),
    (connect_error_words(TimeoutError()), "connection timed out"),
])
def test_reasons_in_words(words, expected):
    assert words == expected
