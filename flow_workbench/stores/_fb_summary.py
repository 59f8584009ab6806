"""Summaries and single node statuses read from a few verified blocks of our FlatBuffers layout."""

from __future__ import annotations

import itertools
from typing import Final

import numpy as np

from ..status import STATUS_CODES, STATUSES_BY_CODE, NodeStatus
from ..validation import require_count, require_time
from ._fb_decode import _OurFile
from ._fb_layout import _F_ID, _F_SORTED, _F_UPDATED, _F_VERSION, _KNOWN_CODES, _MAX_CODE
from ._fb_reader import F64, I64, U32, Malformed
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
