"""Evidence retention on its own timer, in steps bounded in time (issue 21). The clock is
injected: a step's work is counted in clock reads, never timed. The writer encodes clips while
a retention cycle is under way."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from daemon.config import EvidenceConfig
from daemon.events.evidence import ClipClose, ClipFrame, ClipOpen, EvidenceWriter, RingFrame
from daemon.events.retention import Retention, scan, victims
from tests.wait import wait_for


class TickClock:
    """Advances ``tick`` seconds at every read: a step's budget buys a known amount of work."""

    def __init__(self, tick: float = 0.001):
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def tree(root: Path, days: int, per_day: int, size: int = 10) -> list[Path]:
    out = []
    now = time.time()
    for d in range(days):
        folder = root / "gate" / f"2026-11-{d + 1:02d}"
        folder.mkdir(parents=True)
        for i in range(per_day):
            p = folder / f"{i:05d}.jpg"
            p.write_bytes(b"x" * size)
            age = (days - d) * 86400 - i  # older days first, then lower numbers first
            os.utime(p, (now - age, now - age))
            out.append(p)
    (root / "gate" / "2026-11-01" / "open.mp4.part").write_bytes(b"x" * 10_000)
    return out


def test_victims_are_the_too_old_then_the_oldest_over_the_quota():
    files = [(float(t), 10, f"f{t}") for t in range(10)]
    assert victims(files, now=100.0, max_age_s=95.0, max_bytes=10**6) == ["f0", "f1", "f2", "f3", "f4"]
    assert victims(files, now=10.0, max_age_s=1e9, max_bytes=35) == [f"f{t}" for t in range(7)]


def test_a_cycle_over_2000_files_runs_in_bounded_steps_and_keeps_the_quota(tmp_path):
    files = tree(tmp_path, days=4, per_day=500)
    cfg = EvidenceConfig(dir=tmp_path, max_bytes=10 * 1000, max_age_days=30)
    clock = TickClock(0.001)
    r = Retention(lambda: cfg, budget_s=0.02, clock=clock)
    reads = []
    done = False
    while not done:
        before = clock.t
        done = r.step()
        reads.append(round((clock.t - before) / clock.tick))
    # every step stopped at its budget (20 reads of work) plus the reads that set and saw it
    assert max(reads) <= 22 and len(reads) > 2000 // 20
    left = sorted(p for p in tmp_path.rglob("*.jpg"))
    assert left == sorted(files[-1000:])  # the newest 1000 fit the quota; the rest went
    assert (tmp_path / "gate" / "2026-11-01" / "open.mp4.part").exists()
    assert not (tmp_path / "gate" / "2026-11-02").exists()  # emptied day folders go
    assert r.cycles == 1 and r.deleted == 1000


def test_scan_skips_files_being_written(tmp_path):
    tree(tmp_path, days=1, per_day=3)
    assert sorted(Path(p).name for _, _, p in scan(tmp_path)) == ["00000.jpg", "00001.jpg", "00002.jpg"]


def test_clips_are_encoded_while_a_retention_cycle_is_under_way(tmp_path):
    """The writer never runs retention itself: with a retention cycle stuck (its settings
    read blocks), clips are still written."""
    cfg = EvidenceConfig(dir=tmp_path / "ev", max_age_days=1)
    entered, release = threading.Event(), threading.Event()

    def stuck_settings():
        entered.set()
        release.wait(30)
        return cfg

    retention = Retention(stuck_settings, interval_s=3600)
    writer = EvidenceWriter(cfg, retention=retention)
    writer.start()
    try:
        assert entered.wait(10)  # the retention thread is inside its cycle
        img = np.full((48, 64, 3), 90, np.uint8)
        frames = [RingFrame(float(t), img, 1.0, []) for t in range(3)]
        for i in range(3):
            path = tmp_path / "ev" / "gate" / "2026-11-28" / f"c{i}.mp4"
            writer.submit(ClipOpen(f"k{i}", path, frames, 5))
            writer.submit(ClipFrame(f"k{i}", frames[-1]))
            writer.submit(ClipClose(f"k{i}"), force=True)
        assert wait_for(lambda: writer.written == 3, 20), writer.written
    finally:
        release.set()
        writer.close(timeout=10)
