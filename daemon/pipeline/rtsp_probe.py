"""Why could a stream not be opened? A small RTSP probe that turns a failure into a reason.

OpenCV only says "not opened". After a failed open, the source asks this module, which connects
once more and sends one ``DESCRIBE``: the answer tells an unreachable host from a refused port,
a port that speaks something else, a wrong path (404) and refused credentials (401). Reasons
never contain the password. The probe sends credentials only in answer to a 401 challenge from
the camera's own host (Basic or Digest, as asked), as the real client does: never unprompted.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import time
from urllib.parse import SplitResult, unquote, urlsplit


def diagnose(url: str, timeout: float) -> str:
    """A short, credential-free reason why ``url`` could not be opened (best effort).

    The first DESCRIBE carries no credentials. Only when the camera answers 401 with a challenge
    does a second DESCRIBE answer it (Basic or Digest, as challenged), over the same plain
    RTSP transport the URL names: a silent or foreign server never sees the password.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return "the file does not exist or cannot be decoded"
    if parts.scheme != "rtsp" or not parts.hostname:
        return "the stream could not be opened or decoded"
    where = f"{parts.hostname}:{parts.port or 554}"
    reply = _exchange(parts, describe_request(url, with_credentials=False), timeout)
    if isinstance(reply, str):
        return reply
    challenge = _challenge(reply)
    if challenge is not None and parts.username is not None:
        answer = describe_request(url, challenge=challenge)
        second = _exchange(parts, answer, timeout)
        if isinstance(second, str):
            return second
        return explain_reply(second, where, parts.path or "/", has_user=True)
    return explain_reply(reply, where, parts.path or "/", has_user=False)


def _exchange(parts: SplitResult, request: bytes, timeout: float) -> bytes | str:
    """Send ``request`` on a new connection; the reply's header, or a reason it failed."""
    port = parts.port or 554
    where = f"{parts.hostname}:{port}"
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
    except socket.timeout:
        return f"no answer from {where} within {timeout:g} s (host down, unreachable or filtered)"
    except ConnectionRefusedError:
        return f"connection refused by {where} (nothing listens on that port)"
    except OSError as exc:
        return f"cannot connect to {where} ({exc.strerror or type(exc).__name__})"
    with sock:
        try:
            sock.sendall(request)
            return read_reply(sock, deadline=time.monotonic() + timeout)
        except OSError:
            return f"{where} accepted the connection but did not answer an RTSP request"


def _challenge(reply: bytes) -> dict[str, str] | None:
    """The auth challenge of a 401 reply: ``{"scheme": "basic"|"digest", realm, nonce, ...}``."""
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace").split("\r\n")
    if len(head[0].split(" ")) < 2 or head[0].split(" ")[1] != "401":
        return None
    found: dict[str, str] | None = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() != "www-authenticate":
            continue
        scheme, _, rest = value.strip().partition(" ")
        params = {k.lower(): v for k, v in _AUTH_PARAM.findall(rest)}
        params = {k: v.strip('"') for k, v in params.items()}
        params["scheme"] = scheme.lower()
        if params["scheme"] == "digest" or found is None:  # prefer Digest when both are offered
            found = params
    return found


_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)=("[^"]*"|[^,\s]+)')


def describe_request(url: str, *, challenge: dict[str, str] | None = None,
                     with_credentials: bool = True) -> bytes:
    """An RTSP DESCRIBE for ``url``. Credentials go in an ``Authorization`` header only when
    answering ``challenge`` (Basic, or Digest per RFC 2617); never in the request line."""
    parts = urlsplit(url)
    host = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    target = f"rtsp://{host}:{parts.port or 554}{parts.path or '/'}"
    if parts.query:
        target += f"?{parts.query}"
    lines = [f"DESCRIBE {target} RTSP/1.0", f"CSeq: {2 if challenge else 1}",
             "Accept: application/sdp", "User-Agent: duskwatch-probe"]
    if with_credentials and challenge is not None and parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        lines.append("Authorization: " + _authorization(challenge, user, password, target))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _authorization(challenge: dict[str, str], user: str, password: str, uri: str) -> str:
    if challenge.get("scheme") != "digest":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"DESCRIBE:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in challenge.get("qop", "").split(","):
        cnonce = secrets.token_hex(8)
        response = _md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def read_reply(sock: socket.socket, limit: int = 8192, deadline: float | None = None) -> bytes:
    """Bytes up to the end of the reply's header (or ``limit``, the peer closing, or
    ``deadline``: a server that trickles bytes cannot hold the probe longer)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("reply not complete before the deadline")
            sock.settimeout(left)
        chunk = sock.recv(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def explain_reply(reply: bytes, where: str, path: str, *, has_user: bool) -> str:
    """Turn the first line (and the auth challenge) of an RTSP reply into a reason."""
    if not reply:
        return f"{where} closed the connection without answering an RTSP request"
    head = reply.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if not head.startswith("RTSP/1."):
        return f"{where} does not speak RTSP (it answered {len(reply)} bytes of something else)"
    fields = head.split(" ", 2)
    code = fields[1] if len(fields) > 1 else "?"
    text = fields[2] if len(fields) > 2 else ""
    if code == "401":
        scheme = "Digest" if b"digest" in reply.lower() else "Basic"
        if has_user:
            return (f"{where} rejected the credentials (401 Unauthorized, {scheme} auth); "
                    "check the user and the password (password_env/password_credential)")
        return (f"{where} needs credentials (401 Unauthorized); put the user in the URL and the "
                "password in password_env or password_credential")
    if code == "404":
        return f"{where} has no stream at path '{path}' (404 Not Found); check the URL's path"
    if code.startswith("2"):
        return f"{where} answered DESCRIBE ({code}) but the stream could not be opened or decoded"
    return f"{where} answered {code} {text}".strip()
