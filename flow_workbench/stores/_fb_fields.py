"""Field ids of the FlatBuffers tables, read from the flatc-generated code instead of copied by hand."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any, Final

from ._generated.fwb import WorkflowState as _fwb_state
from ._generated.workflow import (
    KeyValueBool,
    KeyValueDouble,
    KeyValueInt,
    KeyValueString,
    NodeOutputEntry,
    NodeStatusEntry,
    TimerWaitEntry,
)
from ._generated.workflow import WorkflowState as _go_state

__all__ = ["GO_ENTRY", "GO_KEY_VALUE", "GO_STATE", "OUR_STATE", "field_ids"]


class _SlotRecorder:
    """Stands in for a ``flatbuffers.Builder``: notes the slot a generated ``Add<Field>`` writes."""

    slot: int = -1

    def __getattr__(self, name: str) -> Any:
        if name.startswith("Prepend") and name.endswith("Slot"):
            return self._record
        raise AttributeError(name)

    def _record(self, slot: int, *_: object) -> None:
        self.slot = slot


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def field_ids(table: ModuleType) -> dict[str, int]:
    """``{schema field name: id}`` of one generated table module, from its ``Add<Field>`` functions.

    flatc writes ``def AddNodeNames(builder, nodeNames): builder.Prepend...Slot(5, ...)`` for
    ``node_names: [ubyte] (id: 5)``; calling each with a recorder yields the id the schema gave.
    Field names come back in the schema's snake_case (flatc CamelCases them).
    """
    ids: dict[str, int] = {}
    for attr in dir(table):
        if not attr.startswith("Add"):
            continue  # the table-prefixed aliases (``WorkflowStateAddX``) name the same slots
        recorder = _SlotRecorder()
        getattr(table, attr)(recorder, 0)
        if recorder.slot < 0:  # a flatc whose Add functions no longer write one slot
            raise RuntimeError(f"{table.__name__}.{attr} wrote no field slot")
        ids[_snake(attr[len("Add") :])] = recorder.slot
    return ids


#: fwb.WorkflowState (schemas/workflow_state.fbs), this project's layout.
OUR_STATE: Final = field_ids(_fwb_state)
#: workflow.WorkflowState (schemas/go_workflow_state.fbs), the Go layout.
GO_STATE: Final = field_ids(_go_state)


def _common(*tables: ModuleType) -> dict[str, int]:
    """Fields the given entry tables share with one id (the Go reader reads them generically)."""
    first, *rest = (field_ids(t) for t in tables)
    return {name: slot for name, slot in first.items() if all(other.get(name) == slot for other in rest)}


#: Go key-value entries: ``key`` (0) and the typed ``value`` (1); KeyValueInt adds ``value_long``.
GO_KEY_VALUE: Final = _common(KeyValueString, KeyValueBool, KeyValueDouble, KeyValueInt) | {
    "value_long": field_ids(KeyValueInt)["value_long"]
}
#: Go per-node entries: ``node_name`` (0) and the entry's value, by the name each table gives it.
GO_ENTRY: Final = (
    _common(NodeStatusEntry, NodeOutputEntry, TimerWaitEntry)
    | {"status": field_ids(NodeStatusEntry)["status"]}
    | {"output": field_ids(NodeOutputEntry)["output"]}
    | {"fire_at": field_ids(TimerWaitEntry)["fire_at"]}
)
