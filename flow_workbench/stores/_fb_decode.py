"""Verified reader of our FlatBuffers layout: whole states, and the stored segments a later save reuses."""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import orjson

from ..data import AuditEntry, ChangeLog, RunRecord, StateColumns
from ..errors import CorruptStateError
from ..status import STATUSES_BY_CODE
from ._crc import crc32
from ._fb_layout import (
    _F_ATTEMPT_LOG,
    _F_AUDIT,
    _F_BLOCK_ENDS,
    _F_BODY,
    _F_CAUSE,
    _F_CODE_VERSIONS,
    _F_CRCS,
    _F_CREATED,
    _F_DAG,
    _F_DATA,
    _F_ENDS,
    _F_ERROR_TYPES,
    _F_ERRORS,
    _F_FORMAT,
    _F_ID,
    _F_NAMES,
    _F_OUTPUTS,
    _F_ROLLING,
    _F_RUNS,
    _F_SORTED,
    _F_STATUSES,
    _F_UPDATED,
    _F_VERSION,
    _F_WAITS,
    _KNOWN_CODES,
    _SEP,
    _TYPED,
    FORMAT_VERSION,
    IDENTIFIER,
    READABLE_FORMATS,
)
from ._fb_names import _NameColumn, _NameColumnCache
from ._fb_reader import (
    F64,
    I64,
    MAX_ELEMENTS,
    U8,
    U16,
    U32,
    Malformed,
    decode_utf8,
    root_table,
    u32s,
    vector_at,
)
from ._fb_segments import _DOC_COLUMNS, _DocModel, _Encoded, _NodeModel, _Segment, _TypedModel
from .codec import Buffer

_T = TypeVar("_T")
_U32_PAIR = struct.Struct("<II")


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
        if crc32(buf[:body_start]) != U32.unpack_from(buf, body_end)[0]:
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
        if crc32(self.buf[start:stop]) != U32.unpack_from(self.buf, self.crc_start + 4 * k)[0]:
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
            crcs = map(crc32, map(body.__getitem__, map(slice, (0, *ends[:-1]), ends)))
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

    def raw(self, field: int) -> memoryview | None:
        """A JSON document's bytes (verified, charged to the decode budget), or None if absent: a
        view into the file's bytes, not a copy (a load keeps them anyway, for the save's reuse of
        unchanged blocks, and copying the output column cost ~4 % of load → edit → save)."""
        start, count = self.vector(field, 1)
        if start < 0:
            return None
        self.need(start, start + count)
        self.root.budget.charge(count)  # as ``json`` charges it: at every reference
        return self.buf[start : start + count]

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


def _decode_outputs(source: str, raw: memoryview | bytes) -> dict[str, Any]:
    """A deferred output column: the JSON object of node -> output (``CorruptStateError`` if not)."""
    try:
        return _parse_document(raw, dict, "outputs")
    except Malformed as exc:
        raise CorruptStateError(source, exc.reason) from None
