"""``async def`` actions: awaited on a loop of their own, with timeouts and cancellation honoured."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flow_workbench import (
    DAG,
    NodeContext,
    NodeStatus,
    NodeTimeoutError,
    Workflow,
    WorkflowCancelledError,
    WorkflowData,
    WorkflowExecutionError,
)
from tests.helpers.modules import modules_loaded_by

#: Upper bound for waiting on something that happens promptly (a liveness guard, not a timing test).
PATIENCE = 30.0


def test_async_actions_run_with_inputs_by_name_and_classic_ones_too() -> None:
    dag = DAG()

    @dag.node
    async def fetch() -> list[int]:
        await asyncio.sleep(0)
        return [1, 2, 3]

    @dag.node
    async def total(fetch: list[int], ctx: NodeContext) -> int:
        await asyncio.sleep(0)
        return sum(fetch) + ctx.attempt

    async def classic(data: WorkflowData) -> str:
        await asyncio.sleep(0)
        return f"total={data.get_output('total')}"

    dag.add_node("classic", classic, depends_on="total")
    result = Workflow(dag, "wf").execute()
    assert result.data.get_output("fetch") == [1, 2, 3]
    assert result.data.get_output("total") == 7
    assert result.data.get_output("classic") == "total=7"


def test_a_coroutine_returned_by_a_plain_function_is_awaited() -> None:
    async def later(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    dag = DAG()
    dag.add_node("lazy", lambda data: later(21))
    assert Workflow(dag, "wf").execute().data.get_output("lazy") == 42


def test_each_attempt_runs_on_a_fresh_event_loop_and_failures_are_retried() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def flaky(data: WorkflowData, ctx: NodeContext) -> str:
        loops.append(asyncio.get_running_loop())
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    dag = DAG()
    dag.add_node("flaky", flaky, retries=1, retry_delay=0)
    result = Workflow(dag, "wf").execute()
    assert result.data.get_output("flaky") == "ok"
    assert len(loops) == 2 and loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


def test_a_timed_out_async_attempt_is_cancelled() -> None:
    cancelled = threading.Event()
    saw_ctx_cancelled: list[bool] = []

    async def slow(data: WorkflowData, ctx: NodeContext) -> str:
        try:
            await asyncio.sleep(PATIENCE)
        except asyncio.CancelledError:
            saw_ctx_cancelled.append(ctx.cancelled)
            cancelled.set()
            raise
        return "too late"

    dag = DAG()
    dag.add_node("slow", slow, timeout=0.2)
    with pytest.raises(WorkflowExecutionError) as raised:
        Workflow(dag, "wf").execute()

    assert raised.value.failures["slow"].error_type == NodeTimeoutError.__name__
    assert cancelled.wait(PATIENCE), "the coroutine of the timed-out attempt was never cancelled"
    assert saw_ctx_cancelled == [True]


@pytest.mark.parametrize("timeout", [None, 60.0], ids=["untimed", "timed"])
def test_cancel_cancels_a_running_coroutine_and_leaves_its_node_pending(timeout: float | None) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def wait_forever(ctx: NodeContext) -> str:
        started.set()
        try:
            await asyncio.sleep(PATIENCE * 10)
        except asyncio.CancelledError:
            assert ctx.cancelled
            cancelled.set()
            raise
        return "never"

    dag = DAG()
    dag.add(wait_forever, timeout=timeout)
    workflow = Workflow(dag, "wf")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            workflow.execute()
        except BaseException as error:
            outcome.append(error)

    runner = threading.Thread(target=run)
    runner.start()
    assert started.wait(PATIENCE)
    workflow.cancel()
    runner.join(PATIENCE)

    assert not runner.is_alive()
    assert cancelled.is_set()
    assert len(outcome) == 1 and isinstance(outcome[0], WorkflowCancelledError)
    assert workflow.data is not None
    assert workflow.data.get_node_status("wait_forever") is NodeStatus.PENDING


def test_async_actions_run_when_the_calling_thread_already_runs_an_event_loop() -> None:
    """A notebook cell runs inside the kernel's event loop: execute() must still work there."""
    dag = DAG()

    @dag.node
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def notebook_cell() -> Any:
        return Workflow(dag, "wf", executor="inline").execute().data.get_output("answer")

    assert asyncio.run(notebook_cell()) == 42


def test_a_cancellation_the_coroutine_raises_itself_fails_the_node_instead_of_crashing_the_run() -> None:
    async def confused(data: WorkflowData) -> None:
        raise asyncio.CancelledError

    dag = DAG()
    dag.add_node("confused", confused)
    dag.add_node("other", lambda data: "fine")
    with pytest.raises(WorkflowExecutionError) as raised:
        Workflow(dag, "wf").execute()
    assert raised.value.failures["confused"].error_type == "NodeCancelledError"


def test_importing_flow_workbench_does_not_load_asyncio() -> None:
    assert modules_loaded_by("import flow_workbench", ["asyncio"]) == []
