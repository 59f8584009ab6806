"""Workflow.execute: load or create the state, run the DAG level by level, persist, emit events."""

from __future__ import annotations

import contextlib
import heapq
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from .dag import DAG
from .data import WorkflowData
from .errors import (
    NodeFailure,
    StateMismatchError,
    StoreError,
    WorkflowCancelledError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
)
from .events import Event, EventBus, EventKind, Observer
from .executors import NodeExecutor, as_node_executor
from .ids import validate_workflow_id
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


@dataclass
class _Attempt:
    node: Node
    number: int
    cancel: threading.Event
    deadline: float | None


@dataclass
class _Level:
    """Scheduling state of the level being run."""

    index: int
    queue: deque[Node]
    retries: list[tuple[float, int, Node]] = field(default_factory=list)  # (ready at, seq, node)
    sequence: int = 0


@dataclass
class _Run:
    """Mutable state of one execution (coordinator thread only)."""

    data: WorkflowData
    cancel: threading.Event
    result: RunResult
    rng: random.Random
    #: Set when the run stops (cancel, hard failure, save error); what ``ctx.cancelled`` reads.
    stopping: threading.Event = field(default_factory=threading.Event)
    stop: bool = False
    interrupted: bool = False
    save_error: BaseException | None = None
    running: dict[Future[Any], _Attempt] = field(default_factory=dict)
    #: Futures put here by their done-callbacks: O(1) per completion, unlike ``wait()`` over all.
    completions: queue.SimpleQueue[Future[Any]] = field(default_factory=queue.SimpleQueue)
    launched: set[str] = field(default_factory=set)
    #: Something changed since the last checkpoint (a level where every node was done saves nothing).
    dirty: bool = False


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
        """Ask the running ``execute`` to stop: no new attempts start, unreached nodes stay pending."""
        self._cancel.set()

    def load_state(self) -> WorkflowData:
        """The stored state of this workflow (``WorkflowNotFoundError`` if it never ran)."""
        return self.store.load(self.workflow_id)

    def execute(self, *, on_event: Observer | None = None) -> RunResult:
        """Run every node that is not in a terminal status; see the class docstring.

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
                return self._execute()
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

    def _execute(self) -> RunResult:
        levels = self.dag.levels()  # validates: unknown dependencies and cycles raise here
        data = self._load_or_create()
        self._prepare(data)
        self._data = data
        run = _Run(
            data=data,
            cancel=self._cancel,
            result=RunResult(self.workflow_id, data),
            rng=random.Random(self._seed),
        )
        started = time.perf_counter()
        self.events.emit(EventKind.RUN_STARTED, self.workflow_id, detail=f"{len(self.dag)} nodes")
        pool, owned = self._make_executor()
        try:
            for index, level in enumerate(levels):
                if run.stop or run.cancel.is_set():
                    break
                self._run_level(run, pool, index, level)
                self.events.emit(EventKind.LEVEL_COMPLETED, self.workflow_id, level=index)
                if (
                    self.persistence is Persistence.LEVEL
                    and index < len(levels) - 1
                    and run.dirty
                    and not run.stop
                ):
                    self._save(run)
        finally:
            if owned:
                # Abandoned (timed-out or crashed) attempts must not block the caller.
                pool.shutdown(wait=False, cancel_futures=True)
        run.result.duration = time.perf_counter() - started
        self._save(run)  # the final or failed state is always saved
        return self._finish(run)

    def _make_executor(self) -> tuple[Executor, bool]:
        if isinstance(self.executor, Executor):
            return self.executor, False
        if self.executor == "inline" or self.max_concurrency == 1 or self.node_executor is not None:
            return InlineExecutor(), True
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="flow-workbench")
        return pool, True

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

    def _run_level(self, run: _Run, pool: Executor, level_index: int, names: Sequence[str]) -> None:
        data = run.data
        statuses = data.columns().statuses  # read-only; only this thread writes statuses now
        level = _Level(level_index, deque())
        for name in names:
            if statuses.get(name) in TERMINAL_STATUSES:
                continue
            node = self.dag.node(name)
            blocker = self._blocking_dependency(statuses, node)
            if blocker is None:
                level.queue.append(node)
            else:
                self._skip(run, name, blocker)
        if not level.queue:
            return
        # A lone node without timeout runs in this thread: no dispatch cost, and Ctrl-C reaches it.
        # A caller-supplied executor (e.g. a cluster) always gets the work.
        lone = (
            len(level.queue) == 1
            and level.queue[0].timeout is None
            and not isinstance(self.executor, Executor)
        )
        executor: Executor | None = None if lone or isinstance(pool, InlineExecutor) else pool
        try:
            self._drive(run, executor, level)
        except KeyboardInterrupt:
            run.interrupted = True
            self._stop(run)
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C abandons what still runs
                self._await_running(run, level)
            run.running.clear()
            for name in names:  # includes an inline attempt the interrupt cut short
                if data.get_node_status(name) is NodeStatus.RUNNING:
                    data.record_attempt_finished(name, NodeStatus.PENDING)
        # Whatever did not get to run (cancellation, a hard failure) waits for the next execute.
        for node in [*level.queue, *(entry[2] for entry in level.retries)]:
            data.set_node_status(node.name, NodeStatus.PENDING)
        for failed in [name for name in names if self._is_hard_failure(data, name)]:
            for downstream in self.dag.downstream(failed):
                if data.get_node_status(downstream) not in TERMINAL_STATUSES:
                    self._skip(run, downstream, failed)

    def _drive(self, run: _Run, executor: Executor | None, level: _Level) -> None:
        """Launch, collect and retry attempts until the level is done or the run stops.

        ``executor`` None runs attempts inline in this thread.
        """
        while True:
            if run.cancel.is_set() and not run.stop:
                self._stop(run)
            if level.retries and not run.stop:
                now = time.monotonic()
                while level.retries and level.retries[0][0] <= now:
                    level.queue.append(heapq.heappop(level.retries)[2])
            while level.queue and not run.stop and len(run.running) < self.max_concurrency:
                self._launch(run, executor, level.queue.popleft(), level)
            if not run.running:
                if run.stop or not level.retries:
                    return
                run.cancel.wait(max(0.0, level.retries[0][0] - time.monotonic()))
                continue
            self._collect(run, level, self._wait_time(run, level))

    def _wait_time(self, run: _Run, level: _Level) -> float:
        wake = [a.deadline for a in run.running.values() if a.deadline is not None]
        if level.retries and not run.stop:
            wake.append(level.retries[0][0])
        # Wake at least every 0.2 s so cancel() is noticed promptly.
        return min(0.2, max(0.0, min(wake) - time.monotonic())) if wake else 0.2

    def _collect(self, run: _Run, level: _Level, timeout: float) -> None:
        """Handle every finished attempt (blocking up to ``timeout`` for the first), then timeouts."""
        try:
            future: Future[Any] | None = run.completions.get(timeout=timeout)
        except queue.Empty:
            future = None
        while future is not None:
            attempt = run.running.pop(future, None)
            if attempt is not None:  # None: a timed-out attempt that finished after being abandoned
                error = future.exception()
                self._finish_attempt(run, attempt, None if error else future.result(), error, level)
            try:
                future = run.completions.get_nowait()
            except queue.Empty:
                future = None
        now = time.monotonic()
        for future, attempt in list(run.running.items()):
            if attempt.deadline is not None and now >= attempt.deadline and not future.done():
                del run.running[future]
                attempt.cancel.set()  # the abandoned action sees ctx.cancelled
                future.cancel()  # frees a pool slot or a cluster worker if it has not started
                timeout_error = NodeTimeoutError(
                    f"attempt {attempt.number} exceeded the {attempt.node.timeout}s timeout"
                )
                self._attempt_failed(run, attempt, timeout_error, level)

    def _launch(self, run: _Run, executor: Executor | None, node: Node, level: _Level) -> None:
        name = node.name
        run.dirty = True
        attempt_number = run.data.record_attempt_started(name)
        # Only timed attempts need an event of their own (to be told they timed out).
        cancel = threading.Event() if node.timeout is not None else run.stopping
        if run.stop:
            cancel.set()
        ctx = NodeContext(self.workflow_id, name, attempt_number, node.max_attempts, node.timeout, cancel)
        deadline = time.monotonic() + node.timeout if node.timeout is not None else None
        attempt = _Attempt(node, attempt_number, cancel, deadline)
        if name not in run.launched:
            run.launched.add(name)
            run.result.executed.append(name)
        if self.events.active:
            self.events.deliver(
                Event(
                    EventKind.NODE_STARTED,
                    self.workflow_id,
                    time.time(),
                    name,
                    attempt_number,
                    level.index,
                    NodeStatus.RUNNING,
                )
            )
        future: Future[Any]
        if self.node_executor is not None:
            future = self.node_executor.submit_node(node, run.data, ctx, self.dag.upstream(name))
        elif node.timeout is not None and not self._external:
            future = _run_in_daemon_thread(node.run, run.data, ctx)
        elif executor is None:
            try:
                output = node.run(run.data, ctx)
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                self._finish_attempt(run, attempt, None, error, level)
            else:
                self._finish_attempt(run, attempt, output, None, level)
            return
        else:
            future = executor.submit(node.run, run.data, ctx)
        run.running[future] = attempt
        future.add_done_callback(run.completions.put)

    def _finish_attempt(
        self, run: _Run, attempt: _Attempt, output: Any, error: BaseException | None, level: _Level
    ) -> None:
        if error is not None and not isinstance(error, Exception):
            # A BaseException (SystemExit, a simulated crash) ends the run like a dying process:
            # nothing more is saved, and in-flight nodes stay as they were last persisted.
            self._stop(run)
            raise error
        name = attempt.node.name
        if error is None and output is not None:
            try:
                orjson.dumps(output)
            except TypeError as bad_output:
                error = TypeError(f"output of node {name!r} cannot be stored as JSON: {bad_output}")
        if error is not None:
            self._attempt_failed(run, attempt, error, level)
            return
        data = run.data
        if output is not None:
            data.set_output(name, output)
        elif name in data.columns().outputs:
            data.clear_output(name)
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
        if run.save_error is None:
            run.save_error = error
        self._stop(run)
        self.events.emit(EventKind.SAVE_FAILED, self.workflow_id, error=str(error))

    def _finish(self, run: _Run) -> RunResult:
        data = run.data
        failures = {
            name: NodeFailure(
                node=name,
                error_type=history.error_type or "Error",
                message=history.error or "",
                attempts=history.attempts,
            )
            for name, history in data.history().items()
            if name in self.dag and self._is_hard_failure(data, name)
        }
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

    def _is_hard_failure(self, data: WorkflowData, name: str) -> bool:
        return data.get_node_status(name) is NodeStatus.FAILED and not self.dag.node(name).continue_on_error

    @staticmethod
    def _stop(run: _Run) -> None:
        """Start no new attempts and tell running ones (``ctx.cancelled``) to finish early."""
        run.stop = True
        run.stopping.set()
        for attempt in run.running.values():
            attempt.cancel.set()

    def _await_running(self, run: _Run, level: _Level) -> None:
        while run.running:
            self._collect(run, level, 0.2)
