"""The body of our FlatBuffers layout as segments of checksummed blocks, and the models that patch them."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any, Final

from ..data import Changed, ChangeLog
from ._crc import crc32
from ._fb_layout import (
    _F_ATTEMPT_LOG,
    _F_CODE_VERSIONS,
    _F_ENDS,
    _F_ERROR_TYPES,
    _F_ERRORS,
    _F_NAMES,
    _F_OUTPUTS,
    _F_SORTED,
    _F_STATUSES,
    _F_WAITS,
    _TYPED,
    BLOCK_SIZE,
)
from ._fb_names import _NameColumn
from ._fb_reader import U32
from .codec import Buffer

# The body is a sequence of segments (a column's vectors), each a list of blocks with one crc32
# each. A save of a state this codec encoded (or decoded) before patches the segments of what
# its writers changed since (``ChangeLog``) and reuses every other block and checksum as is.


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
            crcs[k] = crc32(block)
        return _Segment(self.fields, pieces, crcs, self.phase)


def _blocks(payload: Buffer, size: int) -> tuple[list[Buffer], list[int]]:
    view = memoryview(payload).cast("B")
    pieces: list[Buffer] = [view[at : at + size] for at in range(0, len(view), size)]
    return pieces, list(map(crc32, pieces))


def _vector_segment(field: int, payload: Buffer, count: int, *, align: int = 4, block: int = 0) -> _Segment:
    """One vector: [lead padding + u32 count] [payload, in ``block``-byte blocks or one] [padding]."""
    head = bytes(4 if align == 8 else 0) + U32.pack(count)
    pieces, crcs = _blocks(payload, block or max(len(payload), 1))
    pad = bytes(-len(memoryview(payload).cast("B")) % 4)
    tail: list[Buffer] = [pad] if pad else []
    return _Segment(
        {field: len(head) - 4},
        [head, *pieces, *tail],
        [crc32(head), *crcs, *map(crc32, tail)],
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
