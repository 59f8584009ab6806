"""A process-wide set of idle daemon threads that run jobs on request, grown on demand."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: An idle thread exits after this long without work, so a burst of parallel runs does not leave
#: dozens of threads behind for the rest of the session.
IDLE_SECONDS = 60.0


class HelperThreads:
    """Start jobs on idle threads, starting a new thread only when none is idle.

    Unlike ``ThreadPoolExecutor`` there is no future per job and no bound: the engine sizes its
    own demand (``max_concurrency``) and reports results itself, so a job costs one queue put.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def start(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on another thread soon; exceptions it raises are logged, never lost silently."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)  # under the lock: an idle thread timing out sees it (see _serve)
                return
        threading.Thread(target=self._serve, args=(job,), name=self._name, daemon=True).start()

    def _serve(self, job: Callable[[], None]) -> None:
        # Jobs are put under ``_lock``; an idle thread whose wait ran out decides under it whether
        # to take one or leave, so every job put for an idle thread is taken by some thread.
        next_job: Callable[[], None] | None = job
        while next_job is not None:
            try:
                next_job()
            except BaseException:  # a job must report its own errors; this is the last resort
                logger.exception("helper job %r failed", next_job)
            next_job = None  # an idle thread must not keep the last job's run alive
            with self._lock:
                self._idle += 1
            try:
                next_job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    try:  # a job may have been handed over as the wait ran out
                        next_job = self._jobs.get_nowait()
                    except queue.Empty:  # nobody counts on this thread any more: leave
                        self._idle -= 1

    def _forget_threads(self) -> None:
        """In a forked child the threads are gone: start afresh (called by ``os.register_at_fork``)."""
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0


HELPERS = HelperThreads("flow-workbench-runner")
os.register_at_fork(after_in_child=HELPERS._forget_threads)
