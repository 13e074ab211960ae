"""Run `duskwatch demo` and screenshot the review page at / in headless Chromium.

    python tests/bench/review_page_screenshot.py docs/img/review_page.jpg \
        [--event-out docs/img/review_event.jpg] [--phone docs/img/review_phone.jpg] \
        [--cache-dir /tmp/democache] [--seconds 90]

Starts the demo (real detector from shared/data, its day-to-night footage), lets it run until it
has raised events with clips, opens the page in Debian's chromium (Selenium, chromedriver), opens
the newest event that has a clip (snapshot large, clip playing) for a second picture, and saves
the page at desktop size (and at phone size with --phone). Prints what the page listed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

BASE = "http://127.0.0.1:9872"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--mute-audio", "--hide-scrollbars")


def events() -> list[dict]:
    try:
        with urllib.request.urlopen(BASE + "/events?limit=200", timeout=5) as r:
            return json.loads(r.read())["events"]
    except OSError:
        return []


def clip_ready(ev: dict) -> bool:
    try:
        with urllib.request.urlopen(BASE + ev["clip_url"], timeout=5) as r:
            return r.status == 200
    except (OSError, TypeError):
        return False


def browser(width: int, height: int, mobile: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in FLAGS + (f"--window-size={width},{height}",
                         f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(flag)
    if mobile:
        opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {
            "width": width, "height": height, "pixelRatio": 2.0}})
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def save(png: bytes, out: str, shrink: int) -> None:
    """The screenshot at CSS pixel size (a phone's is taken at 2 device pixels per CSS pixel),
    as JPEG (q85) or PNG by ``out``'s suffix."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if shrink > 1:
        img = cv2.resize(img, (img.shape[1] // shrink, img.shape[0] // shrink),
                         interpolation=cv2.INTER_AREA)
    cv2.imwrite(out, img, [int(cv2.IMWRITE_JPEG_QUALITY), 85])


def shoot(out: str, width: int, height: int, mobile: bool, open_event: bool) -> None:
    d = browser(width, height, mobile)
    try:
        d.get(BASE + "/")
        time.sleep(6)  # two polls: snapshot loaded, processed frames/s measured
        if open_event:  # list the type of an event whose clip is written, open the first such
            ready = [e for e in events() if clip_ready(e)]
            d.execute_script("const f = document.querySelector('#filters [name=type]');"
                             "f.value = arguments[0]; f.dispatchEvent(new Event('input'))",
                             ready[0]["type"])
            time.sleep(3)
            d.execute_script("const ready = new Set(arguments[0]);"
                             "openEvent(state.events.findIndex(e => ready.has(e.id)))",
                             [e["id"] for e in ready])
            time.sleep(3)  # the clip plays a little
        save(d.get_screenshot_as_png(), out, 2 if mobile else 1)
        print(out, d.execute_script("return document.getElementById('page').textContent"),
              file=sys.stderr)
    finally:
        d.quit()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--event-out", help="a second picture, with the newest clip's event open")
    p.add_argument("--phone", help="also a phone-sized picture (390x844 CSS px)")
    p.add_argument("--cache-dir", default="/tmp/democache")
    p.add_argument("--seconds", type=float, default=90.0, help="longest wait for events")
    args = p.parse_args()
    demo = subprocess.Popen([sys.executable, "-m", "daemon.cli", "demo", "--cache-dir",
                             args.cache_dir], env=dict(os.environ))
    try:
        end = time.monotonic() + 600 + args.seconds
        with_clip = None
        while time.monotonic() < end and demo.poll() is None:
            found = events()
            with_clip = next((e for e in found[:20] if clip_ready(e)), None)
            if with_clip and len(found) >= 8:
                break
            time.sleep(2)
        if with_clip is None:
            print("no event with a clip in time", file=sys.stderr)
            return 1
        shoot(args.out, 1280, 900, False, False)
        if args.event_out:
            shoot(args.event_out, 1280, 900, False, True)
        if args.phone:
            shoot(args.phone, 390, 844, True, False)
        print(json.dumps({"events": len(events()), "opened": with_clip["id"]}))
    finally:
        demo.terminate()
        demo.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
