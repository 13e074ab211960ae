"""The review page at ``/`` in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium; nothing is downloaded), against the real daemon: an RTSP
server streaming ``video/vtest.avi``, the real COCO YOLO11n, a line and a zone.

The page loads with the camera; an event that happens while it is open appears; its clip plays
in the <video> element (currentTime advances, over range requests); a filter narrows the list;
with auth on, a request without credentials is refused and the page says how to log in.
Bounded in seconds; no timing assertions."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.conftest import free_port
from tests.test_events_e2e import coco_detector, start_service, wait_for  # noqa: F401 (fixture)

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [pytest.mark.timeout(300)]


def _missing() -> str | None:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        return ("needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
                "/usr/bin/chromedriver): `make sysdeps` installs them")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (the project's test extra: pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile, driven through chromedriver."""
    if (why := _missing()) is not None:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=DriverService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def event_ids_on_page(driver) -> list[str]:
    return js(driver, "return [...document.querySelectorAll('#events .event')]"
                      ".map(e => e.dataset.id)")


@pytest.mark.rtsp
def test_page_shows_the_camera_new_events_plays_clips_and_filters(
        browser, rtsp_server, footage, coco_detector, tmp_path):  # noqa: F811
    srv = rtsp_server({"street": "h264"})  # vtest.avi as H.264, 640x360, 15 fps
    cfg = {
        "cameras": [{
            "name": "street", "url": srv.url("street"), "fps": 5, "enhance": "never",
            "tracking": {"classes": ["person"], "min_score": 0.3, "min_age_frames": 3,
                         "lost_track_s": 1.5},
            "lines": [{"name": "middle", "points": [[0.05, 0.5], [0.95, 0.5]]}],
            "zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
        }],
        "engines": {"detector": str(coco_detector), "device": "cpu", "conf": 0.25},
        "scheduler": {"max_batch": 1},
        "sinks": [],
        "events": {"evidence": {"dir": str(tmp_path / "evidence"), "pre_s": 1, "post_s": 1,
                                "max_clip_s": 4}},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
    }
    svc = start_service(cfg)
    base = "http://%s:%d" % svc.http.address
    try:
        browser.get(base + "/")
        # the camera: its live snapshot (a decoded image), its state, the zone and line drawn
        assert wait_for(lambda: js(browser, """
            const img = document.querySelector('[data-camera="street"] img');
            return img && img.complete && img.naturalWidth === 640;"""), 60)
        # (read and clicked through JS: the page re-renders its lists on every poll)
        facts = js(browser, "return document.querySelector('[data-camera=\"street\"] .facts')"
                            ".textContent")
        assert "street" in facts and "streaming" in facts and "daylight" in facts
        assert js(browser, "return document.querySelectorAll("
                           "'[data-camera=\"street\"] svg polygon').length") == 1
        assert js(browser, "return document.querySelectorAll("
                           "'[data-camera=\"street\"] svg polyline').length") == 1
        # an event that happens while the page is open appears on it
        at_load = {e["id"] for e in svc.view.events_list(limit=10_000)}
        assert wait_for(lambda: set(event_ids_on_page(browser)) - at_load, 90), \
            f"no new event on the page; daemon has {len(svc.view.events_list(limit=10_000))}"
        # open an event whose clip is written; its video plays (currentTime advances)
        assert wait_for(lambda: _clip_ready(svc), 60)
        event = _clip_ready(svc)
        browser.find_element("id", "filters").find_element("name", "type") \
            .send_keys(event["type"])
        assert wait_for(lambda: event["id"] in event_ids_on_page(browser), 20)
        js(browser, "document.querySelector(`[data-id=\"${arguments[0]}\"]`).click()", event["id"])
        assert wait_for(lambda: js(browser, "return document.getElementById('detail').open"), 10)
        assert wait_for(lambda: js(browser, """
            const v = document.getElementById('detail-clip');
            if (v.paused) v.play().catch(() => {});
            return v.currentTime > 0.5;"""), 30), js(
            browser, "const v = document.getElementById('detail-clip');"
                     "return [v.src, v.readyState, v.networkState, v.error && v.error.message]")
        assert js(browser, "return document.getElementById('detail-snapshot').naturalWidth") > 0
        assert js(browser, "return document.getElementById('picture-toggle').hidden") is True
        # next: the next older event of the list opens in the same view
        if not js(browser, "return document.getElementById('next').disabled"):
            js(browser, "document.getElementById('next').click()")
            assert wait_for(lambda: js(browser, "return state.openId") != event["id"], 10)
        js(browser, "document.getElementById('detail').close()")
        # a filter narrows the list: only that type is listed, fewer than all
        shown = _listed_types(browser)
        assert shown and set(shown) == {event["type"]}
        everything = json.loads(_get(base + "/events?offset=0&limit=1"))["total"]
        assert json.loads(_get(base + f"/events?type={event['type']}&offset=0&limit=1"))[
            "total"] < everything
        # a night event whose record lists two pictures: the toggle shows the raw one
        night = _night_record(svc, event, tmp_path)
        js(browser, "const f = document.querySelector('#filters [name=type]');"
                    "f.value = ''; f.dispatchEvent(new Event('input'))")
        assert wait_for(lambda: night["id"] in event_ids_on_page(browser), 20)
        js(browser, "document.querySelector(`[data-id=\"${arguments[0]}\"]`).click()", night["id"])
        assert wait_for(lambda: js(
            browser, "return !document.getElementById('picture-toggle').hidden"), 10)
        js(browser, "document.querySelector('#picture-toggle [data-picture=raw]').click()")
        assert wait_for(lambda: js(browser, """
            const img = document.getElementById('detail-snapshot');
            return img.src.endsWith('?picture=raw') && img.complete && img.naturalWidth === 64;"""),
            10)
        js(browser, "document.getElementById('detail').close()")
        # an event whose snapshot is not written (the writer behind, or its job dropped): the
        # list says so instead of a broken image
        unwritten = dict(event, id="0000000000000bad", epoch=event["epoch"] + 0.002,
                         snapshot_url="/events/0000000000000bad/snapshot.jpg", clip_url=None,
                         snapshot=str(tmp_path / "never-written.jpg"), clip=None)
        svc.events.recent.add(unwritten)
        assert _status(svc, unwritten["snapshot_url"]) == 404
        row = f'#events [data-id="{unwritten["id"]}"]'
        assert wait_for(lambda: js(browser, f"""
            const r = document.querySelector('{row}');
            return r && !r.querySelector('img') && r.querySelector('.thumb-missing')?.textContent;"""),
            20) == "no picture"
        # the zone's name is drawn low in the zone, clear of the snapshot's caption at the top
        label_y, height = js(browser, """
            const svg = document.querySelector('[data-camera="street"] svg');
            return [Number(svg.querySelector('text').getAttribute('y')), svg.viewBox.baseVal.height];""")
        assert label_y > 0.5 * height
    finally:
        svc.stop()


def _night_record(svc, event: dict, tmp_path) -> dict:
    """A record as the evidence writer makes for a night event (``pictures``, and the raw
    snapshot's path in ``snapshot_raw``), its raw picture a 64-pixel-wide JPEG beside the
    enhanced one, added to the recent events the service serves."""
    import cv2
    import numpy as np
    from pathlib import Path

    raw = Path(event["snapshot"]).with_name("0000000000000c0d-raw.jpg")
    cv2.imwrite(str(raw), np.full((48, 64, 3), 40, np.uint8))
    night = dict(event, id="0000000000000c0d", epoch=event["epoch"] + 0.001,
                 snapshot_url="/events/0000000000000c0d/snapshot.jpg",
                 clip_url="/events/0000000000000c0d/clip.mp4",
                 snapshot_raw=str(raw), pictures=["enhanced", "raw"])
    svc.events.recent.add(night)
    return night


def _clip_ready(svc) -> dict | None:
    for e in svc.view.events_list(limit=10_000):
        if e.get("clip_url") and _status(svc, e["clip_url"]) == 200:
            return e
    return None


def _listed_types(driver) -> list[str]:
    return js(driver, "return [...document.querySelectorAll('#events .event .what')]"
                      ".map(e => e.textContent.split(' ')[0])")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def _status(svc, path: str) -> int:
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (*svc.http.address, path), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_with_auth_the_page_is_refused_without_credentials(browser, monkeypatch):
    from daemon.service.service import Service
    from daemon.service.systemd import Notifier
    from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, make_config

    monkeypatch.setenv("DW_PAGE_PW", "page-pass-123")
    cfg = make_config(http={"listen": "127.0.0.1:0",
                            "auth": {"basic_user": "op", "basic_password_env": "DW_PAGE_PW"}})
    sources = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}))
    svc.start()
    host, port = svc.http.address
    try:
        # /healthz is the one open path: from there the browser asks for the page and an
        # endpoint without credentials (a navigation would stop at the browser's login prompt)
        browser.get(f"http://{host}:{port}/healthz")
        refused = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            Promise.all(['/', '/cameras', '/static/app.js'].map(p =>
                fetch(p, {headers: {Accept: 'text/html'}, credentials: 'omit'})
                  .then(async r => [r.status, r.headers.get('WWW-Authenticate'), await r.text()])))
              .then(done, e => done(String(e)));""")
        for status, challenge, body in refused:
            assert status == 401 and challenge.startswith("Basic")
            assert "authentication required" in body and "basic-auth user and password" in body
            assert "camera" not in body
        # with the credentials the same browser gets the page, and its requests are let in
        browser.get(f"http://op:page-pass-123@{host}:{port}/")
        assert wait_for(lambda: js(browser, "return document.querySelectorAll("
                                            "'#cameras .camera').length") == 2, 20)
        assert js(browser, "return document.getElementById('login').hidden") is True
        assert "pw-a-secret" not in browser.page_source
    finally:
        svc.stop()
