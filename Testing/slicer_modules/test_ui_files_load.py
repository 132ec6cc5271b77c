"""The modules' .ui files load with a real Qt loader (PySide6's ``QUiLoader``, offscreen), the CTK and MRML widgets
standing in as plain placeholder widgets, and every ``self.ui.<name>`` the module code uses is a loaded widget that
has what the code asks of it: for Qt's own widget classes the attribute, property or signal really exists.

Slicer loads the same files with ``slicer.util.loadUI`` (Qt's ``QUiLoader`` with the CTK/MRML designer plugins);
test_extension_files checks the XML and the classes those custom widgets must have.
"""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("SASANSlicer", "SASANTrainer")

QtCore = pytest.importorskip("PySide6.QtCore", reason="loading .ui files needs PySide6 (the test extra)")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")


@pytest.fixture(scope="module")
def loader():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed
    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    loader = QtUiTools.QUiLoader()
    yield loader
    del application


def custom_widget_classes(path: Path) -> list[str]:
    return re.findall(r"<customwidget>\s*<class>(\w+)</class>", path.read_text(encoding="utf-8"))


PLACEHOLDERS: dict = {}  # kept alive: the loader holds only a reference it does not own


def load(loader, module: str):
    path = ROOT / module / "Resources" / "UI" / f"{module}.ui"
    for name in custom_widget_classes(path):  # a placeholder class of that name for each CTK / MRML widget
        if name not in PLACEHOLDERS:
            PLACEHOLDERS[name] = type(name, (QtWidgets.QWidget,), {})
            loader.registerCustomWidget(PLACEHOLDERS[name])
    file = QtCore.QFile(str(path))
    assert file.open(QtCore.QIODevice.ReadOnly)
    try:
        widget = loader.load(file)
    finally:
        file.close()
    assert widget is not None, loader.errorString()
    return widget


def code_uses(module: str) -> tuple[set[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """The widget names the module file uses as ``self.ui.<name>``, its ``(name, attribute)`` uses and its
    ``(name, signal)`` connections."""
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    names = set(re.findall(r"self\.ui\.(\w+)", source))
    connections = re.findall(r'self\.ui\.(\w+)\.connect\("([^"]+)"', source)
    attributes = [(n, a) for n, a in re.findall(r"self\.ui\.(\w+)\.(\w+)", source) if a != "connect"]
    return names, attributes, connections


def has_member(widget, name: str) -> bool:
    """``widget.name`` exists in Qt: a method, or a property (which Slicer's PythonQt exposes as an attribute)."""
    return hasattr(widget, name) or widget.metaObject().indexOfProperty(name) >= 0


@pytest.mark.parametrize("module", MODULES)
def test_the_ui_file_loads_and_has_every_widget_the_code_uses(loader, module):
    top = load(loader, module)
    assert top.objectName() == module and top.metaObject().className() == "qMRMLWidget"
    widgets = {w.objectName(): w for w in top.findChildren(QtWidgets.QWidget) if w.objectName()}
    names, attributes, connections = code_uses(module)
    assert names
    missing = sorted(names - set(widgets))
    assert not missing, f"{module}.py uses self.ui.{missing} which {module}.ui does not have"
    custom = set(custom_widget_classes(ROOT / module / "Resources" / "UI" / f"{module}.ui"))
    for name, attribute in attributes:
        widget = widgets[name]
        if widget.metaObject().className() not in custom:  # placeholders have nothing of their real class
            assert has_member(widget, attribute), f"{name} ({widget.metaObject().className()}) has no {attribute}"
    for name, signal in connections:
        widget = widgets[name]
        if widget.metaObject().className() not in custom:
            assert widget.metaObject().indexOfSignal(signal) >= 0, f"{name} has no signal {signal}"


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_carry_their_parameter_names(loader, module):
    """The parameter node binds widgets through their ``SlicerParameterName`` property."""
    top = load(loader, module)
    bound = {w.objectName(): w.property("SlicerParameterName") for w in top.findChildren(QtWidgets.QWidget)
             if w.property("SlicerParameterName")}
    assert bound and all(isinstance(parameter, str) and parameter for parameter in bound.values()), bound
