"""Per-workflow locks of one file store: a re-entrant thread lock, then an flock on ``<id>.lock``."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from ..errors import StoreIOError
from ._atomic import lock_sidecar

LOCK_SUFFIX = ".lock"


class WorkflowLocks:
    """The locks of the workflows of one store object, by id.

    ``lock_path(id)`` names the sidecar; ``timeout`` is the default wait in seconds. Lock files
    are never unlinked (see ``files``): closing the descriptor releases the ``flock``.
    """

    def __init__(self, lock_path: Callable[[str], str], timeout: float) -> None:
        self._lock_path = lock_path
        self._timeout = timeout
        self._guard = threading.Lock()
        self._thread_locks: dict[str, threading.RLock] = {}
        # Lock-file descriptors of the workflows this store has locked, by id; only the thread
        # holding the id's thread lock reads or changes its entry.
        self._held: dict[str, int] = {}

    @contextlib.contextmanager
    def locked(self, workflow_id: str, timeout: float | None = None) -> Iterator[None]:
        """This process's thread lock, then the sidecar file lock shared with other processes.

        Re-entrant within a thread. ``timeout``: seconds (default: the store's), 0 to try once,
        negative to wait forever; ``StoreIOError`` when it expires.
        """
        with self._guard:
            thread_lock = self._thread_locks.get(workflow_id)
            if thread_lock is None:
                thread_lock = self._thread_locks[workflow_id] = threading.RLock()
        wait = self._timeout if timeout is None else timeout
        lock_path = self._lock_path(workflow_id)
        acquired = thread_lock.acquire(blocking=False) if wait == 0 else thread_lock.acquire(timeout=wait)
        if not acquired:
            raise StoreIOError("lock", lock_path, TimeoutError("the workflow is locked by another thread"))
        try:
            if workflow_id in self._held:  # this thread already holds the file lock
                yield
                return
            self._held[workflow_id] = lock_sidecar(lock_path, wait)
            try:
                yield
            finally:
                os.close(self._held.pop(workflow_id))  # closing the descriptor releases the flock
        finally:
            thread_lock.release()

    def try_thread_lock(self, workflow_id: str) -> threading.RLock | None:
        """The workflow's thread lock, acquired, if nobody in this process holds it (else None)."""
        with self._guard:
            lock = self._thread_locks.get(workflow_id)
        return lock if lock is not None and lock.acquire(blocking=False) else None
