"""Summaries and single node statuses read from a few verified blocks of our FlatBuffers layout."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..data import WorkflowData
from ..status import STATUS_CODES, STATUSES_BY_CODE, NodeStatus
from ..validation import require_count, require_time
from ._fb_decode import _OurFile
from ._fb_layout import _F_ID, _F_SORTED, _F_UPDATED, _F_VERSION, _KNOWN_CODES, _MAX_CODE
from ._fb_reader import F64, I64, U32, Malformed
from ._journal import JournalContents, replay
from .base import StateFormat, WorkflowSummary

_FAILED_CODES: Final = (STATUS_CODES[NodeStatus.FAILED], STATUS_CODES[NodeStatus.COMPENSATION_FAILED])


#: Up to this many nodes statuses are tallied with C-level bytes methods (``count`` per code,
#: ``translate`` + ``compress`` for the failed ones), which for a few dozen nodes costs a fraction
#: of numpy's array set-up; above it numpy's ``bincount`` wins.
_SMALL_NODE_COUNT = 256
#: Above this many failed nodes one split of the name column beats reading names one by one.
_FEW_FAILED = 64


_STATUS_VALUES: Final = tuple(status.value for status in STATUSES_BY_CODE)
_FAILED_MASK: Final = bytes(1 if code in _FAILED_CODES else 0 for code in range(256))

#: A journal record may set UNKNOWN (``NodeStatus.parse`` accepts its text), which has no byte in
#: any file; the journaled summary gives it the byte after the known codes.
_UNKNOWN_CODE: Final = len(_KNOWN_CODES)
_CODES_OF: Final[dict[NodeStatus, int]] = {**STATUS_CODES, NodeStatus.UNKNOWN: _UNKNOWN_CODE}
_ALL_VALUES: Final = (*_STATUS_VALUES, NodeStatus.UNKNOWN.value)

#: Journals of at most this many records (frames) are folded into a summary without a full
#: decode: what short ``Persistence.NODE`` runs leave. Longer ones (left by a crash during a long
#: run, rare) keep the full decode; the cheap path would win there too (see ``_positions``).
MAX_JOURNAL_RECORDS: Final = 64
#: A binary search of the sorted name index costs ~3.5 us per probe (log2(n) + 1 probes, blocks
#: verified as read), one split of the name column and a dict of it ~170 ns per node; the search
#: is used while ``nodes * probes * _SEARCH_FACTOR <= n`` (about 300 nodes at 100k nodes).
_SEARCH_FACTOR = 20


def _status_tally(codes: bytes, kinds: int = len(_KNOWN_CODES)) -> tuple[list[int], list[int]]:
    """Nodes per status code (indexed by code, ``kinds`` entries) and the positions of the failed
    nodes, in order."""
    n = len(codes)
    if n <= _SMALL_NODE_COUNT:
        counts = list(map(codes.count, range(kinds)))
        if not (counts[_FAILED_CODES[0]] or counts[_FAILED_CODES[1]]):
            return counts, []
        return counts, list(itertools.compress(range(n), codes.translate(_FAILED_MASK)))
    array = np.frombuffer(codes, np.uint8)
    counts = np.bincount(array, minlength=kinds).tolist()
    return counts, np.flatnonzero(np.frombuffer(codes.translate(_FAILED_MASK), np.uint8)).tolist()


def _names_of(
    f: _OurFile, names_start: int, names_len: int, ends_start: int, indexes: list[int]
) -> tuple[str, ...]:
    """The names of the nodes at ``indexes``: read one by one, or from one split if many."""
    if len(indexes) > _FEW_FAILED:
        all_names = f.names()
        return tuple(map(all_names.__getitem__, indexes))
    return f.names_at(names_start, names_len, ends_start, indexes)


def _summarize_ours(buf: memoryview, source: str) -> WorkflowSummary:
    # Lazily verified: a summary reads the node vectors (one block in a small file) and the header.
    f = _OurFile(buf)
    names_start, names_len, ends_start, statuses_start, n = f.node_vectors()
    counts, failed_idx = _status_tally(f.codes(statuses_start, n))
    failed = _names_of(f, names_start, names_len, ends_start, failed_idx)
    root = f.root
    return WorkflowSummary(
        workflow_id=f.string(_F_ID),
        format=StateFormat.FLATBUFFERS,
        node_count=n,
        # Absent statuses left out (compress keeps the non-zero counts); WorkflowSummary orders them.
        status_counts=dict(itertools.compress(zip(_STATUS_VALUES, counts, strict=True), counts)),
        failed_nodes=failed,
        # Checked as a decode checks them, so a summary never shows what a load refuses.
        updated_at=require_time(root.scalar(_F_UPDATED, F64, 0.0), "updated_at"),
        version=require_count(root.scalar(_F_VERSION, I64, 0), "version"),
        source=source,
        size_bytes=len(buf),
    )


def _sorted_index(f: _OurFile, n: int) -> int:
    """Start of the name index sorted by UTF-8 bytes (one u32 node position per node)."""
    sorted_start, n_sorted = f.vector(_F_SORTED, 4)
    if n_sorted != n:
        raise Malformed(f"sorted index has {n_sorted} entries for {n} nodes")
    return sorted_start


def _index_of(
    f: _OurFile, vectors: tuple[int, int, int, int, int], sorted_start: int, node: str
) -> int | None:
    """Position of ``node`` in the node vectors (binary search of the sorted index), or None."""
    names_start, names_len, ends_start, _, n = vectors
    try:
        target = node.encode("utf-8")
    except UnicodeEncodeError:
        return None  # such a name cannot have been stored
    buf = f.buf
    lo, hi = 0, n
    while lo < hi:  # binary search over the names in byte order: ~17 probes at 100k nodes
        mid = (lo + hi) // 2
        at = sorted_start + 4 * mid
        f.need(at, at + 4)
        index: int = U32.unpack_from(buf, at)[0]
        if index >= n:
            raise Malformed(f"sorted index entry {index} out of range")
        name = f.name_bytes(names_start, names_len, ends_start, index)
        if name < target:
            lo = mid + 1
        elif name > target:
            hi = mid
        else:
            return index
    return None


def _positions(
    f: _OurFile, vectors: tuple[int, int, int, int, int], nodes: list[str]
) -> tuple[list[int | None], list[str] | None]:
    """Positions of ``nodes`` in the node vectors (None: not in the snapshot), by binary search
    for a few nodes, else from one split of the name column (then returned too)."""
    n = vectors[4]
    if len(nodes) * (n.bit_length() + 1) * _SEARCH_FACTOR <= n:
        sorted_start = _sorted_index(f, n)
        return [_index_of(f, vectors, sorted_start, node) for node in nodes], None
    names = f.names()
    position = dict(zip(names, range(n), strict=True))
    return list(map(position.get, nodes)), names


def _node_status_ours(buf: memoryview, node: str) -> NodeStatus | None:
    f = _OurFile(buf)
    vectors = f.node_vectors()
    statuses_start, n = vectors[3], vectors[4]
    index = _index_of(f, vectors, _sorted_index(f, n), node)
    if index is None:
        return None
    at = statuses_start + index
    f.need(at, at + 1)
    code: int = buf[at]
    if code > _MAX_CODE:
        raise Malformed(f"unknown status code {code}")
    return STATUSES_BY_CODE[code]


# --- a snapshot with its journal, without a full decode -----------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    """What the journaled summary reads of a snapshot before its journal: the checked header
    fields and the node vectors with their (checked) status codes."""

    file: _OurFile
    workflow_id: str
    version: int
    updated_at: float
    vectors: tuple[int, int, int, int, int]
    codes: bytes

    @classmethod
    def read(cls, buf: memoryview) -> _Snapshot:
        f = _OurFile(buf)
        vectors = f.node_vectors()
        codes = f.codes(vectors[3], vectors[4])
        root = f.root
        # Checked as a decode checks them (same messages), before the journal is looked at.
        version = require_count(root.scalar(_F_VERSION, I64, 0), "version")
        updated_at = float(require_time(root.scalar(_F_UPDATED, F64, 0.0), "updated_at"))
        return cls(f, f.string(_F_ID), version, updated_at, vectors, codes)


@dataclass(frozen=True)
class _Replayed:
    """What a journal's records make of a snapshot's summary fields."""

    #: The status each record's node ends with, in the order the records first name the nodes.
    statuses: dict[str, NodeStatus]
    version: int
    updated_at: float


def _replay_statuses(snapshot: _Snapshot, contents: JournalContents, journal_source: str) -> _Replayed:
    """Replay the journal onto an empty state of the snapshot's id, version and update time.

    The very ``replay`` a load runs, so a record is decoded, checked and applied (its output
    encoded) as there, and a damaged one raises the same error; nodes of the snapshot that no
    record names are not needed for that, which is what makes this cheap. Not under the
    codec's guard: replay's errors must reach the caller as a load's do.
    """
    shell = WorkflowData(snapshot.workflow_id, created_at=snapshot.updated_at)
    shell.version = snapshot.version
    shell.updated_at = snapshot.updated_at  # replay's default for records without a time
    replay(shell, contents, journal_source)
    return _Replayed(shell.node_statuses(), shell.version, shell.updated_at)


def _summarize_replayed(
    snapshot: _Snapshot, replayed: _Replayed, source: str, state_format: StateFormat
) -> WorkflowSummary:
    """The summary a full decode plus replay gives (``summary_from_data``), from the snapshot's
    status codes with the replayed nodes' codes written over them."""
    f, vectors = snapshot.file, snapshot.vectors
    names_start, names_len, ends_start, _, n = vectors
    codes = bytearray(snapshot.codes)
    added: list[str] = []
    nodes = list(replayed.statuses)
    positions, names = _positions(f, vectors, nodes)
    for node, index in zip(nodes, positions, strict=True):
        code = _CODES_OF[replayed.statuses[node]]
        if index is None:
            # Replay appends a node the snapshot lacks to the end, at its first record.
            added.append(node)
            codes.append(code)
        else:
            codes[index] = code
    tally = bytes(codes)
    counts, failed_idx = _status_tally(tally, len(_ALL_VALUES))
    present = [code for code, count in enumerate(counts) if count]  # WorkflowSummary orders them
    old = [index for index in failed_idx if index < n]  # ascending: the snapshot's come first
    if names is None:
        failed = _names_of(f, names_start, names_len, ends_start, old)
    else:
        failed = tuple(map(names.__getitem__, old))
    failed += tuple(added[index - n] for index in failed_idx[len(old) :])
    return WorkflowSummary(
        workflow_id=snapshot.workflow_id,
        format=state_format,
        node_count=len(tally),
        status_counts={_ALL_VALUES[code]: counts[code] for code in present},
        failed_nodes=failed,
        updated_at=replayed.updated_at,
        version=replayed.version,
        source=source,
        size_bytes=len(f.buf),
    )
