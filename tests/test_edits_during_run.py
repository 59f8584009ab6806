"""Manual edits while another process executes the workflow: refused (or waiting), never lost."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow_workbench import (
    DAG,
    ConcurrentEditError,
    InMemoryStore,
    JSONFileStore,
    NodeStatus,
    VersionConflictError,
    Workflow,
    WorkflowData,
    WorkflowLockedError,
    mark_nodes,
    reset_failed,
    reset_nodes,
)
from flow_workbench.stores.base import WorkflowStore
from tests.helpers.leases import KINDS, held_run, open_store, prepare, two_node_dag

pytestmark = pytest.mark.timeout(300)

S = NodeStatus


@pytest.fixture(params=KINDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(store kind, where its state lives) for a store two processes can share."""
    kind = str(request.param)
    if kind == "redis":
        return kind, request.getfixturevalue("redis_location")
    return kind, str(tmp_path)


def _statuses(store: WorkflowStore) -> dict[str, str]:
    return {node: status.value for node, status in store.load("wf").node_statuses().items()}


def test_an_edit_during_a_run_is_refused_naming_the_holder_and_the_run_loses_nothing(
    location: tuple[str, str],
) -> None:
    kind, where = location
    prepare(kind, where)
    store = open_store(kind, where)
    edits: list[Callable[[], list[str]]] = [
        lambda: mark_nodes(store, "wf", ["b"], "skipped"),  # before: saved, and the run then died
        lambda: reset_nodes(store, "wf", ["a", "b"]),
        lambda: reset_failed(store, "wf"),
    ]
    try:
        with held_run(kind, where) as run:
            before = store.load("wf")
            for edit in edits:
                with pytest.raises(WorkflowLockedError) as caught:
                    edit()
                message = str(caught.value)
                assert f"pid {run.pid}" in message and repr(socket.gethostname()) in message, message
                assert "being executed" in message and "since" in message and "lease_wait" in message
                holder = caught.value.holder
                assert holder is not None and holder.pid == run.pid and caught.value.workflow_id == "wf"
            after = store.load("wf")
            assert after == before and after.version == before.version  # the edits wrote nothing
            holder = store.lease_holder("wf")
            assert holder is not None
            assert (holder.host, holder.pid, holder.purpose) == (socket.gethostname(), run.pid, "execute")
            assert holder.since is not None and holder.since <= time.time()
            if kind == "redis":
                assert holder.expires_in is not None and holder.expires_in > 0
            assert run.finish() == 0  # before: VersionConflictError at the save after node a
        assert _statuses(store) == {"a": "completed", "b": "completed"}  # nothing the run did is lost
        assert store.load("wf").get_output("b") == "b-out"
        assert store.lease_holder("wf") is None
    finally:
        store.close()


def test_an_edit_with_lease_wait_waits_for_the_run_then_applies(location: tuple[str, str]) -> None:
    kind, where = location
    prepare(kind, where)
    store = open_store(kind, where)
    outcome: dict[str, object] = {}

    def edit() -> None:
        try:
            outcome["nodes"] = reset_nodes(store, "wf", ["a"], lease_wait=120)
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    try:
        with held_run(kind, where) as run:
            editor = threading.Thread(target=edit)
            editor.start()
            exit_code = run.finish()
            editor.join(120)
        assert outcome == {"nodes": ["a"]}
        assert exit_code == 0
        # The edit came after the run's last save: a pending again, b as the run left it. Had it
        # been saved during the run, the run would have failed (or, Go layout, overwritten it).
        assert _statuses(store) == {"a": "pending", "b": "completed"}
        assert store.load("wf").get_output("b") == "b-out"
    finally:
        store.close()


def test_an_execution_cannot_start_in_the_middle_of_an_edit(tmp_path: Path) -> None:
    """The edit holds the lease for its load-modify-save: a run starting meanwhile is refused."""
    editor = JSONFileStore(tmp_path)
    Workflow(two_node_dag(), "wf", editor).execute()
    refused: list[WorkflowLockedError] = []
    real_load = editor.load

    def load_then_try_to_execute(workflow_id: str) -> WorkflowData:
        data = real_load(workflow_id)
        try:  # another store object (as another process would) starts a run right now
            Workflow(two_node_dag(), "wf", JSONFileStore(tmp_path)).execute()
        except WorkflowLockedError as error:
            refused.append(error)
        return data

    editor.load = load_then_try_to_execute  # type: ignore[method-assign]
    assert reset_nodes(editor, "wf", ["b"]) == ["b"]
    assert len(refused) == 1
    assert "being edited (reset_nodes)" in str(refused[0]) and refused[0].holder is not None
    assert refused[0].holder.purpose == "reset_nodes"
    assert JSONFileStore(tmp_path).load("wf").get_node_status("b") is S.PENDING


def test_an_edit_in_the_same_process_as_the_run_is_refused_too() -> None:
    store = InMemoryStore()
    Workflow(two_node_dag(), "wf", store).execute()
    reset_nodes(store, "wf", ["a", "b"])
    refused: list[WorkflowLockedError] = []

    def edit_from_inside() -> None:
        try:
            mark_nodes(store, "wf", ["b"], "skipped")
        except WorkflowLockedError as error:
            refused.append(error)

    Workflow(two_node_dag(edit_from_inside), "wf", store).execute()
    assert len(refused) == 1 and "in this process" in str(refused[0])
    assert {n: s.value for n, s in store.load("wf").node_statuses().items()} == {
        "a": "completed",
        "b": "completed",
    }


class _NoLeaseStore(InMemoryStore):
    """A store whose lease guards nothing (as a custom store might): edits are not refused."""

    @contextlib.contextmanager
    def execution_lease(self, workflow_id: str, **options: Any) -> Iterator[None]:
        yield


@pytest.mark.parametrize("writer", ["edit through a store without leases", "plain save"])
def test_a_run_whose_state_another_writer_saved_stops_with_a_clear_error_and_keeps_its_data(
    writer: str, tmp_path: Path
) -> None:
    store: WorkflowStore = _NoLeaseStore() if writer.startswith("edit") else JSONFileStore(tmp_path)
    Workflow(two_node_dag(), "wf", store).execute()
    reset_nodes(store, "wf", ["a", "b"])

    def write_meanwhile() -> None:
        if writer.startswith("edit"):
            mark_nodes(store, "wf", ["b"], "skipped")
        else:
            store.save(store.load("wf"))

    workflow = Workflow(two_node_dag(write_meanwhile), "wf", store)
    with pytest.raises(VersionConflictError) as caught:
        workflow.execute()
    error = caught.value
    assert isinstance(error, ConcurrentEditError) and error.workflow_id == "wf"
    message = str(error)
    assert "changed by another writer while this run was executing it" in message
    assert "Workflow.data" in message and "lease" in message
    # The node the run finished is kept in memory, and nothing of the run overwrote the other write.
    assert workflow.data is not None and workflow.data.get_node_status("a") is S.COMPLETED
    assert workflow.data.get_output("a") == "a-out"
    assert store.load("wf").get_node_status("a") is S.PENDING


def test_dry_runs_read_without_the_lease(tmp_path: Path) -> None:
    """A preview changes nothing, so it is answered even while a run holds the lease."""
    store = JSONFileStore(tmp_path)
    dag = DAG()
    dag.add_node("a", lambda data: "a-out")
    Workflow(dag, "wf", store).execute()
    with JSONFileStore(tmp_path).execution_lease("wf"):
        assert reset_nodes(store, "wf", ["a"], dry_run=True) == ["a"]
        with pytest.raises(WorkflowLockedError):
            reset_nodes(store, "wf", ["a"])


def test_the_workflow_conveniences_pass_lease_wait_through(tmp_path: Path) -> None:
    """``wf.reset_failed(lease_wait=...)`` waits for a run held elsewhere like the function does."""
    dag = DAG("wait")
    dag.add_node("a", lambda data: 1)
    store = JSONFileStore(tmp_path)
    wf = Workflow(dag, "wf", store)
    wf.execute()
    release = threading.Event()

    def hold() -> None:
        with JSONFileStore(tmp_path).execution_lease("wf"):
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while store.lease_holder("wf") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(WorkflowLockedError):
            wf.mark_nodes(["a"], "skipped")
        threading.Timer(0.2, release.set).start()
        assert wf.mark_nodes(["a"], "skipped", lease_wait=10) == ["a"]
    finally:
        release.set()
        holder.join()
    assert store.load("wf").get_node_status("a") is NodeStatus.SKIPPED
