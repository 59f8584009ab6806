"""Node-name columns of our FlatBuffers layout, and the per-workflow cache that reuses them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import SerializationError
from ..status import STATUSES_BY_CODE, NodeStatus
from ..validation import is_utf8
from ._fb_layout import _SEP

_UIntArray = npt.NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class _NameColumn:
    """The node-name vectors of one node set: NUL-joined UTF-8 blob, end offsets, sorted order."""

    names: list[str]
    blob: bytes
    ends: _UIntArray
    order: _UIntArray


def _build_name_column(names: list[str], workflow_id: str) -> _NameColumn:
    n = len(names)
    joined = _SEP.join(names)
    try:
        blob = joined.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = next((s for s in names if not is_utf8(s)), joined)
        raise SerializationError(workflow_id, f"node name {bad!r}", exc) from exc
    if n == 0:
        ends = np.empty(0, np.uint32)
    else:
        seps = np.flatnonzero(np.frombuffer(blob, np.uint8) == 0)
        if len(seps) == n - 1:  # no name contains NUL: the separators are the ends
            ends = np.empty(n, np.uint32)
            ends[:-1] = seps
            ends[-1] = len(blob)
        else:
            lengths = np.fromiter((len(s.encode("utf-8")) + 1 for s in names), np.int64, n)
            ends = (np.cumsum(lengths) - 1).astype(np.uint32)
    # str order is code point order, which is also UTF-8 byte order: the reader compares bytes.
    order = np.fromiter(sorted(range(n), key=names.__getitem__), np.uint32, n)
    # Shared by every encode while the node set is unchanged; the body refers to them, uncopied.
    ends.flags.writeable = False
    order.flags.writeable = False
    return _NameColumn(names, blob, ends, order)


class _NameColumnCache:
    """Recently encoded name columns per workflow id; reused only while the node list is identical.

    Sorting 100k names costs ~20-40 ms, more than the rest of an encode, and the node set of a
    workflow rarely changes between saves. A hit requires the cached list to equal the current
    one (an element-wise comparison, ~1 ms at 100k), so a changed node set never reuses a stale order.
    """

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _NameColumn] = OrderedDict()
        #: The statuses a decode of each cached column last built, with the codes they came from.
        self._decoded: dict[str, tuple[bytes, dict[str, NodeStatus]]] = {}
        self._lock = threading.Lock()

    def get(self, workflow_id: str, names: list[str]) -> _NameColumn:
        with self._lock:
            hit = self._entries.get(workflow_id)
        if hit is not None and hit.names == names:
            return hit
        column = _build_name_column(names, workflow_id)
        with self._lock:
            self._entries[workflow_id] = column
            self._decoded.pop(workflow_id, None)
            self._entries.move_to_end(workflow_id)
            while len(self._entries) > self._capacity:
                self._decoded.pop(self._entries.popitem(last=False)[0], None)
        return column

    def peek(self, workflow_id: str) -> _NameColumn | None:
        """The column last built for ``workflow_id``, if any (the decoder reuses its names)."""
        with self._lock:
            return self._entries.get(workflow_id)

    def statuses(self, column: _NameColumn, workflow_id: str, codes: bytes) -> dict[str, NodeStatus]:
        """The statuses of ``column``'s nodes for ``codes`` (checked codes, one per node): a copy
        of the ones decoded last time, with the nodes whose code changed since then updated.

        Building a dict of 100k freshly split names costs ~10 ms, most of a load; copying one
        (a C-level copy of the hash table) and patching a few nodes costs well under 1 ms. Taken
        only while the column is the cached one, so the names are exactly those of the file.
        """
        names = column.names
        with self._lock:
            if self._entries.get(workflow_id) is not column:
                return dict(zip(names, map(STATUSES_BY_CODE.__getitem__, codes), strict=True))
            last = self._decoded.get(workflow_id)
            if last is None:
                table = dict(zip(names, map(STATUSES_BY_CODE.__getitem__, codes), strict=True))
            else:
                before, table = last
                if before != codes:
                    old, new = np.frombuffer(before, np.uint8), np.frombuffer(codes, np.uint8)
                    for index in np.flatnonzero(old != new).tolist():
                        table[names[index]] = STATUSES_BY_CODE[codes[index]]
            if len(table) == len(names):  # else duplicate names: the caller refuses the file
                self._decoded[workflow_id] = (codes, table)
            return table.copy()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._decoded.clear()
