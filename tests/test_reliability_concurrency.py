"""Reliability: several processes and threads on one store.

Complements ``test_file_stores.py::test_processes_incrementing...`` (3 processes x 40, file stores)
and ``test_redis_store.py::test_concurrent_increments...``: 8 processes x 50 (8 x 200 heavy) on
every shared store, mixing snapshot saves and node records, counting conflicts; 8 processes on 8
workflows of one folder must never conflict; and the same with threads sharing one store object.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flow_workbench.data import WorkflowData
from flow_workbench.errors import VersionConflictError
from flow_workbench.status import NodeStatus
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.memory import InMemoryStore
from flow_workbench.stores.redis import RedisStore
from tests.helpers.reliability import HEAVY, heavy, open_file_store, record_figure
from tests.helpers.stores import redis_store, shared_redis_url

_CONTEXT = multiprocessing.get_context("fork")
WORKERS = 8
SHARED_KINDS = ["json", "flatbuffers", "redis"]


def _open(kind: str, where: str) -> WorkflowStore:
    """``where``: the folder of a file store, or "url|prefix" of a Redis store."""
    if kind == "redis":
        url, prefix = where.split("|")
        return RedisStore(url, prefix=prefix)
    return open_file_store(kind, where, lock_timeout=120)


def _location(kind: str, tmp_path: Path) -> tuple[str, WorkflowStore]:
    if kind == "redis":
        store = redis_store(tmp_path)
        return f"{shared_redis_url()}|{store.prefix}", store
    return str(tmp_path / "store"), _open(kind, str(tmp_path / "store"))


def _counter(workflow_id: str) -> WorkflowData:
    data = WorkflowData(workflow_id)
    data.set_node_status("counter", NodeStatus.COMPLETED)
    data.set_output("counter", 0)
    return data


def increment(store: WorkflowStore, workflow_id: str, loops: int, seed: int) -> int:
    """``loops`` load-increment-save rounds (save or save_node at random), retrying on
    ``VersionConflictError``; returns the number of conflicts met."""
    rng = random.Random(seed)
    conflicts = done = 0
    while done < loops:
        data = store.load(workflow_id)
        data.set_output("counter", data.get_output("counter") + 1)
        try:
            if rng.random() < 0.5:
                store.save_node(data, "counter")
            else:
                store.save(data)
        except VersionConflictError:
            conflicts += 1
            continue
        done += 1
    return conflicts


def _worker(kind: str, where: str, workflow_id: str, loops: int, seed: int, results: str) -> None:
    store = _open(kind, where)
    conflicts = increment(store, workflow_id, loops, seed)
    store.close()
    with open(results, "a") as out:
        out.write(f"{workflow_id} {conflicts}\n")


def _run_processes(kind: str, where: str, ids: list[str], loops: int, results: Path) -> dict[str, int]:
    processes = [
        _CONTEXT.Process(target=_worker, args=(kind, where, ids[i], loops, i, str(results)))
        for i in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    assert [p.exitcode for p in processes] == [0] * WORKERS
    conflicts: dict[str, int] = {}
    for line in results.read_text().splitlines():
        workflow_id, count = line.split()
        conflicts[workflow_id] = conflicts.get(workflow_id, 0) + int(count)
    return conflicts


def check_shared_counter(kind: str, tmp_path: Path, loops: int) -> None:
    where, store = _location(kind, tmp_path)
    store.save(_counter("count"))
    conflicts = _run_processes(kind, where, ["count"] * WORKERS, loops, tmp_path / "results")
    record_figure("version conflicts seen (and retried)", sum(conflicts.values()))
    record_figure("concurrent increments", WORKERS * loops)
    final = _open(kind, where).load("count")
    assert final.get_output("counter") == WORKERS * loops
    assert final.version == 1 + WORKERS * loops  # every acknowledged save is exactly one version


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_eight_processes_incrementing_one_workflow_lose_nothing(kind: str, tmp_path: Path) -> None:
    """8 processes x 200 load-increment-save rounds (snapshot saves and node records mixed) with
    retry on ``VersionConflictError`` end at exactly 1,600, version 1,601."""
    check_shared_counter(kind, tmp_path, 200)


@heavy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_heavy_eight_processes_times_a_thousand(kind: str, tmp_path: Path) -> None:
    """8 x 1,000 = 8,000 increments."""
    check_shared_counter(kind, tmp_path, 1000)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_processes_on_different_workflows_never_conflict(kind: str, tmp_path: Path) -> None:
    """8 processes, each incrementing its own workflow in the same folder (or Redis prefix):
    zero conflicts, every counter exact. Locks are per workflow, so they never wait long."""
    where, store = _location(kind, tmp_path)
    ids = [f"own-{i}" for i in range(WORKERS)]
    for workflow_id in ids:
        store.save(_counter(workflow_id))
    loops = 200 if HEAVY else 40
    started = time.monotonic()
    conflicts = _run_processes(kind, where, ids, loops, tmp_path / "results")
    assert conflicts == dict.fromkeys(ids, 0)
    reader = _open(kind, where)
    assert reader.list_workflows() == sorted(ids)
    for workflow_id in ids:
        assert reader.load(workflow_id).get_output("counter") == loops
    assert time.monotonic() - started < 200


def _threads(target: Callable[[int], int]) -> list[int]:
    results: list[int] = [0] * WORKERS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=200)
    assert not errors, errors
    return results


ALL_KINDS = ["memory", *SHARED_KINDS]


def _thread_store(kind: str, tmp_path: Path) -> WorkflowStore:
    return InMemoryStore() if kind == "memory" else _location(kind, tmp_path)[1]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("shared_object", [True, False], ids=["one-store-object", "store-per-thread"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_threads_incrementing_one_workflow_lose_nothing(
    kind: str, shared_object: bool, tmp_path: Path
) -> None:
    """8 threads x 50 rounds on one workflow, sharing one store object or each with its own
    (in-memory stores are per object, so they always share)."""
    store = _thread_store(kind, tmp_path)
    store.save(_counter("count"))
    where = ""
    if isinstance(store, RedisStore):
        where = f"{shared_redis_url()}|{store.prefix}"
    elif kind != "memory":
        where = str(tmp_path / "store")
    loops = 200 if HEAVY else 50

    def target(index: int) -> int:
        own = store if shared_object or kind == "memory" else _open(kind, where)
        return increment(own, "count", loops, index)

    _threads(target)
    final = store.load("count")
    assert final.get_output("counter") == WORKERS * loops
    assert final.version == 1 + WORKERS * loops


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_threads_on_different_workflows_never_conflict(kind: str, tmp_path: Path) -> None:
    store = _thread_store(kind, tmp_path)
    ids = [f"own-{i}" for i in range(WORKERS)]
    for workflow_id in ids:
        store.save(_counter(workflow_id))
    loops = 200 if HEAVY else 40
    conflicts = _threads(lambda index: increment(store, ids[index], loops, index))
    assert conflicts == [0] * WORKERS
    for workflow_id in ids:
        assert store.load(workflow_id).get_output("counter") == loops
