"""Scheduling one run: start each node once its dependencies are done (or level by level) on runner threads.

Modes (``Workflow(scheduling=...)``):

- ``"dependencies"`` (the default): a node is started as soon as every one of its dependencies has
  finished, so a slow node holds back only what depends on it.
- ``"level"``: the Go library's order. The nodes of topological level *k* + 1 start only once every
  node of level *k* has finished.

In both modes a level is **completed** when every node of it and of every earlier level has finished
(completed, failed or skipped); ``AttemptRunner.level_completed`` is called for levels 0, 1, 2, ... in
order, which is when ``Persistence.LEVEL`` saves a checkpoint.

Readiness is a count of unfinished dependencies per node, not a ``graphlib.TopologicalSorter``: the
DAG has already been validated and ordered by graphlib (``DAG.levels``, cached), while a sorter per
run would re-check for cycles in ``prepare()`` and cost more per node (``done``/``get_ready``) than
the whole P4 floor (25 ms against 22 ms at 10,000 nodes; counting costs 6 ms).

Threads. The calling thread takes attempts and runs them itself; while started attempts wait it asks
one helper thread at a time to join (each helper, once it has taken work, asks for the next), up to
``max_runners`` threads in all. Quick actions therefore finish before any helper gets the GIL and cost
no hand-off at all, while slow ones (I/O, sleeping, a cluster) spread over up to ``max_runners``
threads within about a millisecond. A runner that finishes an attempt releases the nodes it
unblocked and takes its next attempt in the same lock section.

A helper asked to join first **stands by** while the calling thread keeps taking attempts and the
one it runs is younger than ``QUICK_SECONDS``; it joins once that attempt has run longer (or the
calling thread stops taking part) while work waits, and leaves when no work waits. A helper whose
own attempt was quick stands by again (or leaves if another one stands by). Under the GIL a stream
of quick attempts is cheapest on one thread: helpers taking part would contend for the lock and
the GIL and cost more than the attempts (``bench/bench_engine.py``, P4), and without a barrier
between levels such a stream lasts for the whole run. At most one helper stands by at a time.

Durability. The runner records starts and ends in memory; ``AttemptRunner.flush`` makes them
durable (``Persistence.NODE``). The scheduler calls it after starting attempts and before any
thread waits or stops taking work, all under the run lock: a started attempt's record is durable
before its action runs, and a runner that ends one attempt and starts the next writes both at once.

Locks. ``Scheduler.lock`` (the run lock) guards the scheduler's state, and every call into the
``AttemptRunner`` except ``perform`` is made with it held: bookkeeping never interleaves and events
reach observers one at a time. The run lock is outermost: inside those calls the runner may take
the workflow data's lock and call the store, whose per-workflow write lock takes the (re-entrant)
data lock again to encode the state and write its artifacts. Code holding the data lock or a store
lock must never wait for the run lock, and since every store call of a run is made under the run
lock, no two threads of a run save the same state at once. Actions run without the run lock (they
may take the data lock). ARCHITECTURE.md draws the nesting.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args

from .dag import DAG
from .helpers import HELPERS
from .node import Node
from .status import SATISFIED_STATUSES, TERMINAL_STATUSES, NodeStatus

Scheduling = Literal["dependencies", "level"]
SCHEDULING_MODES: tuple[Scheduling, ...] = get_args(Scheduling)

#: Attempts shorter than this are "quick": a helper stands by rather than run them alongside the
#: calling thread (see the module docstring). Well below the GIL's 5 ms switch interval.
QUICK_SECONDS = 0.001


def validate_scheduling(value: object) -> Scheduling:
    """``value`` if it names a scheduling mode; ``ValueError`` listing the modes otherwise."""
    for mode in SCHEDULING_MODES:
        if value == mode:
            return mode
    raise ValueError(f"scheduling must be one of {', '.join(map(repr, SCHEDULING_MODES))}, not {value!r}")


class AttemptLike(Protocol):
    """What the scheduler reads of an attempt: its node and its number within this run (1-based)."""

    @property
    def node(self) -> Node: ...

    @property
    def number(self) -> int: ...


A = TypeVar("A", bound=AttemptLike)


class AttemptRunner(Protocol[A]):
    """What the scheduler asks of its owner: record, run and report attempts.

    Every method except ``perform`` is called with ``Scheduler.lock`` held (see the module docstring).
    """

    def start(self, node: Node, number: int, level: int) -> A:
        """Record that attempt ``number`` (within this run) of ``node`` starts; return it."""
        ...

    def perform(self, attempt: A) -> tuple[Any, BaseException | None]:
        """Run the attempt and wait for it, without the lock: ``(output, None)`` or ``(None, error)``."""
        ...

    def complete(self, attempt: A, output: Any) -> BaseException | None:
        """Record a successful attempt; return an error instead if it must fail (an unstorable output)."""
        ...

    def ended_by_cancel(self, attempt: A, error: BaseException) -> bool:
        """If the failed attempt honoured a cancellation, record its node as pending and return True."""
        ...

    def retrying(self, attempt: A, error: BaseException, delay: float) -> None:
        """The attempt failed; the node runs again after ``delay`` seconds."""
        ...

    def left_pending(self, attempt: A, error: BaseException) -> None:
        """The attempt failed while the run stops: the node is pending for the next run."""
        ...

    def failed(self, attempt: A, error: BaseException) -> None:
        """The node's last attempt of this run failed: the node failed."""
        ...

    def skipped(self, name: str, because: str) -> None:
        """``name`` can never run: its dependency ``because`` failed or was skipped."""
        ...

    def retry_dropped(self, node: Node) -> None:
        """The run ended while ``node`` waited for a retry: it is pending for the next run."""
        ...

    def level_completed(self, index: int) -> None:
        """Every node of levels ``0..index`` has finished (called in level order)."""
        ...

    def stop_attempts(self) -> None:
        """The run stops: tell running attempts (``ctx.cancelled``)."""
        ...

    def unstarted(self, attempt: A) -> None:
        """A started attempt will not run after all (the run stopped as its start was being made
        durable): its node is pending for the next run."""
        ...

    def flush(self) -> None:
        """Make what was recorded since the last call durable, if the runner persists per node.

        Called before any attempt started since the last call runs, and before a runner thread
        waits or stops taking work: so a start is durable before its action runs, and the end
        of one attempt and the start of the next one can be written together.
        """
        ...


class Scheduler(Generic[A]):
    """Runs the attempts of one execution of ``dag`` through an ``AttemptRunner``; used once.

    ``statuses`` are the nodes' statuses when the run starts: terminal ones do not run, and the
    failed (without ``continue_on_error``) or skipped ones among them block their dependents.
    """

    def __init__(
        self,
        dag: DAG,
        statuses: Mapping[str, NodeStatus],
        runner: AttemptRunner[A],
        *,
        scheduling: Scheduling = "dependencies",
        max_runners: int,
        cancel: threading.Event | None = None,
        rng: random.Random | None = None,
        attempts: Mapping[str, int] | None = None,
    ) -> None:
        levels = dag.levels()  # validates: unknown dependencies and cycles raise here
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._nodes = dag.nodes
        self._dag = dag
        self._runner = runner
        self._level_mode = validate_scheduling(scheduling) == "level"
        self._max_runners = max_runners
        self._cancel = cancel if cancel is not None else threading.Event()
        self._rng = rng if rng is not None else random.Random()
        # --- graph state -------------------------------------------------------------------------
        self._level_of = {name: index for index, level in enumerate(levels) for name in level}
        #: Per level, how many of its nodes have not finished; levels below ``_lowest`` are completed.
        self._unfinished = [len(level) for level in levels]
        self.level_count = len(levels)
        self._lowest = 0
        #: Level mode: ready nodes waiting for their level (the level after ``_lowest`` and beyond).
        self._held: dict[int, list[str]] = {}
        self._terminal = {name for name, status in statuses.items() if status in TERMINAL_STATUSES}
        self._blocking = {
            name
            for name in self._terminal
            if name in self._nodes
            and statuses[name] not in SATISFIED_STATUSES
            and not (statuses[name] is NodeStatus.FAILED and self._nodes[name].continue_on_error)
        }
        #: Nodes this run has to finish and has not (left pending if the run stops early).
        self.open = set(self._nodes).difference(self._terminal)
        #: Attempts made in this run, per node (``ctx.attempt`` counts within the run); ``attempts``
        #: given to the constructor are counted as made (those of a crashed run this one resumes).
        self.attempts: dict[str, int] = dict(attempts or {})
        #: Nodes that failed in this run without ``continue_on_error`` (the first one stopped it).
        self.failed: list[str] = []
        #: Per node not released yet, how many of its dependencies have not finished.
        self._waiting: dict[str, int] = {name: len(node.depends_on) for name, node in self._nodes.items()}
        #: The DAG's own cached map, read only here: a DAG changed meanwhile builds a new map
        #: instead of changing this one, so this run keeps the graph it started with.
        self._dependents: Mapping[str, list[str]] = dag._dependents_map()
        # --- runner state --------------------------------------------------------------------------
        self._queue: deque[Node] = deque()  # ready, not started yet
        #: Attempts started (as ``max_runners`` allows) and waiting for a thread to run them.
        self._started: deque[A] = deque()
        self._retries: list[tuple[float, int, Node]] = []  # (ready at, sequence, node)
        self._sequence = 0
        #: Attempts started and not yet finished, and whether the calling thread runs one of them.
        self._in_flight = 0
        self._coordinator_busy = False
        #: The calling thread is inside an attempt's ``perform``, since when. Written without the
        #: lock (single attribute writes) so that waiting for the lock does not count as running.
        self._coordinator_performing = False
        self._coordinator_since = 0.0
        #: The calling thread is taking attempts (it takes the next one when its attempt ends).
        self._coordinating = False
        #: Threads taking work (the calling thread counts while it takes part).
        self._runners = 0
        #: A helper was asked to join (or stands by) and has not taken work yet: ask for the next
        #: one only after it.
        self._waking = False
        #: A runner is waiting for the next retry to be due (one is enough).
        self._retry_waiter = False
        #: The calling thread waits for work or for the end and must be notified.
        self._supervisor_waiting = False
        self.stopped = False
        #: Ctrl-C reached the calling thread; ``run`` returned after the other threads' attempts.
        self.interrupted = False
        #: A BaseException (a crash) raised by an action on a helper thread, re-raised by ``run``.
        self._crash: BaseException | None = None
        #: ``run`` left without waiting for the helpers (a crash, a second Ctrl-C): whatever they
        #: still finish is dropped, so nothing changes the state after it returned.
        self._abandoned = False

    # --- public --------------------------------------------------------------------------------

    def run(self) -> None:
        """Run attempts until nothing can start and nothing runs, then skip the dependents of
        nodes that failed hard. Re-raises a crash (a BaseException other than Ctrl-C from an
        action) at once; after Ctrl-C waits for other threads' attempts and sets ``interrupted``."""
        try:
            with self.lock:
                self._settle([], initial=True)
            self._coordinate()
        except KeyboardInterrupt:
            self.interrupted = True
            with self.lock:
                self.halt()
                self._started.clear()  # started, never run: the runner finds them still running
            try:
                self._await_helpers()
            except KeyboardInterrupt:  # a second Ctrl-C abandons what still runs
                with self.lock:
                    self._abandoned = True
        with self.lock:
            self._end()

    def stop(self) -> None:
        """``halt`` from a thread that does not hold the lock."""
        with self.lock:
            self.halt()

    def halt(self) -> None:
        """Start no new attempts and tell running ones to finish early (hold ``lock``)."""
        if not self.stopped:
            self.stopped = True
            self._runner.stop_attempts()

    # --- graph bookkeeping (lock held) ---------------------------------------------------------

    def _settle(self, finished: list[str], *, initial: bool = False) -> None:
        """``finished`` nodes reached a terminal status: release the nodes waiting for them.

        Nodes that need no attempt (terminal before the run, or skipped) finish at once, so a
        chain of them is walked here, iteratively.
        """
        waiting = self._waiting
        dependents = self._dependents
        unfinished = self._unfinished
        level_of = self._level_of
        nodes = self._nodes
        queue = self._queue
        if initial:
            roots = [name for name, count in waiting.items() if not count]
            finished.extend(name for name in roots if self._release(name))
        # The common case (nothing to skip or hold, nothing finished earlier) queues directly.
        direct = not (self._terminal or self._blocking or self._level_mode or self.stopped)
        while finished:
            name = finished.pop()
            level = level_of[name]
            unfinished[level] -= 1
            if not unfinished[level] and level == self._lowest:
                self._complete_levels(finished)  # may save, fail to and stop: look again
                direct = direct and not (self._blocking or self.stopped)
            for dependent in dependents.get(name, ()):
                count = waiting[dependent] - 1
                waiting[dependent] = count
                if count:
                    continue
                if direct:
                    queue.append(nodes[dependent])
                elif self._release(dependent):
                    finished.append(dependent)

    def _release(self, name: str) -> bool:
        """Queue ready ``name`` to run, or finish it at once (True); when stopping it stays pending."""
        if name in self._terminal:
            return True
        if self.stopped:
            return False
        node = self._nodes[name]
        if self._blocking:
            for dependency in node.depends_on:
                if dependency in self._blocking:
                    self.open.discard(name)
                    self._blocking.add(name)
                    self._runner.skipped(name, dependency)
                    return True
        if self._level_mode:
            level = self._level_of[name]
            if level > self._lowest:
                self._held.setdefault(level, []).append(name)
                return False
        self._queue.append(node)
        return False

    def _complete_levels(self, finished: list[str]) -> None:
        """The lowest unfinished level has finished: report it and every level after it that has
        finished too, in order; in level mode release the next level's nodes (``finished`` gets
        those that finish at once)."""
        unfinished = self._unfinished
        while self._lowest < len(unfinished) and not unfinished[self._lowest]:
            self._runner.level_completed(self._lowest)
            self._lowest += 1
            for held in self._held.pop(self._lowest, ()):
                if self._release(held):
                    finished.append(held)

    def _end(self) -> None:
        """The run is over: retries left waiting go back to pending; dependents of nodes that
        failed hard are skipped (they could never run); unrelated unreached nodes stay pending."""
        for _, _, node in self._retries:
            self._runner.retry_dropped(node)
        self._retries.clear()
        for failed in self.failed:
            for name in self._dag.downstream(failed):
                if name in self.open:
                    self.open.discard(name)
                    self._runner.skipped(name, failed)
                    level = self._level_of[name]
                    self._unfinished[level] -= 1
                    if not self._unfinished[level] and level == self._lowest:
                        self._complete_levels([])  # for level_completed only: nothing starts now

    # --- attempts (lock held) ------------------------------------------------------------------

    def _finish(self, attempt: A, output: Any, error: BaseException | None) -> None:
        """Record how ``attempt`` ended and release what it unblocked."""
        node = attempt.node
        if error is None:
            error = self._runner.complete(attempt, output)
            if error is None:
                self.open.discard(node.name)
                self._settle([node.name])
                return
        elif not isinstance(error, Exception):
            # A BaseException (SystemExit, a simulated crash) ends the run like a dying process:
            # nothing more is recorded. Ctrl-C is handled by ``run``, after the other attempts.
            self.halt()
            if not isinstance(error, KeyboardInterrupt):
                self._abandon()
            raise error
        if self._runner.ended_by_cancel(attempt, error):
            return
        if attempt.number < node.max_attempts:
            if self.stopped:  # the node gets its full retry budget again in the next run
                self._runner.left_pending(attempt, error)
                return
            delay = node.delay_before_retry(attempt.number, self._rng)
            self._sequence += 1
            heapq.heappush(self._retries, (time.monotonic() + delay, self._sequence, node))
            self._runner.retrying(attempt, error, delay)
            return
        self.open.discard(node.name)
        self._runner.failed(attempt, error)
        if not node.continue_on_error:
            self._blocking.add(node.name)
            self.failed.append(node.name)
            self.halt()  # the first hard failure stops the run; started attempts finish
        self._settle([node.name])

    # --- runners -------------------------------------------------------------------------------

    def _coordinate(self) -> None:
        """Take part in running attempts, then wait until no attempt is left in flight."""
        lock = self.lock
        while True:
            with lock:
                self._runners += 1
                self._coordinating = True
            try:
                self._take_and_run(coordinator=True)
            finally:
                with lock:
                    self._runners -= 1
                    self._coordinating = False
            with lock:
                while True:
                    if self._crash is not None:
                        self._abandon()  # like a dying process: nothing more runs
                        raise self._crash
                    if self._cancel.is_set():
                        self.halt()
                    if self._started or (
                        not self.stopped and (self._queue or (self._retries and not self._retry_waiter))
                    ):
                        break  # work nobody is taking right now: take part again
                    # New work only comes from attempts that finish: none in flight, none to come.
                    if self._in_flight == 0 and (self.stopped or not (self._queue or self._retries)):
                        return
                    self._supervisor_waiting = True
                    try:
                        self.changed.wait(0.2)  # wakes at least every 0.2 s so cancel() is noticed
                    finally:
                        self._supervisor_waiting = False

    def _helper_job(self) -> None:
        lock = self.lock
        try:
            self._take_and_run(coordinator=False)  # returns having stopped taking work
        except BaseException as error:  # a crash in an action: the calling thread re-raises it
            with lock:
                if self._crash is None:
                    self._crash = error
                self.halt()
                self._runners -= 1
                self.changed.notify_all()

    def _take_and_run(self, *, coordinator: bool) -> None:
        lock = self.lock
        runner = self._runner
        with lock:
            attempt = self._take(coordinator) if coordinator else self._stand_by()
        while attempt is not None:
            began = time.monotonic()
            if coordinator:
                self._coordinator_since = began
                self._coordinator_performing = True
            try:
                output, error = runner.perform(attempt)
            except BaseException:  # Ctrl-C outside the action (e.g. while waiting on a future)
                with lock:
                    self._in_flight -= 1
                    if coordinator:
                        self._coordinator_busy = False
                raise
            finally:
                if coordinator:
                    self._coordinator_performing = False
            with lock:  # one lock round per attempt: finish this one, take the next
                self._in_flight -= 1
                if coordinator:
                    self._coordinator_busy = False
                if self._supervisor_waiting and self._in_flight == 0:
                    self.changed.notify_all()
                if not self._abandoned:
                    self._finish(attempt, output, error)
                if not coordinator and time.monotonic() - began < QUICK_SECONDS:
                    runner.flush()  # before standing by or leaving: nothing waits unwritten
                    if self._waking:  # another helper stands by already
                        self._leave()
                        attempt = None
                    else:
                        self._waking = True
                        attempt = self._stand_by()
                else:
                    attempt = self._take(coordinator)

    def _stand_by(self) -> A | None:
        """A helper's next attempt once it is needed, or None when it leaves (``_waking`` is set
        on entry: no other helper is asked to join meanwhile). See the module docstring."""
        while True:
            if self._crash is not None or self._abandoned:
                break
            if not self._started and (
                self.stopped or not (self._queue or (self._retries and not self._retry_waiter))
            ):
                break  # nothing waits (started attempts run even when the run stops)
            if not self._coordinating:
                self._waking = False
                return self._take(False)
            performing = self._coordinator_performing
            waited = time.monotonic() - self._coordinator_since
            if performing and waited >= QUICK_SECONDS:
                self._waking = False  # the calling thread is stuck in a long attempt: join
                return self._take(False)
            self.changed.wait(QUICK_SECONDS - waited if performing else QUICK_SECONDS)
        self._waking = False
        self._leave()
        return None

    def _leave(self) -> None:
        """A helper stops taking work (lock held)."""
        self._runners -= 1
        if self._supervisor_waiting:
            self.changed.notify_all()

    def _take(self, coordinator: bool) -> A | None:
        """The next attempt for this thread; a helper given none stops taking work in the same
        lock section, so no runner ever counts on a helper that is already on its way out."""
        attempt = self._next_attempt(coordinator)
        if attempt is None and not coordinator:
            self._leave()
        return attempt

    def _next_attempt(self, coordinator: bool) -> A | None:
        """The next started attempt to run, or None when there is none now.

        Attempts are started (recorded, announced) for as many ready nodes as ``max_runners``
        allows before any of them runs: ready nodes start together, and a hard failure stops only
        those not started yet, whichever thread gets to run which attempt.
        """
        started = self._started
        queue = self._queue
        attempts = self.attempts
        level_of = self._level_of
        start = self._runner.start
        while True:
            if self._crash is not None or self._abandoned:
                return None
            if self._cancel.is_set():
                self.halt()
            if not self.stopped:
                retries = self._retries
                if retries:
                    now = time.monotonic()
                    while retries and retries[0][0] <= now:
                        queue.append(heapq.heappop(retries)[2])
                limit = self._max_runners - self._in_flight
                while queue and len(started) < limit:
                    node = queue.popleft()
                    name = node.name
                    number = attempts[name] = attempts.get(name, 0) + 1
                    started.append(start(node, number, level_of[name]))
            running = not self.stopped
            if started or self._in_flight or self._queue or self._retries:
                self._runner.flush()  # the starts (and the ends before them) before any action runs
            # else the run is over (nothing started, running or due): its final save, right
            # after, holds the last ends; a record of them first would be written twice.
            if running and self.stopped:
                # The flush failed (a store error halts the run): no start it could not make
                # durable may run. The attempts go back, their nodes pending.
                while started:
                    self._runner.unstarted(started.popleft())
            if started:
                attempt = started.popleft()
                if started and not self._waking and self._runners < self._max_runners:
                    self._waking = True
                    self._runners += 1
                    HELPERS.start(self._helper_job)
                self._in_flight += 1
                if coordinator:
                    self._coordinator_busy = True
                return attempt
            if self.stopped or not self._retries or self._retry_waiter:
                return None
            self._retry_waiter = True  # wait here for the next retry to be due
            try:
                self.changed.wait(min(0.2, max(0.0, self._retries[0][0] - time.monotonic())))
            finally:
                self._retry_waiter = False

    def _abandon(self) -> None:
        """Leave without the helpers (hold ``lock``): nothing they finish is recorded."""
        self._abandoned = True
        self._started.clear()

    def _await_helpers(self) -> None:
        """Wait for the attempts other threads still run (after Ctrl-C in this one)."""
        with self.lock:
            while self._in_flight - self._coordinator_busy > 0 and self._crash is None:
                self._supervisor_waiting = True
                try:
                    self.changed.wait(0.2)
                finally:
                    self._supervisor_waiting = False
