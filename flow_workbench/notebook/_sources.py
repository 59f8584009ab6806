"""What the notebook tools accept as a source: a state, a Workflow, a store plus id, or a folder/file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..dag import DAG
from ..data import WorkflowData
from ..errors import WorkflowNotFoundError
from ..ids import validate_workflow_id
from ..stores.base import WorkflowStore
from ..stores.open import STATE_SUFFIXES as SUFFIXES
from ..stores.open import open_file_store
from ..stores.open import store_for_file as _store_for_file

if TYPE_CHECKING:
    from ..engine import RunResult, Workflow

__all__ = ["StateSource", "load_state", "open_file_store", "state_file", "store_for_file"]

#: Everything ``load_state`` accepts (a store or a folder needs a workflow id as well).
StateSource: TypeAlias = "WorkflowData | Workflow | RunResult | WorkflowStore | str | os.PathLike[str]"


def store_for_file(path: str | os.PathLike[str]) -> WorkflowStore:
    """The file store that reads ``path`` and writes it back in the layout it has now."""
    return _store_for_file(path)[0]


def state_file(folder: str | os.PathLike[str], workflow_id: str) -> Path:
    """``<folder>/<id>.fb``, else ``<folder>/<id>.json``; a path to a state file is returned as is."""
    base = Path(folder)
    if base.is_file():
        return base
    validate_workflow_id(workflow_id)
    for suffix in SUFFIXES:
        candidate = base / (workflow_id + suffix)
        if candidate.is_file():
            return candidate
    raise WorkflowNotFoundError(workflow_id, os.fspath(base))


def load_state(
    source: StateSource, workflow_id: str | None = None, dag: DAG | None = None
) -> tuple[WorkflowData, DAG | None]:
    """The state (and the DAG, when the source carries one) of what a table was given."""
    from ..engine import RunResult, Workflow

    if isinstance(source, WorkflowData):
        return source, dag
    if isinstance(source, RunResult):
        return source.data, dag
    if isinstance(source, Workflow):
        data = source.data if source.data is not None else source.load_state()
        return data, dag or source.dag
    if isinstance(source, WorkflowStore):
        if workflow_id is None:
            raise TypeError("a store needs a workflow id: nodes_frame(store, 'my-id')")
        return source.load(workflow_id), dag
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file() and workflow_id is None:
            raise TypeError("a folder needs a workflow id: nodes_frame('state/', 'my-id')")
        file_path = state_file(path, workflow_id or path.stem)
        store = open_file_store(file_path.parent, file_path.suffix)  # either layout reads both
        try:
            return store.load(file_path.stem), dag
        finally:
            store.close()
    raise TypeError(
        "expected a WorkflowData, Workflow, RunResult, store + id, or folder + id, "
        f"not {type(source).__name__}"
    )
