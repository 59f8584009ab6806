"""The StateCodec interface: how a file store turns a WorkflowData into bytes and back."""

from __future__ import annotations

from typing import Protocol

from ..data import WorkflowData
from ..status import NodeStatus
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
        """The ``version`` field only, as cheaply as the format allows (0 for Go files)."""
        ...

    def summarize(self, raw: Buffer, source: str) -> WorkflowSummary:
        """Status counts, failed nodes, id, version, update time; without a full decode if possible."""
        ...

    def node_status(self, raw: Buffer, source: str, node: str) -> NodeStatus | None:
        """One node's status without a full decode if possible; None when the node is absent."""
        ...
