"""Workflow.execute: load or create the state, run the DAG level by level, persist, emit events."""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

from .dag import DAG
from .data import WorkflowData
from .errors import (
    ConcurrentEditError,
    NodeFailure,
    StateMismatchError,
    StoreError,
    VersionConflictError,
    WorkflowCancelledError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
)
from .events import Event, EventBus, EventKind, Observer
from .executors import NodeExecutor, as_node_executor
from .helpers import HELPERS
from .ids import validate_workflow_id
from .inputs import apply_run_parameters
from .node import Node, NodeCancelledError, NodeContext
from .status import SATISFIED_STATUSES, TERMINAL_STATUSES, NodeStatus
from .stores.base import WorkflowStore
from .stores.memory import InMemoryStore

DEFAULT_MAX_CONCURRENCY = 16  # as in the Go library


class Persistence(str, Enum):
    """When the state is saved during a run (the final or failed state is always saved)."""

    NODE = "node"  #: after every node (O(1) journal records in the file stores)
    LEVEL = "level"  #: after every level (checkpoints; the default)
    END = "end"  #: only when the run ends

    def __str__(self) -> str:
        return self.value


class NodeTimeoutError(TimeoutError):
    """An attempt ran longer than its node's ``timeout``."""


class InlineExecutor(Executor):
    """Runs each submitted call immediately in the calling thread (no parallelism, no overhead).

    KeyboardInterrupt is not captured, so Ctrl-C in a notebook interrupts the action itself.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            future.set_exception(error)
        return future


def _run_in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``fn`` in its own daemon thread: a timed-out attempt is abandoned there, never starving
    the pool of the nodes still to run, and never keeping the interpreter alive at exit."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()  # a running thread cannot be cancelled, only abandoned

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as error:
            future.set_exception(error)
        else:
            future.set_result(result)

    threading.Thread(target=target, daemon=True, name="flow-workbench-timed-node").start()
    return future


@dataclass
class RunResult:
    """Outcome of one ``Workflow.execute`` call."""

    workflow_id: str
    data: WorkflowData
    executed: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(Counter(status.value for status in self.data.node_statuses().values()))

    @property
    def succeeded(self) -> bool:
        """True when every node of the workflow is completed (or bypassed)."""
        return all(s in SATISFIED_STATUSES for s in self.data.node_statuses().values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.status_counts.items()))
        return (
            f"<RunResult {self.workflow_id!r}: ran {len(self.executed)} node(s) in "
            f"{self.duration:.3f}s; {counts}>"
        )


@dataclass(slots=True)
class _Attempt:
    node: Node
    number: int
    ctx: NodeContext
    #: ``run.stopping`` for an untimed attempt; its own event for a timed one (told when it times out).
    cancel: threading.Event
    deadline: float | None


@dataclass
class _Level:
    """Scheduling state of the level being run; every field is guarded by ``_Run.lock``."""

    index: int
    queue: deque[Node]
    #: Threads that may run attempts at once, the coordinating one included (max_concurrency).
    max_runners: int
    #: Attempts started (as ``max_concurrency`` allows) and waiting for a thread to run them.
    started: deque[_Attempt] = field(default_factory=deque)
    retries: list[tuple[float, int, Node]] = field(default_factory=list)  # (ready at, seq, node)
    sequence: int = 0
    #: Attempts started and not yet finished, and whether the coordinating thread runs one of them.
    in_flight: int = 0
    coordinator_busy: bool = False
    #: Threads taking work from this level (the coordinating thread counts while it takes part).
    runners: int = 0
    #: A helper was asked to join and has not taken work yet: ask for the next one only after it.
    waking: bool = False
    #: A runner is waiting for the next retry to be due (one is enough).
    retry_waiter: bool = False
    #: The coordinating thread waits for the level to end and must be notified.
    supervisor_waiting: bool = False


@dataclass
class _Run:
    """Mutable state of one execution, guarded by ``lock`` while runners are active."""

    data: WorkflowData
    cancel: threading.Event
    result: RunResult
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set when the run stops (cancel, hard failure, save error); what ``ctx.cancelled`` reads.
    stopping: threading.Event = field(default_factory=threading.Event)
    stop: bool = False
    interrupted: bool = False
    save_error: BaseException | None = None
    #: A BaseException (a crash) raised by an action on a helper thread, re-raised by the coordinator.
    crash: BaseException | None = None
    #: ``execute`` has left without waiting for the helpers (a crash, a second Ctrl-C): whatever
    #: they still finish is dropped, so nothing changes the state or the store after it returned.
    abandoned: bool = False
    #: Cancel events of timed attempts in flight, set on stop (untimed ones read ``stopping``).
    timed: set[threading.Event] = field(default_factory=set)
    #: Nodes run at least once (in order): ``RunResult.executed``.
    executed: dict[str, None] = field(default_factory=dict)
    #: Something changed since the last checkpoint (a level where every node was done saves nothing).
    dirty: bool = False

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class Workflow:
    """A DAG bound to a workflow id and a store; ``execute`` resumes from the stored state.

    Completed, failed and skipped nodes are not re-run; any other status (pending, and running —
    a node that was in flight when a process died) runs again. Use the recovery functions
    (``reset_nodes``, ``reset_failed``, ``mark_nodes``) to choose what runs next.
    """

    def __init__(
        self,
        dag: DAG,
        workflow_id: str,
        store: WorkflowStore | None = None,
        *,
        persistence: Persistence | str = Persistence.LEVEL,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        executor: Executor | NodeExecutor | str | object | None = None,
        seed: int | None = None,
        lease_ttl: float = 30.0,
        lease_wait: float | None = None,
    ) -> None:
        self.dag = dag
        self.workflow_id = validate_workflow_id(workflow_id)
        self.store: WorkflowStore = store if store is not None else InMemoryStore()
        self.persistence = Persistence(persistence)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.node_executor = as_node_executor(executor)
        if isinstance(executor, ProcessPoolExecutor):
            # Actions get the live WorkflowData and a context with a threading.Event: neither can
            # cross to another process. A cluster executor ships a copy and returns the changes.
            raise ValueError(
                "a ProcessPoolExecutor cannot run node actions: they share the workflow's live state "
                "with the engine; use threads (the default), or a dask.distributed Client for "
                "processes (executor=Client(...))"
            )
        if self.node_executor is None and not (
            executor is None or executor in ("threads", "inline") or isinstance(executor, Executor)
        ):
            raise ValueError(
                "executor must be 'threads', 'inline', a concurrent.futures.Executor, a NodeExecutor "
                f"or a dask.distributed Client, not {executor!r}"
            )
        self.executor = executor
        #: Work goes to a caller-supplied executor (a pool, a cluster): never run it inline.
        self._external = self.node_executor is not None or isinstance(executor, Executor)
        self.events = EventBus()
        self._seed = seed
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self._data: WorkflowData | None = None
        self._cancel = threading.Event()
        self._active_run: _Run | None = None
        self._lock = threading.Lock()

    # --- public API ----------------------------------------------------------------------------

    @property
    def data(self) -> WorkflowData | None:
        """The state of the current or last run (kept in memory even when saving it failed)."""
        return self._data

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Receive every ``Event`` of later runs; returns a function that unsubscribes."""
        return self.events.subscribe(observer)

    def cancel(self) -> None:
        """Ask the running ``execute`` to stop: no new attempts start, unreached nodes stay pending,
        and running actions see ``ctx.cancelled`` at once (timed ones within 0.2 s)."""
        self._cancel.set()
        run = self._active_run
        if run is not None:
            run.stopping.set()  # no lock: observers may call cancel() while the run's lock is held

    def load_state(self) -> WorkflowData:
        """The stored state of this workflow (``WorkflowNotFoundError`` if it never ran)."""
        return self.store.load(self.workflow_id)

    def execute(
        self, *, on_event: Observer | None = None, params: Mapping[str, Any] | None = None
    ) -> RunResult:
        """Run every node that is not in a terminal status; see the class docstring.

        ``params`` (run parameters) are stored as key-values of the state before any node runs,
        replacing earlier values (a resumed run without ``params`` uses the stored ones); an action
        added by name receives them in the parameters of their names (``RunParameterError`` for a
        name of a node, ``data``/``ctx``, a value JSON cannot hold, or a declared one missing).

        Raises ``WorkflowExecutionError`` listing every failed node (except ``continue_on_error``
        ones), ``WorkflowCancelledError`` after ``cancel()``, the store's error when only saving
        failed, and re-raises ``KeyboardInterrupt`` after saving the interrupted state.
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"workflow {self.workflow_id!r} is already executing in this process")
        unsubscribe = self.events.subscribe(on_event) if on_event is not None else None
        try:
            self._cancel.clear()
            # Two processes must never execute one workflow at once (WorkflowLockedError).
            with self.store.execution_lease(self.workflow_id, ttl=self.lease_ttl, wait=self.lease_wait):
                return self._execute(params)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self._lock.release()

    # --- recovery conveniences -----------------------------------------------------------------

    def reset_nodes(
        self, nodes: Iterable[str], *, downstream: bool = False, dry_run: bool = False
    ) -> list[str]:
        from .recovery import reset_nodes

        return reset_nodes(
            self.store, self.workflow_id, nodes, downstream=downstream, dry_run=dry_run, dag=self.dag
        )

    def reset_failed(self, *, dry_run: bool = False) -> list[str]:
        from .recovery import reset_failed

        return reset_failed(self.store, self.workflow_id, dry_run=dry_run, dag=self.dag)

    def mark_nodes(
        self, nodes: Iterable[str], status: NodeStatus | str, *, dry_run: bool = False
    ) -> list[str]:
        from .recovery import mark_nodes

        return mark_nodes(self.store, self.workflow_id, nodes, status, dry_run=dry_run, dag=self.dag)

    # --- execution -----------------------------------------------------------------------------

    def _execute(self, params: Mapping[str, Any] | None = None) -> RunResult:
        levels = self.dag.levels()  # validates: unknown dependencies and cycles raise here
        data = self._load_or_create()
        self._prepare(data)
        apply_run_parameters(self.dag, data, params)
        self._data = data
        run = _Run(
            data=data,
            cancel=self._cancel,
            result=RunResult(self.workflow_id, data),
            rng=random.Random(self._seed),
        )
        started = time.perf_counter()
        self._active_run = run
        try:
            return self._run_levels(run, levels, started)
        finally:
            self._active_run = None

    def _run_levels(self, run: _Run, levels: list[list[str]], started: float) -> RunResult:
        self.events.emit(EventKind.RUN_STARTED, self.workflow_id, detail=f"{len(self.dag)} nodes")
        for index, level in enumerate(levels):
            if run.stop or run.cancel.is_set():
                break
            self._run_level(run, index, level)
            self.events.emit(EventKind.LEVEL_COMPLETED, self.workflow_id, level=index)
            if (
                self.persistence is Persistence.LEVEL
                and index < len(levels) - 1
                and run.dirty
                and not run.stop
            ):
                self._save(run)
        run.result.duration = time.perf_counter() - started
        run.result.executed = list(run.executed)
        self._save(run)  # the final or failed state is always saved
        return self._finish(run)

    def _max_runners(self) -> int:
        """How many threads may run this workflow's attempts at once (the calling one included)."""
        inline = self.executor == "inline" or isinstance(self.executor, InlineExecutor)
        return 1 if inline else self.max_concurrency

    def _load_or_create(self) -> WorkflowData:
        try:
            return self.store.load(self.workflow_id)
        except WorkflowNotFoundError:
            return WorkflowData(self.workflow_id)

    def _prepare(self, data: WorkflowData) -> None:
        statuses = data.node_statuses()
        unknown = [name for name in statuses if name not in self.dag]
        if unknown:
            raise StateMismatchError(self.workflow_id, unknown)
        for node in self.dag:
            status = statuses.get(node.name)
            if status is None or status not in TERMINAL_STATUSES:
                data.set_node_status(node.name, NodeStatus.PENDING)
        data.set_dag_structure(self.dag.structure())

    def _run_level(self, run: _Run, level_index: int, names: Sequence[str]) -> None:
        data = run.data
        statuses = data.columns().statuses  # read-only; no runner is active between levels
        level = _Level(level_index, deque(), self._max_runners())
        failed_before = len(run.result.failed)
        for name in names:
            if statuses.get(name) in TERMINAL_STATUSES:
                continue
            node = self.dag.node(name)
            blocker = self._blocking_dependency(statuses, node)
            if blocker is None:
                level.queue.append(node)
            else:
                self._skip(run, name, blocker)
        if level.queue:
            try:
                self._coordinate(run, level)
            except KeyboardInterrupt:
                run.interrupted = True
                with run.lock:
                    self._stop(run)
                    level.started.clear()  # started, never run: pending again (below)
                try:
                    self._await_helpers(run, level)
                except KeyboardInterrupt:  # a second Ctrl-C abandons what still runs
                    with run.lock:
                        run.abandoned = True
                for name in names:  # includes an attempt of this thread the interrupt cut short
                    if data.get_node_status(name) is NodeStatus.RUNNING:
                        data.record_attempt_finished(name, NodeStatus.PENDING)
        # Whatever did not get to run (cancellation, a hard failure) waits for the next execute.
        for node in [*level.queue, *(entry[2] for entry in level.retries)]:
            data.set_node_status(node.name, NodeStatus.PENDING)
        failed_here = run.result.failed[failed_before:]  # earlier failures were skipped past above
        for failed in [name for name in failed_here if not self.dag.node(name).continue_on_error]:
            for downstream in self.dag.downstream(failed):
                if data.get_node_status(downstream) not in TERMINAL_STATUSES:
                    self._skip(run, downstream, failed)

    # --- runners -------------------------------------------------------------------------------
    #
    # The calling thread takes attempts from the level's queue and runs them itself; while work is
    # left it asks one helper thread at a time to join (each helper, once it has taken work, asks
    # for the next), up to ``max_concurrency`` runners. Quick actions therefore finish before any
    # helper gets the GIL and cost no hand-off at all, while slow ones (I/O, sleeping, a cluster)
    # spread over up to ``max_concurrency`` threads within microseconds. Bookkeeping and events
    # happen under ``run.lock``, so observers see one event at a time, from whichever runner.

    def _coordinate(self, run: _Run, level: _Level) -> None:
        """Take part in running the level, then wait until no attempt is left in flight."""
        lock = run.lock
        while True:
            with lock:
                level.runners += 1
            try:
                self._take_and_run(run, level, coordinator=True)
            finally:
                with lock:
                    level.runners -= 1
            with lock:
                while True:
                    if run.crash is not None:
                        self._abandon(run, level)  # like a dying process: nothing more runs
                        raise run.crash
                    if run.cancel.is_set() and not run.stop:
                        self._stop(run)
                    if level.started or (
                        not run.stop and (level.queue or (level.retries and not level.retry_waiter))
                    ):
                        break  # work nobody is taking right now: take part again
                    if level.in_flight == 0 and (run.stop or not (level.queue or level.retries)):
                        return
                    level.supervisor_waiting = True
                    try:
                        run.changed.wait(0.2)  # wakes at least every 0.2 s so cancel() is noticed
                    finally:
                        level.supervisor_waiting = False

    def _helper_job(self, run: _Run, level: _Level) -> None:
        lock = run.lock
        with lock:
            level.waking = False
        try:
            self._take_and_run(run, level, coordinator=False)  # returns having left the level
        except BaseException as error:  # a crash in an action: the coordinating thread re-raises it
            with lock:
                if run.crash is None:
                    run.crash = error
                self._stop(run)
                level.runners -= 1
                run.changed.notify_all()

    def _take_and_run(self, run: _Run, level: _Level, *, coordinator: bool) -> None:
        lock = run.lock
        with lock:
            attempt = self._take(run, level, coordinator)
        while attempt is not None:
            try:
                output, error = self._perform(run, attempt)
            except BaseException:  # Ctrl-C outside the action (e.g. while waiting on a future)
                with lock:
                    level.in_flight -= 1
                    if coordinator:
                        level.coordinator_busy = False
                    run.timed.discard(attempt.cancel)
                raise
            with lock:  # one lock round per attempt: finish this one, take the next
                level.in_flight -= 1
                if coordinator:
                    level.coordinator_busy = False
                if attempt.deadline is not None:
                    run.timed.discard(attempt.cancel)
                if level.supervisor_waiting and level.in_flight == 0:
                    run.changed.notify_all()
                if not run.abandoned:
                    self._finish_attempt(run, attempt, output, error, level)
                attempt = self._take(run, level, coordinator)

    def _take(self, run: _Run, level: _Level, coordinator: bool) -> _Attempt | None:
        """The next attempt for this thread; a helper given none leaves the level in the same
        lock section, so no runner ever counts on a helper that is already on its way out."""
        attempt = self._next_attempt(run, level, coordinator)
        if attempt is None and not coordinator:
            level.runners -= 1
            if level.supervisor_waiting:
                run.changed.notify_all()
        return attempt

    def _next_attempt(self, run: _Run, level: _Level, coordinator: bool) -> _Attempt | None:
        """The next started attempt to run, or None when there is none now.

        Attempts are started (status, history, event) for as many nodes as ``max_concurrency``
        allows before any of them runs: the nodes of a level start together, and a hard failure
        stops only those not started yet, whichever thread gets to run which attempt.
        """
        started = level.started
        while True:
            if run.crash is not None or run.abandoned:
                return None
            if run.cancel.is_set() and not run.stop:
                self._stop(run)
            if not run.stop:
                if level.retries:
                    now = time.monotonic()
                    while level.retries and level.retries[0][0] <= now:
                        level.queue.append(heapq.heappop(level.retries)[2])
                limit = level.max_runners - level.in_flight
                while level.queue and len(started) < limit:
                    started.append(self._start_attempt(run, level.queue.popleft(), level))
            if started:
                attempt = started.popleft()
                if started and not level.waking and level.runners < level.max_runners:
                    level.waking = True
                    level.runners += 1
                    HELPERS.start(partial(self._helper_job, run, level))
                level.in_flight += 1
                if coordinator:
                    level.coordinator_busy = True
                return attempt
            if run.stop or not level.retries or level.retry_waiter:
                return None
            level.retry_waiter = True  # wait here for the next retry to be due
            try:
                run.changed.wait(min(0.2, max(0.0, level.retries[0][0] - time.monotonic())))
            finally:
                level.retry_waiter = False

    def _start_attempt(self, run: _Run, node: Node, level: _Level) -> _Attempt:
        name = node.name
        run.dirty = True
        number = run.data.record_attempt_started(name)
        deadline = None
        cancel = run.stopping
        if node.timeout is not None:
            # Only timed attempts need an event of their own (to be told they timed out).
            deadline = time.monotonic() + node.timeout
            cancel = threading.Event()
            run.timed.add(cancel)
        ctx = NodeContext(self.workflow_id, name, number, node.max_attempts, node.timeout, cancel)
        run.executed[name] = None
        if self.events.active:
            self.events.deliver(
                Event(
                    EventKind.NODE_STARTED,
                    self.workflow_id,
                    time.time(),
                    name,
                    number,
                    level.index,
                    NodeStatus.RUNNING,
                )
            )
        return _Attempt(node, number, ctx, cancel, deadline)

    def _perform(self, run: _Run, attempt: _Attempt) -> tuple[Any, BaseException | None]:
        """Run one attempt where it belongs and wait for it: (output, None) or (None, error)."""
        node = attempt.node
        if attempt.deadline is None and not self._external:
            try:
                return node.run(run.data, attempt.ctx), None
            except BaseException as error:  # Ctrl-C and crashes too: _finish_attempt raises them
                return None, error
        future: Future[Any]
        try:
            if self.node_executor is not None:
                upstream = self.dag.upstream(node.name)
                future = self.node_executor.submit_node(node, run.data, attempt.ctx, upstream)
            elif isinstance(self.executor, Executor):
                future = self.executor.submit(node.run, run.data, attempt.ctx)
            else:
                # In a thread of its own: a timed-out attempt is abandoned there, never holding a runner.
                future = _run_in_daemon_thread(node.run, run.data, attempt.ctx)
        except Exception as error:  # e.g. a closed pool or client: this attempt failed, not the run
            return None, error
        if attempt.deadline is not None:
            while True:  # in slices, so that cancel() reaches a timed action within 0.2 s
                remaining = attempt.deadline - time.monotonic()
                done, _ = futures_wait((future,), timeout=max(0.0, min(0.2, remaining)))
                if done or remaining <= 0.2:
                    break
                if run.cancel.is_set() and not attempt.cancel.is_set():
                    with run.lock:
                        self._stop(run)
            if not done:
                attempt.cancel.set()  # the abandoned action sees ctx.cancelled
                future.cancel()  # frees a pool slot or a cluster worker if it has not started
                timeout = attempt.node.timeout
                return None, NodeTimeoutError(f"attempt {attempt.number} exceeded the {timeout}s timeout")
        try:
            return future.result(), None
        except BaseException as error:
            return None, error

    def _finish_attempt(
        self, run: _Run, attempt: _Attempt, output: Any, error: BaseException | None, level: _Level
    ) -> None:
        if error is not None and not isinstance(error, Exception):
            # A BaseException (SystemExit, a simulated crash) ends the run like a dying process:
            # nothing more is saved, and in-flight nodes stay as they were last persisted.
            # Ctrl-C is handled by the caller, which waits for the other attempts first.
            self._stop(run)
            if not isinstance(error, KeyboardInterrupt):
                self._abandon(run, level)
            raise error
        name = attempt.node.name
        data = run.data
        if error is None:
            if output is not None:
                try:
                    data.set_output(name, output)  # encoded once, here; refused if not JSON
                except TypeError as bad_output:
                    error = bad_output
            elif data.has_output(name):
                data.clear_output(name)
        if error is not None:
            self._attempt_failed(run, attempt, error, level)
            return
        data.record_attempt_finished(name, NodeStatus.COMPLETED)
        run.result.completed.append(name)
        if self.events.active:
            self.events.deliver(
                Event(
                    EventKind.NODE_COMPLETED,
                    self.workflow_id,
                    time.time(),
                    name,
                    attempt.number,
                    level.index,
                    NodeStatus.COMPLETED,
                )
            )
        self._node_done(run, name)

    def _attempt_failed(self, run: _Run, attempt: _Attempt, error: BaseException, level: _Level) -> None:
        node = attempt.node
        message = str(error) or type(error).__name__
        if isinstance(error, NodeCancelledError) and attempt.cancel.is_set():
            # The action honoured a cancellation: not a failure, it runs again next time.
            run.data.record_attempt_finished(node.name, NodeStatus.PENDING)
            return
        if attempt.number < node.max_attempts and not run.stop:
            delay = node.delay_before_retry(attempt.number, run.rng)
            run.data.set_node_error(node.name, message, type(error).__name__)
            level.sequence += 1
            heapq.heappush(level.retries, (time.monotonic() + delay, level.sequence, node))
            self.events.emit(
                EventKind.NODE_RETRYING,
                self.workflow_id,
                node=node.name,
                attempt=attempt.number,
                level=level.index,
                status=NodeStatus.RUNNING,
                error=message,
                delay=delay,
            )
            return
        if attempt.number < node.max_attempts:
            # The run is stopping; the retries this node still has are kept for the next execute.
            run.data.record_attempt_finished(
                node.name, NodeStatus.PENDING, error=message, error_type=type(error).__name__
            )
            return
        run.data.record_attempt_finished(
            node.name, NodeStatus.FAILED, error=message, error_type=type(error).__name__
        )
        run.result.failed.append(node.name)
        self.events.emit(
            EventKind.NODE_FAILED,
            self.workflow_id,
            node=node.name,
            attempt=attempt.number,
            level=level.index,
            status=NodeStatus.FAILED,
            error=message,
        )
        if not node.continue_on_error:
            self._stop(run)  # the first hard failure cancels the rest of the level and the run
        self._node_done(run, node.name)

    def _skip(self, run: _Run, name: str, because: str) -> None:
        run.dirty = True
        cause = run.data.get_node_status(because)
        verb = "failed" if cause is NodeStatus.FAILED else f"is {cause.value if cause else 'missing'}"
        run.data.record_attempt_finished(
            name,
            NodeStatus.SKIPPED,
            error=f"dependency {because!r} {verb}",
            error_type="UpstreamNotCompleted",
        )
        run.result.skipped.append(name)
        self.events.emit(
            EventKind.NODE_SKIPPED, self.workflow_id, node=name, status=NodeStatus.SKIPPED, detail=because
        )
        self._node_done(run, name)

    def _node_done(self, run: _Run, name: str) -> None:
        if self.persistence is not Persistence.NODE or run.save_error is not None:
            return
        try:
            self.store.save_node(run.data, name)
        except StoreError as error:
            self._save_failed(run, error)

    def _save(self, run: _Run) -> None:
        run.dirty = False
        try:
            self.store.save(run.data)
        except StoreError as error:
            self._save_failed(run, error)
        else:
            self.events.emit(EventKind.STATE_SAVED, self.workflow_id, detail=f"version {run.data.version}")

    def _save_failed(self, run: _Run, error: StoreError) -> None:
        # A state that cannot be made durable must not keep running: stop, keep the data in memory.
        if isinstance(error, VersionConflictError) and not isinstance(error, ConcurrentEditError):
            error = ConcurrentEditError(error)  # another writer saved meanwhile: say so, not "retry"
        if run.save_error is None:
            run.save_error = error
        self._stop(run)
        self.events.emit(EventKind.SAVE_FAILED, self.workflow_id, error=str(error))

    def _finish(self, run: _Run) -> RunResult:
        data = run.data
        failures = {}
        for name in data.nodes_with_status(NodeStatus.FAILED):
            if name in self.dag and not self.dag.node(name).continue_on_error:
                history = data.node_history(name)
                failures[name] = NodeFailure(
                    node=name,
                    error_type=history.error_type or "Error",
                    message=history.error or "",
                    attempts=history.attempts,
                )
        outcome = "interrupted" if run.interrupted else "failed" if failures else "finished"
        self.events.emit(EventKind.RUN_FINISHED, self.workflow_id, detail=outcome)
        if run.interrupted:
            raise KeyboardInterrupt
        if failures:
            raise WorkflowExecutionError(self.workflow_id, failures, save_error=run.save_error)
        if run.cancel.is_set():
            pending = data.nodes_with_status(NodeStatus.PENDING)
            raise WorkflowCancelledError(self.workflow_id, pending, save_error=run.save_error)
        if run.save_error is not None:
            run.save_error.add_note(
                f"workflow {self.workflow_id!r} ran, but its state could not be saved; "
                "the state is still available as Workflow.data"
            )
            raise run.save_error
        return run.result

    # --- helpers -------------------------------------------------------------------------------

    def _blocking_dependency(self, statuses: dict[str, NodeStatus], node: Node) -> str | None:
        for dependency in node.depends_on:
            status = statuses.get(dependency)
            if status in SATISFIED_STATUSES:
                continue
            if status is NodeStatus.FAILED and self.dag.node(dependency).continue_on_error:
                continue
            return dependency
        return None

    @staticmethod
    def _stop(run: _Run) -> None:
        """Start no new attempts and tell running ones (``ctx.cancelled``) to finish early."""
        run.stop = True
        run.stopping.set()
        for cancel in run.timed:
            cancel.set()

    @staticmethod
    def _abandon(run: _Run, level: _Level) -> None:
        """Leave without the helpers (hold ``run.lock``): nothing they finish is recorded."""
        run.abandoned = True
        level.started.clear()

    @staticmethod
    def _await_helpers(run: _Run, level: _Level) -> None:
        """Wait for the attempts other threads still run (after Ctrl-C in this one)."""
        with run.lock:
            while level.in_flight - level.coordinator_busy > 0 and run.crash is None:
                level.supervisor_waiting = True
                try:
                    run.changed.wait(0.2)
                finally:
                    level.supervisor_waiting = False
