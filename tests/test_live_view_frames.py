"""LiveView frames drawn from whole columns: the C-level reads agree with node-by-node drawing."""

from __future__ import annotations

import contextlib

import pytest

from flow_workbench import DAG, InMemoryStore, Workflow, WorkflowData, WorkflowExecutionError
from flow_workbench.dot import STATUS_STYLES, graph_nodes
from flow_workbench.notebook import LiveView, RecordingDisplay
from flow_workbench.notebook.svg_frames import SvgTemplate
from flow_workbench.status import NodeStatus


def _chain(count: int) -> DAG:
    return DAG.from_structure({f"n{i}": [f"n{i - 1}"] if i else [] for i in range(count)})


def _template(dag: DAG) -> SvgTemplate:
    view = LiveView(dag, display=False, progress=False)
    assert view.wait_for_layout(60)
    return view._template.result()


def _by_canvas(template: SvgTemplate, data: WorkflowData, dag: DAG) -> str:
    canvas = template.canvas()
    for node in graph_nodes(data, dag):
        canvas.set_node(node.position, node.status, node.history)
    return canvas.svg()


def _rendered(template: SvgTemplate, data: WorkflowData) -> str:
    with data.read_columns() as columns:
        return template.render(columns)


def _finished_state(dag: DAG, statuses: list[NodeStatus], durations: list[float]) -> WorkflowData:
    """Every node with both timestamps and an attempt: the columns the C-level path reads whole."""
    data = WorkflowData("complete")
    data.set_dag_structure(dag.structure())
    for index, (status, duration) in enumerate(zip(statuses, durations, strict=True)):
        data.record_attempt_started(f"n{index}", at=100.0 + index)
        data.record_attempt_finished(f"n{index}", status, at=100.0 + index + duration)
    return data


@pytest.mark.parametrize("count", [1, 2, 7])
def test_a_complete_state_renders_as_node_by_node_drawing(count: int) -> None:
    """One node (the getter's special case), and mixed statuses and durations read whole."""
    dag = _chain(count)
    statuses = [(NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED)[i % 3] for i in range(count)]
    # n0 lasts 0.6 ms: rounds up to 1 ms, as timing_of has it
    data = _finished_state(dag, statuses, [0.0006 + 1.3 * i for i in range(count)])
    template = _template(dag)
    assert _rendered(template, data) == _by_canvas(template, data, dag)
    with data.read_columns() as columns:
        states = template.node_states(columns)
    by_position = dict(zip(template.order_names, states.statuses, strict=True))
    assert by_position == {f"n{i}": statuses[i] for i in range(count)}
    assert "duration: 0.001 s" in _rendered(template, data)


@pytest.mark.parametrize(
    ("started", "finished"),
    [("bogus", 105.0), (101.0, float("nan")), (101.0, float("inf")), (None, 105.0)],
    ids=["text", "nan", "infinite", "no-start"],
)
def test_damaged_times_fall_back_to_the_tooltip_rules(started: object, finished: object) -> None:
    """A damaged file's timestamps on one node of an otherwise complete state: the fast path
    gives up and every tooltip still reads as a node-by-node drawing has it."""
    dag = _chain(4)
    data = _finished_state(dag, [NodeStatus.COMPLETED] * 4, [0.5, 1.0, 1.5, 2.0])
    columns = data._unsafe_columns()
    if started is None:
        del columns.started_at["n2"]
    else:
        columns.started_at["n2"] = started  # type: ignore[assignment]
    columns.finished_at["n2"] = finished  # type: ignore[assignment]
    template = _template(dag)
    rendered = _rendered(template, data)
    assert rendered == _by_canvas(template, data, dag)
    assert "duration: 1.000 s" in rendered  # n1: the other nodes keep their durations


def test_a_mid_run_state_renders_as_node_by_node_drawing() -> None:
    """Running and pending nodes lack a finish (or any) time: the per-node path."""
    dag = _chain(5)
    data = WorkflowData("mid-run")
    data.set_dag_structure(dag.structure())
    data.record_attempt_started("n0", at=1.0)
    data.record_attempt_finished("n0", NodeStatus.COMPLETED, at=3.25)
    data.record_attempt_started("n1", at=3.5)  # running
    template = _template(dag)
    rendered = _rendered(template, data)
    assert rendered == _by_canvas(template, data, dag)
    assert "duration: 2.250 s" in rendered


@pytest.mark.parametrize("fails", [True, False], ids=["failed-run", "successful-run"])
def test_the_progress_bar_ends_red_only_when_a_node_failed(fails: bool) -> None:
    dag = DAG.from_structure({"a": [], "b": ["a"]})
    if fails:
        dag = DAG("fails")
        dag.add_node("a")
        dag.add_node("b", lambda data: 1 / 0, depends_on="a")
    workflow = Workflow(dag, "bar", InMemoryStore())
    display = RecordingDisplay()
    with contextlib.suppress(WorkflowExecutionError), LiveView(workflow, display=display) as view:
        workflow.execute()
    assert view.progress_bar is not None
    red = STATUS_STYLES[NodeStatus.FAILED].fill
    assert (view.progress_bar.colour == red) is fails
    assert ("run failed" in str(view.progress_bar.postfix or "")) is fails
    assert (NodeStatus.FAILED in view.statuses().values()) is fails
