"""FlatBuffers state codecs: this project's columnar layout and the Go Flow Orchestrator layout."""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import flatbuffers
import numpy as np
import numpy.typing as npt
import orjson

from ..data import AuditEntry, Changed, ChangeLog, RunRecord, StateColumns, WorkflowData
from ..errors import CorruptStateError, SerializationError
from ..status import STATUS_BY_VALUE, STATUS_CODES, STATUSES_BY_CODE, NodeStatus
from ..validation import InvalidValue, check_columns, require_count, require_time, savable_columns
from . import _fb_go
from ._fb_reader import (
    F64,
    I64,
    MAX_ELEMENTS,
    U8,
    U16,
    U32,
    Malformed,
    as_view,
    decode_utf8,
    root_table,
    u32s,
    vector_at,
)
from ._generated.fwb import WorkflowState as _ws
from ._versions import content_token
from .base import StateFormat, WorkflowSummary, summary_from_data
from .codec import Buffer

__all__ = ["FORMAT_VERSION", "IDENTIFIER", "FlatBuffersCodec", "GoFlatBuffersCodec"]

#: file_identifier of schemas/workflow_state.fbs; files without it are read as the Go layout.
IDENTIFIER: Final = b"FWB1"
#: Layout revision written in ``format_version``; a reader refuses revisions it does not know.
#: 2 added the attempt log and the run history (fields 30, 31); files of revision 1 still load.
FORMAT_VERSION: Final = 2
READABLE_FORMATS: Final = frozenset({1, 2})
#: Checksum granularity of the node vectors: node_status verifies ~40 blocks, not the whole file.
BLOCK_SIZE: Final = 4096

# Field ids of fwb.WorkflowState (schemas/workflow_state.fbs).
_F_FORMAT, _F_ID, _F_VERSION, _F_CREATED, _F_UPDATED = 0, 1, 2, 3, 4
_F_NAMES, _F_ENDS, _F_STATUSES, _F_SORTED = 5, 6, 7, 8
_F_DATA, _F_OUTPUTS, _F_ATTEMPTS, _F_STARTED, _F_FINISHED, _F_ERRORS, _F_ERROR_TYPES = range(9, 16)
_F_DAG, _F_AUDIT, _F_WAITS, _F_ROLLING, _F_CAUSE, _F_BODY, _F_BLOCK_ENDS, _F_CRCS = range(16, 24)

_F_ATT_KEYS, _F_ATT_VALUES, _F_STARTED_KEYS, _F_STARTED_VALUES, _F_FINISHED_KEYS, _F_FINISHED_VALUES = range(
    24, 30
)
_F_ATTEMPT_LOG, _F_RUNS, _F_CODE_VERSIONS = 30, 31, 32
#: (JSON field, keys field, values field, exact Python type, vector dtype) of the typed history columns.
_TYPED: Final = (
    (_F_ATTEMPTS, _F_ATT_KEYS, _F_ATT_VALUES, int, np.dtype("<i8")),
    (_F_STARTED, _F_STARTED_KEYS, _F_STARTED_VALUES, float, np.dtype("<f8")),
    (_F_FINISHED, _F_FINISHED_KEYS, _F_FINISHED_VALUES, float, np.dtype("<f8")),
)

_SEP: Final = "\x00"  # joins node names; names containing it take a slower, offset-based path
_MAX_CODE: Final = len(STATUSES_BY_CODE) - 1
_FAILED_CODES: Final = (STATUS_CODES[NodeStatus.FAILED], STATUS_CODES[NodeStatus.COMPENSATION_FAILED])
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_JSON_OPTIONS: Final = _fb_go.JSON_OPTIONS
_U32_PAIR = struct.Struct("<II")

_T = TypeVar("_T")
_UIntArray = npt.NDArray[np.uint32]


# --- encoding ----------------------------------------------------------------------------------


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
        bad = next((s for s in names if not _encodable(s)), joined)
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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def _dumps_map(
    values: dict[str, Any], workflow_id: str, label: Callable[[str], str], checked: bool = False
) -> bytes | None:
    """One orjson document for a whole column; on failure, name the first key that cannot be stored."""
    if not values:
        return None
    try:
        blob = orjson.dumps(values, option=_JSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        for key, value in values.items():
            if not isinstance(key, str):
                raise SerializationError(
                    workflow_id, label(repr(key)), TypeError("key is not a str")
                ) from exc
            try:
                orjson.dumps(value, option=_JSON_OPTIONS)
            except TypeError as inner:
                raise SerializationError(workflow_id, label(repr(key)), inner) from inner
        raise SerializationError(workflow_id, label("?"), exc) from exc
    # orjson writes NaN/Infinity as null; refuse them (as the JSON codec does) rather than change the
    # value. Only top-level values are checked, and only when the column has a top-level float and
    # a null at all (two C-level scans; the type scan is ~2x cheaper than searching a large blob, so
    # it goes first), so clean states pay no Python loop.
    if not checked and float in map(type, values.values()) and b"null" in blob:
        for key, value in values.items():
            if type(value) is float and not math.isfinite(value):
                raise SerializationError(
                    workflow_id, label(repr(key)), ValueError(f"{value} has no JSON form")
                )
    return blob


def _outputs_blob(c: StateColumns, checked: bool) -> bytes | None:
    """The output column's document: while it is undecoded (a loaded state whose outputs nobody
    read) the stored document as it is, neither parsed nor checked again; else one orjson pass."""
    stored = c.deferred_raw("outputs")
    if stored is not None:
        return stored
    return _dumps_map(c.outputs, c.workflow_id, lambda k: f"output of node {k}", checked)


def _status_codes(statuses: dict[str, NodeStatus], workflow_id: str) -> bytes:
    try:
        return bytes(map(STATUS_CODES.__getitem__, statuses.values()))
    except (KeyError, TypeError):
        pass
    # Slow path: plain status strings are accepted, anything else names the node.
    codes = bytearray()
    for node, status in statuses.items():
        member = STATUS_BY_VALUE.get(status) if isinstance(status, str) else None
        if member is None:
            raise SerializationError(workflow_id, f"status of node {node!r}", ValueError(f"{status!r}"))
        if member is NodeStatus.UNKNOWN:
            reason = "an unknown status (read from a Go JSON file) has no byte here; only JSON keeps it"
            raise SerializationError(workflow_id, f"status of node {node!r}", ValueError(reason))
        codes.append(STATUS_CODES[member])
    return bytes(codes)


def _typed_column(
    values: dict[str, Any],
    pytype: type,
    dtype: np.dtype[Any],
    known: list[tuple[int, list[str]]],
    checked: bool,
) -> tuple[bytes | int, memoryview, list[str]] | None:
    """(keys, values, key list) of a history column, or None when JSON must hold it exactly.

    Typed vectors decode ~2x faster than JSON, but only a column whose values all have exactly
    ``pytype`` qualifies (a vector would turn an int start time into a float, True into 1).
    The check counts exact type matches in C (``countOf`` compares the type objects by identity),
    without building a set or a list. The values are returned as a view of a fresh array.
    """
    n = len(values)
    if not checked and operator.countOf(map(type, values.values()), pytype) != n:
        return None
    try:
        array = np.fromiter(values.values(), dtype, n)
    except OverflowError:
        return None
    if not checked and pytype is float and not np.isfinite(array).all():
        return None  # the JSON path reports it as a SerializationError
    payload = array.data.cast("B")
    keys = list(values)
    for field, other in known:
        if other == keys:
            return field, payload, keys
    joined = _SEP.join(keys)
    if joined.count(_SEP) != len(keys) - 1:
        return None  # a key contains the separator
    try:
        blob = joined.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return blob, payload, keys


# --- encoding: the body as segments of checksummed blocks -------------------------------------
# The body is a sequence of segments (a column's vectors), each a list of blocks with one crc32
# each. A save of a state this codec encoded (or decoded) before patches the segments of what
# its writers changed since (``ChangeLog``) and reuses every other block and checksum as is.

#: Keys per chunk of a node-keyed JSON document: a changed node re-encodes its chunk only.
_DOC_CHUNK: Final = 1024
#: Bytes per checksummed block of a typed history vector (a patched value re-checksums one).
_VALUE_BLOCK: Final = 1 << 16
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_MISSING: Final = object()


@dataclass(slots=True)
class _Segment:
    """Body bytes placed as a unit: its vectors (field -> offset in it), its blocks (one crc32
    each) and the offset modulo 8 it starts at (what keeps its 8-byte vectors aligned)."""

    fields: dict[int, int]
    pieces: list[Buffer]
    crcs: list[int]
    phase: int = 0

    def patched(self, edits: list[tuple[int, bytes]]) -> _Segment:
        """A copy with ``edits`` ((offset, bytes) pairs) applied: only the blocks they touch are
        copied and checksummed again."""
        starts = list(itertools.accumulate(map(len, self.pieces), initial=0))
        pieces = list(self.pieces)
        touched: dict[int, bytearray] = {}
        for at, payload in edits:
            while payload:
                k = bisect.bisect_right(starts, at) - 1
                block = touched.get(k)
                if block is None:
                    block = touched[k] = bytearray(pieces[k])
                    pieces[k] = block
                rel = at - starts[k]
                take = min(len(payload), len(block) - rel)
                block[rel : rel + take] = payload[:take]
                at, payload = at + take, payload[take:]
        crcs = list(self.crcs)
        for k, block in touched.items():
            crcs[k] = zlib.crc32(block)
        return _Segment(self.fields, pieces, crcs, self.phase)


def _blocks(payload: Buffer, size: int) -> tuple[list[Buffer], list[int]]:
    view = memoryview(payload).cast("B")
    pieces: list[Buffer] = [view[at : at + size] for at in range(0, len(view), size)]
    return pieces, list(map(zlib.crc32, pieces))


def _vector_segment(field: int, payload: Buffer, count: int, *, align: int = 4, block: int = 0) -> _Segment:
    """One vector: [lead padding + u32 count] [payload, in ``block``-byte blocks or one] [padding]."""
    head = bytes(4 if align == 8 else 0) + U32.pack(count)
    pieces, crcs = _blocks(payload, block or max(len(payload), 1))
    pad = bytes(-len(memoryview(payload).cast("B")) % 4)
    tail: list[Buffer] = [pad] if pad else []
    return _Segment(
        {field: len(head) - 4},
        [head, *pieces, *tail],
        [zlib.crc32(head), *crcs, *map(zlib.crc32, tail)],
    )


def _node_segment(codes: bytes, names: _NameColumn) -> tuple[_Segment, int]:
    """The node vectors (statuses, sorted index, name ends, names) in 4 KiB blocks, and the
    offset of the first status code in it. Node vectors come first in the body: the blocks
    node_status reads sit together right after the header."""
    n = len(codes)
    region = bytearray()
    fields: dict[int, int] = {}
    for field, payload, count in (
        (_F_STATUSES, codes, n),
        (_F_SORTED, names.order.data.cast("B"), n),
        (_F_ENDS, names.ends.data.cast("B"), n),
        (_F_NAMES, names.blob, len(names.blob)),
    ):
        region += bytes(-len(region) % 4)
        fields[field] = len(region)
        region += U32.pack(count)
        region += payload
    region += bytes(-len(region) % 4)
    pieces, crcs = _blocks(region, BLOCK_SIZE)
    return _Segment(fields, pieces, crcs), fields[_F_STATUSES] + 4


@dataclass(slots=True)
class _NodeModel:
    """The node set as encoded: names, their sorted order, where status code i is."""

    names: list[str]
    order: Any  # uint32 indexes of ``names`` in sorted order (a numpy array)
    segment: _Segment
    codes_at: int
    #: name -> position, built once many nodes are looked up (a few use the sorted order).
    index: dict[str, int] | None = None

    def indexed(self, lookups: int) -> None:
        if self.index is None and lookups > 64:
            self.index = dict(zip(self.names, range(len(self.names)), strict=True))

    def position(self, node: str) -> int | None:
        if self.index is not None:
            return self.index.get(node)
        names = self.names
        at = bisect.bisect_left(self.order, node, key=names.__getitem__)
        if at < len(self.order):
            index = int(self.order[at])
            if index < len(names) and names[index] == node:
                return index
        return None


@dataclass(slots=True)
class _TypedModel:
    """A typed history column as encoded: its keys, where they are stored, its values segment."""

    keys: list[str]
    #: Field of an earlier vector holding the same key list (_F_NAMES or a keys field), else None.
    shared: int | None
    keys_segment: _Segment | None
    values: _Segment
    values_at: int
    index: dict[str, int] | None = None

    def position(self, node: str, nodes: _NodeModel | None) -> int | None:
        if self.shared == _F_NAMES and nodes is not None:
            return nodes.position(node)
        if self.index is None:
            self.index = dict(zip(self.keys, range(len(self.keys)), strict=True))
        return self.index.get(node)


@dataclass(slots=True)
class _DocModel:
    """A node-keyed JSON document as encoded: chunks of keys, each chunk's entries + "," and crc.
    ``chunks`` None: a document stored whole (read from a file), rebuilt from the live column
    when anything in it changes."""

    chunks: list[list[str]] | None
    pieces: list[bytes]
    crcs: list[int]
    segment: _Segment | None
    count: int = 0
    where: dict[str, int] | None = None


def _doc_segment(field: int, pieces: list[bytes], crcs: list[int]) -> _Segment | None:
    """``{`` + the chunks' entries + ``}`` as one vector; None for an empty document."""
    live = [(piece, crc) for piece, crc in zip(pieces, crcs, strict=True) if piece]
    if not live:
        return None
    total = 1 + sum(len(piece) for piece, _ in live)  # "{" + entries with commas, the last one's dropped
    head = U32.pack(total) + b"{"
    last = memoryview(live[-1][0])[:-1]
    tail = b"}" + bytes(-(4 + total) % 4)
    blocks: list[Buffer] = [head, *(piece for piece, _ in live[:-1])]
    checks = [zlib.crc32(head), *(crc for _, crc in live[:-1])]
    if last:
        blocks.append(last)
        checks.append(zlib.crc32(last))
    blocks.append(tail)
    checks.append(zlib.crc32(tail))
    return _Segment({field: 0}, blocks, checks)


def _chunk_piece(values: dict[str, Any], wid: str, label: Callable[[str], str], checked: bool) -> bytes:
    blob = _dumps_map(values, wid, label, checked)
    return b"" if blob is None else blob[1:-1] + b","


def _doc_model(
    field: int, column: dict[str, Any], wid: str, label: Callable[[str], str], checked: bool
) -> _DocModel:
    items = iter(column.items())
    chunks, pieces = [], []
    for _ in range(0, len(column), _DOC_CHUNK):
        part = dict(itertools.islice(items, _DOC_CHUNK))
        chunks.append(list(part))
        pieces.append(_chunk_piece(part, wid, label, checked))
    crcs = list(map(zlib.crc32, pieces))
    return _DocModel(chunks, pieces, crcs, _doc_segment(field, pieces, crcs), len(column))


def _patch_doc(
    field: int,
    model: _DocModel,
    column: dict[str, Any],
    nodes: set[str],
    wid: str,
    label: Callable[[str], str],
    checked: bool,
) -> _DocModel:
    """``model`` with the entries of ``nodes`` as ``column`` holds them now (added, changed or
    removed); only their chunks are encoded again."""
    if model.chunks is None:
        return _doc_model(field, column, wid, label, checked)
    chunks, where = model.chunks, model.where
    if where is None:  # built on the first patch (a dict update per chunk, in C), then kept
        where = {}
        for k, chunk in enumerate(chunks):
            where.update(dict.fromkeys(chunk, k))
    chunks = list(chunks)
    count = model.count
    dirty: set[int] = set()
    removed: set[str] = set()
    for node in nodes:
        at = where.get(node)
        present = node in column
        if at is None:
            if not present:
                continue
            if not chunks or len(chunks[-1]) >= _DOC_CHUNK:
                chunks.append([])
            k = where[node] = len(chunks) - 1
            chunks[k] = [*chunks[k], node]
            count += 1
        elif not present:
            k = at
            removed.add(node)
            del where[node]
            count -= 1
        else:
            k = at
        dirty.add(k)
    if count != len(column):  # the column was changed bypassing the writers: encode it whole
        return _doc_model(field, column, wid, label, checked)
    pieces, crcs = list(model.pieces), list(model.crcs)
    for k in sorted(dirty):
        keys = chunks[k]
        if removed:
            keys = chunks[k] = [key for key in keys if key not in removed]
        piece = _chunk_piece(dict(zip(keys, map(column.__getitem__, keys), strict=True)), wid, label, checked)
        if k < len(pieces):
            pieces[k], crcs[k] = piece, zlib.crc32(piece)
        else:
            pieces.append(piece)
            crcs.append(zlib.crc32(piece))
    return _DocModel(chunks, pieces, crcs, _doc_segment(field, pieces, crcs), count, where)


def _typed_model(
    column: dict[str, Any],
    spec: tuple[int, int, int, type, np.dtype[Any]],
    known: list[tuple[int, list[str]]],
    checked: bool,
) -> _TypedModel | None:
    """The typed vectors of a non-empty history column, or None when JSON must hold it."""
    _, keys_field, values_field, pytype, dtype = spec
    vectors = _typed_column(column, pytype, dtype, known, checked)
    if vectors is None:
        return None
    keys, payload, key_list = vectors
    values = _vector_segment(values_field, payload, len(payload) // 8, align=8, block=_VALUE_BLOCK)
    if isinstance(keys, bytes):
        return _TypedModel(key_list, None, _vector_segment(keys_field, keys, len(keys)), values, 8)
    return _TypedModel(key_list, keys, None, values, 8)


#: (field, column, what errors call a value, ``Changed`` bit) of the node-keyed JSON documents.
_DOC_COLUMNS: Final = (
    (_F_OUTPUTS, "outputs", "output of node", Changed.OUTPUT),
    (_F_ERRORS, "errors", "error of node", Changed.ERROR),
    (_F_ERROR_TYPES, "error_types", "error_type of node", Changed.ERROR_TYPE),
    (_F_WAITS, "waits", "wait of node", Changed.WAIT),
    (_F_ATTEMPT_LOG, "attempt_log", "attempt log of node", Changed.ATTEMPT_LOG),
    (_F_CODE_VERSIONS, "code_versions", "code version of", Changed.CODE_VERSION),
)
_TYPED_COLUMNS: Final = (
    (_TYPED[0], "attempts", Changed.ATTEMPTS),
    (_TYPED[1], "started_at", Changed.STARTED),
    (_TYPED[2], "finished_at", Changed.FINISHED),
)
#: Columns whose patches look nodes up by position (statuses and the typed history).
_INDEXED_BITS: Final = (Changed.STATUS, Changed.ATTEMPTS, Changed.STARTED, Changed.FINISHED)
#: The ``Changed`` bits of per-node columns, one by one.
_NODE_BITS: Final = tuple(1 << k for k in range(Changed.NODE.bit_length()))


def _labeller(prefix: str) -> Callable[[str], str]:
    return lambda key: f"{prefix} {key}"


@dataclass(slots=True)
class _Encoded:
    """What this codec last wrote (or read) for one state object: the segments of its body and
    the models to patch them, valid for ``log`` (the state's ``ChangeLog``) at ``mark``. Held by
    the codec, never by the state: the knowledge an encode gains (every value checked, every
    column encoded thus) without modifying the state it encodes."""

    log: ChangeLog
    mark: tuple[int, int]
    nodes: _NodeModel | None
    #: json field -> typed vectors (None: the column was empty).
    typed: dict[int, _TypedModel | None]
    docs: dict[int, _DocModel]
    #: data, audit, runs: field -> segment (None: absent)
    blobs: dict[int, _Segment | None]
    dag: tuple[Any, _Segment | None]

    def segments(self) -> list[_Segment]:
        out: list[_Segment] = [] if self.nodes is None else [self.nodes.segment]
        for model in self.typed.values():
            if model is not None:
                if model.keys_segment is not None:
                    out.append(model.keys_segment)
                out.append(model.values)
        for doc in self.docs.values():
            if doc.segment is not None:
                out.append(doc.segment)
        out += [segment for segment in self.blobs.values() if segment is not None]
        if self.dag[1] is not None:
            out.append(self.dag[1])
        return out

    def shared_keys(self) -> dict[int, int]:
        """keys field -> the field whose vector holds the same keys."""
        return {
            spec[1]: model.shared
            for (spec, _, _), model in zip(_TYPED_COLUMNS, self.typed.values(), strict=True)
            if model is not None and model.shared is not None
        }


class _DagBlobCache:
    """The encoded DAG structure of the last state encoded, reused while it is the same dict.

    ``WorkflowData`` replaces its DAG dict whenever the structure changes and never mutates it in
    place, so identity is a safe key; the engine sets it once per run and then saves many times.
    """

    def __init__(self) -> None:
        self._last: tuple[dict[str, list[str]], _Segment] | None = None

    def get(self, dag: dict[str, list[str]], workflow_id: str) -> _Segment:
        last = self._last
        if last is not None and last[0] is dag:
            return last[1]
        try:
            blob = orjson.dumps(dag, option=_JSON_OPTIONS)
        except TypeError as exc:
            raise SerializationError(workflow_id, "dag", exc) from exc
        segment = _vector_segment(_F_DAG, blob, len(blob))
        self._last = (dag, segment)  # holding the dict keeps its id from being reused
        return segment


def _check_header_values(c: StateColumns) -> str:
    wid = c.workflow_id
    if not isinstance(wid, str):
        raise SerializationError(str(wid), "workflow id", TypeError("not a str"))
    if not 0 <= c.trigger_cause <= 255:
        raise SerializationError(wid, "trigger_cause", ValueError(f"{c.trigger_cause} is not a byte"))
    return wid


def _list_blob(c: StateColumns, field: int) -> _Segment | None:
    """The audit trail or the run history as one document (None when empty)."""
    wid = c.workflow_id
    entries: list[Any] = c.audit if field == _F_AUDIT else c.runs
    if not entries:
        return None
    try:
        blob = orjson.dumps([entry.to_json() for entry in entries], option=_JSON_OPTIONS)
    except (TypeError, AttributeError) as exc:
        raise SerializationError(wid, "audit" if field == _F_AUDIT else "run history", exc) from exc
    return _vector_segment(field, blob, len(blob))


def _data_blob(c: StateColumns) -> _Segment | None:
    blob = _dumps_map(c.data, c.workflow_id, lambda k: f"data[{k}]")
    return None if blob is None else _vector_segment(_F_DATA, blob, len(blob))


def _full(
    c: StateColumns, log: ChangeLog, names_cache: _NameColumnCache, dag_blobs: _DagBlobCache
) -> tuple[_Encoded, list[_Segment], bool]:
    """Every column encoded afresh: the models, the extra JSON history segments, and whether the
    result can be patched later (every history column typed or empty)."""
    wid = _check_header_values(c)
    checked = c.checked
    statuses = c.statuses
    names = list(statuses)
    codes = _status_codes(statuses, wid)
    nodes = None
    if names:
        column = names_cache.get(wid, names)
        segment, codes_at = _node_segment(codes, column)
        nodes = _NodeModel(column.names, column.order, segment, codes_at)
    known: list[tuple[int, list[str]]] = [(_F_NAMES, names)] if names else []
    typed: dict[int, _TypedModel | None] = {}
    extra: list[_Segment] = []
    for spec, attr, _ in _TYPED_COLUMNS:
        values = getattr(c, attr)
        model = _typed_model(values, spec, known, checked) if values else None
        if model is not None:
            known.append((spec[1], model.keys))
        elif values:  # JSON keeps the column exactly
            blob = _dumps_map(values, wid, _labeller(f"{attr} of node"))
            assert blob is not None
            extra.append(_vector_segment(spec[0], blob, len(blob)))
        typed[spec[0]] = model
    docs: dict[int, _DocModel] = {}
    for field, attr, label, _ in _DOC_COLUMNS:
        # One document, cut into chunks only when a later save first patches it: a state saved
        # once pays one orjson pass per column, not one per chunk.
        document = c.deferred_raw(attr)  # undecoded (nobody read it since the load): as stored
        if document is None:
            document = _dumps_map(getattr(c, attr), wid, _labeller(label), checked)
        doc_segment = None if document is None else _vector_segment(field, document, len(document))
        docs[field] = _DocModel(None if document else [], [], [], doc_segment)
    blobs = {_F_DATA: _data_blob(c), _F_AUDIT: _list_blob(c, _F_AUDIT), _F_RUNS: _list_blob(c, _F_RUNS)}
    dag = (c.dag, None if c.dag is None else dag_blobs.get(c.dag, wid))
    encoded = _Encoded(log, log.mark(), nodes, typed, docs, blobs, dag)
    return encoded, extra, not extra


def _patch(
    last: _Encoded, c: StateColumns, changes: list[tuple[int, str | None]], dag_blobs: _DagBlobCache
) -> _Encoded | None:
    """``last`` with what ``changes`` name encoded again, or None when only a full encode will do
    (a node added or removed, a history value that no longer fits its typed vector, ...)."""
    wid = _check_header_values(c)
    changed: dict[int, set[str]] = {}
    bits = 0
    for mask, node in changes:
        bits |= mask
        if node is not None:  # "" is a node name like any other
            for bit in _NODE_BITS:
                if mask & bit:
                    changed.setdefault(bit, set()).add(node)
    nodes = last.nodes
    statuses = c.statuses
    if len(statuses) != (0 if nodes is None else len(nodes.names)):
        return None
    if nodes is not None:
        nodes.indexed(sum(len(changed.get(bit, ())) for bit in _INDEXED_BITS))
    if nodes is not None and Changed.STATUS in changed:
        edits = []
        for node in changed[Changed.STATUS]:
            index = nodes.position(node)
            code = STATUS_CODES.get(statuses.get(node))  # type: ignore[arg-type]
            if index is None or code is None:  # a new node, or a status without a byte
                return None
            edits.append((nodes.codes_at + index, bytes((code,))))
        nodes = _NodeModel(
            nodes.names, nodes.order, nodes.segment.patched(edits), nodes.codes_at, nodes.index
        )
    elif Changed.STATUS in changed:
        return None
    typed = dict(last.typed)
    for spec, attr, bit in _TYPED_COLUMNS:
        json_field, _, _, pytype, _ = spec
        column = getattr(c, attr) if bit in changed else None
        model = typed[json_field]
        if column is None:
            continue
        if model is None or len(column) != len(model.keys):
            if not column:
                typed[json_field] = None
                continue
            return None  # keys added or removed: a full encode decides the layout again
        pack = _I64.pack if pytype is int else _F64.pack
        edits = []
        for node in changed[bit]:
            value = column.get(node, _MISSING)
            index = model.position(node, last.nodes)
            if index is None or type(value) is not pytype:
                return None
            if pytype is float and not math.isfinite(value):
                return None  # the full encode refuses it, naming the node
            try:
                edits.append((model.values_at + 8 * index, pack(value)))
            except struct.error:
                return None  # beyond int64: JSON holds it
        typed[json_field] = _TypedModel(
            model.keys,
            model.shared,
            model.keys_segment,
            model.values.patched(edits),
            model.values_at,
            model.index,
        )
    docs = dict(last.docs)
    checked = c.checked
    for field, attr, label, bit in _DOC_COLUMNS:
        if bit in changed:
            docs[field] = _patch_doc(
                field, docs[field], getattr(c, attr), changed[bit], wid, _labeller(label), checked
            )
    blobs = dict(last.blobs)
    if bits & Changed.DATA:
        blobs[_F_DATA] = _data_blob(c)
    if bits & Changed.AUDIT:
        blobs[_F_AUDIT] = _list_blob(c, _F_AUDIT)
    if bits & Changed.RUNS:
        blobs[_F_RUNS] = _list_blob(c, _F_RUNS)
    dag = last.dag
    if c.dag is not dag[0]:
        dag = (c.dag, None if c.dag is None else dag_blobs.get(c.dag, wid))
    return _Encoded(last.log, last.log.mark(), nodes, typed, docs, blobs, dag)


@dataclass(frozen=True, slots=True)
class _Header:
    """The scalars of the header, read under the state's lock."""

    workflow_id: str
    created_at: float
    rolling_back: bool
    trigger_cause: int


def _build(
    c: _Header, segments: list[_Segment], shared: dict[int, int], version: int, updated_at: float
) -> bytes:
    """Header + the segments laid out front to back (each at its phase modulo 8) + header crc."""
    fields: dict[int, int] = {}
    pieces: list[Buffer] = []
    crcs: list[int] = []
    at = 0
    for segment in segments:
        pad = (segment.phase - at) % 8
        if pad:
            pieces.append(bytes(pad))
            crcs.append(zlib.crc32(bytes(pad)))
            at += pad
        for field, offset in segment.fields.items():
            fields[field] = at + offset
        for piece, crc in zip(segment.pieces, segment.crcs, strict=True):
            if len(piece):  # blocks must be non-empty (their ends strictly increase)
                pieces.append(piece)
                crcs.append(crc)
                at += len(piece)
    for keys_field, other in shared.items():  # the same key list is already stored: point at it
        fields[keys_field] = fields[other]
    block_ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)), dtype=np.int64)

    # The header is built by a small Builder; the body is joined after it instead of being copied
    # into the Builder (which zero-fills and copies: ~10 ms at 100k nodes). A body vector at body
    # offset v is, in Builder terms, at offset -v from the end of the header, so the generated
    # offset arithmetic yields the forward uoffsets FlatBuffers expects.
    b = flatbuffers.Builder(512 + 8 * len(pieces) + 4 * len(c.workflow_id))
    ends_vector = b.CreateNumpyVector(block_ends.astype(np.uint32)) if pieces else 0
    crcs_vector = b.CreateNumpyVector(np.array(crcs, np.uint32)) if pieces else 0
    wid = b.CreateString(c.workflow_id)
    _ws.Start(b)
    _ws.AddFormatVersion(b, FORMAT_VERSION)
    _ws.AddWorkflowId(b, wid)
    _ws.AddVersion(b, version)
    _ws.AddCreatedAt(b, c.created_at)
    _ws.AddUpdatedAt(b, updated_at)
    for field in sorted(fields):
        # Default -1, never a real offset, so a vector at body offset 0 is not elided as "absent".
        b.PrependUOffsetTRelativeSlot(field, -fields[field], -1)
    _ws.AddRollingBack(b, c.rolling_back)
    _ws.AddTriggerCause(b, c.trigger_cause)
    _ws.AddBodySize(b, at)
    if pieces:
        _ws.AddBlockEnds(b, ends_vector)
        _ws.AddBlockCrcs(b, crcs_vector)
    b.Finish(_ws.End(b), file_identifier=IDENTIFIER)
    header = memoryview(b.Bytes)[b.Head() :]
    assert len(header) % 8 == 0, "Finish aligns the header to minalign (8), keeping body vectors aligned"
    # One joined buffer: on this machine's ext4 a single 13 MB write is ~2x faster than one write
    # per vector (measured 13 ms vs 36 ms with fsync), which outweighs the ~1-3 ms of the copy.
    return b"".join((header, *pieces, U32.pack(zlib.crc32(header))))


def _encode_columns(c: StateColumns, version: int, updated_at: float) -> bytes:
    """Every column of ``c`` encoded afresh, without ``savable_columns``'s check of the values
    (what ``encode`` does for a state it has not seen; tests forge files with it)."""
    entry, extra, _ = _full(c, ChangeLog(), _NameColumnCache(), _DagBlobCache())
    header = _Header(c.workflow_id, float(c.created_at), bool(c.rolling_back), int(c.trigger_cause))
    return _build(header, [*entry.segments(), *extra], entry.shared_keys(), version, updated_at)


class _EncodedCache:
    """The last ``_Encoded`` per workflow id (a few: each holds about a file's worth of bytes)."""

    def __init__(self, capacity: int = 4) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Encoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, workflow_id: str, log: ChangeLog) -> _Encoded | None:
        with self._lock:
            entry = self._entries.get(workflow_id)
        return entry if entry is not None and entry.log is log else None

    def put(self, workflow_id: str, entry: _Encoded | None) -> None:
        with self._lock:
            if entry is None:
                self._entries.pop(workflow_id, None)
                return
            self._entries[workflow_id] = entry
            self._entries.move_to_end(workflow_id)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


# --- decoding our layout -----------------------------------------------------------------------


class _OurFile:
    """A verified view of our layout: the header is checked on open, body blocks when first read
    (or all of them at open with ``verify_all``, which is cheaper when most of the file is read)."""

    __slots__ = (
        "block_ends",
        "body_end",
        "body_start",
        "buf",
        "crc_start",
        "last_start",
        "last_stop",
        "root",
        "verified",
    )

    def __init__(self, buf: memoryview, *, verify_all: bool = False) -> None:
        size = len(buf)
        if size < 16:
            raise Malformed(f"{size} bytes is too short for a state file")
        if buf[4:8] != IDENTIFIER:  # type: ignore[comparison-overlap]  # memoryview == bytes compares bytes
            raise Malformed(f"missing the {IDENTIFIER.decode()} file identifier")
        root = root_table(buf)
        fmt = root.scalar(_F_FORMAT, U16, 0)
        if fmt not in READABLE_FORMATS:
            raise Malformed(f"unsupported format version {fmt} (this reader knows 1 to {FORMAT_VERSION})")
        body_end = size - 4
        body_start = body_end - int(root.scalar(_F_BODY, U32, 0))
        if body_start < 8:
            raise Malformed("impossible body size")
        # Nothing read so far is trusted beyond bounds checks until the header checksum matches.
        if zlib.crc32(buf[:body_start]) != U32.unpack_from(buf, body_end)[0]:
            raise Malformed("checksum mismatch in the header")
        if root.pos + root.table_size > body_start or root.vt + root.vt_size > body_start:
            raise Malformed("root table outside the checksummed header")
        ends_start, count = root.vector(_F_BLOCK_ENDS, 4)
        crc_start, crc_count = root.vector(_F_CRCS, 4)
        if crc_count != count or (count and max(ends_start, crc_start) + 4 * count > body_start):
            raise Malformed("block tables outside the header or of different lengths")
        block_ends: tuple[int, ...] = u32s(count).unpack_from(buf, ends_start) if count else ()
        # Strictly increasing (compared pairwise in C) and ending where the body ends.
        if (block_ends[-1] if count else 0) != body_end - body_start or not all(
            map(operator.lt, block_ends, block_ends[1:])
        ):
            raise Malformed("blocks do not tile the body")
        self.buf = buf
        self.root = root
        self.body_start = body_start
        self.body_end = body_end
        self.block_ends = block_ends
        self.crc_start = crc_start
        self.verified = bytearray(count)
        # [last_start, last_stop): absolute span of the block checked last (empty: none yet).
        self.last_start = self.last_stop = 0
        if verify_all:
            self.verify_all()

    def _check_block(self, k: int) -> None:
        start = self.body_start + (self.block_ends[k - 1] if k else 0)
        stop = self.body_start + self.block_ends[k]
        if zlib.crc32(self.buf[start:stop]) != U32.unpack_from(self.buf, self.crc_start + 4 * k)[0]:
            raise Malformed(f"checksum mismatch in bytes {start}-{stop}")
        self.verified[k] = 1
        self.last_start, self.last_stop = start, stop

    def need(self, start: int, stop: int) -> None:
        """Verify the body blocks overlapping ``[start, stop)`` before they are read."""
        # Most reads fall in the block checked last (a small file's node vectors are one block).
        if self.last_start <= start and stop <= self.last_stop:
            return
        lo = max(start, self.body_start) - self.body_start
        hi = min(stop, self.body_end) - self.body_start
        if hi <= lo:
            return
        ends, verified = self.block_ends, self.verified
        k = bisect.bisect_right(ends, lo)
        while k < len(ends):
            if not verified[k]:
                self._check_block(k)
            if ends[k] >= hi:
                break
            k += 1

    def verify_all(self) -> None:
        """Check every body block: one C-level pass of slices and crc32s, no Python loop."""
        ends = self.block_ends
        count = len(ends)
        if count:
            body = self.buf[self.body_start : self.body_end]
            crcs = map(zlib.crc32, map(body.__getitem__, map(slice, (0, *ends[:-1]), ends)))
            if tuple(crcs) != u32s(count).unpack_from(self.buf, self.crc_start):
                self.verified = bytearray(count)
                for k in range(count):  # name the first damaged block
                    self._check_block(k)
            self.verified = bytearray(b"\x01") * count
        self.last_start, self.last_stop = 0, self.body_end  # every read is within a checked block

    def vector(self, field: int, elem_size: int) -> tuple[int, int]:
        """(start, count) of a vector field after verifying its length prefix; (-1, 0) if absent."""
        target = self.root.target(field)
        if target < 0:
            return -1, 0
        self.need(target, target + 4)
        return vector_at(self.buf, target, elem_size, field)

    def string(self, field: int) -> str:
        start, count = self.vector(field, 1)
        if start < 0:
            return ""
        self.need(start, start + count)
        self.root.budget.charge(count)
        return decode_utf8(self.buf[start : start + count], f"field {field}")

    def scalar(self, field: int, fmt: struct.Struct, default: int | float | bool) -> Any:
        return self.root.scalar(field, fmt, default)

    def node_vectors(self) -> tuple[int, int, int, int, int]:
        """(names_start, names_len, ends_start, statuses_start, node_count), counts cross-checked."""
        names_start, names_len = self.vector(_F_NAMES, 1)
        ends_start, n = self.vector(_F_ENDS, 4)
        statuses_start, n_statuses = self.vector(_F_STATUSES, 1)
        if n_statuses != n:
            raise Malformed(f"{n_statuses} statuses for {n} node names")
        if n > MAX_ELEMENTS:
            raise Malformed(f"{n} nodes exceeds the cap of {MAX_ELEMENTS}")
        return names_start, names_len, ends_start, statuses_start, n

    def name_spans(
        self, names_start: int, names_len: int, ends_start: int, indexes: list[int]
    ) -> list[tuple[int, int]]:
        """Absolute (start, stop) of the names of the nodes at ``indexes``, each verified."""
        buf, need = self.buf, self.need
        spans = []
        for index in indexes:
            if index:
                at = ends_start + 4 * (index - 1)
                need(at, at + 8)
                start, end = _U32_PAIR.unpack_from(buf, at)
                start += 1
            else:
                need(ends_start, ends_start + 4)
                start, end = 0, U32.unpack_from(buf, ends_start)[0]
            if not start <= end <= names_len:
                raise Malformed(f"name {index} has impossible offsets {start}-{end}")
            need(names_start + start, names_start + end)
            spans.append((names_start + start, names_start + end))
        return spans

    def name_bytes(self, names_start: int, names_len: int, ends_start: int, index: int) -> bytes:
        ((start, stop),) = self.name_spans(names_start, names_len, ends_start, [index])
        return bytes(self.buf[start:stop])

    def names_at(
        self, names_start: int, names_len: int, ends_start: int, indexes: list[int]
    ) -> tuple[str, ...]:
        """The names of the nodes at ``indexes``, read one by one (for a few nodes of many)."""
        buf = self.buf
        try:
            return tuple(
                str(buf[start:stop], "utf-8")
                for start, stop in self.name_spans(names_start, names_len, ends_start, indexes)
            )
        except UnicodeDecodeError as exc:
            raise Malformed(f"node name is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None

    def names(self, known: _NameColumn | None = None) -> list[str]:
        """Every node name, in status order: one UTF-8 decode and one split for the whole column;
        ``known`` (the column this process last wrote for the workflow) is reused when its bytes
        are the stored ones, so the strings (and their hashes) are not built again."""
        names_start, names_len, ends_start, _, n = self.node_vectors()
        if n == 0:
            if names_len:
                raise Malformed("node names without nodes")
            return []
        self.need(names_start, names_start + names_len)
        self.need(ends_start, ends_start + 4 * n)
        self.root.budget.charge(names_len)
        blob = self.buf[names_start : names_start + names_len]
        ends = np.frombuffer(self.buf, np.dtype("<u4"), n, ends_start)
        if (
            known is not None
            and len(known.names) == n
            and np.array_equal(known.ends, ends)
            and known.blob == bytes(blob)  # bytes == bytes is a memcmp; against a memoryview, 10x slower
        ):
            return known.names  # the names whose column is these very bytes
        seps = np.flatnonzero(np.frombuffer(blob, np.uint8) == 0)
        if int(ends[-1]) != names_len:
            raise Malformed("node name offsets do not cover the name column")
        if len(seps) == n - 1:
            if not np.array_equal(seps, ends[:-1]):
                raise Malformed("node name offsets disagree with the separators")
            return decode_utf8(blob, "node names").split(_SEP)
        # Some names contain NUL: slice by the stored ends (each name starts after the previous end).
        starts = np.empty(n, np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1].astype(np.int64) + 1
        if np.any(starts > ends) or np.any(np.frombuffer(blob, np.uint8)[starts[1:] - 1] != 0):
            raise Malformed("node name offsets are not increasing")
        return [
            decode_utf8(blob[s:e], "node name") for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    def codes(self, statuses_start: int, n: int) -> bytes:
        """The status codes of the nodes (a copy: n bytes), every one checked to be known."""
        self.need(statuses_start, statuses_start + n)
        codes = bytes(self.buf[statuses_start : statuses_start + n])
        unknown = codes.translate(None, _KNOWN_CODES)  # one C-level pass: what is left is unknown
        if unknown:
            raise Malformed(f"unknown status code {unknown[0]}")
        return codes

    def history(
        self, json_field: int, names: list[str], split: dict[int, list[str]]
    ) -> dict[str, Any] | tuple[bytes, Callable[[bytes], dict[str, Any]]]:
        """A history column from its JSON document, or from its typed vectors as (values, decode)
        for ``StateColumns.defer``: building 100k-entry dicts is most of a load, so it waits for
        first access. Everything a load refuses is still checked here: the keys (unique, one per
        value) and the values (non-negative attempts, finite times; a column that fails is
        returned decoded, for ``check_columns`` to name the node). ``split`` caches the key lists
        already decoded (by vector position), since columns may share one keys vector."""
        spec = next(t for t in _TYPED if t[0] == json_field)
        _, keys_field, values_field, pytype, dtype = spec
        start, count = self.vector(values_field, 8)
        if start < 0:
            return self.json(json_field, dict, f"history field {json_field}") or {}
        self.need(start, start + 8 * count)
        values = np.frombuffer(self.buf, dtype, count, start)
        target = self.root.target(keys_field)
        if target == self.root.target(_F_NAMES):
            keys = names  # unique: the decoder refuses duplicate node names
        elif target in split:
            keys = split[target]
        else:
            key_start, key_len = self.vector(keys_field, 1)
            if key_start < 0:
                raise Malformed(f"history field {json_field} has values but no keys")
            self.need(key_start, key_start + key_len)
            self.root.budget.charge(key_len)
            keys = decode_utf8(self.buf[key_start : key_start + key_len], "history keys").split(_SEP)
            if len(set(keys)) != len(keys):
                raise Malformed(f"history field {json_field} has duplicate keys")
            split[target] = keys
        if len(keys) != count:
            raise Malformed(f"history field {json_field}: {len(keys)} keys for {count} values")
        valid = bool(values.min() >= 0) if pytype is int else bool(np.isfinite(values).all())
        if not count or not valid:
            return dict(zip(keys, values.tolist(), strict=True))
        return bytes(self.buf[start : start + 8 * count]), functools.partial(_history_column, keys, dtype)

    def raw(self, field: int) -> bytes | None:
        """A JSON document's bytes (verified, charged to the decode budget), or None if absent."""
        start, count = self.vector(field, 1)
        if start < 0:
            return None
        self.need(start, start + count)
        self.root.budget.charge(count)  # as ``json`` charges it: at every reference
        return bytes(self.buf[start : start + count])

    def json(self, field: int, kind: type[_T], what: str) -> _T | None:
        start, count = self.vector(field, 1)
        if start < 0:
            return None
        self.need(start, start + count)
        # Charged at every reference: fields pointing at one document would each parse it.
        self.root.budget.charge(count)
        return _parse_document(self.buf[start : start + count], kind, what)


def _parse_document(raw: memoryview | bytes, kind: type[_T], what: str) -> _T:
    """A JSON document that must be an object (``kind`` dict) or array of at most ``MAX_ELEMENTS``."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise Malformed(f"{what} is not a JSON {'object' if kind is dict else 'array'}")
    if len(value) > MAX_ELEMENTS:  # type: ignore[arg-type]
        raise Malformed(f"{what} has {len(value)} entries, over the cap of {MAX_ELEMENTS}")  # type: ignore[arg-type]
    return value


def _decode_ours(
    buf: memoryview,
    source: str,
    name_cache: _NameColumnCache | None = None,
    stored: list[_Encoded] | None = None,
) -> StateColumns:
    """Every column, checked by the caller, except the outputs: their document is kept as bytes
    and parsed on first access (``StateColumns.defer``), so a load that never reads them (and the
    save after it, which writes those bytes again) skips the largest parse of a typical state.
    Every byte is still verified here (the checksums) and charged to the decode budget."""
    f = _OurFile(buf, verify_all=True)
    workflow_id = f.string(_F_ID)
    known = None if name_cache is None else name_cache.peek(workflow_id)
    names = f.names(known)
    _, _, _, statuses_start, n = f.node_vectors()
    if len(names) != n:
        raise Malformed(f"{len(names)} node names for {n} nodes")
    codes = f.codes(statuses_start, n)
    if name_cache is not None and known is not None and names is known.names:
        statuses = name_cache.statuses(known, workflow_id, codes)
    else:
        statuses = dict(zip(names, map(STATUSES_BY_CODE.__getitem__, codes), strict=True))
    if len(statuses) != n:
        raise Malformed("duplicate node names")
    dag = f.json(_F_DAG, dict, "dag")  # its values are checked with the others (checked_columns)
    split: dict[int, list[str]] = {}
    raw_audit = f.json(_F_AUDIT, list, "audit") or []
    try:
        audit = [AuditEntry.from_json(entry) for entry in raw_audit]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"audit entry is malformed ({exc!r})") from None
    raw_runs = f.json(_F_RUNS, list, "runs") or []
    try:
        runs = [RunRecord.from_json(run) for run in raw_runs]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"run record is malformed ({exc})") from None
    read = [f.history(json_field, names, split) for json_field, *_ in _TYPED]
    history = [column if isinstance(column, dict) else {} for column in read]
    columns = StateColumns(
        workflow_id=workflow_id,
        version=int(f.scalar(_F_VERSION, I64, 0)),
        created_at=float(f.scalar(_F_CREATED, F64, 0.0)),
        updated_at=float(f.scalar(_F_UPDATED, F64, 0.0)),
        data=f.json(_F_DATA, dict, "data") or {},
        statuses=statuses,
        attempts=history[0],
        started_at=history[1],
        finished_at=history[2],
        errors=f.json(_F_ERRORS, dict, "errors") or {},
        error_types=f.json(_F_ERROR_TYPES, dict, "error_types") or {},
        dag=dag,
        audit=audit,
        attempt_log=f.json(_F_ATTEMPT_LOG, dict, "attempt log") or {},
        runs=runs,
        code_versions=f.json(_F_CODE_VERSIONS, dict, "code versions") or {},
        waits=f.json(_F_WAITS, dict, "waits") or {},
        rolling_back=bool(f.scalar(_F_ROLLING, U8, 0)),
        trigger_cause=int(f.scalar(_F_CAUSE, U8, 0)),
        # Exact types (see StateColumns.checked) once check_columns passes: statuses are members,
        # errors strings, attempt logs valid, and history columns read from typed vectors exact.
        checked=all(
            not column or f.root.target(values_field) >= 0
            for column, (_, _, values_field, _, _) in zip(read, _TYPED, strict=True)
        ),
    )
    for column, attr in zip(read, ("attempts", "started_at", "finished_at"), strict=True):
        if not isinstance(column, dict):
            columns.defer(attr, *column)
    outputs = f.raw(_F_OUTPUTS)
    if outputs is not None:
        columns.defer("outputs", outputs, functools.partial(_decode_outputs, source))
    if stored is not None:
        entry = _stored_entry(f, columns, names, split)
        if entry is not None:
            stored.append(entry)
    return columns


def _stored_segment(f: _OurFile, spans: list[tuple[int, int, int]]) -> tuple[_Segment, int, int]:
    """The file's blocks covering ``spans`` ((field, start, stop), absolute) as a segment that
    reuses their bytes and checksums; with the first and last block index."""
    body_start, ends = f.body_start, f.block_ends
    lo = min(start for _, start, _ in spans) - body_start
    hi = max(stop for _, _, stop in spans) - body_start
    first = bisect.bisect_right(ends, lo)
    last = max(bisect.bisect_left(ends, hi), first)
    if last >= len(ends):
        raise Malformed("vector outside the checksummed blocks")
    seg_start = ends[first - 1] if first else 0
    starts = (seg_start, *ends[first:last])
    pieces: list[Buffer] = [
        f.buf[body_start + a : body_start + b] for a, b in zip(starts, ends[first : last + 1], strict=True)
    ]
    crcs = list(u32s(last + 1 - first).unpack_from(f.buf, f.crc_start + 4 * first))
    fields = {field: start - body_start - seg_start for field, start, _ in spans}
    return _Segment(fields, pieces, crcs, seg_start % 8), first, last


def _stored_entry(
    f: _OurFile, c: StateColumns, names: list[str], split: dict[int, list[str]]
) -> _Encoded | None:
    """What a save of the decoded state can reuse of the file: every vector's blocks and
    checksums as they are (the decoder verified them); None when the layout does not allow it
    (history held as JSON, vectors sharing blocks across columns, an unaligned body)."""
    if f.body_start % 8:
        return None
    root = f.root
    used: list[tuple[int, int]] = []

    def span(field: int, elem: int) -> tuple[int, int, int] | None:
        start, count = f.vector(field, elem)
        stop = start + count * elem
        return None if start < 0 else (field, start - 4, stop + -stop % 4)  # with the padding

    def segment(*spans: tuple[int, int, int] | None) -> _Segment:
        present = [s for s in spans if s is not None]
        stored, first, last = _stored_segment(f, present)
        used.append((first, last))
        return stored

    nodes = None
    if names:
        node_spans = [span(_F_STATUSES, 1), span(_F_SORTED, 4), span(_F_ENDS, 4), span(_F_NAMES, 1)]
        stored = segment(*node_spans)
        sorted_start, n = f.vector(_F_SORTED, 4)
        order = np.frombuffer(f.buf, np.dtype("<u4"), n, sorted_start)
        codes_at = stored.fields[_F_STATUSES] + 4
        nodes = _NodeModel(names, order, stored, codes_at)
    typed: dict[int, _TypedModel | None] = {}
    keys_at: dict[int, tuple[int, list[str]]] = {}  # keys vector position -> (field, keys)
    if names:
        keys_at[root.target(_F_NAMES)] = (_F_NAMES, names)
    for json_field, keys_field, values_field, _, _ in _TYPED:
        if root.target(json_field) >= 0:
            return None  # JSON history: the types of its values are not known
        values = span(values_field, 8)
        if values is None:
            typed[json_field] = None
            continue
        target = root.target(keys_field)
        if target in keys_at:
            shared, keys = keys_at[target]
            keys_segment = None
        else:
            keys = split[target]
            shared, keys_segment = None, segment(span(keys_field, 1))
            keys_at[target] = (keys_field, keys)
        values_segment = segment(values)
        typed[json_field] = _TypedModel(
            keys, shared, keys_segment, values_segment, values_segment.fields[values_field] + 4
        )
    docs: dict[int, _DocModel] = {}
    for field, _, _, _ in _DOC_COLUMNS:
        doc = span(field, 1)
        docs[field] = _DocModel([], [], [], None) if doc is None else _DocModel(None, [], [], segment(doc))
    blobs: dict[int, _Segment | None] = {}
    for field in (_F_DATA, _F_AUDIT, _F_RUNS):
        blob = span(field, 1)
        blobs[field] = None if blob is None else segment(blob)
    dag = span(_F_DAG, 1)
    dag_segment = None if dag is None else segment(dag)
    used.sort()
    if any(a[1] >= b[0] for a, b in itertools.pairwise(used)):
        return None  # two columns share a block: neither can be reused alone
    return _Encoded(ChangeLog(), (0, 0), nodes, typed, docs, blobs, (c.dag, dag_segment))


def _history_column(keys: list[str], dtype: np.dtype[Any], raw: bytes) -> dict[str, Any]:
    """A deferred typed history column (keys and values checked by the decoder)."""
    return dict(zip(keys, np.frombuffer(raw, dtype).tolist(), strict=True))


def _decode_outputs(source: str, raw: bytes) -> dict[str, Any]:
    """A deferred output column: the JSON object of node -> output (``CorruptStateError`` if not)."""
    try:
        return _parse_document(raw, dict, "outputs")
    except Malformed as exc:
        raise CorruptStateError(source, exc.reason) from None


#: Up to this many nodes statuses are tallied with C-level bytes methods (``count`` per code,
#: ``translate`` + ``compress`` for the failed ones), which for a few dozen nodes costs a fraction
#: of numpy's array set-up; above it numpy's ``bincount`` wins.
_SMALL_NODE_COUNT = 256
#: Above this many failed nodes one split of the name column beats reading names one by one.
_FEW_FAILED = 64

_KNOWN_CODES: Final = bytes(range(len(STATUSES_BY_CODE)))
_STATUS_VALUES: Final = tuple(status.value for status in STATUSES_BY_CODE)
_FAILED_MASK: Final = bytes(1 if code in _FAILED_CODES else 0 for code in range(256))


def _status_tally(codes: bytes) -> tuple[list[int], list[int]]:
    """Nodes per status code (indexed by code) and the positions of the failed nodes, in order."""
    n = len(codes)
    if n <= _SMALL_NODE_COUNT:
        counts = list(map(codes.count, range(len(_KNOWN_CODES))))
        if not (counts[_FAILED_CODES[0]] or counts[_FAILED_CODES[1]]):
            return counts, []
        return counts, list(itertools.compress(range(n), codes.translate(_FAILED_MASK)))
    array = np.frombuffer(codes, np.uint8)
    counts = np.bincount(array, minlength=len(_KNOWN_CODES)).tolist()
    return counts, np.flatnonzero(np.frombuffer(codes.translate(_FAILED_MASK), np.uint8)).tolist()


def _summarize_ours(buf: memoryview, source: str) -> WorkflowSummary:
    # Lazily verified: a summary reads the node vectors (one block in a small file) and the header.
    f = _OurFile(buf)
    names_start, names_len, ends_start, statuses_start, n = f.node_vectors()
    counts, failed_idx = _status_tally(f.codes(statuses_start, n))
    if len(failed_idx) > _FEW_FAILED:
        all_names = f.names()
        failed = tuple(map(all_names.__getitem__, failed_idx))
    else:
        failed = f.names_at(names_start, names_len, ends_start, failed_idx)
    root = f.root
    return WorkflowSummary(
        workflow_id=f.string(_F_ID),
        format=StateFormat.FLATBUFFERS,
        node_count=n,
        # Statuses in code order, absent ones left out (compress keeps the non-zero counts).
        status_counts=dict(itertools.compress(zip(_STATUS_VALUES, counts, strict=True), counts)),
        failed_nodes=failed,
        # Checked as a decode checks them, so a summary never shows what a load refuses.
        updated_at=require_time(root.scalar(_F_UPDATED, F64, 0.0), "updated_at"),
        version=require_count(root.scalar(_F_VERSION, I64, 0), "version"),
        source=source,
        size_bytes=len(buf),
    )


def _node_status_ours(buf: memoryview, node: str) -> NodeStatus | None:
    f = _OurFile(buf)
    names_start, names_len, ends_start, statuses_start, n = f.node_vectors()
    sorted_start, n_sorted = f.vector(_F_SORTED, 4)
    if n_sorted != n:
        raise Malformed(f"sorted index has {n_sorted} entries for {n} nodes")
    try:
        target = node.encode("utf-8")
    except UnicodeEncodeError:
        return None  # such a name cannot have been stored
    lo, hi = 0, n
    while lo < hi:  # binary search over the names in byte order: ~17 probes at 100k nodes
        mid = (lo + hi) // 2
        at = sorted_start + 4 * mid
        f.need(at, at + 4)
        index = U32.unpack_from(buf, at)[0]
        if index >= n:
            raise Malformed(f"sorted index entry {index} out of range")
        name = f.name_bytes(names_start, names_len, ends_start, index)
        if name < target:
            lo = mid + 1
        elif name > target:
            hi = mid
        else:
            at = statuses_start + index
            f.need(at, at + 1)
            code: int = buf[at]
            if code > _MAX_CODE:
                raise Malformed(f"unknown status code {code}")
            return STATUSES_BY_CODE[code]
    return None


# --- shared plumbing ---------------------------------------------------------------------------


_IDENTIFIER_INT: Final = int.from_bytes(IDENTIFIER, "little")


def _is_ours(buf: memoryview) -> bool:
    """Our layout, or bytes within 3 bits of our identifier (a damaged file of ours, never Go's).

    Without the tolerance a bit flip in the identifier would send our file to the Go reader,
    which has no checksum and could return garbage instead of raising.
    """
    if len(buf) < 8:
        return False
    distance: int = (U32.unpack_from(buf, 4)[0] ^ _IDENTIFIER_INT).bit_count()
    return distance <= 3


def _guard(source: str, action: Callable[[], _T]) -> _T:
    """Run a decode step, turning every failure caused by the bytes into ``CorruptStateError``."""
    try:
        return action()
    except Malformed as exc:
        raise CorruptStateError(source, exc.reason) from None
    except InvalidValue as exc:  # the shared checks of decoded values
        raise CorruptStateError(source, str(exc)) from None
    except CorruptStateError:
        raise
    # Defence in depth: the reader checks bounds itself, but no malformed input may escape as these.
    except (struct.error, IndexError, KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CorruptStateError(source, f"malformed data ({type(exc).__name__}: {exc})") from exc


def _decode_any(
    raw: Buffer,
    source: str,
    name_cache: _NameColumnCache | None = None,
    stored: list[_Encoded] | None = None,
) -> tuple[StateColumns, StateFormat]:
    """Columns of either layout, checked like every decoder's (``validation.check_columns``)."""

    def run() -> tuple[StateColumns, StateFormat]:
        buf = as_view(raw)
        if _is_ours(buf):
            columns, layout = _decode_ours(buf, source, name_cache, stored), StateFormat.FLATBUFFERS
            check_columns(columns, members=True)  # statuses from checked codes (``_OurFile.codes``)
        else:
            columns, layout = _fb_go.read_columns(buf), StateFormat.GO_FLATBUFFERS
            check_columns(columns)
        return columns, layout

    return _guard(source, run)


class _CodecBase:
    """Decoding shared by both codecs: either layout is recognised by its file identifier."""

    format: StateFormat
    suffix: str = ".fb"
    #: Name columns this codec wrote, by workflow id (the native codec's; see ``_NameColumnCache``).
    _names: _NameColumnCache | None = None

    def decode(self, raw: Buffer, source: str) -> WorkflowData:
        """Decode a whole state, ours or the Go library's layout, with exact values (outputs of
        our layout on first access: see ``_decode_ours``)."""
        columns, _ = _decode_any(raw, source, self._names)
        return WorkflowData.from_columns(columns)

    def stored_version(self, raw: Buffer, source: str) -> int:
        """The ``version`` field, reading only the checksummed header (Go files: their content token)."""

        def run() -> int:
            buf = as_view(raw)
            if _is_ours(buf):
                return int(_OurFile(buf).scalar(_F_VERSION, I64, 0))
            root_table(buf)  # at least a plausible FlatBuffer
            return content_token(buf)  # Go files carry no version

        return _guard(source, run)

    def summarize(self, raw: Buffer, source: str) -> WorkflowSummary:
        """Counts from the status vector alone (zero-copy) for our layout; Go files are decoded."""

        def run() -> WorkflowSummary:
            buf = as_view(raw)
            if _is_ours(buf):
                return _summarize_ours(buf, source)
            columns = _fb_go.read_columns(buf)
            check_columns(columns)
            data = WorkflowData.from_columns(columns)
            summary = summary_from_data(data, StateFormat.GO_FLATBUFFERS, source, len(buf))
            # Go never writes its timestamp field: unknown, as for Go JSON files, not 1970.
            return summary if data.updated_at else replace(summary, updated_at=None)

        return _guard(source, run)

    def node_status(self, raw: Buffer, source: str, node: str) -> NodeStatus | None:
        """Binary search of the sorted name index for our layout; the status entries for Go files."""

        def run() -> NodeStatus | None:
            buf = as_view(raw)
            if _is_ours(buf):
                return _node_status_ours(buf, node)
            return _fb_go.read_statuses(root_table(buf, lossless_text=True)).get(node)

        return _guard(source, run)

    def has_version(self, raw: Buffer) -> bool:
        """Whether ``raw`` is our layout (which stores a version); Go files carry none."""
        return _is_ours(as_view(raw))

    def takes_id_from_file_name(self, raw: Buffer) -> bool:
        """Go's FlatBuffers store takes a workflow's id from its file name, not from the file."""
        return not self.has_version(raw)


class FlatBuffersCodec(_CodecBase):
    """This project's columnar FlatBuffers layout (schemas/workflow_state.fbs); reads Go files too.

    Every ``StateColumns`` field is stored exactly. Node names and statuses are vectors (statuses
    as Go byte codes), with a name index sorted by UTF-8 bytes for ``node_status`` (its sort is
    cached per workflow while the node list is unchanged); attempts/started_at/finished_at are typed
    vectors when every value has the exact type, and the other maps one orjson document each. NaN
    and infinite top-level floats are refused (JSON would store null).

    Integrity: a crc32 of the header and one per block of the body (4 KiB blocks over the node
    vectors, one per JSON document), so a full decode verifies every byte and ``node_status`` /
    ``summarize`` verify just what they read. ``encode`` returns ``bytes``.
    """

    format: StateFormat = StateFormat.FLATBUFFERS
    writes_versions: bool = True

    def __init__(self) -> None:
        self._names: _NameColumnCache = _NameColumnCache()
        self._dag_blobs = _DagBlobCache()
        self._encoded = _EncodedCache()

    def decode(self, raw: Buffer, source: str) -> WorkflowData:
        """As ``_CodecBase.decode``; a state of our layout is remembered with the file's blocks,
        so that saving it again writes what nobody changed as it was read (see ``_stored_entry``)."""
        stored: list[_Encoded] = []
        columns, _ = _decode_any(raw, source, self._names, stored)
        data = WorkflowData.from_columns(columns)
        if stored and isinstance(columns.workflow_id, str):
            entry = stored[0]
            entry.log, entry.mark = data.changes, data.changes.mark()
            self._encoded.put(columns.workflow_id, entry)
        return data

    def encode(self, data: WorkflowData, *, version: int, updated_at: float) -> Buffer:
        """The state's bytes. A state this codec encoded or decoded before is patched: only what
        its writers changed since (``data.changes``) is encoded again (see ``_Encoded``)."""
        with data.lock:
            c = data._unsafe_columns()
            savable_columns(c, version=version, updated_at=updated_at)  # what a load accepts
            wid = c.workflow_id
            log = data.changes
            last = self._encoded.get(wid, log) if c.checked and isinstance(wid, str) else None
            changes = None if last is None else log.since(last.mark)
            try:
                entry = None if last is None or changes is None else _patch(last, c, changes, self._dag_blobs)
                extra: list[_Segment] = []
                if entry is None:
                    entry, extra, patchable = _full(c, log, self._names, self._dag_blobs)
                    self._encoded.put(wid, entry if patchable else None)
                else:
                    self._encoded.put(wid, entry)
            except BaseException:
                self._encoded.put(str(wid), None)
                raise
            header = _Header(wid, float(c.created_at), bool(c.rolling_back), int(c.trigger_cause))
        return _build(
            header, [*entry.segments(), *extra], entry.shared_keys(), int(version), float(updated_at)
        )


class GoFlatBuffersCodec(_CodecBase):
    """Writes the Go Flow Orchestrator layout (schemas/go_workflow_state.fbs); reads both layouts.

    Written the way Go writes it: ints in ``value_long``, bools and floats in their vectors, strings
    in ``string_data``, any other data value (None, lists, dicts) JSON-encoded into ``string_data``;
    outputs JSON-encoded with strings verbatim; statuses as byte codes; waits, rolling_back and
    trigger_cause; the update time in ``timestamp`` (unix ms; Go itself leaves it unset).

    The Go layout cannot hold, so writing it loses: ``version`` (reads as the file's content
    token, see ``_versions``), ``created_at`` (reads as the update time, rounded to
    milliseconds), the per-node history (attempts, started_at, finished_at, errors,
    error_types), the DAG structure (reads as None), the audit trail, and the text of an
    UNKNOWN status (written as pending, as Go does). Non-string data values other than
    int/float/bool come back as their JSON text (a str), as they do in Go. Outputs are written
    as Go writes them (see ``_fb_go``): a str verbatim, so a str whose text reads as JSON
    ("42", "true", "[1]") comes back as that JSON value; an output read from a Go file is
    written back as the very text it was read from. Strings holding bytes that are not UTF-8
    (read from a Go file, ``surrogateescape``) are written back as those bytes. Writing costs a
    table per entry (~8 us each in pure Python).
    """

    format: StateFormat = StateFormat.GO_FLATBUFFERS
    #: The layout has no version field: a file's version is its content token (``_versions``).
    writes_versions: bool = False

    def encode(self, data: WorkflowData, *, version: int, updated_at: float) -> Buffer:
        with data.lock:
            columns = data._unsafe_columns()
            savable_columns(columns, version=version, updated_at=updated_at)  # what a load accepts
            return _fb_go.encode(columns, float(updated_at))
