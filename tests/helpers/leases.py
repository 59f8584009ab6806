"""A workflow executing in another process, held inside its first node until the test lets it go."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flow_workbench import DAG, Workflow, WorkflowData
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.redis import RedisStore

#: Stores an executing process and an editing one can share: name -> how to open one.
KINDS = ("flatbuffers", "go-flatbuffers", "json", "redis")


def open_store(kind: str, location: str) -> WorkflowStore:
    """``location``: the store folder, or for Redis ``<url> <prefix>``."""
    if kind == "redis":
        url, prefix = location.split(" ")
        return RedisStore(url, prefix=prefix)
    if kind == "json":
        return JSONFileStore(location)
    return FlatBuffersStore(location, layout="go" if kind == "go-flatbuffers" else "native")


def two_node_dag(first: object = None) -> DAG:
    """``a -> b``; ``a`` runs ``first`` (a callable of no arguments) when given."""

    def a(data: WorkflowData) -> str:
        if callable(first):
            first()
        return "a-out"

    dag = DAG()
    dag.add_node("a", a)
    dag.add_node("b", lambda data: "b-out", depends_on="a")
    return dag


def prepare(kind: str, location: str) -> None:
    """Store ``wf`` with both nodes pending (run once, then reset), so edits have work to do."""
    store = open_store(kind, location)
    try:
        Workflow(two_node_dag(), "wf", store).execute()
        data = store.load("wf")
        for node in ("a", "b"):
            data.set_node_status(node, "pending")
            data.clear_output(node)
        store.save(data)
    finally:
        store.close()


def execute_held(
    kind: str,
    location: str,
    inside: multiprocessing.synchronize.Event,
    release: multiprocessing.synchronize.Event,
) -> None:
    """Child process: execute ``wf``; node ``a`` signals ``inside`` and waits for ``release``.

    An exception (a VersionConflictError at the level save, say) ends the child with exit code 1.
    """

    def hold() -> None:
        inside.set()
        if not release.wait(120):
            raise TimeoutError("the test never released the run")

    store = open_store(kind, location)
    try:
        Workflow(two_node_dag(hold), "wf", store).execute()  # Persistence.LEVEL: a save after a
    finally:
        store.close()


@dataclass
class HeldRun:
    process: multiprocessing.process.BaseProcess
    release: multiprocessing.synchronize.Event

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def finish(self) -> int | None:
        """Let the run go on and wait for its process; returns its exit code."""
        self.release.set()
        self.process.join(120)
        return self.process.exitcode


@contextmanager
def held_run(kind: str, location: str | Path) -> Iterator[HeldRun]:
    """Start ``execute_held`` in a spawned process and yield once it is inside node ``a``."""
    ctx = multiprocessing.get_context("spawn")
    inside, release = ctx.Event(), ctx.Event()
    process = ctx.Process(target=execute_held, args=(kind, str(location), inside, release))
    process.start()
    run = HeldRun(process, release)
    try:
        if not inside.wait(120):
            raise TimeoutError("the executing process never reached node a")
        yield run
    finally:
        release.set()
        process.join(60)
        if process.is_alive():
            process.kill()
            process.join(10)
