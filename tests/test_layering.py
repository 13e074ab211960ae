"""The layering the README states, read from the source: every ``import`` in every module,
including the lazy ones inside functions.

* ``engines`` imports neither ``daemon`` nor ``export``; ``daemon`` and ``export`` never import
  each other (they share only ``engines``).
* Inside ``daemon``: the pipeline (and the config and metrics contracts it uses) never imports
  the service, the command line, the benchmarks or the installer; the service never imports the
  command line, the benchmarks or the installer.
* No cycles among the modules' top-level imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "engines", "export")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute module names ``path`` imports (``from a.b import c`` gives a.b and a.b.c)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


MODULES = project_modules()

# (importer prefix, forbidden prefixes)
RULES = [
    ("engines", ("daemon", "export")),
    ("daemon", ("export",)),
    ("export", ("daemon",)),
    ("daemon.pipeline", ("daemon.service", "daemon.cli", "daemon.bench", "daemon.install")),
    ("daemon.config", ("daemon.pipeline", "daemon.service", "daemon.cli", "daemon.bench", "daemon.install")),
    ("daemon.metrics", ("daemon.service", "daemon.cli", "daemon.bench", "daemon.install")),
    ("daemon.service", ("daemon.cli", "daemon.bench", "daemon.install")),
    ("daemon.events", ("daemon.service", "daemon.cli", "daemon.bench", "daemon.install")),
]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in sorted(modules.items()):
        for importer, forbidden in RULES:
            if not _under(name, importer):
                continue
            targets = imports_of(path)
            for target in sorted(targets):
                if any(_under(target, o) for o in targets if o != target):
                    continue  # "from a.b import c": report a.b once
                if any(_under(target, f) for f in forbidden):
                    found.append(f"{name} imports {target}")
    return found


def find_cycle(modules: dict[str, Path]) -> list[str] | None:
    graph = {name: {t for t in imports_of(path, top_level_only=True) if t in modules and t != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_modules_were_found():
    assert {"engines.base", "daemon.pipeline.scheduler", "export.yolo"} <= set(MODULES)


def test_layers_import_only_downwards():
    assert violations(MODULES) == []


def test_no_import_cycles():
    assert find_cycle(MODULES) is None


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from daemon.config import Config\n", ["engines.fake imports daemon.config"]),
    ("import export.yolo\n", ["engines.fake imports export.yolo"]),
    ("import numpy\nfrom engines.base import Engine\n", []),
])
def test_the_checker_sees_lazy_and_plain_imports(tmp_path, source, expected):
    path = tmp_path / "fake.py"
    path.write_text(source)
    found = [v.replace(str(path), "") for v in violations({"engines.fake": path})]
    assert found == expected


def test_the_checker_finds_a_cycle(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import daemon.b\n")
    b.write_text("from daemon.a import x\n")
    assert find_cycle({"daemon.a": a, "daemon.b": b}) == ["daemon.a", "daemon.b", "daemon.a"]
