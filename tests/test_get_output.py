"""``WorkflowData.get_output``: a typo is an error when the DAG is known, a missing output is not."""

from __future__ import annotations

import pytest

from flow_workbench import (
    DAG,
    InMemoryStore,
    NodeStatus,
    UnknownNodeError,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
)


def _state() -> WorkflowData:
    data = WorkflowData("wf")
    data.set_dag_structure({"extract": [], "report": ["extract"], "publish": ["report"]})
    data.set_output("extract", {"rows": 3})
    return data


def test_an_unknown_node_name_raises_naming_it_and_the_closest_node() -> None:
    """Before: ``get_output("reprot")`` returned None, as for a node that has no output yet."""
    with pytest.raises(UnknownNodeError) as caught:
        _state().get_output("reprot")
    error = caught.value
    assert isinstance(error, LookupError) and error.nodes == ["reprot"] and error.workflow_id == "wf"
    assert error.close_matches == {"reprot": "report"}
    assert str(error) == "unknown node(s) in workflow 'wf': 'reprot' (did you mean 'report'?)"
    with pytest.raises(UnknownNodeError, match=r"'zzz'$"):  # nothing close: no suggestion
        _state().get_output("zzz", "default")


def test_a_known_node_without_an_output_gives_the_default() -> None:
    data = _state()
    assert data.get_output("report") is None
    assert data.get_output("publish", "none yet") == "none yet"
    assert data.get_output("extract") == {"rows": 3}


def test_without_a_dag_structure_any_name_gives_the_default() -> None:
    data = WorkflowData("go-file")  # e.g. a state written by the Go library
    data.set_node_status("a", NodeStatus.COMPLETED)
    assert data.get_output("typo") is None and data.get_output("typo", 1) == 1


def test_a_node_of_the_state_but_not_of_the_structure_is_known() -> None:
    data = _state()
    data.set_node_status("legacy", NodeStatus.COMPLETED)  # e.g. kept from an older DAG
    assert data.get_output("legacy", "none") == "none"


def test_an_action_reading_a_misspelt_upstream_fails_naming_it() -> None:
    dag = DAG()
    dag.add_node("extract", lambda data: 3)
    dag.add_node("report", lambda data: data.get_output("extrcat") + 1, depends_on="extract")
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError) as caught:
        Workflow(dag, "wf", store).execute()
    failure = caught.value.failures["report"]
    assert failure.error_type == "UnknownNodeError" and "did you mean 'extract'?" in failure.message


def test_inputs_by_name_still_get_defaults_for_upstream_nodes_without_output() -> None:
    dag = DAG()

    @dag.node
    def extract() -> None:
        return None

    @dag.node
    def report(extract: int = 7) -> int:
        return extract * 2

    result = Workflow(dag, "wf").execute()
    assert result.data.get_output("report") == 14
