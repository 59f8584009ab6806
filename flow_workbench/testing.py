"""The WorkflowStore contract as a pytest suite: the checks every built-in store passes, for yours too.

Subclass ``StoreContract`` in a test file and provide a ``store_factory`` fixture (a function that
takes an empty folder, which a store without files may ignore, and returns a fresh store)::

    import pytest
    from flow_workbench.testing import StoreContract

    class TestSQLiteStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return lambda folder: SQLiteStore(folder / "workflows.sqlite")

or, outside a test file (a notebook), ``run_store_contract(factory)`` runs the same suite through
pytest and returns its exit code. The project's own ``tests/test_store_contract.py`` is such a
subclass, run against every built-in store: this module IS the project's contract test.

Checks for capabilities a store may lack skip themselves: transactions (a store that is not a
``TransactionalStore``), metrics (a store that never counts), and the stored-id check (override
``store_under_another_id`` to let the contract put a state where another id's belongs). A store
that by design cannot keep something lists those checks in ``not_applicable`` with the reason.
Needs pytest and hypothesis (``pip install flow_workbench[testing]``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from .data import RunRecord, WorkflowData
from .errors import CorruptStateError, InvalidWorkflowIdError, VersionConflictError, WorkflowNotFoundError
from .recovery import mark_nodes, reset_nodes
from .status import STATUSES_BY_CODE, NodeStatus
from .stores.base import TransactionalStore, WorkflowStore

__all__ = [
    "INVALID_IDS",
    "RUN_END_CHANGES",
    "StoreContract",
    "StoreFactory",
    "VALUES",
    "node_by_node_run",
    "rich_state",
    "run_store_contract",
]

#: Makes a fresh store; the folder is empty and private to the test (stores without files ignore it).
StoreFactory = Callable[[Path], WorkflowStore]

#: Values every store must give back exactly, as key-values and as outputs.
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

#: Workflow ids every store must refuse (``InvalidWorkflowIdError``) before it touches anything.
INVALID_IDS = [".", "..", "../escape", "/x", "/etc/passwd", "a/b", "a\\b", "nul\x00id", "", "x" * 300]
INVALID_IDS += ["new\nline", "esc\x1b[31m", "\x85", "\udcff", "é" * 101]


def rich_state(workflow_id: str = "wf-1", nodes: int = 3) -> WorkflowData:
    """A state with a value in every field a store must keep."""
    data = WorkflowData(workflow_id, created_at=1_700_000_000.25)
    data.set("text", "héllo wörld ✓ 日本")
    data.set("empty", "")
    data.set("int_max", 2**63 - 1)
    data.set("int_min", -(2**63 - 1))
    data.set("float", 3.14159)
    data.set("bool", True)
    data.set("none", None)
    data.set("nested", {"list": [1, 2.5, "x", None, False, {"deep": []}], "obj": {}})
    dag: dict[str, list[str]] = {}
    for index in range(nodes):
        node = f"node_{index}"
        dag[node] = [f"node_{index - 1}"] if index else []
        data.record_attempt_started(node, at=1_700_000_100.0 + index)
        data.record_attempt_finished(node, NodeStatus.COMPLETED, at=1_700_000_101.5 + index)
        data.set_output(node, {"rows": index, "label": f"out {index}", "values": [index, index / 2]})
        data.set_code_version(node, f"code-{index}")
    data.record_attempt_started("failing", at=1_700_000_200.0)
    data.record_attempt_finished(
        "failing", NodeStatus.FAILED, at=1_700_000_201.0, error="boom: ünïcode", error_type="ValueError"
    )
    dag["failing"] = ["node_0"] if nodes else []
    data.set_node_status("waiting", NodeStatus.PENDING)
    dag["waiting"] = ["failing"]
    data.set_output("empty_output", "")
    data.set_node_status("empty_output", NodeStatus.SKIPPED)
    dag["empty_output"] = []
    data.set_dag_structure(dag)
    data.add_audit("reset", ["failing"], detail="manual retry")
    return data


#: What a run's state may see besides its nodes after its last node record; ``save_run_end``
#: must leave the store holding each (a store that ends runs with a record must notice them).
RUN_END_CHANGES: dict[str, Callable[[WorkflowData], object]] = {
    "nothing else": lambda data: None,
    "another node": lambda data: data.set_node_status("node_2", NodeStatus.FAILED),
    "a new node": lambda data: data.set_node_status("added", NodeStatus.PENDING),
    "a key-value": lambda data: data.set("text", "changed"),
    "an audit entry": lambda data: data.add_audit("mark", ["node_1"], detail="by hand"),
    "the DAG": lambda data: data.set_dag_structure({"node_0": [], "node_1": ["node_0"]}),
    "rolling back": lambda data: data.set_rolling_back(True),
    "the trigger cause": lambda data: data.set_trigger_cause(2),
    "a wait": lambda data: data.set_wait("node_1", 1_900_000_000_000_000_000),
    "another run": lambda data: data.put_run(RunRecord(run_id="older", started_at=1_700_000_000.0)),
}


def node_by_node_run(store: WorkflowStore, workflow_id: str, change: str) -> WorkflowData:
    """What the engine's ``Persistence.NODE`` does to a stored ``rich_state``: load, node records
    with the run's record, one ``RUN_END_CHANGES[change]``, ``save_run_end``. Returns the state."""
    store.save(rich_state(workflow_id))
    data = store.load(workflow_id)
    data.put_run(RunRecord(run_id="this", started_at=1_700_000_300.0))
    data.record_attempt_started("node_0", at=1_700_000_301.0)
    store.save_nodes(data, ["node_0"], "this")
    data.record_attempt_finished("node_0", NodeStatus.COMPLETED, at=1_700_000_302.0)
    data.record_attempt_started("node_1", at=1_700_000_303.0)
    store.save_nodes(data, ["node_0", "node_1"])
    data.record_attempt_finished("node_1", NodeStatus.COMPLETED, at=1_700_000_304.0)
    RUN_END_CHANGES[change](data)
    data.put_run(RunRecord(run_id="this", started_at=1_700_000_300.0, finished_at=1_700_000_305.0))
    store.save_run_end(data, ["node_1"], "this")
    return data


def _with_node(data: WorkflowData) -> WorkflowData:
    data.set_node_status("n", NodeStatus.COMPLETED)
    return data


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _transactional(store: WorkflowStore) -> TransactionalStore:
    if not isinstance(store, TransactionalStore):
        pytest.skip(f"{type(store).__name__} is not a TransactionalStore")
    return store


class StoreContract:
    """The contract of ``WorkflowStore``; subclass it and provide a ``store_factory`` fixture."""

    #: test name -> why it does not apply to this store (it is skipped with that reason).
    not_applicable: ClassVar[dict[str, str]] = {}

    @pytest.fixture
    def store(
        self, store_factory: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
    ) -> Iterator[WorkflowStore]:
        self.skip_if_not_applicable(request)
        created = store_factory(tmp_path / "store")
        yield created
        created.close()

    def skip_if_not_applicable(self, request: pytest.FixtureRequest) -> None:
        reason = self.not_applicable.get(request.node.originalname)
        if reason is not None:
            pytest.skip(reason)

    def store_under_another_id(self, store: WorkflowStore, source_id: str, target_id: str) -> None:
        """Put ``source_id``'s stored state, unchanged, where ``target_id``'s belongs (a received file
        renamed, a key copied by hand), so the store holds a state whose inner id differs.

        Knows the built-in file and Redis stores; override it for a store that can hold such a
        state. The default skips: a store that keys every write by the state's own id cannot.
        """
        from .stores.files import FileStore
        from .stores.redis import RedisStore

        if isinstance(store, FileStore):
            shutil.copyfile(store.path_of(source_id), store.path_of(target_id))
        elif isinstance(store, RedisStore):
            for kind in ("meta", "state"):
                store.client.copy(store._key(kind, source_id), store._key(kind, target_id), replace=True)
        else:
            pytest.skip(f"{type(store).__name__} keys every write by the state's own id: it cannot hold one")

    # --- values --------------------------------------------------------------------------------

    def test_round_trip_of_every_field(self, store: WorkflowStore) -> None:
        original = rich_state()
        store.save(original)
        loaded = store.load(original.id)
        assert loaded.differences(original) == []
        assert loaded.node_history("failing").error == "boom: ünïcode"
        assert loaded.dag_structure == original.dag_structure
        assert [entry.action for entry in loaded.audit] == ["reset"]

    @pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:24])
    def test_round_trip_of_each_value_as_data_and_output(self, store: WorkflowStore, value: Any) -> None:
        data = WorkflowData("values")
        data.set("key", value)
        data.set_node_status("node", NodeStatus.COMPLETED)
        data.set_output("node", value)
        store.save(data)
        loaded = store.load("values")
        assert loaded.differences(data) == []
        assert type(loaded.get("key")) is type(value)
        assert loaded.get("key") == value and loaded.get_output("node") == value

    def test_loaded_and_saved_copies_are_independent_of_the_store(self, store: WorkflowStore) -> None:
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

    def test_mutating_a_returned_output_never_changes_what_is_saved(self, store: WorkflowStore) -> None:
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

    def test_round_trips_are_byte_identical(self, store: WorkflowStore) -> None:
        """Loading from the store and encoding again gives the very bytes of the original state."""
        from .stores.flatbuffers_codec import FlatBuffersCodec
        from .stores.json_codec import JSONCodec

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

    # --- save, load, list, delete ---------------------------------------------------------------

    def test_save_stamps_version_and_update_time(self, store: WorkflowStore) -> None:
        data = WorkflowData("stamped", created_at=5.0)
        assert data.version == 0
        store.save(data)
        assert data.version == 1 and data.updated_at > 5.0
        store.save(data)
        loaded = store.load("stamped")
        assert data.version == loaded.version == 2
        assert loaded.updated_at == data.updated_at and loaded.created_at == 5.0

    def test_list_and_delete(self, store: WorkflowStore) -> None:
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

    def test_not_found(self, store: WorkflowStore) -> None:
        with pytest.raises(WorkflowNotFoundError) as caught:
            store.load("missing")
        assert caught.value.workflow_id == "missing"
        with pytest.raises(WorkflowNotFoundError):
            store.delete("missing")

    @pytest.mark.parametrize("bad_id", INVALID_IDS, ids=repr)
    def test_invalid_ids_are_refused_and_nothing_is_written(
        self, store_factory: StoreFactory, tmp_path: Path, bad_id: str, request: pytest.FixtureRequest
    ) -> None:
        self.skip_if_not_applicable(request)
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

    def test_a_state_stored_under_another_id_is_refused_and_never_overwrites_its_owner(
        self, store: WorkflowStore
    ) -> None:
        owner = rich_state("owner")
        store.save(owner)
        self.store_under_another_id(store, "owner", "visitor")
        with pytest.raises(CorruptStateError, match=r"'owner'.*'visitor'") as caught:
            store.load("visitor")
        assert "visitor" in caught.value.source  # names the file or key it read
        # Recovery loads, changes and saves: without the check this wrote over workflow "owner".
        with pytest.raises(CorruptStateError):
            reset_nodes(store, "visitor", ["failing"])
        with pytest.raises(CorruptStateError):
            mark_nodes(store, "visitor", ["waiting"], NodeStatus.COMPLETED)
        after = store.load("owner")
        assert after.version == owner.version and after.differences(owner) == []

    def test_stale_save_raises_and_changes_nothing(self, store: WorkflowStore) -> None:
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

    def test_a_new_instance_sees_the_same_state(
        self, store_factory: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        self.skip_if_not_applicable(request)
        folder = tmp_path / "store"
        first = store_factory(folder)
        data = rich_state("persisted")
        first.save(data)
        data.set_node_status("node_0", NodeStatus.FAILED)
        first.save_node(data, "node_0")
        if os.path.isdir(folder):  # a store that keeps files: a second instance (or process) reads them
            second = store_factory(folder)
            assert second.load("persisted").differences(data) == []
            stale = second.load("persisted")
            first.save(data)
            with pytest.raises(VersionConflictError):
                second.save(stale)
            second.close()
        first.close()

    # --- per-node saves (the default save_node saves the whole state) ---------------------------

    def test_save_node_then_load(self, store: WorkflowStore) -> None:
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

    def test_save_node_of_a_new_workflow_saves_it_whole(self, store: WorkflowStore) -> None:
        data = rich_state("fresh")
        store.save_node(data, "node_0")
        assert store.load("fresh").differences(data) == []

    def test_stale_save_node_raises(self, store: WorkflowStore) -> None:
        store.save(_with_node(WorkflowData("race")))
        first, second = store.load("race"), store.load("race")
        # First changes what is stored: a store whose versions are tokens of the file's bytes (the
        # Go layout) wrote identical bytes for an unchanged state within the same millisecond.
        first.set_node_status("n", NodeStatus.RUNNING)
        store.save_node(first, "n")
        second.set_node_status("n", NodeStatus.FAILED)
        with pytest.raises(VersionConflictError):
            store.save_node(second, "n")
        assert store.load("race").get_node_status("n") is NodeStatus.RUNNING

    def test_full_save_after_node_records_wins(self, store: WorkflowStore) -> None:
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

    @pytest.mark.parametrize("change", list(RUN_END_CHANGES))
    def test_the_end_of_a_node_by_node_run_keeps_every_change(
        self, store: WorkflowStore, change: str
    ) -> None:
        data = node_by_node_run(store, "run-end", change)
        assert store.load("run-end").differences(data) == []
        summary = store.summary("run-end")
        assert (summary.node_count, summary.version) == (len(data.node_statuses()), data.version)

    # --- summaries ----------------------------------------------------------------------------

    def test_summary_and_node_status_match_the_state(self, store: WorkflowStore) -> None:
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

    # --- transactions (TransactionalStore only) -------------------------------------------------

    def test_transaction_commits_all(self, store: WorkflowStore) -> None:
        transactional = _transactional(store)
        a, b = rich_state("txn-a"), rich_state("txn-b")
        store.save(b)
        b.set("changed", True)
        with transactional.transaction() as tx:
            tx.save(a)
            tx.save(b)
            assert store.list_workflows() == ["txn-b"]  # nothing visible before commit
        assert (a.version, b.version) == (1, 2)
        assert store.load("txn-a").differences(a) == []
        assert store.load("txn-b").differences(b) == []

    def test_transaction_rolls_back_on_error(self, store: WorkflowStore) -> None:
        transactional = _transactional(store)
        store.save(WorkflowData("kept"))
        kept = store.load("kept")
        kept.set("changed", True)
        with pytest.raises(RuntimeError, match="inside"), transactional.transaction() as tx:
            tx.save(WorkflowData("never"))
            tx.save(kept)
            raise RuntimeError("inside the block")
        assert store.list_workflows() == ["kept"]
        assert store.load("kept").get("changed") is None

    def test_transaction_conflict_aborts_all(self, store: WorkflowStore) -> None:
        transactional = _transactional(store)
        store.save(WorkflowData("contended"))
        stale = store.load("contended")
        store.save(store.load("contended"))
        fresh = WorkflowData("innocent")
        with pytest.raises(VersionConflictError), transactional.transaction() as tx:
            tx.save(fresh)
            tx.save(stale)
        assert store.list_workflows() == ["contended"]
        assert fresh.version == 0 and stale.version == 1

    def test_transaction_snapshot_is_taken_at_save(self, store: WorkflowStore) -> None:
        transactional = _transactional(store)
        data = WorkflowData("snap")
        data.set("value", "staged")
        tx = transactional.begin_transaction()
        tx.save(data)
        data.set("value", "after staging")
        tx.commit()
        assert store.load("snap").get("value") == "staged"
        with pytest.raises(RuntimeError):
            tx.commit()

    # --- metrics (stores that count through self.metrics.measure) -------------------------------

    def test_metrics_count_operations(self, store: WorkflowStore) -> None:
        data = _with_node(WorkflowData("measured"))
        store.save(data)
        if store.metrics.get("save").calls == 0:
            pytest.skip(f"{type(store).__name__} counts no operations in its metrics")
        store.save_node(data, "n")
        store.load("measured")
        with pytest.raises(WorkflowNotFoundError):
            store.load("missing")
        store.list_workflows()
        store.delete("measured")
        metrics = store.metrics
        # a node record is counted as "record", or as "save" where save_node saves the whole state
        assert metrics.get("save").calls + metrics.get("record").calls == 2
        assert (metrics.get("load").calls, metrics.get("load").failures) == (2, 1)
        assert "WorkflowNotFoundError" in (metrics.get("load").last_error or "")
        assert metrics.get("list").calls == 1 and metrics.get("delete").calls == 1

    # --- model-based: random operation sequences against a plain dict ---------------------------

    @pytest.mark.timeout(300)
    def test_random_operation_sequences_match_a_dict_model(
        self, store_factory: StoreFactory, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        self.skip_if_not_applicable(request)
        fields = {"factory": staticmethod(store_factory), "folder": tmp_path / "s"}
        machine = type("Model", (StoreModel,), fields)
        run_state_machine_as_test(
            machine, settings=settings(max_examples=40, stateful_step_count=25, deadline=None)
        )


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
        if os.path.isdir(self.folder):  # a store that keeps files: a fresh instance sees the same state
            self.store.close()
            self.store = self.factory(self.folder)

    @invariant()
    def matches_the_model(self) -> None:
        assert self.store.list_workflows() == sorted(self.model)
        for workflow_id, expected in self.model.items():
            assert self.store.load(workflow_id).differences(expected) == []

    def teardown(self) -> None:
        self.store.close()


class _FactoryPlugin:
    """Hands ``run_store_contract``'s factory to the suite as the ``store_factory`` fixture."""

    def __init__(self, factory: StoreFactory) -> None:
        self.factory = factory

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return self.factory


def run_store_contract(factory: StoreFactory, *pytest_args: str) -> int:
    """Run ``StoreContract`` against the stores ``factory`` makes; returns pytest's exit code (0: passed).

    For a notebook or a script; in a test suite, subclass ``StoreContract`` instead. Extra
    arguments go to pytest (``"-q"``, ``"-x"``, ``"-k", "transaction"``). Skipped checks are
    listed with their reasons (a capability the store lacks).
    """
    arguments = [__file__, "-o", "python_classes=StoreContract", "-p", "no:cacheprovider", "-rs"]
    # hypothesis is imported already (by this module), which pytest would warn about
    arguments += ["-W", "ignore::pytest.PytestAssertRewriteWarning", *pytest_args]
    return int(pytest.main(arguments, plugins=[_FactoryPlugin(factory)]))
