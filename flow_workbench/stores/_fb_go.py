"""The Go Flow Orchestrator FlatBuffers layout (schemas/go_workflow_state.fbs): read and write.

Exact both ways, as the Go store reads and writes it:

- Strings are bytes in Go and may be any bytes: they are read with ``surrogateescape`` (each byte
  that is not UTF-8 becomes one lone surrogate, U+DC80-U+DCFF) and written back with it, so the
  same bytes return. A lone surrogate outside that range has no bytes and is refused on save.
- Outputs: Go writes a string output verbatim and any other value JSON-encoded, and its reader
  returns the stored text. Here the text is read as the JSON value it parses as (``42``,
  ``{"a": 1}``, ``"quoted"`` -> 42, a dict, the str ``quoted``) and as a str when it is not JSON
  (``plain text``). The text itself is kept (``StateColumns.output_texts``) and written back
  byte for byte while the output is unchanged. A new str output is written verbatim like Go
  does, so one whose text reads as JSON (``"42"``) comes back as that value (42): the Go layout
  cannot tell them apart.
- Unknown status bytes read as pending and an UNKNOWN status is written as pending, as Go does.
- The version is the file's content token (``_versions``): Go files carry none.
"""

from __future__ import annotations

import math
from typing import Any, Final

import flatbuffers
import orjson

from ..data import StateColumns
from ..errors import SerializationError
from ..status import STATUS_CODES, STATUSES_BY_CODE, NodeStatus
from ._fb_fields import GO_ENTRY, GO_KEY_VALUE, GO_STATE
from ._fb_reader import F64, I8, I32, I64, MAX_ELEMENTS, U8, Malformed, Table, root_table
from ._generated.workflow import (
    KeyValueBool,
    KeyValueDouble,
    KeyValueInt,
    KeyValueString,
    NodeOutputEntry,
    NodeStatusEntry,
    TimerWaitEntry,
    WorkflowState,
)
from ._versions import content_token

# Field ids of workflow.WorkflowState and its entry tables (schemas/go_workflow_state.fbs).
_ID: Final = GO_STATE["workflow_id"]
_STRINGS: Final = GO_STATE["string_data"]
_INTS: Final = GO_STATE["int_data"]
_BOOLS: Final = GO_STATE["bool_data"]
_DOUBLES: Final = GO_STATE["double_data"]
_STATUSES: Final = GO_STATE["node_statuses"]
_OUTPUTS: Final = GO_STATE["node_outputs"]
_TIMESTAMP: Final = GO_STATE["timestamp"]
_WAITS: Final = GO_STATE["waits"]
_ROLLING: Final = GO_STATE["rolling_back"]
_CAUSE: Final = GO_STATE["trigger_cause"]
#: Every entry table keeps its key (a data key or a node name) in the same field.
_KEY: Final = GO_KEY_VALUE["key"]
_VALUE: Final = GO_KEY_VALUE["value"]
_VALUE_LONG: Final = GO_KEY_VALUE["value_long"]
_STATUS: Final = GO_ENTRY["status"]
_OUTPUT: Final = GO_ENTRY["output"]
_FIRE_AT: Final = GO_ENTRY["fire_at"]
if GO_ENTRY["node_name"] != _KEY:  # pragma: no cover - a schema change must update _key()
    raise ImportError(
        "go_workflow_state.fbs: node entries no longer keep their name where key-values keep the key"
    )
_MAX_TRIGGER_CAUSE = 3  # TriggerDeadlineExceeded; Go leaves larger bytes at 0 (none)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_PENDING = NodeStatus.PENDING
_PENDING_CODE = STATUS_CODES[_PENDING]


def _key(table: Table) -> str:
    """The key of a key-value entry or the node of a node entry (both field 0 in every entry table)."""
    # Go turns a missing string into "" (string(nil)); do the same.
    return table.string(_KEY) or ""


def read_statuses(root: Table) -> dict[str, NodeStatus]:
    """Node statuses in file order; unknown status bytes become pending, as the Go reader does."""
    statuses: dict[str, NodeStatus] = {}
    by_code = STATUSES_BY_CODE
    for entry in root.tables(_STATUSES):
        code = int(entry.scalar(_STATUS, I8, 0))
        statuses[_key(entry)] = by_code[code] if 0 <= code < len(by_code) else _PENDING
    return statuses


def decode_output(text: str) -> Any:
    """Go stores outputs JSON-encoded, strings verbatim: parse JSON, else keep the string."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # also text holding surrogates (bytes that are not UTF-8)
        return text


def _read_outputs(root: Table) -> tuple[dict[str, Any], dict[str, tuple[Any, str]]]:
    """Node outputs and their stored texts; an output string shared by several entries is parsed
    once (the decoded value is shared too: stored outputs are never mutated, see
    ``StateColumns.outputs``)."""
    parsed: dict[int, Any] = {}
    outputs: dict[str, Any] = {}
    texts: dict[str, tuple[Any, str]] = {}
    for entry in root.tables(_OUTPUTS):
        text = entry.string(_OUTPUT) or ""  # charged to the decode budget at every reference
        at = entry.target(_OUTPUT)
        value = parsed.get(at, _UNPARSED)
        if value is _UNPARSED:
            value = parsed[at] = decode_output(text)
        node = _key(entry)
        outputs[node] = value
        texts[node] = (value, text)
    return outputs, texts


_UNPARSED: Any = object()


def read_columns(buf: memoryview) -> StateColumns:
    """Decode a Go-layout buffer (validated: offsets, counts) into columns; strings that are not
    UTF-8 decode losslessly (``surrogateescape``); the version is the buffer's content token."""
    root = root_table(buf, lossless_text=True)
    workflow_id = root.string(_ID) or ""
    data: dict[str, Any] = {}
    # Go's load order: ints, bools, doubles, then strings; a later kind wins for a duplicated key.
    for kv in root.tables(_INTS):
        value = int(kv.scalar(_VALUE_LONG, I64, 0)) or int(kv.scalar(_VALUE, I32, 0))
        data[_key(kv)] = value
    for kv in root.tables(_BOOLS):
        data[_key(kv)] = bool(kv.scalar(_VALUE, U8, 0))
    for kv in root.tables(_DOUBLES):
        data[_key(kv)] = float(kv.scalar(_VALUE, F64, 0.0))
    for kv in root.tables(_STRINGS):
        data[_key(kv)] = kv.string(_VALUE) or ""
    statuses = read_statuses(root)
    outputs, texts = _read_outputs(root)
    waits = {_key(e): int(e.scalar(_FIRE_AT, I64, 0)) for e in root.tables(_WAITS)}
    timestamp_ms = int(root.scalar(_TIMESTAMP, I64, 0))
    cause = int(root.scalar(_CAUSE, U8, 0))
    for name, column in (("data", data), ("node statuses", statuses), ("outputs", outputs)):
        if len(column) > MAX_ELEMENTS:
            raise Malformed(f"{len(column)} {name} exceeds the cap of {MAX_ELEMENTS}")
    updated = timestamp_ms / 1000.0
    return StateColumns(
        workflow_id=workflow_id,
        version=content_token(buf),
        created_at=updated,
        updated_at=updated,
        data=data,
        statuses=statuses,
        outputs=outputs,
        dag=None,
        waits=waits,
        rolling_back=bool(root.scalar(_ROLLING, U8, 0)),
        trigger_cause=cause if cause <= _MAX_TRIGGER_CAUSE else 0,
        output_texts=texts,
    )


def _json_text(value: Any, workflow_id: str, field: str) -> str:
    try:
        return orjson.dumps(value, option=JSON_OPTIONS).decode("utf-8")
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise SerializationError(workflow_id, field, exc) from exc


#: Types outside JSON must fail instead of being silently converted by orjson.
JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _output_text(value: Any, workflow_id: str, node: str, texts: dict[str, tuple[Any, str]]) -> str:
    """What Go stores for an output: the text it was read from while unchanged, a str verbatim,
    anything else JSON-encoded."""
    read = texts.get(node)
    if read is not None and read[0] is value:
        return read[1]
    if type(value) is orjson.Fragment:  # the stored encoding (see StateColumns.outputs)
        raw = orjson.dumps(value)
        if not raw.startswith(b'"'):
            return raw.decode("utf-8")
        value = orjson.loads(raw)  # a str: Go writes it verbatim
    if isinstance(value, str):
        return value
    return _json_text(value, workflow_id, f"output of node {node!r}")


def _string(b: flatbuffers.Builder, text: str, workflow_id: str, where: str) -> int:
    """A string as Go's bytes: surrogate-escaped bytes (read from a Go file) written back as they were."""
    try:
        return int(b.CreateString(text, errors="surrogateescape"))
    except UnicodeEncodeError as exc:
        raise SerializationError(workflow_id, where, exc) from exc


def _entry_vector(builder: flatbuffers.Builder, offsets: list[int], start_vector: Any) -> int:
    start_vector(builder, len(offsets))
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def encode(columns: StateColumns, updated_at: float) -> bytearray:
    """Write the Go layout exactly as the Go store does (see ``GoFlatBuffersCodec`` for what is lost)."""
    c = columns
    wid = c.workflow_id
    b = flatbuffers.Builder(1024 + 64 * (len(c.statuses) + len(c.outputs) + len(c.data)))
    strings: list[int] = []
    ints: list[int] = []
    bools: list[int] = []
    doubles: list[int] = []
    for key, value in c.data.items():
        k = _string(b, key, wid, f"data key {key!r}")
        if isinstance(value, bool):  # before int: bool is an int subclass
            KeyValueBool.Start(b)
            KeyValueBool.AddKey(b, k)
            KeyValueBool.AddValue(b, value)
            bools.append(KeyValueBool.End(b))
        elif isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise SerializationError(wid, f"data[{key!r}]", OverflowError("int exceeds 64 bits"))
            KeyValueInt.Start(b)
            KeyValueInt.AddKey(b, k)
            KeyValueInt.AddValueLong(b, value)
            ints.append(KeyValueInt.End(b))
        elif isinstance(value, float):
            KeyValueDouble.Start(b)
            KeyValueDouble.AddKey(b, k)
            # The builder leaves out a value equal to the default 0.0, and -0.0 == 0.0: force it
            # in so the sign survives (Go reads the stored double as it is).
            b.PrependFloat64Slot(_VALUE, value, math.nan if math.copysign(1.0, value) < 0 else 0.0)
            doubles.append(KeyValueDouble.End(b))
        else:
            text = value if isinstance(value, str) else _json_text(value, wid, f"data[{key!r}]")
            v = _string(b, text, wid, f"data[{key!r}]")
            KeyValueString.Start(b)
            KeyValueString.AddKey(b, k)
            KeyValueString.AddValue(b, v)
            strings.append(KeyValueString.End(b))
    statuses: list[int] = []
    for node, status in c.statuses.items():
        n = _string(b, node, wid, f"node name {node!r}")
        NodeStatusEntry.Start(b)
        NodeStatusEntry.AddNodeName(b, n)
        NodeStatusEntry.AddStatus(b, STATUS_CODES.get(status, _PENDING_CODE))  # UNKNOWN: pending, as Go
        statuses.append(NodeStatusEntry.End(b))
    outputs: list[int] = []
    texts = c.output_texts
    for node, output in c.outputs.items():
        where = f"output of node {node!r}"
        n = _string(b, node, wid, where)
        o = _string(b, _output_text(output, wid, node, texts), wid, where)
        NodeOutputEntry.Start(b)
        NodeOutputEntry.AddNodeName(b, n)
        NodeOutputEntry.AddOutput(b, o)
        outputs.append(NodeOutputEntry.End(b))
    waits: list[int] = []
    for node, fire_at in c.waits.items():
        n = _string(b, node, wid, f"wait of node {node!r}")
        TimerWaitEntry.Start(b)
        TimerWaitEntry.AddNodeName(b, n)
        TimerWaitEntry.AddFireAt(b, int(fire_at))
        waits.append(TimerWaitEntry.End(b))
    ws = WorkflowState
    vectors = [
        (strings, ws.StartStringDataVector, ws.AddStringData),
        (ints, ws.StartIntDataVector, ws.AddIntData),
        (bools, ws.StartBoolDataVector, ws.AddBoolData),
        (doubles, ws.StartDoubleDataVector, ws.AddDoubleData),
        (statuses, ws.StartNodeStatusesVector, ws.AddNodeStatuses),
        (outputs, ws.StartNodeOutputsVector, ws.AddNodeOutputs),
        (waits, ws.StartWaitsVector, ws.AddWaits),
    ]
    built = [(_entry_vector(b, offs, start), add) for offs, start, add in vectors if offs]
    wid_off = _string(b, wid, wid, "workflow id")
    ws.Start(b)
    ws.AddWorkflowId(b, wid_off)
    for offset, add in built:
        add(b, offset)
    # Go never writes the timestamp; writing it is additive (unknown to Go readers is fine, and the
    # field exists in its schema), and keeps updated_at across a round trip.
    ws.AddTimestamp(b, round(updated_at * 1000))
    ws.AddRollingBack(b, c.rolling_back)
    ws.AddTriggerCause(b, c.trigger_cause)
    b.Finish(ws.End(b))
    return b.Output()  # type: ignore[no-any-return]
