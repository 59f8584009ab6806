"""Dask execution on a real LocalCluster with two worker processes."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator

import dask
import pytest
from distributed import Client, LocalCluster

from flow_workbench import (
    DAG,
    EventKind,
    InMemoryStore,
    NodeStatus,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
)
from flow_workbench.executors import DaskExecutor

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # allowed-failures 0: a task whose worker dies is reported at once (the engine retries it),
    # instead of being rerun silently by the scheduler.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        with Client(cluster) as connected:
            yield connected
        cluster.close()


def timed_pid(data: WorkflowData) -> list[float]:
    start = time.time()
    time.sleep(0.4)
    return [os.getpid(), start, time.time()]


def test_nodes_run_on_workers_and_results_come_back(client: Client) -> None:
    dag = DAG()
    dag.add_node("seed", lambda data: data.set("base", 20) or 1)
    dag.add_node("left", timed_pid, depends_on="seed")
    dag.add_node("right", timed_pid, depends_on="seed")
    dag.add_node(
        "sum", lambda data: data.get("base") + data.get_output("seed") * 2, depends_on=["left", "right"]
    )
    store = InMemoryStore()
    events: list[EventKind] = []
    Workflow(dag, "wf", store, executor=client).execute(on_event=lambda e: events.append(e.kind))
    state = store.load("wf")
    assert state.get_output("sum") == 22 and state.get("base") == 20  # key-values merged back
    left, right = state.get_output("left"), state.get_output("right")
    assert os.getpid() not in (left[0], right[0])
    assert left[1] < right[2] and right[1] < left[2], "the two nodes of one level did not overlap"
    assert events.count(EventKind.NODE_COMPLETED) == 4


def test_max_concurrency_holds_on_the_cluster(client: Client) -> None:
    dag = DAG()
    for name in ("a", "b", "c"):
        dag.add_node(name, timed_pid)
    store = InMemoryStore()
    Workflow(dag, "wf", store, executor=DaskExecutor(client), max_concurrency=1).execute()
    spans = sorted(tuple(store.load("wf").get_output(n)[1:]) for n in ("a", "b", "c"))
    assert all(first[1] <= second[0] for first, second in itertools.pairwise(spans))


def test_a_worker_dying_mid_node_is_a_failed_attempt_that_is_retried(client: Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "died-once"

    def die_once(data: WorkflowData) -> str:
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)  # the worker process dies in the middle of the node
        return f"survived in {os.getpid()}"

    dag = DAG()
    dag.add_node("fragile", die_once, retries=2, retry_delay=0.5)
    store = InMemoryStore()
    retries: list[str | None] = []
    Workflow(dag, "wf", store, executor=client).execute(
        on_event=lambda e: retries.append(e.error) if e.kind is EventKind.NODE_RETRYING else None
    )
    state = store.load("wf")
    assert state.get_output("fragile").startswith("survived")
    assert state.node_history("fragile").attempts == 2
    assert retries and "died" in (retries[0] or "")
    client.wait_for_workers(2, timeout=60)


def test_unpicklable_action_and_output_fail_with_the_node_name(client: Client) -> None:
    lock = threading.Lock()
    dag = DAG()
    dag.add_node("holds_a_lock", lambda data: lock.locked())
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf", executor=client).execute()
    assert "'holds_a_lock'" in info.value.failures["holds_a_lock"].message

    dag = DAG()
    dag.add_node("returns_a_lock", lambda data: threading.Lock())
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf2", executor=client).execute()
    assert info.value.failures["returns_a_lock"].attempts == 1


def test_timeout_cancels_the_task(client: Client) -> None:
    dag = DAG()
    dag.add_node("slow", lambda data: time.sleep(30), timeout=0.5)
    store = InMemoryStore()
    started = time.monotonic()
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store, executor=client).execute()
    assert time.monotonic() - started < 20
    assert store.load("wf").get_node_status("slow") is NodeStatus.FAILED
