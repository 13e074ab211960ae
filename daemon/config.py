"""The daemon's configuration: YAML read from disk, then validated into read-only models.

One pydantic base with ``extra="forbid"`` (unknown keys are errors), one class per section,
every field with a default, a description and bounds, cross-field rules in validators. Reading
the file (:func:`read_yaml`) is apart from validating it (:func:`parse_config`).

Camera passwords never need to sit in the file: ``password_env`` names an environment variable
and ``password_credential`` a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
The camera URL is kept as a secret: ``repr`` and validation errors never show it, and
:func:`redact_url` is the one way a URL is ever displayed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.config_yaml import ConfigFileError, read_mapping
from daemon.textsafe import shown

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
_SPLIT_PASSWORD = (
    "has an '@' after a '/', '?' or '#': a password containing one of those characters ends the "
    "host part early; percent-encode them in the URL ('/' as %2F, '?' as %3F, '#' as %23) or, "
    "better, move the password to password_env or password_credential")
# Query parameters whose values are masked by redact_url (substring match, case-insensitive).
SECRET_QUERY_KEYS = ("pass", "pwd", "token", "key", "secret", "auth", "sig", "session", "cred")


class ConfigError(ValueError):
    """The config is invalid; ``str(err)`` is a readable, credential-free reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)



# -- tracking, zones and lines (per camera) ----------------------------------------------------
NAME_PATTERN = r"^[a-z0-9_-]{1,48}$"
EVENT_TYPES = ("appeared", "entered", "exited", "crossed", "loitered", "gone")


class TrackingConfig(_Section):
    classes: list[str] = Field(
        default_factory=list, max_length=100,
        description="Detector class names to track (e.g. [person, car]); empty tracks every class.")
    min_score: float = Field(
        0.4, ge=0, le=1,
        description="A track counts (events, zones, lines, duskwatch_tracks_total) only once its "
        "best detection score reached this.")
    min_age_frames: int = Field(
        3, ge=1, le=100,
        description="... and once it was seen in this many processed frames (filters one-frame "
        "false positives).")
    lost_track_s: float = Field(
        2.0, gt=0, le=60,
        description="A track not seen for this long is gone; shorter gaps (skipped frames, "
        "occlusions) keep its id.")
    match_iou: float = Field(
        0.1, gt=0, le=1, description="Least IoU between a track's predicted box and a detection "
        "to match them.")


class _Shape(_Section):
    name: str = Field(pattern=NAME_PATTERN, description="[a-z0-9_-]+, unique per camera; the "
                      "metrics label.")
    points: list[tuple[float, float]] = Field(
        description="[[x, y], ...] in relative (0..1 of width and height) or pixel coordinates.")
    coords: Literal["relative", "pixels"] = Field(
        "relative", description="relative: 0..1 of the frame's width and height; pixels: of the "
        "camera's frames as decoded.")
    classes: list[str] = Field(
        default_factory=list, max_length=100,
        description="Classes this shape counts; empty counts every tracked class.")

    @model_validator(mode="after")
    def _relative_in_range(self) -> "_Shape":
        if self.coords == "relative":
            bad = [p for p in self.points if not (0 <= p[0] <= 1 and 0 <= p[1] <= 1)]
            if bad:
                raise ValueError(
                    f"point {list(bad[0])} is outside 0..1; relative coordinates are fractions "
                    "of the frame (or set coords: pixels)")
        return self


class ZoneConfig(_Shape):
    points: list[tuple[float, float]] = Field(
        min_length=3, max_length=64,
        description="Polygon corners [[x, y], ...] (at least 3); an object is in the zone when "
        "the bottom centre of its box is.")
    loiter_s: float = Field(
        0.0, ge=0, le=86400,
        description="An object in the zone for this long raises a 'loitered' event; 0 disables.")


class LineConfig(_Shape):
    points: list[tuple[float, float]] = Field(
        min_length=2, max_length=2,
        description="[[x1, y1], [x2, y2]]. Walking from the first point to the second, crossing "
        "from the left side to the right side (as seen on screen) is 'in', the other way 'out'; "
        "swap the points to swap the directions.")
    dead_band: float = Field(
        0.01, ge=0, le=0.2,
        description="Half-width of a band around the line, as a fraction of the frame diagonal, "
        "in which an object's side is not updated (box jitter on the line is not a crossing).")


def _unique(items: list, what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{what} name {shown(item.name)} is used twice; names must be unique")
        seen.add(item.name)


class CameraConfig(_Section):
    name: str = Field(
        pattern=r"^[a-z0-9_-]{1,48}$",
        description="Unique camera name, [a-z0-9_-]+; used as the metrics label.",
    )
    url: SecretStr = Field(
        description="rtsp://[user[:pass]@]host[:port]/path, http(s)://..., or file:///path "
        "(or a plain path) for recorded footage."
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the camera password (added to the URL)."
    )
    password_credential: str | None = Field(
        None,
        description="File name in $CREDENTIALS_DIRECTORY (systemd LoadCredential=) holding the "
        "camera password.",
    )
    fps: float = Field(10.0, gt=0, le=120, description="Most frames per second to process.")
    enhance: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: the low-light gate decides which frames get the lowlight "
        "views; always: every frame does (each view is a detector pass); never: none."
    )
    picture: Literal["enhanced", "raw"] = Field(
        "enhanced", description="What the live snapshot, event snapshots and clips show while the "
        "camera is low-light: 'enhanced' (the enhancer's picture, made for people: brighter, "
        "denoised, temporally filtered; the raw frame is kept beside each event snapshot) or "
        "'raw' (the frame as decoded). Without an enhancer, or with enhance: never, always raw."
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout to open the stream.")
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="No frame for this long: the stream is stalled."
    )
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay.")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Reconnect delay cap.")
    decode_threads: int = Field(
        1,
        ge=0,
        le=16,
        description="FFmpeg decoder threads for this camera. 1 (default) keeps latency at one "
        "frame and lets many cameras share the cores; frame-threaded decoding (0 = one thread "
        "per core) holds back as many frames as it has threads. Raise it only for a single "
        "high-resolution camera that one core cannot decode in real time.",
    )
    decoder: Literal["thread", "process"] = Field(
        "thread", description="Where the stream is decoded: thread (OpenCV in the daemon's "
        "process; a decoder wedged in FFmpeg can only be abandoned) or process (PyAV in a child "
        "process per camera, killed and restarted when no frame comes for read_timeout_s). "
        "docs/BENCHMARKS.md, 'Decoder', has the cost of each.")
    loop: bool = Field(False, description="Loop file sources at their end (demo, benchmarks).")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="Object tracking: which classes, when a "
        "track counts, how long it survives unseen.")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=32,
                                    description="Polygons: objects in them, entries, dwell, loitering.")
    lines: list[LineConfig] = Field(default_factory=list, max_length=32,
                                    description="Lines: crossings by direction and class.")

    @model_validator(mode="after")
    def _unique_shapes(self) -> "CameraConfig":
        _unique(self.zones, "zone")
        _unique(self.lines, "line")
        return self

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, v: Any) -> Any:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("must be a non-empty string such as rtsp://host:554/stream1")
        if raw != raw.strip() or any(c.isspace() or ord(c) < 32 for c in raw):
            raise ValueError("contains a space, tab or line break (leading or trailing ones "
                             "too); remove it, or write a space inside the URL as %20")
        parts = urlsplit(raw)
        if parts.scheme == "" and (raw.startswith("/") or raw.startswith(".")):
            return raw  # plain file path
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(
                f"scheme {shown(parts.scheme)} is not supported; use one of {', '.join(URL_SCHEMES)}"
            )
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError(f"has no host; write it as {parts.scheme}://host:port/path")
        try:
            parts.port
        except ValueError:
            if "@" not in parts.netloc and "@" in raw:
                raise ValueError(_SPLIT_PASSWORD) from None
            raise ValueError("has an invalid port; use a number from 1 to 65535") from None
        return raw

    @model_validator(mode="after")
    def _check_backoff(self) -> "CameraConfig":
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s "
                f"({self.backoff_initial_s})"
            )
        if self.password_env and self.password_credential:
            raise ValueError("set at most one of password_env and password_credential")
        return self

    @property
    def display_url(self) -> str:
        """The URL with any password masked: safe for logs, metrics, /cameras and errors."""
        return redact_url(self.url.get_secret_value())

    def resolved_url(self, environ: dict[str, str] | None = None) -> str:
        """The URL to connect to, with the password from env/credentials filled in.

        Never log the result; log :attr:`display_url`.
        """
        url = self.url.get_secret_value()
        password = resolve_secret(f"camera {shown(self.name)}", self.password_env,
                                  self.password_credential, environ)
        return with_password(url, password) if password is not None else url

    @property
    def is_file(self) -> bool:
        url = self.url.get_secret_value()
        return urlsplit(url).scheme in ("", "file")


def _engine_ref(v: Any) -> Any:
    """An engine is a file (a ``Path``) or a Triton URL (kept as written: ``Path`` would fold
    its ``//``); the URL's syntax is checked here, the server when the engine is opened."""
    if isinstance(v, str) and "://" in v:
        from engines.base import EngineError
        from engines.triton_backend import parse_url

        try:
            parse_url(v)
        except EngineError as exc:
            raise ValueError(str(exc)) from None
        return v
    return Path(v) if isinstance(v, str) else v


EngineRef = Annotated[Union[Path, str], BeforeValidator(_engine_ref)]


def is_engine_url(ref: Any) -> bool:
    """Whether an ``engines.*`` value names a server model rather than a file."""
    return isinstance(ref, str) and "://" in ref


def engine_name(ref: Any) -> str:
    """A short name for logs, /readyz and metric labels: the file's name, or ``MODEL@HOST:PORT``
    for a Triton URL (never its options)."""
    if is_engine_url(ref):
        from engines.triton_backend import parse_url

        return parse_url(ref).name
    return Path(ref).name


class EnginesConfig(_Section):
    detector: EngineRef = Field(
        description="Detector engine (.onnx, .xml OpenVINO: the CPU choice, .engine/.plan, "
        ".torchscript/.pt2), or a model on a Triton server: triton://HOST:PORT/MODEL "
        "(deploy/README.md, 'Many boxes').")
    enhancer: EngineRef | None = Field(
        None, description="Low-light enhancer engine (a file or triton://HOST:PORT/MODEL); "
        "without one, no frame is enhanced."
    )
    temporal_filter: bool = Field(
        True,
        description="Average each camera's dark frames over time where the scene is still "
        "before enhancing them (less flicker from sensor noise; engines.enhancer.TemporalFilter).",
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto | cpu | cuda:N"
    )
    conf: float = Field(0.25, ge=0, le=1, description="Detection confidence threshold.")
    iou: float = Field(0.45, gt=0, le=1, description="NMS IoU threshold.")
    int8: Literal["auto", "off"] = Field(
        "auto", description="auto: on a CPU box whose engine choice is int8 (VNNI, no bf16), a "
        "detector that is an f32 OpenVINO IR is upgraded in the background: frames of the "
        "cameras are collected beside it, the int8 IR is built, checked against f32 and swapped "
        "in without a restart (daemon/int8). off: the detector runs as configured.")
    check_files: bool = Field(
        True, description="Fail validation when an engine file is missing (set by tests only)."
    )

    @model_validator(mode="after")
    def _files_exist(self) -> "EnginesConfig":
        if not self.check_files:
            return self
        for key in ("detector", "enhancer"):
            p = getattr(self, key)
            if p is not None and not is_engine_url(p) and not _is_file(key, p):
                raise ValueError(
                    f"{key}: engine file {shown(p)} does not exist; build it with "
                    f"`duskwatch export {'yolo' if key == 'detector' else 'denoiser'} ... --out PATH` "
                    "and name that path here"
                )
        return self


def _is_file(key: str, path: Path) -> bool:
    """Whether ``path`` is a file; a path the OS refuses to look at (too long, a name over the
    file system's limit, ...) is an error naming ``key``, not a traceback."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ValueError(f"{key}: engine path {shown(path)} cannot be used ({why}); give the "
                         "path of an engine file") from None


class LowLightConfig(_Section):
    enter_below: float = Field(
        55.0, ge=0, le=255, description="Mean luma (0-255) under which a camera turns low-light."
    )
    exit_above: float = Field(
        75.0, ge=0, le=255, description="Mean luma above which it turns back to daylight."
    )
    smoothing: float = Field(
        0.2, gt=0, le=1, description="Weight of the newest frame in the luma moving average."
    )
    # When a dark frame gets the low-light treatment (its views, below). Measured, not guessed:
    # `duskwatch bench night --tune` picks these on ExDark val for the enhancer at hand
    # (docs/DENOISER.md, "Gate"): with the shipped K = 2 weights and YOLO11n, every low-light
    # frame seen enhanced, with CLAHE and mirrored, boxes merged: ExDark val AP50 0.442 -> 0.483.
    enhance_below: float = Field(
        55.0,
        ge=0,
        le=255,
        description="In auto mode a low-light frame gets its views (enhancer, CLAHE) only while "
        "the smoothed mean luma is below this; 0 sends none (tuned on ExDark val: "
        "docs/DENOISER.md, 'Gate').",
    )
    highlight_level: float = Field(
        230.0,
        ge=1,
        le=255,
        description="Luma (0-255) at and above which a sampled pixel counts as a light source or "
        "clipped highlight.",
    )
    max_highlight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="In auto mode a frame whose smoothed fraction of highlight pixels is above "
        "this is not enhanced (street lamps, headlights and lit windows can blow out); 1 "
        "disables the check (the tuned default: with several views merged, lit night scenes "
        "gain too).",
    )

    # Which pictures of a picked frame the detector sees, and how their boxes are merged. Tuned
    # with the thresholds above by `duskwatch bench night --tune` on ExDark *train* (YOLO11n,
    # docs/BENCHMARKS.md, "Seeing the dark frame smaller too"): the frame and its mirror, each
    # also seen at 0.65 of the detector's size, fused (WBF 0.55): 2.85 detector passes. ExDark
    # val AP50: YOLO11n 0.502 -> 0.523, YOLOv8n 0.497 -> 0.527 (6 Dec). The enhancer's picture,
    # made for people, added nothing as a view (-0.001) and is left out.
    views: tuple[Literal["raw", "enhanced", "clahe", "mirror", "zoom", "zoom_mirror"], ...] = Field(
        ("raw", "mirror", "zoom", "zoom_mirror"),
        min_length=1,
        description="What the detector looks at for a frame the gate picks (enhance: auto or "
        "always): 'raw' (as decoded), 'enhanced' (the enhancer's output), 'clahe' (CLAHE on "
        "luma), 'mirror' (flipped left to right, boxes flipped back), 'zoom' and 'zoom_mirror' "
        "(the frame, or its mirror, detected at lowlight.zoom times the detector's input size, "
        "boxes mapped back; needs a detector exported with --dynamic, else they are left out "
        "and the log says so once). All go through the detector and their boxes are merged "
        "(lowlight.merge); each view costs one detector pass, a zoom view lowlight.zoom "
        "squared. Without an enhancer 'enhanced' is left out.",
    )
    merge: Literal["nms", "wbf"] = Field(
        "wbf",
        description="How the views' boxes become one: 'nms' (class-wise NMS, the best box of "
        "each object) or 'wbf' (weighted box fusion: boxes of one class that overlap by "
        "merge_iou are averaged, and the score is the mean over the views, so a box every view "
        "saw outranks one a single view saw).",
    )
    merge_iou: float = Field(
        0.55, gt=0, lt=1, description="IoU at which boxes of one class from different views are "
        "the same object (merge).",
    )
    zoom: float = Field(
        0.65, ge=0.25, le=3, description="Input size of the zoom views, in multiples of the "
        "detector's own (0.65: a 640 detector sees the frame at 416 on its long side, 0.42 of a "
        "pass; above 1 it looks closer).",
    )

    @field_validator("views")
    @classmethod
    def _unique_views(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"views {list(v)} names a view twice")
        return v

    @model_validator(mode="after")
    def _hysteresis(self) -> "LowLightConfig":
        if self.exit_above <= self.enter_below:
            raise ValueError(
                f"exit_above ({self.exit_above}) must be greater than enter_below "
                f"({self.enter_below}) so that the gate has hysteresis"
            )
        return self


class SchedulerConfig(_Section):
    max_batch: int = Field(8, ge=1, le=64, description="Most frames per engine call.")
    batch_timeout_ms: float = Field(
        10.0, ge=0, le=1000, description="How long to wait for a batch to fill."
    )


class SinkConfig(_Section):
    type: Literal["jsonl"] = Field("jsonl", description="Sink kind.")
    path: str = Field("-", description="File to append JSON lines to, or - for stdout.")


# -- event sinks and evidence ------------------------------------------------------------------
class _EventSink(_Section):
    name: str | None = Field(
        None, pattern=NAME_PATTERN,
        description="The sink's metrics label (duskwatch_sink_events_dropped_total{sink}); "
        "defaults to its type.")
    queue_size: int = Field(
        1000, ge=1, le=1_000_000,
        description="Events held while the receiver is slow or down; beyond that new events are "
        "dropped and counted in duskwatch_sink_events_dropped_total.")
    types: list[Literal[EVENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(EVENT_TYPES),
        description="Event types this sink receives.")

    @property
    def label(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


class EventsJsonlSinkConfig(_EventSink):
    type: Literal["events_jsonl"] = Field(description="Events as JSON lines in a file.")
    path: str = Field(description="File to append events to (rotated by size).")
    max_bytes: int = Field(50_000_000, ge=1000, le=10**12,
                           description="Rotate the file when it grows past this.")
    backups: int = Field(5, ge=0, le=100, description="Rotated files kept (path.1 ... path.N).")


class MqttSinkConfig(_EventSink):
    type: Literal["mqtt"] = Field(description="Events published to an MQTT broker.")
    host: str = Field(description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    topic_prefix: str = Field(
        "duskwatch", pattern=r"^[^#+\s]{1,128}$",
        description="Events go to <prefix>/<camera>/<type> (no wildcards).")
    qos: Literal[0, 1, 2] = Field(1, description="MQTT QoS of event messages.")
    retain: bool = Field(False, description="Publish events with the retain flag.")
    client_id: str = Field("", max_length=64, description="Client id; empty: duskwatch-<host>-<pid>.")
    username: str | None = Field(None, max_length=256, description="User name, if the broker wants one.")
    password_env: str | None = Field(None, description="Environment variable with the password.")
    password_credential: str | None = Field(
        None, description="File in $CREDENTIALS_DIRECTORY with the password.")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_file: str | None = Field(None, description="CA bundle for TLS; the system's by default.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Reconnect delay cap.")
    discovery: bool = Field(
        True, description="Publish Home Assistant MQTT discovery messages (retained) so that "
        "each camera appears in Home Assistant as a device; states go to <topic_prefix>-ha/ "
        "(deploy/README.md, 'Home Assistant').")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+\s]{1,128}$",
        description="Home Assistant's discovery prefix (its MQTT integration's setting).")

    @model_validator(mode="after")
    def _one_password(self) -> "MqttSinkConfig":
        if self.password_env and self.password_credential:
            raise ValueError("set at most one of password_env and password_credential")
        return self


class WebhookSinkConfig(_EventSink):
    type: Literal["webhook"] = Field(description="Events POSTed as JSON to a URL.")
    url: SecretStr = Field(description="http(s)://host[:port]/path to POST each event to.")
    token_env: str | None = Field(
        None, description="Environment variable with a bearer token (Authorization header).")
    token_credential: str | None = Field(
        None, description="File in $CREDENTIALS_DIRECTORY with a bearer token.")
    timeout_s: float = Field(5.0, gt=0, le=120,
                             description="Per attempt: for the connection, and for the answer.")
    retries: int = Field(5, ge=0, le=100,
                         description="More attempts after a POST got no answer, a 429 or a 5xx, "
                         "before the event is dropped and counted (any other 4xx is dropped at "
                         "once).")
    backoff_max_s: float = Field(30.0, gt=0, le=3600,
                                 description="Longest wait between attempts (a longer "
                                 "Retry-After is cut to this).")

    @field_validator("url", mode="before")
    @classmethod
    def _http_url(cls, v: Any) -> Any:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        parts = urlsplit(raw) if isinstance(raw, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host[:port]/path")
        return raw

    @model_validator(mode="after")
    def _one_token(self) -> "WebhookSinkConfig":
        if self.token_env and self.token_credential:
            raise ValueError("set at most one of token_env and token_credential")
        return self


AnySinkConfig = Annotated[
    Union[SinkConfig, EventsJsonlSinkConfig, MqttSinkConfig, WebhookSinkConfig],
    Field(discriminator="type"),
]


class EvidenceConfig(_Section):
    dir: Path = Field(Path("/var/lib/duskwatch/events"),
                      description="Snapshots and clips go under <dir>/<camera>/.")
    snapshots: bool = Field(True, description="Write an annotated JPEG (the track's best frame) per event.")
    clips: bool = Field(True, description="Write an H.264 clip around events.")
    clip_types: list[Literal[EVENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["appeared", "entered", "crossed", "loitered"],
        description="Event types that start (or extend) a clip.")
    pre_s: float = Field(2.0, ge=0, le=30, description="Seconds of pre-roll before the event.")
    post_s: float = Field(3.0, ge=0, le=60, description="Seconds after the last event of a clip.")
    max_clip_s: float = Field(30.0, gt=0, le=600,
                              description="Longest clip; later events start a new one.")
    clip_width: int = Field(640, ge=64, le=4096,
                            description="Clip frames are scaled down to this width (memory of "
                            "the pre-roll buffer, disk).")
    jpeg_quality: int = Field(85, ge=10, le=100, description="Snapshot JPEG quality.")
    max_age_days: float = Field(7.0, gt=0, le=3650, description="Delete evidence older than this.")
    max_bytes: int = Field(2_000_000_000, ge=10_000, le=10**13,
                           description="Delete the oldest evidence while the folder is larger.")
    queue_size: int = Field(64, ge=1, le=10_000,
                            description="Snapshots and clips waiting for the writer thread; "
                            "beyond that they are dropped and counted "
                            "(duskwatch_sink_events_dropped_total{sink=\"evidence\"}), and the "
                            "event names no such file.")


class EventsConfig(_Section):
    recent: int = Field(200, ge=0, le=100_000, description="Events kept in memory for /events.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig,
                                     description="Snapshots and clips, and their retention.")


class HttpAuthConfig(_Section):
    """Who may use the HTTP endpoints. Every endpoint but /healthz asks for one of the
    configured credentials; secrets come from the environment or $CREDENTIALS_DIRECTORY."""

    bearer_token_env: str | None = Field(
        None, description="Environment variable holding the bearer token.")
    bearer_token_credential: str | None = Field(
        None, description="File in $CREDENTIALS_DIRECTORY holding the bearer token.")
    basic_user: str | None = Field(
        None, pattern=r"^[^:\s]{1,64}$", description="User name for HTTP basic auth.")
    basic_password_env: str | None = Field(
        None, description="Environment variable holding the basic-auth password.")
    basic_password_credential: str | None = Field(
        None, description="File in $CREDENTIALS_DIRECTORY holding the basic-auth password.")
    metrics_open: bool = Field(
        False, description="Serve /metrics without authentication (the other endpoints still "
        "ask); for a Prometheus on a trusted network that cannot send credentials.")

    @model_validator(mode="after")
    def _one_way_each(self) -> "HttpAuthConfig":
        if self.bearer_token_env and self.bearer_token_credential:
            raise ValueError("set at most one of bearer_token_env and bearer_token_credential")
        if self.basic_password_env and self.basic_password_credential:
            raise ValueError("set at most one of basic_password_env and basic_password_credential")
        basic_pw = bool(self.basic_password_env or self.basic_password_credential)
        if bool(self.basic_user) != basic_pw:
            raise ValueError("basic auth needs both basic_user and a basic_password_env or "
                             "basic_password_credential")
        if not (self.bearer_token_env or self.bearer_token_credential or self.basic_user):
            raise ValueError("auth is set but names no credential; set bearer_token_env/"
                             "bearer_token_credential and/or basic_user with a password")
        return self


class HttpConfig(_Section):
    listen: str = Field(
        "127.0.0.1:9872", description="host:port for /metrics, /healthz, ... Loopback by "
        "default; 0.0.0.0:9872 (all interfaces) together with auth to let another host scrape.")
    auth: HttpAuthConfig | None = Field(
        None, description="Authentication for every endpoint but /healthz (none when unset).")
    workers: int = Field(8, ge=1, le=64, description="Threads answering requests (a fixed pool).")
    max_connections: int = Field(
        256, ge=1, le=1000, description="Most open HTTP connections; past it the longest-idle "
        "one is closed (keep it well under the process's file limit).")
    backlog: int = Field(128, ge=1, le=4096, description="Listen backlog (pending accepts).")
    request_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Deadline to receive a whole request once it started; "
        "slower clients are disconnected.")
    idle_timeout_s: float = Field(
        5.0, gt=0, le=300, description="A connection that sends nothing for this long is closed.")
    snapshot_interval_s: float = Field(
        0.5, ge=0, le=60, description="A camera's JPEG snapshot is encoded at most once per "
        "this many seconds, however many viewers poll it.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{shown(v)} is not host:port (for example 0.0.0.0:9872)")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"  # [::]:9872 -> ::

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SupervisionConfig(_Section):
    heartbeat_timeout_s: float = Field(
        15.0, gt=0, le=600, description="A worker silent this long is unhealthy (/healthz, WATCHDOG)."
    )


class Config(_Section):
    cameras: list[CameraConfig] = Field(
        default_factory=list, max_length=256, description="Cameras to watch (at most 256).")
    engines: EnginesConfig
    lowlight: LowLightConfig = Field(default_factory=LowLightConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    sinks: list[AnySinkConfig] = Field(
        default_factory=list, max_length=16,
        description="Where results go (at most 16): jsonl (one line per processed frame; off by "
        "default), events_jsonl, mqtt, webhook (events).")
    events: EventsConfig = Field(default_factory=EventsConfig,
                                 description="Events: recent list, snapshots and clips.")
    http: HttpConfig = Field(default_factory=HttpConfig)
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.name in seen:
                raise ValueError(f"camera name {shown(cam.name)} is used twice; names must be unique")
            seen.add(cam.name)
        names = [s.label for s in self.sinks if not isinstance(s, SinkConfig)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"event sink name {shown(dup[0])} is used twice; give each sink a "
                             "unique name (sinks[].name)")
        return self


# -- reading and validating -------------------------------------------------------------------
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with size, nesting and duplicate keys bounded
    (:mod:`daemon.config_yaml`); raise :class:`ConfigError` with the reason."""
    try:
        return read_mapping(path)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a mapping into a :class:`Config`; errors name the key and never echo values."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = _error_lines(exc, data)
        if len(lines) == 1:
            raise ConfigError(f"{source}: {lines[0]}") from None
        raise ConfigError(f"{source}: {len(lines)} errors:\n" + "\n".join(
            "  " + line for line in lines)) from None


def load_config(path: str | Path) -> Config:
    return parse_config(read_yaml(path), str(path))


def format_errors(exc: ValidationError, data: Any = None) -> str:
    """Every error, ``; ``-joined: ``cameras[1] (gate).url: reason``. Input values are never
    shown. (:func:`parse_config` puts them one per line.)"""
    return "; ".join(_error_lines(exc, data))


def _error_lines(exc: ValidationError, data: Any = None) -> list[str]:
    """One line per error: ``cameras[1] (gate).url: reason``. Input values are never shown."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = _format_loc(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (see deploy/duskwatch.example.yaml)"
        elif err["type"] == "missing":
            msg = "is required"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _format_loc(loc: tuple, data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({_plain_or_shown(node['name'])})"
        else:
            key = str(part)  # a key from the file, as the operator wrote it
            key = _plain_or_shown(key)
            out += ("." if out else "") + key
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _plain_or_shown(name: str) -> str:
    """A name from the file as written when it is plain (letters, digits, ``_-. :``, at most 48),
    else quoted, escaped and shortened (:func:`daemon.textsafe.shown`)."""
    return name if re.fullmatch(r"[A-Za-z0-9_. :-]{1,48}", name) else shown(name, 48)


# -- URL helpers ------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``rtsp://user:secret@host/x?channel=1&token=t`` -> ``rtsp://user:***@host/x?channel=1&token=***``.

    Query values are masked when their key looks like a secret (:data:`SECRET_QUERY_KEYS`), or
    when the parameter has no ``key=value`` shape; other parameters (``channel=1``,
    ``subtype=0``) stay, so two cameras on one recorder remain distinguishable."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username is not None:
        cred = parts.username + (":***" if parts.password is not None else "")
        host = f"{cred}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, _redact_query(parts.query), ""))


def _redact_query(query: str) -> str:
    out = []
    for item in query.split("&") if query else []:
        key, sep, _ = item.partition("=")
        if not sep:
            out.append("***")
        elif any(word in key.lower() for word in SECRET_QUERY_KEYS):
            out.append(f"{key}=***")
        else:
            out.append(item)
    return "&".join(out)


def resolve_secret(what: str, env_var: str | None, credential: str | None,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """The secret named by an environment variable or a ``$CREDENTIALS_DIRECTORY`` file (None
    when neither is set); :class:`ConfigError` naming the fix when it cannot be read."""
    env = os.environ if environ is None else environ
    if env_var:
        value = env.get(env_var)
        if value is None:
            raise ConfigError(f"{what}: environment variable {shown(env_var)} is not set")
        return value
    if not credential:
        return None
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        raise ConfigError(f"{what}: a credential file is named but $CREDENTIALS_DIRECTORY is not "
                          "set (add LoadCredential= to the systemd unit)")
    try:
        path = Path(cred_dir) / credential
        with open(path, "rb") as fh:
            data = fh.read(65537)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{what}: cannot read credential {shown(credential)} ({why})") from None
    if len(data) > 65536:
        raise ConfigError(f"{what}: credential {shown(credential)} is larger than 64 KiB")
    return data.decode("utf-8", "replace").strip()


def with_password(url: str, password: str) -> str:
    """Insert ``password`` into ``url``'s userinfo (user defaults to 'admin' when absent)."""
    parts = urlsplit(url)
    user = parts.username or "admin"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sink_secret(sink: Any, environ: dict[str, str] | None = None) -> str | None:
    """The MQTT password or webhook token of an event sink config (None for other sinks)."""
    if isinstance(sink, MqttSinkConfig):
        return resolve_secret(f"sink {sink.label}: password", sink.password_env,
                              sink.password_credential, environ)
    if isinstance(sink, WebhookSinkConfig):
        return resolve_secret(f"sink {sink.label}: token", sink.token_env,
                              sink.token_credential, environ)
    return None


def secrets_of(cfg: Config, environ: dict[str, str] | None = None) -> list[str]:
    """Every password the config can resolve, so logging filters can mask them."""
    out = []
    for sink in cfg.sinks:
        try:
            secret = sink_secret(sink, environ)
        except ConfigError:
            secret = None
        if secret:
            out.append(secret)
        if isinstance(sink, WebhookSinkConfig):
            parts = urlsplit(sink.url.get_secret_value())
            out += [v for v in (parts.password, parts.query) if v]
    out += _engine_tokens(cfg.engines, environ)
    for cam in cfg.cameras:
        try:
            pw = urlsplit(cam.resolved_url(environ)).password
        except ConfigError:
            pw = None
        if pw:
            out.append(pw)
    return out




def _engine_tokens(ecfg: EnginesConfig, environ: dict[str, str] | None) -> list[str]:
    """The tokens a Triton engine URL sends (``token_env``/``token_credential``)."""
    from engines.base import EngineError
    from engines.triton_backend import parse_url

    out = []
    for ref in (ecfg.detector, ecfg.enhancer):
        if not is_engine_url(ref):
            continue
        try:
            headers = parse_url(ref).headers(environ) or {}
        except EngineError:
            continue
        for value in headers.values():
            out += [value, value.removeprefix("Bearer ")]
    return out
