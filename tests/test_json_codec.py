"""JSONCodec: Go JSON interop, exact values, checksums, hostile input, serialization errors."""

from __future__ import annotations

import datetime
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_workbench.data import WorkflowData
from flow_workbench.errors import CorruptStateError, SerializationError
from flow_workbench.status import NodeStatus
from flow_workbench.stores._versions import content_token
from flow_workbench.stores.base import StateFormat
from flow_workbench.stores.json_codec import JSONCodec
from flow_workbench.testing import rich_state
from tests.helpers.hostile import with_checksum
from tests.helpers.paths import GOLDEN_GO

CODEC = JSONCodec()
GOLDEN = (GOLDEN_GO / "v012_format_full.json").read_bytes()


def encode(data: WorkflowData, version: int = 1) -> bytes:
    return bytes(CODEC.encode(data, version=version, updated_at=1_800_000_000.5))


def small_state() -> WorkflowData:
    data = WorkflowData("tiny", created_at=1.0)
    data.set("n", 7)
    data.set_node_status("a", NodeStatus.COMPLETED)
    data.set_output("a", "ok")
    return data


# --- the Go library's files -----------------------------------------------------------------------


def test_go_golden_decodes_value_exact() -> None:
    data = CODEC.decode(GOLDEN, "golden")
    # Go files carry no version: theirs is the content token of their bytes.
    assert data.id == "v012_format_full" and data.version == content_token(GOLDEN)
    assert data.items() == [
        ("balance_cents", 9007199254740993),
        ("rate", 3.14159),
        ("region", "eu-west"),
        ("vip", True),
    ]
    assert type(data.get("balance_cents")) is int and data.get("balance_cents") == 2**53 + 1
    assert data.node_statuses() == {
        "bypassed_node": NodeStatus.BYPASSED,
        "compensated_node": NodeStatus.COMPENSATED,
        "compfailed_node": NodeStatus.COMPENSATION_FAILED,
        "done_node": NodeStatus.COMPLETED,
        "waiting_node": NodeStatus.WAITING,
    }
    assert data.outputs() == {}
    assert data.waits == {"waiting_node": 1893456000000}
    assert data.rolling_back is True and data.trigger_cause == 2
    assert data.dag_structure is None


def test_go_golden_summary_and_node_status() -> None:
    summary = CODEC.summarize(GOLDEN, "golden")
    assert summary.format is StateFormat.GO_JSON
    assert (summary.workflow_id, summary.node_count) == ("v012_format_full", 5)
    assert summary.version is None  # Go files store none
    assert summary.failed_nodes == ("compfailed_node",)
    assert CODEC.node_status(GOLDEN, "golden", "waiting_node") is NodeStatus.WAITING
    assert CODEC.node_status(GOLDEN, "golden", "absent") is None
    assert CODEC.stored_version(GOLDEN, "golden") == content_token(GOLDEN)


def test_our_encoding_is_a_superset_the_go_reader_understands() -> None:
    data = CODEC.decode(GOLDEN, "golden")
    raw = encode(data, version=4)
    document = json.loads(raw)  # any JSON reader, like Go's, which ignores unknown keys
    golden = json.loads(GOLDEN)
    for key in ("id", "data", "nodeStatus", "outputs", "waits", "rolling_back", "trigger_cause"):
        assert document[key] == golden[key], key
    assert document["data"]["balance_cents"] == 9007199254740993
    assert document["__timestamp"] == 1_800_000_000_500
    again = CODEC.decode(raw, "ours")
    assert again.differences(data) == ["version", "updated_at"]
    assert again.version == 4 and CODEC.stored_version(raw, "ours") == 4
    assert CODEC.summarize(raw, "ours").format is StateFormat.JSON


def test_go_file_with_unknown_status_keeps_it_visible_like_go() -> None:
    raw = orjson.dumps({"id": "g", "data": None, "nodeStatus": {"n": "exploded"}, "outputs": None})
    data = CODEC.decode(raw, "go")
    assert data.get_node_status("n") is NodeStatus.UNKNOWN and data.items() == []
    assert data.status_text("n") == "exploded" and data.unknown_statuses() == {"n": "exploded"}


@pytest.mark.parametrize(
    "document",
    [
        [],
        "text",
        {"data": {}},  # no id
        {"id": 5, "nodeStatus": {}},
        {"id": "g", "nodeStatus": []},
        {"id": "g", "nodeStatus": {"n": 3}},
        {"id": "g", "data": [1]},
        {"id": "g", "waits": {"n": "soon"}},
        {"id": "g", "rolling_back": "yes"},
        {"id": "g", "trigger_cause": "2"},
        {"id": "g", "trigger_cause": True},
        {"id": "g", "__timestamp": "noon"},
        {"id": "g", "flow_workbench": {}},  # our block without our checksum header
    ],
    ids=repr,
)
def test_malformed_go_files_are_corrupt(document: Any) -> None:
    with pytest.raises(CorruptStateError):
        CODEC.decode(orjson.dumps(document), "go")


# --- our layout ------------------------------------------------------------------------------


def test_round_trip_is_exact() -> None:
    data = rich_state()
    data._unsafe_columns().waits["waiting"] = 1893456000000
    data._unsafe_columns().rolling_back = True
    data._unsafe_columns().trigger_cause = 3
    raw = encode(data, version=9)
    decoded = CODEC.decode(raw, "ours")
    assert decoded.differences(data) == ["version", "updated_at"]
    assert (decoded.version, decoded.updated_at) == (9, 1_800_000_000.5)


def test_extreme_integers_stay_exact() -> None:
    data = WorkflowData("ints")
    for value in (2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1):
        data.set(str(value), value)
    decoded = CODEC.decode(encode(data), "ours")
    assert decoded.items() == data.items()


def test_every_truncation_is_corrupt() -> None:
    raw = encode(small_state())
    for length in range(len(raw)):
        with pytest.raises(CorruptStateError):
            CODEC.decode(raw[:length], "truncated")


def test_every_bit_flip_is_corrupt() -> None:
    raw = encode(small_state())
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            with pytest.raises(CorruptStateError):
                CODEC.decode(bytes(flipped), f"flip {index}.{bit}")


def test_stored_version_and_summary_also_check_the_checksum() -> None:
    raw = bytearray(encode(small_state(), version=3))
    raw[-3] ^= 0x01
    for call in (CODEC.stored_version, CODEC.summarize):
        with pytest.raises(CorruptStateError, match="checksum"):
            call(bytes(raw), "flipped")
    with pytest.raises(CorruptStateError):
        CODEC.node_status(bytes(raw), "flipped", "a")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodeStatus", "a"), 1),
        (("flow_workbench", "version"), "1"),
        (("flow_workbench", "version"), True),
        (("flow_workbench", "format"), 99),
        (("flow_workbench", "attempts"), {"a": "one"}),
        (("flow_workbench", "started_at"), {"a": True}),
        (("flow_workbench", "errors"), {"a": 5}),
        (("flow_workbench", "dag"), {"a": "b"}),
        (("flow_workbench", "audit"), [{"nodes": []}]),
        (("flow_workbench", "created_at"), None),
        (("outputs",), []),
        (("id",), None),
    ],
    ids=repr,
)
def test_wrong_types_in_our_layout_are_corrupt(path: tuple[str, ...], value: Any) -> None:
    document = orjson.loads(encode(small_state()))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    raw = with_checksum(document)
    with pytest.raises(CorruptStateError):
        CODEC.decode(raw, "edited")
    if path[0] in ("nodeStatus", "id"):
        with pytest.raises(CorruptStateError):
            CODEC.summarize(raw, "edited")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptStateError):
        CODEC.decode(raw, "random")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "data", "nodeStatus", "outputs", "waits", "x"]), JSON_VALUES))
def test_random_json_documents_decode_or_are_corrupt(document: dict[str, Any]) -> None:
    try:
        raw = orjson.dumps(document)
    except TypeError:
        return  # integers beyond 64 bits have no JSON form orjson writes
    try:
        data = CODEC.decode(raw, "random")
    except CorruptStateError:
        return
    assert data.id == document["id"]


def test_random_mutations_are_corrupt() -> None:
    raw = encode(rich_state())
    rng = random.Random(1234)
    for _ in range(500):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            mutated[rng.randrange(len(mutated))] ^= rng.randrange(1, 256)
        with pytest.raises(CorruptStateError):
            CODEC.decode(bytes(mutated), "mutated")


# --- values that JSON cannot hold --------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value", "named"),
    [
        ("data", datetime.datetime(2026, 1, 1), "data key 'bad'"),
        ("data", {1, 2}, "data key 'bad'"),
        ("data", float("nan"), "data key 'bad'"),
        ("data", float("inf"), "data key 'bad'"),
        ("data", 2**64, "data key 'bad'"),
        ("data", {1: "int key"}, "data key 'bad'"),
        ("output", b"bytes", "output of node 'bad'"),
        ("output", object(), "output of node 'bad'"),
        ("output", float("-inf"), "output of node 'bad'"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_non_json_values_raise_serialization_error_naming_the_place(
    where: str, value: Any, named: str
) -> None:
    data = small_state()
    if where == "data":
        data.set("bad", value)
    else:
        data.set_node_status("bad", NodeStatus.COMPLETED)
        with pytest.raises(SerializationError) as refused:  # checked when set, not at save
            data.set_output("bad", value)
        assert refused.value.field == named and refused.value.workflow_id == "tiny"
        data._unsafe_columns().outputs["bad"] = value  # bypassing set_output: the codec still refuses it
    with pytest.raises(SerializationError) as caught:
        CODEC.encode(data, version=1, updated_at=0.0)
    assert caught.value.field == named and caught.value.workflow_id == "tiny"


def test_go_store_layout_with_indent_sorted_keys_and_timestamp() -> None:
    document = json.loads(GOLDEN)
    document["__timestamp"] = 1_767_225_600_123
    document["nodeStatus"]["odd_node"] = "from_a_newer_go"
    raw = json.dumps(document, indent=2, sort_keys=True).encode()
    data = CODEC.decode(raw, "go")
    assert data.updated_at == 1_767_225_600.123 and data.created_at == data.updated_at
    assert data.get_node_status("odd_node") is NodeStatus.UNKNOWN
    assert data.status_text("odd_node") == "from_a_newer_go"
    summary = CODEC.summarize(raw, "go")
    assert summary.status_counts["unknown"] == 1 and summary.updated_at == 1_767_225_600.123
    assert summary.format is StateFormat.GO_JSON
