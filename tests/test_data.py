"""WorkflowData: key-values, statuses, outputs, history, copies, thread safety."""

from __future__ import annotations

import datetime
import pickle
import threading
from typing import Any

import orjson
import pytest

from flow_workbench import NodeStatus, WorkflowData
from flow_workbench.data import NodeRecord
from flow_workbench.errors import SerializationError


def test_key_values() -> None:
    data = WorkflowData("wf")
    data.set("a", 1)
    data.set("nested", {"x": [1, 2, {"y": None}]})
    assert data.get("a") == 1 and data.get("missing", "d") == "d"
    assert data.keys() == ["a", "nested"] and "a" in data
    assert data.delete("a") is True and data.delete("a") is False
    with pytest.raises(TypeError):
        data.set(1, "x")  # type: ignore[arg-type]


def test_statuses_accept_strings_and_reject_unknown() -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", "completed")
    assert data.get_node_status("n") is NodeStatus.COMPLETED
    assert data.get_node_status("other") is None
    with pytest.raises(ValueError, match="unknown node status"):
        data.set_node_status("n", "done")
    assert data.nodes_with_status(NodeStatus.COMPLETED) == ["n"]


def test_history_of_attempts() -> None:
    data = WorkflowData("wf")
    assert data.record_attempt_started("n", at=10.0) == 1
    assert data.get_node_status("n") is NodeStatus.RUNNING
    data.record_attempt_finished("n", NodeStatus.FAILED, at=12.5, error="boom", error_type="ValueError")
    assert data.record_attempt_started("n", at=20.0) == 2
    data.record_attempt_finished("n", NodeStatus.COMPLETED, at=21.0)
    history = data.node_history("n")
    assert (history.attempts, history.started_at, history.finished_at, history.error) == (2, 20.0, 21.0, None)
    assert history.duration == 1.0


def test_copy_is_deep_and_equality_is_type_strict() -> None:
    data = WorkflowData("wf")
    data.set("list", [1, 2])
    data.set_output("n", {"k": [1]})
    data.set_node_status("n", NodeStatus.COMPLETED)
    clone = data.copy()
    assert clone == data
    clone.get("list").append(3)
    clone.get_output("n")["k"].append(2)
    assert data.get("list") == [1, 2] and data.get_output("n") == {"k": [1]}
    assert clone != data
    a, b = WorkflowData("wf", created_at=1.0), WorkflowData("wf", created_at=1.0)
    a.set("x", 1)
    b.set("x", True)
    assert a != b and a.differences(b) == ["data"]


def test_node_records_round_trip_through_json() -> None:
    data = WorkflowData("wf")
    data.record_attempt_started("n", at=1.0)
    data.record_attempt_finished("n", NodeStatus.COMPLETED, at=2.0)
    data.set_output("n", {"rows": 3})
    record = data.node_record("n")
    assert NodeRecord.from_json(record.to_json()) == record
    other = WorkflowData("wf")
    other.apply_node_record(record)
    assert other.node_history("n") == data.node_history("n") and other.get_output("n") == {"rows": 3}


def test_concurrent_updates_do_not_lose_writes() -> None:
    data = WorkflowData("wf")

    def worker(index: int) -> None:
        for i in range(500):
            data.set_node_status(f"n{index}-{i}", NodeStatus.COMPLETED)
            with data.lock:
                data.set("count", data.get("count", 0) + 1)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert data.get("count") == 4000 and len(data.node_statuses()) == 4000


# --- outputs are encoded once, when set -----------------------------------------------------------


def test_outputs_are_snapshots_mutating_given_or_returned_values_changes_nothing() -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.COMPLETED)
    given: dict[str, Any] = {"rows": [1, 2], "path": "s3://x"}
    data.set_output("n", given)
    given["rows"].append(3)  # after set_output: not seen by the state
    first = data.get_output("n")
    first["rows"].append(4)
    data.outputs()["n"]["rows"].append(5)
    data.node_record("n").output["rows"].append(6)
    assert data.get_output("n") == {"rows": [1, 2], "path": "s3://x"}
    assert data.get_output("n") is not data.get_output("n")
    clone = data.copy()
    clone.set_output("n", "changed")
    assert data.get_output("n") == {"rows": [1, 2], "path": "s3://x"}


def test_outputs_read_back_as_stored() -> None:
    data = WorkflowData("wf")
    data.set_output("tuple", (1, "a"))
    data.set_output("none", None)
    assert data.get_output("tuple") == [1, "a"]  # what a save writes and a load returns
    assert data.has_output("none") and data.get_output("none") is None
    assert data.get_output("missing", "default") == "default"
    assert data.outputs() == {"tuple": [1, "a"], "none": None}


class _Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        b"bytes",
        _Opaque(),
        [_Opaque()],
        1 << 64,
        -(1 << 63) - 1,
        {1: "int key"},
        {"x": {2: 3}},
        datetime.datetime(2024, 1, 1),
        float("nan"),
        float("inf"),
        float("-inf"),
    ],
    ids=repr,
)
def test_set_output_refuses_values_without_json_form_naming_the_node(value: object) -> None:
    data = WorkflowData("wf")
    data.set_output("node-7", "before")
    with pytest.raises(SerializationError) as refused:
        data.set_output("node-7", value)
    assert isinstance(refused.value, TypeError)
    assert refused.value.field == "output of node 'node-7'" and "node-7" in str(refused.value)
    assert refused.value.workflow_id == "wf"
    assert data.get_output("node-7") == "before"  # unchanged


def test_int64_extremes_stay_exact_and_nested_nan_becomes_null() -> None:
    data = WorkflowData("wf")
    for value in (2**63 - 1, -(2**63), 2**53 + 1, -0.0, 1e300, "\u0000 ✓"):
        data.set_output("n", value)
        out = data.get_output("n")
        assert out == value and type(out) is type(value)
    data.set_output("nested", [float("nan"), {"x": float("inf")}])  # as orjson writes them
    assert data.get_output("nested") == [None, {"x": None}]


def test_node_record_carries_the_stored_encoding() -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.COMPLETED)
    data.set_output("n", {"rows": 3})
    record = data.node_record("n")
    assert record.encoded_output is not None and orjson.dumps(record.encoded_output) == b'{"rows":3}'
    assert orjson.loads(record.dumps(extra=1)) == {**record.to_json(), "extra": 1}
    hand_made = NodeRecord(node="m", status=NodeStatus.COMPLETED, has_output=True, output=[1])
    data.apply_node_record(hand_made)
    assert data.get_output("m") == [1]
    with pytest.raises(SerializationError, match="'bad'"):
        data.apply_node_record(
            NodeRecord(node="bad", status=NodeStatus.COMPLETED, has_output=True, output={1})
        )
    assert data.get_node_status("bad") is None  # refused before anything changed


def test_pickling_keeps_outputs() -> None:
    data = WorkflowData("wf")
    data.set_node_status("n", NodeStatus.COMPLETED)
    data.set_output("n", {"rows": [1, 2]})
    data._unsafe_columns().outputs["decoded"] = {"as": "a codec leaves it"}
    back = pickle.loads(pickle.dumps(data))
    assert back.differences(data) == [] and back.get_output("n") == {"rows": [1, 2]}
    assert back.get_output("decoded") == {"as": "a codec leaves it"}
    back.set_output("n", 1)
    assert data.get_output("n") == {"rows": [1, 2]}
