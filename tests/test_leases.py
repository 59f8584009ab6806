"""Execution leases: one workflow never executes in two places at once; a crashed holder frees it."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow_workbench import (
    DAG,
    InMemoryStore,
    LeaseHolder,
    NodeStatus,
    Persistence,
    Workflow,
    WorkflowData,
    WorkflowLockedError,
)
from flow_workbench.errors import LeaseLostError
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore
from flow_workbench.stores.redis import RedisStore
from tests.helpers.servers import RedisServer, running_redis
from tests.helpers.stores import FILE_IMPLEMENTATIONS

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
        with pytest.raises(WorkflowLockedError, match=f"being executed by pid {holder.pid} on host"):
            Workflow(one_node_dag(), "wf", store).execute()
        assert not store.exists("wf")  # the refused run wrote nothing
        named = store.lease_holder("wf")
        assert named is not None and (named.pid, named.purpose) == (holder.pid, "execute")
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)
        # The killed holder's record is still in the lease file, but nobody holds the lock.
        assert str(holder.pid) in (tmp_path / "wf.lease").read_text()
        assert store.lease_holder("wf") is None
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


@pytest.mark.parametrize("kind", sorted(FILE_IMPLEMENTATIONS))
def test_a_file_store_lease_never_lapses_while_its_holder_lives(kind: str, tmp_path: Path) -> None:
    holder, other = FILE_IMPLEMENTATIONS[kind](tmp_path), FILE_IMPLEMENTATIONS[kind](tmp_path)
    with holder.execution_lease("wf", ttl=0.05):
        time.sleep(0.2)  # four ttls without any renewal: an flock has no expiry
        with pytest.raises(WorkflowLockedError), other.execution_lease("wf"):
            pass


# --- Redis: fencing the writes of a holder whose lease lapsed -------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def executors(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two executors' stores on one prefix; the first never renews its lease (it lapses after ttl)."""
    prefix = f"leases:{request.node.name}:"
    first = RedisStore(redis_server.url, prefix=prefix, lease_renew_interval=3600)
    second = RedisStore(redis_server.url, prefix=prefix)
    yield first, second
    first.close()
    second.close()


def _wait_until_lapsed(store: RedisStore, workflow_id: str) -> None:
    while store.client.exists(store._key("lease", workflow_id)):
        time.sleep(0.01)


def test_a_lapsed_redis_lease_holder_can_write_nothing_over_the_new_holder(
    executors: tuple[RedisStore, RedisStore],
) -> None:
    first, second = executors
    initial = WorkflowData("wf")
    initial.set_node_status("a", NodeStatus.PENDING)
    first.save(initial)
    lapsed = first.execution_lease("wf", ttl=0.1)
    lapsed.__enter__()
    mine = first.load("wf")
    first.save(mine)  # fenced, and still the holder: accepted
    _wait_until_lapsed(first, "wf")
    with second.execution_lease("wf", wait=10):
        theirs = second.load("wf")  # the new holder resumes from here
        mine.set_node_status("a", NodeStatus.COMPLETED)
        mine.set_output("a", "from the lapsed executor")
        writes: list[Callable[[], None]] = [lambda: first.save_node(mine, "a"), lambda: first.save(mine)]
        for write in writes:
            with pytest.raises(LeaseLostError) as caught:
                write()
            assert caught.value.lease.startswith(first._key("lease", "wf"))
            assert caught.value.holder is not None and caught.value.holder.startswith(f"{os.uname()[1]}:")
            assert caught.value.workflow_id == "wf" and first._key("lease", "wf") in str(caught.value)
        with pytest.raises(LeaseLostError), first.transaction() as tx:
            tx.save(mine)
            tx.save(WorkflowData("bystander"))  # a commit is refused as a whole
        assert not first.exists("bystander")
        lapsed.__exit__(None, None, None)  # leaving must not release the new holder's lease
        assert first.client.get(first._key("lease", "wf")) == second._held_leases["wf"].encode()
        theirs.set_node_status("a", NodeStatus.COMPLETED)
        theirs.set_output("a", "from the new holder")
        second.save_node(theirs, "a")  # before fencing: VersionConflictError, the lapsed write had won
    stored = second.load("wf")
    assert stored.get_output("a") == "from the new holder" and stored.version == theirs.version


def test_a_lapsed_lease_nobody_took_still_refuses_its_writes(
    executors: tuple[RedisStore, RedisStore],
) -> None:
    first, _ = executors
    with first.execution_lease("wf", ttl=0.1):
        data = WorkflowData("wf")
        first.save(data)
        _wait_until_lapsed(first, "wf")
        with pytest.raises(LeaseLostError, match="nobody holds it now") as caught:
            first.save(data)
        assert caught.value.holder is None
    first.save(data)  # outside a lease, writes are checked by version only, as before
    assert first.load("wf").version == 2


def test_a_run_whose_lease_lapsed_stops_and_the_new_holders_run_is_kept(
    executors: tuple[RedisStore, RedisStore],
) -> None:
    first, second = executors
    runs: list[str] = []
    second_running, second_may_finish = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def run_second() -> None:
        def a(data: WorkflowData) -> str:
            runs.append("a by second")
            second_running.set()
            assert second_may_finish.wait(30)
            return "from second"

        dag = DAG()
        dag.add_node("a", a)
        dag.add_node("b", lambda data: runs.append("b by second"), depends_on="a")
        try:
            outcome["result"] = Workflow(
                dag, "wf", second, persistence=Persistence.NODE, lease_wait=10
            ).execute()
        except Exception as error:  # reported to the test below
            outcome["error"] = error

    taker = threading.Thread(target=run_second)

    def stalls_past_its_lease(data: WorkflowData) -> str:
        runs.append("a by first")
        _wait_until_lapsed(first, "wf")  # as if a C call had held the GIL for longer than the ttl
        taker.start()
        assert second_running.wait(30)  # the new holder loaded the state and runs a too
        return "from first"

    dag = DAG()
    dag.add_node("a", stalls_past_its_lease)
    dag.add_node("b", lambda data: runs.append("b by first"), depends_on="a")
    stalled = Workflow(dag, "wf", first, persistence=Persistence.NODE, lease_ttl=0.1)
    with pytest.raises(LeaseLostError):
        stalled.execute()
    assert stalled.data is not None and stalled.data.get_output("a") == "from first"  # kept in memory
    second_may_finish.set()
    taker.join(30)
    assert "error" not in outcome, outcome
    stored = first.load("wf")
    assert stored.get_output("a") == "from second"
    assert stored.get_node_status("b") is NodeStatus.COMPLETED
    # a ran in both (the lease cannot stop a running action); b, after the lapse, only in the new holder
    assert sorted(runs) == ["a by first", "a by second", "b by second"]


def _take_over(url: str, prefix: str, taken: threading.Event, may_finish: threading.Event) -> None:
    def a(data: WorkflowData) -> str:
        taken.set()
        may_finish.wait(60)
        return "from executor 2"

    dag = DAG()
    dag.add_node("a", a)
    try:
        Workflow(
            dag, "wf", RedisStore(url, prefix=prefix), persistence=Persistence.NODE, lease_wait=60
        ).execute()
    except Exception as error:
        print(f"executor 2 failed: {error!r}", flush=True)
        os._exit(1)


def test_a_node_holding_the_gil_past_the_ttl_loses_the_lease_and_its_writes(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    """Executor 1's node makes C calls that hold the GIL for longer than the ttl, so its renewer
    thread cannot run; executor 2, another process, takes the lapsed lease and runs the node too."""
    prefix = f"leases:{request.node.name}:"
    store = RedisStore(redis_server.url, prefix=prefix)  # renews every ttl/3, as in production
    ctx = multiprocessing.get_context("spawn")
    taken, may_finish = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_take_over, args=(redis_server.url, prefix, taken, may_finish))
    ttl = 0.2

    def holds_the_gil(data: WorkflowData) -> str:
        other.start()  # only now: executor 1 holds the lease
        exponent = 100_000
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while not taken.is_set():
            started = time.monotonic()
            pow(3, exponent)  # one C call: the GIL is not released until it returns
            if time.monotonic() - started < 3 * ttl:
                exponent *= 2  # longer calls until each outlasts the ttl several times
            assert time.monotonic() < deadline, "executor 2 never got the lease"
        return "from executor 1"

    dag = DAG()
    dag.add_node("a", holds_the_gil)
    try:
        with pytest.raises(LeaseLostError):
            Workflow(dag, "wf", store, persistence=Persistence.NODE, lease_ttl=ttl).execute()
        may_finish.set()
        other.join(60)
        assert other.exitcode == 0  # before fencing: executor 2's save hit a VersionConflictError
        assert store.load("wf").get_output("a") == "from executor 2"
    finally:
        may_finish.set()
        if other.is_alive():
            other.kill()
        store.close()


# --- who holds the lease --------------------------------------------------------------------------


def _second_handle(store: WorkflowStore) -> WorkflowStore:
    """Another store object on the same state (the same object for the in-process store)."""
    if isinstance(store, RedisStore):
        return RedisStore(store.client, prefix=store.prefix)
    if isinstance(store, JSONFileStore | FlatBuffersStore):
        return type(store)(store.base_dir)
    return store


def test_lease_holder_names_the_holder_of_every_store(store: WorkflowStore) -> None:
    other = _second_handle(store)
    assert store.lease_holder("wf") is None  # never leased (no lease file is created by asking)
    before = time.time()
    with other.execution_lease("wf", purpose="mark_nodes"):
        holder = store.lease_holder("wf")
        assert holder is not None
        assert (holder.host, holder.pid, holder.purpose) == (socket.gethostname(), os.getpid(), "mark_nodes")
        assert holder.since is not None and before - 1 <= holder.since <= time.time()
        assert (holder.expires_in is not None) == isinstance(store, RedisStore)
        with pytest.raises(WorkflowLockedError) as caught, store.execution_lease("wf"):
            pass
        assert caught.value.holder is not None and caught.value.holder.pid == os.getpid()
        assert f"being edited (mark_nodes) by pid {os.getpid()}" in str(caught.value)
        assert store.lease_holder("other") is None
    assert store.lease_holder("wf") is None


def test_a_store_without_leases_names_no_holder() -> None:
    class NoLeases(InMemoryStore):
        @contextlib.contextmanager
        def execution_lease(self, workflow_id: str, **options: Any) -> Iterator[None]:
            yield

    store = NoLeases()
    with store.execution_lease("wf"):
        assert store.lease_holder("wf") is None


def _probe_lease_holder(
    kind: str,
    folder: str,
    probing: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> None:
    store = FILE_IMPLEMENTATIONS[kind](Path(folder))
    while not stop.is_set():
        store.lease_holder("wf")
        probing.set()


@pytest.mark.parametrize("kind", sorted(FILE_IMPLEMENTATIONS))
def test_asking_who_holds_a_lease_never_makes_taking_it_fail(kind: str, tmp_path: Path) -> None:
    """lease_holder holds a shared lock on the lease file for microseconds; a lease taken in that
    moment must not be refused (without the retry, most runs of this test saw refusals)."""
    store = FILE_IMPLEMENTATIONS[kind](tmp_path)
    with store.execution_lease("wf"):
        pass  # the lease file exists from here on: the prober locks it
    ctx = multiprocessing.get_context("spawn")
    probing, stop = ctx.Event(), ctx.Event()
    prober = ctx.Process(target=_probe_lease_holder, args=(kind, str(tmp_path), probing, stop))
    prober.start()
    try:
        assert probing.wait(60)
        for _ in range(3000):
            with store.execution_lease("wf"):  # wait=None: refused at once if really held
                pass
    finally:
        stop.set()
        prober.join(30)
    assert prober.exitcode == 0


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'{"pid": "x", "host": 5}', b"{" * 10_000])
def test_a_held_lease_file_without_a_valid_record_names_an_unknown_holder(
    content: bytes, tmp_path: Path
) -> None:
    store = JSONFileStore(tmp_path)
    lease_file = tmp_path / "wf.lease"
    lease_file.write_bytes(content)
    fd = os.open(lease_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held by someone who wrote no record of ours
        holder = store.lease_holder("wf")
        assert holder is not None and (holder.host, holder.pid, holder.since) == (None, None, None)
        refused = pytest.raises(WorkflowLockedError, match="by a holder that did not record itself")
        with refused, store.execution_lease("wf"):
            pass
    finally:
        os.close(fd)
    with store.execution_lease("wf"):  # the lease takes over the file, record and all
        assert store.lease_holder("wf") == LeaseHolder.from_record(lease_file.read_bytes())
    assert lease_file.read_bytes() == b""  # emptied on release


def test_redis_lease_tokens_of_older_versions_still_name_host_and_pid(
    executors: tuple[RedisStore, RedisStore],
) -> None:
    first, _ = executors
    first.client.set(first._key("lease", "wf"), b"old-host:4242:0123456789abcdef", px=60_000)
    holder = first.lease_holder("wf")
    assert holder is not None and (holder.host, holder.pid, holder.since) == ("old-host", 4242, None)
    refused = pytest.raises(
        WorkflowLockedError, match="being executed by pid 4242 on host 'old-host'; its lease"
    )
    with refused, first.execution_lease("wf"):
        pass
