"""WorkflowData.read_columns: a read-only view of the live columns, read under the state's lock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flow_workbench import NodeStatus, WorkflowData
from flow_workbench.data import RunRecord

DICT_COLUMNS = (
    "data",
    "statuses",
    "outputs",
    "attempts",
    "started_at",
    "finished_at",
    "errors",
    "error_types",
    "dag",
    "attempt_log",
    "code_versions",
    "waits",
    "raw_statuses",
    "output_texts",
)


def full_state() -> WorkflowData:
    data = WorkflowData("wf")
    data.set("key", {"nested": [1]})
    data.set_node_status("a", NodeStatus.COMPLETED)
    data.set_output("a", {"rows": 3})
    data.record_attempt_started("b", at=1.0)
    data.record_attempt_finished("b", NodeStatus.FAILED, at=2.0, error="boom", error_type="ValueError")
    data.open_attempt("b", "run-1", 1, at=1.0)
    data.set_code_version("a", "v1")
    data.set_wait("b", 10**18)
    data.set_dag_structure({"a": [], "b": ["a"]})
    data.add_audit("reset", ["b"])
    data.put_run(RunRecord("run-1", started_at=1.0))
    return data


def test_the_view_shows_the_live_columns_without_copying_them() -> None:
    data = full_state()
    with data.read_columns() as columns:
        assert columns.workflow_id == "wf" and columns.checked
        assert columns.statuses == {"a": NodeStatus.COMPLETED, "b": NodeStatus.FAILED}
        assert columns.errors == {"b": "boom"} and columns.waits == {"b": 10**18}
        assert [entry.action for entry in columns.audit] == ["reset"]
        assert [run.run_id for run in columns.runs] == ["run-1"]
        assert columns.data["key"] is data._unsafe_columns().data["key"]  # shared, not copied
        statuses = columns.statuses
        data.set_node_status("c", NodeStatus.PENDING)  # the lock is re-entrant: the same thread may write
        assert statuses["c"] is NodeStatus.PENDING  # a view, not a snapshot


@pytest.mark.parametrize("name", DICT_COLUMNS)
def test_a_write_through_a_dict_column_raises(name: str) -> None:
    data = full_state()
    before = data.copy()
    with data.read_columns() as columns:
        column: Any = getattr(columns, name)
        with pytest.raises(TypeError):
            column["a"] = 1
        with pytest.raises(TypeError):
            del column["b"]
        assert not hasattr(column, "pop") and not hasattr(column, "clear") and not hasattr(column, "update")
    assert data.differences(before) == []


@pytest.mark.parametrize("name", ["audit", "runs"])
def test_a_write_through_a_list_column_raises(name: str) -> None:
    data = full_state()
    with data.read_columns() as columns:
        column: Any = getattr(columns, name)
        with pytest.raises(TypeError):
            column[0] = None
        assert not hasattr(column, "append") and not hasattr(column, "clear")
        column[:].clear()  # a slice is a new list
        assert len(column) == 1
    assert len(data.runs()) == 1 and len(data.audit) == 1


def test_the_view_itself_cannot_be_assigned() -> None:
    data = full_state()
    with data.read_columns() as columns:
        with pytest.raises(AttributeError):
            columns.checked = False  # type: ignore[misc]
        with pytest.raises(AttributeError):
            columns.statuses = {}  # type: ignore[misc]
    with data.read_columns() as columns:
        assert columns.checked


def test_the_view_holds_the_state_lock_until_its_block_ends() -> None:
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.PENDING)
    order: list[str] = []
    writer_started = threading.Event()

    def writer() -> None:
        writer_started.set()
        data.set_node_status("a", NodeStatus.COMPLETED)  # blocks on the lock the block holds
        order.append("written")

    def try_lock(got: list[bool]) -> None:
        acquired = data.lock.acquire(blocking=False)
        got.append(acquired)
        if acquired:
            data.lock.release()

    thread = threading.Thread(target=writer)
    with data.read_columns() as columns:
        thread.start()
        assert writer_started.wait(60)
        got: list[bool] = []
        probe = threading.Thread(target=try_lock, args=(got,))
        probe.start()
        probe.join(60)
        assert got == [False]  # another thread cannot take the lock while the block runs
        assert columns.statuses["a"] is NodeStatus.PENDING
        order.append("block ended")
    thread.join(60)
    assert not thread.is_alive()
    assert order == ["block ended", "written"]
    assert data.get_node_status("a") is NodeStatus.COMPLETED


def test_the_view_refuses_to_be_read_after_its_block() -> None:
    data = full_state()
    with data.read_columns() as columns:
        assert len(columns.statuses) == 2
    with pytest.raises(RuntimeError, match=r"after its `with data.read_columns\(\)` block"):
        _ = columns.statuses
    got: list[bool] = []
    probe = threading.Thread(target=lambda: got.append(data.lock.acquire(blocking=False)))
    probe.start()
    probe.join(60)
    assert got == [True]  # released on the way out


def test_the_lock_is_released_when_the_block_raises() -> None:
    data = full_state()
    with pytest.raises(KeyError), data.read_columns() as columns:
        _ = columns.statuses["missing"]
    got: list[bool] = []
    probe = threading.Thread(target=lambda: got.append(data.lock.acquire(blocking=False)))
    probe.start()
    probe.join(60)
    assert got == [True]


def test_take_id_from_file_name_renames_only_the_id() -> None:
    data = full_state()
    before = data.copy()
    data.take_id_from_file_name("from-the-file")
    assert data.id == "from-the-file"
    assert data.differences(before) == ["workflow_id"]
    with pytest.raises(TypeError, match="workflow id must be a str"):
        data.take_id_from_file_name(7)  # type: ignore[arg-type]
