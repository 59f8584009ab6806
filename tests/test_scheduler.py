"""Scheduler: dependency-driven and level order, retries, failures, skips, cancel; fake runner, no store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from flow_workbench import DAG, NodeStatus
from flow_workbench.node import Node, NodeCancelledError
from flow_workbench.scheduler import Scheduler, Scheduling

S = NodeStatus
WAIT = 5.0  # upper bound for waits that end early in a correct scheduler


@dataclass
class FakeAttempt:
    node: Node
    number: int
    level: int


class FakeRunner:
    """An AttemptRunner that logs every call in order; actions get ``(runner, attempt)``."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.stopping = threading.Event()
        self.threads: set[str] = set()
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()
        self.scheduler: Scheduler[FakeAttempt] | None = None
        #: Attempts started since the last flush, and attempts that ran before one (must not be).
        self.unflushed: set[tuple[str, int]] = set()
        self.ran_unflushed: list[tuple[str, int]] = []
        self.flushes = 0

    def index(self, *entry: Any) -> int:
        return self.log.index(entry)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [entry[1:] for entry in self.log if entry[0] == kind]

    # --- AttemptRunner -------------------------------------------------------------------------

    def start(self, node: Node, number: int, level: int) -> FakeAttempt:
        self.log.append(("start", node.name, number))
        with self._count:
            self.unflushed.add((node.name, number))
        return FakeAttempt(node, number, level)

    def perform(self, attempt: FakeAttempt) -> tuple[Any, BaseException | None]:
        with self._count:
            if (attempt.node.name, attempt.number) in self.unflushed:
                self.ran_unflushed.append((attempt.node.name, attempt.number))
            self.threads.add(threading.current_thread().name)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return attempt.node.run(self, attempt), None  # type: ignore[arg-type]
        except BaseException as error:
            return None, error
        finally:
            with self._count:
                self.active -= 1

    def complete(self, attempt: FakeAttempt, output: Any) -> BaseException | None:
        self.log.append(("completed", attempt.node.name, attempt.number))
        return None

    def ended_by_cancel(self, attempt: FakeAttempt, error: BaseException) -> bool:
        if isinstance(error, NodeCancelledError) and self.stopping.is_set():
            self.log.append(("cancelled", attempt.node.name))
            return True
        return False

    def retrying(self, attempt: FakeAttempt, error: BaseException, delay: float) -> None:
        self.log.append(("retrying", attempt.node.name, attempt.number))

    def left_pending(self, attempt: FakeAttempt, error: BaseException) -> None:
        self.log.append(("left pending", attempt.node.name, attempt.number))

    def failed(self, attempt: FakeAttempt, error: BaseException) -> None:
        self.log.append(("failed", attempt.node.name, attempt.number))

    def skipped(self, name: str, because: str) -> None:
        self.log.append(("skipped", name, because))

    def retry_dropped(self, node: Node) -> None:
        self.log.append(("retry dropped", node.name))

    def level_completed(self, index: int) -> None:
        self.log.append(("level", index))

    def stop_attempts(self) -> None:
        self.stopping.set()

    def unstarted(self, attempt: FakeAttempt) -> None:
        self.log.append(("unstarted", attempt.node.name, attempt.number))

    def flush(self) -> None:
        with self._count:
            self.unflushed.clear()
            self.flushes += 1


def run(
    dag: DAG,
    *,
    statuses: Mapping[str, NodeStatus] | None = None,
    scheduling: Scheduling = "dependencies",
    max_runners: int = 16,
    cancel: threading.Event | None = None,
) -> tuple[FakeRunner, Scheduler[FakeAttempt]]:
    runner = FakeRunner()
    scheduler = Scheduler(
        dag,
        statuses or {},
        runner,
        scheduling=scheduling,
        max_runners=max_runners,
        cancel=cancel,
    )
    runner.scheduler = scheduler
    scheduler.run()
    return runner, scheduler


def sleeps(seconds: float) -> Callable[[FakeRunner, FakeAttempt], None]:
    return lambda runner, attempt: time.sleep(seconds)


def fails(runner: FakeRunner, attempt: FakeAttempt) -> None:
    raise RuntimeError(f"{attempt.node.name} attempt {attempt.number}")


def skewed(a1: Callable[[FakeRunner, FakeAttempt], Any]) -> DAG:
    """Branch A: a1 (slow) then a2; branch B: b1 (quick) then b2. Levels: [a1, b1], [a2, b2]."""
    dag = DAG()
    dag.add_node("a1", a1)
    dag.add_node("a2", sleeps(0.01), depends_on="a1")
    dag.add_node("b1", sleeps(0.01))
    dag.add_node("b2", sleeps(0.01), depends_on="b1")
    return dag


# --- order --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_quick_dependent_starts_before_the_slow_sibling_of_its_dependency_ends() -> None:
    saw_b2 = threading.Event()

    def a1(runner: FakeRunner, attempt: FakeAttempt) -> None:
        # Slow until b2 has started: at most WAIT seconds, at once in a dependency-driven scheduler.
        for _ in range(int(WAIT / 0.01)):
            if ("start", "b2", 1) in runner.log:
                saw_b2.set()
                return
            time.sleep(0.01)

    runner, scheduler = run(skewed(a1))
    assert saw_b2.is_set(), "b2 waited for a1, which it does not depend on"
    assert runner.index("start", "b2", 1) < runner.index("completed", "a1", 1)
    assert runner.index("completed", "b1", 1) < runner.index("start", "b2", 1)
    assert runner.index("completed", "a1", 1) < runner.index("start", "a2", 1)
    assert not scheduler.open and scheduler.attempts == dict.fromkeys(["a1", "a2", "b1", "b2"], 1)


def test_level_scheduling_starts_a_level_once_the_previous_one_has_finished() -> None:
    runner, _ = run(skewed(sleeps(0.1)), scheduling="level")
    assert runner.index("completed", "a1", 1) < runner.index("level", 0) < runner.index("start", "b2", 1)
    assert runner.index("level", 0) < runner.index("start", "a2", 1)
    assert runner.of("level") == [(0,), (1,)]


@pytest.mark.timeout(30)
def test_levels_are_completed_in_order_after_every_node_of_them_finished() -> None:
    b2_done = threading.Event()
    dag = DAG()
    dag.add_node("a1", lambda runner, attempt: b2_done.wait(WAIT))
    dag.add_node("a2", depends_on="a1")
    dag.add_node("b1")
    dag.add_node("b2", lambda runner, attempt: b2_done.set(), depends_on="b1")
    runner, _ = run(dag)
    # Level 1's b2 finished first; level 1 is completed only after level 0 (a1) and a2.
    assert runner.index("completed", "b2", 1) < runner.index("completed", "a1", 1)
    assert runner.index("completed", "a1", 1) < runner.index("level", 0)
    assert runner.index("completed", "a2", 1) < runner.index("level", 1)
    assert runner.of("level") == [(0,), (1,)]


def test_a_dependency_chain_runs_on_the_calling_thread_without_helpers() -> None:
    dag = DAG()
    previous: list[str] = []
    for i in range(50):
        dag.add_node(f"n{i}", lambda runner, attempt: None, depends_on=previous)
        previous = [f"n{i}"]
    runner, _ = run(dag)
    assert [entry[0] for entry in runner.of("completed")] == [f"n{i}" for i in range(50)]
    assert runner.threads == {threading.current_thread().name}


def test_max_runners_bounds_the_attempts_in_flight() -> None:
    dag = DAG()
    for i in range(6):
        dag.add_node(f"root{i}", sleeps(0.02))
        dag.add_node(f"child{i}", sleeps(0.02), depends_on=f"root{i}")
    runner, scheduler = run(dag, max_runners=3)
    assert len(runner.of("completed")) == 12 and not scheduler.open
    assert 2 <= runner.max_active <= 3


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_retry_is_not_held_up_by_a_slow_sibling() -> None:
    flaky_done = threading.Event()

    def flaky(runner: FakeRunner, attempt: FakeAttempt) -> None:
        if attempt.number == 1:
            raise RuntimeError("first attempt fails")
        flaky_done.set()

    dag = DAG()
    dag.add_node("slow", lambda runner, attempt: flaky_done.wait(WAIT))
    dag.add_node("flaky", flaky, retries=1, retry_delay=0.05)
    dag.add_node("after_flaky", depends_on="flaky")
    runner, _ = run(dag)
    assert flaky_done.is_set(), "the retry waited for the slow sibling"
    assert runner.index("retrying", "flaky", 1) < runner.index("completed", "flaky", 2)
    assert runner.index("start", "after_flaky", 1) < runner.index("completed", "slow", 1)


def test_attempt_numbers_count_within_each_run() -> None:
    dag = DAG()
    dag.add_node("bad", fails, retries=1, retry_delay=0)
    for _ in range(2):  # a second run (after a reset) gets the whole budget again
        runner, scheduler = run(dag)
        assert runner.log == [
            ("start", "bad", 1),
            ("retrying", "bad", 1),
            ("start", "bad", 2),
            ("failed", "bad", 2),
            ("level", 0),
        ]
        assert scheduler.attempts == {"bad": 2} and scheduler.failed == ["bad"]


# --- failures, skips, cancellation ----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_first_hard_failure_starts_nothing_new_and_lets_started_attempts_finish() -> None:
    def bad(runner: FakeRunner, attempt: FakeAttempt) -> None:
        time.sleep(0.05)  # long's attempt has started by now
        raise ValueError("nope")

    def long(runner: FakeRunner, attempt: FakeAttempt) -> str:
        assert runner.stopping.wait(WAIT), "the running attempt was not told the run stops"
        return "finished anyway"

    dag = DAG()
    dag.add_node("bad", bad)
    dag.add_node("long", long)
    dag.add_node("after_long", depends_on="long")
    dag.add_node("after_bad", depends_on="bad")
    dag.add_node("grandchild", depends_on=["after_bad", "long"])
    for i in range(3):
        dag.add_node(f"queued{i}")
    runner, scheduler = run(dag, max_runners=2)
    started = {entry[0] for entry in runner.of("start")}
    assert started == {"bad", "long"}
    assert ("completed", "long", 1) in runner.log and ("failed", "bad", 1) in runner.log
    assert runner.of("skipped") == [("after_bad", "bad"), ("grandchild", "bad")]
    assert scheduler.open == {"after_long", "queued0", "queued1", "queued2"}


def test_nodes_blocked_by_an_earlier_failure_or_skip_are_skipped_when_ready() -> None:
    dag = DAG()
    dag.add_node("old_failure")
    dag.add_node("tolerated", continue_on_error=True)
    dag.add_node("old_skip")
    dag.add_node("a", sleeps(0.01))
    dag.add_node("x", depends_on=["old_failure", "a"])
    dag.add_node("y", depends_on="x")
    dag.add_node("z", depends_on="old_skip")
    dag.add_node("ok", depends_on=["tolerated", "a"])
    statuses = {"old_failure": S.FAILED, "tolerated": S.FAILED, "old_skip": S.SKIPPED}
    runner, scheduler = run(dag, statuses=statuses)
    assert sorted(runner.of("skipped")) == [("x", "old_failure"), ("y", "x"), ("z", "old_skip")]
    assert runner.index("completed", "a", 1) < runner.index("skipped", "x", "old_failure")
    assert {entry[0] for entry in runner.of("completed")} == {"a", "ok"}
    assert not scheduler.open and not scheduler.failed  # earlier failures do not stop this run


def test_continue_on_error_fails_the_node_and_lets_dependents_run() -> None:
    dag = DAG()
    dag.add_node("optional", fails, continue_on_error=True)
    dag.add_node("next", depends_on="optional")
    runner, scheduler = run(dag)
    assert runner.of("failed") == [("optional", 1)] and ("completed", "next", 1) in runner.log
    assert not scheduler.stopped and not scheduler.failed


@pytest.mark.timeout(30)
def test_cancel_starts_nothing_new_and_leaves_unreached_nodes_open() -> None:
    cancel = threading.Event()

    def cancel_here(runner: FakeRunner, attempt: FakeAttempt) -> str:
        cancel.set()
        return "done"

    def cooperative(runner: FakeRunner, attempt: FakeAttempt) -> None:
        runner.stopping.wait(WAIT)
        raise NodeCancelledError("told to stop")

    dag = DAG()
    dag.add_node("first", cancel_here)
    dag.add_node("second", depends_on="first")
    dag.add_node("running", cooperative)
    runner, scheduler = run(dag, cancel=cancel)
    assert scheduler.stopped and ("cancelled", "running") in runner.log
    assert ("start", "second", 1) not in runner.log
    assert scheduler.open == {"second", "running"}


def test_a_stop_drops_waiting_retries_and_leaves_failing_attempts_pending() -> None:
    release = threading.Event()

    def fails_after_release(runner: FakeRunner, attempt: FakeAttempt) -> None:
        release.wait(WAIT)
        raise RuntimeError("fails while the run stops")

    def flaky_then_stop(runner: FakeRunner, attempt: FakeAttempt) -> None:
        raise RuntimeError("retry me later")

    def bad(runner: FakeRunner, attempt: FakeAttempt) -> None:
        while ("retrying", "waits", 1) not in runner.log:
            time.sleep(0.005)
        raise ValueError("hard failure")

    dag = DAG()
    dag.add_node("waits", flaky_then_stop, retries=3, retry_delay=60)
    dag.add_node("bad", bad)
    dag.add_node("running", fails_after_release, retries=2)

    def releaser(runner: Any, attempt: int) -> None:
        if runner.stopping.wait(WAIT):
            release.set()

    dag.add_node("releaser", releaser)
    runner, scheduler = run(dag, max_runners=4)
    assert ("retry dropped", "waits") in runner.log
    assert ("left pending", "running", 1) in runner.log
    assert scheduler.failed == ["bad"] and scheduler.open == {"waits", "running"}


def test_an_unknown_scheduling_mode_is_refused_with_the_modes_named() -> None:
    dag = DAG()
    dag.add_node("a")
    with pytest.raises(ValueError, match="'dependencies', 'level'"):
        Scheduler(dag, {}, FakeRunner(), scheduling="eager", max_runners=1)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_a_crash_on_a_helper_thread_is_raised_by_run() -> None:
    class Crash(BaseException):
        pass

    crashed = threading.Event()

    def first(runner: FakeRunner, attempt: FakeAttempt) -> None:  # the calling thread runs it
        crashed.wait(WAIT)

    def crash(runner: FakeRunner, attempt: FakeAttempt) -> None:
        crashed.set()
        raise Crash

    dag = DAG()
    dag.add_node("first", first)
    dag.add_node("crash", crash)
    dag.add_node("after", depends_on=["first", "crash"])
    with pytest.raises(Crash):
        run(dag)


@pytest.mark.parametrize("scheduling", ["dependencies", "level"])
def test_every_start_is_flushed_before_its_action_runs(scheduling: Scheduling) -> None:
    """Per-node persistence needs a started attempt durable before its action runs (a process
    that dies in the action must leave a visible running attempt): the scheduler flushes the
    runner after starting attempts, on whichever thread then runs them."""
    others = {f"s{branch}" for branch in range(5)}

    def fails_once_the_others_started(runner: FakeRunner, attempt: FakeAttempt) -> None:
        # A final failure stops the run starting nodes; failing before every other node started
        # (a slow r2 on a busy machine) would leave one unstarted and the count below short.
        deadline = time.monotonic() + WAIT
        while not others <= {entry[0] for entry in runner.of("start")} and time.monotonic() < deadline:
            time.sleep(0.001)
        fails(runner, attempt)

    dag = DAG()
    for branch in range(6):
        dag.add_node(f"r{branch}", sleeps(0.002 * (branch % 3)))
        action = fails_once_the_others_started if branch == 5 else sleeps(0.001)
        dag.add_node(f"s{branch}", action, depends_on=f"r{branch}", retries=2, retry_delay=0.0)
    runner, _ = run(dag, scheduling=scheduling, max_runners=4)
    assert len(runner.of("start")) == 14  # 12 nodes, s5 three times
    assert runner.ran_unflushed == []
    assert runner.flushes >= 1


def test_attempts_given_to_the_scheduler_count_as_made() -> None:
    """A run resuming one whose process died continues its attempt count for the crashed node."""
    dag = DAG()
    dag.add_node("flaky", fails, retries=3, retry_delay=0.0)
    runner = FakeRunner()
    scheduler = Scheduler(dag, {}, runner, max_runners=1, attempts={"flaky": 2})
    runner.scheduler = scheduler
    scheduler.run()
    assert runner.of("start") == [("flaky", 3), ("flaky", 4)]
    assert runner.of("failed") == [("flaky", 4)]
