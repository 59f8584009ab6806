"""ColumnsView: a read-only view of a state's columns, what ``WorkflowData.read_columns`` yields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from .data import AuditEntry, RunRecord, StateColumns
    from .status import NodeStatus

_T = TypeVar("_T")

__all__ = ["ColumnsView", "ReadOnlyList"]


class ReadOnlyList(Sequence[_T]):
    """A list seen through a ``Sequence`` that has no way to change it; built in O(1), no copy."""

    __slots__ = ("_items",)

    def __init__(self, items: list[_T]) -> None:
        self._items = items

    @overload
    def __getitem__(self, index: int) -> _T: ...
    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...
    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        return self._items[index]  # a slice is a new list: changing it changes nothing here

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[_T]:
        return iter(self._items)

    def __contains__(self, value: object) -> bool:
        return value in self._items

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadOnlyList):
            return self._items == other._items
        return isinstance(other, list | tuple) and list(self._items) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadOnlyList({self._items!r})"


class ColumnsView:
    """The columns of a state (see ``StateColumns``), read-only and without copies.

    Dict columns are ``types.MappingProxyType`` views and list columns ``ReadOnlyList`` views of
    the state's own, built in O(1) per access: assigning through them raises ``TypeError``, and
    they show every later change of the state. Read them only while the state's lock is held,
    i.e. inside the ``with data.read_columns()`` that gave the view (the view refuses to be read
    after it). Values inside a column (a DAG entry's dependency list, an attempt log's lists)
    are the state's too: the state replaces them, never changes them, and so must a reader.
    """

    __slots__ = ("_c",)

    def __init__(self, columns: StateColumns) -> None:
        self._c: StateColumns | None = columns

    def close(self) -> None:
        """End the view: any later read raises ``RuntimeError`` (the lock is no longer held)."""
        self._c = None

    @property
    def _columns(self) -> StateColumns:
        columns = self._c
        if columns is None:
            raise RuntimeError("a ColumnsView was read after its `with data.read_columns()` block ended")
        return columns

    # --- scalars -------------------------------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        return self._columns.workflow_id

    @property
    def version(self) -> int:
        return self._columns.version

    @property
    def created_at(self) -> float:
        return self._columns.created_at

    @property
    def updated_at(self) -> float:
        return self._columns.updated_at

    @property
    def rolling_back(self) -> bool:
        return self._columns.rolling_back

    @property
    def trigger_cause(self) -> int:
        return self._columns.trigger_cause

    @property
    def checked(self) -> bool:
        """See ``StateColumns.checked``."""
        return self._columns.checked

    # --- per-node and other dict columns -------------------------------------------------------

    @property
    def data(self) -> Mapping[str, Any]:
        return MappingProxyType(self._columns.data)

    @property
    def statuses(self) -> Mapping[str, NodeStatus]:
        return MappingProxyType(self._columns.statuses)

    @property
    def outputs(self) -> Mapping[str, Any]:
        """Outputs in their stored form (see ``StateColumns.outputs``; ``data.plain_output``)."""
        return MappingProxyType(self._columns.outputs)

    @property
    def attempts(self) -> Mapping[str, int]:
        return MappingProxyType(self._columns.attempts)

    @property
    def started_at(self) -> Mapping[str, float]:
        return MappingProxyType(self._columns.started_at)

    @property
    def finished_at(self) -> Mapping[str, float]:
        return MappingProxyType(self._columns.finished_at)

    @property
    def errors(self) -> Mapping[str, str]:
        return MappingProxyType(self._columns.errors)

    @property
    def error_types(self) -> Mapping[str, str]:
        return MappingProxyType(self._columns.error_types)

    @property
    def dag(self) -> Mapping[str, Sequence[str]] | None:
        dag = self._columns.dag
        return None if dag is None else MappingProxyType(dag)

    @property
    def attempt_log(self) -> Mapping[str, Sequence[Sequence[Any]]]:
        return MappingProxyType(self._columns.attempt_log)

    @property
    def code_versions(self) -> Mapping[str, str]:
        return MappingProxyType(self._columns.code_versions)

    @property
    def waits(self) -> Mapping[str, int]:
        return MappingProxyType(self._columns.waits)

    @property
    def raw_statuses(self) -> Mapping[str, str]:
        return MappingProxyType(self._columns.raw_statuses)

    @property
    def output_texts(self) -> Mapping[str, tuple[Any, str]]:
        return MappingProxyType(self._columns.output_texts)

    # --- list columns --------------------------------------------------------------------------

    @property
    def audit(self) -> Sequence[AuditEntry]:
        return ReadOnlyList(self._columns.audit)

    @property
    def runs(self) -> Sequence[RunRecord]:
        return ReadOnlyList(self._columns.runs)

    # --- columns a decoder deferred ------------------------------------------------------------

    def deferred_raw(self, name: str) -> bytes | memoryview | None:
        """See ``StateColumns.deferred_raw``."""
        return self._columns.deferred_raw(name)

    def decode_deferred(self) -> None:
        """Decode every deferred column now (the content does not change; ``CorruptStateError``
        if one is damaged), see ``StateColumns.decode_deferred``."""
        self._columns.decode_deferred()
