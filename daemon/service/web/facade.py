"""What the HTTP side may ask the daemon: :class:`Facade`, every method the web app calls.

The app (:mod:`daemon.service.web.app`) calls these and nothing else; an optional feature is an
explicit answer here, never a missing method (no event store configured: ``events_list`` gives
``[]``, ``events_page`` ``([], 0)``, ``event_file`` None). The daemon's implementation is
:class:`daemon.service.view.ServiceView`, reading the service's immutable published state;
tests serve any object that has every method (:func:`missing_methods` is empty).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Facade(Protocol):
    def metrics_payload(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type (/metrics)."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy?, and why not (/healthz)."""

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready?, the engines running and how the last reload went (/readyz)."""

    def cameras_status(self) -> dict[str, Any]:
        """``{"cameras": {name: status}}`` (/cameras)."""

    def camera_names(self) -> list[str]:
        """The running cameras' names, sorted."""

    def snapshot_jpeg(self, camera: str, picture: str = "shown") -> bytes | None:
        """The camera's latest frame as JPEG; None for an unknown camera; raises
        :class:`~daemon.service.web.app.SnapshotNotReady` before its first frame."""

    def events_list(self, camera: str | None = None, type_: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        """Recent events, newest first; ``[]`` without an event store (/events)."""

    def events_page(self, *, camera: str | None = None, type_: str | None = None,
                    cls: str | None = None, since: float | None = None,
                    until: float | None = None, offset: int = 0,
                    limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Recent events filtered and paged, and how many matched; ``([], 0)`` without an
        event store (/events?class=&since=&until=&offset=)."""

    def event_file(self, event_id: str, kind: str) -> Path | None:
        """An event's file ('snapshot', 'snapshot_raw', 'clip'); None when there is none
        (/events/<id>/snapshot.jpg, /events/<id>/clip.mp4)."""


METHODS = tuple(sorted(n for n, v in vars(Facade).items()
                       if callable(v) and not n.startswith("_")))


def missing_methods(obj: Any) -> list[str]:
    """The :class:`Facade` methods ``obj`` lacks (empty: it can be served)."""
    return [n for n in METHODS if not callable(getattr(obj, n, None))]
