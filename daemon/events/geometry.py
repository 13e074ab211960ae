"""Zones and lines in pixels: where an object is, which side of a line it is on.

An object's position is its *anchor*, the bottom centre of its box (where it stands on the
ground). Shapes come from the config in relative (0..1) or pixel coordinates and are resolved to
pixels once the camera's frame size is known (:func:`resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.config import LineConfig, ZoneConfig


def anchor(box) -> tuple[float, float]:
    """Bottom centre of an ``x1, y1, x2, y2`` box."""
    x1, _, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2.0, y2


def _to_pixels(points, coords: str, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if coords == "relative":
        pts = pts * np.array([w, h], np.float64)
    return pts


@dataclass(frozen=True)
class Zone:
    """A polygon in pixels."""

    name: str
    polygon: np.ndarray  # (K, 2)
    classes: frozenset[str]
    loiter_s: float

    def contains(self, point: tuple[float, float]) -> bool:
        """Even-odd rule: is ``point`` inside the polygon (edges count as inside)?"""
        x, y = point
        xs, ys = self.polygon[:, 0], self.polygon[:, 1]
        xj, yj = np.roll(xs, 1), np.roll(ys, 1)
        crosses = (ys > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xj - xs) * (y - ys) / (yj - ys) + xs
        inside = int(np.count_nonzero(crosses & (x < x_at))) % 2 == 1
        return inside or self._on_edge(x, y)

    def _on_edge(self, x: float, y: float) -> bool:
        a, b = self.polygon, np.roll(self.polygon, 1, axis=0)
        ab, ap = b - a, np.array([x, y]) - a
        cross = ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0]
        dot = (ap * ab).sum(1)
        return bool(np.any((np.abs(cross) < 1e-9) & (dot >= 0) & (dot <= (ab * ab).sum(1))))

    def counts(self, cls: str) -> bool:
        return not self.classes or cls in self.classes


@dataclass(frozen=True)
class Line:
    """A segment A -> B in pixels; ``in`` is crossing from its left to its right (on screen)."""

    name: str
    a: tuple[float, float]
    b: tuple[float, float]
    classes: frozenset[str]
    dead_band_px: float

    def side(self, point: tuple[float, float]) -> int:
        """+1 right of A->B (as seen on screen, y down), -1 left, 0 within the dead band."""
        (ax, ay), (bx, by) = self.a, self.b
        px, py = point
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        length = max(1e-9, float(np.hypot(bx - ax, by - ay)))
        distance = cross / length
        if abs(distance) <= self.dead_band_px:
            return 0
        return 1 if distance > 0 else -1

    def crossed(self, p: tuple[float, float], q: tuple[float, float]) -> bool:
        """Does the move p -> q pass the segment itself (not only its extension)?"""
        (ax, ay), (bx, by) = self.a, self.b
        d = np.array([bx - ax, by - ay])
        pq = np.array([q[0] - p[0], q[1] - p[1]])
        denom = d[0] * pq[1] - d[1] * pq[0]
        if abs(denom) < 1e-12:
            return False
        ap = np.array([p[0] - ax, p[1] - ay])
        t = (ap[0] * pq[1] - ap[1] * pq[0]) / denom  # position along A->B
        u = (ap[0] * d[1] - ap[1] * d[0]) / denom  # position along p->q
        return 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0

    def counts(self, cls: str) -> bool:
        return not self.classes or cls in self.classes


def resolve(zones: list[ZoneConfig], lines: list[LineConfig],
            size: tuple[int, int]) -> tuple[list[Zone], list[Line]]:
    """The config's shapes in pixels of a ``(width, height)`` frame."""
    diagonal = float(np.hypot(*size))
    out_z = [Zone(z.name, _to_pixels(z.points, z.coords, size), frozenset(z.classes), z.loiter_s)
             for z in zones]
    out_l = []
    for ln in lines:
        pts = _to_pixels(ln.points, ln.coords, size)
        out_l.append(Line(ln.name, tuple(pts[0]), tuple(pts[1]), frozenset(ln.classes),
                          ln.dead_band * diagonal))
    return out_z, out_l
