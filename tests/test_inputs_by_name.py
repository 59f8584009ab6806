"""Inputs by parameter name (``@dag.node``, ``dag.add``) and run parameters (``execute(params=...)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flow_workbench import (
    DAG,
    FlowWorkbenchError,
    InMemoryStore,
    InputNameConflictError,
    JSONFileStore,
    NodeContext,
    NodeStatus,
    RunParameterError,
    UnknownInputError,
    UnknownNodeError,
    Workflow,
    WorkflowData,
    WorkflowExecutionError,
    WorkflowNotFoundError,
)
from tests.helpers.modules import modules_loaded_by


def sales_dag() -> DAG:
    dag = DAG("sales")

    @dag.node
    def load() -> list[int]:
        return [3, 4, 5]

    @dag.node
    def total(load: list[int]) -> int:
        return sum(load)

    @dag.node
    def report(total: int, load: list[int]) -> str:
        return f"{len(load)} sales, {total} in all"

    return dag


# --- naming and dependencies -----------------------------------------------------------------


def test_parameters_named_after_nodes_receive_their_outputs_and_become_dependencies() -> None:
    dag = sales_dag()
    assert [node.name for node in dag] == ["load", "total", "report"]
    assert dag.dependencies("report") == ["total", "load"]
    assert dag.node("report").inputs == ("total", "load")

    result = Workflow(dag, "wf").execute()

    assert result.data.get_output("report") == "3 sales, 12 in all"


def test_the_decorator_returns_the_function_unchanged() -> None:
    dag = DAG()

    def double(load: int) -> int:
        return 2 * load

    dag.add(lambda: 21, name="load")
    assert dag.node(double) is double
    assert double(4) == 8


def test_decorator_options_name_the_node_and_set_its_policy() -> None:
    dag = DAG()
    attempts: list[int] = []

    @dag.node(name="flaky", retries=2, retry_delay=0)
    def fetch(ctx: NodeContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "fetched"

    assert "fetch" not in dag
    assert dag.node("flaky").retries == 2
    result = Workflow(dag, "wf").execute()
    assert attempts == [1, 2, 3]
    assert result.data.get_output("flaky") == "fetched"


def test_data_and_ctx_parameters_get_the_state_and_the_context_in_any_position() -> None:
    dag = DAG()
    dag.add(lambda: 2, name="base")
    seen: dict[str, Any] = {}

    @dag.node
    def use(ctx: NodeContext, base: int, data: WorkflowData) -> int:
        seen["ctx"], seen["data"] = ctx, data
        data.set("note", f"attempt {ctx.attempt}")
        return base + 1

    result = Workflow(dag, "wf").execute()
    assert isinstance(seen["ctx"], NodeContext) and seen["ctx"].node == "use"
    assert seen["data"] is result.data
    assert result.data.get("note") == "attempt 1"
    assert result.data.get_output("use") == 3


def test_positional_only_parameters_are_bound_by_name_too() -> None:
    dag = DAG()
    dag.add(lambda: "a", name="first")
    dag.add(lambda: "b", name="second")

    def join(second: str, first: str, /, sep: str = "+") -> str:
        return first + sep + second

    dag.add(join)
    assert Workflow(dag, "wf").execute().data.get_output("join") == "a+b"


def test_depends_on_adds_order_only_dependencies() -> None:
    dag = DAG()
    order: list[str] = []
    dag.add(lambda: order.append("setup"), name="setup")
    dag.add(lambda: 5, name="value")

    @dag.node(depends_on=["setup"])
    def work(value: int) -> int:
        order.append("work")
        return value * 2

    assert dag.dependencies("work") == ["value", "setup"]
    assert dag.node("work").inputs == ("value",)
    assert Workflow(dag, "wf").execute().data.get_output("work") == 10
    assert order == ["setup", "work"]


def test_an_input_with_a_default_is_a_dependency_and_falls_back_when_no_output_was_stored() -> None:
    dag = DAG()
    dag.add(lambda: None, name="maybe")  # completes without an output
    dag.add(lambda: 7, name="given")

    @dag.node
    def combine(maybe: int = 100, given: int = 0) -> int:
        return maybe + given

    assert dag.dependencies("combine") == ["maybe", "given"]
    assert Workflow(dag, "wf").execute().data.get_output("combine") == 107


def test_inputs_are_read_from_the_stored_outputs_when_a_run_resumes(tmp_path: Path) -> None:
    store = JSONFileStore(tmp_path)
    calls: list[str] = []

    def build(fail: bool) -> DAG:
        dag = DAG()

        @dag.node
        def numbers() -> list[int]:
            calls.append("numbers")
            return [1, 2, 3]

        @dag.node
        def mean(numbers: list[int]) -> float:
            if fail:
                raise RuntimeError("not yet")
            return sum(numbers) / len(numbers)

        return dag

    with pytest.raises(WorkflowExecutionError):
        Workflow(build(fail=True), "wf", store).execute()
    Workflow(build(fail=False), "wf", store).reset_failed()
    result = Workflow(build(fail=False), "wf", JSONFileStore(tmp_path)).execute()  # a fresh process

    assert calls == ["numbers"]  # not re-run: its stored output fed the resumed node
    assert result.data.get_output("mean") == 2.0


def test_classic_nodes_mix_with_nodes_bound_by_name() -> None:
    dag = DAG()
    dag.add_node("classic", lambda data: 20)

    @dag.node
    def plus_one(classic: int) -> int:
        return classic + 1

    dag.add_node(
        "reads_classic_style", lambda data, ctx: data.get_output("plus_one") * 2, depends_on="plus_one"
    )
    assert Workflow(dag, "wf").execute().data.get_output("reads_classic_style") == 42


# --- the existing add_node keeps its meaning -------------------------------------------------


class Doubler:
    def execute(self, data: WorkflowData) -> int:
        return 2 * int(data.get_output("a"))


def test_add_node_still_passes_data_and_ctx_by_position_whatever_the_parameter_names() -> None:
    dag = DAG()
    dag.add_node("a", lambda data: 1)
    received: dict[str, Any] = {}

    def positional(a: Any, b: Any) -> None:  # named like nodes, yet classic: (data, ctx)
        received["a"], received["b"] = a, b

    dag.add_node("b", positional, depends_on="a")
    dag.add_node("c", Doubler(), depends_on="a")
    result = Workflow(dag, "wf").execute()
    assert isinstance(received["a"], WorkflowData)
    assert isinstance(received["b"], NodeContext)
    assert dag.node("b").inputs is None
    assert result.data.get_output("c") == 2


def test_an_object_with_an_execute_method_is_bound_by_name_when_named() -> None:
    class Scale:
        def execute(self, base: int, factor: int = 3) -> int:
            return base * factor

    dag = DAG()
    dag.add(lambda: 5, name="base")
    with pytest.raises(TypeError, match="name the node"):
        dag.add(Scale())
    dag.add(Scale(), name="scaled")
    assert Workflow(dag, "wf").execute().data.get_output("scaled") == 15


# --- errors at add -----------------------------------------------------------------------------


def test_an_unknown_parameter_without_a_default_is_an_error_naming_it_and_the_known_nodes() -> None:
    dag = sales_dag()

    def summary(total: int, totl: int) -> str:
        return f"{total} {totl}"

    with pytest.raises(UnknownInputError) as raised:
        dag.add(summary)

    error = raised.value
    assert isinstance(error, FlowWorkbenchError)
    assert (error.parameter, error.node, error.known_nodes) == (
        "totl",
        "summary",
        ["load", "total", "report"],
    )
    message = str(error)
    for part in ("'totl'", "summary", "'load', 'total', 'report'", "DAG(params=['totl'])"):
        assert part in message
    assert "summary" not in dag


def test_nodes_are_added_after_their_inputs() -> None:
    dag = DAG()

    def late(early: int) -> int:
        return early

    with pytest.raises(UnknownInputError, match="known nodes: none"):
        dag.add(late)


def test_a_node_named_like_an_optional_parameter_of_an_earlier_node_is_refused() -> None:
    dag = DAG()

    @dag.node
    def report(limit: int = 10) -> int:
        return limit

    with pytest.raises(InputNameConflictError, match="'report'"):
        dag.add(lambda: 5, name="limit")
    with pytest.raises(InputNameConflictError):
        dag.add_node("limit", lambda data: 5)
    assert "limit" not in dag


def test_a_node_added_by_name_cannot_be_called_data_or_ctx() -> None:
    dag = DAG()

    def data() -> int:
        return 1

    with pytest.raises(InputNameConflictError, match="receives the state"):
        dag.add(data)
    with pytest.raises(InputNameConflictError, match="receives the context"):
        dag.add(data, name="ctx")


def test_lambdas_need_a_name_and_star_parameters_are_refused() -> None:
    dag = DAG()
    with pytest.raises(TypeError, match="name the node"):
        dag.add(lambda: 1)

    def spread(*values: int) -> int:
        return sum(values)

    with pytest.raises(TypeError, match=r"\*values"):
        dag.add(spread)


def test_node_still_looks_nodes_up_by_name() -> None:
    dag = sales_dag()
    assert dag.node("total").name == "total"
    with pytest.raises(UnknownNodeError):
        dag.node("missing")
    with pytest.raises(TypeError, match="looks a node up"):
        dag.node("total", retries=2)  # type: ignore[call-overload]


# --- run parameters ----------------------------------------------------------------------------


def test_run_parameters_reach_parameters_of_their_name_and_are_stored_as_key_values() -> None:
    pytest.importorskip("pandas")
    from flow_workbench.notebook import data_frame

    dag = DAG("daily", params=["date"])

    @dag.node
    def load(date: str, limit: int = 2) -> str:
        return f"{date}:{limit}"

    store = InMemoryStore()
    Workflow(dag, "wf", store).execute(params={"date": "2026-12-01", "limit": np.int64(5)})

    stored = store.load("wf")
    assert stored.get_output("load") == "2026-12-01:5"
    assert stored.get("date") == "2026-12-01"
    assert type(stored.get("limit")) is int
    assert data_frame(store, "wf").loc["date", "value"] == '"2026-12-01"'


def test_a_resumed_run_without_params_uses_the_stored_ones(tmp_path: Path) -> None:
    seen: list[str] = []

    def build(fail: bool) -> DAG:
        dag = DAG(params=["date"])

        @dag.node
        def first(date: str) -> str:
            seen.append(f"first {date}")
            return date

        @dag.node
        def second(first: str, date: str) -> str:
            if fail:
                raise RuntimeError("down")
            seen.append(f"second {date}")
            return first

        return dag

    with pytest.raises(WorkflowExecutionError):
        Workflow(build(True), "wf", JSONFileStore(tmp_path)).execute(params={"date": "2026-12-01"})
    workflow = Workflow(build(False), "wf", JSONFileStore(tmp_path))
    workflow.reset_failed()
    workflow.execute()

    assert seen == ["first 2026-12-01", "second 2026-12-01"]


def test_a_declared_run_parameter_must_be_given_before_anything_runs() -> None:
    dag = DAG(params=["date"])
    ran: list[str] = []
    dag.add(lambda date: ran.append(date), name="use")
    store = InMemoryStore()
    with pytest.raises(RunParameterError, match="'date'"):
        Workflow(dag, "wf", store).execute()
    assert ran == []
    with pytest.raises(WorkflowNotFoundError):
        store.load("wf")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"load": 1}, "a node has that name"),
        ({"data": 1}, "reserved"),
        ({"when": {1, 2}}, "cannot be stored"),
        ({"when": float("nan")}, "cannot be stored"),
        ({3: "x"}, "must be str"),
    ],
)
def test_malformed_run_parameters_are_refused_before_anything_runs(
    params: dict[Any, Any], fragment: str
) -> None:
    dag = DAG()
    dag.add(lambda: 1, name="load")
    store = InMemoryStore()
    with pytest.raises(RunParameterError, match=fragment):
        Workflow(dag, "wf", store).execute(params=params)
    with pytest.raises(WorkflowNotFoundError):
        store.load("wf")


def test_run_parameter_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="'ctx'"):
        DAG(params=["ctx"])
    dag = DAG(params=["date"])
    with pytest.raises(InputNameConflictError, match="run parameter"):
        dag.add_node("date", lambda data: 1)


def test_a_run_parameter_a_node_needs_and_nobody_gave_fails_that_node() -> None:
    from flow_workbench import Node

    dag = DAG()
    dag.add_node(Node("use", lambda date: date, inputs=()))
    with pytest.raises(WorkflowExecutionError) as raised:
        Workflow(dag, "wf").execute()
    failure = raised.value.failures["use"]
    assert failure.error_type == "RunParameterError"
    assert "'date'" in failure.message


def test_classic_actions_read_run_parameters_as_key_values() -> None:
    dag = DAG()
    dag.add_node("use", lambda data: data.get("region"))
    result = Workflow(dag, "wf").execute(params={"region": "eu"})
    assert result.data.get_output("use") == "eu"
    assert result.data.get_node_status("use") is NodeStatus.COMPLETED


# --- display -----------------------------------------------------------------------------------


def test_a_dag_displays_as_its_picture_before_any_run() -> None:
    pytest.importorskip("flow_workbench.notebook")  # the notebook extra draws it
    dag = sales_dag()
    bundle = dag._repr_mimebundle_()
    svg = bundle["image/svg+xml"]
    assert "<svg" in svg
    for name in ("load", "total", "report"):
        assert f"&#9675; {name}</text>" in svg  # drawn pending (the hollow circle)
    assert bundle["text/plain"] == "<DAGView 'sales': 3 nodes; pending=3>"


def test_importing_flow_workbench_and_building_a_dag_loads_no_notebook_package() -> None:
    code = "import flow_workbench\ndag = flow_workbench.DAG()\ndag.add(lambda: 1, name='a')\n"
    heavy = {"pandas", "graphviz", "ipywidgets", "IPython", "flow_workbench.notebook", "asyncio"}
    assert modules_loaded_by(code, heavy) == []
