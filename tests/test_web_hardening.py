"""The uvicorn + Starlette side against what a fuzzing campaign found open on the hand-written
server (issue 18): event files through planted symbolic links, 501 before 401, oversized heads
dropped without a status, HTTP/0.9 answered without a status line. Plus ranges on clips, the
raw picture of night events, /events filters, and a bounded fuzz run.

Real sockets and the real evidence writer; fakes only at the camera and detector seams."""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemon.config import parse_config
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeSource
from tests.wait import wait_for

TOKEN = "web-t0ken-0123456789abcdef"
BASIC_PW = "basic-pw-for-web"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def get(base, path, headers=None, method="GET", timeout=5):
    req = urllib.request.Request(base + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(address, data: bytes, timeout=5.0, shut=False) -> bytes:
    """Send ``data`` on a fresh connection (half-closed after it when ``shut``) and read the
    answer: until the server closes, or for 0.3 s past its last byte (a kept-alive answer)."""
    with socket.create_connection(address, timeout=timeout) as s:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                s.settimeout(0.3)
        except (socket.timeout, OSError):
            pass
        return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A service with auth, evidence on, one fake camera that has raised an event with a snapshot
    and a clip: ``(svc, base, event, evidence dir)``."""
    tmp = tmp_path_factory.mktemp("web")
    os.environ["DW_WEB_TOKEN"], os.environ["DW_WEB_BASIC"] = TOKEN, BASIC_PW
    cfg = parse_config({
        "cameras": [{"name": "gate", "url": "rtsp://u:cam-pw-secret@127.0.0.1:8554/gate",
                     "tracking": {"min_age_frames": 1, "lost_track_s": 0.5},
                     "zones": [{"name": "yard", "points": [[0, 0], [0.5, 0], [0.5, 1]]}]}],
        "engines": {"detector": "/nonexistent/det.onnx", "check_files": False},
        "sinks": [],
        "http": {"listen": "127.0.0.1:0", "request_timeout_s": 1.0, "idle_timeout_s": 2.0,
                 "auth": {"bearer_token_env": "DW_WEB_TOKEN", "basic_user": "op",
                          "basic_password_env": "DW_WEB_BASIC"}},
        "events": {"evidence": {"dir": str(tmp / "evidence"), "pre_s": 0, "post_s": 0.3,
                                "max_clip_s": 2}},
    })
    sources: list[FakeSource] = []

    def factory(cam, events):
        sources.append(FakeSource(cam, events))
        return sources[-1]

    svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: None, notifier=Notifier(environ={}))
    svc.start()
    base = "http://%s:%d" % svc.http.address

    def clip_served():
        sources[0].push(value=200)
        time.sleep(0.05)
        found = svc.view.events_list(type_="appeared")
        return found and get(base, found[0]["clip_url"], AUTH)[0] == 200

    try:
        assert wait_for(clip_served, 30)
        event = svc.view.events_list(type_="appeared")[0]
        assert wait_for(lambda: get(base, event["snapshot_url"], AUTH)[0] == 200, 10)
        yield svc, base, event, tmp / "evidence"
    finally:
        svc.stop()


def test_clip_answers_ranges(site):
    svc, base, event, _ = site
    whole = Path(event["clip"]).read_bytes()
    status, headers, body = get(base, event["clip_url"], AUTH)
    assert status == 200 and body == whole and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "video/mp4"
    status, headers, body = get(base, event["clip_url"], {**AUTH, "Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, _, body = get(base, event["clip_url"], {**AUTH, "Range": "bytes=-10"})
    assert status == 206 and body == whole[-10:]
    assert get(base, event["clip_url"], {**AUTH, "Range": f"bytes={len(whole) + 5}-"})[0] == 416


def test_event_files_never_follow_a_symlink(site, tmp_path):
    svc, base, event, evidence = site
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"not yours")
    snap = Path(event["snapshot"])
    day = snap.parent
    # an older event's name planted as a link (the old server found it by a glob)
    planted = day / "0123456789abcdef.jpg"
    planted.symlink_to("/etc/passwd")
    assert get(base, "/events/0123456789abcdef/snapshot.jpg", AUTH)[0] == 404
    # the event's own snapshot replaced by a link to a file elsewhere
    kept = snap.read_bytes()
    snap.rename(snap.with_suffix(".kept"))
    snap.symlink_to(outside / "secret.jpg")
    try:
        status, _, body = get(base, event["snapshot_url"], AUTH)
        assert status == 404 and b"not yours" not in body
    finally:
        snap.unlink()
        snap.with_suffix(".kept").rename(snap)
    assert get(base, event["snapshot_url"], AUTH)[2] == kept
    # the event's day folder replaced by a link to a folder holding a file of the same name
    (outside / snap.name).write_bytes(b"also not yours")
    day.rename(day.with_name(day.name + ".kept"))
    day.symlink_to(outside, target_is_directory=True)
    try:
        status, _, body = get(base, event["snapshot_url"], AUTH)
        assert status == 404 and b"not yours" not in body
    finally:
        day.unlink()
        day.with_name(day.name + ".kept").rename(day)
    assert get(base, event["snapshot_url"], AUTH)[0] == 200
    # a record that names a file outside the evidence folder (never served, link or not)
    fake = dict(event, id="fedcba9876543210", snapshot="/etc/passwd",
                clip=str(evidence / ".." / "outside.mp4"))
    svc.events.recent.add(fake)
    assert get(base, "/events/fedcba9876543210/snapshot.jpg", AUTH)[0] == 404
    assert get(base, "/events/fedcba9876543210/clip.mp4", AUTH)[0] == 404
    planted.unlink()


def test_raw_picture_is_served_from_the_record_only(site):
    svc, base, event, _ = site
    assert get(base, event["snapshot_url"] + "?picture=raw", AUTH)[0] == 404  # none recorded
    assert get(base, event["snapshot_url"] + "?picture=bogus", AUTH)[0] == 400
    raw_path = Path(event["snapshot"]).with_name(event["id"] + "-raw.jpg")
    raw_path.write_bytes(b"\xff\xd8raw picture")
    night = dict(event, id="00000000000000aa", snapshot_raw=str(raw_path),
                 pictures=["enhanced", "raw"])
    svc.events.recent.add(night)
    status, headers, body = get(base, "/events/00000000000000aa/snapshot.jpg?picture=raw", AUTH)
    assert status == 200 and body == b"\xff\xd8raw picture"
    assert headers["Content-Type"] == "image/jpeg"
    assert get(base, "/events/00000000000000aa/snapshot.jpg", AUTH)[2] == \
        Path(event["snapshot"]).read_bytes()


def test_protected_paths_answer_401_first_then_405(site):
    _, base, _, _ = site
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in ("/metrics", "/cameras", "/", "/events", "/snapshot/gate.jpg", "/nothing"):
            status, headers, body = get(base, path, method=method)
            assert status == 401, (method, path)
            assert b"gate" not in body
        for path in ("/metrics", "/cameras", "/", "/events"):
            assert get(base, path, AUTH, method=method)[0] == 405, (method, path)
        assert get(base, "/healthz", method=method)[0] == 405
    basic = base64.b64encode(f"op:{BASIC_PW}".encode()).decode()
    assert get(base, "/", {"Authorization": f"Basic {basic}"})[0] == 200


def test_oversized_head_gets_431_and_http09_gets_400(site):
    svc, _, _, _ = site
    addr = svc.http.address
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw(addr, big).startswith(b"HTTP/1.1 431 ")
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n"
    assert raw(addr, many).startswith(b"HTTP/1.1 431 ")
    answer = raw(addr, b"GET /healthz\r\n\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    # no WebSocket: an upgrade request is an HTTP request like any other, behind the same auth
    upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw(addr, upgrade).startswith(b"HTTP/1.1 401 ")


def test_events_filters_and_paging(site):
    svc, base, event, _ = site
    status, _, body = get(base, "/events", AUTH)
    plain = json.loads(body)
    assert status == 200 and list(plain) == ["events"]  # the shape without parameters
    everything = plain["events"]
    status, _, body = get(base, "/events?offset=0&limit=1", AUTH)
    page = json.loads(body)
    assert page["total"] == len(everything) and page["events"] == everything[:1]
    status, _, body = get(base, "/events?class=person&type=appeared", AUTH)
    page = json.loads(body)
    assert page["total"] >= 1 and {e["class"] for e in page["events"]} == {"person"}
    assert json.loads(get(base, "/events?class=giraffe", AUTH)[2])["total"] == 0
    t = event["epoch"]
    status, _, body = get(base, f"/events?since={t}&until={t}&type=appeared", AUTH)
    assert event["id"] in [e["id"] for e in json.loads(body)["events"]]
    assert json.loads(get(base, f"/events?until={t - 3600}", AUTH)[2])["total"] == 0
    assert get(base, "/events?since=yesterday", AUTH)[0] == 400
    cams = json.loads(get(base, "/cameras", AUTH)[2])["cameras"]["gate"]
    assert cams["zones"] == [{"name": "yard", "points": [[0, 0], [0.5, 0], [0.5, 1]],
                              "coords": "relative"}]
    assert cams["frames_processed"] >= 1


def _hostile(rng: random.Random) -> tuple[bytes, bool]:
    """One malformed or hostile request, and whether the client half-closes after it."""
    methods = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"TRACE", b"CONNECT", b"BREW",
               b"G\x00T", b"", b"get", b"GET GET"]
    paths = [b"/", b"/metrics", b"/healthz", b"/cameras", b"/events", b"/snapshot/gate.jpg",
             b"/events/0123456789abcdef/snapshot.jpg", b"/events/../../etc/passwd",
             b"/snapshot/..%2f..%2fetc%2fpasswd.jpg", b"/static/../app.py", b"//etc/passwd",
             b"/events?limit=-1&offset=99999999999", b"/events?since=nan", b"*", b"",
             b"/%00", b"/" + b"a" * rng.randint(1, 20000), b"http://evil/x", b"/\r\nX: y",
             b"/events/\xff\xfe/clip.mp4", b"/static/app.js", b"/static/%2e%2e/%2e%2e/app.py"]
    versions = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.1x", b"", b"HTTP/9"]
    headers = [b"Host: x", b"Authorization: Bearer wrong", b"Authorization: Basic !!!",
               b"Authorization: " + b"A" * rng.randint(1, 9000), b"Content-Length: -1",
               b"Content-Length: 5", b"Transfer-Encoding: chunked", b"Range: bytes=0-",
               b"Range: bytes=9-1,5-", b"X: \x00\x01", b"Bad Header", b": empty",
               b"Connection: keep-alive", b"Host: x\r\nHost: y", b"Expect: 100-continue"]
    line = b" ".join(p for p in (rng.choice(methods), rng.choice(paths), rng.choice(versions)) if p)
    head = [line] + [rng.choice(headers) for _ in range(rng.randint(0, 6))]
    sep = rng.choice([b"\r\n", b"\n", b"\r"])
    data = sep.join(head) + sep + sep + rng.choice([b"", b"body", b"0\r\n\r\n", b"\x00" * 64])
    if rng.random() < 0.05:
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 512)))
    if rng.random() < 0.15:
        return data[:rng.randint(0, len(data))], True  # cut short, then the client half-closes
    return data, False


def test_fuzzed_requests_get_a_status_or_a_close_and_never_a_secret(site):
    """3,000 malformed and hostile requests (seeded): each is answered with an HTTP/1.x status
    line or closed; nothing is answered 200 without credentials but /healthz; no 5xx; nothing of
    a camera's password or the token leaks; the server answers normally afterwards."""
    svc, base, _, _ = site
    addr = svc.http.address
    rng = random.Random(18)
    cases = [_hostile(rng) for _ in range(3000)]

    def one(case: tuple[bytes, bool]) -> tuple[bytes, bytes]:
        return case[0], raw(addr, case[0], timeout=5.0, shut=case[1])

    with ThreadPoolExecutor(48) as pool:  # most cases wait on a deadline, not on a CPU
        answers = list(pool.map(one, cases))
    statuses = {}
    for data, answer in answers:
        if not answer:
            continue
        assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (data[:200], answer[:200])
        code = int(answer[9:12])
        statuses[code] = statuses.get(code, 0) + 1
        assert code < 500, (data[:200], answer[:300])
        assert code != 200 or data.split(b" ")[1:2] == [b"/healthz"] or b"/healthz" in data, \
            (data[:200], answer[:300])
        assert b"cam-pw-secret" not in answer and TOKEN.encode() not in answer
        assert b"root:" not in answer
    assert statuses.get(401, 0) > 100 and statuses.get(400, 0) > 100, statuses
    assert get(base, "/healthz")[0] == 200
    assert get(base, "/cameras", AUTH)[0] == 200
    assert wait_for(lambda: svc.http._server.open_connections == 0, 10)


def test_a_reader_that_stops_reading_is_cut_off(site):
    """A client that asks for a clip and never reads: the server's write buffer stays full past
    request_timeout_s and the connection is closed (memory bounded by the transport's buffer)."""
    svc, base, event, _ = site
    clip = Path(event["clip"])
    big = clip.with_name("big.bin")
    big.write_bytes(os.urandom(8 << 20))
    hog = dict(event, id="00000000000000bb", clip=str(big))
    svc.events.recent.add(hog)
    before = svc.metrics.registry.get_sample_value("duskwatch_http_connections_closed_total",
                                                   {"reason": "slow"})
    s = socket.create_connection(svc.http.address)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /events/00000000000000bb/clip.mp4 HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
    try:
        assert wait_for(lambda: svc.metrics.registry.get_sample_value(
            "duskwatch_http_connections_closed_total", {"reason": "slow"}) > before, 15)
        assert _read_to_the_end(s) < 8 << 20  # the socket is closed, the answer cut short
    finally:
        s.close()
        big.unlink()


def _read_to_the_end(s: socket.socket) -> int:
    """Bytes read until the server's close (EOF or reset); raises on a 5 s silence."""
    s.settimeout(5)
    n = 0
    try:
        while chunk := s.recv(1 << 16):
            n += len(chunk)
    except ConnectionResetError:
        pass
    return n


def test_the_server_stops_within_its_deadline_with_clients_attached(tmp_path):
    from tests.daemon_fakes import make_config

    svc = Service(make_config(), source_factory=lambda cam, ev: FakeSource(cam, ev),
                  detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: None, notifier=Notifier(environ={}))
    svc.start()
    idle = [socket.create_connection(svc.http.address) for _ in range(20)]
    reader = threading.Thread(target=lambda: get("http://%s:%d" % svc.http.address, "/metrics"))
    reader.start()
    t0 = time.monotonic()
    svc.stop()
    took = time.monotonic() - t0
    reader.join(5)
    for s in idle:
        s.close()
    assert took < 5.0, took  # systemd's stop deadline (TimeoutStopSec) leaves the daemon 5 s


def test_a_night_events_raw_picture_is_served_beside_the_enhanced_one(tmp_path):
    """With the real evidence writer: a dark camera's event lists both pictures; the snapshot
    endpoint serves the enhanced one, ``?picture=raw`` the decoded frame kept beside it."""
    import numpy as np

    from tests.daemon_fakes import FakeEnhancer

    cfg = parse_config({
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate",
                     "tracking": {"min_age_frames": 1, "lost_track_s": 0.5}}],
        "engines": {"detector": "/nonexistent/det.onnx", "enhancer": "/nonexistent/enh.onnx",
                    "check_files": False},
        "lowlight": {"views": ["clahe"]},
        "sinks": [],
        "http": {"listen": "127.0.0.1:0"},
        "events": {"evidence": {"dir": str(tmp_path / "evidence"), "clips": False}},
    })
    sources: list[FakeSource] = []

    def factory(cam, events):
        sources.append(FakeSource(cam, events))
        return sources[-1]

    svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}))
    svc.start()
    base = "http://%s:%d" % svc.http.address
    try:
        def night_event():
            sources[0].push(np.full((120, 160, 3), 20, np.uint8))
            found = [e for e in svc.view.events_list(type_="appeared") if e.get("snapshot_raw")]
            return found and Path(found[0]["snapshot_raw"]).is_file() and found[0]
        event = wait_for(night_event, 20)
        assert event and event["pictures"] == ["enhanced", "raw"]
        status, _, enhanced = get(base, event["snapshot_url"])
        assert status == 200 and enhanced == Path(event["snapshot"]).read_bytes()
        status, headers, raw_jpeg = get(base, event["snapshot_url"] + "?picture=raw")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert raw_jpeg == Path(event["snapshot_raw"]).read_bytes() and raw_jpeg != enhanced
        # the live snapshot too: the enhanced picture by default, the decoded frame on request
        import cv2

        live = [cv2.imdecode(np.frombuffer(get(base, "/snapshot/gate.jpg" + q)[2], np.uint8), cv2.IMREAD_COLOR)
                for q in ("", "?picture=raw")]
        assert live[0].shape == live[1].shape == (120, 160, 3)
        assert live[0].mean() > live[1].mean() + 80
        assert get(base, "/snapshot/gate.jpg?picture=bogus")[0] == 400
    finally:
        svc.stop()
