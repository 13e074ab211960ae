"""Physics-based low-light degradation: clean sRGB photo -> night-camera frame.

The model "unprocesses" a well-lit sRGB image back to linear sensor space, darkens it, adds
sensor noise there, and runs it forward through a simple camera ISP again, as a night camera
would. References:

* Brooks et al. 2019, "Unprocessing Images for Learned Raw Denoising" (CVPR): inverse smoothstep
  tone curve, inverse gamma, inverse white balance, heteroscedastic shot/read noise with
  ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)`` and ``shot ~ logU(1e-4, 0.012)``.
* Cui et al. 2021, "Multitask AET with Orthogonal Tangent Regularity for Dark Object Detection"
  (MAET, ICCV): darkness scale ``k ~ U(0.01, 0.4)``, gamma ``U(2.0, 3.5)``, 8-bit quantisation.
* Wei et al. 2020/2021, "Physics-based Noise Modeling for Extreme Low-light Photography" (ELD):
  Poisson shot noise whose gain is log-uniform; here the Gaussian approximation of Brooks et al.
  ``var = shot * x + read`` is used, plus an optional photon-count (Poisson) mode.

Camera streams add lossy compression (modelled with OpenCV's JPEG encoder, which applies the
8x8 DCT quantisation and 4:2:0 chroma subsampling that H.264 intra blocks also show) and night
cameras switch to infrared monochrome (one luminance-like channel from a near-IR-weighted
channel mix, copied to three channels).

Everything is deterministic for a seed: :func:`sample_params` draws the per-image parameters
from a ``numpy.random.Generator``, :func:`degrade` applies them with a noise generator. To
simulate a video, keep the parameters and give every frame a fresh noise seed.

Images are float32 RGB in ``[0, 1]``, shape ``H x W x 3``. :func:`degrade_bgr_u8` wraps the
same for OpenCV BGR ``uint8`` frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

#: Documented sampling ranges (also shown in docs/DENOISER.md).
RANGES = {
    "exposure": (0.01, 0.5),  # log-uniform darkening of the linear signal (MAET: U(0.01, 0.4))
    "gamma": (2.0, 2.6),  # inverse gamma used to unprocess (the ISP re-applies 2.2)
    "shot": (1e-4, 0.012),  # Brooks et al. shot-noise variance factor, log-uniform
    "read_sigma_log": 0.26,  # std of the read-noise residual in log space (Brooks et al.)
    "rgb_gain": (0.8, 1.1),  # inverse global digital gain (Brooks et al.: 1 / N(0.8, 0.1))
    "red_gain": (1.9, 2.4),  # camera white-balance gains, uniform (Brooks et al.)
    "blue_gain": (1.5, 1.9),
    "wb_error": (-0.25, 0.25),  # log of the residual colour cast on R and B after the camera's WB
    "jpeg_quality": (30, 95),  # uniform integer; compression applied with probability p_jpeg
    "p_jpeg": 0.8,
    "p_mono": 0.15,  # probability of infrared-monochrome mode
}

#: Near-IR-weighted channel mix used for monochrome mode (IR cameras see foliage and skin bright).
MONO_WEIGHTS = np.array([0.5, 0.35, 0.15], np.float32)  # R, G, B


@dataclass(frozen=True)
class DegradeParams:
    """Per-image degradation parameters. ``jpeg_quality=0`` means no compression."""

    exposure: float = 0.1
    gamma: float = 2.2
    shot: float = 0.004
    read: float = 1e-5
    rgb_gain: float = 1.0
    red_gain: float = 2.1
    blue_gain: float = 1.7
    wb_error_r: float = 0.0
    wb_error_b: float = 0.0
    jpeg_quality: int = 75
    mono: bool = False
    poisson: bool = False

    def replace(self, **changes) -> "DegradeParams":
        return dataclasses.replace(self, **changes)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def read_from_shot(shot: float, residual: float = 0.0) -> float:
    """Read-noise variance tied to the shot factor (Brooks et al. 2019, Sec. 3.4)."""
    return float(np.exp(2.18 * np.log(shot) + 1.20 + residual))


def sample_params(
    rng: np.random.Generator, exposure: float | None = None, mono: bool | None = None
) -> DegradeParams:
    """Draw one set of parameters from :data:`RANGES`; ``exposure``/``mono`` pin those values."""
    r = RANGES
    shot = _log_uniform(rng, *r["shot"])
    read = read_from_shot(shot, rng.normal(0.0, r["read_sigma_log"]))
    exp_ = _log_uniform(rng, *r["exposure"])
    params = DegradeParams(
        exposure=exp_ if exposure is None else float(exposure),
        gamma=float(rng.uniform(*r["gamma"])),
        shot=shot,
        read=read,
        rgb_gain=float(rng.uniform(*r["rgb_gain"])),
        red_gain=float(rng.uniform(*r["red_gain"])),
        blue_gain=float(rng.uniform(*r["blue_gain"])),
        wb_error_r=float(rng.uniform(*r["wb_error"])),
        wb_error_b=float(rng.uniform(*r["wb_error"])),
        jpeg_quality=int(rng.integers(r["jpeg_quality"][0], r["jpeg_quality"][1] + 1))
        if rng.random() < r["p_jpeg"]
        else 0,
        mono=bool(rng.random() < r["p_mono"]) if mono is None else bool(mono),
        poisson=bool(rng.random() < 0.5),
    )
    return params


# -- the camera pipeline, backwards and forwards ---------------------------------------------
def inverse_smoothstep(y: np.ndarray) -> np.ndarray:
    """Inverse of the global tone curve ``3x^2 - 2x^3`` (Brooks et al. 2019, Eq. 5)."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """The global tone curve ``3x^2 - 2x^3``."""
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def unprocess(rgb: np.ndarray, p: DegradeParams) -> np.ndarray:
    """sRGB [0,1] -> linear raw-like signal: inverse tone curve, gamma, WB and digital gain."""
    lin = np.maximum(inverse_smoothstep(rgb), 1e-8) ** p.gamma
    gains = np.array([p.red_gain, 1.0, p.blue_gain], np.float32) / p.rgb_gain
    return (lin / gains).astype(np.float32)


def add_sensor_noise(x: np.ndarray, p: DegradeParams, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic shot + read noise on the darkened linear signal ``x``.

    Gaussian mode: ``N(x, shot*x + read)`` (Brooks et al.). Poisson mode (ELD): photon counts
    ``Poisson(x / shot) * shot`` plus Gaussian read noise.
    """
    x = np.maximum(x, 0.0)
    if p.poisson:
        shot_part = rng.poisson(x / p.shot).astype(np.float32) * p.shot
        return shot_part + rng.normal(0.0, np.sqrt(p.read), x.shape).astype(np.float32)
    var = p.shot * x + p.read
    return (x + rng.normal(0.0, 1.0, x.shape) * np.sqrt(var)).astype(np.float32)


def process(raw: np.ndarray, p: DegradeParams) -> np.ndarray:
    """Linear raw -> sRGB [0,1] with the camera's (slightly wrong) white balance, gamma 2.2
    and the smoothstep tone curve."""
    cast = np.exp(np.array([p.wb_error_r, 0.0, p.wb_error_b], np.float32))
    gains = np.array([p.red_gain, 1.0, p.blue_gain], np.float32) * cast / p.rgb_gain
    lin = np.clip(raw * gains, 0.0, 1.0)
    return smoothstep(lin ** (1.0 / 2.2)).astype(np.float32)


def to_mono(rgb: np.ndarray) -> np.ndarray:
    """Infrared-monochrome look: one near-IR-weighted channel copied to three."""
    y = rgb @ MONO_WEIGHTS
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)


def quantize_u8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def jpeg_roundtrip(u8_rgb: np.ndarray, quality: int) -> np.ndarray:
    """Lossy compression artefacts via OpenCV's JPEG codec (4:2:0, 8x8 DCT blocks)."""
    ok, buf = cv2.imencode(".jpg", u8_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {u8_rgb.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


# -- public entry points ---------------------------------------------------------------------
def clean_target(rgb: np.ndarray, p: DegradeParams) -> np.ndarray:
    """The ground truth the enhancer should produce for ``p``: the clean image (mono in IR mode)."""
    rgb = np.asarray(rgb, np.float32)
    return to_mono(rgb) if p.mono else rgb


def degrade(rgb: np.ndarray, p: DegradeParams, rng: np.random.Generator) -> np.ndarray:
    """Clean float RGB ``[0,1]`` HxWx3 -> degraded float RGB ``[0,1]`` (8-bit values)."""
    rgb = _check_rgb(rgb)
    if p.mono:
        rgb = to_mono(rgb)
    raw = unprocess(rgb, p) * p.exposure
    if p.mono:  # an IR sensor has no colour filter array: no white balance to undo or redo
        raw = np.repeat(raw[..., 1:2], 3, axis=-1)
        p = p.replace(red_gain=1.0, blue_gain=1.0, wb_error_r=0.0, wb_error_b=0.0)
        noisy = add_sensor_noise(raw[..., :1], p, rng)
        noisy = np.repeat(noisy, 3, axis=-1)
    else:
        noisy = add_sensor_noise(raw, p, rng)
    u8 = quantize_u8(process(noisy, p))
    if p.jpeg_quality > 0:
        u8 = jpeg_roundtrip(u8, p.jpeg_quality)
    return u8.astype(np.float32) / 255.0


def degrade_seeded(rgb: np.ndarray, seed: int, **pin) -> tuple[np.ndarray, np.ndarray, DegradeParams]:
    """Sample parameters and noise from ``seed``; return ``(degraded, target, params)``."""
    rng = np.random.default_rng(seed)
    p = sample_params(rng, **pin)
    return degrade(rgb, p, rng), clean_target(rgb, p), p


def degrade_bgr_u8(bgr: np.ndarray, p: DegradeParams, rng: np.random.Generator) -> np.ndarray:
    """OpenCV convenience: BGR uint8 in, BGR uint8 out."""
    rgb = bgr[..., ::-1].astype(np.float32) / 255.0
    return quantize_u8(degrade(rgb, p, rng))[..., ::-1].copy()


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    if a.dtype == np.uint8:
        raise ValueError("expected float RGB in [0, 1], got uint8; divide by 255 first")
    return a.astype(np.float32)


# -- night scenes: spatially varying light, lamps with glare, colour casts --------------------
#: Ranges of the night-scene model (:func:`sample_night`), shown in docs/DENOISER.md.
NIGHT_RANGES = {
    "ambient": (0.005, 0.6),  # log-uniform ambient exposure scale (the darkest part of the scene)
    "field_stops": (0.0, 1.5),  # std of the log-illumination random field (natural-log units)
    "field_grid": (2, 5),  # its control grid, per side (bilinear in between)
    "lights": (0, 4),  # number of light sources (uniform integer)
    "light_strength": (0.05, 1.5),  # log-uniform illuminance at the source's radius, x normal exposure
    "light_radius": (0.03, 0.25),  # log-uniform, fraction of the image diagonal
    "p_visible": 0.5,  # a source inside the frame is itself in view (clipped core + glare halo)
    "core_peak": (2.0, 30.0),  # log-uniform peak of the visible core, linear (>1: clipped)
    "core_sigma": (0.003, 0.012),  # log-uniform, fraction of the diagonal
    "halo_ratio": (3.0, 8.0),  # halo sigma / core sigma
    "halo_peak": (0.02, 0.4),  # log-uniform
}

#: Light colours (linear RGB, green = 1): low-pressure sodium, high-pressure sodium, warm LED,
#: neutral, cool LED, moonlight/sky. Sodium lamps emit mostly near 589 nm (orange).
LIGHT_COLOURS = np.array([
    [2.2, 1.0, 0.15], [1.6, 1.0, 0.4], [1.25, 1.0, 0.72], [1.0, 1.0, 1.0], [0.88, 1.0, 1.18], [0.8, 1.0, 1.3],
], np.float32)


@dataclass(frozen=True)
class Light:
    """A light source: centre (fractions of width/height; may lie outside the frame), radius and
    core/halo sizes (fractions of the diagonal), strength, colour index, and whether it is in view."""

    x: float
    y: float
    radius: float
    strength: float
    colour: int
    visible: bool = False
    core_peak: float = 10.0
    core_sigma: float = 0.01
    halo_sigma: float = 0.05
    halo_peak: float = 0.1


@dataclass(frozen=True)
class NightParams:
    """One night scene: the camera (``camera``: noise, white balance, JPEG, IR mode; its
    ``exposure`` is the ambient level), the ambient light's colour, a smooth log-illumination
    field (``field``: a small grid of natural-log offsets) and the light sources."""

    camera: DegradeParams
    ambient_colour: int = 3
    field: tuple[tuple[float, ...], ...] = ((0.0,),)
    lights: tuple[Light, ...] = ()


def sample_night(rng: np.random.Generator, exposure: float | None = None, mono: bool | None = None) -> NightParams:
    """Draw a night scene from :data:`NIGHT_RANGES` (camera parameters from :data:`RANGES`)."""
    r = NIGHT_RANGES
    camera = sample_params(rng, exposure=exposure, mono=mono)
    if exposure is None:
        camera = camera.replace(exposure=_log_uniform(rng, *r["ambient"]))
    n = int(rng.integers(r["field_grid"][0], r["field_grid"][1] + 1))
    field = rng.normal(0.0, rng.uniform(*r["field_stops"]), (n, n))
    lights = tuple(_sample_light(rng) for _ in range(int(rng.integers(r["lights"][0], r["lights"][1] + 1))))
    return NightParams(camera=camera, ambient_colour=int(rng.integers(len(LIGHT_COLOURS))),
                       field=tuple(tuple(float(v) for v in row) for row in field), lights=lights)


def _sample_light(rng: np.random.Generator) -> Light:
    r = NIGHT_RANGES
    x, y = rng.uniform(-0.2, 1.2, 2)
    inside = 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
    core_sigma = _log_uniform(rng, *r["core_sigma"])
    return Light(x=float(x), y=float(y), radius=_log_uniform(rng, *r["light_radius"]),
                 strength=_log_uniform(rng, *r["light_strength"]), colour=int(rng.integers(len(LIGHT_COLOURS))),
                 visible=bool(inside and rng.random() < r["p_visible"]), core_peak=_log_uniform(rng, *r["core_peak"]),
                 core_sigma=core_sigma, halo_sigma=core_sigma * float(rng.uniform(*r["halo_ratio"])),
                 halo_peak=_log_uniform(rng, *r["halo_peak"]))


def illumination(h: int, w: int, p: NightParams) -> np.ndarray:
    """Per-pixel, per-channel illuminance ``[H, W, 3]`` in units of a normal exposure (1 = lit as
    the clean photo was): ambient ``exposure * exp(field) * colour`` plus, per source, an
    inverse-square falloff ``strength / (1 + (d / radius)^2)`` in its colour."""
    field = cv2.resize(np.asarray(p.field, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    light = (p.camera.exposure * np.exp(field))[..., None] * LIGHT_COLOURS[p.ambient_colour]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    diag = float(np.hypot(h, w))
    for s in p.lights:
        d2 = ((xx - s.x * w) ** 2 + (yy - s.y * h) ** 2) / (s.radius * diag) ** 2
        light = light + (s.strength / (1.0 + d2))[..., None] * LIGHT_COLOURS[s.colour]
    return light.astype(np.float32)


def glare(h: int, w: int, p: NightParams) -> np.ndarray:
    """Light emitted towards the camera by the sources in view, linear ``[H, W, 3]``: a Gaussian
    core above 1 (clipped by the camera) and a wider, dimmer Gaussian halo (lens glare)."""
    out = np.zeros((h, w, 3), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    diag = float(np.hypot(h, w))
    for s in p.lights:
        if not s.visible:
            continue
        d2 = (xx - s.x * w) ** 2 + (yy - s.y * h) ** 2
        core = s.core_peak * np.exp(-0.5 * d2 / (s.core_sigma * diag) ** 2)
        halo = s.halo_peak * np.exp(-0.5 * d2 / (s.halo_sigma * diag) ** 2)
        out += (core + halo)[..., None] * LIGHT_COLOURS[s.colour]
    return out


def degrade_night(rgb: np.ndarray, p: NightParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clean float RGB ``[0,1]`` -> ``(night frame, target)``, both float RGB ``[0,1]``.

    The scene's linear radiance (:func:`unprocess`) is lit by :func:`illumination`, the sources'
    :func:`glare` is added, sensor noise, the camera's processing, 8-bit quantisation and JPEG
    follow as in :func:`degrade`. The target is what the enhancer should give: the photo as lit
    by ``max(illumination, 1)`` (regions already lit at or above a normal exposure stay as they
    are, lamps keep their colour there) plus the same glare, through a camera with the right
    white balance (no residual cast)."""
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    cam = p.camera
    if cam.mono:
        rgb = to_mono(rgb)
        cam = cam.replace(red_gain=1.0, blue_gain=1.0, wb_error_r=0.0, wb_error_b=0.0)
    lin = unprocess(rgb, cam)
    light, flare = illumination(h, w, p), glare(h, w, p)
    if cam.mono:  # no colour filter array: the sensor sees the lights' brightness, not their colour
        light = np.repeat(light.mean(axis=2, keepdims=True), 3, axis=2)
        flare = np.repeat(flare.mean(axis=2, keepdims=True), 3, axis=2)
    gains = np.array([cam.red_gain, 1.0, cam.blue_gain], np.float32) / cam.rgb_gain
    dark = lin * light + flare / gains  # glare is light at the sensor, before the camera's gains
    noisy = add_sensor_noise(dark, cam, rng)
    if cam.mono:
        noisy = np.repeat(noisy[..., 1:2], 3, axis=-1)
    u8 = quantize_u8(process(noisy, cam))
    if cam.jpeg_quality > 0:
        u8 = jpeg_roundtrip(u8, cam.jpeg_quality)
    target = reprocess(lin * np.maximum(light, 1.0) + flare / gains, cam)
    return u8.astype(np.float32) / 255.0, target.astype(np.float32)


def reprocess(lin: np.ndarray, p: DegradeParams) -> np.ndarray:
    """The exact inverse of :func:`unprocess` (same gamma, no colour cast): the clean photo when
    ``lin`` is its unprocessed signal, anything brighter clipped at 1."""
    gains = np.array([p.red_gain, 1.0, p.blue_gain], np.float32) / p.rgb_gain
    return smoothstep(np.clip(lin * gains, 0.0, 1.0) ** (1.0 / p.gamma)).astype(np.float32)


def degrade_night_seeded(rgb: np.ndarray, seed: int, **pin) -> tuple[np.ndarray, np.ndarray, NightParams]:
    """Sample a night scene and noise from ``seed``; return ``(night frame, target, params)``."""
    rng = np.random.default_rng(seed)
    p = sample_night(rng, **pin)
    dark, target = degrade_night(rgb, p, rng)
    return dark, target, p
