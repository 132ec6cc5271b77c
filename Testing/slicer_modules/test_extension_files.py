"""The extension's files as Slicer's build and runtime will read them, checked without Slicer.

The catalog entry SASAN.json follows the Extensions Index's schema and agrees with CMakeLists.txt and SASAN.s4ext;
CMake lists every file; every ``self.ui.<name>`` the module code uses exists in its .ui with a widget
class that has what the code uses; widgets bound to the parameter node fit their parameter's type;
module files byte-compile and import no engine code at start-up; icons are real 128x128 PNGs.
"""
import ast
import json
import py_compile
import re
import struct
import xml.etree.ElementTree as ElementTree
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("SASANSlicer", "SASANTrainer")


# CMake ---------------------------------------------------------------------------------------------

def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(command, arguments) of a CMakeLists.txt: comments dropped, quoted arguments unquoted."""
    lines = path.read_text(encoding="utf-8").splitlines()
    text = "\n".join(re.sub(r'#(?=(?:[^"]*"[^"]*")*[^"]*$).*', "", line) for line in lines)
    commands = []
    for match in re.finditer(r"(\w+)\s*\(((?:[^()]|\([^()]*\))*)\)", text):
        arguments = [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|[^\s"]+', match.group(2))]
        commands.append((match.group(1).lower(), arguments))
    return commands


def set_values(commands) -> dict:
    return {args[0]: args[1:] for name, args in commands if name == "set" and args}


def expand(items: list[str], variables: dict) -> list[str]:
    return [re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables[m.group(1)]), item) for item in items]


def test_top_level_cmake_describes_the_extension():
    commands = cmake_commands(ROOT / "CMakeLists.txt")
    names = [name for name, _ in commands]
    variables = set_values(commands)
    assert ("project", ["SASAN"]) in commands
    assert variables["EXTENSION_CATEGORY"] == ["Image Synthesis"]
    assert variables["EXTENSION_DEPENDS"] == ["PyTorch"]
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS"):
        assert variables[key] and variables[key][0].strip(), key
    assert ("find_package", ["Slicer", "REQUIRED"]) in commands
    assert ("include", ["${Slicer_USE_FILE}"]) in commands
    assert [args for name, args in commands if name == "add_subdirectory"] == [[m] for m in MODULES]
    assert commands[-2:] == [("include", ["${Slicer_EXTENSION_GENERATE_CONFIG}"]),
                             ("include", ["${Slicer_EXTENSION_CPACK}"])]
    assert names.index("find_package") < names.index("add_subdirectory")


def test_engine_package_goes_beside_the_scripted_modules():
    commands = cmake_commands(ROOT / "CMakeLists.txt")
    globs = [args for name, args in commands if name == "file" and args[0] == "GLOB_RECURSE"]
    assert any("sasan/*.py" in args for args in globs)
    (engine,) = [args for name, args in commands if name == "ctkmacrocompilepythonscript"]
    assert engine[engine.index("INSTALL_DIR") + 1] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}"
    assert engine[engine.index("DESTINATION_DIR") + 1] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}"
    resources = [args for name, args in commands if name == "file" and args[0] == "GLOB"][0]
    assert "Resources/Models/*.safetensors" in resources and "Resources/configs/*.yaml" in resources


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_every_script_and_resource(module):
    folder = ROOT / module
    commands = cmake_commands(folder / "CMakeLists.txt")
    variables = set_values(commands)
    assert variables["MODULE_NAME"] == [module]
    (build,) = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    assert build[:2] == ["NAME", "${MODULE_NAME}"] and "WITH_GENERIC_TESTS" in build
    scripts = expand(variables["MODULE_PYTHON_SCRIPTS"], variables)
    resources = expand(variables["MODULE_PYTHON_RESOURCES"], variables)
    assert "${MODULE_PYTHON_SCRIPTS}" in build and "${MODULE_PYTHON_RESOURCES}" in build
    on_disk_scripts = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    on_disk_resources = sorted(str(p.relative_to(folder)) for p in (folder / "Resources").rglob("*") if p.is_file())
    assert sorted(scripts) == on_disk_scripts
    assert sorted(resources) == on_disk_resources
    assert not [p for p in folder.glob("*.py") if p.name != f"{module}.py"], \
        "Slicer loads every top-level .py of a module folder as a module"


def s4ext_entries() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "SASAN.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            entries[key] = value.strip()
    return entries


def catalog_entry() -> dict:
    return json.loads((ROOT / "SASAN.json").read_text(encoding="utf-8"))


# The Extensions Index's schema (Slicer's Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json): these keys
# only, three of them required; tier an integer 1..5.
CATALOG_SCHEMA = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                  "slicer-extension-catalog-entry-schema-v1.0.2.json#")
CATALOG_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                 "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int,
                 "dicom_support_rule": str}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}


def test_catalog_entry_follows_the_index_schema_and_format():
    text = (ROOT / "SASAN.json").read_text(encoding="utf-8")
    entry = json.loads(text)
    assert entry["$schema"] == CATALOG_SCHEMA
    assert CATALOG_REQUIRED <= set(entry) <= set(CATALOG_TYPES)
    for key, value in entry.items():
        assert type(value) is CATALOG_TYPES[key], key
    assert all(isinstance(item, str) for item in entry["build_dependencies"])
    assert 1 <= entry["tier"] <= 5 and entry.get("scm_type", "git") in ("git", "local")
    # the index's lint: LF line endings, its entries' layout (sorted keys, two-space indent, final newline)
    assert "\r" not in text and text == json.dumps(entry, indent=2, sort_keys=True) + "\n"


def test_catalog_entry_agrees_with_cmake_as_the_index_checks_it():
    """The index's check_description_files.py: the file is named like project(); the repository name starts with
    Slicer, the extension's does not; icon and screenshot URLs are set as it parses them; the entry and the
    CMakeLists.txt agree (its pull-request checklist: dependencies etc.)."""
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    variables = set_values(cmake_commands(ROOT / "CMakeLists.txt"))
    entry = catalog_entry()
    assert re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.IGNORECASE)[0] == "SASAN"
    assert re.search(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake, re.IGNORECASE)
    assert re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake, re.IGNORECASE)
    assert entry["build_dependencies"] == variables["EXTENSION_DEPENDS"]
    assert entry["category"] == variables["EXTENSION_CATEGORY"][0]
    assert entry["build_subdirectory"] == "."
    url = urlsplit(entry["scm_url"])
    assert url.scheme == "https" and url.netloc == "github.com"
    repository = url.path.strip("/").removesuffix(".git")
    assert repository.split("/")[-1].startswith("Slicer") and not "SASAN".startswith("Slicer")
    assert variables["EXTENSION_HOMEPAGE"][0] == f"https://github.com/{repository}"
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for address in variables[key][0].split():
            assert address.startswith(f"https://raw.githubusercontent.com/{repository}/{entry['scm_revision']}/")
            assert (ROOT / address.split(f"/{entry['scm_revision']}/", 1)[1]).is_file(), address


def test_cmake_metadata_is_complete():
    variables = set_values(cmake_commands(ROOT / "CMakeLists.txt"))
    assert variables["EXTENSION_KEYWORDS"] and all(" " not in k for k in variables["EXTENSION_KEYWORDS"])
    person = r"[^(),]+ \([^()]+\)"  # Name (Organisation), as the extension template asks
    assert re.fullmatch(rf"{person}(, {person})*", variables["EXTENSION_CONTRIBUTORS"][0])
    assert variables["EXTENSION_STATUS"] == ["Beta"]


def test_s4ext_agrees_with_the_catalog_entry_and_the_cmake_metadata():
    entries = s4ext_entries()
    variables = set_values(cmake_commands(ROOT / "CMakeLists.txt"))
    entry = catalog_entry()
    assert entries["scm"] == entry.get("scm_type", "git")
    assert entries["scmurl"] == entry["scm_url"] and entries["scmrevision"] == entry["scm_revision"]
    assert entries["depends"] == " ".join(entry["build_dependencies"])
    assert entries["build_subdirectory"] == entry["build_subdirectory"]
    assert entries["tier"] == str(entry["tier"])
    assert entries["enabled"] == ("1" if entry.get("enabled", True) else "0")
    for key, variable in (("category", "EXTENSION_CATEGORY"), ("homepage", "EXTENSION_HOMEPAGE"),
                          ("iconurl", "EXTENSION_ICONURL"), ("contributors", "EXTENSION_CONTRIBUTORS"),
                          ("description", "EXTENSION_DESCRIPTION"), ("status", "EXTENSION_STATUS"),
                          ("screenshoturls", "EXTENSION_SCREENSHOTURLS"), ("depends", "EXTENSION_DEPENDS"),
                          ("keywords", "EXTENSION_KEYWORDS")):
        assert entries[key] == " ".join(variables[variable]), key


def test_license_is_apache_2():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


# Module files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [ROOT / "SASANSlicer" / "SASANSlicer.py", ROOT / "SASANTrainer" / "SASANTrainer.py",
                                  *sorted((ROOT / "SASANSlicer" / "SASANSlicerLib").glob("*.py")),
                                  *sorted((ROOT / "SASANTrainer" / "SASANTrainerLib").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_files_byte_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def top_level_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            prefix = f"{base}." if node.module else base
            modules |= {base} | {prefix + alias.name for alias in node.names}
    return modules


# Imported while Slicer starts or while the GUI is idle: before torch, pyyaml... may be installed.
STARTUP_FILES = [
    ROOT / "SASANSlicer" / "SASANSlicer.py", ROOT / "SASANTrainer" / "SASANTrainer.py",
    *[ROOT / "SASANSlicer" / "SASANSlicerLib" / f"{name}.py" for name in
      ("__init__", "environment", "logic", "model_files", "model_trust", "progress", "sample_data",
       "attention_display", "hierarchy", "transaction", "dependencies", "processes", "outcome")],
    *sorted((ROOT / "SASANTrainer" / "SASANTrainerLib").glob("*.py")),
]
ENGINE_ONLY_LIB_MODULES = {"nodes", "segmentation", "attention", "results", "translation_process"}


@pytest.mark.parametrize("path", STARTUP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_start_up_code_imports_no_engine(path):
    imports = top_level_imports(path)
    for module in imports:
        top = module.lstrip(".").split(".")[0]
        assert top not in {"sasan", "torch", "yaml", "monai", "safetensors", "SimpleITK", "numpy", "psutil"}, module
        engine_only = any(module.endswith(f"Lib.{name}") or module == f".{name}" for name in ENGINE_ONLY_LIB_MODULES)
        assert not engine_only, module


CONTRIBUTOR = re.compile(r"[^(),]+ \([^()]+\)")  # "Name (Organisation)", as Slicer's templates ask


def module_metadata(module: str) -> dict[str, ast.expr]:
    """``self.parent.<name> = <value>`` of the module class's ``__init__``."""
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == module]
    (init,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    return {t.attr: n.value for n in ast.walk(init) if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self.parent"}


def translated(node: ast.expr) -> bool:
    """Every string in ``node`` is the argument of ``_()`` (``slicer.i18n.tr``); a markup tail may follow."""
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_"]
    return bool(calls) and all(isinstance(c.args[0], ast.Constant) for c in calls)


@pytest.mark.parametrize("module", MODULES)
def test_module_texts_are_translatable_and_contributors_name_their_organisation(module):
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    assert "from slicer.i18n import tr as _" in source
    metadata = module_metadata(module)
    for name in ("title", "helpText", "acknowledgementText"):
        assert translated(metadata[name]), f"{module}: parent.{name} is not passed through _()"
    assert ast.unparse(metadata["categories"]) == "[translate('qSlicerAbstractCoreModule', 'Image Synthesis')]"
    contributors = ast.literal_eval(metadata["contributors"])
    assert contributors and all(CONTRIBUTOR.fullmatch(c) for c in contributors), contributors


def test_device_choice_offers_mps_where_torch_has_it():
    annotations = parameter_annotations("SASANSlicer")
    assert annotations["device"] == "Annotated[str, Choice(environment.device_choices())]"


def ui_widgets(path: Path) -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(path).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def widget_property(widget, name):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


# What the module code does with a widget -> the widget classes that can do it.
COMBO = {"QComboBox", "ctkComboBox"}
ATTRIBUTE_CLASSES = {
    "currentNode": {"qMRMLNodeComboBox"}, "setMRMLScene": {"qMRMLNodeComboBox"},
    "checked": {"QCheckBox", "QRadioButton", "ctkCheckBox"},
    "addItem": COMBO, "insertItem": COMBO, "itemData": COMBO, "setItemData": COMBO, "findData": COMBO,
    "itemText": COMBO, "count": COMBO, "currentIndex": COMBO,
    "setHtml": {"QTextBrowser", "QTextEdit"}, "appendPlainText": {"QPlainTextEdit"},
    "setValue": {"QProgressBar", "ctkSliderWidget", "QSpinBox", "QDoubleSpinBox", "QSlider"},
    "value": {"QProgressBar", "ctkSliderWidget", "QSpinBox", "QDoubleSpinBox", "QSlider"},
    "text": {"QLabel", "QPushButton", "QCheckBox", "QRadioButton", "ctkCollapsibleButton", "QLineEdit"},
    "collapsed": {"ctkCollapsibleButton"},
    "clear": COMBO | {"QPlainTextEdit", "QTextEdit", "QTextBrowser", "QLineEdit"},
}
SIGNAL_CLASSES = {
    "clicked(bool)": {"QPushButton", "QCheckBox", "QRadioButton", "QToolButton", "ctkCollapsibleButton"},
    "currentIndexChanged(int)": COMBO,
    "valueChanged(double)": {"ctkSliderWidget", "QDoubleSpinBox"},
}
ANY_WIDGET = {"enabled", "toolTip", "setVisible", "blockSignals", "connect"}


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_widget_the_code_uses_exists_with_a_fitting_class(module):
    source = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    widgets = ui_widgets(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    uses = re.findall(r"self\.ui\.(\w+)\.(\w+)", source)
    assert uses
    for name, attribute in uses:
        assert name in widgets, f"self.ui.{name} is not in {module}.ui"
        widget_class = widgets[name].get("class")
        if attribute not in ANY_WIDGET:
            assert attribute in ATTRIBUTE_CLASSES, f"add '{attribute}' to ATTRIBUTE_CLASSES"
            assert widget_class in ATTRIBUTE_CLASSES[attribute], f"{name} ({widget_class}) has no {attribute}"
    for name, signal in re.findall(r'self\.ui\.(\w+)\.connect\("([^"]+)"', source):
        assert widgets[name].get("class") in SIGNAL_CLASSES[signal], f"{name} has no signal {signal}"
    for widget in re.findall(r"self\.ui\.(\w+)\b(?!\.)", source):
        assert widget in widgets, f"self.ui.{widget} is not in {module}.ui"


def parameter_annotations(module: str) -> dict[str, str]:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}ParameterNode"]
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def parameter_widget_fits(widget_class: str, annotation: str) -> bool:
    """The parameterNodeWrapper GUI connectors Slicer has for each (widget, type) pair."""
    if annotation.startswith("vtkMRML"):
        return widget_class == "qMRMLNodeComboBox"
    if annotation == "bool":
        return widget_class in {"QCheckBox", "ctkCheckBox", "QPushButton"}
    if annotation == "Path":
        return widget_class in {"ctkPathLineEdit", "ctkDirectoryButton"}
    if annotation.startswith("Annotated[str, Choice("):
        return widget_class in COMBO
    if annotation.startswith("Annotated[float, WithinRange("):
        return widget_class in {"ctkSliderWidget", "QDoubleSpinBox"}
    if annotation == "str":
        return widget_class in {"QLineEdit", "QLabel", "QTextEdit"}
    return False


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_fit_their_parameters(module):
    annotations = parameter_annotations(module)
    widgets = ui_widgets(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    bound = {}
    for name, widget in widgets.items():
        prop = widget_property(widget, "SlicerParameterName")
        if prop is not None:
            bound[prop.find("string").text] = widget
    assert bound
    for parameter, widget in bound.items():
        assert parameter in annotations, f"{widget.get('name')} is bound to unknown parameter {parameter}"
        assert parameter_widget_fits(widget.get("class"), annotations[parameter]), (parameter, widget.get("class"))
        node_types = widget_property(widget, "nodeTypes")
        if node_types is not None:
            assert [s.text for s in node_types.iter("string")] == [annotations[parameter]]


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_is_designer_xml_declaring_its_custom_widgets(module):
    path = ROOT / module / "Resources" / "UI" / f"{module}.ui"
    root = ElementTree.parse(path).getroot()
    assert root.tag == "ui" and root.get("version") == "4.0" and root.findtext("class") == module
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if c.startswith(("qMRML", "ctk"))} <= declared
    names = ui_widgets(path)
    for connection in root.iter("connection"):
        assert connection.findtext("sender") in names and connection.findtext("receiver") in names
    combos_with_scene = {c.findtext("receiver") for c in root.iter("connection")
                         if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert combos_with_scene == {n for n, w in names.items() if w.get("class") == "qMRMLNodeComboBox"}


# Icons ---------------------------------------------------------------------------------------------

def png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    position = 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind}"
        yield kind, body
        position += 12 + length


@pytest.mark.parametrize("module", MODULES)
def test_icons_are_valid_128_pixel_pngs(module):
    data = (ROOT / module / "Resources" / "Icons" / f"{module}.png").read_bytes()
    chunks = list(png_chunks(data))
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (width, height) == (128, 128)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(pixels) == height * (1 + width * channels * depth // 8)  # one filter byte per row
