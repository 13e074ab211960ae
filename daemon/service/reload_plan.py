"""A reload as a plan: ``plan(old config, new config) -> operations``, a pure function.

The service's main thread applies the operations in order (:meth:`Service.reload`) and then
publishes the new config in one step, so readers (HTTP threads) see the old config or the new
one, never a mix. An empty plan means the config did not change: nothing is touched.

Order of a plan: warnings for sections that need a restart, the scheduler's settings, the
snapshot interval, frame sinks, event sinks (with the events settings), removed cameras,
then the cameras of the new config in its order (added, reconnected or updated in place), and
last :class:`Publish`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from daemon.config import CameraConfig, Config, EventsConfig, SchedulerConfig, SinkConfig

# Fields of a camera whose change needs a new connection; the others are applied in place.
IN_PLACE_FIELDS = frozenset({"fps", "enhance", "picture", "tracking", "zones", "lines"})
# In-place fields that the camera's events state (tracker, zones, lines) depends on.
EVENT_FIELDS = ("tracking", "zones", "lines", "fps")
# Sections read only at start-up; the rest of http (snapshot_interval_s) applies in place.
RESTART_SECTIONS = ("engines",)
HTTP_IN_PLACE = frozenset({"snapshot_interval_s"})


@dataclass(frozen=True)
class RestartNeeded:
    """``section`` changed, but only a restart applies it (the running one is kept)."""

    section: str


@dataclass(frozen=True)
class SetScheduler:
    cfg: SchedulerConfig


@dataclass(frozen=True)
class SetSnapshotInterval:
    seconds: float


@dataclass(frozen=True)
class ReplaceFrameSinks:
    cfg: Config  # the sinks are built from this config's frame sinks


@dataclass(frozen=True)
class ReplaceEventSinks:
    cfg: Config  # its event sinks and events settings
    events: EventsConfig


@dataclass(frozen=True)
class RemoveCamera:
    name: str


@dataclass(frozen=True)
class AddCamera:
    cam: CameraConfig


@dataclass(frozen=True)
class ReconnectCamera:
    """The camera's connection settings changed: remove it, then add it again."""

    cam: CameraConfig


@dataclass(frozen=True)
class UpdateCamera:
    """fps, enhance mode or the low-light settings changed (and the events settings when
    ``events``): applied to the running camera, keeping its connection and tracks."""

    cam: CameraConfig
    events: bool


@dataclass(frozen=True)
class Publish:
    """The new config becomes the one every reader sees (always the last operation)."""

    cfg: Config


Operation = Union[RestartNeeded, SetScheduler, SetSnapshotInterval, ReplaceFrameSinks,
                  ReplaceEventSinks, RemoveCamera, AddCamera, ReconnectCamera, UpdateCamera,
                  Publish]


def plan(old: Config, new: Config) -> list[Operation]:
    """What turns the running ``old`` config into ``new``; ``[]`` when they are equal."""
    if old == new:
        return []
    ops: list[Operation] = [RestartNeeded(s) for s in RESTART_SECTIONS
                            if getattr(old, s) != getattr(new, s)]
    if _restart_http(old, new):
        ops.append(RestartNeeded("http"))
    if old.scheduler != new.scheduler:
        ops.append(SetScheduler(new.scheduler))
    if old.http.snapshot_interval_s != new.http.snapshot_interval_s:
        ops.append(SetSnapshotInterval(new.http.snapshot_interval_s))
    if frame_sinks(old) != frame_sinks(new):
        ops.append(ReplaceFrameSinks(new))
    if event_sinks(old) != event_sinks(new) or old.events != new.events:
        ops.append(ReplaceEventSinks(new, new.events))
    ops += _camera_ops(old, new)
    ops.append(Publish(new))
    return ops


def _restart_http(old: Config, new: Config) -> bool:
    keep = set(HTTP_IN_PLACE)
    return old.http.model_dump(exclude=keep) != new.http.model_dump(exclude=keep) \
        or old.http.auth != new.http.auth


def _camera_ops(old: Config, new: Config) -> list[Operation]:
    before = {c.name: c for c in old.cameras}
    after = {c.name for c in new.cameras}
    ops: list[Operation] = [RemoveCamera(n) for n in before if n not in after]
    lowlight_changed = old.lowlight != new.lowlight
    for cam in new.cameras:
        prev = before.get(cam.name)
        if prev is None:
            ops.append(AddCamera(cam))
        elif needs_reconnect(prev, cam):
            ops.append(ReconnectCamera(cam))
        elif prev != cam or lowlight_changed:
            events = any(getattr(prev, f) != getattr(cam, f) for f in EVENT_FIELDS)
            ops.append(UpdateCamera(cam, events))
    return ops


def needs_reconnect(prev: CameraConfig, new: CameraConfig) -> bool:
    """True when a field outside :data:`IN_PLACE_FIELDS` (the URL, credentials, transport,
    timeouts...) changed."""
    a = prev.model_dump(exclude=set(IN_PLACE_FIELDS))
    b = new.model_dump(exclude=set(IN_PLACE_FIELDS))
    a["url"], b["url"] = prev.url.get_secret_value(), new.url.get_secret_value()
    return a != b


def frame_sinks(cfg: Config) -> list:
    return [s for s in cfg.sinks if isinstance(s, SinkConfig)]


def event_sinks(cfg: Config) -> list:
    return [s for s in cfg.sinks if not isinstance(s, SinkConfig)]
