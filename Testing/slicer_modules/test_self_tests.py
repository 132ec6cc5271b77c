"""The modules' self-tests (what ``ctest py_SASANSlicer`` and "Reload and Test" run inside Slicer), read with ast.

Slicer's ctest runs ``unittest`` on the module file: every ``test_*`` method on its own, in alphabetical
order, in a fresh Slicer whose Python may lack PyYAML, PyTorch... So each test must begin with the shared
set-up (``self.requireDependencies``), which never installs while Slicer runs tests; none may call the
installing ``ensureDependencies`` itself; ``runTest`` ("Reload and Test") must run them all.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("SASANSlicer", "SASANTrainer")


def self_test_class(module: str) -> ast.ClassDef:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}Test"]
    return cls


def methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def called_attributes(node: ast.AST) -> list[str]:
    """``x.name`` of every call ``x.name(...)`` inside ``node``, in source order."""
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    return [c.func.attr for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def is_self_call(statement: ast.stmt, name: str) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Attribute) and statement.value.func.attr == name
            and isinstance(statement.value.func.value, ast.Name) and statement.value.func.value.id == "self")


@pytest.mark.parametrize("module", MODULES)
def test_every_test_method_starts_with_the_shared_set_up(module):
    tests = {name: method for name, method in methods(self_test_class(module)).items() if name.startswith("test_")}
    assert tests
    for name, method in tests.items():
        body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        assert is_self_call(body[0], "requireDependencies"), f"{module}Test.{name} must start with it"
        assert "ensureDependencies" not in called_attributes(method), f"{module}Test.{name} may install packages"
        assert "ensurePackages" not in called_attributes(method), f"{module}Test.{name} may install packages"


@pytest.mark.parametrize("module", MODULES)
def test_run_test_runs_every_test_after_set_up(module):
    found = methods(self_test_class(module))
    tests = sorted(name for name in found if name.startswith("test_"))
    run = found["runTest"]
    run_names = [n.attr for n in ast.walk(run) if isinstance(n, ast.Attribute) and n.attr.startswith("test_")]
    assert sorted(run_names) == tests
    assert "setUp" in called_attributes(run)


@pytest.mark.parametrize("module", MODULES)
def test_shared_set_up_is_the_one_that_skips_while_testing(module):
    """``requireDependencies`` hands over to ``SASANSlicerLib.dependencies.require_test_dependencies``, which
    installs only outside testing mode and otherwise skips naming what is missing (run under stubs in
    test_module_files_load)."""
    require = methods(self_test_class(module))["requireDependencies"]
    assert "require_test_dependencies" in {getattr(n.func, "id", None) for n in ast.walk(require)
                                         if isinstance(n, ast.Call)}
