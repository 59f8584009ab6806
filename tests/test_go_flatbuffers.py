"""Tests of the Go Flow Orchestrator FlatBuffers layout: golden files, writing it, hostile input."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flatbuffers
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_workbench.data import WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores._versions import content_token
from flow_workbench.stores.base import StateFormat, summary_from_data
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec, GoFlatBuffersCodec

GOLDEN = Path(__file__).parent / "golden" / "go"
GENERATED = Path(__file__).parent.parent / "flow_workbench" / "stores" / "_generated"
CODECS = [FlatBuffersCodec(), GoFlatBuffersCodec()]


@pytest.fixture
def generated_go() -> Iterator[Any]:
    """The flatc-generated reader, an independent implementation of the Go layout.

    Its modules import each other as top-level ``workflow.*``, so the generated dir goes on sys.path.
    """
    sys.path.insert(0, str(GENERATED))
    try:
        from workflow import WorkflowState  # type: ignore[import-not-found]

        yield WorkflowState.WorkflowState
    finally:
        sys.path.remove(str(GENERATED))


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


# --- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: type(c).__name__)
def test_full_golden_loads_value_exact(codec: Any) -> None:
    data = codec.decode(golden("v012_format_full.fb"), "golden")
    assert data.id == "v012_format_full"
    values = dict(data.items())
    assert values == {"balance_cents": 9007199254740993, "rate": 3.14159, "region": "eu-west", "vip": True}
    assert type(values["balance_cents"]) is int and type(values["vip"]) is bool
    assert type(values["rate"]) is float
    assert data.node_statuses() == {
        "bypassed_node": NodeStatus.BYPASSED,
        "compensated_node": NodeStatus.COMPENSATED,
        "compfailed_node": NodeStatus.COMPENSATION_FAILED,
        "done_node": NodeStatus.COMPLETED,
        "waiting_node": NodeStatus.WAITING,
    }
    assert data.waits == {"waiting_node": 1893456000000}
    assert data.rolling_back is True
    assert data.trigger_cause == 2
    assert data.outputs() == {}
    # Go files carry no version: theirs is the content token of their bytes.
    assert data.version == content_token(golden("v012_format_full.fb"))
    assert data.dag_structure is None


def test_full_golden_matches_its_json_twin() -> None:
    twin = orjson.loads(golden("v012_format_full.json"))
    data = FlatBuffersCodec().decode(golden("v012_format_full.fb"), "golden")
    assert dict(data.items()) == twin["data"]
    assert {k: v.value for k, v in data.node_statuses().items()} == twin["nodeStatus"]
    assert (data.waits, data.rolling_back, data.trigger_cause) == (
        twin["waits"],
        twin["rolling_back"],
        twin["trigger_cause"],
    )


def test_legacy_int32_golden_falls_back_to_value() -> None:
    data = FlatBuffersCodec().decode(golden("m1_format_int.fb"), "golden")
    assert data.id == "m1_format_int"
    assert dict(data.items()) == {"small": 42, "edge": 2147483647, "clamped": 2147483647}
    assert data.node_statuses() == {}


@pytest.mark.parametrize("name", ["v012_format_full.fb", "m1_format_int.fb"])
def test_go_summary_node_status_and_version_agree_with_decode(name: str) -> None:
    codec = FlatBuffersCodec()
    raw = golden(name)
    data = codec.decode(raw, name)
    expected = summary_from_data(data, StateFormat.GO_FLATBUFFERS, name, len(raw))
    # Go leaves its timestamp unset: the summary says "unknown" rather than 1970.
    assert data.updated_at == 0.0
    assert codec.summarize(raw, name) == dataclasses.replace(expected, updated_at=None)
    for node, status in data.node_statuses().items():
        assert codec.node_status(raw, name, node) is status
    assert codec.node_status(raw, name, "missing") is None
    assert codec.stored_version(raw, name) == content_token(raw) == data.version


# --- writing the Go layout ---------------------------------------------------------------------


def rich_state() -> WorkflowData:
    data = WorkflowData("go-out", created_at=100.0)
    for key, value in {
        "int": 9007199254740993,
        "min": -(1 << 63),
        "zero": 0,
        "float": 2.5,
        "bool": True,
        "false": False,
        "str": "héllo",
        "none": None,
        "list": [1, "a"],
        "dict": {"k": {"n": 1}},
    }.items():
        data.set(key, value)
    for i, status in enumerate(STATUSES_BY_CODE):
        data.set_node_status(f"n{i}", status)
    for node, output in {
        "n0": {"rows": 1},
        "n1": "plain text",
        "n2": "42",
        "n3": '{"looks": "like json"}',
        "n4": 7,
        "n5": None,
        "n6": "",
        "n7": [1.5, True],
    }.items():
        data.set_output(node, output)
    data.record_attempt_started("n2", at=5.0)
    data.set_dag_structure({"n1": [], "n2": ["n1"]})
    data.add_audit("reset", ["n2"])
    columns = data._unsafe_columns()
    columns.waits["n5"] = (1 << 63) - 1
    columns.rolling_back = True
    columns.trigger_cause = 3
    return data


def test_go_layout_round_trip_keeps_what_it_can_and_documents_the_rest() -> None:
    data = rich_state()
    go = GoFlatBuffersCodec()
    raw = go.encode(data, version=9, updated_at=1234.5)
    assert go.format is StateFormat.GO_FLATBUFFERS and go.suffix == ".fb"
    back = FlatBuffersCodec().decode(raw, "go")
    assert bytes(raw[4:8]) != b"FWB1"
    # Kept exactly.
    assert back.node_statuses() == data.node_statuses()
    # Outputs as Go stores them: a str verbatim, so the strs "42" and '{"looks": ...}' read
    # back as the JSON they spell (the Go layout has no way to tell them apart).
    assert back.outputs() == data.outputs() | {"n2": 42, "n3": {"looks": "like json"}}
    assert back.waits == data.waits
    assert (back.rolling_back, back.trigger_cause, back.updated_at) == (True, 3, 1234.5)
    kept = {k: v for k, v in data.items() if k not in ("none", "list", "dict")}
    assert {k: back.get(k) for k in kept} == kept
    assert type(back.get("float")) is float and type(back.get("bool")) is bool
    # Non-scalar data comes back as its JSON text, as in Go.
    assert (back.get("none"), back.get("list"), back.get("dict")) == ("null", '[1,"a"]', '{"k":{"n":1}}')
    # Dropped: what the Go layout has no field for.
    assert back.version == content_token(raw)
    assert back.dag_structure is None
    assert back.audit == []
    assert back.history()["n2"].attempts == 0
    assert back.created_at == 1234.5


def test_go_layout_is_readable_by_the_generated_reader(generated_go: Any) -> None:
    raw = bytes(GoFlatBuffersCodec().encode(rich_state(), version=1, updated_at=2.0))
    root = generated_go.GetRootAs(raw, 0)
    assert root.WorkflowId() == b"go-out"
    ints = {root.IntData(i).Key().decode(): root.IntData(i).ValueLong() for i in range(root.IntDataLength())}
    assert ints == {"int": 9007199254740993, "min": -(1 << 63), "zero": 0}
    assert all(root.IntData(i).Value() == 0 for i in range(root.IntDataLength()))  # Go leaves value unset
    statuses = {
        root.NodeStatuses(i).NodeName().decode(): root.NodeStatuses(i).Status()
        for i in range(root.NodeStatusesLength())
    }
    assert statuses == {f"n{i}": i for i in range(9)} | {"n2": 1}  # n2 is running (attempt started)
    outputs = {
        root.NodeOutputs(i).NodeName().decode(): root.NodeOutputs(i).Output().decode()
        for i in range(root.NodeOutputsLength())
    }
    assert outputs["n1"] == "plain text"  # strings verbatim, as Go writes them
    assert outputs["n0"] == '{"rows":1}'
    assert outputs["n2"] == "42"  # verbatim, as Go writes a string
    assert outputs["n3"] == '{"looks": "like json"}'
    assert outputs["n4"] == "7" and outputs["n5"] == "null" and outputs["n7"] == "[1.5,true]"
    assert root.RollingBack() is True and root.TriggerCause() == 3
    assert root.Waits(0).FireAt() == (1 << 63) - 1


def test_our_layout_is_a_valid_flatbuffer_for_the_generated_reader() -> None:
    sys.path.insert(0, str(GENERATED))
    try:
        from fwb import WorkflowState  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(GENERATED))
    data = rich_state()
    raw = bytes(FlatBuffersCodec().encode(data, version=12, updated_at=3.0))
    root = WorkflowState.WorkflowState.GetRootAs(raw, 0)
    assert WorkflowState.WorkflowState.WorkflowStateBufferHasIdentifier(raw, 0)
    assert (root.WorkflowId(), root.Version(), root.FormatVersion()) == (b"go-out", 12, 2)
    assert root.NodeStatusesAsNumpy().tolist() == [s.code for s in data.node_statuses().values()]
    assert orjson.loads(root.OutputsJsonAsNumpy().tobytes()) == data.outputs()


def test_go_layout_refuses_non_json_and_oversized_values() -> None:
    data = WorkflowData("bad")
    data.set("huge", 1 << 63)
    with pytest.raises(SerializationError, match="huge"):
        GoFlatBuffersCodec().encode(data, version=1, updated_at=1.0)
    data = WorkflowData("bad")
    data.set_node_status("n", NodeStatus.COMPLETED)
    with pytest.raises(SerializationError, match="'n'"):
        data.set_output("n", object())
    data._unsafe_columns().outputs["n"] = object()  # bypassing set_output: still refused
    with pytest.raises(SerializationError) as info:
        GoFlatBuffersCodec().encode(data, version=1, updated_at=1.0)
    assert "'n'" in info.value.field


def go_state_with_status(code: int) -> bytes:
    """A Go-layout buffer whose single status entry holds an arbitrary byte."""
    from flow_workbench.stores._generated.workflow import NodeStatusEntry, WorkflowState

    b = flatbuffers.Builder(256)
    name = b.CreateString("odd")
    NodeStatusEntry.Start(b)
    NodeStatusEntry.AddNodeName(b, name)
    NodeStatusEntry.AddStatus(b, code)
    entry = NodeStatusEntry.End(b)
    WorkflowState.StartNodeStatusesVector(b, 1)
    b.PrependUOffsetTRelative(entry)
    vector = b.EndVector()
    wid = b.CreateString("odd")
    WorkflowState.Start(b)
    WorkflowState.AddWorkflowId(b, wid)
    WorkflowState.AddNodeStatuses(b, vector)
    WorkflowState.AddTriggerCause(b, 200)
    b.Finish(WorkflowState.End(b))
    return bytes(b.Output())


@pytest.mark.parametrize("code", [9, 42, 127, -1, -128])
def test_unknown_go_status_bytes_map_to_pending(code: int) -> None:
    raw = go_state_with_status(code)
    codec = FlatBuffersCodec()
    assert codec.decode(raw, "go").node_statuses() == {"odd": NodeStatus.PENDING}
    assert codec.node_status(raw, "go", "odd") is NodeStatus.PENDING
    assert codec.decode(raw, "go").trigger_cause == 0  # out-of-range cause is ignored, as in Go


# --- hostile Go input --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v012_format_full.fb", "m1_format_int.fb"])
def test_every_truncated_golden_raises_corrupt_state(name: str) -> None:
    """Go files have no checksum: a prefix that only drops trailing padding may still decode (to the
    same state); any prefix cutting referenced bytes (incl. the last string's NUL) must raise."""
    raw = golden(name)
    codec = FlatBuffersCodec()
    full = codec.decode(raw, name)
    terminator = len(raw.rstrip(b"\x00"))  # the last string (the id) ends the file, then padding
    assert terminator < len(raw)
    for size in range(len(raw)):
        if size <= terminator:
            with pytest.raises(CorruptStateError):
                codec.decode(raw[:size], name)
            with pytest.raises(CorruptStateError):
                codec.summarize(raw[:size], name)
        else:
            with contextlib.suppress(CorruptStateError):
                # Other bytes, so another content token (version); the same state otherwise.
                assert codec.decode(raw[:size], name).differences(full, ignore=["version"]) == []


def test_element_count_over_the_cap_is_corrupt() -> None:
    raw = bytearray(golden("m1_format_int.fb"))
    # m1_format_int's int_data vector: its length (3) sits at offset 0x1c.
    assert struct.unpack_from("<I", raw, 0x1C)[0] == 3
    struct.pack_into("<I", raw, 0x1C, (1 << 20) + 1)
    with pytest.raises(CorruptStateError, match="cap"):
        FlatBuffersCodec().decode(raw, "m1")
    struct.pack_into("<I", raw, 0x1C, 1 << 19)  # under the cap but past the end of the buffer
    with pytest.raises(CorruptStateError):
        FlatBuffersCodec().decode(raw, "m1")


def test_invalid_utf8_in_a_go_string_decodes_losslessly() -> None:
    """Go strings may hold any bytes: each byte that is not UTF-8 becomes one lone surrogate."""
    raw = bytearray(golden("m1_format_int.fb"))
    at = raw.index(b"small")
    raw[at] = 0xFF
    data = FlatBuffersCodec().decode(raw, "m1")
    assert data.get("\udcffmall") == 42
    assert "\udcffmall".encode("utf-8", "surrogateescape") == b"\xffmall"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_go_files_decode_or_raise_corrupt_state(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["v012_format_full.fb", "m1_format_int.fb"]))
    raw = bytearray(golden(name))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    codec = FlatBuffersCodec()
    try:
        decoded = codec.decode(bytes(raw), name)
    except CorruptStateError as exc:
        assert exc.source == name
    else:
        assert isinstance(decoded, WorkflowData)
        assert codec.summarize(bytes(raw), name).node_count == len(decoded.node_statuses())


def test_go_summaries_report_an_unknown_update_time_as_none() -> None:
    from flow_workbench.stores.json_codec import JSONCodec

    fb = (GOLDEN / "v012_format_full.fb").read_bytes()
    js = (GOLDEN / "v012_format_full.json").read_bytes()
    assert FlatBuffersCodec().summarize(fb, "golden.fb").updated_at is None
    assert JSONCodec().summarize(js, "golden.json").updated_at is None
