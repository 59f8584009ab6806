"""The StateCodec interface: how a file store turns a WorkflowData into bytes and back."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..data import WorkflowData
from ..status import NodeStatus
from ._journal import JournalContents
from .base import StateFormat, WorkflowSummary

Buffer = bytes | bytearray | memoryview


class StateCodec(Protocol):
    """Encodes and decodes whole workflow states; decoding never trusts its input.

    Every decoding method raises ``CorruptStateError(source, reason)`` for bytes it cannot decode
    (truncated, bit-flipped, wrong identifier, bad checksum, impossible sizes) and nothing else.
    ``source`` is only used in error messages (a path or a key).
    """

    #: Format this codec writes.
    format: StateFormat
    #: File-name suffix of files written with this codec, e.g. ".json" or ".fb".
    suffix: str
    #: Whether the files this codec writes store a version; a file without one (the Go layouts)
    #: reports its content token as its version (see ``_versions``).
    writes_versions: bool

    def encode(self, data: WorkflowData, *, version: int, updated_at: float) -> Buffer:
        """Encode ``data`` as if its version and update time were the given ones.

        Holds ``data.lock`` while reading; raises ``SerializationError`` naming the key or node
        whose value cannot be encoded. Must not modify ``data``.
        """
        ...

    def decode(self, raw: Buffer, source: str) -> WorkflowData:
        """Decode a whole state, ours or the Go library's layout, with exact values."""
        ...

    def stored_version(self, raw: Buffer, source: str) -> int:
        """The ``version`` field only, as cheaply as the format allows (a Go file: its content token)."""
        ...

    def has_version(self, raw: Buffer) -> bool:
        """Whether ``raw`` claims to be one of our layouts, which store a version (Go files do not)."""
        ...

    def takes_id_from_file_name(self, raw: Buffer) -> bool:
        """Whether the workflow id of ``raw`` is its file name's rather than the one inside it
        (Go's FlatBuffers store; its JSON store, and ours, take the id in the file)."""
        ...

    def summarize(self, raw: Buffer, source: str) -> WorkflowSummary:
        """Status counts, failed nodes, id, version, update time; without a full decode if possible."""
        ...

    def node_status(self, raw: Buffer, source: str, node: str) -> NodeStatus | None:
        """One node's status without a full decode if possible; None when the node is absent."""
        ...


@runtime_checkable
class SummarizesJournals(Protocol):
    """Optional codec method: a summary with a journal folded in, cheaper than a full decode."""

    def summarize_with_journal(
        self, raw: Buffer, source: str, contents: JournalContents, journal_source: str
    ) -> WorkflowSummary | None:
        """Exactly what a full decode, ``_journal.replay`` and ``summary_from_data`` give (errors
        included: ``CorruptStateError`` naming ``journal_source`` for a damaged record), or None
        when this codec has no cheaper way for these bytes and this journal."""
        ...
