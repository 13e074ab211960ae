"""The denoiser network: a small U-Net sized for speed.

* Pixel-unshuffle at the input (Shi et al. 2016, "Real-Time Single Image and Video
  Super-Resolution Using an Efficient Sub-Pixel CNN"): the first level runs at 1/``unshuffle``
  resolution, cutting cost ~``unshuffle**2`` times; the output is pixel-shuffled back.
* No attention at any resolution; a global-context branch at the bottleneck (squeeze-and-
  excitation style, Hu et al. 2018) lets the network see the frame's overall exposure, which a
  low-light enhancer needs and a purely local receptive field cannot give.
* Conditioned on the noise level ``eta`` through a sinusoidal embedding and per-block
  scale/shift (FiLM, Perez et al. 2018), as in diffusion U-Nets (Ho et al. 2020).

Inputs: ``x_t`` and the degraded frame ``y`` (both ``[N,3,H,W]``, H and W multiples of
:attr:`DenoiserUNet.multiple`) and a scalar ``eta``. Output: the clean-image estimate ``x0_hat``.

Two heads (``NetConfig.head``):

* ``"residual"`` (the first shipped weights): ``x0_hat = y + pixel_shuffle(1x1(features))``, an
  unbounded per-4x4-block correction of the (globally pre-gained) frame. Undertrained, it shows
  the 4x4 block pattern and can push any pixel anywhere.
* ``"curve"``: ``x0_hat`` is a bounded, smooth function of the dark frame itself (no pre-gain):
  a per-pixel blend towards a fixed Gaussian blur of ``y`` (denoising, or sharpening when
  negative), then the gain curve ``g x / (1 + (g - 1) x)`` with a per-pixel, per-channel gain
  ``g`` in ``[1/max_gain, max_gain]`` (:func:`gain_curve`), which maps [0, 1] onto [0, 1]
  monotonically: it can lift shadows (like Zero-DCE's curves, Guo et al. 2020, with one cheap
  rational curve instead of iterated quadratics) but never clips a highlight and never reorders
  brightness. The network predicts gain and blend at ``1/unshuffle`` resolution; they are
  upsampled bilinearly, so the output has no block structure whatever the weights (Odena et al.
  2016 on checkerboard artefacts of sub-pixel upsampling). The head is zero-initialised: a fresh
  network is the identity. The network sees ``[x_t, y]`` scaled by the frame's exposure gain
  (features only; the curve acts on the raw frame).
* ``"guided"`` (the picture for people, trained on real low/normal-light pairs): the curve head
  with an edge-aware denoiser in place of the fixed blur: a self-guided filter (He et al. 2010)
  whose smoothing strength is a fifth low-resolution map (:func:`guided_x0`). Real dark captures
  lifted 10-30x show their sensor noise; a guided filter averages it where the frame is flat and
  keeps edges, with no learned full-resolution weights (so still no block structure). Its
  network also sees how dark the frame is (log block means of ``y`` and log of the exposure
  gain): the curve head's exposure-normalised features hide that, and the gain a real capture
  needs depends on it (first LOL teacher without them: 16.3 dB on its validation crops).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


#: the heads a network can have; every head but ``residual`` is a bounded curve of the dark frame
HEADS = ("residual", "curve", "guided")
#: low-resolution maps each curve-type head predicts (gain per channel + blend [+ smoothing])
HEAD_MAPS = {"curve": 4, "guided": 5}


@dataclass(frozen=True)
class NetConfig:
    widths: tuple[int, ...] = (16, 32, 64, 96)
    unshuffle: int = 4
    emb: int = 64
    bottleneck_blocks: int = 2
    # levels whose encoder / decoder residual block is left out (identity): a cheaper student
    # can start from the teacher's weights minus these blocks (see distill.student_from_teacher)
    skip_enc: tuple[int, ...] = ()
    skip_dec: tuple[int, ...] = ()
    head: str = "residual"  # "residual" | "curve" | "guided" (see the module docstring)
    max_gain: float = 8.0  # the curve head's largest shadow gain (and 1/max_gain the smallest)
    upsample: str = "shuffle"  # decoder: "shuffle" (1x1 + pixel_shuffle(2)) | "bilinear" (1x1 + bilinear x2)
    work: int = 1  # the sampler runs at 1/work of the frame, then a guided upsampling (curve heads)
    edge_aware: bool = False  # guided head: gain maps upsampled against the frame's log-luminance
    headroom: float = 0.0  # curve heads: the share of each pixel's distance to white the output keeps

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"NetConfig.head {self.head!r}: use one of {', '.join(HEADS)}")
        if self.upsample not in ("shuffle", "bilinear"):
            raise ValueError(f"NetConfig.upsample {self.upsample!r}: use 'shuffle' or 'bilinear'")
        if self.work not in (1, 2, 4) or (self.work > 1 and not self.curve):
            raise ValueError(f"NetConfig.work {self.work!r}: use 1, or 2 or 4 with a curve or guided head")
        if self.edge_aware and self.head != "guided":
            raise ValueError("NetConfig.edge_aware needs head 'guided'")
        if not 0.0 <= self.headroom < 1.0 or (self.headroom and not self.curve):
            raise ValueError(f"NetConfig.headroom {self.headroom!r}: use 0 (none) or a value in (0, 1) with a curve or guided head")

    @property
    def multiple(self) -> int:
        """What the network's own input sides must be multiples of (at its working resolution)."""
        return self.unshuffle * 2 ** (len(self.widths) - 1)

    @property
    def frame_multiple(self) -> int:
        """What a frame's sides must be multiples of (the network's multiple at full resolution)."""
        return self.multiple * self.work

    @property
    def curve(self) -> bool:
        """A bounded-curve head (``curve`` or ``guided``): bridges to the dark frame itself."""
        return self.head != "residual"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = dict(d)
        for key in ("widths", "skip_enc", "skip_dec"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def eta_embedding(eta: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the noise level (Vaswani et al. 2017; Ho et al. 2020), ``[N, dim]``."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=eta.device) * (-math.log(1000.0) / half))
    args = eta.reshape(-1, 1).float() * 1000.0 * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """conv-act -> FiLM(eta) -> conv, plus the identity."""

    def __init__(self, ch: int, emb: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(emb, 2 * ch)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = F.leaky_relu(self.conv1(x), 0.1)
        return x + self.conv2(h * (1 + scale) + shift)


class SkipBlock(nn.Module):
    """A left-out residual block: the identity (its residual branch is zero)."""

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return x


class GlobalContext(nn.Module):
    """Frame-wide statistics -> per-channel scale and shift (no attention, O(HW))."""

    def __init__(self, ch: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(ch, ch), nn.LeakyReLU(0.1), nn.Linear(ch, 2 * ch))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mlp(x.mean(dim=(2, 3)))[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


def exposure_gain(y: torch.Tensor, target: float = 0.45, max_gain: float = 20.0) -> torch.Tensor:
    """``clamp(target / mean(y), 1, max_gain)`` per frame, ``[N,1,1,1]``."""
    return (target / (y.mean(dim=(1, 2, 3), keepdim=True) + 1e-4)).clamp(1.0, max_gain)


def gaussian_kernel(sigma: float = 1.2, radius: int = 2, channels: int = 3) -> torch.Tensor:
    """Depthwise ``[channels, 1, 2r+1, 2r+1]`` normalised Gaussian."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    k = torch.outer(g, g)
    return (k / k.sum()).expand(channels, 1, -1, -1).contiguous()


def gain_curve(x: torch.Tensor, g: torch.Tensor, g_minus_1: torch.Tensor) -> torch.Tensor:
    """``g x / (1 + (g - 1) x)``: for ``g > 0`` a monotone map of [0, 1] onto itself with 0 and 1
    fixed, slope ``g`` at black and ``1/g`` at white. It multiplies the shadows by up to ``g``
    and compresses, never clips, what is already bright (the Michaelis-Menten / Naka-Rushton
    form of photoreceptor adaptation, as in Reinhard et al. 2002's tone operator)."""
    return g * x / (1.0 + g_minus_1 * x)


def softsign(x: torch.Tensor) -> torch.Tensor:
    """``x / (1 + |x|)``: bounded in (-1, 1) like tanh, but its gradient decays polynomially, so
    a large pre-activation is never a dead one (float32 tanh is exactly 1 beyond ~9)."""
    return x / (1.0 + x.abs())


def curve_x0(y: torch.Tensor, maps: torch.Tensor, blur: torch.Tensor, max_gain: float) -> torch.Tensor:
    """The curve head's ``x0`` from ``maps`` ``[N,4,h,w]`` (gain logits per channel and one blend
    logit, at low resolution): ``g = max_gain ** softsign(.)``, blend ``b = softsign(.)``, both
    upsampled bilinearly to ``y``'s size; ``x0 = gain_curve(clamp(y + b (blur(y) - y)), g)``.

    ``b > 0`` denoises (towards a Gaussian blur of ``y``), ``b < 0`` sharpens; zero maps give
    ``g = 1, b = 0``: the identity. Every output is in [0, 1] and smooth across the low-res grid."""
    t = softsign(maps)
    low = torch.cat([torch.exp(t[:, :3] * math.log(max_gain)), t[:, 3:]], dim=1)
    up = F.interpolate(low, size=y.shape[-2:], mode="bilinear", align_corners=False)
    g, b = up[:, :3], up[:, 3:]
    pad = blur.shape[-1] // 2
    detail = F.conv2d(F.pad(y, (pad, pad, pad, pad), mode="replicate"), blur, groups=3) - y
    return gain_curve((y + b * detail).clamp(0.0, 1.0), g, g - 1.0)


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2r+1)^2`` window around each pixel (fewer pixels at the border)."""
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_smooth(y: torch.Tensor, eps: torch.Tensor, r: int = 2) -> torch.Tensor:
    """Self-guided filter (He, Sun and Tang 2010, "Guided Image Filtering"), per channel: in each
    window ``q = a y + b`` with ``a = var / (var + eps)``, so flat, noisy regions (variance below
    ``eps``) are averaged while edges (variance above it) are kept. ``eps`` is a per-pixel map;
    :func:`local_linear` with the frame as its own guide, no learned weights, no block structure."""
    a, b = local_linear(y, y, eps, r)
    return a * y + b


#: ITU-R BT.601 luma weights
LUMA = (0.299, 0.587, 0.114)
#: the edge-aware gain fit's regulariser, in squared natural-log units of luminance: cells whose
#: log-luminance varies less than ~0.2 (20 %) are treated as flat (their gains just averaged)
LOG_LUMA_EPS = 0.05


def channel_mix(x: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """``sum_c weights[c] x[:, c]`` as ``[N,1,H,W]``, written as a matrix product over the
    flattened pixels: ONNX Runtime's CPU ``ReduceSum``/``ReduceMean`` over the channel axis and a
    one-output 1x1 ``Conv`` (blocked to 16 channels, then reordered) took 5-20x as long."""
    n, c, h, w = x.shape
    return torch.matmul(x.new_tensor(weights).view(1, 1, c), x.reshape(n, c, h * w)).reshape(n, 1, h, w)


def luma(x: torch.Tensor) -> torch.Tensor:
    """``[N,1,H,W]`` luminance."""
    return channel_mix(x, LUMA)


def upsample(x: torch.Tensor, s: int) -> torch.Tensor:
    """Bilinear upsampling by the whole factor ``s`` (``align_corners=False``)."""
    return x if s == 1 else F.interpolate(x, scale_factor=float(s), mode="bilinear", align_corners=False)


def local_linear(guide: torch.Tensor, target: torch.Tensor, eps: torch.Tensor | float, r: int = 1):
    """Least-squares ``target ~ a guide + b`` in each ``(2r+1)^2`` window (the guided filter's
    coefficients, He et al. 2010), each averaged over the windows that hold the pixel. ``guide``
    has one channel or as many as ``target``; returns ``(a, b)`` shaped like ``target``."""
    m_i, m_p = box(guide, r), box(target, r)
    cov = box(guide * target, r) - m_i * m_p
    var = (box(guide * guide, r) - m_i * m_i).clamp_min(0.0)
    a = cov / (var + eps)
    return box(a, r), box(m_p - a * m_i, r)


def apply_linear(a: torch.Tensor, b: torch.Tensor, guide: torch.Tensor, s: int) -> torch.Tensor:
    """Upsample the coefficients ``a``, ``b`` (3 channels) ``s`` times bilinearly; ``a guide + b``."""
    return upsample(a, s) * guide + upsample(b, s)


def guided_upsample(frame: torch.Tensor, small: torch.Tensor, out: torch.Tensor, eps: torch.Tensor, s: int) -> torch.Tensor:
    """The full-resolution picture from ``out``, the enhanced ``small`` (``frame`` averaged down):
    ``out`` fitted locally as a linear function of ``small``'s luminance (scaled by the frame's
    exposure gain, so ``eps`` means the same at every exposure), applied to ``frame``'s luminance.
    Where ``out`` is flat and the frame noisy, ``a`` is ~0 and the noise stays out. Each pixel is
    kept within the range ``out`` spans in the 3 x 3 reduced pixels around it (no overshoot: the
    fit extrapolated to a pixel brighter than its window blew out lamps' rims: +0.45 points of
    clipped pixels on dark ExDark photos without it)."""
    g = exposure_gain(small)
    a, b = local_linear(luma(small) * g, out, eps)
    return within_neighbours(apply_linear(a, b, luma(frame) * g, s), out, s)


def within_neighbours(fine: torch.Tensor, coarse: torch.Tensor, s: int) -> torch.Tensor:
    """``fine`` (``s`` times ``coarse``'s size) kept within the range ``coarse`` spans in the 3 x 3
    coarse pixels around each fine one: a fit extrapolated past its neighbourhood (a pixel much
    brighter than its window) does not overshoot, as image scalers clamp ringing."""
    hi, lo = F.max_pool2d(coarse, 3, 1, 1), -F.max_pool2d(-coarse, 3, 1, 1)
    near = lambda t: F.interpolate(t, scale_factor=float(s), mode="nearest")  # noqa: E731
    return torch.minimum(torch.maximum(fine, near(lo)), near(hi))


def keep_headroom(out: torch.Tensor, frame: torch.Tensor, k: float) -> torch.Tensor:
    """``out`` kept at least ``k`` of ``frame``'s distance to white, per channel: ``1 - out >=
    k (1 - frame)``. A highlight roll-off, as a camera's tone curve has one: a lamp's halo keeps
    its gradation instead of being lifted to white (the frame's own clipped pixels stay clipped,
    dark pixels, far from white, are not touched). ``k = 0``: ``out`` itself."""
    return out if k <= 0 else torch.minimum(out, 1.0 - k * (1.0 - frame))


def log_luma(x: torch.Tensor) -> torch.Tensor:
    return torch.log(luma(x) + 1e-3)


def gain_maps_edge_aware(log_g: torch.Tensor, d: torch.Tensor, r: int, max_gain: float) -> torch.Tensor:
    """Per-pixel gains from the low-resolution log-gain maps ``log_g`` (cells of ``r x r`` pixels)
    by a local linear fit against the cells' log-luminance of the denoised frame ``d``, applied to
    each pixel's own log-luminance; bounded to the range the bilinear form can reach."""
    a, b = local_linear(torch.log(F.avg_pool2d(luma(d), r) + 1e-3), log_g, LOG_LUMA_EPS)
    log_px = apply_linear(a, b, log_luma(d), r)
    lo = math.log(1.0 / max_gain)
    return torch.exp(log_px.clamp(lo, math.log(20.0 * max_gain)))


def guided_x0(y: torch.Tensor, maps: torch.Tensor, max_gain: float, r: int, edge_aware: bool = False) -> torch.Tensor:
    """The guided head's ``x0`` from ``maps`` ``[N,5,h,w]`` at low resolution: gain logits per
    channel, a blend logit and a smoothing logit, upsampled bilinearly. The dark frame is first
    denoised edge-aware, ``d = y + b (guided_smooth(y, eps) - y)`` with ``b = softsign(.)`` in
    (-1, 1) and ``eps = 10 ** (2 softsign(.) - 4)`` (1e-6 .. 1e-2 of the [0, 1] range, squared:
    the noise variance it treats as flat), then lifted by the gain curve with
    ``g = exposure_gain(y) * max_gain ** softsign(.)``: the frame's own exposure gain
    (:func:`exposure_gain`, up to 20x) times a learned local factor. Real captures need gains of
    10-30 that a bounded logit reaches only where its gradient has vanished (the first LOL
    students stalled at a global brightness off by 0.3-2x); the frame-wide part is computed, the
    network corrects it. Zero maps give that exposure gain and no smoothing. ``edge_aware``: the
    gains reach full resolution by :func:`gain_maps_edge_aware` instead of bilinearly."""
    t = softsign(maps)
    base = torch.log(exposure_gain(y))
    log_g = t[:, :3] * math.log(max_gain) + base
    low = torch.cat([t[:, 3:4], 10.0 ** (2.0 * t[:, 4:5] - 4.0)] + ([] if edge_aware else [torch.exp(log_g)]), dim=1)
    up = upsample(low, r)
    b, eps = up[:, 0:1], up[:, 1:2]
    d = (y + b * (guided_smooth(y, eps) - y)).clamp(0.0, 1.0)
    if edge_aware:
        g = gain_maps_edge_aware(log_g, d, r, max_gain)
    else:
        g = up[:, 2:5]
    return gain_curve(d, g, g - 1.0)


def rms_normalize(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each pixel's feature vector by its root mean square over channels (RMSNorm without
    a gain, Zhang & Sennrich 2019): the curve head then sees features of a fixed scale, so its
    maps cannot be driven to saturation by the trunk's growth alone."""
    return h * torch.rsqrt(h.pow(2).mean(dim=1, keepdim=True) + eps)


#: channels of :func:`curve_features` (and with ``absolute``)
CURVE_FEATURES = 12
ABSOLUTE_FEATURES = 2


def curve_features(x_t: torch.Tensor, y: torch.Tensor, r: int, absolute: bool = False) -> torch.Tensor:
    """What the curve head's network sees, at ``1/r`` resolution: the local mean and standard
    deviation (texture and noise level) over ``r x r`` blocks of ``x_t`` and ``y``, scaled by the
    frame's exposure gain (so a dark and a bright version of a scene look alike to it).
    ``[N, 12, H/r, W/r]``. Pooling costs a few passes over the frame; a full ``pixel_unshuffle``
    of both inputs (what the residual head sees) cost more than the whole network at ``r = 8``."""
    g = exposure_gain(y)
    feats = []
    for v in (x_t, y):
        m = F.avg_pool2d(v, r)
        var = (F.avg_pool2d(v * v, r) - m * m).clamp_min(0.0)
        feats += [m * g, torch.sqrt(var + 1e-6) * g]
    if absolute:  # how dark the frame really is: the gain a real capture needs depends on it
        m_y = F.avg_pool2d(channel_mix(y, (1 / 3, 1 / 3, 1 / 3)), r)
        feats += [torch.log(m_y + 1e-3), torch.log(g).expand_as(m_y)]
    return torch.cat(feats, dim=1)


def space_to_depth_kernel(channels: int, r: int) -> torch.Tensor:
    """One-hot conv weights that reproduce ``F.pixel_unshuffle(x, r)`` exactly (same channel order).

    As a stride-``r`` convolution it exports to one ONNX ``Conv``, which ONNX Runtime runs several
    times faster than the 6-D ``Reshape/Transpose/Reshape`` that ``pixel_unshuffle`` becomes.
    """
    k = torch.zeros(channels * r * r, channels, r, r)
    for c in range(channels):
        for i in range(r):
            for j in range(r):
                k[c * r * r + i * r + j, c, i, j] = 1.0
    return k


class DenoiserUNet(nn.Module):
    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        w, r = cfg.widths, cfg.unshuffle
        in_ch = (CURVE_FEATURES + ABSOLUTE_FEATURES * (cfg.head == "guided")) if cfg.curve else 6 * r * r
        self.register_buffer("space_to_depth", space_to_depth_kernel(6, r), persistent=False)
        self.emb = nn.Sequential(nn.Linear(cfg.emb, cfg.emb), nn.LeakyReLU(0.1), nn.Linear(cfg.emb, cfg.emb))
        self.stem = nn.Conv2d(in_ch, w[0], 1)
        self.enc = nn.ModuleList([SkipBlock() if i in cfg.skip_enc else ResBlock(c, cfg.emb)
                                  for i, c in enumerate(w[:-1])])
        self.down = nn.ModuleList([nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(w[:-1], w[1:])])
        self.mid = nn.ModuleList([ResBlock(w[-1], cfg.emb) for _ in range(cfg.bottleneck_blocks)])
        self.context = GlobalContext(w[-1])
        per_up = 4 if cfg.upsample == "shuffle" else 1
        self.up = nn.ModuleList([nn.Conv2d(b, per_up * a, 1) for a, b in zip(w[:-1], w[1:])])
        self.dec = nn.ModuleList([SkipBlock() if i in cfg.skip_dec else ResBlock(c, cfg.emb)
                                  for i, c in enumerate(w[:-1])])
        if cfg.head == "residual":
            self.head = nn.Conv2d(w[0] + in_ch, 3 * r * r, 1)
        else:  # gain/blend(/smoothing) maps at 1/r resolution, zero-initialised: the identity at start
            self.head = nn.Conv2d(w[0] + in_ch, HEAD_MAPS[cfg.head], 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.register_buffer("blur", gaussian_kernel(), persistent=False)
        if cfg.work > 1:  # the guided upsampling's regulariser (log10), learned with the pairs
            self.guide_log_eps = nn.Parameter(torch.tensor(-3.0))

    @property
    def multiple(self) -> int:
        return self.cfg.multiple

    def shrink(self, frame: torch.Tensor) -> torch.Tensor:
        """The frame the network works on: averaged down ``work`` times (itself when 1)."""
        w = self.cfg.work
        return frame if w == 1 else F.avg_pool2d(frame, w)

    def expand(self, frame: torch.Tensor, small: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The full-resolution picture from ``out`` (the enhanced :meth:`shrink` of ``frame``),
        with its highlights rolled off (:func:`keep_headroom`, ``NetConfig.headroom``)."""
        if self.cfg.work > 1:
            out = guided_upsample(frame, small, out, 10.0 ** self.guide_log_eps, self.cfg.work).clamp(0.0, 1.0)
        return keep_headroom(out, frame, self.cfg.headroom)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        r = self.cfg.unshuffle
        if self.cfg.curve:
            inp = curve_features(x_t, y, r, absolute=self.cfg.head == "guided")
        else:
            inp = F.conv2d(torch.cat([x_t, y], dim=1), self.space_to_depth, stride=r)  # == pixel_unshuffle
        e = self.emb(eta_embedding(eta.expand(x_t.shape[0]), self.cfg.emb))
        h = self.trunk(self.stem(inp), e)
        if self.cfg.curve:
            out = self.head(torch.cat([rms_normalize(h), inp], dim=1))
            if self.cfg.head == "guided":
                return guided_x0(y, out, self.cfg.max_gain, r, self.cfg.edge_aware)
            return curve_x0(y, out, self.blur, self.cfg.max_gain)
        out = self.head(torch.cat([h, inp], dim=1))
        return F.pixel_shuffle(out, r) + y  # predict x0 as a correction of the degraded frame

    def trunk(self, h: torch.Tensor, e: torch.Tensor, upsample=None) -> torch.Tensor:
        """Encoder, bottleneck and decoder: stem features -> the head's features (same size).

        ``upsample(level, h)`` doubles ``h``'s resolution into ``level``'s width; the default is
        the trained 1x1 convolution + pixel shuffle (the exported graph swaps in an exact
        transposed-convolution form of the same map)."""
        up = upsample or self.upsample
        skips = []
        for block, down in zip(self.enc, self.down):
            h = block(h, e)
            skips.append(h)
            h = F.leaky_relu(down(h), 0.1)
        for i, block in enumerate(self.mid):
            h = block(h, e)
            if i == 0:
                h = self.context(h)
        for lvl in reversed(range(len(self.dec))):
            h = self.dec[lvl](up(lvl, h) + skips[lvl], e)
        return h

    def upsample(self, level: int, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.upsample == "bilinear":  # 1x1 first (linear, commutes with interpolation): cheaper
            return F.interpolate(self.up[level](h), scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.pixel_shuffle(self.up[level](h), 2)


def build_net(cfg: dict | NetConfig | None = None) -> DenoiserUNet:
    if cfg is None:
        cfg = NetConfig()
    elif isinstance(cfg, dict):
        cfg = NetConfig.from_dict(cfg)
    return DenoiserUNet(cfg)


def count_macs(net: DenoiserUNet, h: int, w: int) -> int:
    """Multiply-accumulates of one forward pass at ``h x w`` (convolutions and linears)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += out.numel() * k
        elif isinstance(mod, nn.Linear):
            macs += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        x = torch.zeros(1, 3, h, w)
        net(x, x, torch.tensor(0.5))
    for hd in handles:
        hd.remove()
    return macs
