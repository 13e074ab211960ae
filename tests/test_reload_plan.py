"""The reload as a plan (issue 21): ``plan(old, new)`` unit-tested without threads (the service
applying it: tests/test_reload_service.py)."""

from __future__ import annotations

from daemon.service import reload_plan as rp
from tests.daemon_fakes import camera_dicts as cams, make_config


def kinds(ops):
    return [(type(op).__name__, getattr(op, "name", None) or getattr(getattr(op, "cam", None),
                                                                        "name", None))
            for op in ops]


# -- the plan, pure -----------------------------------------------------------------------------
def test_an_unchanged_config_is_an_empty_plan():
    assert rp.plan(make_config(), make_config()) == []


def test_cameras_removed_added_reconnected_and_updated_in_the_new_order():
    old = make_config(cameras=()).model_copy(update={"cameras": make_config(
        cameras=("gone", "same", "moved", "faster")).cameras})
    new_cams = {c.name: c for c in old.cameras}
    moved = new_cams["moved"].model_copy(update={"transport": "udp"})
    faster = new_cams["faster"].model_copy(update={"fps": 2.0})
    fresh = make_config(cameras=("fresh",)).cameras[0]
    new = old.model_copy(update={"cameras": [fresh, new_cams["same"], moved, faster]})
    ops = rp.plan(old, new)
    assert kinds(ops) == [("RemoveCamera", "gone"), ("AddCamera", "fresh"),
                          ("ReconnectCamera", "moved"), ("UpdateCamera", "faster"),
                          ("Publish", None)]
    assert ops[3].events  # fps feeds the tracker: its events state is reconfigured
    assert ops[-1].cfg is new


def test_a_lowlight_change_updates_every_camera_in_place():
    old = make_config()
    new = old.model_copy(update={"lowlight": old.lowlight.model_copy(update={"enhance_below": 40.0})})
    assert kinds(rp.plan(old, new)) == [("UpdateCamera", "a"), ("UpdateCamera", "b"),
                                        ("Publish", None)]
    assert not any(op.events for op in rp.plan(old, new)[:2])


def test_sections_that_need_a_restart_are_named_and_the_rest_applies():
    old = make_config()
    listen = make_config(listen="127.0.0.1:9999")
    assert kinds(rp.plan(old, listen)) == [("RestartNeeded", None), ("Publish", None)]
    assert rp.plan(old, listen)[0].section == "http"
    snap = old.model_copy(update={"http": old.http.model_copy(update={"snapshot_interval_s": 2.0})})
    assert [type(op) for op in rp.plan(old, snap)] == [rp.SetSnapshotInterval, rp.Publish]
    eng = old.model_copy(update={"engines": old.engines.model_copy(update={"conf": 0.5})})
    assert [op.section for op in rp.plan(old, eng) if isinstance(op, rp.RestartNeeded)] == ["engines"]


def test_settings_read_from_the_published_config_only_publish():
    old = make_config()
    new = old.model_copy(update={"supervision": old.supervision.model_copy(
        update={"heartbeat_timeout_s": old.supervision.heartbeat_timeout_s + 1})})
    assert [type(op) for op in rp.plan(old, new)] == [rp.Publish]


def test_sinks_and_scheduler_changes_are_planned_before_the_cameras():
    old = make_config()
    new = make_config(sinks=[{"type": "jsonl", "path": "/tmp/x.jsonl"}],
                      scheduler={"max_batch": 2})
    names = [type(op).__name__ for op in rp.plan(old, new)]
    assert names == ["SetScheduler", "ReplaceFrameSinks", "Publish"]
