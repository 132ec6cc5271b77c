"""The corpus fixture, the Slicer scene fixture, and the corpus summary printed at the end of the run."""
import importlib.util
from pathlib import Path

import pytest

from .make_corpus import make_corpus

HERE = Path(__file__).resolve().parent
CORPUS_TEST = "test_corpus.py::test_case"

# The MRML scene fixture of the Slicer glue tests, reused as is (its module also puts SASANSlicer on sys.path).
_spec = importlib.util.spec_from_file_location("badinputs_slicer_fixtures",
                                               HERE.parent / "slicer_modules" / "conftest.py")
_slicer_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_slicer_fixtures)
scene = _slicer_fixtures.scene

_outcomes: dict[str, str] = {}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Every bad input, generated once per session (about a second)."""
    return make_corpus(tmp_path_factory.mktemp("badinputs") / "corpus")


def pytest_runtest_logreport(report):
    if CORPUS_TEST not in report.nodeid:
        return
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.when == "call" and report.passed:
        _outcomes.setdefault(report.nodeid, "passed")
    elif report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped")


@pytest.hookimpl(trylast=True)  # after the failures and warnings: the line closes the report
def pytest_terminal_summary(terminalreporter):
    if not _outcomes:
        return
    passed = sum(outcome == "passed" for outcome in _outcomes.values())
    skipped = sum(outcome == "skipped" for outcome in _outcomes.values())
    line = f"bad-input corpus: {len(_outcomes)} cases, {passed} passed"
    if skipped:
        line += f", {skipped} skipped"
    failed = sorted(nodeid.split("[", 1)[-1].rstrip("]") for nodeid, o in _outcomes.items() if o == "failed")
    if failed:
        line += f"; failed: {', '.join(failed)}"
    terminalreporter.write_sep("=", line, bold=True, green=not failed and not skipped, red=bool(failed))
