"""Workflow.execute: load or create the state, run the DAG through the scheduler, persist, emit events."""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Literal, get_args

from .code_versions import dag_code_versions, stale_nodes
from .dag import DAG
from .data import AttemptOutcome, RunOutcome, RunRecord, WorkflowData, plain_output
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
from .identity import current_host, current_pid, current_user
from .ids import validate_workflow_id
from .inputs import apply_run_parameters
from .node import Node, NodeCancelledError, NodeContext
from .recovery import apply_reset
from .runs import close_crashed, new_run_id, run_reason
from .scheduler import Scheduler, Scheduling, validate_scheduling
from .status import SATISFIED_STATUSES, TERMINAL_STATUSES, NodeStatus
from .stores.base import WorkflowStore
from .stores.memory import InMemoryStore

DEFAULT_MAX_CONCURRENCY = 16  # as in the Go library

#: ``execute(rerun=...)``: "stale" re-runs stale nodes and their downstream, "all" every node.
Rerun = Literal["stale", "all"]
RERUN_MODES: tuple[Rerun, ...] = get_args(Rerun)


class Persistence(StrEnum):
    """When the state is saved during a run (the final or failed state is always saved)."""

    #: At every node's start (status running, attempt counted, attempt log entry open) and end:
    #: one O(1) journal record in the file stores; the end of a node and the start of the next
    #: one are written as one record when they happen together. Other processes see which nodes
    #: run, and a node whose process dies is known to have crashed.
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
    #: This run's id in the run history (``data.runs()``, ``data.attempt_log(node)``).
    run_id: str = ""
    #: Completed nodes whose code changed since they ran (and their downstream) that this run did
    #: not re-run (``Workflow.stale_nodes``); ``execute(rerun="stale")`` re-runs them.
    stale: list[str] = field(default_factory=list)

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(Counter(status.value for status in self.data.node_statuses().values()))

    @property
    def succeeded(self) -> bool:
        """True when every node of the workflow is completed (or bypassed)."""
        return all(s in SATISFIED_STATUSES for s in self.data.node_statuses().values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.status_counts.items()))
        stale = ""
        if self.stale:
            shown = ", ".join(self.stale[:5]) + (", ..." if len(self.stale) > 5 else "")
            stale = f"; {len(self.stale)} stale node(s) not re-run: {shown} (execute(rerun='stale'))"
        return (
            f"<RunResult {self.workflow_id!r}: ran {len(self.executed)} node(s) in "
            f"{self.duration:.3f}s; {counts}{stale}>"
        )


# Looked up once: the per-attempt path builds an event per start and per completion.
_NODE_STARTED: Final = EventKind.NODE_STARTED
_NODE_COMPLETED: Final = EventKind.NODE_COMPLETED
_RUNNING: Final = NodeStatus.RUNNING
_COMPLETED: Final = NodeStatus.COMPLETED


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
    run, while the stored history (``NodeHistory.attempts``) counts every attempt ever made. A run
    that resumes one whose process died continues its count for the node that was running (see
    ``flow_workbench.runs``). Every run is recorded in the run history (``data.runs()``), every
    attempt in its node's attempt log (``data.attempt_log(node)``).
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
        self,
        *,
        on_event: Observer | None = None,
        params: Mapping[str, Any] | None = None,
        rerun: Rerun | None = None,
    ) -> RunResult:
        """Run every node that is not in a terminal status; see the class docstring.

        Completed nodes whose code changed since they ran (``stale_nodes``) are not re-run by
        default: they are listed in ``RunResult.stale`` and a ``STALE_NODES`` event. With
        ``rerun="stale"`` they and their downstream run again; with ``rerun="all"`` every node
        does (a fresh start; the history, attempt log and key-values are kept).

        ``params`` (run parameters) are stored as key-values of the state before any node runs,
        replacing earlier values (a resumed run without ``params`` uses the stored ones); an action
        added by name receives them in the parameters of their names (``RunParameterError`` for a
        name of a node, ``data``/``ctx``, a value JSON cannot hold, or a declared one missing).

        Raises ``WorkflowExecutionError`` listing every failed node (except ``continue_on_error``
        ones), ``WorkflowCancelledError`` after ``cancel()``, the store's error when only saving
        failed, and re-raises ``KeyboardInterrupt`` after saving the interrupted state.
        """
        if rerun is not None and rerun not in RERUN_MODES:
            raise ValueError(f"rerun must be None, 'stale' or 'all', not {rerun!r}")
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"workflow {self.workflow_id!r} is already executing in this process")
        unsubscribe = self.events.subscribe(on_event) if on_event is not None else None
        try:
            self._cancel.clear()
            # Two processes must never execute one workflow at once (WorkflowLockedError).
            with self.store.execution_lease(self.workflow_id, ttl=self.lease_ttl, wait=self.lease_wait):
                return self._execute(params, rerun)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self._lock.release()

    def stale_nodes(self) -> list[str]:
        """Completed nodes whose stored code version differs from this DAG's, and the nodes
        downstream of them that ran, in topological order (``flow_workbench.code_versions``).
        Nodes without a stored version (Go and older files) are unknown, never stale by
        themselves. Reads the state of the last run, else the stored one (none: ``[]``)."""
        data = self._data
        if data is None:
            try:
                data = self.load_state()
            except WorkflowNotFoundError:
                return []
        return stale_nodes(self.dag, data)

    # --- recovery conveniences -----------------------------------------------------------------

    def reset_nodes(
        self,
        nodes: Iterable[str],
        *,
        downstream: bool = False,
        dry_run: bool = False,
        lease_wait: float | None = None,
    ) -> list[str]:
        """``recovery.reset_nodes`` on this workflow, with its DAG (``lease_wait``: see there)."""
        from .recovery import reset_nodes

        return reset_nodes(
            self.store,
            self.workflow_id,
            nodes,
            downstream=downstream,
            dry_run=dry_run,
            dag=self.dag,
            lease_wait=lease_wait,
        )

    def reset_failed(self, *, dry_run: bool = False, lease_wait: float | None = None) -> list[str]:
        """``recovery.reset_failed`` on this workflow, with its DAG."""
        from .recovery import reset_failed

        return reset_failed(
            self.store, self.workflow_id, dry_run=dry_run, dag=self.dag, lease_wait=lease_wait
        )

    def mark_nodes(
        self,
        nodes: Iterable[str],
        status: NodeStatus | str,
        *,
        dry_run: bool = False,
        lease_wait: float | None = None,
    ) -> list[str]:
        """``recovery.mark_nodes`` on this workflow, with its DAG."""
        from .recovery import mark_nodes

        return mark_nodes(
            self.store, self.workflow_id, nodes, status, dry_run=dry_run, dag=self.dag, lease_wait=lease_wait
        )

    # --- execution -----------------------------------------------------------------------------

    def _execute(self, params: Mapping[str, Any] | None = None, rerun: Rerun | None = None) -> RunResult:
        self.dag.validate()  # unknown dependencies and cycles raise before anything is loaded
        data, existed = self._load_or_create()
        self._check_nodes(data)
        started = time.time()
        reason = run_reason(data, existed=existed)
        # We hold the lease: whatever is still running in the stored state was left by a dead process.
        inherited, changed = close_crashed(
            data, {node.name: node.max_attempts for node in self.dag}, at=started
        )
        versions = dag_code_versions(self.dag)
        stale = stale_nodes(self.dag, data, versions)
        again = list(data.node_statuses()) if rerun == "all" else stale if rerun == "stale" else []
        if again:
            apply_reset(data, again)
            changed = [*changed, *again]
        self._prepare(data)
        apply_run_parameters(self.dag, data, params)
        run_id = new_run_id(started)
        data.put_run(
            RunRecord(
                run_id=run_id,
                started_at=started,
                reason=reason,
                host=current_host(),
                user=current_user(),
                pid=current_pid(),
                # As stored (numpy scalars as plain values), detached from the caller's objects.
                params=None if params is None else {k: plain_output(data.get(k)) for k in params},
            )
        )
        self._data = data
        execution = _Execution(self, data, run_id, inherited, changed, versions)
        execution.result.stale = [] if rerun else stale
        self._active_run = execution
        try:
            return execution.run()
        finally:
            self._active_run = None

    def _max_runners(self) -> int:
        """How many threads may run this workflow's attempts at once (the calling one included)."""
        inline = self.executor == "inline" or isinstance(self.executor, InlineExecutor)
        return 1 if inline else self.max_concurrency

    def _load_or_create(self) -> tuple[WorkflowData, bool]:
        """The stored state and True, or a new one and False."""
        try:
            return self.store.load(self.workflow_id), True
        except WorkflowNotFoundError:
            return WorkflowData(self.workflow_id), False

    def _check_nodes(self, data: WorkflowData) -> None:
        unknown = [name for name in data.node_statuses() if name not in self.dag]
        if unknown:
            raise StateMismatchError(self.workflow_id, unknown)
        texts = data.unknown_statuses()
        if texts:
            # A status no library knows (kept from a Go JSON file): running the node could repeat
            # or skip work; the user decides by resetting or marking it.
            raise UnknownStatusError(self.workflow_id, texts)

    def _prepare(self, data: WorkflowData) -> None:
        statuses = data.node_statuses()
        pending = NodeStatus.PENDING
        data.set_node_statuses(
            {name: pending for name in self.dag.nodes if statuses.get(name) not in TERMINAL_STATUSES}
        )
        data.set_dag_structure(self.dag.structure())


class _Execution:
    """One run of a ``Workflow``: the ``AttemptRunner`` its ``Scheduler`` drives. It records
    statuses and history in the data, emits events, runs actions where they belong and saves.

    Every method the scheduler calls, except ``perform``, runs with ``scheduler.lock`` held.
    """

    def __init__(
        self,
        workflow: Workflow,
        data: WorkflowData,
        run_id: str = "",
        inherited: Mapping[str, int] | None = None,
        changed: Iterable[str] = (),
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.workflow = workflow
        #: Node -> code version of this run's DAG, recorded with each node that completes.
        self.versions = versions or {}
        self.run_id = run_id
        self.host = current_host()
        self.pid = current_pid()
        self.workflow_id = workflow.workflow_id
        self.dag = workflow.dag
        self.data = data
        self.events = workflow.events
        self.store = workflow.store
        self.persistence = workflow.persistence
        self.cancel = workflow._cancel
        #: Work goes to a caller-supplied executor (a pool, a cluster): never run it inline.
        self.external = workflow._external
        self.result = RunResult(workflow.workflow_id, data, run_id=run_id)
        #: Set when the run stops (cancel, hard failure, save error); what ``ctx.cancelled`` reads.
        self.stopping = threading.Event()
        #: Cancel events of timed attempts in flight, set on stop (untimed ones read ``stopping``).
        self.timed: set[threading.Event] = set()
        #: Nodes run at least once (in order): ``RunResult.executed``.
        self.executed: dict[str, None] = {}
        #: Something changed since the last checkpoint (a level completed earlier saves nothing).
        self.dirty = False
        self.save_error: BaseException | None = None
        #: Persistence.NODE: nodes changed since the last durable write, and whether the run
        #: record was (it is, at first: the run starts), written together by ``flush``.
        self.unsaved: dict[str, None] = dict.fromkeys(changed)
        self.run_unsaved = True
        #: Persistence.NODE: every change is noted in ``unsaved`` for the next record.
        self.node_records = self.persistence is Persistence.NODE
        self.scheduler: Scheduler[_Attempt] = Scheduler(
            workflow.dag,
            data.node_statuses(),
            self,
            scheduling=workflow.scheduling,
            max_runners=workflow._max_runners(),
            cancel=workflow._cancel,
            rng=random.Random(workflow._seed),
            attempts=inherited,
        )

    def run(self) -> RunResult:
        started = time.perf_counter()
        self.events.emit(EventKind.RUN_STARTED, self.workflow_id, detail=f"{len(self.dag)} nodes")
        if self.result.stale:
            self.events.emit(
                EventKind.STALE_NODES,
                self.workflow_id,
                detail=f"not re-run (execute(rerun='stale') re-runs them): {', '.join(self.result.stale)}",
            )
        scheduler = self.scheduler
        scheduler.run()  # a crash propagates from here: nothing more is saved, like a dying process
        if scheduler.interrupted:
            # Attempts Ctrl-C cut short, or started and never run: they run again next time.
            now = time.time()
            for name in self.data.nodes_with_status(NodeStatus.RUNNING):
                self.data.record_attempt_finished(name, NodeStatus.PENDING, at=now)
                self.data.close_attempt(name, AttemptOutcome.INTERRUPTED, at=now)
        self.result.duration = time.perf_counter() - started
        self.result.executed = list(self.executed)
        self._record_run()
        self._save(final=True)  # the final or failed state is always saved
        return self._finish()

    def _record_run(self) -> None:
        """The run's outcome and counts in its run history record (saved with the final state)."""
        run = self.data.run(self.run_id)
        if run is None:
            return
        if self.scheduler.interrupted:
            outcome = RunOutcome.INTERRUPTED
        elif self._hard_failures():
            outcome = RunOutcome.FAILED
        elif self.cancel.is_set():
            outcome = RunOutcome.CANCELLED
        elif self.result.succeeded:
            outcome = RunOutcome.SUCCEEDED
        else:
            outcome = RunOutcome.INCOMPLETE
        result = self.result
        self.data.put_run(
            replace(
                run,
                finished_at=time.time(),
                outcome=outcome,
                nodes_run=len(result.executed),
                completed=len(result.completed),
                failed=len(result.failed),
                skipped=len(result.skipped),
            )
        )

    def _hard_failures(self) -> list[str]:
        """Failed nodes that fail the run (not ``continue_on_error``), whichever run failed them."""
        dag = self.dag
        return [
            name
            for name in self.data.nodes_with_status(NodeStatus.FAILED)
            if name in dag and not dag.node(name).continue_on_error
        ]

    # --- AttemptRunner (scheduler.lock held, except perform) -----------------------------------

    def start(self, node: Node, number: int, level: int) -> _Attempt:
        name = node.name
        self.dirty = True
        now = time.time()
        data = self.data
        # The stored count keeps every attempt ever made; the log gets this run's attempt number.
        data.start_attempt(name, self.run_id, number=number, at=now, host=self.host, pid=self.pid)
        if self.node_records:  # with Persistence.NODE, durable before the action runs (flush)
            self.unsaved[name] = None
        deadline = None
        cancel = self.stopping
        if node.timeout is not None:
            # Only timed attempts need an event of their own (to be told they timed out).
            deadline = time.monotonic() + node.timeout
            cancel = threading.Event()
            self.timed.add(cancel)
        ctx = NodeContext(self.workflow_id, name, number, node.max_attempts, node.timeout, cancel)
        self.executed[name] = None
        if self.events.observers:
            self.events.deliver(Event(_NODE_STARTED, self.workflow_id, now, name, number, level, _RUNNING))
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
        now = time.time()
        keep = output is not None
        data.complete_attempt(name, at=now, code_version=self.versions.get(name), keep_output=keep)
        self.result.completed.append(name)
        if self.events.observers:
            self.events.deliver(
                Event(_NODE_COMPLETED, self.workflow_id, now, name, attempt.number, attempt.level, _COMPLETED)
            )
        if self.node_records:  # written by the next flush, with the next start if there is one
            self.unsaved[name] = None
        return None

    def ended_by_cancel(self, attempt: _Attempt, error: BaseException) -> bool:
        if isinstance(error, NodeCancelledError) and attempt.cancel.is_set():
            # The action honoured a cancellation: not a failure, it runs again next time.
            name = attempt.node.name
            now = time.time()
            self.data.record_attempt_finished(name, NodeStatus.PENDING, at=now)
            self.data.close_attempt(name, AttemptOutcome.CANCELLED, at=now)
            self._changed(name)
            return True
        return False

    def retrying(self, attempt: _Attempt, error: BaseException, delay: float) -> None:
        name = attempt.node.name
        message = _message(error)
        self.data.set_node_error(name, message, type(error).__name__)
        self._close_failed(name, error)
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
        name = attempt.node.name
        self.data.record_attempt_finished(
            name, NodeStatus.PENDING, error=_message(error), error_type=type(error).__name__
        )
        self._close_failed(name, error)

    def failed(self, attempt: _Attempt, error: BaseException) -> None:
        name = attempt.node.name
        message = _message(error)
        self.data.record_attempt_finished(
            name, NodeStatus.FAILED, error=message, error_type=type(error).__name__
        )
        self._close_failed(name, error)
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

    def unstarted(self, attempt: _Attempt) -> None:
        name = attempt.node.name
        now = time.time()
        self.data.record_attempt_finished(name, NodeStatus.PENDING, at=now)
        self.data.close_attempt(name, AttemptOutcome.CANCELLED, at=now)
        if attempt.deadline is not None:
            self.timed.discard(attempt.cancel)

    def retry_dropped(self, node: Node) -> None:
        self.data.set_node_status(node.name, NodeStatus.PENDING)  # keeps the failed attempt's error
        self._changed(node.name)

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

    def flush(self) -> None:
        """Persistence.NODE: make the changes since the last durable write durable, as one record
        (the end of one node and the start of the next one travel together)."""
        if not self.unsaved and not self.run_unsaved:
            return
        if self.persistence is not Persistence.NODE or self.save_error is not None:
            self.unsaved.clear()
            return
        nodes = list(self.unsaved)
        self.unsaved.clear()
        run_id = self.run_id if self.run_unsaved else None
        self.run_unsaved = False
        try:
            self.store.save_nodes(self.data, nodes, run_id)
        except StoreError as error:
            self._save_failed(error)

    def _changed(self, name: str) -> None:
        if self.persistence is Persistence.NODE:
            self.unsaved[name] = None

    def _close_failed(self, name: str, error: BaseException) -> None:
        """Close the node's open attempt as failed (or timed out), with a bounded traceback."""
        outcome = AttemptOutcome.TIMEOUT if isinstance(error, NodeTimeoutError) else AttemptOutcome.FAILED
        self.data.close_attempt(
            name,
            outcome,
            at=time.time(),
            error_type=type(error).__name__,
            error=_message(error),
            traceback=_traceback(error),
        )
        self._changed(name)

    # --- saving and the outcome ----------------------------------------------------------------

    def _node_done(self, name: str) -> None:
        self._changed(name)  # written by the next flush, with the next start if there is one

    def _save(self, *, final: bool = False) -> None:
        self.dirty = False
        nodes = list(self.unsaved)
        self.unsaved.clear()  # a full save holds everything
        self.run_unsaved = False
        try:
            if final and self.node_records and self.save_error is None:
                # The store holds all but ``nodes`` and the run record: it may end the run
                # with one more node record instead of a snapshot (``save_run_end``).
                self.store.save_run_end(self.data, nodes, self.run_id)
            else:
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
        for name in self._hard_failures():
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


#: Frames of a failed attempt's traceback kept in the attempt log (the innermost ones).
TRACEBACK_FRAMES = 20


def _traceback(error: BaseException) -> str | None:
    """The innermost ``TRACEBACK_FRAMES`` frames of ``error``'s traceback, formatted (None if it
    has none, e.g. an error made up by the engine); ``WorkflowData`` keeps its last 4 KiB."""
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES))
