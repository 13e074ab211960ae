"""Reading the config file with every input bounded: size, nesting, node count, duplicate keys.

The YAML text comes from an operator's editor, a configuration-management tool or a half-written
file; whatever it holds, :func:`read_mapping` either returns a plain mapping or raises
:class:`ConfigFileError` with one readable line. It never raises anything else (no
``UnicodeDecodeError``, no ``RecursionError``, no ``MemoryError`` from a billion-laughs file):

- the file is read with a size cap (:data:`MAX_BYTES`), so a 50 MB file costs no time;
- the event stream is scanned *before* anything is built: nesting deeper than
  :data:`MAX_DEPTH` and more than :data:`MAX_NODES` nodes (aliases counted at their expanded
  size) are refused; PyYAML's event parser is iterative, so the scan itself cannot recurse;
- a key that appears twice in one mapping is an error (PyYAML keeps the last one silently, so a
  second ``cameras:`` used to replace the first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from daemon.textsafe import shown

MAX_BYTES = 1 << 20  # 1 MiB: a config with a thousand cameras is ~200 KiB
MAX_DEPTH = 32  # the schema nests 4 levels deep
MAX_NODES = 100_000  # scalars + collections, aliases at their expanded size


class ConfigFileError(ValueError):
    """The file cannot be read as a bounded YAML mapping; ``str(err)`` says why and the fix."""


def read_text(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """The file's text, refused when larger than ``max_bytes`` or not UTF-8."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigFileError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ConfigFileError(f"{p}: config is larger than {max_bytes // 1024} KiB; this is not "
                              "a duskwatch config (check the path)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{p}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x});"
                              " this is not a YAML config (a binary file, or a wrong encoding)") \
            from None


def check_shape(text: str, where: str, max_depth: int = MAX_DEPTH,
                max_nodes: int = MAX_NODES) -> None:
    """Scan ``text``'s YAML events; raise when it nests too deep or expands to too many nodes."""
    stack: list[list[Any]] = []  # [anchor, node count] per open collection
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            size = 0
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([event.anchor, 1])
                if len(stack) > max_depth:
                    raise ConfigFileError(_at(event, where, f"nested more than {max_depth} levels "
                                                            "deep; a duskwatch config nests 4"))
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, size = stack.pop()
                if anchor:
                    sizes[anchor] = size
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                size = sizes.get(event.anchor, 1)
            else:
                continue
            total += size if not stack else 0
            if stack:
                stack[-1][1] += size
            if total + sum(s for _, s in stack) > max_nodes:
                raise ConfigFileError(_at(event, where, f"expands to more than {max_nodes} values "
                                                        "(deep aliases?); write the config out plainly"))
    except yaml.YAMLError as exc:
        raise ConfigFileError(yaml_reason(exc, where)) from None


def _at(event: yaml.Event, where: str, what: str) -> str:
    mark = event.start_mark
    return f"{where}: line {mark.line + 1}: {what}" if mark else f"{where}: {what}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {shown(key)} is given twice (first on line {first}); remove one "
                    "(the second would silently replace the first)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _UniqueKeyLoader.construct_mapping)


def yaml_reason(exc: yaml.YAMLError, where: str) -> str:
    """One line: where the YAML error is and what it is."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: not valid YAML{at}: {problem}"


def parse_mapping(text: str, where: str) -> dict[str, Any]:
    """A bounded, duplicate-free YAML mapping from ``text`` (``{}`` for an empty document)."""
    check_shape(text, where)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigFileError(yaml_reason(exc, where)) from None
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:
        raise ConfigFileError(f"{where}: cannot be read as YAML ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{where}: the top level must be a mapping with 'cameras' and "
                              "'engines'")
    return data


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read ``path`` as a bounded YAML mapping; raise :class:`ConfigFileError` with the reason."""
    return parse_mapping(read_text(path), str(path))
