"""NVIDIA Triton Inference Server backend: an engine that is a model on a shared server.

::

    triton://HOST:PORT/MODEL            KServe v2 over gRPC (Triton's port 8001)
    triton+http://HOST:PORT/MODEL       the same over HTTP (port 8000)
    ...?tls=1&ca=/etc/ssl/ca.pem        TLS (``triton+https://`` is HTTP with TLS)
    ...?timeout=5                       the deadline of every call, seconds (default 5)
    ...?token_env=NAME                  a bearer token from an environment variable, or
    ...?token_credential=NAME           from ``$CREDENTIALS_DIRECTORY/NAME`` (systemd), sent as
    ...?header=x-api-key                ``authorization: Bearer TOKEN`` or in the named header
    ...?version=2                       a model version (default: the server's policy)

A token is never written in the URL (the URL is logged and shown; the token is not). The model's
names, shapes, dtypes and largest batch come from the server (model metadata and config) and are
checked like a local engine's; the metadata a local engine reads from its JSON sidecar comes from
the model config's ``duskwatch`` parameter (``duskwatch export triton`` writes it).

What goes on the wire (``wire`` in that parameter): frames travel as uint8 (a quarter of float32)
when the model's input is declared ``UINT8`` with ``input_scale``; the server divides by the
scale, which gives the very floats the local engine sees. Outputs may be declared FP16 (half the
bytes); they are widened to float32 here. The engine reports the model's own tensors (float32),
so the detector and the enhancer do not know the difference.

Faults cost frames, never the caller: a failed call raises :class:`~engines.base.EngineError`
naming the server, the model and the reason; the next calls fail fast (``inference
unavailable``) until a capped exponential backoff has passed, then one call tries a fresh
connection. :attr:`TritonEngine.available` says which state it is in (the daemon's ``/readyz``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import numpy as np

from engines.base import Engine, EngineError, EngineUnavailable, TensorSpec

log = logging.getLogger(__name__)

SCHEMES = {"triton": ("grpc", False), "triton+grpc": ("grpc", False),
           "triton+http": ("http", False), "triton+https": ("http", True)}
DEFAULT_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S, BACKOFF_MAX_S = 0.25, 4.0
_OPTIONS = {"tls", "ca", "timeout", "token_env", "token_credential", "header", "version"}
_INSTALL_FIX = "pip install 'duskwatch[triton]' (tritonclient[grpc,http])"


def is_triton_url(path: Any) -> bool:
    """Whether an engine argument names a Triton model rather than a file."""
    return isinstance(path, str) and urlsplit(path).scheme in SCHEMES


@dataclass(frozen=True)
class TritonTarget:
    """A parsed ``triton://`` URL. ``str()`` is the URL as written (it holds no secret)."""

    url: str
    protocol: str  # grpc | http
    address: str  # host:port
    model: str
    version: str = ""
    tls: bool = False
    ca: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    header: str = "authorization"
    token_env: str | None = None
    token_credential: str | None = None

    @property
    def name(self) -> str:
        """Short name for messages and labels: ``MODEL@HOST:PORT``."""
        return f"{self.model}@{self.address}"

    def __str__(self) -> str:
        return self.url

    def headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
        """The auth header to send, or ``None``. The value never goes to a log."""
        token = _read_token(self, os.environ if environ is None else environ)
        if token is None:
            return None
        value = f"Bearer {token}" if self.header == "authorization" else token
        return {self.header: value}


def parse_url(url: str) -> TritonTarget:
    """``triton://HOST:PORT/MODEL?options`` -> :class:`TritonTarget`; a clear error otherwise."""
    parts = urlsplit(url)
    base = url.split("?")[0]  # messages never repeat the query: unknown options may be secrets
    if parts.scheme not in SCHEMES:
        raise EngineError(f"{base}: not a Triton URL; write triton://HOST:PORT/MODEL "
                          f"(schemes {', '.join(sorted(SCHEMES))})")
    protocol, tls = SCHEMES[parts.scheme]
    if parts.username or parts.password:
        raise EngineError(f"{parts.scheme}://{parts.hostname}...: a Triton URL carries no "
                          "user or password; pass a token with ?token_env=NAME or "
                          "?token_credential=NAME")
    try:
        port = parts.port
    except ValueError:
        port = None
    model = parts.path.strip("/")
    if not parts.hostname or port is None or not model or "/" in model:
        raise EngineError(f"{base}: write a Triton model as {parts.scheme}://HOST:PORT/MODEL "
                          "(one model name, the server's gRPC or HTTP port)")
    opts = _query_options(base, parts.query)
    return TritonTarget(
        url=url, protocol=protocol, address=f"{parts.hostname}:{port}", model=model,
        version=opts.get("version", ""), tls=tls or _flag(base, opts.get("tls", "0")),
        ca=opts.get("ca"), timeout_s=_timeout(base, opts.get("timeout")),
        header=opts.get("header", "authorization").lower(), token_env=opts.get("token_env"),
        token_credential=opts.get("token_credential"))


def _query_options(url: str, query: str) -> dict[str, str]:
    raw = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(raw) - _OPTIONS)
    if "token" in unknown or "password" in unknown:
        raise EngineError(f"{url}: never put a token in the URL (it is logged); use "
                          "?token_env=NAME (an environment variable) or ?token_credential=NAME")
    if unknown:
        raise EngineError(f"{url}: unknown option(s) {unknown} (values not shown); known: "
                          f"{sorted(_OPTIONS)}")
    return {k: v[-1] for k, v in raw.items()}


def _flag(url: str, text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise EngineError(f"{url}: tls must be 1 or 0")


def _timeout(url: str, text: str | None) -> float:
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise EngineError(f"{url}: timeout={text[:20]!r}; give the deadline of a call in seconds "
                          "(0 < timeout <= 600)")
    return value


def _read_token(target: TritonTarget, environ: Mapping[str, str]) -> str | None:
    if target.token_env:
        token = environ.get(target.token_env)
        if not token:
            raise EngineError(f"{target.name}: token_env={target.token_env} but that environment "
                              "variable is not set or empty")
        return token.strip()
    if target.token_credential:
        cred_dir = environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise EngineError(f"{target.name}: token_credential={target.token_credential} but "
                              "$CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)")
        try:
            return (Path(cred_dir) / target.token_credential).read_text().strip()
        except OSError as exc:
            raise EngineError(f"{target.name}: cannot read credential "
                              f"{target.token_credential}: {exc.strerror}") from None
    return None


# -- the client: one seam for gRPC and HTTP ---------------------------------------------------
@dataclass
class _Client:
    """tritonclient's gRPC or HTTP client behind the four calls this engine makes."""

    target: TritonTarget
    headers: dict[str, str] | None
    _client: Any = field(init=False, default=None)
    _module: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        t = self.target
        try:
            if t.protocol == "grpc":
                import tritonclient.grpc as module

                certs = Path(t.ca).read_bytes() if t.ca else None
                self._client = module.InferenceServerClient(t.address, ssl=t.tls,
                                                            root_certificates=certs)
            else:
                import tritonclient.http as module

                opts = {"ca_certs": t.ca} if t.ca else {}
                self._client = module.InferenceServerClient(
                    t.address, ssl=t.tls, ssl_options=opts, connection_timeout=t.timeout_s,
                    network_timeout=t.timeout_s)
        except ImportError as exc:
            raise EngineError(f"{t.url}: the Triton client is not installed ({exc}); "
                              f"{_INSTALL_FIX}") from exc
        except OSError as exc:
            raise EngineError(f"{t.url}: cannot read the CA file {t.ca}: {exc.strerror}") from exc
        self._module = module

    def metadata(self) -> dict[str, Any]:
        kw = self._kw()
        return self._client.get_model_metadata(self.target.model, self.target.version, **kw)

    def config(self) -> dict[str, Any]:
        cfg = self._client.get_model_config(self.target.model, self.target.version, **self._kw())
        return cfg.get("config", cfg)

    def infer(self, arrays: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        m = self._module
        inputs = []
        for name, arr in arrays.items():
            inp = m.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        wanted = [m.InferRequestedOutput(n) for n in outputs]
        kw: dict[str, Any] = {"headers": self.headers}
        if self.target.protocol == "grpc":
            kw["client_timeout"] = self.target.timeout_s
        result = self._client.infer(self.target.model, inputs, model_version=self.target.version,
                                    outputs=wanted, **kw)
        return {n: result.as_numpy(n) for n in outputs}

    def _kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"headers": self.headers}
        if self.target.protocol == "grpc":
            kw.update(as_json=True, client_timeout=self.target.timeout_s)
        return kw

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


# -- the engine --------------------------------------------------------------------------------
class TritonEngine(Engine):
    """A model served by Triton, run with the scheduler's batches as they are."""

    backend = "triton"

    def __init__(self, path: "str | TritonTarget", device: str = "auto",
                 client_factory: Callable[[TritonTarget, Any], Any] = _Client,
                 clock: Callable[[], float] = time.monotonic, **_: Any):
        """``device`` is the server's business and is ignored. ``client_factory`` and ``clock``
        are the seams tests use."""
        self.target = path if isinstance(path, TritonTarget) else parse_url(str(path))
        self.path = self.target  # messages print the URL; .name is MODEL@HOST:PORT
        self._headers = self.target.headers()
        self._factory, self._clock = client_factory, clock
        self._lock = threading.Lock()
        self._client = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self.last_error: str | None = None
        self.wire = {"calls": 0, "failed_calls": 0, "frames": 0, "bytes_sent": 0,
                     "bytes_received": 0}
        self.device = f"triton:{self.target.address}"
        meta, cfg = self._describe()
        self.provider = f"triton/{meta.get('platform') or cfg.get('backend') or '?'}"
        self.metadata = parse_parameters(self.target, cfg)
        self.max_batch_size = int(cfg.get("max_batch_size", 0) or 0)
        self.batch_limits = (1, self.max_batch_size) if self.max_batch_size else None
        self._wire_in = [_spec(self.target, t, self.max_batch_size) for t in meta.get("inputs", [])]
        self._wire_out = [_spec(self.target, t, self.max_batch_size) for t in meta.get("outputs", [])]
        self.input_scale = float(self.metadata.get("wire", {}).get("input_scale", 0) or 0)
        self.inputs = [self._model_side(s, self.input_scale) for s in self._wire_in]
        self.outputs = [self._model_side(s, 1.0) for s in self._wire_out]
        if not self.inputs or not self.outputs:
            raise EngineError(f"{self.target}: model declares no inputs or no outputs; check its "
                              "config.pbtxt")

    # -- state -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return self.last_error is None

    def status(self) -> str:
        """``available`` or ``unavailable: REASON`` (for /readyz and logs)."""
        return "available" if self.available else f"unavailable: {self.last_error}"

    # -- opening -----------------------------------------------------------------------------
    def _describe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        client = self._connect()
        try:
            return client.metadata(), client.config()
        except Exception as exc:  # noqa: BLE001 - tritonclient raises several types
            error = EngineUnavailable if _unreachable(exc) else EngineError
            raise error(f"{self.target}: cannot read model '{self.target.model}' from the "
                              f"Triton server at {self.target.address} ({_reason(exc)}); is the "
                              "server up and the model loaded (GET /v2/models/MODEL/ready)?") from exc

    def _connect(self) -> Any:
        if self._client is None:
            self._client = self._factory(self.target, self._headers)
        return self._client

    @staticmethod
    def _model_side(spec: TensorSpec, input_scale: float) -> TensorSpec:
        """The tensor as the model computes it: uint8 inputs with a scale and fp16 outputs are
        wire encodings of float32."""
        if spec.dtype == np.uint8 and input_scale or spec.dtype == np.float16:
            return TensorSpec(spec.name, spec.shape, np.dtype(np.float32))
        return spec

    # -- running -----------------------------------------------------------------------------
    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:  # one call at a time per engine: the scheduler's batches, in order
            now = self._clock()
            if self.last_error is not None and now < self._retry_at:
                raise EngineError(f"{self.target.name}: inference unavailable ({self.last_error});"
                                  f" next try in {self._retry_at - now:.1f} s")
            arrays = {s.name: self._encode(s, feed[s.name]) for s in self._wire_in}
            try:
                out = self._connect().infer(arrays, [s.name for s in self._wire_out])
            except Exception as exc:  # noqa: BLE001 - every client error is a failed call
                raise self._failed(exc) from exc
            self._recovered()
        self._count(arrays, out)
        return {s.name: _decode(out[s.name]) for s in self._wire_out}

    def _encode(self, spec: TensorSpec, value: Any) -> np.ndarray:
        arr = value if isinstance(value, np.ndarray) else np.asarray(
            value.detach().cpu() if hasattr(value, "detach") else value)
        if spec.dtype == np.uint8 and self.input_scale and arr.dtype != np.uint8:
            return np.clip(np.rint(arr * np.float32(self.input_scale)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr, dtype=spec.dtype)

    def _failed(self, exc: BaseException) -> EngineError:
        reason = _reason(exc)
        self.wire["failed_calls"] += 1
        first = self.last_error is None
        self.last_error = reason
        self._backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_INITIAL_S, self._backoff_s * 2))
        self._retry_at = self._clock() + self._backoff_s
        if self._client is not None:  # a fresh connection at the next try
            self._client.close()
            self._client = None
        if first:
            log.error("Triton %s: inference unavailable: %s; retrying with backoff up to %.0f s",
                      self.target.name, reason, BACKOFF_MAX_S)
        return EngineError(f"{self.target.name}: Triton call failed ({reason}); next try in "
                           f"{self._backoff_s:.2f} s")

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.warning("Triton %s: inference available again", self.target.name)
        self.last_error, self._backoff_s = None, 0.0

    def _count(self, arrays: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        self.wire["calls"] += 1
        first = next(iter(arrays.values()))
        self.wire["frames"] += int(first.shape[0]) if self.max_batch_size else 1
        self.wire["bytes_sent"] += sum(a.nbytes for a in arrays.values())
        self.wire["bytes_received"] += sum(a.nbytes for a in out.values())

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


# -- helpers -----------------------------------------------------------------------------------
_TRITON_DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
                  "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
                  "FP64": np.float64}


def _spec(target: TritonTarget, tensor: Mapping[str, Any], max_batch: int) -> TensorSpec:
    """A model-metadata tensor -> :class:`TensorSpec` (``-1`` dimensions -> ``None``)."""
    dtype = _TRITON_DTYPES.get(str(tensor.get("datatype")))
    if dtype is None:
        raise EngineError(f"{target}: tensor '{tensor.get('name')}' has datatype "
                          f"{tensor.get('datatype')}, which no duskwatch model uses")
    shape = tuple(None if int(d) < 0 else int(d) for d in tensor.get("shape", []))
    if max_batch and shape and shape[0] is not None:
        shape = (None, *shape[1:])
    return TensorSpec(str(tensor["name"]), shape, np.dtype(dtype))


def parse_parameters(target: TritonTarget, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON sidecar that ``duskwatch export triton`` stored in the model config's
    ``duskwatch`` parameter, or ``{}`` for a model it did not write."""
    import json

    param = (cfg.get("parameters") or {}).get("duskwatch")
    if not param:
        return {}
    text = param.get("string_value", "") if isinstance(param, Mapping) else str(param)
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise EngineError(f"{target}: the model's 'duskwatch' parameter is not JSON ({exc}); "
                          "write the repository again with `duskwatch export triton`") from exc
    return meta if isinstance(meta, dict) else {}


def _decode(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _unreachable(exc: BaseException) -> bool:
    """A connection that failed or timed out (the server is down or slow), not an answer."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    text = _reason(exc)
    return any(w in text for w in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "Connection refused",
                                   "failed to connect"))


def _reason(exc: BaseException) -> str:
    """A one-line reason from a tritonclient, gRPC or socket error (no headers, no payload)."""
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    msg = getattr(exc, "message", None)
    msg = msg() if callable(msg) else (msg or str(exc))
    text = f"{status}: {msg}" if status else f"{type(exc).__name__}: {msg}"
    return " ".join(str(text).split())[:300]
