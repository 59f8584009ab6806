"""What a file store knows of each workflow's files: snapshot identity, version, open journal (LRU)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import StoreIOError
from ._journal import JournalWriter

#: Journal writers (open file descriptors) kept per store; least recently used ones are closed.
MAX_OPEN_JOURNALS = 128


@dataclass
class Known:
    """What this process knows about one workflow's files; valid while they are unchanged."""

    snapshot: tuple[int, int, int]  # inode, size, mtime_ns of the snapshot file
    snapshot_version: int
    journal: JournalWriter | None  # open journal whose base is ``snapshot_version``

    @property
    def version(self) -> int:
        return self.journal.version if self.journal is not None else self.snapshot_version

    def forget(self, *, sync: bool = True) -> None:
        """Close the journal, first syncing records ``durability="batched"`` left unsynced
        (``sync=False``: a snapshot holding them has replaced the journal, so they are moot).

        Raises ``StoreIOError`` if that sync fails (the descriptor is closed all the same).
        """
        journal, self.journal = self.journal, None
        if journal is not None:
            try:
                if sync:
                    journal.sync()
            finally:
                journal.close()


def identity(info: os.stat_result) -> tuple[int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class KnownFiles:
    """``Known`` entries by workflow id, least recently used first, at most ``MAX_OPEN_JOURNALS``.

    ``try_lock(id)`` returns the workflow's thread lock acquired, or None if it is in use: only
    entries nobody is using right now are evicted.
    """

    def __init__(self, try_lock: Callable[[str], threading.RLock | None]) -> None:
        self._try_lock = try_lock
        self._guard = threading.Lock()
        self._entries: OrderedDict[str, Known] = OrderedDict()

    def get(self, workflow_id: str) -> Known | None:
        return self._entries.get(workflow_id)

    def remember(self, workflow_id: str, known: Known) -> None:
        with self._guard:
            self._entries[workflow_id] = known
            self._entries.move_to_end(workflow_id)
            excess = len(self._entries) - MAX_OPEN_JOURNALS
            victims = []
            for other in list(self._entries):
                if excess <= 0:
                    break
                lock = self._try_lock(other) if other != workflow_id else None
                if lock is not None:
                    victims.append((self._entries.pop(other), lock))
                    excess -= 1
        for victim, lock in victims:
            try:
                with contextlib.suppress(StoreIOError):  # as in drop
                    victim.forget()
            finally:
                lock.release()

    def touch(self, workflow_id: str) -> None:
        with self._guard:
            self._entries.move_to_end(workflow_id)

    def drop(self, workflow_id: str, *, superseded: bool = False) -> None:
        """Forget what is known of the workflow's files; ``superseded``: a snapshot written
        as durably as the store writes anything now holds every journal record."""
        with self._guard:
            known = self._entries.pop(workflow_id, None)
        if known is not None:
            # Best effort: the journal is being superseded, deleted or re-read; batched records
            # are only promised durable by flush() and close(), which do report sync failures.
            with contextlib.suppress(StoreIOError):
                known.forget(sync=not superseded)

    def entries(self, *, clear: bool = False) -> list[Known]:
        """Every entry (and, with ``clear``, forget them all without closing anything)."""
        with self._guard:
            entries = list(self._entries.values())
            if clear:
                self._entries.clear()
        return entries
