"""The webhook sink as an HTTP client, against a real HTTP/1.1 receiver on loopback
(``webhook_receiver`` in conftest): what is retried (no answer, 429, 5xx) and what is final
(other 4xx and 3xx, dropped at once and counted), ``Retry-After`` in both forms within the
backoff cap, one kept-alive connection, a stop that cuts a long wait short, URL credentials and
tokens kept out of every log, and HTTPS checked against the system's trust store.

Times are only ever bounded from below with the server's own clock (a retry the server saw no
earlier than the wait asked for), or from above by generous limits that a hang would break."""

from __future__ import annotations

import logging
import ssl
import time
from functools import partial
from email.utils import formatdate

import pytest
import trustme
from urllib3 import HTTPResponse

from daemon.config import WebhookSinkConfig
from daemon.events.sinks import WebhookSink
from daemon.events.webhook_http import failure_words, retry_policy
from daemon.metrics import Metrics
from tests.conftest import start_webhook_receiver
from tests.wait import wait_for as wait


wait_for = partial(wait, timeout=20.0)  # deliveries through retries: a longer default


def event(i: int) -> dict:
    return {"id": f"{i:016x}", "type": "crossed", "camera": "gate",
            "happened": "2026-12-06T06:42:16.272+00:00"}


def log_text(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "duskwatch.events"]


class Sink:
    """A started webhook sink with its own metrics registry; closed when the ``with`` ends."""

    def __init__(self, url: str, environ: dict | None = None, **cfg):
        self.metrics = Metrics()
        cfg = WebhookSinkConfig(type="webhook", url=url, **{"timeout_s": 5, **cfg})
        self.sink = WebhookSink(cfg, environ=environ, on_drop=lambda name: (
            self.metrics.sink_events_dropped.labels(name).inc()))
        self.metrics.add_event_sink(self.sink.name)

    def dropped_metric(self) -> float:
        return self.metrics.registry.get_sample_value(
            "duskwatch_sink_events_dropped_total", {"sink": self.sink.name})

    def __enter__(self) -> "Sink":
        self.sink.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sink.close(timeout=5)


def statuses(hook) -> list[int]:
    return [post.status for post in hook.posts]


def gap(hook, i: int) -> float:
    """Seconds between the server's receipt of POST i-1 and of POST i (the server's clock)."""
    return hook.posts[i].at - hook.posts[i - 1].at


def test_503_twice_then_200_is_delivered_once_after_two_retries_on_one_connection(webhook_receiver):
    hook = webhook_receiver
    hook.answers = [(503, {}), (503, {})]
    with Sink(hook.url, retries=5, backoff_max_s=0.2) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1)
    assert statuses(hook) == [503, 503, 200]
    assert {post.body["id"] for post in hook.posts} == {event(1)["id"]}  # the same event
    assert len(hook.received) == 1 and s.sink.dropped == 0 and s.dropped_metric() == 0
    assert hook.connections == 1  # the retries went over the kept-alive connection


def test_429_retry_after_seconds_is_waited(webhook_receiver):
    hook = webhook_receiver
    hook.answers = [(429, {"Retry-After": "1"})]
    with Sink(hook.url, retries=3, backoff_max_s=10) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1)
    assert statuses(hook) == [429, 200]
    assert gap(hook, 1) >= 0.9  # the backoff alone would wait 0.5 to 0.75 s


def test_503_retry_after_http_date_is_waited(webhook_receiver):
    hook = webhook_receiver
    # an HTTP-date has whole seconds: "now + 2 s" is between 1 and 2 s away when it is read
    hook.answers = [(503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)})]
    with Sink(hook.url, retries=3, backoff_max_s=10) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1)
    assert statuses(hook) == [503, 200]
    assert gap(hook, 1) >= 0.9


def test_a_retry_after_beyond_the_cap_waits_the_cap(webhook_receiver):
    hook = webhook_receiver
    hook.answers = [(429, {"Retry-After": "3600"})]
    with Sink(hook.url, retries=3, backoff_max_s=1.0) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1, timeout=30)  # not an hour later
    assert statuses(hook) == [429, 200]
    assert gap(hook, 1) >= 0.9  # the cap's 1 s, longer than the backoff's first 0.5 to 0.75 s


@pytest.mark.parametrize("status, headers", [
    (400, {}),
    (404, {}),
    (413, {"Retry-After": "1"}),  # urllib3's default would retry a 413 with Retry-After
    (302, {"Location": "/elsewhere"}),  # not followed: it would arrive as a GET, without the event
])
def test_a_final_answer_is_not_retried_but_dropped_counted_and_logged(webhook_receiver, caplog,
                                                                      status, headers):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    hook = webhook_receiver
    hook.status = status
    hook.answers = [(status, headers)]
    url = hook.url + "?token=tok-SECRET&v=2"
    with Sink(url, retries=3, backoff_max_s=0.2) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.dropped == 1)
        assert not s.sink.outage.active  # the receiver answered: not an outage
    assert statuses(hook) == [status]  # exactly one request
    assert s.sink.delivered == 0 and s.dropped_metric() == 1
    text = log_text(caplog)
    drops = [ln for ln in text if "event dropped" in ln]
    assert len(drops) == 1 and f"answered HTTP {status} " in drops[0], text
    assert "/hook?token=***&v=2 answered" in drops[0], drops
    assert not any("SECRET" in ln for ln in text), text
    assert not any("unreachable" in ln for ln in text), text


def test_url_credentials_go_as_basic_auth_and_a_401_names_the_fix(webhook_receiver, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    hook = webhook_receiver
    hook.status = 401
    url = hook.url.replace("http://", "http://hookuser:pw-SECRET@")
    with Sink(url, retries=3, backoff_max_s=0.2) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.dropped == 1)
    [post] = hook.posts  # not retried
    assert post.status == 401 and post.headers["Authorization"].startswith("Basic ")
    text = log_text(caplog)
    [drop] = [ln for ln in text if "event dropped" in ln]
    assert "POST http://hookuser:***@127.0.0.1:" in drop and "HTTP 401 Unauthorized" in drop
    assert "check the sink's token" in drop
    assert not any("SECRET" in ln for ln in text), text


def test_a_dead_port_is_retried_then_dropped_counted_and_logged_in_words(closed_port, caplog):
    caplog.set_level(logging.INFO)
    with Sink(f"http://127.0.0.1:{closed_port}/hook?token=tok-SECRET", retries=2,
              backoff_max_s=0.05, timeout_s=1) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.dropped == 1)
        assert s.sink.outage.active
    assert s.sink.delivered == 0 and s.dropped_metric() == 1
    text = log_text(caplog)  # the close flushed the rate-limited repeats
    refused = "connection refused: nothing listens there; is the receiver running?"
    assert any(ln.endswith(f"(attempt 1 of 3): {refused}") for ln in text), text
    # three attempts: the first logged, the two retries summed when the rate limit ended
    assert any(f"(attempt 1 of 3): {refused}: repeated 2 more times" in ln for ln in text), text
    assert any(ln.endswith(f"event dropped (not delivered in 3 attempts: {refused})")
               for ln in text), text
    assert any("outage ended by shutdown" in ln and "1 dropped" in ln for ln in text), text
    # nothing else logged the attempts (urllib3 warns on each retry, quoting path and query)
    everything = [(r.name, r.getMessage()) for r in caplog.records]
    assert not any("SECRET" in msg or "Retrying" in msg for _, msg in everything), everything


def test_many_events_go_over_one_kept_alive_connection(webhook_receiver):
    hook = webhook_receiver
    with Sink(hook.url, retries=1, backoff_max_s=0.2) as s:
        for i in range(30):
            assert s.sink.offer(event(i))
        assert wait_for(lambda: s.sink.delivered == 30)
    assert [body["id"] for _, body in hook.received] == [event(i)["id"] for i in range(30)]
    assert hook.connections == 1


def test_headers_token_and_event_times_are_as_before(webhook_receiver):
    hook = webhook_receiver
    with Sink(hook.url, environ={"HOOK_TOKEN": "tok-123"}, token_env="HOOK_TOKEN") as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1)
    [(headers, body)] = hook.received
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "duskwatch"
    assert body["happened"] == event(1)["happened"] and body["sent"].endswith("+00:00")


def test_a_stop_cuts_a_long_retry_after_short_and_counts_the_event(webhook_receiver, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    hook = webhook_receiver
    hook.status = 503
    hook.answers = [(503, {"Retry-After": "300"})]
    s = Sink(hook.url, retries=5, backoff_max_s=300)
    with s:
        s.sink.offer(event(1))
        assert wait_for(lambda: len(hook.posts) == 1)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 30  # close(timeout=5) did not wait out the 300 s
    assert s.sink.dropped == 1 == s.dropped_metric() and s.sink.delivered == 0
    assert statuses(hook) == [503]
    assert any("outage ended by shutdown" in ln and "1 dropped" in ln for ln in log_text(caplog))


# -- TLS: checked against the system's trust store, as before ---------------------------------------
@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_receiver(tls_ca, monkeypatch):
    """The receiver over HTTPS, with a certificate for 127.0.0.1 from ``tls_ca``; requests'
    own CA variables unset, so that only the system's store (``SSL_CERT_FILE``) decides."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    hook, stop = start_webhook_receiver(server_tls)
    yield hook
    stop()


def test_https_trusts_the_systems_ca_store(https_receiver, tls_ca, tmp_path, monkeypatch):
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # OpenSSL's own override of its store
    with Sink(https_receiver.url, retries=1, backoff_max_s=0.2) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.delivered == 1)
    assert len(https_receiver.received) == 1 and https_receiver.connections == 1


def test_an_untrusted_certificate_is_not_delivered_and_the_log_says_why(https_receiver, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch.events")
    with Sink(https_receiver.url, retries=1, backoff_max_s=0.2) as s:
        s.sink.offer(event(1))
        assert wait_for(lambda: s.sink.dropped == 1)
    assert https_receiver.posts == [] and s.dropped_metric() == 1
    assert any("event dropped (not delivered in 2 attempts: TLS failed (certificate not "
               "trusted: " in ln for ln in log_text(caplog)), log_text(caplog)


# -- the policy's pieces, without a server ------------------------------------------------------
def answer(status: int, **headers: str) -> HTTPResponse:
    return HTTPResponse(body=b"", status=status, headers=headers)


def test_the_wait_is_retry_after_capped_else_the_backoff():
    policy = retry_policy(retries=10, backoff_max_s=4.0, wait=lambda s: False, on_failed=None)
    once = policy.increment("POST", "/x", response=answer(503))
    assert once.delay(answer(429, **{"Retry-After": "2"})) == 2.0
    assert once.delay(answer(503, **{"Retry-After": "90"})) == 4.0
    assert 0.5 <= once.delay(answer(503, **{"Retry-After": "soon, maybe"})) <= 0.75  # backoff
    thrice = once.increment("POST", "/x", response=answer(503)).increment(
        "POST", "/x", response=answer(503))
    assert 2.0 <= thrice.delay(answer(503)) <= 2.25  # 0.5 * 2**2, plus at most 0.25 of jitter
    assert thrice.delay(answer(503, **{"Retry-After": "3"})) == 3.0
    for _ in range(3):
        thrice = thrice.increment("POST", "/x", response=answer(503))
    assert thrice.delay(answer(503)) == 4.0  # the cap


def test_what_is_retried():
    policy = retry_policy(retries=5, backoff_max_s=4.0, wait=lambda s: False, on_failed=None)
    assert all(policy.is_retry("POST", code) for code in (429, 500, 502, 503, 504))
    assert not any(policy.is_retry("POST", code, has_retry_after=True)
                   for code in (400, 401, 403, 404, 409, 413, 422, 301, 302))


def test_failure_words_never_quote_the_url():
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise NewConnectionError(None, "Failed to establish a new connection") from cause
    except NewConnectionError as exc:
        refused = exc
    assert failure_words(refused).startswith("connection refused")
    timeout = ReadTimeoutError(None, "/hook?token=SECRET", "Read timed out.")
    assert failure_words(timeout) == "no answer within timeout_s"
    assert "SECRET" not in failure_words(MaxRetryError(None, "/hook?token=SECRET", timeout))
