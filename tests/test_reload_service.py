"""The service applying a reload plan (issue 21): an unchanged config changes nothing and says
so, ``run --listen`` survives the reload's re-validation, and readers never see a half-applied
reload. Fakes only at the camera and engine seams."""

from __future__ import annotations

import logging
import threading

import yaml

from daemon.config import load_config
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, camera_dicts as cams


def make_service(tmp_path, data, cfg=None, **kw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    sources: dict[str, list] = {}
    built = []

    def factory(cam, events):
        sources.setdefault(cam.name, []).append(FakeSource(cam, events))
        return sources[cam.name][-1]

    def sink_factory(cfg, i):
        from daemon.pipeline.sinks import make_sink
        built.append(cfg)
        return make_sink(cfg, i)

    svc = Service(cfg or load_config(path), source_factory=factory, config_path=path,
                  detector_factory=lambda e, b: FakeDetector(), sink_factory=sink_factory,
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}),
                  serve_http=False, **kw)
    return svc, path, sources, built


def base(tmp_path, names=("a",), **extra):
    data = {"cameras": cams(*names), "engines": {"detector": "/nonexistent/det.onnx",
                                                  "check_files": False},
            "http": {"listen": "127.0.0.1:0"},
            "sinks": [{"type": "jsonl", "path": str(tmp_path / "r.jsonl")}],
            "events": {"evidence": {"snapshots": False, "clips": False}}}
    data.update(extra)
    return data


def test_a_sighup_with_an_unchanged_config_changes_nothing_and_says_so(tmp_path, caplog):
    svc, path, sources, built = make_service(tmp_path, base(tmp_path))
    svc.start()
    try:
        before_cfg, before_sinks = svc.cfg, svc.pipeline.sinks
        with caplog.at_level(logging.INFO, logger="duskwatch.service"):
            assert svc.reload_from_file() is True
        assert "config is unchanged; nothing to do" in caplog.text
        assert svc.cfg is before_cfg and svc.pipeline.sinks is before_sinks
        assert len(built) == 1 and len(sources["a"]) == 1 and sources["a"][0].stopped == 0
        assert "reload: done" not in caplog.text
    finally:
        svc.stop()


def test_the_reload_keeps_run_listen(tmp_path, caplog):
    """``run --listen`` overrides http.listen; the reload's re-validation must keep it, or
    every SIGHUP warns that 'http' changed."""
    from daemon.service.validation import validate

    data = base(tmp_path, http={"listen": "127.0.0.1:0"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    override = "127.0.0.1:1"
    cfg = validate(path, listen=override, open_engines=False).cfg
    svc, path, sources, built = make_service(tmp_path, data, cfg, listen=override)
    svc.start()
    try:
        with caplog.at_level(logging.INFO, logger="duskwatch.service"):
            assert svc.reload_from_file() is True
        assert "'http' changed" not in caplog.text
        assert "config is unchanged" in caplog.text
        assert svc.cfg.http.listen == override
    finally:
        svc.stop()


def test_readers_never_see_a_half_applied_reload(tmp_path):
    """A reload that adds a camera and changes another's fps: every /cameras answer read
    meanwhile is wholly the old config or wholly the new one."""
    old = base(tmp_path, names=[("a", {"fps": 5})])
    new = base(tmp_path, names=["b", ("a", {"fps": 10})])  # b first: added before a changes
    svc, path, sources, _ = make_service(tmp_path, old)
    svc.start()
    seen: set[tuple] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            cameras = svc.view.cameras_status()["cameras"]
            seen.add(tuple(sorted((n, c["fps_limit"]) for n, c in cameras.items())))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(30):
            path.write_text(yaml.safe_dump(new if i % 2 == 0 else old))
            assert svc.reload_from_file() is True
    finally:
        stop.set()
        for t in readers:
            t.join(10)
        svc.stop()
    assert seen <= {(("a", 5.0),), (("a", 10.0), ("b", 10.0))}, seen
    assert len(seen) == 2
