"""The habits of a kept project: one version, a licence matching pyproject, every named test exists."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import flow_workbench

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once_in_the_package() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "flow_workbench/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", flow_workbench.__version__)


def test_the_changelog_names_the_current_version() -> None:
    assert f"## {flow_workbench.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_licence_file_matches_pyproject() -> None:
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the flow_workbench authors" in text


# --- docs/guarantees.md names tests that exist ---------------------------------------------------

#: ``test_name`` (optionally ``file.py::test_name[param]``) anywhere in the text.
_TEST_NAME = re.compile(r"(?:(?P<file>[\w/.-]+\.py)::)?(?P<name>test_\w+)(?![\w*]|\.py)")
#: Links to test files, ``../tests/test_x.py`` (a ``#L12`` anchor is allowed).
_TEST_FILE = re.compile(r"\.\./tests/(?P<file>[\w/]+\.py)")


def _test_functions(path: Path) -> set[str]:
    """Names of the test functions and methods a test file defines."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def _tests_by_file() -> dict[str, set[str]]:
    tests = {path.name: _test_functions(path) for path in (ROOT / "tests").rglob("test_*.py")}
    # test_store_contract.py runs the shipped contract: its tests are written in flow_workbench/testing.py
    tests["test_store_contract.py"] |= _test_functions(ROOT / "flow_workbench" / "testing.py")
    return tests


def test_every_test_named_in_the_guarantees_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    tests = _tests_by_file()
    everywhere = set().union(*tests.values())
    missing_files = sorted({m["file"] for m in _TEST_FILE.finditer(text)} - {*tests, "conftest.py"})
    assert missing_files == []
    missing = []
    for match in _TEST_NAME.finditer(text):
        name, file = match["name"], match["file"]
        known = tests.get(Path(file).name, set()) if file else everywhere
        if name not in known:
            missing.append(f"{file}::{name}" if file else name)
    assert missing == []


# --- the test suite shares code through one package ----------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports absolutely, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_tests_share_code_through_the_helpers_package_only() -> None:
    """No ``from conftest import`` and no test module importing another: code the tests and bench
    scripts share lives in ``tests/helpers`` and is imported as ``tests.helpers.*``."""
    local = {path.stem for path in (ROOT / "tests").glob("*.py")} - {"__init__"}
    offenders = {}
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]):
        wrong = sorted(
            module
            for module in _imported_modules(path)
            if module.split(".")[0] in local
            or (module.startswith("tests.") and not module.startswith("tests.helpers."))
        )
        if wrong:
            offenders[str(path.relative_to(ROOT))] = wrong
    assert offenders == {}
