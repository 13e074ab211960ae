"""Operator-written text made safe to echo in an error message or a log line."""

from __future__ import annotations

from typing import Any

#: Most characters of an operator's value echoed in an error (the rest is counted, not shown).
SHOWN_MAX = 64


def shown(value: Any, limit: int = SHOWN_MAX) -> str:
    """``value`` quoted for an error message or a log line: control characters, escape
    sequences, line and paragraph separators and quotes escaped (a crafted name cannot forge
    a journal line), and at most ``limit`` characters, the rest counted."""
    text = value if isinstance(value, str) else str(value)
    head = "".join(_escaped(c) for c in text[:limit])
    more = f"... ({len(text) - limit} more characters)" if len(text) > limit else ""
    return f"'{head}'{more}"


def _escaped(c: str) -> str:
    if c in "'\\":
        return "\\" + c
    if c.isprintable():
        return c
    return c.encode("unicode_escape").decode("ascii")


def one_line(text: str, limit: int = 400) -> str:
    """``text`` (say, a library's exception message, which may quote a path) on one line:
    whitespace runs collapsed, other control characters escaped, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    cut = "".join(c if c.isprintable() else _escaped(c) for c in flat[:limit])
    return cut + ("..." if len(flat) > limit else "")
