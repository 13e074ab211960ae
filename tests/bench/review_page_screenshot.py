"""Run `duskwatch demo` and screenshot the review page at / in headless Chromium.

    python tests/bench/review_page_screenshot.py docs/img/review_page.png [--phone PATH]
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


def shoot(out: str, width: int, height: int, mobile: bool, open_event: str | None) -> None:
    d = browser(width, height, mobile)
    try:
        d.get(BASE + "/")
        time.sleep(6)  # two polls: snapshot loaded, processed frames/s measured
        if open_event:
            d.execute_script(f"document.querySelector('[data-id=\"{open_event}\"]').click()")
            time.sleep(3)  # the clip plays a little
        d.save_screenshot(out)
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
            with_clip = next((e for e in found if clip_ready(e)), None)
            if with_clip and len(found) >= 8:
                break
            time.sleep(2)
        if with_clip is None:
            print("no event with a clip in time", file=sys.stderr)
            return 1
        shoot(args.out, 1280, 900, False, None)
        if args.event_out:
            shoot(args.event_out, 1280, 900, False, with_clip["id"])
        if args.phone:
            shoot(args.phone, 390, 844, True, None)
        print(json.dumps({"events": len(events()), "opened": with_clip["id"]}))
    finally:
        demo.terminate()
        demo.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
