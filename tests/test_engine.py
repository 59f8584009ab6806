"""Workflow.execute: ordering, parallelism, retries, timeouts, skips, cancellation, crashes, saves."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from flow_workbench import (
    DAG,
    EventKind,
    InMemoryStore,
    InvalidWorkflowIdError,
    NodeContext,
    NodeStatus,
    NodeTimeoutError,
    Persistence,
    StateMismatchError,
    StoreIOError,
    Workflow,
    WorkflowCancelledError,
    WorkflowData,
    WorkflowExecutionError,
    WorkflowNotFoundError,
)
from flow_workbench.errors import CorruptStateError

S = NodeStatus


class Calls:
    """Thread-safe record of which actions ran, in which order, and how many ran at once."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.order: list[str] = []
        self.active = 0
        self.max_active = 0
        self.threads: set[str] = set()  # names of the threads the actions ran on
        self._lock = threading.Lock()

    def action(self, name: str, *, hold: float = 0.0, fail_times: int = 0, output: Any = None):  # type: ignore[no-untyped-def]
        def run(data: WorkflowData) -> Any:
            with self._lock:
                self.counts[name] += 1
                self.order.append(name)
                self.threads.add(threading.current_thread().name)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                attempt = self.counts[name]
            try:
                if hold:
                    time.sleep(hold)
                if attempt <= fail_times:
                    raise RuntimeError(f"{name} failed on attempt {attempt}")
                return output if output is not None else f"{name}-out"
            finally:
                with self._lock:
                    self.active -= 1

        return run


def statuses(store: InMemoryStore, workflow_id: str = "wf") -> dict[str, str]:
    return {k: v.value for k, v in store.load(workflow_id).node_statuses().items()}


def test_diamond_runs_in_dependency_order_and_stores_outputs() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("a", calls.action("a"))
    dag.add_node("b", calls.action("b"), depends_on="a")
    dag.add_node("c", calls.action("c"), depends_on="a")

    def join(data: WorkflowData) -> str:
        return f"{data.get_output('b')}+{data.get_output('c')}"

    dag.add_node("d", join, depends_on=["b", "c"])
    store = InMemoryStore()
    result = Workflow(dag, "wf", store).execute()
    assert calls.order[0] == "a" and set(calls.order[1:]) == {"b", "c"}
    assert result.succeeded and result.executed[0] == "a" and sorted(result.executed) == ["a", "b", "c", "d"]
    stored = store.load("wf")
    assert stored.get_output("d") == "b-out+c-out"
    assert set(stored.node_statuses().values()) == {S.COMPLETED}
    assert stored.dag_structure == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert stored.node_history("a").attempts == 1 and stored.node_history("a").duration is not None


def test_wide_level_really_runs_in_parallel() -> None:
    width = 8
    barrier = threading.Barrier(width, timeout=10)  # breaks unless all 8 are inside at once
    dag = DAG()
    for i in range(width):
        dag.add_node(f"n{i}", lambda data: barrier.wait())
    result = Workflow(dag, "wf", max_concurrency=width).execute()
    assert result.succeeded and len(result.completed) == width


def test_max_concurrency_is_respected() -> None:
    calls = Calls()
    dag = DAG()
    for i in range(12):
        dag.add_node(f"n{i}", calls.action(f"n{i}", hold=0.02))
    Workflow(dag, "wf", max_concurrency=3).execute()
    assert sum(calls.counts.values()) == 12
    assert 2 <= calls.max_active <= 3


def test_retries_then_success_records_attempts_and_events() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("flaky", calls.action("flaky", fail_times=2), retries=3, retry_delay=0.001)
    events: list[Any] = []
    store = InMemoryStore()
    Workflow(dag, "wf", store).execute(on_event=events.append)
    assert calls.counts["flaky"] == 3
    history = store.load("wf").node_history("flaky")
    assert history.attempts == 3 and history.error is None
    kinds = [e.kind for e in events if e.node == "flaky"]
    assert kinds.count(EventKind.NODE_RETRYING) == 2 and kinds[-1] is EventKind.NODE_COMPLETED
    assert [e.delay for e in events if e.kind is EventKind.NODE_RETRYING] == [0.001, 0.002]


def test_retries_exhausted_fails_with_the_last_error() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("bad", calls.action("bad", fail_times=99), retries=2, retry_delay=0)
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf", store).execute()
    failure = info.value.failures["bad"]
    assert (failure.attempts, failure.error_type) == (3, "RuntimeError")
    assert "attempt 3" in failure.message
    assert statuses(store) == {"bad": "failed"}


def test_timeout_fails_the_attempt_and_tells_the_action() -> None:
    seen_cancel = threading.Event()

    def slow(data: WorkflowData, ctx: NodeContext) -> None:
        if ctx.wait(5):
            seen_cancel.set()

    dag = DAG()
    dag.add_node("slow", slow, timeout=0.05)
    dag.add_node("after", depends_on="slow")
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf", store).execute()
    assert info.value.failures["slow"].error_type == NodeTimeoutError.__name__
    assert seen_cancel.wait(2), "the timed-out action was not told to stop"
    assert statuses(store) == {"slow": "failed", "after": "skipped"}


def test_timeout_then_retry_succeeds() -> None:
    attempts: list[int] = []

    def sometimes_slow(data: WorkflowData, ctx: NodeContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            ctx.wait(5)
        return "ok"

    dag = DAG()
    dag.add_node("n", sometimes_slow, timeout=0.05, retries=1, retry_delay=0)
    store = InMemoryStore()
    Workflow(dag, "wf", store).execute()
    assert attempts == [1, 2] and store.load("wf").get_output("n") == "ok"


def test_continue_on_error_lets_dependents_run_and_does_not_raise() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("optional", calls.action("optional", fail_times=9), continue_on_error=True)
    dag.add_node("next", calls.action("next"), depends_on="optional")
    store = InMemoryStore()
    result = Workflow(dag, "wf", store).execute()
    assert statuses(store) == {"optional": "failed", "next": "completed"}
    assert result.failed == ["optional"] and not result.succeeded


def test_hard_failure_skips_downstream_and_leaves_unrelated_pending() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("a", calls.action("a"))
    dag.add_node("bad", calls.action("bad", fail_times=9), depends_on="a")
    dag.add_node("ok", calls.action("ok"), depends_on="a")
    dag.add_node("child", calls.action("child"), depends_on="bad")
    dag.add_node("grandchild", calls.action("grandchild"), depends_on="child")
    dag.add_node("unrelated", calls.action("unrelated"), depends_on="ok")
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf", store).execute()
    assert info.value.failed_nodes == ["bad"]
    assert statuses(store) == {
        "a": "completed",
        "bad": "failed",
        "ok": "completed",
        "child": "skipped",
        "grandchild": "skipped",
        "unrelated": "pending",
    }
    assert "child" not in calls.counts and "unrelated" not in calls.counts
    stored = store.load("wf")
    assert stored.node_history("child").error == "dependency 'bad' failed"
    assert stored.node_history("grandchild").error_type == "UpstreamNotCompleted"


def test_skipped_dependency_skips_dependents() -> None:
    store = InMemoryStore()
    dag = DAG()
    dag.add_node("a")
    dag.add_node("b", depends_on="a")
    state = WorkflowData("wf")
    state.set_node_status("a", S.SKIPPED)
    store.save(state)
    Workflow(dag, "wf", store).execute()
    assert statuses(store) == {"a": "skipped", "b": "skipped"}


def test_first_hard_failure_cancels_the_rest_of_its_level() -> None:
    started = threading.Event()

    def fail_fast(data: WorkflowData) -> None:
        raise ValueError("nope")

    def cooperative(data: WorkflowData, ctx: NodeContext) -> str:
        started.set()
        ctx.wait(5)
        ctx.raise_if_cancelled()
        return "finished"

    dag = DAG()
    dag.add_node("bad", fail_fast)
    dag.add_node("long", cooperative)
    for i in range(5):
        dag.add_node(f"queued{i}")
    store = InMemoryStore()
    t0 = time.monotonic()
    with pytest.raises(WorkflowExecutionError):
        Workflow(dag, "wf", store, max_concurrency=2).execute()
    assert time.monotonic() - t0 < 4, "the cooperative sibling was not cancelled"
    result = statuses(store)
    assert result["bad"] == "failed" and result["long"] == "pending"
    assert all(result[f"queued{i}"] == "pending" for i in range(5))


def test_cancel_mid_run_leaves_unreached_nodes_pending_and_saves() -> None:
    wf_holder: dict[str, Workflow] = {}

    def cancel_here(data: WorkflowData) -> str:
        wf_holder["wf"].cancel()
        return "done"

    dag = DAG()
    dag.add_node("first", cancel_here)
    dag.add_node("second", depends_on="first")
    dag.add_node("third", depends_on="second")
    store = InMemoryStore()
    wf = Workflow(dag, "wf", store)
    wf_holder["wf"] = wf
    with pytest.raises(WorkflowCancelledError) as info:
        wf.execute()
    assert info.value.pending == ["second", "third"]
    assert statuses(store) == {"first": "completed", "second": "pending", "third": "pending"}
    wf.execute()  # resumes: the cancel flag is per run
    assert statuses(store) == {"first": "completed", "second": "completed", "third": "completed"}


def test_keyboard_interrupt_saves_state_and_reraises() -> None:
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    # Earlier tests' libraries may have replaced the handler; the notebook kernel uses the default.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    release = threading.Event()

    def interrupt_main(data: WorkflowData, ctx: NodeContext) -> None:
        signal.pthread_kill(main, signal.SIGINT)  # what Jupyter's interrupt button does
        ctx.wait(5)
        ctx.raise_if_cancelled()

    dag = DAG()
    dag.add_node("quick", lambda data: release.set())
    dag.add_node("interrupted", interrupt_main)
    dag.add_node("later", depends_on="interrupted")
    store = InMemoryStore()
    try:
        with pytest.raises(KeyboardInterrupt):
            Workflow(dag, "wf", store).execute()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert statuses(store) == {"quick": "completed", "interrupted": "pending", "later": "pending"}


class SimulatedCrash(BaseException):
    """Not an Exception: the engine must treat it like the process dying."""


@pytest.mark.parametrize("persistence", [Persistence.NODE, Persistence.LEVEL])
def test_crash_then_resume_runs_each_completed_node_exactly_once(persistence: Persistence) -> None:
    calls = Calls()
    crash = {"armed": True}
    numbers: list[int] = []

    def crashing(data: WorkflowData, ctx: NodeContext) -> str:
        calls.counts["crashing"] += 1
        numbers.append(ctx.attempt)
        if crash["armed"]:
            raise SimulatedCrash
        return "ok"

    dag = DAG()
    dag.add_node("a", calls.action("a"))
    dag.add_node("b", calls.action("b"), depends_on="a")
    dag.add_node("c", calls.action("c"), depends_on="a")
    # A crashed attempt counts (when its start was durable): a second attempt is allowed here.
    dag.add_node("crashing", crashing, depends_on=["b", "c"], retries=1)
    dag.add_node("after", calls.action("after"), depends_on="crashing")
    store = InMemoryStore()
    with pytest.raises(SimulatedCrash):
        Workflow(dag, "wf", store, persistence=persistence).execute()
    saved = statuses(store)
    assert saved["a"] == saved["b"] == saved["c"] == "completed"
    assert saved["crashing"] in ("pending", "running") and saved["after"] == "pending"
    crash["armed"] = False
    Workflow(dag, "wf", store, persistence=persistence).execute()
    assert statuses(store) == dict.fromkeys(["a", "b", "c", "crashing", "after"], "completed")
    assert calls.counts == Counter({"a": 1, "b": 1, "c": 1, "crashing": 2, "after": 1})
    # Per-node persistence stored the start: the resumed run continues the crashed one's count.
    assert numbers == ([1, 2] if persistence is Persistence.NODE else [1, 1])


def test_stored_running_node_runs_again() -> None:
    calls = Calls()
    store = InMemoryStore()
    state = WorkflowData("wf")
    state.set_node_status("a", S.COMPLETED)
    state.set_node_status("b", S.RUNNING)  # in flight when a process died
    store.save(state)
    dag = DAG()
    dag.add_node("a", calls.action("a"))
    dag.add_node("b", calls.action("b"), depends_on="a")
    Workflow(dag, "wf", store).execute()
    assert calls.counts == Counter({"b": 1})


class CountingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[list[str], bool]] = []
        self.saves = 0
        self.node_saves = 0

    def save(self, data: WorkflowData) -> None:
        self.saves += 1
        super().save(data)

    def save_node(self, data: WorkflowData, node: str) -> None:
        self.node_saves += 1
        super().save_node(data, node)

    def save_nodes(self, data: WorkflowData, nodes: Sequence[str], run_id: str | None = None) -> None:
        self.written.append((list(nodes), run_id is not None))
        super().save_nodes(data, nodes, run_id)


@pytest.mark.parametrize(
    ("persistence", "saves", "flushes"),
    # NODE: the run record's first write is a full save in a store without its own save_nodes;
    # the last node's end goes into the final save only (a record of it first would be redundant).
    [(Persistence.END, 1, 0), (Persistence.LEVEL, 3, 0), (Persistence.NODE, 2, 4)],
)
def test_persistence_strategies(persistence: Persistence, saves: int, flushes: int) -> None:
    dag = DAG()
    dag.add_node("a")
    dag.add_node("b", depends_on="a")
    dag.add_node("c", depends_on="a")
    dag.add_node("d", depends_on=["b", "c"])
    store = CountingStore()
    Workflow(dag, "wf", store, persistence=persistence, executor="inline").execute()
    assert (store.saves, len(store.written)) == (saves, flushes)
    assert set(statuses(store).values()) == {"completed"}


def test_node_persistence_writes_each_start_with_the_end_before_it() -> None:
    """Persistence.NODE: a node's start is durable before its action runs, and the end of one
    node travels with the start of the next one (one record each); the last node's end is in
    the run's final save, which follows at once."""
    store = CountingStore()
    seen: list[str | None] = []

    def look(data: WorkflowData) -> None:
        seen.append(str(store.node_status("wf", "c")))  # what another process would see

    dag = DAG()
    dag.add_node("a")
    dag.add_node("b", depends_on="a")
    dag.add_node("c", look, depends_on="b")
    Workflow(dag, "wf", store, persistence=Persistence.NODE, executor="inline").execute()
    assert store.written == [
        (["a"], True),  # the run record and a's start
        (["a", "b"], False),
        (["b", "c"], False),
    ]
    assert seen == ["running"]
    assert store.saves == 2 and statuses(store)["c"] == "completed"  # the final save holds c's end


class BrokenStore(InMemoryStore):
    def save(self, data: WorkflowData) -> None:
        raise StoreIOError("write", f"{data.id}.fb", OSError(28, "No space left on device"))


def test_execution_error_takes_precedence_and_reports_the_save_error() -> None:
    dag = DAG()
    dag.add_node("bad", lambda data: 1 / 0)
    wf = Workflow(dag, "wf", BrokenStore())
    with pytest.raises(WorkflowExecutionError) as info:
        wf.execute()
    assert isinstance(info.value.save_error, StoreIOError)
    assert "No space left" in str(info.value) and "ZeroDivisionError" in str(info.value)
    assert wf.data is not None and wf.data.get_node_status("bad") is S.FAILED


def test_save_error_alone_is_raised_and_state_kept_in_memory() -> None:
    dag = DAG()
    dag.add_node("a", lambda data: 1)
    dag.add_node("b", lambda data: 2, depends_on="a")
    wf = Workflow(dag, "wf", BrokenStore())
    with pytest.raises(StoreIOError) as info:
        wf.execute()
    assert any("Workflow.data" in note for note in info.value.__notes__)
    # The save after level 0 failed, so the run stopped before b.
    assert wf.data is not None and wf.data.node_statuses() == {"a": S.COMPLETED, "b": S.PENDING}


class UnreadableStore(InMemoryStore):
    def load(self, workflow_id: str) -> WorkflowData:
        raise CorruptStateError(f"{workflow_id}.fb", "bad checksum")


def test_load_error_other_than_not_found_stops_before_running() -> None:
    calls = Calls()
    dag = DAG()
    dag.add_node("a", calls.action("a"))
    store = UnreadableStore()
    with pytest.raises(CorruptStateError):
        Workflow(dag, "wf", store).execute()
    assert not calls.counts and store.list_workflows() == []


def test_state_naming_unknown_nodes_is_refused() -> None:
    store = InMemoryStore()
    state = WorkflowData("wf")
    state.set_node_status("ghost", S.COMPLETED)
    store.save(state)
    dag = DAG()
    dag.add_node("a")
    with pytest.raises(StateMismatchError, match="ghost"):
        Workflow(dag, "wf", store).execute()
    assert statuses(store) == {"ghost": "completed"}


def test_new_nodes_added_to_the_dag_run_on_resume() -> None:
    store = InMemoryStore()
    dag = DAG()
    dag.add_node("a")
    Workflow(dag, "wf", store).execute()
    dag.add_node("b", depends_on="a")
    Workflow(dag, "wf", store).execute()
    assert statuses(store) == {"a": "completed", "b": "completed"}


@pytest.mark.parametrize("bad_id", ["", "../x", "a/b", "/abs"])
def test_invalid_workflow_ids_are_refused(bad_id: str) -> None:
    with pytest.raises(InvalidWorkflowIdError):
        Workflow(DAG(), bad_id)


def test_action_objects_and_context_opt_in() -> None:
    class Double:
        def execute(self, data: WorkflowData) -> int:
            return int(data.get("x")) * 2

    class WithContext:
        def execute(self, data: WorkflowData, ctx: NodeContext) -> str:
            return f"{ctx.node}#{ctx.attempt}/{ctx.max_attempts}"

    store = InMemoryStore()
    state = WorkflowData("wf")
    state.set("x", 21)
    store.save(state)
    dag = DAG()
    dag.add_node("double", Double())
    dag.add_node("ctx", WithContext(), retries=2)
    Workflow(dag, "wf", store).execute()
    stored = store.load("wf")
    assert stored.get_output("double") == 42 and stored.get_output("ctx") == "ctx#1/3"


def test_unstorable_output_fails_the_node_with_a_clear_error() -> None:
    dag = DAG()
    dag.add_node("obj", lambda data: object())
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf").execute()
    failure = info.value.failures["obj"]
    assert "cannot store output of node 'obj'" in failure.message
    assert "not JSON serializable" in failure.message


def test_events_cover_a_whole_run_and_observer_errors_are_contained() -> None:
    dag = DAG()
    dag.add_node("a")
    dag.add_node("b", lambda data: 1 / 0, depends_on="a")
    dag.add_node("c", depends_on="b")
    seen: list[Any] = []
    wf = Workflow(dag, "wf")

    def broken(event: Any) -> None:
        raise ZeroDivisionError  # a broken observer must not break the run

    wf.subscribe(broken)
    unsubscribe = wf.subscribe(seen.append)
    with pytest.raises(WorkflowExecutionError):
        wf.execute()
    kinds = [e.kind for e in seen]
    assert kinds[0] is EventKind.RUN_STARTED and kinds[-1] is EventKind.RUN_FINISHED
    assert {
        EventKind.NODE_STARTED,
        EventKind.NODE_COMPLETED,
        EventKind.NODE_FAILED,
        EventKind.NODE_SKIPPED,
        EventKind.LEVEL_COMPLETED,
        EventKind.STATE_SAVED,
    } <= set(kinds)
    unsubscribe()
    count = len(seen)
    with pytest.raises(WorkflowExecutionError):
        wf.execute()
    assert len(seen) == count


def test_data_shared_between_nodes_is_thread_safe() -> None:
    dag = DAG()

    def bump(data: WorkflowData) -> None:
        for _ in range(200):
            with data.lock:
                data.set("n", data.get("n", 0) + 1)

    for i in range(8):
        dag.add_node(f"w{i}", bump)
    store = InMemoryStore()
    Workflow(dag, "wf", store, max_concurrency=8).execute()
    assert store.load("wf").get("n") == 1600


def test_missing_state_is_created_and_not_found_is_only_raised_by_load() -> None:
    store = InMemoryStore()
    with pytest.raises(WorkflowNotFoundError):
        store.load("wf")
    dag = DAG()
    dag.add_node("a")
    Workflow(dag, "wf", store).execute()
    assert store.list_workflows() == ["wf"]


@pytest.mark.timeout(10)
def test_crash_in_a_worker_thread_propagates_without_saving() -> None:
    def boom(data: WorkflowData) -> None:
        raise SimulatedCrash

    dag = DAG()
    dag.add_node("boom", boom)
    dag.add_node("sibling", lambda data: time.sleep(0.05))
    store = InMemoryStore()
    with pytest.raises(SimulatedCrash):
        Workflow(dag, "wf", store).execute()
    assert store.list_workflows() == []  # like a dying process: nothing saved after the crash


# --- the runner scheduler: the calling thread takes part, helpers join as work waits -----------


@pytest.mark.timeout(20)
def test_a_retry_is_not_held_up_by_a_slow_sibling() -> None:
    finished: dict[str, float] = {}
    attempts = Counter[str]()

    def slow(data: WorkflowData) -> None:
        time.sleep(1.0)
        finished["slow"] = time.monotonic()

    def flaky(data: WorkflowData) -> None:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise RuntimeError("first attempt fails")
        finished["flaky"] = time.monotonic()

    dag = DAG()
    dag.add_node("slow", slow)
    dag.add_node("flaky", flaky, retries=1, retry_delay=0.05)
    Workflow(dag, "wf").execute()
    assert attempts["flaky"] == 2
    assert finished["flaky"] < finished["slow"] - 0.5, "the retry waited for the slow sibling"


def test_observers_are_called_one_at_a_time_from_any_runner() -> None:
    inside = 0
    overlaps = 0
    threads: set[int] = set()
    guard = threading.Lock()

    def observer(event: Any) -> None:
        nonlocal inside, overlaps
        with guard:
            inside += 1
            overlaps += inside > 1
            threads.add(threading.get_ident())
        time.sleep(0.001)  # widen the window a concurrent call would need
        with guard:
            inside -= 1

    dag = DAG()
    for i in range(16):
        dag.add_node(f"n{i}", lambda data: time.sleep(0.02))
    result = Workflow(dag, "wf", max_concurrency=8).execute(on_event=observer)
    assert result.succeeded
    assert overlaps == 0
    assert len(threads) > 1, "every event came from one thread: the level did not run in parallel"


def test_helper_threads_are_reused_across_runs() -> None:
    def runners() -> int:
        return sum(t.name == "flow-workbench-runner" for t in threading.enumerate())

    dag = DAG()
    for i in range(6):
        dag.add_node(f"n{i}", lambda data: time.sleep(0.01))
    Workflow(dag, "warm-up", max_concurrency=6).execute()
    before = runners()
    for run in range(10):
        Workflow(dag, f"wf{run}", max_concurrency=6).execute()
    assert runners() <= max(before, 5) + 1  # at most max_concurrency - 1 helpers per run, reused


@pytest.mark.timeout(10)
def test_crash_on_a_helper_thread_propagates_without_saving() -> None:
    crashed = threading.Event()

    def slow_first(data: WorkflowData) -> None:  # taken first, by the calling thread
        crashed.wait(5)

    def boom(data: WorkflowData) -> None:  # so this one runs on a helper thread
        crashed.set()
        raise SimulatedCrash

    dag = DAG()
    dag.add_node("slow", slow_first)
    dag.add_node("boom", boom)
    dag.add_node("after", depends_on=["slow", "boom"])
    store = InMemoryStore()
    with pytest.raises(SimulatedCrash):
        Workflow(dag, "wf", store).execute()
    assert store.list_workflows() == []


@pytest.mark.timeout(60)
def test_a_forked_child_runs_levels_in_parallel() -> None:
    import multiprocessing

    dag = DAG()
    for i in range(4):
        dag.add_node(f"n{i}", lambda data: time.sleep(0.01))
    Workflow(dag, "parent", max_concurrency=4).execute()  # the parent now has idle helper threads
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply(_run_wide_level_with_barrier, (4,)) is True


def _run_wide_level_with_barrier(width: int) -> bool:
    barrier = threading.Barrier(width, timeout=10)  # breaks unless all run at once
    dag = DAG()
    for i in range(width):
        dag.add_node(f"n{i}", lambda data: barrier.wait())
    return Workflow(dag, "child", max_concurrency=width).execute().succeeded


def test_a_caller_supplied_thread_pool_runs_the_actions() -> None:
    from concurrent.futures import ThreadPoolExecutor

    calls = Calls()
    dag = DAG()
    for i in range(8):
        dag.add_node(f"n{i}", calls.action(f"n{i}", hold=0.02))
    dag.add_node("slow", lambda data, ctx: ctx.wait(5), timeout=0.1, continue_on_error=True)
    store = InMemoryStore()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="callers-pool") as pool:
        result = Workflow(dag, "wf", store, executor=pool, max_concurrency=3).execute()
    assert sorted(result.completed) == [f"n{i}" for i in range(8)]
    assert calls.threads and all(name.startswith("callers-pool") for name in calls.threads)
    assert 2 <= calls.max_active <= 3
    assert store.load("wf").node_history("slow").error_type == "NodeTimeoutError"


# --- review fixes: nothing after a crash, cancel reaches running actions, inline executors ------


@pytest.mark.timeout(20)
def test_nothing_is_recorded_or_saved_after_a_crash_returned_from_execute() -> None:
    helper_started = threading.Event()
    helper_done = threading.Event()

    def crash_when_the_helper_runs(data: WorkflowData) -> None:  # the calling thread takes it first
        helper_started.wait(5)
        raise SimulatedCrash

    def slow_on_a_helper(data: WorkflowData) -> str:
        helper_started.set()
        time.sleep(0.5)
        helper_done.set()
        return "late"

    dag = DAG()
    dag.add_node("crash", crash_when_the_helper_runs)
    dag.add_node("slow", slow_on_a_helper)
    store = InMemoryStore()
    wf = Workflow(dag, "wf", store, persistence=Persistence.NODE)
    events: list[Any] = []
    with pytest.raises(SimulatedCrash):
        wf.execute(on_event=events.append)
    count = len(events)
    stored = store.load("wf")  # the starts were durable (per-node persistence), nothing after
    assert helper_done.wait(5)
    time.sleep(0.2)  # time for a dropped result to have been recorded, were it not dropped
    assert store.load("wf") == stored
    assert stored.get_node_status("slow") is S.RUNNING and stored.get_node_status("crash") is S.RUNNING
    assert wf.data is not None and wf.data.get_node_status("slow") is S.RUNNING
    assert len(events) == count


@pytest.mark.timeout(20)
def test_cancel_reaches_actions_while_every_thread_is_busy() -> None:
    dag = DAG()
    for name in ("a", "b"):
        dag.add_node(name, lambda data, ctx: ctx.wait(10) and ctx.raise_if_cancelled())
    dag.add_node("timed", lambda data, ctx: ctx.wait(10) and ctx.raise_if_cancelled(), timeout=30)
    store = InMemoryStore()
    wf = Workflow(dag, "wf", store, max_concurrency=3)
    threading.Timer(0.3, wf.cancel).start()
    started = time.monotonic()
    with pytest.raises(WorkflowCancelledError):
        wf.execute()
    assert time.monotonic() - started < 3, "a running action was not told about the cancel"
    assert statuses(store) == {"a": "pending", "b": "pending", "timed": "pending"}


def test_an_inline_executor_instance_runs_one_node_at_a_time_in_the_calling_thread() -> None:
    from flow_workbench import InlineExecutor

    calls = Calls()
    dag = DAG()
    for i in range(4):
        dag.add_node(f"n{i}", calls.action(f"n{i}", hold=0.02))
    Workflow(dag, "wf", executor=InlineExecutor()).execute()
    assert calls.max_active == 1 and calls.threads == {threading.current_thread().name}


def test_an_executor_that_refuses_work_fails_the_node_not_the_run() -> None:
    from concurrent.futures import Executor, Future

    class Closed(Executor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            raise RuntimeError("cannot schedule new futures after shutdown")

    dag = DAG()
    dag.add_node("a")
    store = InMemoryStore()
    with pytest.raises(WorkflowExecutionError) as info:
        Workflow(dag, "wf", store, executor=Closed()).execute()
    assert "after shutdown" in info.value.failures["a"].message
    assert statuses(store) == {"a": "failed"}  # saved, like any failure


def test_helper_threads_never_lose_a_job_when_idle_ones_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from flow_workbench import helpers

    monkeypatch.setattr(helpers, "IDLE_SECONDS", 0.002)
    pool = helpers.HelperThreads("test-helpers")
    done = threading.Semaphore(0)
    for round_ in range(100):
        for _ in range(3):
            pool.start(done.release)
        time.sleep(0.002 * (round_ % 3))  # around the idle timeout: threads leave as jobs arrive
    assert all(done.acquire(timeout=5) for _ in range(300))


def test_a_process_pool_is_refused_with_the_alternative_named() -> None:
    from concurrent.futures import ProcessPoolExecutor

    dag = DAG()
    dag.add_node("a")
    refused = pytest.raises(ValueError, match=r"dask\.distributed Client")
    with ProcessPoolExecutor(max_workers=1) as pool, refused:
        Workflow(dag, "wf", executor=pool)


# --- scheduling: dependency-driven by default, level by level on request -------------------------


def skewed_dag(a1: Any) -> DAG:
    """Branch A: a1 then a2; branch B: b1 then b2 (quick). Levels: [a1, b1], [a2, b2]."""
    dag = DAG()
    dag.add_node("a1", a1)
    dag.add_node("a2", lambda data: time.sleep(0.01), depends_on="a1")
    dag.add_node("b1", lambda data: time.sleep(0.01))
    dag.add_node("b2", lambda data: data.set("b2 ran", True), depends_on="b1")
    return dag


def position(events: list[Any], kind: EventKind, node: str) -> int:
    return next(i for i, e in enumerate(events) if e.kind is kind and e.node == node)


@pytest.mark.timeout(30)
def test_a_quick_dependent_does_not_wait_for_a_slow_node_it_does_not_depend_on() -> None:
    def a1(data: WorkflowData) -> bool:  # slow until b2 has run: at once when scheduled by dependencies
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if data.get("b2 ran"):
                return True
            time.sleep(0.01)
        return False

    events: list[Any] = []
    store = InMemoryStore()
    Workflow(skewed_dag(a1), "wf", store).execute(on_event=events.append)
    assert store.load("wf").get_output("a1") is True, "b2 waited for a1, which it does not depend on"
    assert position(events, EventKind.NODE_STARTED, "b2") < position(events, EventKind.NODE_COMPLETED, "a1")
    assert position(events, EventKind.NODE_COMPLETED, "a1") < position(events, EventKind.NODE_STARTED, "a2")
    assert set(statuses(store).values()) == {"completed"}


def test_level_scheduling_runs_level_by_level_like_the_go_library() -> None:
    events: list[Any] = []
    store = InMemoryStore()
    wf = Workflow(skewed_dag(lambda data: time.sleep(0.1)), "wf", store, scheduling="level")
    wf.execute(on_event=events.append)
    level_0 = next(i for i, e in enumerate(events) if e.kind is EventKind.LEVEL_COMPLETED and e.level == 0)
    assert position(events, EventKind.NODE_COMPLETED, "a1") < level_0
    assert level_0 < position(events, EventKind.NODE_STARTED, "b2")
    assert set(statuses(store).values()) == {"completed"}


def test_an_unknown_scheduling_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="scheduling must be one of 'dependencies', 'level'"):
        Workflow(DAG(), "wf", scheduling="fastest")  # type: ignore[arg-type]


class SnapshotStore(InMemoryStore):
    """Keeps the statuses of every full save (checkpoints and the final save)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[dict[str, str]] = []

    def save(self, data: WorkflowData) -> None:
        self.snapshots.append({k: v.value for k, v in data.node_statuses().items()})
        super().save(data)


@pytest.mark.timeout(30)
def test_a_level_checkpoint_is_saved_once_a_level_has_finished_and_holds_later_progress() -> None:
    b2_done = threading.Event()
    dag = DAG()
    dag.add_node("a1", lambda data: b2_done.wait(5))
    dag.add_node("a2", depends_on="a1")
    dag.add_node("b1")
    dag.add_node("b2", lambda data: b2_done.set(), depends_on="b1")
    store = SnapshotStore()
    Workflow(dag, "wf", store, persistence=Persistence.LEVEL).execute()
    checkpoint, final = store.snapshots  # level 0's checkpoint; the last level's is the final save
    assert checkpoint == {"a1": "completed", "b1": "completed", "b2": "completed", "a2": "pending"}
    assert set(final.values()) == {"completed"}


# --- retries: every run has the whole budget ------------------------------------------------------


def test_every_run_gives_a_node_its_full_retry_budget_after_reset_failed() -> None:
    seen: list[tuple[int, int]] = []

    def always_fails(data: WorkflowData, ctx: NodeContext) -> None:
        seen.append((ctx.attempt, ctx.max_attempts))
        raise RuntimeError(f"attempt {ctx.attempt}")

    dag = DAG()
    dag.add_node("flaky", always_fails, retries=1, retry_delay=0)
    store = InMemoryStore()
    wf = Workflow(dag, "wf", store)
    with pytest.raises(WorkflowExecutionError):
        wf.execute()
    assert wf.reset_failed() == ["flaky"]
    events: list[Any] = []
    with pytest.raises(WorkflowExecutionError) as info:
        wf.execute(on_event=events.append)
    assert seen == [(1, 2), (2, 2), (1, 2), (2, 2)]
    assert info.value.failures["flaky"].attempts == 2
    assert "(after 2 attempt(s))" in str(info.value)
    assert [e.attempt for e in events if e.kind is EventKind.NODE_STARTED] == [1, 2]
    # The stored history keeps counting every attempt ever made.
    assert store.load("wf").node_history("flaky").attempts == 4


class FailingFlushStore(InMemoryStore):
    """Per-node writes fail from the second one on (a full disk after the run started)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def save_nodes(self, data: WorkflowData, nodes: Sequence[str], run_id: str | None = None) -> None:
        self.flushes += 1
        if self.flushes > 1:
            raise StoreIOError("append to journal", "wf.journal", OSError(28, "No space left on device"))
        super().save_nodes(data, nodes, run_id)


def test_a_node_whose_start_could_not_be_written_does_not_run() -> None:
    """Persistence.NODE: the end of a and the start of b are one write; when it fails, b (started
    in memory) must not run: its start was never durable, and the run stops."""
    ran: list[str] = []
    dag = DAG()
    dag.add_node("a", lambda data: ran.append("a"))
    dag.add_node("b", lambda data: ran.append("b"), depends_on="a")
    wf = Workflow(dag, "wf", FailingFlushStore(), persistence=Persistence.NODE, executor="inline")
    with pytest.raises(StoreIOError):
        wf.execute()
    assert ran == ["a"]
    assert wf.data is not None and wf.data.get_node_status("b") is S.PENDING
    assert [a.outcome for a in wf.data.attempt_log("b")] == ["cancelled"]
