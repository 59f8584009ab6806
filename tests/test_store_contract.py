"""The WorkflowStore contract, run against every implementation in ``conftest.IMPLEMENTATIONS``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import StoreFactory, rich_state
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from flow_workbench.data import WorkflowData
from flow_workbench.errors import (
    CorruptStateError,
    InvalidWorkflowIdError,
    VersionConflictError,
    WorkflowNotFoundError,
)
from flow_workbench.recovery import mark_nodes, reset_nodes
from flow_workbench.status import STATUSES_BY_CODE, NodeStatus
from flow_workbench.stores.base import TransactionalStore, WorkflowStore
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.redis import RedisStore

VALUES: list[Any] = [
    "plain",
    "",
    "ünïcödé ✓ 日本語 \u0000 nul and \n newline",
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63 - 1),
    2**53 + 1,
    0.0,
    -2.5,
    1e300,
    True,
    False,
    None,
    [],
    {},
    [1, "two", 3.0, None, True, [{"deep": {"deeper": [False]}}]],
    {"a": {"b": {"c": [1, 2, {"d": None}]}}, "": "empty key"},
    "x" * 200_000,
    list(range(5_000)),
]
INVALID_IDS = [".", "..", "../escape", "/x", "/etc/passwd", "a/b", "a\\b", "nul\x00id", "", "x" * 300]
INVALID_IDS += ["new\nline", "esc\x1b[31m", "\x85", "\udcff", "é" * 101]


def test_round_trip_of_every_field(store: WorkflowStore) -> None:
    original = rich_state()
    store.save(original)
    loaded = store.load(original.id)
    assert loaded.differences(original) == []
    assert loaded.node_history("failing").error == "boom: ünïcode"
    assert loaded.dag_structure == original.dag_structure
    assert [entry.action for entry in loaded.audit] == ["reset"]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:24])
def test_round_trip_of_each_value_as_data_and_output(store: WorkflowStore, value: Any) -> None:
    data = WorkflowData("values")
    data.set("key", value)
    data.set_node_status("node", NodeStatus.COMPLETED)
    data.set_output("node", value)
    store.save(data)
    loaded = store.load("values")
    assert loaded.differences(data) == []
    assert type(loaded.get("key")) is type(value)
    assert loaded.get("key") == value and loaded.get_output("node") == value


def test_loaded_and_saved_copies_are_independent_of_the_store(store: WorkflowStore) -> None:
    data = rich_state()
    store.save(data)
    data.get("nested")["list"].append("changed after save")
    data.set_node_status("node_0", NodeStatus.FAILED)
    first = store.load(data.id)
    first.get("nested")["list"].append("changed after load")
    first.get_output("node_1")["values"].append(99)
    second = store.load(data.id)
    assert second.get("nested")["list"] == [1, 2.5, "x", None, False, {"deep": []}]
    assert second.get_output("node_1")["values"] == [1, 0.5]
    assert second.get_node_status("node_0") is NodeStatus.COMPLETED


def test_save_stamps_version_and_update_time(store: WorkflowStore) -> None:
    data = WorkflowData("stamped", created_at=5.0)
    assert data.version == 0
    store.save(data)
    assert data.version == 1 and data.updated_at > 5.0
    store.save(data)
    loaded = store.load("stamped")
    assert data.version == loaded.version == 2
    assert loaded.updated_at == data.updated_at and loaded.created_at == 5.0


def test_list_and_delete(store: WorkflowStore) -> None:
    assert store.list_workflows() == []
    for workflow_id in ["b", "a", "c-3", "under_score.v2"]:
        store.save(WorkflowData(workflow_id))
    assert store.list_workflows() == ["a", "b", "c-3", "under_score.v2"]
    assert store.exists("a") and not store.exists("zzz")
    store.delete("b")
    assert store.list_workflows() == ["a", "c-3", "under_score.v2"]
    with pytest.raises(WorkflowNotFoundError):
        store.load("b")
    with pytest.raises(WorkflowNotFoundError):
        store.delete("b")


def test_not_found(store: WorkflowStore) -> None:
    with pytest.raises(WorkflowNotFoundError) as caught:
        store.load("missing")
    assert caught.value.workflow_id == "missing"
    with pytest.raises(WorkflowNotFoundError):
        store.delete("missing")


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.mark.parametrize("bad_id", INVALID_IDS, ids=repr)
def test_invalid_ids_are_refused_and_nothing_is_written(
    store_factory: StoreFactory, tmp_path: Path, bad_id: str
) -> None:
    store = store_factory(tmp_path / "store")
    store.save(WorkflowData("good"))
    before = _tree(tmp_path)
    with pytest.raises(InvalidWorkflowIdError):
        store.save(WorkflowData(bad_id))
    with pytest.raises(InvalidWorkflowIdError):
        store.load(bad_id)
    with pytest.raises(InvalidWorkflowIdError):
        store.delete(bad_id)
    with pytest.raises(InvalidWorkflowIdError):
        store.save_node(_with_node(WorkflowData(bad_id)), "n")
    assert _tree(tmp_path) == before
    assert store.list_workflows() == ["good"]
    store.close()


def _store_under_another_id(store: WorkflowStore, source_id: str, target_id: str) -> None:
    """Put ``source_id``'s stored state, unchanged, where ``target_id``'s belongs (a received file
    renamed, a key copied by hand): the store then holds a state whose inner id differs."""
    if isinstance(store, FileStore):
        shutil.copyfile(store.path_of(source_id), store.path_of(target_id))
    elif isinstance(store, RedisStore):
        for kind in ("meta", "state"):
            store.client.copy(store._key(kind, source_id), store._key(kind, target_id), replace=True)
    else:
        pytest.skip(f"{type(store).__name__} keys every write by the state's own id: it cannot hold one")


def test_a_state_stored_under_another_id_is_refused_and_never_overwrites_its_owner(
    store: WorkflowStore,
) -> None:
    owner = rich_state("owner")
    store.save(owner)
    _store_under_another_id(store, "owner", "visitor")
    with pytest.raises(CorruptStateError, match=r"'owner'.*'visitor'") as caught:
        store.load("visitor")
    assert "visitor" in caught.value.source  # names the file or key it read
    # Recovery loads, changes and saves: before the check this wrote over workflow "owner".
    with pytest.raises(CorruptStateError):
        reset_nodes(store, "visitor", ["failing"])
    with pytest.raises(CorruptStateError):
        mark_nodes(store, "visitor", ["waiting"], NodeStatus.COMPLETED)
    after = store.load("owner")
    assert after.version == owner.version and after.differences(owner) == []


def _with_node(data: WorkflowData) -> WorkflowData:
    data.set_node_status("n", NodeStatus.COMPLETED)
    return data


def test_stale_save_raises_and_changes_nothing(store: WorkflowStore) -> None:
    store.save(WorkflowData("shared"))
    first, second = store.load("shared"), store.load("shared")
    first.set("writer", "first")
    store.save(first)
    second.set("writer", "second")
    with pytest.raises(VersionConflictError) as caught:
        store.save(second)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert second.version == 1
    loaded = store.load("shared")
    assert loaded.get("writer") == "first" and loaded.version == 2


def test_save_node_then_load(store: WorkflowStore) -> None:
    data = rich_state("per-node")
    store.save(data)
    for index in range(5):
        node = f"extra_{index}"
        data.record_attempt_started(node, at=100.0 + index)
        store.save_node(data, node)
        data.record_attempt_finished(node, NodeStatus.COMPLETED, at=101.0 + index)
        data.set_output(node, {"index": index, "text": "ö" * index})
        store.save_node(data, node)
    data.set_output("node_0", None)
    data.clear_output("node_1")
    store.save_node(data, "node_0")
    store.save_node(data, "node_1")
    loaded = store.load("per-node")
    assert loaded.differences(data) == []
    assert loaded.version == data.version == 1 + 12
    assert loaded.node_history("extra_4").attempts == 1
    assert not loaded.has_output("node_1") and loaded.get_output("node_0", "absent") is None
    assert store.node_status("per-node", "extra_3") is NodeStatus.COMPLETED
    summary = store.summary("per-node")
    assert summary.node_count == len(data.node_statuses()) and summary.version == data.version


def test_save_node_of_a_new_workflow_saves_it_whole(store: WorkflowStore) -> None:
    data = rich_state("fresh")
    store.save_node(data, "node_0")
    assert store.load("fresh").differences(data) == []


def test_stale_save_node_raises(store: WorkflowStore) -> None:
    store.save(_with_node(WorkflowData("race")))
    first, second = store.load("race"), store.load("race")
    store.save_node(first, "n")
    second.set_node_status("n", NodeStatus.FAILED)
    with pytest.raises(VersionConflictError):
        store.save_node(second, "n")
    assert store.load("race").get_node_status("n") is NodeStatus.COMPLETED


def test_full_save_after_node_records_wins(store: WorkflowStore) -> None:
    data = rich_state("mixed")
    store.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    store.save_node(data, "node_0")
    data.set_node_status("node_0", NodeStatus.SKIPPED)
    data.set("after", 1)
    store.save(data)
    data.set_node_status("node_1", NodeStatus.RUNNING)
    store.save_node(data, "node_1")
    loaded = store.load("mixed")
    assert loaded.differences(data) == []
    assert loaded.get_node_status("node_0") is NodeStatus.SKIPPED


def test_summary_and_node_status_match_the_state(store: WorkflowStore) -> None:
    data = rich_state("summarised", nodes=4)
    store.save(data)
    summary = store.summary("summarised")
    assert summary.workflow_id == "summarised"
    assert summary.node_count == 7
    assert summary.status_counts == {"completed": 4, "failed": 1, "pending": 1, "skipped": 1}
    assert summary.failed_nodes == ("failing",)
    assert summary.version == 1
    assert store.node_status("summarised", "failing") is NodeStatus.FAILED
    assert store.node_status("summarised", "no-such-node") is None
    with pytest.raises(WorkflowNotFoundError):
        store.summary("missing")


def test_transaction_commits_all(store: WorkflowStore) -> None:
    assert isinstance(store, TransactionalStore)
    a, b = rich_state("txn-a"), rich_state("txn-b")
    store.save(b)
    b.set("changed", True)
    with store.transaction() as tx:
        tx.save(a)
        tx.save(b)
        assert store.list_workflows() == ["txn-b"]  # nothing visible before commit
    assert (a.version, b.version) == (1, 2)
    assert store.load("txn-a").differences(a) == []
    assert store.load("txn-b").differences(b) == []


def test_transaction_rolls_back_on_error(store: WorkflowStore) -> None:
    assert isinstance(store, TransactionalStore)
    store.save(WorkflowData("kept"))
    kept = store.load("kept")
    kept.set("changed", True)
    with pytest.raises(RuntimeError, match="inside"), store.transaction() as tx:
        tx.save(WorkflowData("never"))
        tx.save(kept)
        raise RuntimeError("inside the block")
    assert store.list_workflows() == ["kept"]
    assert store.load("kept").get("changed") is None


def test_transaction_conflict_aborts_all(store: WorkflowStore) -> None:
    assert isinstance(store, TransactionalStore)
    store.save(WorkflowData("contended"))
    stale = store.load("contended")
    store.save(store.load("contended"))
    fresh = WorkflowData("innocent")
    with pytest.raises(VersionConflictError), store.transaction() as tx:
        tx.save(fresh)
        tx.save(stale)
    assert store.list_workflows() == ["contended"]
    assert fresh.version == 0 and stale.version == 1


def test_transaction_snapshot_is_taken_at_save(store: WorkflowStore) -> None:
    assert isinstance(store, TransactionalStore)
    data = WorkflowData("snap")
    data.set("value", "staged")
    tx = store.begin_transaction()
    tx.save(data)
    data.set("value", "after staging")
    tx.commit()
    assert store.load("snap").get("value") == "staged"
    with pytest.raises(RuntimeError):
        tx.commit()


def test_metrics_count_operations(store: WorkflowStore) -> None:
    data = _with_node(WorkflowData("measured"))
    store.save(data)
    store.save_node(data, "n")
    store.load("measured")
    with pytest.raises(WorkflowNotFoundError):
        store.load("missing")
    store.list_workflows()
    store.delete("measured")
    metrics = store.metrics
    assert metrics.get("save").calls == 1
    assert metrics.get("record").calls == 1
    assert (metrics.get("load").calls, metrics.get("load").failures) == (2, 1)
    assert "WorkflowNotFoundError" in (metrics.get("load").last_error or "")
    assert metrics.get("list").calls == 1 and metrics.get("delete").calls == 1


def test_a_new_instance_sees_the_same_state(store_factory: StoreFactory, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    first = store_factory(folder)
    data = rich_state("persisted")
    first.save(data)
    data.set_node_status("node_0", NodeStatus.FAILED)
    first.save_node(data, "node_0")
    if os.path.isdir(folder):  # file stores: a second instance (or process) reads the files
        second = store_factory(folder)
        assert second.load("persisted").differences(data) == []
        stale = second.load("persisted")
        first.save(data)
        with pytest.raises(VersionConflictError):
            second.save(stale)
        second.close()
    first.close()


# --- model-based: random operation sequences against a plain dict ------------------------------


class StoreModel(RuleBasedStateMachine):
    """Saves, node records, loads, deletes, stale saves and reopening, checked against a dict."""

    factory: StoreFactory
    folder: Path

    def __init__(self) -> None:
        super().__init__()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.store = self.factory(self.folder)
        self.model: dict[str, WorkflowData] = {}  # what the store must return, by id
        self.stale: dict[str, WorkflowData] = {}  # copies loaded before the latest save

    ids = st.sampled_from(["alpha", "beta", "gamma"])
    nodes = st.sampled_from(["n1", "n2", "n3"])
    values = st.one_of(st.integers(-(2**63) + 1, 2**63 - 1), st.text(max_size=5), st.none(), st.booleans())

    @rule(workflow_id=ids, key=st.text(min_size=1, max_size=3), value=values)
    def save(self, workflow_id: str, key: str, value: Any) -> None:
        data = self.store.load(workflow_id) if workflow_id in self.model else WorkflowData(workflow_id)
        self.stale[workflow_id] = data.copy()
        data.set(key, value)
        self.store.save(data)
        self.model[workflow_id] = data.copy()

    @rule(workflow_id=ids, node=nodes, status=st.sampled_from(STATUSES_BY_CODE), output=values)
    def save_node(self, workflow_id: str, node: str, status: NodeStatus, output: Any) -> None:
        data = self.store.load(workflow_id) if workflow_id in self.model else WorkflowData(workflow_id)
        self.stale[workflow_id] = data.copy()
        data.set_node_status(node, status)
        data.set_output(node, output)
        self.store.save_node(data, node)
        self.model[workflow_id] = data.copy()

    @rule(workflow_id=ids)
    def stale_save_conflicts(self, workflow_id: str) -> None:
        stale = self.stale.get(workflow_id)
        current = self.model.get(workflow_id)
        if stale is None or current is None or stale.version >= current.version:
            return
        with pytest.raises(VersionConflictError):
            self.store.save(stale)

    @rule(workflow_id=ids)
    def delete(self, workflow_id: str) -> None:
        if workflow_id in self.model:
            self.store.delete(workflow_id)
            del self.model[workflow_id]
            self.stale.pop(workflow_id, None)
        else:
            with pytest.raises(WorkflowNotFoundError):
                self.store.delete(workflow_id)

    @rule()
    def reopen(self) -> None:
        if os.path.isdir(self.folder):  # file stores: a fresh instance must see the same state
            self.store.close()
            self.store = self.factory(self.folder)

    @invariant()
    def matches_the_model(self) -> None:
        assert self.store.list_workflows() == sorted(self.model)
        for workflow_id, expected in self.model.items():
            assert self.store.load(workflow_id).differences(expected) == []

    def teardown(self) -> None:
        self.store.close()


@pytest.mark.timeout(300)
def test_random_operation_sequences_match_a_dict_model(store_factory: StoreFactory, tmp_path: Path) -> None:
    machine = type("Model", (StoreModel,), {"factory": staticmethod(store_factory), "folder": tmp_path / "s"})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=40, stateful_step_count=25, deadline=None)
    )


# --- outputs are stored as encoded once -----------------------------------------------------------


def test_mutating_a_returned_output_never_changes_what_is_saved(store: WorkflowStore) -> None:
    data = rich_state("snap")
    store.save(data)
    data.get_output("node_1")["values"].append("mutated in memory")
    data.outputs()["node_1"]["values"].append("mutated in memory")
    store.save(data)
    data.get_output("node_1")["values"].append("mutated again")
    store.save_node(data, "node_1")
    loaded = store.load("snap")
    assert (
        loaded.get_output("node_1")
        == data.get_output("node_1")
        == {"rows": 1, "label": "out 1", "values": [1, 0.5]}
    )
    assert loaded.differences(data) == []


def test_round_trips_are_byte_identical(store: WorkflowStore) -> None:
    """Loading from any store and encoding again gives the very bytes of the original state."""
    from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec
    from flow_workbench.stores.json_codec import JSONCodec

    original = rich_state("bytes")
    original.set_output("node_2", {"n": [2**63 - 1, -(2**63), 1e-300, "✓"], "none": None})
    store.save(original)
    data = store.load("bytes")
    data.set_node_status("node_0", NodeStatus.SKIPPED)
    original.set_node_status("node_0", NodeStatus.SKIPPED)
    store.save_node(data, "node_0")  # journal records carry the stored output bytes
    loaded = store.load("bytes")
    for codec in (FlatBuffersCodec(), JSONCodec()):
        expected = bytes(codec.encode(original, version=7, updated_at=1.5))
        assert bytes(codec.encode(loaded, version=7, updated_at=1.5)) == expected
        assert bytes(codec.encode(codec.decode(expected, "t"), version=7, updated_at=1.5)) == expected
