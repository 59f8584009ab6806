"""The public API is curated: pin it so changes are deliberate."""

from __future__ import annotations

import subprocess
import sys

import flow_workbench


def test_all_is_sorted_and_importable() -> None:
    names = flow_workbench.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(flow_workbench, name), name


def test_core_names_are_exported() -> None:
    required = {
        "NodeStatus",
        "Node",
        "DAG",
        "WorkflowData",
        "WorkflowStore",
        "InMemoryStore",
        "Workflow",
        "WorkflowNotFoundError",
        "reset_nodes",
        "reset_failed",
        "mark_nodes",
        "Persistence",
        "TransactionalStore",
        "VersionConflictError",
        "CorruptStateError",
        "StoreError",
    }
    assert required <= set(flow_workbench.__all__)


def test_import_stays_free_of_notebook_dependencies() -> None:
    code = (
        "import sys, flow_workbench\n"
        "heavy = {'pandas', 'graphviz', 'ipywidgets', 'tqdm', 'IPython', 'redis', 'dask'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
