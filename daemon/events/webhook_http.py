"""The webhook sink's HTTP client: one kept-alive ``requests.Session`` per sink and a
``urllib3.util.Retry`` policy, so that the sink behaves as an HTTP client should.

What is retried: a POST that got no answer (connection refused or reset, timed out, TLS failed)
and the answers that say "later" (429 Too Many Requests, RFC 6585 section 4) or "the server
failed" (5xx, RFC 9110 section 15.6). Any other answer is final: 2xx delivered; 3xx (redirects
are not followed: a POST turned into a GET would lose the event) and 4xx (the receiver refuses
this request; sending it again changes nothing) are dropped at once by the sink.

Between attempts the wait is the answer's ``Retry-After`` (delay-seconds or an HTTP-date, RFC
9110 section 10.2.3) when it has one, else an exponential backoff from 0.5 s; either is capped at
the sink's ``backoff_max_s``. A sink that is stopping cuts any wait short (:class:`Stopped`).

Each failed attempt is reported through ``on_failed(reason, attempt)``, in words that carry no
part of the URL (urllib3's own messages quote the path and query, where tokens live; its
warning on each retry is filtered out).
"""

from __future__ import annotations

import http
import logging
import random
import ssl
import time
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

#: Answers worth sending again: "too many requests" and every server error.
RETRIED_STATUSES = frozenset({429, *range(500, 600)})

#: ``wait(seconds) -> True when the sink is stopping`` (``threading.Event.wait`` fits).
Wait = Callable[[float], bool]
#: ``on_failed(reason in words, attempt number from 1)``.
OnFailed = Callable[[str, int], None]


class Stopped(Exception):
    """The sink is stopping during a wait between attempts: the event is not sent again."""


def _never_stopping(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class SinkRetry(Retry):
    """urllib3's Retry with the sink's waits: ``Retry-After`` honoured on every retried answer
    (never on a final one such as 413) and capped at ``backoff_max``, waits a stop can cut
    short, and each failed attempt reported."""

    RETRY_AFTER_STATUS_CODES = RETRIED_STATUSES

    def __init__(self, *args: Any, wait: Wait = _never_stopping,
                 on_failed: OnFailed | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.wait = wait
        self.on_failed = on_failed

    def new(self, **kw: Any) -> "SinkRetry":
        # urllib3 builds a new Retry per attempt from its own fields: carry ours along
        kw.setdefault("wait", self.wait)
        kw.setdefault("on_failed", self.on_failed)
        return super().new(**kw)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):  # noqa: ANN001 - urllib3's signature
        if self.on_failed is not None:
            reason = failure_words(error) if error is not None else status_words(response.status)
            self.on_failed(reason, len(self.history) + 1)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_backoff_time(self) -> float:
        """``backoff_factor * 2**(n-1)`` after the n-th failure, plus the jitter, up to
        ``backoff_max``. urllib3 sends the first retry at once; a webhook that answers 500 then
        burns through the sink's queue at full speed (measured in the outage run of
        deploy/README.md: 132 of 133 events dropped instead of waiting in the queue)."""
        failures = len(self.history)
        if failures == 0:
            return 0.0
        value = self.backoff_factor * 2 ** min(failures - 1, 64)
        value += random.random() * self.backoff_jitter
        return float(min(self.backoff_max, value))

    def delay(self, response: Any = None) -> float:
        """Seconds to wait before the next attempt: ``Retry-After`` when the answer has a valid
        one, else the backoff; never more than ``backoff_max``."""
        after = None
        if response is not None and self.respect_retry_after_header:
            try:
                after = self.get_retry_after(response)
            except InvalidHeader:
                after = None  # a malformed Retry-After: back off as if there were none
        seconds = self.get_backoff_time() if after is None else after
        return max(0.0, min(seconds, self.backoff_max))

    def sleep(self, response: Any = None) -> None:
        if self.wait(self.delay(response)):
            raise Stopped("the sink is stopping")


def retry_policy(retries: int, backoff_max_s: float, wait: Wait,
                 on_failed: OnFailed | None) -> SinkRetry:
    """``retries`` more attempts after the first for a POST without an answer, a 429 or a 5xx;
    waits of 0.5, 1, 2, 4 ... s (plus up to 0.25 s of jitter) up to ``backoff_max_s``."""
    factor = 0.5
    return SinkRetry(
        total=retries, connect=None, read=None, status=None, other=None, redirect=0,
        allowed_methods=None,  # POST too: the event carries an id for receivers to deduplicate
        status_forcelist=RETRIED_STATUSES, raise_on_status=False, raise_on_redirect=False,
        backoff_factor=factor, backoff_jitter=factor / 2, backoff_max=backoff_max_s,
        wait=wait, on_failed=on_failed)


class _QuietRetries(logging.Filter):
    """Drops urllib3's own warning on each of our retries: it quotes the URL's path and query
    (where tokens live) and is not rate-limited; the sink logs its attempts itself, in words."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and isinstance(args[0], SinkRetry))


_QUIET_RETRIES = _QuietRetries()


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer TOKEN`` (RFC 6750)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def system_trust() -> str | bool:
    """The CA certificates this machine's OpenSSL trusts (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
    honoured), as Python's ``urllib`` used them; requests' own default would be certifi's
    bundle, which ignores a CA the operator added to the system store."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


def open_session(retry: Retry, token: str | None) -> requests.Session:
    """One kept-alive session (a pool of one connection: the sink sends one event at a time)."""
    urllib3_pool_log = logging.getLogger("urllib3.connectionpool")
    if _QUIET_RETRIES not in urllib3_pool_log.filters:
        urllib3_pool_log.addFilter(_QUIET_RETRIES)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Content-Type": "application/json", "User-Agent": "duskwatch"})
    session.verify = system_trust()
    if token:
        session.auth = BearerAuth(token)
    return session


def status_words(status: int, phrase: bool = False) -> str:
    """``HTTP 503``, or with ``phrase`` ``HTTP 503 Service Unavailable``: the standard phrase,
    never the server's (that is the server's text, and would reach the journal as written)."""
    if phrase:
        try:
            return f"HTTP {status} {http.HTTPStatus(status).phrase}"
        except ValueError:
            pass
    return f"HTTP {status}"


def failure_words(error: BaseException) -> str:
    """Why a POST got no answer, in words (no host name, path or query: urllib3's messages
    quote them)."""
    if isinstance(error, ProxyError):
        return f"proxy: {failure_words(error.original_error)}"
    if isinstance(error, NameResolutionError):
        return "the host name does not resolve"
    if isinstance(error, NewConnectionError):
        if isinstance(error.__cause__, ConnectionRefusedError):
            return "connection refused: nothing listens there; is the receiver running?"
        cause = error.__cause__
        return f"cannot connect: {getattr(cause, 'strerror', None) or type(cause).__name__}"
    if isinstance(error, ConnectTimeoutError):
        return "connection timed out (timeout_s)"
    if isinstance(error, ReadTimeoutError):
        return "no answer within timeout_s"
    if isinstance(error, SSLError):
        return f"TLS failed ({_ssl_words(error)})"
    if isinstance(error, ProtocolError):
        return "connection lost before the answer"
    return type(error).__name__


def _ssl_words(error: SSLError) -> str:
    inner = error.__cause__ or (error.args[0] if error.args else None)
    if isinstance(inner, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {inner.verify_message}"
    if isinstance(inner, ssl.SSLError):
        return inner.reason or type(inner).__name__
    return "handshake failed"
