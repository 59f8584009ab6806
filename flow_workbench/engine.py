"""Workflow.execute: load or create the state, run the DAG through the scheduler, persist, emit events."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .dag import DAG
from .data import WorkflowData
from .errors import (
    ConcurrentEditError,
    FlowWorkbenchError,
    NodeFailure,
    StateMismatchError,
    StoreError,
    UnknownStatusError,
    VersionConflictError,
    WorkflowCancelledError,
    WorkflowExecutionError,
    WorkflowNotFoundError,
)
from .events import Event, EventBus, EventKind, Observer
from .executors import NodeExecutor, as_node_executor
from .ids import validate_workflow_id
from .inputs import apply_run_parameters
from .node import Node, NodeCancelledError, NodeContext
from .scheduler import Scheduler, Scheduling, validate_scheduling
from .status import SATISFIED_STATUSES, TERMINAL_STATUSES, NodeStatus
from .stores.base import WorkflowStore
from .stores.memory import InMemoryStore

DEFAULT_MAX_CONCURRENCY = 16  # as in the Go library


class Persistence(StrEnum):
    """When the state is saved during a run (the final or failed state is always saved)."""

    #: After every node (O(1) journal records in the file stores).
    NODE = "node"
    #: Checkpoints, the default: whenever a topological level has become complete, i.e. every node
    #: of it and of all earlier levels has finished. With dependency-driven scheduling, nodes of
    #: later levels that already finished (or are running) are in the checkpoint too.
    LEVEL = "level"
    #: Only when the run ends.
    END = "end"


class NodeTimeoutError(FlowWorkbenchError, TimeoutError):
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
    #: Within this run (``ctx.attempt``); the stored history counts every attempt ever.
    number: int
    level: int
    ctx: NodeContext
    #: ``_Execution.stopping`` for an untimed attempt; its own event for a timed one (told when it
    #: times out).
    cancel: threading.Event
    deadline: float | None


class Workflow:
    """A DAG bound to a workflow id and a store; ``execute`` resumes from the stored state.

    Completed, failed and skipped nodes are not re-run; any other status (pending, and running —
    a node that was in flight when a process died) runs again. Use the recovery functions
    (``reset_nodes``, ``reset_failed``, ``mark_nodes``) to choose what runs next.

    ``scheduling="dependencies"`` (the default) starts each node as soon as its own dependencies
    have finished; ``"level"`` runs level by level like the Go library (see ``flow_workbench.scheduler``).
    Every run gives each node its full retry budget: ``ctx.attempt`` counts attempts within the
    run, while the stored history (``NodeHistory.attempts``) counts every attempt ever made.
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
        scheduling: Scheduling = "dependencies",
    ) -> None:
        self.dag = dag
        self.scheduling: Scheduling = validate_scheduling(scheduling)
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
        self._active_run: _Execution | None = None
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
        self.dag.validate()  # unknown dependencies and cycles raise before anything is loaded
        data = self._load_or_create()
        self._prepare(data)
        apply_run_parameters(self.dag, data, params)
        self._data = data
        execution = _Execution(self, data)
        self._active_run = execution
        try:
            return execution.run()
        finally:
            self._active_run = None

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
        texts = data.unknown_statuses()
        if texts:
            # A status no library knows (kept from a Go JSON file): running the node could repeat
            # or skip work; the user decides by resetting or marking it.
            raise UnknownStatusError(self.workflow_id, texts)
        for node in self.dag:
            status = statuses.get(node.name)
            if status is None or status not in TERMINAL_STATUSES:
                data.set_node_status(node.name, NodeStatus.PENDING)
        data.set_dag_structure(self.dag.structure())


class _Execution:
    """One run of a ``Workflow``: the ``AttemptRunner`` its ``Scheduler`` drives. It records
    statuses and history in the data, emits events, runs actions where they belong and saves.

    Every method the scheduler calls, except ``perform``, runs with ``scheduler.lock`` held.
    """

    def __init__(self, workflow: Workflow, data: WorkflowData) -> None:
        self.workflow = workflow
        self.workflow_id = workflow.workflow_id
        self.dag = workflow.dag
        self.data = data
        self.events = workflow.events
        self.store = workflow.store
        self.persistence = workflow.persistence
        self.cancel = workflow._cancel
        #: Work goes to a caller-supplied executor (a pool, a cluster): never run it inline.
        self.external = workflow._external
        self.result = RunResult(workflow.workflow_id, data)
        #: Set when the run stops (cancel, hard failure, save error); what ``ctx.cancelled`` reads.
        self.stopping = threading.Event()
        #: Cancel events of timed attempts in flight, set on stop (untimed ones read ``stopping``).
        self.timed: set[threading.Event] = set()
        #: Nodes run at least once (in order): ``RunResult.executed``.
        self.executed: dict[str, None] = {}
        #: Something changed since the last checkpoint (a level completed earlier saves nothing).
        self.dirty = False
        self.save_error: BaseException | None = None
        self.scheduler: Scheduler[_Attempt] = Scheduler(
            workflow.dag,
            data.node_statuses(),
            self,
            scheduling=workflow.scheduling,
            max_runners=workflow._max_runners(),
            cancel=workflow._cancel,
            rng=random.Random(workflow._seed),
        )

    def run(self) -> RunResult:
        started = time.perf_counter()
        self.events.emit(EventKind.RUN_STARTED, self.workflow_id, detail=f"{len(self.dag)} nodes")
        scheduler = self.scheduler
        scheduler.run()  # a crash propagates from here: nothing more is saved, like a dying process
        if scheduler.interrupted:
            # Attempts Ctrl-C cut short, or started and never run: they run again next time.
            for name in self.data.nodes_with_status(NodeStatus.RUNNING):
                self.data.record_attempt_finished(name, NodeStatus.PENDING)
        self.result.duration = time.perf_counter() - started
        self.result.executed = list(self.executed)
        self._save()  # the final or failed state is always saved
        return self._finish()

    # --- AttemptRunner (scheduler.lock held, except perform) -----------------------------------

    def start(self, node: Node, number: int, level: int) -> _Attempt:
        name = node.name
        self.dirty = True
        self.data.record_attempt_started(name)  # the stored count keeps every attempt ever made
        deadline = None
        cancel = self.stopping
        if node.timeout is not None:
            # Only timed attempts need an event of their own (to be told they timed out).
            deadline = time.monotonic() + node.timeout
            cancel = threading.Event()
            self.timed.add(cancel)
        ctx = NodeContext(self.workflow_id, name, number, node.max_attempts, node.timeout, cancel)
        self.executed[name] = None
        if self.events.active:
            self.events.deliver(
                Event(
                    EventKind.NODE_STARTED,
                    self.workflow_id,
                    time.time(),
                    name,
                    number,
                    level,
                    NodeStatus.RUNNING,
                )
            )
        return _Attempt(node, number, level, ctx, cancel, deadline)

    def perform(self, attempt: _Attempt) -> tuple[Any, BaseException | None]:
        """Run one attempt where it belongs and wait for it: (output, None) or (None, error)."""
        if attempt.deadline is None and not self.external:
            try:
                return attempt.node.run(self.data, attempt.ctx), None
            except BaseException as error:  # Ctrl-C and crashes too: the scheduler raises them
                return None, error
        try:
            return self._perform_elsewhere(attempt)
        finally:
            if attempt.deadline is not None:
                with self.scheduler.lock:
                    self.timed.discard(attempt.cancel)

    def _perform_elsewhere(self, attempt: _Attempt) -> tuple[Any, BaseException | None]:
        workflow = self.workflow
        node = attempt.node
        future: Future[Any]
        try:
            if workflow.node_executor is not None:
                upstream = self.dag.upstream(node.name)
                future = workflow.node_executor.submit_node(node, self.data, attempt.ctx, upstream)
            elif isinstance(workflow.executor, Executor):
                future = workflow.executor.submit(node.run, self.data, attempt.ctx)
            else:
                # In a thread of its own: a timed-out attempt is abandoned there, never holding a runner.
                future = _run_in_daemon_thread(node.run, self.data, attempt.ctx)
        except Exception as error:  # e.g. a closed pool or client: this attempt failed, not the run
            return None, error
        if attempt.deadline is not None:
            while True:  # in slices, so that cancel() reaches a timed action within 0.2 s
                remaining = attempt.deadline - time.monotonic()
                done, _ = futures_wait((future,), timeout=max(0.0, min(0.2, remaining)))
                if done or remaining <= 0.2:
                    break
                if self.cancel.is_set() and not attempt.cancel.is_set():
                    self.scheduler.stop()
            if not done:
                attempt.cancel.set()  # the abandoned action sees ctx.cancelled
                future.cancel()  # frees a pool slot or a cluster worker if it has not started
                timeout = node.timeout
                return None, NodeTimeoutError(f"attempt {attempt.number} exceeded the {timeout}s timeout")
        try:
            return future.result(), None
        except BaseException as error:
            return None, error

    def complete(self, attempt: _Attempt, output: Any) -> BaseException | None:
        name = attempt.node.name
        data = self.data
        if output is not None:
            try:
                data.set_output(name, output)  # encoded once, here; refused if not JSON
            except TypeError as bad_output:
                return bad_output
        elif data.has_output(name):
            data.clear_output(name)
        data.record_attempt_finished(name, NodeStatus.COMPLETED)
        self.result.completed.append(name)
        if self.events.active:
            self.events.deliver(
                Event(
                    EventKind.NODE_COMPLETED,
                    self.workflow_id,
                    time.time(),
                    name,
                    attempt.number,
                    attempt.level,
                    NodeStatus.COMPLETED,
                )
            )
        self._node_done(name)
        return None

    def ended_by_cancel(self, attempt: _Attempt, error: BaseException) -> bool:
        if isinstance(error, NodeCancelledError) and attempt.cancel.is_set():
            # The action honoured a cancellation: not a failure, it runs again next time.
            self.data.record_attempt_finished(attempt.node.name, NodeStatus.PENDING)
            return True
        return False

    def retrying(self, attempt: _Attempt, error: BaseException, delay: float) -> None:
        name = attempt.node.name
        message = _message(error)
        self.data.set_node_error(name, message, type(error).__name__)
        self.events.emit(
            EventKind.NODE_RETRYING,
            self.workflow_id,
            node=name,
            attempt=attempt.number,
            level=attempt.level,
            status=NodeStatus.RUNNING,
            error=message,
            delay=delay,
        )

    def left_pending(self, attempt: _Attempt, error: BaseException) -> None:
        self.data.record_attempt_finished(
            attempt.node.name, NodeStatus.PENDING, error=_message(error), error_type=type(error).__name__
        )

    def failed(self, attempt: _Attempt, error: BaseException) -> None:
        name = attempt.node.name
        message = _message(error)
        self.data.record_attempt_finished(
            name, NodeStatus.FAILED, error=message, error_type=type(error).__name__
        )
        self.result.failed.append(name)
        self.events.emit(
            EventKind.NODE_FAILED,
            self.workflow_id,
            node=name,
            attempt=attempt.number,
            level=attempt.level,
            status=NodeStatus.FAILED,
            error=message,
        )
        self._node_done(name)

    def skipped(self, name: str, because: str) -> None:
        self.dirty = True
        cause = self.data.get_node_status(because)
        verb = "failed" if cause is NodeStatus.FAILED else f"is {cause.value if cause else 'missing'}"
        self.data.record_attempt_finished(
            name,
            NodeStatus.SKIPPED,
            error=f"dependency {because!r} {verb}",
            error_type="UpstreamNotCompleted",
        )
        self.result.skipped.append(name)
        self.events.emit(
            EventKind.NODE_SKIPPED, self.workflow_id, node=name, status=NodeStatus.SKIPPED, detail=because
        )
        self._node_done(name)

    def retry_dropped(self, node: Node) -> None:
        self.data.set_node_status(node.name, NodeStatus.PENDING)  # keeps the failed attempt's error

    def level_completed(self, index: int) -> None:
        self.events.emit(EventKind.LEVEL_COMPLETED, self.workflow_id, level=index)
        if (
            self.persistence is Persistence.LEVEL
            and index < self.scheduler.level_count - 1
            and self.dirty
            and not self.scheduler.stopped
        ):
            self._save()  # a checkpoint; later levels' finished nodes are in it too

    def stop_attempts(self) -> None:
        self.stopping.set()
        for cancel in self.timed:
            cancel.set()

    # --- saving and the outcome ----------------------------------------------------------------

    def _node_done(self, name: str) -> None:
        if self.persistence is not Persistence.NODE or self.save_error is not None:
            return
        try:
            self.store.save_node(self.data, name)
        except StoreError as error:
            self._save_failed(error)

    def _save(self) -> None:
        self.dirty = False
        try:
            self.store.save(self.data)
        except StoreError as error:
            self._save_failed(error)
        else:
            self.events.emit(EventKind.STATE_SAVED, self.workflow_id, detail=f"version {self.data.version}")

    def _save_failed(self, error: StoreError) -> None:
        # A state that cannot be made durable must not keep running: stop, keep the data in memory.
        if isinstance(error, VersionConflictError) and not isinstance(error, ConcurrentEditError):
            error = ConcurrentEditError(error)  # another writer saved meanwhile: say so, not "retry"
        if self.save_error is None:
            self.save_error = error
        self.scheduler.halt()
        self.events.emit(EventKind.SAVE_FAILED, self.workflow_id, error=str(error))

    def _finish(self) -> RunResult:
        data = self.data
        attempts_this_run = self.scheduler.attempts
        failures = {}
        for name in data.nodes_with_status(NodeStatus.FAILED):
            if name in self.dag and not self.dag.node(name).continue_on_error:
                history = data.node_history(name)
                failures[name] = NodeFailure(
                    node=name,
                    error_type=history.error_type or "Error",
                    message=history.error or "",
                    # This run's attempts; a node that failed in an earlier run did not run again.
                    attempts=attempts_this_run.get(name) or history.attempts,
                )
        interrupted = self.scheduler.interrupted
        outcome = "interrupted" if interrupted else "failed" if failures else "finished"
        self.events.emit(EventKind.RUN_FINISHED, self.workflow_id, detail=outcome)
        if interrupted:
            raise KeyboardInterrupt
        if failures:
            raise WorkflowExecutionError(self.workflow_id, failures, save_error=self.save_error)
        if self.cancel.is_set():
            pending = data.nodes_with_status(NodeStatus.PENDING)
            raise WorkflowCancelledError(self.workflow_id, pending, save_error=self.save_error)
        if self.save_error is not None:
            self.save_error.add_note(
                f"workflow {self.workflow_id!r} ran, but its state could not be saved; "
                "the state is still available as Workflow.data"
            )
            raise self.save_error
        return self.result


def _message(error: BaseException) -> str:
    return str(error) or type(error).__name__
