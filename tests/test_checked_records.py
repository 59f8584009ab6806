"""Per-node records skip value checks only when the state's writers vouch for every value."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_workbench import WorkflowData
from flow_workbench.errors import SerializationError
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore


def started(node: str = "n") -> WorkflowData:
    data = WorkflowData("wf")
    data.record_attempt_started(node, at=1.0)
    return data


def test_a_record_of_a_vouched_state_is_marked_checked() -> None:
    assert started().node_record("n").checked


@pytest.mark.parametrize("store_kind", [FlatBuffersStore, JSONFileStore])
def test_a_code_version_that_is_not_a_str_is_refused_not_written(
    tmp_path: Path, store_kind: type[FlatBuffersStore] | type[JSONFileStore]
) -> None:
    store = store_kind(tmp_path)
    data = started()
    store.save(data)
    data.set_code_version("n", 123)  # type: ignore[arg-type]  # what a careless caller passes
    assert not data.node_record("n").checked
    with pytest.raises(SerializationError, match="code version"):
        store.save_node(data, "n")
    with pytest.raises(SerializationError, match="code version"):
        store.save(data)
    assert store.load("wf").code_version("n") is None  # the stored state is the last good one
