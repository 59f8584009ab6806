"""Builders of crafted state files for the hostile-input tests (shared offsets, forged values)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import orjson

from flow_workbench.data import StateColumns, WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores._fb_encode import _encode_columns
from flow_workbench.stores._fb_layout import _F_BLOCK_ENDS, _F_BODY, _F_CRCS
from flow_workbench.stores._fb_reader import root_table
from flow_workbench.stores._generated.workflow import KeyValueString, NodeOutputEntry, NodeStatusEntry
from flow_workbench.stores._generated.workflow import WorkflowState as GoState
from flow_workbench.stores.flatbuffers_codec import GoFlatBuffersCodec
from flow_workbench.stores.json_codec import JSONCodec
from flow_workbench.testing import rich_state

JSON_EXTENSION = "flow_workbench"


def go_file(build: Callable[[flatbuffers.Builder], list[tuple[Callable[..., Any], int]]]) -> bytes:
    """A Go-layout file whose vectors ``build`` creates: it returns (WorkflowState.AddX, vector)."""
    b = flatbuffers.Builder(1024)
    fields = build(b)
    wid = b.CreateString("wf")
    GoState.Start(b)
    GoState.AddWorkflowId(b, wid)
    for add, vector in fields:
        add(b, vector)
    b.Finish(GoState.End(b))
    return bytes(b.Output())


def shared_vector(b: flatbuffers.Builder, start: Callable[..., Any], offsets: list[int]) -> int:
    start(b, len(offsets))
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return int(b.EndVector())


def outputs_sharing_one_string(entries: int, size: int) -> bytes:
    """``entries`` outputs of distinct nodes, all pointing at one ``size``-byte output string."""

    def build(b: flatbuffers.Builder) -> list[tuple[Callable[..., Any], int]]:
        shared = b.CreateString("x" * size)
        tables = []
        for i in range(entries):
            name = b.CreateString(f"n{i}")
            NodeOutputEntry.Start(b)
            NodeOutputEntry.AddNodeName(b, name)
            NodeOutputEntry.AddOutput(b, shared)
            tables.append(NodeOutputEntry.End(b))
        status_name = b.CreateString("n0")
        NodeStatusEntry.Start(b)
        NodeStatusEntry.AddNodeName(b, status_name)
        NodeStatusEntry.AddStatus(b, NodeStatus.COMPLETED.code)
        status = NodeStatusEntry.End(b)
        return [
            (GoState.AddNodeOutputs, shared_vector(b, GoState.StartNodeOutputsVector, tables)),
            (GoState.AddNodeStatuses, shared_vector(b, GoState.StartNodeStatusesVector, [status])),
        ]

    return go_file(build)


def statuses_sharing_one_table(entries: int, name_size: int) -> bytes:
    """A status vector of ``entries`` references to one status table (a ``name_size``-byte name)."""

    def build(b: flatbuffers.Builder) -> list[tuple[Callable[..., Any], int]]:
        name = b.CreateString("n" * name_size)
        NodeStatusEntry.Start(b)
        NodeStatusEntry.AddNodeName(b, name)
        NodeStatusEntry.AddStatus(b, NodeStatus.FAILED.code)
        table = NodeStatusEntry.End(b)
        vector = shared_vector(b, GoState.StartNodeStatusesVector, [table] * entries)
        return [(GoState.AddNodeStatuses, vector)]

    return go_file(build)


def data_sharing_one_string(entries: int, size: int) -> bytes:
    def build(b: flatbuffers.Builder) -> list[tuple[Callable[..., Any], int]]:
        value = b.CreateString("v" * size)
        tables = []
        for i in range(entries):
            key = b.CreateString(f"k{i}")
            KeyValueString.Start(b)
            KeyValueString.AddKey(b, key)
            KeyValueString.AddValue(b, value)
            tables.append(KeyValueString.End(b))
        return [(GoState.AddStringData, shared_vector(b, GoState.StartStringDataVector, tables))]

    return go_file(build)


def forged_native(columns: StateColumns, *, version: int = 1, updated_at: float = 1.0) -> bytes:
    """Our FlatBuffers layout holding ``columns`` as they are: the encoder's own building blocks,
    without ``encode``'s check of the values (a forger's or another writer's file)."""
    return _encode_columns(columns, version, updated_at)


def reseal_native(raw: bytearray) -> bytes:
    """Recompute the header and block checksums of our FlatBuffers layout after tampering."""
    root = root_table(memoryview(raw))
    body_start = len(raw) - 4 - struct.unpack_from("<I", raw, root.field(_F_BODY, 4))[0]
    ends_start, count = root.vector(_F_BLOCK_ENDS, 4)
    crcs_start, _ = root.vector(_F_CRCS, 4)
    previous = 0
    for k in range(count):
        end = struct.unpack_from("<I", raw, ends_start + 4 * k)[0]
        crc = zlib.crc32(raw[body_start + previous : body_start + end])
        struct.pack_into("<I", raw, crcs_start + 4 * k, crc)
        previous = end
    struct.pack_into("<I", raw, len(raw) - 4, zlib.crc32(raw[:body_start]))
    return bytes(raw)


def reseal_json(text: bytes) -> bytes:
    """Our JSON layout with its checksum recomputed (a forger's edit of one of our files)."""
    head = len(b'{"flow_workbench":{"checksum":"')
    zeroed = text[:head] + b"00000000" + text[head + 8 :]
    return text[:head] + b"%08x" % zlib.crc32(zeroed) + text[head + 8 :]


def ours_json(document: dict[str, Any]) -> bytes:
    """Our JSON layout of an edited document (extension object first, checksum first in it)."""
    document[JSON_EXTENSION]["checksum"] = "00000000"
    return reseal_json(orjson.dumps(document))


def ours_json_document(data: WorkflowData | None = None) -> dict[str, Any]:
    state = data or rich_state("wf")
    document: dict[str, Any] = orjson.loads(bytes(JSONCodec().encode(state, version=1, updated_at=5.0)))
    return document


def go_json(**fields: Any) -> bytes:
    return orjson.dumps({"id": "wf", "nodeStatus": {"a": "completed"}, **fields})


def ours_json_with_update_time(value: float) -> bytes:
    document = ours_json_document()
    document[JSON_EXTENSION]["updated_at"] = value
    return ours_json(document)


def go_fb_with_timestamp(milliseconds: int) -> bytes:
    """A Go-layout file whose ``timestamp`` field (unix ms) holds ``milliseconds``."""
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.COMPLETED)
    raw = bytearray(GoFlatBuffersCodec().encode(data, version=0, updated_at=1.0))
    root = root_table(memoryview(raw))
    struct.pack_into("<q", raw, root.field(7, 8), milliseconds)
    return bytes(raw)


def with_checksum(document: dict[str, Any]) -> bytes:
    """Our layout with a correct checksum, for content that only validation can reject."""
    raw = bytearray(orjson.dumps(document))
    slot = raw.index(b'"checksum":"') + len(b'"checksum":"')
    raw[slot : slot + 8] = b"00000000"
    raw[slot : slot + 8] = b"%08x" % zlib.crc32(raw)
    return bytes(raw)


def append_journal_record(
    folder: Path, record: dict[str, Any], journal_name: str = "wf.json-journal"
) -> None:
    """Append a record to ``journal_name`` (``wf``'s journal beside ``wf.json``), framed as the
    writer frames records (valid checksum)."""
    payload = orjson.dumps({**record, "_updated_at": 6.0})
    length = struct.pack("<I", len(payload))
    frame = length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload
    journal = folder / journal_name
    image = bytearray(journal.read_bytes())
    end = len(image.rstrip(b"\0"))
    image[end : end + len(frame)] = frame
    journal.write_bytes(bytes(image))
