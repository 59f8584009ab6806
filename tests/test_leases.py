"""Execution leases: one workflow never executes in two places at once; a crashed holder frees it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import FILE_IMPLEMENTATIONS

from flow_workbench import DAG, InMemoryStore, NodeStatus, Workflow, WorkflowData, WorkflowLockedError
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore

pytestmark = pytest.mark.timeout(120)


def one_node_dag() -> DAG:
    dag = DAG()
    dag.add_node("a", lambda data: "done")
    return dag


def _execute_slowly(kind: str, folder: str, started: multiprocessing.synchronize.Event) -> None:
    store = FlatBuffersStore(folder) if kind == "flatbuffers" else JSONFileStore(folder)

    def slow(data: WorkflowData) -> str:
        started.set()
        time.sleep(60)  # killed long before this ends
        return "never"

    dag = DAG()
    dag.add_node("a", slow)
    Workflow(dag, "wf", store).execute()


@pytest.mark.parametrize("kind", sorted(FILE_IMPLEMENTATIONS))
def test_second_process_is_refused_until_the_holder_dies(kind: str, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_execute_slowly, args=(kind, str(tmp_path), started))
    holder.start()
    try:
        assert started.wait(60)
        store = FILE_IMPLEMENTATIONS[kind](tmp_path)
        with pytest.raises(WorkflowLockedError, match="another process"):
            Workflow(one_node_dag(), "wf", store).execute()
        assert not store.exists("wf")  # the refused run wrote nothing
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)
        # The kernel released the dead holder's lock: the workflow can be resumed at once.
        Workflow(one_node_dag(), "wf", store).execute()
        assert store.load("wf").get_node_status("a") is NodeStatus.COMPLETED
    finally:
        if holder.is_alive():
            holder.kill()


@pytest.mark.parametrize("kind", sorted(FILE_IMPLEMENTATIONS))
def test_waiting_for_a_lease(kind: str, tmp_path: Path) -> None:
    store = FILE_IMPLEMENTATIONS[kind](tmp_path)
    other = FILE_IMPLEMENTATIONS[kind](tmp_path)
    with other.execution_lease("wf"):
        started = time.monotonic()
        with pytest.raises(WorkflowLockedError), store.execution_lease("wf", wait=0.3):
            pass
        assert time.monotonic() - started >= 0.3
    with store.execution_lease("wf", wait=0.3):
        pass
    assert not any(p.suffix in (".json", ".fb") for p in tmp_path.iterdir())
    assert store.list_workflows() == []  # lease files are not workflows


def test_in_memory_store_guards_its_own_process() -> None:
    store = InMemoryStore()
    with store.execution_lease("wf"):
        with pytest.raises(WorkflowLockedError):
            Workflow(one_node_dag(), "wf", store).execute()
        Workflow(one_node_dag(), "other", store).execute()  # other ids are independent
    Workflow(one_node_dag(), "wf", store).execute()
