"""Execution leases of the file stores: an ``flock`` on ``<id>.lease`` holding its holder's record.

The lock is taken on the sidecar ``<id>.lease``, never on the state file (``os.replace`` swaps the
state file's inode). After taking it the holder writes a small JSON record (host, pid, since,
purpose) into it, and empties it when leaving. The record means something only while the lock is
held: a holder killed by SIGKILL leaves its record behind, but the kernel drops its lock, so
``holder_of`` (which tries the lock first) answers None. The file is opened without ``O_TRUNC``:
a process failing to take the lock must not erase the holder's record.

``holder_of`` asks with a shared lock, which also makes a concurrent exclusive attempt fail.
Taking the lease therefore asks ``holder_of`` after a failed attempt: only when someone really
holds it (the shared lock cannot be had either) is the lease waited for or refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time

from ..errors import StoreIOError, WorkflowLockedError
from ._atomic import _O_CLOEXEC, _O_NOFOLLOW
from .leases import MAX_RECORD_BYTES, LeaseHolder

#: Seconds a lease is retried while every failed attempt finds nobody holding it: the lock was held
#: only by processes asking who holds it (``holder_of`` takes a shared lock for microseconds, but
#: for a whole time slice or more if its process is descheduled meanwhile). Bounded, so that a
#: flood of such questions, or a foreign shared lock, cannot keep a lease waiting forever.
PROBE_PATIENCE = 2.0
#: How often ``holder_of`` looks again when the lock is held but the record is not written yet.
_RECORD_TRIES = 10
_RECORD_PAUSE = 0.005


def acquire(path: str, workflow_id: str, holder: LeaseHolder, wait: float | None) -> int:
    """Lock ``path`` within ``wait`` seconds (None: at once) and write ``holder`` into it.

    Returns the descriptor holding the lock (pass it to ``release``). Raises
    ``WorkflowLockedError`` naming the current holder, ``StoreIOError`` when the file fails.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
    except OSError as error:
        raise StoreIOError("lock", path, error) from error
    try:
        _lock(fd, path, workflow_id, wait)
    except BaseException as error:
        os.close(fd)
        if isinstance(error, OSError) and not isinstance(error, StoreIOError):
            raise StoreIOError("lock", path, error) from error
        raise
    # The record is advisory: a lease whose record could not be written (disk full) still excludes.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_record(), 0)
    return fd


def _lock(fd: int, path: str, workflow_id: str, wait: float | None) -> None:
    started = time.monotonic()
    deadline = started + max(wait or 0.0, 0.0)
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        current = holder_of(path)
        now = time.monotonic()
        # Nobody holds it: only a question about the holder was in the way, so try again.
        patience = started + PROBE_PATIENCE if current is None else started
        if now >= max(deadline, patience):
            raise WorkflowLockedError(workflow_id, current, where=f"lease file {path}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05 if current is not None else 0.005)


def release(fd: int) -> None:
    """Empty the record and drop the lock (closing the descriptor releases the flock)."""
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def holder_of(path: str) -> LeaseHolder | None:
    """Who holds the lease file ``path`` now, or None if nobody does.

    Tries a shared lock without waiting: taken means nobody holds the lease (it is dropped at
    once). Otherwise the holder's record is read; a holder that has locked the file but not yet
    written its record is waited for a few milliseconds, then reported with unknown fields.
    """
    for _ in range(_RECORD_TRIES):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC | _O_NOFOLLOW)
        except FileNotFoundError:
            return None  # never leased
        except OSError as error:
            raise StoreIOError("read lease", path, error) from error
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # not a lease file of ours; taking the lease will report it
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: read who holds it
            else:
                return None
            holder = LeaseHolder.from_record(os.pread(fd, MAX_RECORD_BYTES, 0))
        except OSError as error:
            raise StoreIOError("read lease", path, error) from error
        finally:
            os.close(fd)
        if holder is not None:
            return holder
        time.sleep(_RECORD_PAUSE)
    return LeaseHolder(host=None, pid=None, since=None)
