"""Go interop, exact both ways: every value class read and written as the Go library does it.

Go files are built from the facts (shared/interop/README.md) with ``flatc`` from
``schemas/go_workflow_state.fbs`` (FlatBuffers) or written as Go's encoding/json writes them, then
loaded, saved in the Go layout and compared byte for byte (outputs, strings) or value for value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from flow_workbench import DAG, Workflow, WorkflowData, reset_failed
from flow_workbench.errors import (
    CorruptStateError,
    InvalidWorkflowIdError,
    SerializationError,
    UnknownStatusError,
    VersionConflictError,
)
from flow_workbench.ids import validate_workflow_id
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores import scan_folder
from flow_workbench.stores._versions import content_token, is_content_token
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.flatbuffers_codec import GoFlatBuffersCodec
from flow_workbench.stores.json_codec import JSONCodec
from flow_workbench.stores.json_file import JSONFileStore
from tests.helpers.go import GO_IDS, WAIT_2030_NS, go_fb, go_json_snapshot, write_unknown_status_file
from tests.helpers.paths import GOLDEN_GO
from tests.helpers.stores import IMPLEMENTATIONS

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "flow_workbench" / "stores" / "_generated"


@pytest.fixture
def generated() -> Iterator[Any]:
    """The flatc-generated reader: an independent view of the bytes a save wrote."""
    sys.path.insert(0, str(GENERATED))
    try:
        from workflow import WorkflowState  # type: ignore[import-not-found]

        yield WorkflowState.WorkflowState
    finally:
        sys.path.remove(str(GENERATED))


def raw_outputs(generated: Any, raw: bytes) -> dict[bytes, bytes]:
    root = generated.GetRootAs(raw, 0)
    return {
        root.NodeOutputs(i).NodeName(): root.NodeOutputs(i).Output() for i in range(root.NodeOutputsLength())
    }


def raw_strings(generated: Any, raw: bytes) -> dict[bytes, bytes]:
    root = generated.GetRootAs(raw, 0)
    return {root.StringData(i).Key(): root.StringData(i).Value() for i in range(root.StringDataLength())}


# --- 1. outputs in the Go layout --------------------------------------------------------------------

#: Output texts as Go stores them, and the value each reads as here.
GO_OUTPUT_TEXTS: list[tuple[bytes, Any]] = [
    (b"plain text", "plain text"),  # a Go string that is not JSON
    (b"42", 42),  # a number, or a Go string "42": the same bytes
    (b" 42 ", 42),  # JSON with spaces: same value, other text
    (b"1e5", 100000.0),
    (b"-0", 0),
    (b'"quoted"', "quoted"),  # Go string '"quoted"' or the JSON of the string quoted
    (b'{"b": 1, "a": [true, null]}', {"b": 1, "a": [True, None]}),
    (b"[1,2]", [1, 2]),
    (b"null", None),
    (b"true", True),
    (b"", ""),
    (b"caf\xc3\xa9 \xe2\x9c\x93", "café ✓"),
    (b"\xff\xfe raw bytes", "\udcff\udcfe raw bytes"),  # not UTF-8: each byte a lone surrogate
    (b'{"k": "\xff"}', '{"k": "\udcff"}'),  # JSON around a bad byte: kept as text
]


@pytest.mark.parametrize(("text", "value"), GO_OUTPUT_TEXTS, ids=lambda v: repr(v)[:30])
def test_go_output_text_reads_as_its_value_and_is_written_back_byte_identical(
    tmp_path: Path, generated: Any, text: bytes, value: Any
) -> None:
    raw = go_fb(tmp_path, "wf", statuses={"n": "Completed"}, outputs={"n": text})
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "wf.fb").write_bytes(raw)
    store = FlatBuffersStore(folder, layout="go")
    data = store.load("wf")
    assert data.get_output("n") == value and type(data.get_output("n")) is type(value)
    data.set("touched", 1)  # a real modification: the output itself is unchanged
    store.save(data)
    assert raw_outputs(generated, (folder / "wf.fb").read_bytes()) == {b"n": text}


#: Values set here, and the bytes Go's writer stores for each (a string verbatim, else JSON).
GO_OUTPUT_VALUES: list[tuple[Any, bytes]] = [
    ("plain text", b"plain text"),
    ("42", b"42"),  # verbatim, as Go writes it (it reads back as the number 42)
    ('{"a": 1}', b'{"a": 1}'),
    ("", b""),
    (42, b"42"),
    (-(1 << 63), b"-9223372036854775808"),
    (2.5, b"2.5"),
    (True, b"true"),
    (None, b"null"),
    ({"k": [1, "é"]}, '{"k":[1,"é"]}'.encode()),
]


@pytest.mark.parametrize(("value", "text"), GO_OUTPUT_VALUES, ids=lambda v: repr(v)[:30])
def test_outputs_are_written_exactly_as_go_writes_them(generated: Any, value: Any, text: bytes) -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.COMPLETED)
    data.set_output("n", value)
    raw = bytes(GoFlatBuffersCodec().encode(data, version=1, updated_at=1.0))
    assert raw_outputs(generated, raw) == {b"n": text}


def test_a_changed_go_output_is_written_as_its_new_value(tmp_path: Path, generated: Any) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "wf.fb").write_bytes(go_fb(tmp_path, "wf", statuses={"n": "Completed"}, outputs={"n": b" 42 "}))
    store = FlatBuffersStore(folder, layout="go")
    data = store.load("wf")
    data.set_output("n", 42)  # the same value, set anew: written as Go would write it now
    store.save(data)
    assert raw_outputs(generated, (folder / "wf.fb").read_bytes()) == {b"n": b"42"}


# --- 6. strings that are not UTF-8 --------------------------------------------------------------------


def test_non_utf8_strings_load_and_save_back_as_the_same_bytes(tmp_path: Path, generated: Any) -> None:
    bad_key, bad_value, bad_node = b"k\xff", b"v\xc3(", b"n\xe9"
    raw = go_fb(
        tmp_path,
        "wf",
        strings={bad_key: bad_value, "ok": "fine"},
        statuses={bad_node: "Failed"},
        outputs={bad_node: b"out\x80"},
        waits={bad_node: WAIT_2030_NS},
    )
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "wf.fb").write_bytes(raw)
    store = FlatBuffersStore(folder, layout="go")
    data = store.load("wf")
    node = bad_node.decode("utf-8", "surrogateescape")
    assert node == "n\udce9" and data.get_node_status(node) is NodeStatus.FAILED
    assert data.get("k\udcff") == "v\udcc3("
    assert data.get_output(node) == "out\udc80"
    data.set_node_status(node, NodeStatus.PENDING)  # modify, then write back
    store.save(data)
    saved = (folder / "wf.fb").read_bytes()
    assert raw_strings(generated, saved) == {bad_key: bad_value, b"ok": b"fine"}
    assert raw_outputs(generated, saved) == {bad_node: b"out\x80"}
    root = generated.GetRootAs(saved, 0)
    assert root.NodeStatuses(0).NodeName() == bad_node and root.Waits(0).NodeName() == bad_node

    # Our layouts have no room for such strings (UTF-8 only): refused, naming what.
    with pytest.raises(SerializationError) as json_refusal:
        JSONCodec().encode(data, version=1, updated_at=1.0)
    assert "'n\\udce9'" in json_refusal.value.field or "'k\\udcff'" in json_refusal.value.field
    with pytest.raises(SerializationError) as fb_refusal:
        FlatBuffersStore(tmp_path / "ours").save(data)
    assert "\\udc" in fb_refusal.value.field


def test_a_lone_surrogate_that_is_no_escaped_byte_is_refused_in_the_go_layout() -> None:
    data = WorkflowData("wf")
    data.set("k", "\ud800")
    with pytest.raises(SerializationError) as refused:
        GoFlatBuffersCodec().encode(data, version=1, updated_at=1.0)
    assert refused.value.field == "data['k']"


# --- 2, 3, 4. Go JSON: numbers beyond int64, unknown statuses, trigger causes ---------------------------


def test_numbers_beyond_int64_read_as_floats_as_in_go_and_save(tmp_path: Path) -> None:
    text = (
        b'{"id": "big", "nodeStatus": {"n": "completed"}, "data": {"two63": 9223372036854775808, '
        b'"e19": 10000000000000000000, "max": 9223372036854775807, "neg": -9223372036854775809, '
        b'"nested": {"list": [1, 18446744073709551616]}}, "outputs": {"n": 10000000000000000000}}'
    )
    (tmp_path / "big.json").write_bytes(text)
    store = JSONFileStore(tmp_path)
    data = store.load("big")
    assert data.get("two63") == 2.0**63 and type(data.get("two63")) is float
    assert data.get("e19") == 1e19 and type(data.get("e19")) is float
    assert data.get("max") == (1 << 63) - 1 and type(data.get("max")) is int  # int64 stays exact
    assert type(data.get("neg")) is float
    assert data.get("nested") == {"list": [1, 2.0**64]}
    assert data.get_output("n") == 1e19
    store.save(data)  # used to fail: "int exceeds 64 bits"
    assert store.load("big").get("e19") == 1e19
    FlatBuffersStore(tmp_path / "go", layout="go").save(data)


UNKNOWN_TEXTS = ["bogus", "COMPLETED", "", "unknown", " completed", "pending\n"]


@pytest.mark.parametrize("text", UNKNOWN_TEXTS, ids=repr)
def test_unknown_status_text_stays_visible_and_json_saves_write_it_back(tmp_path: Path, text: str) -> None:
    (tmp_path / "wf.json").write_bytes(
        go_json_snapshot({"id": "wf", "nodeStatus": {"odd": text, "a": "completed"}})
    )
    store = JSONFileStore(tmp_path)
    data = store.load("wf")
    assert data.get_node_status("odd") is NodeStatus.UNKNOWN
    assert data.status_text("odd") == text and data.unknown_statuses() == {"odd": text}
    assert store.summary("wf").status_counts == {"unknown": 1, "completed": 1}
    data.set("edited", True)
    store.save(data)  # our JSON now; Go reads the same nodeStatus map
    assert json.loads((tmp_path / "wf.json").read_bytes())["nodeStatus"] == {"odd": text, "a": "completed"}
    again = store.load("wf")
    assert (
        again.status_text("odd") == text and again.differences(data, ignore=["version", "updated_at"]) == []
    )
    assert store.node_status("wf", "odd") is NodeStatus.UNKNOWN


def test_unknown_status_in_the_flatbuffers_layouts(tmp_path: Path) -> None:
    data = JSONCodec().decode(go_json_snapshot({"id": "wf", "nodeStatus": {"odd": "bogus"}}), "go")
    # The Go layout writes it as pending, as Go's FlatBuffers writer does.
    go = FlatBuffersStore(tmp_path / "go", layout="go")
    go.save(data)
    assert go.load("wf").get_node_status("odd") is NodeStatus.PENDING
    # Our FlatBuffers layout has no byte for it: refused, naming the node.
    with pytest.raises(SerializationError) as refused:
        FlatBuffersStore(tmp_path / "ours").save(data)
    assert refused.value.field == "status of node 'odd'"


def test_the_engine_refuses_to_run_unknown_statuses_until_they_are_reset(tmp_path: Path) -> None:
    (tmp_path / "wf.json").write_bytes(
        go_json_snapshot({"id": "wf", "nodeStatus": {"a": "COMPLETED", "b": "pending"}})
    )
    store = JSONFileStore(tmp_path)
    dag = DAG()
    dag.add_node("a", lambda data: 1)
    dag.add_node("b", lambda data: 2, depends_on="a")
    before = (tmp_path / "wf.json").read_bytes()
    with pytest.raises(UnknownStatusError) as refused:
        Workflow(dag, "wf", store).execute()
    assert refused.value.statuses == {"a": "COMPLETED"} and "'COMPLETED'" in str(refused.value)
    assert (tmp_path / "wf.json").read_bytes() == before  # nothing written
    data = store.load("wf")
    data.set_node_status("a", NodeStatus.PENDING)  # what reset does; the kept text goes with it
    assert data.unknown_statuses() == {}
    store.save(data)
    Workflow(dag, "wf", store).execute()
    assert store.load("wf").node_statuses() == {"a": NodeStatus.COMPLETED, "b": NodeStatus.COMPLETED}


CAUSES = [
    (0, 0),
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 0),
    (255, 0),
    (256, 0),
    (-1, 0),
    (1 << 70, 0),
    (2.5, 0),
    (None, 0),
]


@pytest.mark.parametrize(("stored", "read"), CAUSES, ids=repr)
def test_trigger_cause_outside_0_to_3_reads_as_0_in_go_json(stored: Any, read: int) -> None:
    data = JSONCodec().decode(go_json_snapshot({"id": "wf", "trigger_cause": stored}), "go")
    assert data.trigger_cause == read


@pytest.mark.parametrize("byte", [0, 1, 2, 3, 4, 17, 128, 255])
def test_trigger_cause_outside_0_to_3_reads_as_0_in_go_flatbuffers(tmp_path: Path, byte: int) -> None:
    raw = go_fb(tmp_path, "wf", trigger_cause=byte)
    assert GoFlatBuffersCodec().decode(raw, "go").trigger_cause == (byte if byte <= 3 else 0)


# --- round trips per value class, both Go formats ------------------------------------------------------

DATA_VALUES: dict[str, Any] = {
    "int64_min": -(1 << 63),
    "int64_max": (1 << 63) - 1,
    "two53_plus_one": (1 << 53) + 1,
    "zero": 0,
    "float": 3.14159,
    "neg_zero": -0.0,
    "tiny": 5e-324,
    "true": True,
    "false": False,
    "text": "eu-west",
    "unicode": "ünïcode ✓ 节点 \U0001f600",
    "empty": "",
}


@pytest.mark.parametrize("key", sorted(DATA_VALUES))
def test_every_value_class_round_trips_exactly_in_both_go_formats(tmp_path: Path, key: str) -> None:
    value = DATA_VALUES[key]
    data = WorkflowData("wf")
    data.set(key, value)
    data.set_node_status("n", NodeStatus.WAITING)
    data.set_wait("n", WAIT_2030_NS)
    data.set_rolling_back(True)
    data.set_trigger_cause(2)
    for store in (JSONFileStore(tmp_path / "json"), FlatBuffersStore(tmp_path / "go", layout="go")):
        store.save(data)
        back = store.load("wf")
        assert back.get(key) == value and type(back.get(key)) is type(value)
        if isinstance(value, float):
            assert repr(back.get(key)) == repr(value)  # -0.0 and 5e-324 bit for bit
        assert (back.waits, back.rolling_back, back.trigger_cause) == ({"n": WAIT_2030_NS}, True, 2)
    # Go's JSON reader (any JSON reader) sees the Go keys with these values.
    go_view = json.loads((tmp_path / "json" / "wf.json").read_bytes())
    assert go_view["data"][key] == value and go_view["waits"] == {"n": WAIT_2030_NS}


@pytest.mark.parametrize("status", STATUSES_BY_CODE, ids=str)
def test_every_go_status_round_trips_in_both_go_formats(tmp_path: Path, status: NodeStatus) -> None:
    raw = go_fb(tmp_path, "wf", statuses={"n": status.code})
    assert GoFlatBuffersCodec().decode(raw, "go").get_node_status("n") is status
    document = JSONCodec().decode(go_json_snapshot({"id": "wf", "nodeStatus": {"n": status.value}}), "go")
    assert document.get_node_status("n") is status


# --- 5, 9. waits in nanoseconds and the Go-only setters ------------------------------------------------


def test_go_field_setters_and_waits_in_nanoseconds() -> None:
    data = WorkflowData("wf")
    data.set_wait("a", datetime(2030, 1, 1, tzinfo=UTC))
    assert data.waits == {"a": WAIT_2030_NS}
    assert data.wait_until("a") == datetime(2030, 1, 1, tzinfo=UTC)
    data.set_wait("b", WAIT_2030_NS + 123)  # nanoseconds kept exactly
    assert data.waits["b"] == WAIT_2030_NS + 123
    assert data.clear_wait("b") is True and data.clear_wait("b") is False
    for bad in (1 << 63, 1.5, True):
        with pytest.raises((TypeError, ValueError)):
            data.set_wait("c", bad)  # type: ignore[arg-type]
    data.set_rolling_back(True)
    data.set_trigger_cause(3)
    assert (data.rolling_back, data.trigger_cause) == (True, 3)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        data.set_trigger_cause(4)
    with pytest.raises(TypeError):
        data.set_rolling_back(1)  # type: ignore[arg-type]
    data.set_wait("max", (1 << 63) - 1)
    assert data.wait_until("max") == datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)


# --- 8. saving a Go file twice; two editors -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["go-fb", "go-json"])
def test_a_single_editor_of_a_go_file_never_conflicts_with_itself(tmp_path: Path, kind: str) -> None:
    if kind == "go-fb":
        store: Any = FlatBuffersStore(tmp_path, layout="go")
        store.save(WorkflowData("wf"))  # save new
    else:
        (tmp_path / "wf.json").write_bytes(go_json_snapshot({"id": "wf", "nodeStatus": {}}))
        store = JSONFileStore(tmp_path)
    data = store.load("wf")
    data.set("a", 1)
    store.save(data)  # used to fail in the Go layout: "this copy is version 0, the store holds version 1"
    data.set("a", 2)
    store.save(data)
    reloaded = store.load("wf")
    reloaded.set("a", 3)
    store.save(reloaded)
    assert store.load("wf").get("a") == 3


def test_two_editors_of_a_go_file_cannot_overwrite_each_other(tmp_path: Path) -> None:
    shutil.copy(GOLDEN_GO / "v012_format_full.fb", tmp_path)
    first, second = FlatBuffersStore(tmp_path, layout="go"), FlatBuffersStore(tmp_path, layout="go")
    mine, theirs = first.load("v012_format_full"), second.load("v012_format_full")
    assert mine.version == theirs.version and is_content_token(mine.version)
    mine.set("who", "first")
    first.save(mine)
    theirs.set("who", "second")
    with pytest.raises(VersionConflictError):
        second.save(theirs)
    assert second.load("v012_format_full").get("who") == "first"
    # The same copy, saved again by the first editor: fine.
    mine.set("again", True)
    first.save(mine)


def test_a_rewrite_by_go_between_load_and_save_is_a_conflict(tmp_path: Path) -> None:
    for suffix, store in (
        (".json", JSONFileStore(tmp_path)),
        (".fb", FlatBuffersStore(tmp_path, layout="go")),
    ):
        golden = f"v012_format_full{suffix}"
        shutil.copy(GOLDEN_GO / golden, tmp_path / golden)
        data = store.load("v012_format_full")
        path = tmp_path / golden
        if suffix == ".json":  # Go rewrites its JSON: another value, no version either
            document = json.loads(path.read_bytes())
            document["data"]["vip"] = False
            path.write_bytes(go_json_snapshot(document))
        else:
            path.write_bytes(go_fb(tmp_path, "v012_format_full", bools={"vip": False}))
        data.set("mine", 1)
        with pytest.raises(VersionConflictError):
            store.save(data)
        (tmp_path / golden).unlink()


def test_run_reset_failed_run_in_one_process_on_the_go_layout(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path, layout="go")
    attempts = {"b": 0}

    def flaky(data: WorkflowData) -> int:
        attempts["b"] += 1
        if attempts["b"] == 1:
            raise RuntimeError("first time fails")
        return 2

    dag = DAG()
    dag.add_node("a", lambda data: 1)
    dag.add_node("b", flaky, depends_on="a")
    with pytest.raises(Exception, match="first time fails"):
        Workflow(dag, "wf", store).execute()
    reset_failed(store, "wf")
    Workflow(dag, "wf", store).execute()
    assert store.load("wf").node_statuses() == {"a": NodeStatus.COMPLETED, "b": NodeStatus.COMPLETED}


def test_save_node_in_the_go_layout_rewrites_the_file_and_loses_nothing(tmp_path: Path) -> None:
    store = FlatBuffersStore(tmp_path, layout="go")
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.PENDING)
    store.save_node(data, "a")
    data.set_node_status("a", NodeStatus.COMPLETED)
    store.save_node(data, "a")  # used to go to a journal no load of a Go file reads
    assert sorted(os.listdir(tmp_path)) == ["wf.fb", "wf.lock"]
    assert FlatBuffersStore(tmp_path, layout="go").load("wf").get_node_status("a") is NodeStatus.COMPLETED


def test_content_tokens_are_stable_and_distinct() -> None:
    raw = (GOLDEN_GO / "v012_format_full.fb").read_bytes()
    assert content_token(raw) == content_token(bytearray(raw)) == content_token(memoryview(raw))
    assert content_token(raw) != content_token(raw + b"\x00")
    assert is_content_token(content_token(b"")) and not is_content_token(10**12)


# --- 7. workflow ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(IMPLEMENTATIONS))
def test_every_id_go_accepts_works_in_every_store(kind: str, tmp_path: Path) -> None:
    store = IMPLEMENTATIONS[kind](tmp_path / "store")
    ids = [*GO_IDS, "a b", "a+b", "é", ".x", "a..b", "x.json", "y.lock", ".transactions", "[ab]*?\\x"[:-2]]
    for workflow_id in ids:
        data = WorkflowData(workflow_id)
        data.set_node_status("n", NodeStatus.COMPLETED)
        store.save(data)
        assert store.load(workflow_id).id == workflow_id
    assert store.list_workflows() == sorted(ids)
    if kind in ("json", "flatbuffers"):
        suffix = ".json" if kind == "json" else ".fb"
        states = sorted(
            name[: -len(suffix)] for name in os.listdir(tmp_path / "store") if name.endswith(suffix)
        )
        assert states == sorted(ids)  # one file per id, named by it
        reopened = IMPLEMENTATIONS[kind](tmp_path / "store")  # recovery leaves them alone
        assert reopened.list_workflows() == sorted(ids)
    for workflow_id in ids:
        store.delete(workflow_id)
    assert store.list_workflows() == []


def test_redis_listing_escapes_glob_characters_of_the_prefix(tmp_path: Path) -> None:
    from tests.helpers.stores import redis_store

    glob = redis_store(tmp_path)
    glob.prefix = "fw[ab]*:"  # a prefix of glob characters must match only itself
    other = redis_store(tmp_path)
    other.prefix = "fwa-other:"
    other.save(WorkflowData("theirs"))
    glob.save(WorkflowData("mine*"))
    assert glob.list_workflows() == ["mine*"]


def test_refused_file_names_are_listed_with_their_reason(tmp_path: Path) -> None:
    shutil.copy(GOLDEN_GO / "v012_format_full.json", tmp_path / "fine.json")
    for name in ["bad\x1bname.json", "..json", "nul\x85c1.fb", ".json"]:
        (tmp_path / name).write_bytes(b"{}")
    (tmp_path / ".fine.json.abc123.tmp").write_bytes(b"{}")  # a temp file: not listed
    entries = {entry.workflow_id: entry for entry in scan_folder(tmp_path)}
    assert sorted(entries) == ["", ".", "bad\x1bname", "fine", "nul\x85c1"]
    assert entries["fine"].ok
    for name in ["", ".", "bad\x1bname", "nul\x85c1"]:
        assert entries[name].error_type == "InvalidWorkflowIdError"
        assert "not a valid workflow id" in (entries[name].error or "")


def test_go_flatbuffers_file_named_otherwise_than_its_inner_id_takes_its_file_name(tmp_path: Path) -> None:
    """Go's FlatBuffers store names a workflow by its file: load -> modify -> save writes that
    file with that id, and never the workflow the inner id names."""
    (tmp_path / "a.fb").write_bytes(go_fb(tmp_path, "b", ints={"x": 1}))
    (tmp_path / "b.fb").write_bytes(go_fb(tmp_path, "b", ints={"x": 2}))
    b_before = (tmp_path / "b.fb").read_bytes()
    store = FlatBuffersStore(tmp_path, layout="go")
    data = store.load("a")
    assert data.id == "a" and data.get("x") == 1
    assert store.summary("a").workflow_id == "b"  # the file's own id stays visible
    data.set("x", 10)
    store.save(data)
    assert (tmp_path / "b.fb").read_bytes() == b_before
    assert store.load("a").get("x") == 10 and store.summary("a").workflow_id == "a"
    # Go's JSON store takes the id inside: a JSON file under another name is refused, not adopted.
    (tmp_path / "c.json").write_bytes(go_json_snapshot({"id": "b", "nodeStatus": {}}))
    with pytest.raises(CorruptStateError, match="holds workflow 'b'"):
        JSONFileStore(tmp_path).load("c")


def test_refused_ids_name_their_reason() -> None:
    cases = {
        "a/b": "separator",
        "a\\b": "separator",
        "..": "'.' or '..'",
        "new\nline": "control",
        "\udcff": "not valid Unicode",
        "é" * 101: "202",
    }
    for workflow_id, reason in cases.items():
        with pytest.raises(InvalidWorkflowIdError, match=reason):
            validate_workflow_id(workflow_id)


# --- the CLI on a Go folder with a real wait, a non-UTF-8 string, an unknown status, an odd id ------


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"}
    return subprocess.run(
        [sys.executable, "-m", "flow_workbench", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


@pytest.fixture
def go_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "go"
    folder.mkdir()
    (folder / ".odd id+é.fb").write_bytes(
        go_fb(
            tmp_path,
            "inner-id",
            strings={b"name\xff": b"caf\xe9"},
            statuses={"timer": "Waiting", "done": "Completed"},
            waits={"timer": WAIT_2030_NS},
            outputs={"done": b"42"},
        )
    )
    write_unknown_status_file(folder)
    return folder


def test_cli_shows_a_go_folder_as_it_is(go_folder: Path) -> None:
    listing = cli("ls", go_folder)
    assert listing.returncode == 0, listing.stderr
    assert ".odd id+é" in listing.stdout and "1 unknown" in listing.stdout

    shown = cli("show", go_folder, ".odd id+é")
    assert shown.returncode == 0, shown.stderr
    assert "waits until 2030-01-01 00:00:00" in shown.stdout  # nanoseconds read as such (TZ=UTC)
    assert "name\\udcff" in shown.stdout  # the bad byte is visible, escaped
    assert "no version" in shown.stdout
    as_json = json.loads(cli("show", go_folder, ".odd id+é", "--json").stdout)
    timer = next(node for node in as_json["nodes"] if node["node"] == "timer")
    assert timer["wait_until"] == "2030-01-01T00:00:00+00:00" and as_json["waits"] == {"timer": WAIT_2030_NS}

    unknown = cli("show", go_folder, "unknown")
    assert 'unknown "bogus"' in unknown.stdout

    validated = cli("validate", go_folder)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    warnings = [line for line in validated.stdout.splitlines() if line.startswith("WARN")]
    assert any("'mystery' = 'bogus'" in line for line in warnings)
    assert any("inner-id" in line and "file" in line for line in warnings)
    assert any("not UTF-8" in line for line in warnings)
    report = {Path(r["file"]).name: r for r in json.loads(cli("validate", go_folder, "--json").stdout)}
    assert report["unknown.json"]["ok"] and report["unknown.json"]["warnings"]


def test_cli_convert_reports_what_the_go_layout_loses(go_folder: Path, tmp_path: Path) -> None:
    converted = cli("convert", go_folder / "unknown.json", tmp_path / "out", "--to", "go-fb")
    assert converted.returncode == 0, converted.stderr
    assert "unknown status texts" in converted.stderr
    refused = cli("convert", go_folder / ".odd id+é.fb", tmp_path / "json", "--to", "json")
    assert refused.returncode == 1 and "UTF-8" in refused.stderr
    # Overwriting a Go file with --overwrite uses its content token and succeeds.
    again = cli("convert", go_folder / "unknown.json", tmp_path / "out", "--to", "go-fb", "--overwrite")
    assert again.returncode == 0, again.stderr


def test_golden_json_is_byte_stable_through_a_go_layout_copy(tmp_path: Path) -> None:
    """Our JSON written from the Go golden reads, key for key, as the golden in any JSON reader."""
    store = JSONFileStore(tmp_path)
    shutil.copy(GOLDEN_GO / "v012_format_full.json", tmp_path)
    data = store.load("v012_format_full")
    store.save(data)
    ours = orjson.loads((tmp_path / "v012_format_full.json").read_bytes())
    golden = orjson.loads((GOLDEN_GO / "v012_format_full.json").read_bytes())
    for key in golden:
        assert ours[key] == golden[key], key
