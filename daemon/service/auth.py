"""HTTP authentication: bearer token and/or basic auth, secrets from the environment or
``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``), compared in constant time.

:func:`resolve_auth` turns ``http.auth`` into an :class:`Authenticator` (or None when no auth is
configured); the HTTP server asks :meth:`Authenticator.allows` for every request but
``/healthz`` (and ``/metrics`` when ``metrics_open``), and answers 401 with
:meth:`Authenticator.challenge` otherwise. The secrets never leave this object: not in logs,
errors, ``repr`` or answers.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Mapping

from daemon.config import ConfigError, HttpAuthConfig, resolve_secret

REALM = "duskwatch"
OPEN_PATHS = frozenset({"/healthz"})


class Authenticator:
    """Checks an ``Authorization`` header against the configured token and/or user+password."""

    def __init__(self, token: str | None, user: str | None, password: str | None,
                 metrics_open: bool = False):
        self._token = token.encode() if token else None
        self._basic = f"{user}:{password}".encode() if user and password is not None else None
        self.metrics_open = metrics_open

    def __repr__(self) -> str:
        return (f"Authenticator(bearer={self._token is not None}, basic={self._basic is not None},"
                f" metrics_open={self.metrics_open})")

    def needs_auth(self, path: str) -> bool:
        """Whether ``path`` asks for credentials."""
        return not (path in OPEN_PATHS or (self.metrics_open and path == "/metrics"))

    def allows(self, header: str | None) -> bool:
        """True when ``header`` (the request's ``Authorization``) carries a valid credential."""
        if not header or len(header) > 4096:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self._token is not None:
            return hmac.compare_digest(value.encode(), self._token)
        if scheme.lower() == "basic" and self._basic is not None:
            try:
                given = base64.b64decode(value.encode(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._basic)
        return False

    def challenge(self) -> list[str]:
        """``WWW-Authenticate`` values for a 401 answer."""
        out = []
        if self._token is not None:
            out.append(f'Bearer realm="{REALM}"')
        if self._basic is not None:
            out.append(f'Basic realm="{REALM}", charset="UTF-8"')
        return out


def resolve_auth(cfg: HttpAuthConfig | None,
                 environ: Mapping[str, str] | None = None) -> Authenticator | None:
    """The authenticator for ``cfg``; :class:`ConfigError` when a secret cannot be read or is
    empty (an empty token would let an empty header in)."""
    if cfg is None:
        return None
    token = resolve_secret("http.auth bearer token", cfg.bearer_token_env,
                           cfg.bearer_token_credential, environ)
    password = resolve_secret("http.auth basic password", cfg.basic_password_env,
                              cfg.basic_password_credential, environ)
    if token is not None and len(token) < 16:
        raise ConfigError("http.auth: the bearer token is shorter than 16 characters; use a "
                          "random one (`openssl rand -hex 32`)")
    if cfg.basic_user and not password:
        raise ConfigError("http.auth: the basic-auth password is empty; set one")
    return Authenticator(token, cfg.basic_user, password, cfg.metrics_open)


def auth_secrets(auth: Authenticator | None) -> list[str]:
    """The secrets an authenticator holds, for the log filter to mask."""
    if auth is None:
        return []
    out = []
    if auth._token:
        out.append(auth._token.decode())
    if auth._basic:
        out.append(auth._basic.decode().split(":", 1)[1])
    return [s for s in out if s]
