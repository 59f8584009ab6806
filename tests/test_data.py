"""WorkflowData: key-values, statuses, outputs, history, copies, thread safety."""

from __future__ import annotations

import threading

import pytest

from flow_workbench import NodeStatus, WorkflowData
from flow_workbench.data import NodeRecord


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
