"""Why could a stream not be opened? A small RTSP probe that turns a failure into a reason.

OpenCV only says "not opened". After a failed open, the source asks this module, which connects
once more and sends one ``DESCRIBE``: the answer tells an unreachable host from a refused port,
a port that speaks something else, a wrong path (404) and refused credentials (401). Reasons
never contain the password; the probe sends it only to the camera's own host, as the real client
does.
"""

from __future__ import annotations

import base64
import socket
from urllib.parse import unquote, urlsplit


def diagnose(url: str, timeout: float) -> str:
    """A short, credential-free reason why ``url`` could not be opened (best effort)."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return "the file does not exist or cannot be decoded"
    if parts.scheme != "rtsp" or not parts.hostname:
        return "the stream could not be opened or decoded"
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
        sock.settimeout(timeout)
        try:
            sock.sendall(describe_request(url))
            reply = read_reply(sock)
        except OSError:
            return f"{where} accepted the connection but did not answer an RTSP request"
    return explain_reply(reply, where, parts.path or "/", has_user=parts.username is not None)


def describe_request(url: str) -> bytes:
    """An RTSP DESCRIBE for ``url`` (credentials go in a Basic header, not the request line)."""
    parts = urlsplit(url)
    host = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    target = f"rtsp://{host}:{parts.port or 554}{parts.path or '/'}"
    if parts.query:
        target += f"?{parts.query}"
    lines = [f"DESCRIBE {target} RTSP/1.0", "CSeq: 1", "Accept: application/sdp",
             "User-Agent: duskwatch-probe"]
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(cred).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket, limit: int = 8192) -> bytes:
    """Bytes up to the end of the reply's header (or ``limit``, or the peer closing)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
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
