"""FlatBuffers state codecs: this project's columnar layout and the Go Flow Orchestrator layout.

Our layout lives in private modules: ``_fb_layout`` (identifier, field ids), ``_fb_names`` (name
columns), ``_fb_segments`` and ``_fb_encode`` (the encoder), ``_fb_decode`` (the verified reader),
``_fb_summary`` (summaries and single statuses); the Go layout in ``_fb_go``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Final, TypeVar

from ..data import StateColumns, WorkflowData
from ..errors import CorruptStateError
from ..status import NodeStatus
from ..validation import InvalidValue, check_columns, savable_columns
from . import _fb_go
from ._fb_decode import _decode_ours, _OurFile
from ._fb_encode import _build, _DagBlobCache, _EncodedCache, _full, _Header, _patch
from ._fb_layout import _F_VERSION, FORMAT_VERSION, IDENTIFIER
from ._fb_names import _NameColumnCache
from ._fb_reader import I64, U32, Malformed, as_view, root_table
from ._fb_segments import _Encoded, _Segment
from ._fb_summary import (
    MAX_JOURNAL_RECORDS,
    _node_status_ours,
    _replay_statuses,
    _Snapshot,
    _summarize_ours,
    _summarize_replayed,
)
from ._journal import JournalContents
from ._versions import content_token
from .base import StateFormat, WorkflowSummary, summary_from_data
from .codec import Buffer

__all__ = ["FORMAT_VERSION", "IDENTIFIER", "FlatBuffersCodec", "GoFlatBuffersCodec"]

_T = TypeVar("_T")


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

    def summarize_with_journal(
        self, raw: Buffer, source: str, contents: JournalContents, journal_source: str
    ) -> WorkflowSummary | None:
        """The summary of ``raw`` with its journal folded in, equal to a full decode, ``replay``
        and ``summary_from_data``, for our layout and a short journal (``MAX_JOURNAL_RECORDS``
        records); None for anything else (Go files, longer journals), which the caller folds by
        a full decode.

        The records are replayed onto an empty state (a damaged one raises what a load raises)
        and their nodes' final statuses written over the snapshot's status codes, the nodes found
        by binary search of the sorted name index (or, for many, one split of the names); like
        ``summarize``, only the blocks read are verified. A journal that does not apply to the
        snapshot's version gives ``summarize``'s summary.
        """
        buf = as_view(raw)
        if not _is_ours(buf) or contents.records > MAX_JOURNAL_RECORDS:
            return None
        snapshot = _guard(source, lambda: _Snapshot.read(buf))
        if not contents.applies_to(snapshot.version):
            return self.summarize(raw, source)
        replayed = _replay_statuses(snapshot, contents, journal_source)  # errors as in a load
        return _guard(source, lambda: _summarize_replayed(snapshot, replayed, source, self.format))

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
        so that saving it again writes what nobody changed as it was read (see
        ``_fb_decode._stored_entry``)."""
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
