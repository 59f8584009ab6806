"""The WorkflowStore contract (``flow_workbench.testing.StoreContract``), run against every built-in store."""

from __future__ import annotations

import pytest

from flow_workbench.data import WorkflowData
from flow_workbench.status import NodeStatus
from flow_workbench.stores.base import WorkflowStore
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.testing import StoreContract, StoreFactory


class TestBuiltinStores(StoreContract):
    """Every store in ``tests.helpers.stores.IMPLEMENTATIONS`` (the ``store_factory`` fixture)."""

    def test_node_records_are_counted_apart_from_saves(self, store: WorkflowStore) -> None:
        data = WorkflowData("measured")
        data.set_node_status("n", NodeStatus.COMPLETED)
        store.save(data)
        store.save_node(data, "n")
        assert (store.metrics.get("save").calls, store.metrics.get("record").calls) == (1, 1)


#: What the Go layout cannot hold (see FlatBuffersStore): checks that compare it are skipped there.
_GO_DROPS = (
    "the Go layout keeps no version (a file's version is a token of its bytes), created_at, "
    "per-node history, DAG structure or audit trail"
)
_GO_DROPPING = [
    "test_round_trip_of_every_field",
    "test_round_trip_of_each_value_as_data_and_output",
    "test_loaded_and_saved_copies_are_independent_of_the_store",
    "test_mutating_a_returned_output_never_changes_what_is_saved",
    "test_round_trips_are_byte_identical",
    "test_save_stamps_version_and_update_time",
    "test_stale_save_raises_and_changes_nothing",
    "test_a_new_instance_sees_the_same_state",
    "test_save_node_then_load",
    "test_save_node_of_a_new_workflow_saves_it_whole",
    "test_full_save_after_node_records_wins",
    "test_the_end_of_a_node_by_node_run_keeps_every_change",
    "test_summary_and_node_status_match_the_state",
    "test_transaction_commits_all",
    "test_transaction_conflict_aborts_all",
    "test_random_operation_sequences_match_a_dict_model",
]


class TestGoLayoutFlatBuffersStore(StoreContract):
    """``FlatBuffersStore(layout="go")``: the contract, less what the Go layout cannot hold
    (its compare-and-set on content tokens is checked in tests/test_go_interop.py)."""

    not_applicable = dict.fromkeys(_GO_DROPPING, _GO_DROPS) | {
        "test_a_state_stored_under_another_id_is_refused_and_never_overwrites_its_owner": (
            "Go's FlatBuffers files take their workflow id from the file name, as the Go library does"
        ),
    }

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return lambda folder: FlatBuffersStore(folder, layout="go")


def test_the_contract_is_the_shipped_one() -> None:
    """No contract test lives only here: a custom store runs every check the built-in ones pass."""
    own = {name for name in vars(TestBuiltinStores) if name.startswith("test_")}
    assert own == {"test_node_records_are_counted_apart_from_saves"}
    assert len([name for name in dir(StoreContract) if name.startswith("test_")]) >= 20
