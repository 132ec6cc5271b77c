"""The engine's structure, read from its own imports: floors without loops, a torch-free ground floor.

Every import of every file under ``sasan/`` counts, also those inside functions (a lazy import is still a
dependency). A "room" is a top-level module (``sasan/config.py``) or a subpackage (``sasan/data/``): rooms
must form a DAG (no package loop, so no import points up a floor), and so must the files.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "sasan"
# What the Slicer module reads before torch may be installed: the vocabulary and the model card.
TORCH_FREE = ("sasan.config", "sasan.card")


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_imports(path: Path) -> set[str]:
    """The ``sasan`` modules that ``path`` imports, relative imports resolved, ``from X import name`` read as
    ``X.name`` where that is a module."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "sasan"}


def engine_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ENGINE.rglob("*.py")}
    return {name: {i for i in engine_imports(path) if i in files and i != name} for name, path in files.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a list of nodes (first == last), or [] when it is a DAG."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_cycle_finder_finds_a_loop_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_import_reader_resolves_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "sasan" / "data"
    package.mkdir(parents=True)
    (package / "x.py").write_text("from ..config import A\nfrom . import geometry\nimport sasan.card\n")
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", tmp_path / "sasan")
    assert engine_imports(package / "x.py") == {"sasan.config", "sasan.config.A", "sasan.data",
                                                "sasan.data.geometry", "sasan.card"}


def test_files_import_each_other_without_a_loop():
    assert find_cycle(engine_graph()) == []


def test_rooms_form_floors_without_a_package_loop():
    rooms: dict[str, set[str]] = {}
    for module, imported in engine_graph().items():
        rooms.setdefault(room(module), set()).update(room(i) for i in imported if room(i) != room(module))
    rooms.pop("sasan", None)  # the package's face (__init__: the version) is imported by all, imports none
    assert find_cycle(rooms) == []


@pytest.mark.parametrize("module", TORCH_FREE)
def test_ground_floor_imports_neither_torch_nor_yaml(module):
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'yaml', 'SimpleITK') if m in sys.modules)\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ENGINE.parent)
    assert done.stdout.strip() == ""


def test_engine_never_imports_slicer_or_qt():
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("slicer", "qt", "ctk", "vtk") for n in names), path
