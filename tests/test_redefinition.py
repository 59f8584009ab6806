"""Running a notebook cell that defines a node again replaces the node (the notebook habit)."""

from __future__ import annotations

import pytest

from flow_workbench import DAG, DuplicateNodeError, InMemoryStore, Workflow


def define_load(dag: DAG, rows: int) -> None:
    """What a notebook cell ``@dag.node def load(): ...`` does each time it runs."""

    @dag.node
    def load() -> list[int]:
        return list(range(rows))


def test_running_the_defining_cell_again_replaces_the_node_in_place() -> None:
    dag = DAG("cells")
    define_load(dag, 3)

    @dag.node
    def total(load: list[int]) -> int:
        return sum(load)

    define_load(dag, 5)  # the first cell, edited and run again
    assert [node.name for node in dag] == ["load", "total"]
    assert dag.dependencies("total") == ["load"]
    store = InMemoryStore()
    result = Workflow(dag, "wf", store, executor="inline").execute()
    assert result.data.get_output("total") == 10


def test_the_redefined_node_is_stale_after_a_run_and_reruns() -> None:
    dag = DAG("cells")
    define_load(dag, 3)

    @dag.node
    def total(load: list[int]) -> int:
        return sum(load)

    store = InMemoryStore()
    workflow = Workflow(dag, "wf", store, executor="inline")
    workflow.execute()
    define_load(dag, 5)
    assert set(workflow.stale_nodes()) == {"load", "total"}
    result = workflow.execute(rerun="stale")
    assert result.data.get_output("total") == 10


def test_redefinition_takes_the_new_inputs_from_nodes_added_before() -> None:
    dag = DAG("cells")

    @dag.node
    def raw() -> int:
        return 2

    @dag.node
    def doubled() -> int:
        return 0

    @dag.node  # type: ignore[no-redef]
    def doubled(raw: int) -> int:  # noqa: F811 - the cell, edited to take an input
        return raw * 2

    assert dag.dependencies("doubled") == ["raw"]
    result = Workflow(dag, "wf", InMemoryStore(), executor="inline").execute()
    assert result.data.get_output("doubled") == 4


def test_another_function_of_the_same_name_is_still_a_duplicate() -> None:
    dag = DAG("cells")

    def step() -> int:
        return 1

    dag.add(step)

    def other() -> int:
        return 2

    with pytest.raises(DuplicateNodeError, match="'step'"):
        dag.add(other, name="step")
    with pytest.raises(DuplicateNodeError, match="'step'"):
        dag.add_node("step", step)  # add_node never replaces
    assert dag.node("step").action is step
