"""Shared fixtures: a real RTSP server, a real Prometheus, test footage, fault helpers.

Fixtures (see each docstring for the full API):

``footage``        ``{clip_name: Path}`` of cached encoded clips (h264, h265, mono, odd, reschange).
``rtsp_server``    factory: ``srv = rtsp_server({"cam1": "h264", "cam2": "h264"})``; then
                   ``srv.url("cam1")``, ``srv.kill()``, ``srv.restart()``, ``srv.freeze()``,
                   ``srv.thaw()``. Runs Debian's ``/usr/bin/python3 tests/rtsp/server.py``.
``prometheus``     factory: ``prom = prometheus(["127.0.0.1:9872"])``; then
                   ``prom.wait_for("duskwatch_frames_total", lambda v: v > 0)``.
``garbage_server`` a loopback TCP port that answers every connection with junk bytes.
``closed_port``    a loopback port nothing listens on.

Missing Debian packages skip the tests that need them with the package to install.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

# Owner-thread checks on (daemon.pipeline.owner), here and in every daemon a test starts: a
# change to a structure from a thread that does not own it fails with AssertionError.
os.environ.setdefault("DUSKWATCH_CHECK_OWNERS", "1")
from daemon.pipeline import owner as _owner  # noqa: E402

_owner.set_checks(os.environ["DUSKWATCH_CHECK_OWNERS"] not in ("", "0"))

from tests.rtsp.footage import CLIP_NAMES, FootageError, ensure_footage  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp" / "server.py"
PROMETHEUS = "/usr/bin/prometheus"
FOOTAGE_VERSION = "v1"

RTSP_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad"
)
_GST_PROBE = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import Gst, GstRtspServer, GstPbutils
Gst.init(None)
missing = [e for e in ("parsebin", "h264parse", "h265parse", "rtph264pay", "rtph265pay",
                       "matroskademux", "tsdemux") if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


# -- availability checks ----------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_rtsp_missing: list[str | None] = []


def rtsp_server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or ``None`` when it can."""
    if not _rtsp_missing:
        _rtsp_missing.append(_probe_rtsp())
    return _rtsp_missing[0]


def _probe_rtsp() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"needs Debian's {SYSTEM_PYTHON} with {RTSP_PACKAGES} (apt); run `make sysdeps`"
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", _GST_PROBE], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return "probing GStreamer timed out"
    if proc.returncode != 0:
        return f"needs {RTSP_PACKAGES} (apt); run `make sysdeps` ({proc.stderr.strip()[-200:]})"
    if proc.stdout.strip():
        return (f"GStreamer elements missing: {proc.stdout.strip()}; install {RTSP_PACKAGES} "
                "(apt); run `make sysdeps`")
    if shutil.which("ffmpeg") is None:
        return "needs ffmpeg (apt) to encode test footage; run `make sysdeps`"
    return None


def require_rtsp_server() -> None:
    reason = rtsp_server_missing()
    if reason:
        pytest.skip(reason)


def require_prometheus() -> None:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("needs Debian's prometheus package (apt install prometheus); run `make sysdeps`")


# -- camera sources and notify sockets ---------------------------------------------------------
@pytest.fixture
def started():
    """``started(cfg, events) -> OpenCVSource``: a real source, started; all stopped at teardown."""
    from daemon.pipeline.sources import OpenCVSource

    made: list = []

    def make(cfg, events):
        src = OpenCVSource(cfg, events)
        made.append(src)
        src.start()
        return src

    yield make
    for src in made:
        src.stop(timeout=5)


@pytest.fixture
def notify_socket(tmp_path):
    """``(path, socket)``: a bound AF_UNIX datagram socket standing in for $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield path, s
    s.close()


# -- footage -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def footage(request: pytest.FixtureRequest, tmp_path_factory) -> dict[str, Path]:
    """``{name: Path}`` for every clip in :mod:`tests.rtsp.footage` (made once, then cached in
    ``.pytest_cache``, or per run with ``-p no:cacheprovider``). Skips when ffmpeg is missing."""
    name = f"duskwatch-footage-{FOOTAGE_VERSION}"
    pytest_cache = getattr(request.config, "cache", None)
    cache = Path(pytest_cache.mkdir(name) if pytest_cache else tmp_path_factory.mktemp(name))
    try:
        return ensure_footage(cache)
    except FootageError as exc:
        pytest.skip(str(exc))


# -- RTSP server -------------------------------------------------------------------------------
def start_again(start, timeout: float):
    """Call ``start(timeout=...)`` until it succeeds: after a kill the port can be briefly
    unavailable. Raises the last RuntimeError once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return start(timeout=max(1.0, deadline - time.monotonic()))
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class RtspServer:
    """A running ``tests/rtsp/server.py``; every method is safe to call in any state.

    ``mounts`` maps mount name to a clip name (``h264``, ``h265``, ``mono``, ``odd``,
    ``reschange``), a media file path, or a ``( gst-launch ... pay0 ... )`` description.
    """

    mounts: dict[str, str]
    log_dir: Path
    user: str | None = None
    password: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0

    # URLs
    def url(self, mount: str, *, user: str | None = None, password: str | None = None) -> str:
        """``rtsp://[user:password@]127.0.0.1:PORT/mount``; credentials only when given."""
        cred = ""
        if user is not None:
            cred = urllib.parse.quote(user, safe="")
            if password is not None:
                cred += ":" + urllib.parse.quote(password, safe="")
            cred += "@"
        return f"rtsp://{cred}{self.host}:{self.port}/{mount}"

    def auth_url(self, mount: str) -> str:
        """The URL with the server's own (correct) credentials."""
        return self.url(mount, user=self.user, password=self.password)

    # life cycle
    def start(self, timeout: float = 30.0) -> "RtspServer":
        """Start (again) on the same port; wait until it prints READY."""
        if self.running:
            return self
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--address", self.host, "--port", str(self.port)]
        for name, spec in self.mounts.items():
            cmd += ["--mount", f"{name}={spec}"]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""]
        self.starts += 1
        log = open(self.log_dir / f"rtsp-server-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.port = _wait_ready(self.proc, timeout, self.log_dir / f"rtsp-server-{self.starts}.log")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (connections drop without an RTSP TEARDOWN)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen process must be able to die
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def restart(self, timeout: float = 30.0) -> "RtspServer":
        """Kill if running, then start on the same port."""
        self.kill()
        return start_again(self.start, timeout)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, no data flows."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def _wait_ready(proc: subprocess.Popen, timeout: float, log: Path) -> int:
    """Read ``READY port=N`` from the server's stdout; raise with its log when it does not come."""
    found: list[int] = []

    def reader() -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("READY port="):
                found.append(int(line.split("=", 1)[1]))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if found:
        return found[0]
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"RTSP server did not print READY within {timeout} s: {text}")


@pytest.fixture
def rtsp_server(footage: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Factory for real RTSP servers; every server is stopped when the test ends.

    ``rtsp_server(mounts, *, user=None, password=None, port=0) -> RtspServer`` where ``mounts``
    maps a mount name to a clip name (``h264``, ``h265``, ``mono``, ``odd``, ``reschange``; see
    :mod:`tests.rtsp.footage`), a media file, or a ``( gst-launch ... )`` description. With
    ``user``/``password`` every mount needs Basic credentials (``srv.auth_url(mount)``).

    The returned server is started and listening. Fault helpers: ``kill()`` (SIGKILL),
    ``restart()`` (same port), ``freeze()``/``thaw()`` (SIGSTOP/SIGCONT), ``stop()``.
    Skips with the apt packages to install when GStreamer's RTSP server is missing.
    """
    require_rtsp_server()
    servers: list[RtspServer] = []

    def make(mounts: dict[str, str], *, user: str | None = None, password: str | None = None,
             port: int = 0) -> RtspServer:
        resolved = {name: str(footage[spec]) if spec in CLIP_NAMES else spec
                    for name, spec in mounts.items()}
        srv = RtspServer(resolved, tmp_path_factory.mktemp("rtsp"), user, password, port=port)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        srv.stop()


# -- Prometheus --------------------------------------------------------------------------------
@dataclass
class Prometheus:
    """A running Prometheus scraping ``targets`` every ``scrape_interval``; query it over HTTP."""

    proc: subprocess.Popen
    url: str
    log: Path

    def api(self, path: str, **params: str) -> dict:
        """GET ``/api/v1/<path>``; return the ``data`` member (raise on an API error)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query: ``[{"metric": {labels}, "value": [ts, "str"]}, ...]``."""
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` (e.g. ``sum(duskwatch_frames_total)``), or None if empty.
        Raises when the result has several series."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise RuntimeError(f"{expr} has {len(result)} series; aggregate it (sum/max)")
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, predicate: Callable[[float], bool] = lambda v: True,
                 timeout: float = 30.0) -> float:
        """Poll until ``expr``'s single value exists and ``predicate(value)``; return it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and predicate(last):
                return last
            time.sleep(0.5)
        raise TimeoutError(f"prometheus: {expr} = {last} did not satisfy the condition within "
                           f"{timeout} s; targets: {self.targets()}")

    def targets(self) -> list[dict]:
        """Active scrape targets: ``[{"scrapeUrl", "health", "lastError", ...}]``."""
        return self.api("targets")["activeTargets"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


_PROM_CONFIG = """global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {job}
    scrape_interval: {interval}
    scrape_timeout: {interval}
    metrics_path: {path}
{auth}    static_configs:
      - targets: {targets}
"""


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    """Factory for a real Prometheus (Debian's ``/usr/bin/prometheus``) on a free loopback port.

    ``prometheus(targets, *, job="duskwatch", interval="1s", metrics_path="/metrics",
    timeout=30) -> Prometheus``: ``targets`` is a list of ``"host:port"`` to scrape every
    ``interval``; ``bearer_token`` makes it authenticate as deploy/prometheus/prometheus.yml
    does (a token file beside its config). Returned once Prometheus answers ``/-/ready``. API
    of the returned object:

    - ``prom.url``: ``http://127.0.0.1:PORT``
    - ``prom.query(expr)``: instant-vector result list (``[{"metric": {...}, "value": [t, "v"]}]``)
    - ``prom.value(expr)``: one float (or None when there is no series yet)
    - ``prom.wait_for(expr, predicate, timeout=30)``: poll until the value satisfies predicate
    - ``prom.targets()``: scrape target health (``health``, ``lastError``)
    - ``prom.stop()``: stop early (it is stopped at teardown anyway)

    Example::

        prom = prometheus([f"127.0.0.1:{http_port}"])
        n = prom.wait_for('sum(duskwatch_frames_total{camera="gate"})', lambda v: v > 10)
    """
    require_prometheus()
    started: list[Prometheus] = []

    def make(targets: list[str], *, job: str = "duskwatch", interval: str = "1s",
             metrics_path: str = "/metrics", timeout: float = 30.0,
             bearer_token: str | None = None) -> Prometheus:
        work = tmp_path_factory.mktemp("prometheus")
        cfg = work / "prometheus.yml"
        auth = ""
        if bearer_token is not None:  # as deploy/prometheus/prometheus.yml does it
            (work / "duskwatch.token").write_text(bearer_token + "\n")
            auth = ("    authorization:\n      type: Bearer\n"
                    "      credentials_file: duskwatch.token\n")
        cfg.write_text(_PROM_CONFIG.format(interval=interval, job=job, path=metrics_path,
                                           targets=json.dumps(list(targets)), auth=auth))
        port = free_port()
        log = work / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)
        started.append(prom)
        _wait_prometheus_ready(prom, timeout)
        return prom

    yield make
    for prom in started:
        prom.stop()


def _wait_prometheus_ready(prom: Prometheus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prom.proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    prom.stop()
    raise RuntimeError(f"prometheus did not become ready: {prom.log.read_text()[-2000:]}")


# -- small network fault helpers ---------------------------------------------------------------
@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()


@pytest.fixture
def garbage_server():
    """``(host, port)`` of a TCP server that answers every connection with junk and closes.

    It reads what the client sends first, so clients see a reply to their request that is not
    RTSP/HTTP."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    conn.recv(4096)
                    conn.sendall(b"\x00\xffGARBAGE not a protocol \x13\x37\n" * 8)
                except OSError:
                    pass

    t = threading.Thread(target=serve, name="garbage-server", daemon=True)
    t.start()
    yield listener.getsockname()
    done.set()
    t.join(timeout=5)
    listener.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"python {sys.version.split()[0]}; rtsp server: {SYSTEM_PYTHON} {SERVER_SCRIPT.name}"]


# -- MQTT broker and webhook receiver ------------------------------------------------------------
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


def require_mosquitto() -> None:
    if not (os.access(MOSQUITTO, os.X_OK) and os.access(MOSQUITTO_PASSWD, os.X_OK)):
        pytest.skip("needs Debian's mosquitto package (apt install mosquitto); run `make sysdeps`")


@dataclass
class Mosquitto:
    """A running Debian ``mosquitto`` on a loopback port; kill and restart it on the same port.

    Persistence is on (saved on every change), so a client's persistent session and the QoS 1
    messages queued for it survive a SIGKILL, as on a real broker with a disk."""

    work: Path
    port: int
    user: str | None = None
    password: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0

    def start(self, timeout: float = 15.0) -> "Mosquitto":
        if self.running:
            return self
        self.starts += 1
        log = open(self.work / f"mosquitto-{self.starts}.log", "wb")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self._config())], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        text = (self.work / f"mosquitto-{self.starts}.log").read_text(errors="replace")[-2000:]
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s: {text}")

    def _config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {self.work}/", "autosave_interval 1",
                 "autosave_on_changes true", "log_dest stdout", "log_type error",
                 "log_type warning", "log_type notice"]
        if os.geteuid() == 0:  # started as root, mosquitto would switch to its own user, who
            lines.append("user root")  # cannot read this test's private folder
        if self.user is None:
            lines.append("allow_anonymous true")
        else:
            pwfile = self.work / "passwd"
            if not pwfile.exists():
                pwfile.write_text("")
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), self.user, self.password],
                               check=True, capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        cfg = self.work / "mosquitto.conf"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: clients see their connections drop."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, timeout: float = 15.0) -> "Mosquitto":
        self.kill()
        return start_again(self.start, timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory):
    """Factory for a real MQTT broker (Debian's ``mosquitto``) on a free loopback port.

    ``mosquitto(user=None, password=None) -> Mosquitto``: started and listening; with ``user``
    and ``password`` anonymous clients are refused. ``broker.port``, ``broker.kill()``
    (SIGKILL), ``broker.restart()`` (same port, persistent sessions kept), ``broker.stop()``.
    Skips with the package to install when mosquitto is missing."""
    require_mosquitto()
    brokers: list[Mosquitto] = []

    def make(user: str | None = None, password: str | None = None) -> Mosquitto:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), free_port(), user, password)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.stop()


@dataclass(frozen=True)
class Post:
    """One POST as the webhook receiver saw it (``at``: its monotonic clock on arrival)."""

    at: float
    connection: int
    status: int
    headers: dict
    body: dict


@dataclass
class WebhookReceiver:
    """A local HTTP/1.1 server (keep-alive) recording every POST.

    ``received``: ``(headers, json body)`` of each POST answered 200; ``posts``: every POST
    (:class:`Post`, whatever the answer); ``connections``: TCP connections accepted. Answers: ``answers`` first (a list of ``(status, headers)``, consumed
    in order), then ``status``."""

    url: str
    received: list = field(default_factory=list)
    status: int = 200
    answers: list = field(default_factory=list)
    posts: list = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: bytes, headers: dict, connection: int) -> tuple[int, dict]:
        with self.lock:
            status, extra = self.answers.pop(0) if self.answers else (self.status, {})
            event = json.loads(body)
            self.posts.append(Post(time.monotonic(), connection, status, headers, event))
            if status == 200:
                self.received.append((headers, event))
            return status, extra

    def accepted(self) -> int:
        with self.lock:
            self.connections += 1
            return self.connections


def start_webhook_receiver(tls=None):
    """A :class:`WebhookReceiver` served on a loopback port by a thread: HTTP, or HTTPS with
    ``tls`` (an ``ssl.SSLContext`` holding the server's certificate). Returns ``(hook, stop)``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hook = WebhookReceiver("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open unless the client closes it

        def setup(self):
            super().setup()
            self.connection_number = hook.accepted()

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, extra = hook.answer(body, dict(self.headers), self.connection_number)
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    hook.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hook"
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return hook, stop


@pytest.fixture
def webhook_receiver():
    """A real HTTP receiver on loopback (:class:`WebhookReceiver`): ``hook.url``,
    ``hook.received``, ``hook.posts``, ``hook.connections``, ``hook.status`` (the answer, 200 by
    default) and ``hook.answers`` (scripted answers before that)."""
    hook, stop = start_webhook_receiver()
    yield hook
    stop()


# -- Triton (tests/triton_server.py) --------------------------------------------------------------
COCO_INT8 = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "yolo11n_coco_int8_640.onnx"


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory) -> Path:
    """A CPU model repository: ``yolo`` (random-weight YOLO11n, 160 px, dynamic batch: plumbing),
    ``yolo_fp16`` (the same with fp16 outputs), ``enhancer`` (a tiny K=2 denoiser) and, when the
    shared weights are here, ``coco`` (the real int8 YOLO11n: what is detected) and
    ``coco_top1000`` (the same sending back only its 1000 best anchors)."""
    from tests.triton_server import triton_missing

    if (why := triton_missing()) is not None:
        pytest.skip(why)
    from export.denoiser import export as dx
    from export.triton_repo import RepoOptions, write_repository
    from tests.denoiser_fixtures import tiny_checkpoint
    from tests.yolo_exports import exported

    repo = tmp_path_factory.mktemp("triton") / "repo"
    work = repo.parent
    enh = dx.export_denoiser(tiny_checkpoint(work / "k2.pt"), 2, "onnx", work / "enh.onnx")
    yolo = exported("onnx", imgsz=160, batch=8, dynamic=True)
    cpu = RepoOptions(server="cpu", threads=1)
    models = {"yolo": ("detector", yolo), "enhancer": ("enhancer", enh)}
    write_repository(repo, models, cpu)
    if COCO_INT8.is_file():
        write_repository(repo, {"coco": ("detector", COCO_INT8)}, cpu)
        write_repository(repo, {"coco_top1000": ("detector", COCO_INT8)},
                         RepoOptions(server="cpu", threads=1, candidates=1000))
    write_repository(repo, {"yolo_fp16": ("detector", yolo)},
                     RepoOptions(server="cpu", threads=1, outputs="fp16"))
    return repo


@pytest.fixture(scope="session")
def triton_server(triton_repo: Path, tmp_path_factory):
    """The bundled tritonserver on ``triton_repo`` for the whole session (nobody breaks it)."""
    from tests.triton_server import TritonServer

    srv = TritonServer(triton_repo, tmp_path_factory.mktemp("triton-run")).start()
    yield srv
    srv.stop()
