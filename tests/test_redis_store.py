"""RedisStore specifics on a real redis-server: unavailability, O(1) records, SCAN, leases, races."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from flow_workbench import (
    DAG,
    CorruptStateError,
    NodeStatus,
    Persistence,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
    WorkflowLockedError,
)
from flow_workbench.stores.redis import RedisStore
from tests.helpers.servers import RedisServer, running_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def store(server: RedisServer, request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    prefix = f"test:{request.node.name}:"
    with RedisStore(server.url, prefix=prefix) as opened:
        yield opened
        for key in opened.client.scan_iter(prefix + "*"):
            opened.client.delete(key)


def test_save_node_is_one_hash_field_not_a_rewrite(store: RedisStore) -> None:
    data = WorkflowData("big")
    for i in range(2000):
        data.set_node_status(f"n{i}", NodeStatus.PENDING)
    store.save(data)
    snapshot = store.client.get(store._key("state", "big"))
    data.record_attempt_started("n7")
    data.record_attempt_finished("n7", NodeStatus.COMPLETED)
    data.set_output("n7", {"rows": 3})
    store.save_node(data, "n7")
    assert store.client.get(store._key("state", "big")) == snapshot  # the snapshot was not rewritten
    assert store.client.hkeys(store._key("nodes", "big")) == [b"n7"]
    loaded = store.load("big")
    assert loaded.get_node_status("n7") is NodeStatus.COMPLETED and loaded.get_output("n7") == {"rows": 3}
    assert loaded.version == data.version == 2
    store.save(loaded)  # a full save folds the records into the snapshot
    assert not store.client.exists(store._key("nodes", "big"))
    assert store.load("big") == loaded


def test_list_uses_scan_and_ignores_foreign_keys(store: RedisStore) -> None:
    for i in range(30):
        store.save(WorkflowData(f"wf{i:02d}"))
    store.client.set(store.prefix + "meta:../evil", "x")
    store.client.set("unrelated", "x")
    assert store.list_workflows() == [f"wf{i:02d}" for i in range(30)]
    assert store.metrics.get("list").calls == 1


def test_stale_node_record_conflicts(store: RedisStore) -> None:
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.PENDING)
    store.save(data)
    other = store.load("wf")
    other.set_node_status("a", NodeStatus.SKIPPED)
    store.save(other)
    data.set_node_status("a", NodeStatus.COMPLETED)
    with pytest.raises(VersionConflictError):
        store.save_node(data, "a")
    assert store.load("wf").get_node_status("a") is NodeStatus.SKIPPED


def test_corrupt_value_raises_corrupt_state_error(store: RedisStore) -> None:
    store.save(WorkflowData("wf"))
    key = store._key("state", "wf")
    raw = bytearray(cast(bytes, store.client.get(key)))  # the client answers bytes
    raw[len(raw) // 2] ^= 0x40
    store.client.set(key, bytes(raw))
    with pytest.raises(CorruptStateError, match="wf"):
        store.load("wf")


def test_unreachable_server_gives_store_unavailable_with_address() -> None:
    with _closed_port_store() as dead:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            dead.load("wf")
        assert f":{dead.client.connection_pool.connection_kwargs['port']}" in str(info.value)
        assert time.monotonic() - started < 10  # bounded retry, not a hang


class _closed_port_store:
    def __enter__(self) -> RedisStore:
        from tests.helpers.servers import free_port

        self.store = RedisStore(
            f"redis://127.0.0.1:{free_port()}/0", retries=2, retry_backoff=0.01, socket_timeout=0.5
        )
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def test_server_stopped_mid_run_keeps_state_in_memory_and_reports(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        store = RedisStore(server.url, retries=1, retry_backoff=0.01, socket_timeout=0.5)
        dag = DAG()
        dag.add_node("first", lambda data: "one")
        dag.add_node("kill_server", lambda data: server.stop(), depends_on="first")
        dag.add_node("third", lambda data: "three", depends_on="kill_server")
        wf = Workflow(dag, "wf", store, persistence=Persistence.NODE, lease_ttl=5)
        with pytest.raises(StoreUnavailableError) as info:
            wf.execute()
        assert str(server.port) in str(info.value)
        assert wf.data is not None
        assert wf.data.get_node_status("first") is NodeStatus.COMPLETED
        assert wf.data.get_node_status("kill_server") is NodeStatus.COMPLETED
        assert wf.data.get_node_status("third") is NodeStatus.PENDING  # the run stopped


def test_execution_error_wins_over_dead_server(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        store = RedisStore(server.url, retries=1, retry_backoff=0.01, socket_timeout=0.5)

        def die(data: WorkflowData) -> None:
            server.stop()
            raise RuntimeError("node failed too")

        dag = DAG()
        dag.add_node("die", die)
        with pytest.raises(WorkflowExecutionError) as info:
            Workflow(dag, "wf", store, lease_ttl=5).execute()
        assert isinstance(info.value.save_error, StoreUnavailableError)


def _hold_lease(url: str, prefix: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    store = RedisStore(url, prefix=prefix)
    with store.execution_lease("wf", ttl=0.6):
        ready.set()
        time.sleep(seconds)


def _crash_holding_lease(url: str, prefix: str, ready: multiprocessing.synchronize.Event) -> None:
    import os

    store = RedisStore(url, prefix=prefix)
    with store.execution_lease("wf", ttl=0.6):
        ready.set()
        os._exit(1)  # dies without releasing: the lease must run out


def test_leases_between_processes_renew_and_expire(store: RedisStore, server: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lease, args=(server.url, store.prefix, ready, 1.5))
    holder.start()
    assert ready.wait(20)
    dag = DAG()
    dag.add_node("a")
    with pytest.raises(
        WorkflowLockedError, match=f"being executed by pid {holder.pid} on host .* expires in"
    ):
        Workflow(dag, "wf", store).execute()
    time.sleep(0.8)  # past the ttl: only renewal keeps it
    with pytest.raises(WorkflowLockedError):
        Workflow(dag, "wf", store).execute()
    holder.join(20)
    Workflow(dag, "wf", store).execute()  # released on exit

    ready = ctx.Event()
    crasher = ctx.Process(target=_crash_holding_lease, args=(server.url, store.prefix, ready))
    crasher.start()
    assert ready.wait(20)
    crasher.join(20)
    with pytest.raises(WorkflowLockedError):
        Workflow(dag, "wf", store).execute()
    Workflow(dag, "wf", store, lease_wait=5).execute()  # waits for the crashed holder's lease to lapse
    assert store.load("wf").get_node_status("a") is NodeStatus.COMPLETED


def _increment(url: str, prefix: str, loops: int) -> None:
    store = RedisStore(url, prefix=prefix)
    for _ in range(loops):
        while True:
            data = store.load("counter")
            data.set("n", data.get("n", 0) + 1)
            try:
                store.save(data)
                break
            except VersionConflictError:
                continue


def test_concurrent_increments_never_lose_an_update(store: RedisStore, server: RedisServer) -> None:
    store.save(WorkflowData("counter"))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_increment, args=(server.url, store.prefix, 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert store.load("counter").get("n") == 200


def test_auth_passes_through_the_url(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", "s3cret")
        with pytest.raises(StoreError, match=r"(?i)auth"):
            RedisStore(server.url).list_workflows()
        authed = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        authed.save(WorkflowData("wf"))
        assert authed.list_workflows() == ["wf"]


BAD_VERSIONS = ["abc", "", "-1", "1.0", "1e3", " 7", "٣", "9" * 30, "9223372036854775808"]


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=repr)
def test_a_bad_version_in_the_meta_hash_is_a_corrupt_state_naming_key_and_value(
    store: RedisStore, bad: str
) -> None:
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.PENDING)
    store.save(data)
    meta = store._key("meta", "wf")
    store.client.hset(meta, "version", bad)
    data.set_node_status("a", NodeStatus.COMPLETED)
    shown = repr(bad.encode())
    writes: dict[str, Callable[[], object]] = {
        "save": lambda: store.save(data),
        "save_node": lambda: store.save_node(data, "a"),
        "load": lambda: store.load("wf"),
        "summary": lambda: store.summary("wf"),
        "node_status": lambda: store.node_status("wf", "a"),
    }
    for operation, call in writes.items():
        with pytest.raises(CorruptStateError) as caught:  # a StoreError, never a bare ValueError
            call()
        assert meta in str(caught.value) and shown in str(caught.value), operation
    with pytest.raises(CorruptStateError), store.transaction() as tx:
        tx.save(data)
    assert store.client.hget(meta, "version") == bad.encode()  # nothing was written over it


@pytest.mark.parametrize("bad", ["abc", "nan", "inf"])
def test_a_bad_update_time_in_the_meta_hash_is_a_corrupt_state_naming_key_and_value(
    store: RedisStore, bad: str
) -> None:
    store.save(WorkflowData("wf"))
    meta = store._key("meta", "wf")
    store.client.hset(meta, "updated_at", bad)
    with pytest.raises(CorruptStateError, match="updated_at") as caught:
        store.load("wf")
    assert meta in str(caught.value) and repr(bad.encode()) in str(caught.value)
