"""FileStore: one file per workflow, written atomically, with per-node journals and transactions.

Guarantees (on a local POSIX filesystem):

- A save replaces the file atomically (temp file, fsync, rename, directory fsync): after a crash
  the file holds the old or the new state, never a mix. ``durability="none"`` drops the fsyncs:
  still atomic against a process crash, not against power loss.
- ``save`` and ``save_node`` are compare-and-set on ``data.version`` (``VersionConflictError``,
  never a silent overwrite), checked and written under a sidecar ``<id>.lock`` held only for
  that moment. Processes working on different workflows never wait for each other.
- ``save_node`` appends one record to the journal (``<id>.journal`` beside ``<id>.fb``,
  ``<id>.json-journal`` beside ``<id>.json``; see ``_journal``) instead of rewriting
  the snapshot, so per-node persistence costs the same for 10 or 100,000 nodes.
- A transaction's files are all renamed into place or none: a crash mid-commit is rolled
  forward from its manifest when the store is next opened or a workflow is loaded.

Locking is the protocol of the ``filelock`` package (``flock(2)`` on a sidecar ``<id>.lock``, never
on the data file, which ``os.replace`` swaps for a new inode), so a tool holding
``filelock.FileLock("<id>.lock")`` excludes this store correctly. It is done directly rather
than through ``filelock``: its acquire/release measured ~70 us here against ~3 us for
open + flock + close, and a per-node record's whole budget is about three fdatasyncs. The
execution lease is an ``flock`` on another sidecar, ``<id>.lease``, held for a whole run or
edit, into which its holder writes who it is (see ``_lease_file``).

Non-guarantees: ``flock`` is unreliable on network filesystems (NFS, SMB), so several machines
must not share one folder. Lock files are never unlinked, not even by ``delete``: unlinking a
lock file while another process waits on it would let a third process lock a new inode and
enter the critical section together with the waiter. They are empty and harmless.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import orjson

from .._gc_pause import cyclic_gc_paused
from ..data import Changed, WorkflowData
from ..errors import (
    CorruptStateError,
    InvalidWorkflowIdError,
    StoreIOError,
    VersionConflictError,
    WorkflowNotFoundError,
)
from ..ids import is_valid_workflow_id, validate_workflow_id
from ..status import STATUS_BY_VALUE, NodeStatus
from . import _lease_file
from ._artifacts import ARTIFACTS_SUFFIX, attach, file_artifacts, saving
from ._atomic import (
    DEFAULT_MAX_FILE_BYTES,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Buffer,
    atomic_write,
    check_not_special,
    fsync,
    fsync_directory,
    is_temp_name,
    mapped_state_file,
    read_state_file,
    replace_temp,
    unlink_if_exists,
    unlink_quietly,
    write_temp,
)
from ._journal import (
    JournalWriter,
    StagedJournal,
    SyncPolicy,
    encode_records,
    journal_suffix,
    read_journal,
    replay,
)
from ._kinds import STATE_SUFFIXES
from ._known import Known, KnownFiles, identity
from ._locks import LOCK_SUFFIX, WorkflowLocks
from ._manifests import (
    MANIFEST_SUFFIX,
    TRANSACTIONS_DIR,
    Entry,
    encode_manifest,
    exists_in,
    read_manifests,
    transactions_folder,
)
from ._versions import content_token, is_content_token, is_stale, next_version
from .base import StagedTransaction, StateFormat, Transaction, TransactionalStore, WorkflowSummary
from .codec import StateCodec
from .folder import FolderEntry, scan_folder, summarize_state_file
from .leases import EXECUTE, LeaseHolder

#: Sidecar held (flock) while a process executes or edits the workflow; see ``execution_lease``.
LEASE_SUFFIX = ".lease"
#: Default ``run_end_records``: loads and folder tables replay at most this many records of a
#: run that ended with one (a snapshot at the end of a 10-node run costs as much as 4-6 records).
RUN_END_RECORDS = 64


class FileStore(TransactionalStore):
    """Stores each workflow as ``<base_dir>/<id><codec.suffix>`` using any ``StateCodec``.

    Options:

    - ``durability``: ``"full"`` (default) fsyncs every snapshot and every journal record before
      returning; ``"batched"`` fsyncs snapshots but journal records only every
      ``batch_records`` records or ``batch_ms`` milliseconds (a power loss may lose the
      records since the last sync; a process crash loses nothing); ``"none"`` never fsyncs
      (atomic against process crashes, not against power loss).
    - ``max_file_bytes``: larger files are reported as corrupt (default 64 MiB, as in Go).
    - ``lock_timeout``: seconds to wait for another process's lock before ``StoreIOError``.
    - ``compact_after``: a journal with this many records (or more records than the workflow
      has nodes, whichever is larger) is folded into a new snapshot by the next ``save_node``.
    - ``run_end_records``: a ``Persistence.NODE`` run ends with one more journal record instead
      of a new snapshot when every change since the store last held the state is a node or
      this run's record and the journal then holds at most this many records (default 64;
      ``JSONFileStore``: 0, always a snapshot, since Go and people read its file alone). A
      longer journal, or any other change, ends the run with a snapshot as before.

    A save over a file that cannot be decoded raises ``CorruptStateError`` instead of
    overwriting it (its version is unknown); ``delete`` it first to start over.
    """

    lease_holder_sees_every_process = True  # an flock plus the holder's record

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        codec: StateCodec,
        *,
        durability: str = "full",
        batch_records: int = 32,
        batch_ms: float = 50.0,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        lock_timeout: float = 60.0,
        compact_after: int = 4096,
        run_end_records: int = RUN_END_RECORDS,
    ) -> None:
        self._policy = SyncPolicy(durability, batch_records, batch_ms)
        self._durable = durability != "none"
        self._codec = codec
        self._suffix = codec.suffix
        self._journal_suffix = journal_suffix(codec.suffix)
        self._max_bytes = max_file_bytes
        self._lock_timeout = lock_timeout
        self._compact_after = max(1, compact_after)
        self._run_end_records = max(0, run_end_records)
        #: Change-log entries looked at to tell whether a record holds every change (a node's
        #: start and end note a handful each): past it, the run ends with a snapshot.
        self._unstored_limit = 16 * self._run_end_records
        #: Who "this store" is in ``WorkflowData.note_stored``: states it loaded or wrote.
        self._token = object()
        try:
            os.makedirs(base_dir, mode=0o700, exist_ok=True)
        except OSError as error:
            raise StoreIOError("create", os.fspath(base_dir), error) from error
        self._dir = os.path.realpath(base_dir)
        if not os.path.isdir(self._dir):
            raise StoreIOError("open", self._dir, NotADirectoryError(self._dir))
        self._txn_dir = os.path.join(self._dir, TRANSACTIONS_DIR)
        #: Artifact outputs: ``<id>.artifacts/<hash>.arrow``, written before the states using them.
        self._artifacts = file_artifacts(self._dir, codec.format.value, durable=self._durable)
        self._locks = WorkflowLocks(lambda workflow_id: self._path(workflow_id, LOCK_SUFFIX), lock_timeout)
        self._known = KnownFiles(self._locks.try_thread_lock)
        self.recover()

    # --- public API ----------------------------------------------------------------------------

    @property
    def base_dir(self) -> str:
        return self._dir

    @property
    def codec(self) -> StateCodec:
        return self._codec

    @property
    def format(self) -> StateFormat:
        return self._codec.format

    @property
    def durability(self) -> str:
        return self._policy.mode

    def path_of(self, workflow_id: str) -> str:
        """Path of the workflow's state file (the id is validated first)."""
        return self._path(workflow_id, self._suffix)

    def save(self, data: WorkflowData) -> None:
        with self.metrics.measure("save"):
            workflow_id = validate_workflow_id(data.id)
            with self._write_locks([workflow_id]), saving(self._artifacts, [data]):
                known = self._current(workflow_id)
                if known is not None and is_stale(data.version, known.version):
                    raise VersionConflictError(workflow_id, data.version, known.version)
                self._write_snapshot(data, known)

    def save_node(self, data: WorkflowData, node: str) -> None:
        """Append ``node``'s record to the journal in O(1); falls back to a full save when the
        stored state is not the one ``data`` was loaded from or saved as (or there is none)."""
        self.save_nodes(data, [node])

    def save_nodes(self, data: WorkflowData, nodes: Sequence[str], run_id: str | None = None) -> None:
        """Append one journal record holding the records of ``nodes`` (and of run ``run_id``):
        one fdatasync for all of them; the fallbacks of ``save_node``."""
        with self.metrics.measure("record"):
            workflow_id = validate_workflow_id(data.id)
            with self._write_locks([workflow_id]), saving(self._artifacts, [data], nodes):
                known = self._current(workflow_id)
                if known is not None and is_stale(data.version, known.version):
                    raise VersionConflictError(workflow_id, data.version, known.version)
                self._save_records(data, nodes, run_id, known)

    def save_run_end(self, data: WorkflowData, nodes: Sequence[str], run_id: str) -> None:
        """One journal record when the run's changes fit one (see ``run_end_records``), else a
        snapshot; either way the store then holds ``data`` in full."""
        workflow_id = validate_workflow_id(data.id)
        with self._write_locks([workflow_id]):
            known = self._current(workflow_id)
            record = None if known is None else self._run_end_record(data, nodes, run_id, known)
            # Counted as what it writes: a "record" or a "save" (``metrics``).
            with self.metrics.measure("save" if record is None else "record"):
                if known is not None and is_stale(data.version, known.version):
                    raise VersionConflictError(workflow_id, data.version, known.version)
                if record is None:
                    with saving(self._artifacts, [data]):
                        self._write_snapshot(data, known)
                else:
                    with saving(self._artifacts, [data], record):
                        self._save_records(data, record, run_id, known)
                    # The end of a run is as durable as the snapshot it replaces, whatever
                    # ``durability="batched"`` left unsynced (with "full" there is nothing).
                    if self._durable and known is not None and known.journal is not None:
                        known.journal.sync()

    def _run_end_record(
        self, data: WorkflowData, nodes: Sequence[str], run_id: str, known: Known
    ) -> list[str] | None:
        """The nodes of the record that can end the run, or None when it must end with a snapshot:
        the stored state plus that record must be ``data`` exactly, and the journal stay short."""
        writer = known.journal
        if (
            writer is None  # no journal on this snapshot: creating one costs what a snapshot does
            or writer.records >= self._run_end_records
            or data.version != writer.version
            or data.may_reference_artifacts()  # unreferenced artifacts are removed by snapshots
        ):
            return None
        changes = data.unstored_changes(self._token, self._unstored_limit)
        changed = None if changes is None else _recordable_nodes(changes, run_id)
        if changed is None:
            return None  # not loaded or written by this store, or not all a record can carry
        record = [*dict.fromkeys([*nodes, *changed])]
        return record if len(record) <= self._run_end_records else None

    def _save_records(
        self, data: WorkflowData, nodes: Sequence[str], run_id: str | None, known: Known | None
    ) -> None:
        """``save_nodes`` with the workflow locked and ``known`` checked against ``data``."""
        workflow_id = data.id
        if known is None and self._codec.writes_versions:
            self._write_first_snapshot(data)
            return
        # Journals extend a versioned snapshot: a Go file (whose version is a content
        # token) is rewritten whole, as Go itself would.
        if (
            known is None
            or known.snapshot_version == 0
            or is_content_token(known.snapshot_version)
            or data.version != known.version
        ):
            self._write_snapshot(data, known)
            return
        with data.read_columns() as columns:
            mark = data.changes.mark()
            records = [data.node_record(node) for node in nodes]
            run = None if run_id is None else data.run(run_id)
            node_count = len(columns.statuses)
        writer = known.journal
        if writer is not None and writer.records >= max(self._compact_after, node_count):
            self._write_snapshot(data, known)
            return
        if not records and run is None:
            return
        now = time.time()
        frame = encode_records(workflow_id, records, run, now)
        try:
            if writer is None:
                # The record goes into the new journal's first write: two syncs in all.
                journal_path = self._path(workflow_id, self._journal_suffix)
                writer = known.journal = JournalWriter.create(
                    journal_path, known.snapshot_version, durable=self._durable, first_frame=frame
                )
            else:
                writer.append(frame, self._policy)
        except BaseException:
            # Whatever the file now holds, the next operation must look at it afresh.
            self._drop(workflow_id)
            raise
        data.version = writer.version
        data.updated_at = now
        self._note_recorded(data, nodes, run_id, mark)

    def _note_recorded(
        self, data: WorkflowData, nodes: Sequence[str], run_id: str | None, mark: tuple[int, int]
    ) -> None:
        """After a record of ``nodes`` and run ``run_id`` (their values at ``mark``): if they were
        every change since the store last held ``data``, it holds ``data`` as at ``mark`` again."""
        if not self._run_end_records:
            return  # nothing asks (``save_run_end`` always writes a snapshot)
        changes = data.unstored_changes(self._token, self._unstored_limit)
        since = data.changes.since(mark)
        if changes is None or since is None or len(since) > len(changes):
            return
        changed = _recordable_nodes(changes[: len(changes) - len(since)], run_id)
        if changed is not None and changed.keys() <= set(nodes):
            data.note_stored(self._token, mark)

    def load(self, workflow_id: str) -> WorkflowData:
        with self.metrics.measure("load"):
            validate_workflow_id(workflow_id)
            self._recover_transactions()
            for _ in range(3):
                result = self._read(workflow_id)
                if result is not None:
                    return result
            # A writer kept replacing the file under us: read once more while holding the lock.
            with self._locked(workflow_id):
                result = self._read(workflow_id)
            if result is None:  # pragma: no cover - impossible while the lock is held
                raise StoreIOError("load", self.path_of(workflow_id), OSError("state kept changing"))
            return result

    def list_workflows(self) -> list[str]:
        with self.metrics.measure("list"):
            suffix = self._suffix
            ids = []
            try:
                with os.scandir(self._dir) as entries:
                    for entry in entries:
                        name = entry.name
                        # Temp files end in ".tmp", never in a state suffix; ids may start with ".".
                        if name.endswith(suffix):
                            stem = name[: -len(suffix)]
                            if is_valid_workflow_id(stem) and entry.is_file(follow_symlinks=False):
                                ids.append(stem)
            except OSError as error:
                raise StoreIOError("list", self._dir, error) from error
            return sorted(ids)

    def delete(self, workflow_id: str) -> None:
        with self.metrics.measure("delete"):
            path = self.path_of(workflow_id)
            with self._write_locks([workflow_id]):
                self._drop(workflow_id)
                check_not_special(path)
                try:
                    # Journal first: a journal surviving its snapshot could be replayed onto a
                    # new workflow of the same id whose first snapshot has the same version.
                    unlink_if_exists(self._path(workflow_id, self._journal_suffix))
                    existed = unlink_if_exists(path)
                    if existed and self._durable:
                        fsync_directory(self._dir)
                except OSError as error:
                    raise StoreIOError("delete", path, error) from error
                if not existed:
                    raise WorkflowNotFoundError(workflow_id, self._dir)
                try:  # after the state: a crash in between leaves artifacts nothing references
                    self._artifacts.remove_all(workflow_id)
                except OSError as error:
                    raise StoreIOError("delete", path, error) from error

    def exists(self, workflow_id: str) -> bool:
        try:
            info = os.lstat(self.path_of(workflow_id))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode)

    def summary(self, workflow_id: str) -> WorkflowSummary:
        with self.metrics.measure("summary"):
            path = self.path_of(workflow_id)
            try:
                return summarize_state_file(
                    path,
                    self._codec,
                    journal_path=self._path(workflow_id, self._journal_suffix),
                    max_bytes=self._max_bytes,
                )
            except FileNotFoundError:
                raise WorkflowNotFoundError(workflow_id, self._dir) from None

    def summaries(self) -> list[FolderEntry]:
        """Summaries of every workflow in this store; unreadable files give entries with ``error``."""
        with self.metrics.measure("summary"):
            return scan_folder(self._dir, codecs={self._suffix: self._codec}, max_bytes=self._max_bytes)

    def node_status(self, workflow_id: str, node: str) -> NodeStatus | None:
        with self.metrics.measure("summary"):
            path = self.path_of(workflow_id)
            try:
                with mapped_state_file(path, max_bytes=self._max_bytes) as raw:
                    contents = read_journal(self._path(workflow_id, self._journal_suffix), self._max_bytes)
                    if (
                        contents is not None
                        and contents.records
                        and contents.applies_to(self._codec.stored_version(raw, path))
                    ):
                        # The newest record about the node wins; earlier ones and the snapshot are older.
                        for payload in reversed(contents.payloads):
                            status = _record_status(payload, node, path)
                            if status is not None:
                                return status
                    return self._codec.node_status(raw, path, node)
            except FileNotFoundError:
                raise WorkflowNotFoundError(workflow_id, self._dir) from None

    @contextlib.contextmanager
    def execution_lease(
        self, workflow_id: str, *, ttl: float = 30.0, wait: float | None = None, purpose: str = EXECUTE
    ) -> Iterator[None]:
        """Hold ``<id>.lease`` (an ``flock``) while a process executes or edits the workflow.

        Another process (or another store object) gets ``WorkflowLockedError`` naming the holder
        (its host, pid, since and purpose are written into the lease file), at once or after
        waiting up to ``wait`` seconds. The kernel drops the lock when its holder dies, so a
        crashed run never blocks the next one; ``ttl`` is not needed here and is ignored.
        """
        path = self._path(workflow_id, LEASE_SUFFIX)
        fd = _lease_file.acquire(path, workflow_id, LeaseHolder.current(purpose), wait)
        try:
            yield
        finally:
            _lease_file.release(fd)

    def lease_holder(self, workflow_id: str) -> LeaseHolder | None:
        """Who holds the lease (from ``<id>.lease``), or None: the lock is tried, not waited for."""
        return _lease_file.holder_of(self._path(workflow_id, LEASE_SUFFIX))

    def begin_transaction(self) -> Transaction:
        return _FileTransaction(self)

    def flush(self) -> None:
        """fsync journal records that ``durability="batched"`` (or ``"none"``) has not synced yet."""
        for entry in self._known.entries():
            if entry.journal is not None:
                entry.journal.sync()

    def close(self) -> None:
        failure: StoreIOError | None = None
        for entry in self._known.entries(clear=True):
            try:
                entry.forget()
            except StoreIOError as error:
                failure = failure or error
        if failure is not None:
            raise failure

    def recover(self) -> None:
        """Roll forward interrupted transactions and remove temp files nobody is writing.

        Called when the store is opened. A temp file is only removed while its workflow's lock
        can be taken at once, so a save in progress in another process keeps its temp file.
        """
        self._recover_transactions()
        try:
            names = os.listdir(self._dir)
        except OSError as error:
            raise StoreIOError("list", self._dir, error) from error
        for name in names:
            if name.endswith(ARTIFACTS_SUFFIX):
                owner = name[: -len(ARTIFACTS_SUFFIX)]
                # An artifact write cut short leaves a temp file as large as the frame; the
                # workflow's next save would remove it, but it may never be saved again. The lock
                # (a sidecar file) is taken only when there is one: opening writes nothing else.
                if is_valid_workflow_id(owner) and self._artifacts.temp_files(owner):
                    self._if_unlocked(owner, partial(self._artifacts.remove_temp_files, owner))
                continue
            if not is_temp_name(name):
                continue
            target = name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].rpartition(".")[0]
            workflow_id = _id_of(target)
            if workflow_id is None:
                continue  # not a temp file of ours
            self._if_unlocked(workflow_id, partial(unlink_if_exists, os.path.join(self._dir, name)))

    def _if_unlocked(self, workflow_id: str, clean: Callable[[], object]) -> None:
        """``clean()`` if the workflow's lock can be taken at once, else nothing."""
        try:
            with self._locked(workflow_id, timeout=0):
                clean()
        except (StoreIOError, OSError):
            pass  # someone is saving this workflow right now; its temp files are live

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._dir!r}, durability={self._policy.mode!r})"

    # --- paths and locks -----------------------------------------------------------------------

    def _path(self, workflow_id: str, suffix: str) -> str:
        validate_workflow_id(workflow_id)
        path = os.path.join(self._dir, workflow_id + suffix)
        # The allow-list already excludes separators; this guards against a future change to it.
        if os.path.dirname(os.path.normpath(path)) != self._dir:
            raise InvalidWorkflowIdError(workflow_id, "resolves outside the store folder")
        return path

    def _locked(
        self, workflow_id: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The workflow's thread lock, then its sidecar file lock (see ``_locks``)."""
        return self._locks.locked(workflow_id, timeout)

    # --- reading and the version cache ---------------------------------------------------------

    def _read(self, workflow_id: str) -> WorkflowData | None:
        """Snapshot plus matching journal, or None when the snapshot was replaced meanwhile."""
        path = self.path_of(workflow_id)
        try:
            raw, info = read_state_file(path, max_bytes=self._max_bytes)
        except FileNotFoundError:
            raise WorkflowNotFoundError(workflow_id, self._dir) from None
        with cyclic_gc_paused():  # a large acyclic graph: see _gc_pause
            data = self._codec.decode(raw, path)
        if data.id != workflow_id:
            if not self._codec.takes_id_from_file_name(raw):
                raise CorruptStateError(path, f"holds workflow {data.id!r}, not {workflow_id!r}")
            # Go's FlatBuffers store names a workflow by its file, whatever id is inside; so do
            # we, and a save writes this file (and this id) back, never the other workflow's.
            data.take_id_from_file_name(workflow_id)
        if data.version >= 1 and not is_content_token(data.version):
            journal_path = self._path(workflow_id, self._journal_suffix)
            contents = read_journal(journal_path, self._max_bytes)
            if contents is not None and contents.applies_to(data.version):
                replay(data, contents, journal_path)
        # A full save replaces the snapshot before it removes the journal; if the path still
        # names the file we read, the journal we read belonged to it.
        try:
            if os.stat(path).st_ino != info.st_ino:
                return None
        except FileNotFoundError:
            return None
        data.note_stored(self._token)
        return attach(self._artifacts, data)

    def _current(self, workflow_id: str) -> Known | None:
        """What is stored now (None: no snapshot); call with the workflow locked.

        Cheap when nothing changed since this process last wrote: two ``stat`` calls. Otherwise
        (another process wrote, or first use) the snapshot's version and the journal are read.
        """
        path = self.path_of(workflow_id)
        journal_path = self._path(workflow_id, self._journal_suffix)
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            self._drop(workflow_id)
            return None
        known = self._known.get(workflow_id)
        if known is not None and known.snapshot == identity(info):
            if known.journal is not None:
                if known.journal.still_current():
                    self._touch(workflow_id)
                    return known
            elif not os.path.lexists(journal_path):
                self._touch(workflow_id)
                return known
        self._drop(workflow_id)
        raw, info = read_state_file(path, max_bytes=self._max_bytes)
        version = self._codec.stored_version(raw, path)
        known = Known(identity(info), version, None)
        contents = read_journal(journal_path, self._max_bytes)
        if contents is not None and contents.applies_to(version):
            known.journal = JournalWriter.open_existing(journal_path, contents)
        self._remember(workflow_id, known)
        return known

    def _remember(self, workflow_id: str, known: Known) -> None:
        self._known.remember(workflow_id, known)

    def _touch(self, workflow_id: str) -> None:
        self._known.touch(workflow_id)

    def _drop(self, workflow_id: str, *, superseded: bool = False) -> None:
        self._known.drop(workflow_id, superseded=superseded)

    # --- writing -------------------------------------------------------------------------------

    def _encode_next(self, data: WorkflowData) -> tuple[str, str, int, float, Buffer]:
        """(state path, journal path, next version, time, encoded snapshot) for a snapshot write."""
        path = self.path_of(data.id)
        version = next_version(data.version)
        now = time.time()
        payload = self._codec.encode(data, version=version, updated_at=now)
        if not self._codec.writes_versions:
            version = content_token(payload)  # what a load of these bytes reports
        check_not_special(path)
        return path, self._path(data.id, self._journal_suffix), version, now, payload

    def _write_snapshot(self, data: WorkflowData, known: Known | None) -> None:
        """Write a full snapshot (version ``data.version + 1``) and retire the journal."""
        workflow_id = data.id
        mark = data.changes.mark()  # before encoding: a change made meanwhile counts as unstored
        path, journal_path, version, now, payload = self._encode_next(data)
        if known is None:
            # No snapshot: a journal left behind must not apply to the one about to be written.
            self._remove_journal(journal_path)
        atomic_write(path, payload, durable=self._durable)
        self._drop(workflow_id, superseded=True)
        # The new snapshot's version is above the journal's base, so a crash before this line
        # leaves a journal every reader ignores; removing it is only tidying up.
        self._remove_journal(journal_path)
        with contextlib.suppress(OSError):
            self._remember(workflow_id, Known(identity(os.stat(path)), version, None))
        data.version = version
        data.updated_at = now
        data.note_stored(self._token, mark)

    def _write_first_snapshot(self, data: WorkflowData) -> None:
        """A node record of a workflow with no stored state: write its first snapshot (version
        ``data.version + 1``, holding the record) and an empty journal based on it together,
        so that the next records are plain appends.

        Steps: snapshot temp file written and fsynced; the journal (header and
        ``INITIAL_EXTENT`` of zeros) written straight at its name, not fsynced: nothing reads
        it before its snapshot is in place, it holds no record, and its bytes become durable
        with the first record's sync (a reader takes a journal whose header did not survive a
        power loss for no journal); snapshot renamed into place (the commit point); one
        directory fsync for both names. A crash before the snapshot's rename leaves no
        snapshot, so no state, as before the call; at most an empty or cut-short journal that
        no reader applies without its snapshot, and that the next write removes. After a
        failure nothing is left but, past the commit point, the new snapshot (the error is
        still raised: its name may not be durable).
        """
        workflow_id = data.id
        mark = data.changes.mark()  # as in ``_write_snapshot``
        path, journal_path, version, now, payload = self._encode_next(data)
        # A journal left behind must not apply to the snapshot about to be written (and the new
        # one is created in its place, O_EXCL).
        self._remove_journal(journal_path)
        self._drop(workflow_id)
        snapshot_temp: str | None = None
        staged: StagedJournal | None = None
        try:
            snapshot_temp = write_temp(self._dir, os.path.basename(path), payload, durable=self._durable)
            staged = StagedJournal.create_empty(journal_path, version)
            replace_temp(snapshot_temp, path)
            snapshot_temp = None
            if self._durable:
                fsync_directory(self._dir)
            writer = staged.writer()
        except BaseException as error:
            if snapshot_temp is not None:
                unlink_quietly(snapshot_temp)
            if staged is not None:
                staged.discard()
            if isinstance(error, OSError):
                raise StoreIOError("save", path, error) from error
            raise
        try:
            stamp = identity(os.stat(path))
        except OSError:
            writer.close()  # the next operation reads the files afresh
        else:
            self._remember(workflow_id, Known(stamp, version, writer))
        data.version = version
        data.updated_at = now
        data.note_stored(self._token, mark)

    def _remove_journal(self, journal_path: str) -> None:
        try:
            unlink_if_exists(journal_path)
        except OSError as error:
            raise StoreIOError("remove journal", journal_path, error) from error

    # --- transactions --------------------------------------------------------------------------

    def _recover_transactions(self) -> None:
        """Finish commits whose manifest is still present (the committer died mid-rename)."""
        for manifest_path, entries in self._manifests():
            if entries is None:
                warnings.warn(f"ignoring unreadable transaction manifest {manifest_path}", stacklevel=3)
                continue
            with contextlib.ExitStack() as stack:
                for workflow_id in sorted({entry[0] for entry in entries}):
                    stack.enter_context(self._locked(workflow_id))
                folder = stack.enter_context(transactions_folder(self._txn_dir, create=False))
                name = os.path.basename(manifest_path)
                if folder is not None and exists_in(folder, name):  # else finished by someone else
                    self._apply(folder, manifest_path, entries)

    def _manifests(self) -> list[tuple[str, list[Entry] | None]]:
        """Pending manifests and their entries (None if unreadable); one open when there are none.

        A ``.transactions`` that is a symlink or no folder holds no manifests of ours: ignored
        with a warning, so the folder stays readable.
        """
        try:
            with transactions_folder(self._txn_dir, create=False) as folder:
                return [] if folder is None else read_manifests(folder, self._txn_dir, self._max_bytes)
        except CorruptStateError as error:  # only the folder itself: a bad manifest is skipped
            warnings.warn(f"ignoring transaction manifests: {error}", stacklevel=4)
            return []

    @contextlib.contextmanager
    def _write_locks(self, workflow_ids: Sequence[str]) -> Iterator[None]:
        """Locks for a write (sorted order: overlapping writers cannot deadlock), taken only when
        no decided transaction is pending on these workflows.

        A transaction whose committer died after writing its manifest is decided: its files must
        be renamed in before anyone checks these workflows' versions, or the late rename would
        overwrite a newer save. Manifests are therefore rolled forward first, and looked for
        again once the locks are held (a committer may have died while we waited for them).
        """
        ids = sorted(set(workflow_ids))
        while True:
            self._recover_transactions()
            with contextlib.ExitStack() as stack:
                for workflow_id in ids:
                    stack.enter_context(self._locked(workflow_id))
                pending = any(
                    entries and any(entry[0] in ids for entry in entries) for _, entries in self._manifests()
                )
                if not pending:
                    yield
                    return

    def _apply(self, folder: int, manifest_path: str, entries: Sequence[tuple[str, str, str]]) -> None:
        """Rename every temp file of a manifest into place, then drop journals and the manifest
        (through ``folder``, the open ``.transactions``)."""
        try:
            for workflow_id, temp_name, target_name in entries:
                self._drop(workflow_id)
                with contextlib.suppress(FileNotFoundError):  # renamed before the crash
                    os.replace(os.path.join(self._dir, temp_name), os.path.join(self._dir, target_name))
            for workflow_id, _, _ in entries:
                unlink_if_exists(self._path(workflow_id, self._journal_suffix))
            if self._durable:
                fsync_directory(self._dir)
            os.unlink(os.path.basename(manifest_path), dir_fd=folder)
            if self._durable:
                fsync(folder)
        except OSError as error:
            raise StoreIOError("commit", manifest_path, error) from error


def _recordable_nodes(
    changes: Sequence[tuple[int, str | None]], run_id: str | None
) -> dict[str, None] | None:
    """The nodes of ``changes`` (``WorkflowData.changes`` entries, in order) if a record of them and
    run ``run_id``'s record carry every one; None if one needs a snapshot: key-values, the audit
    trail, the DAG, Go's fields, or another run's record (e.g. one closed as crashed)."""
    nodes: dict[str, None] = {}
    for bits, key in changes:
        if bits & Changed.RUNS:
            if bits != Changed.RUNS or key != run_id:
                return None
        elif bits & ~Changed.RECORD or key is None:
            return None
        else:
            nodes[key] = None
    return nodes


#: Suffixes of state and journal files, longest first (``x.json-journal`` is not ``x.json``'s state).
_OWN_SUFFIXES = sorted({*STATE_SUFFIXES, *map(journal_suffix, STATE_SUFFIXES)}, key=len, reverse=True)


def _id_of(file_name: str) -> str | None:
    """The workflow id a state or journal file name belongs to, if it is one of ours."""
    for suffix in _OWN_SUFFIXES:
        if file_name.endswith(suffix):
            stem = file_name[: -len(suffix)]
            return stem if is_valid_workflow_id(stem) else None
    return None


def _record_status(payload: bytes, node: str, source: str) -> NodeStatus | None:
    try:
        raw: Any = orjson.loads(payload)
        # A record of several nodes (see _journal) holds each once.
        for item in raw.get("records", (raw,)):
            if item.get("node") == node:
                return STATUS_BY_VALUE[item["status"]]
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise CorruptStateError(source, "journal record with an invalid status") from None


class _FileTransaction(StagedTransaction):
    """Stages snapshots; ``commit`` writes them all, then renames them in under one manifest."""

    def __init__(self, store: FileStore) -> None:
        super().__init__()
        self._store = store
        self._written: dict[str, int] = {}  # id -> version of the snapshot being committed

    def _commit_staged(self, by_id: dict[str, tuple[WorkflowData, WorkflowData]]) -> None:
        store = self._store
        snapshots = [by_id[workflow_id][1] for workflow_id in sorted(by_id)]
        with (
            store.metrics.measure("commit"),
            store._write_locks(list(by_id)),
            saving(store._artifacts, snapshots),
        ):
            staged = [by_id[workflow_id] for workflow_id in sorted(by_id)]
            for original, snapshot in staged:
                known = store._current(original.id)
                if known is not None and is_stale(snapshot.version, known.version):
                    raise VersionConflictError(original.id, snapshot.version, known.version)
            now = time.time()
            payloads = []
            for _, snapshot in staged:  # every value is checked before anything is written
                version = next_version(snapshot.version)
                payload = store._codec.encode(snapshot, version=version, updated_at=now)
                payloads.append(payload)
                if not store._codec.writes_versions:
                    version = content_token(payload)  # what a load of these bytes reports
                self._written[snapshot.id] = version
                check_not_special(store.path_of(snapshot.id))
            if staged:
                self._write_all(staged, payloads)
            for original, snapshot in staged:
                for target in (original, snapshot):
                    target.version = self._written[snapshot.id]
                    target.updated_at = now

    def _write_all(self, staged: list[tuple[WorkflowData, WorkflowData]], payloads: list[Any]) -> None:
        store = self._store
        with transactions_folder(store._txn_dir, create=True) as folder:
            assert folder is not None  # created
            self._write_all_in(folder, staged, payloads)

    def _write_all_in(
        self, folder: int, staged: list[tuple[WorkflowData, WorkflowData]], payloads: list[Any]
    ) -> None:
        store = self._store
        temps: list[str] = []
        manifest_name = f"{uuid.uuid4().hex}{MANIFEST_SUFFIX}"
        manifest_path = os.path.join(store._txn_dir, manifest_name)
        try:
            for (original, _), payload in zip(staged, payloads, strict=True):
                target_name = os.path.basename(store.path_of(original.id))
                temps.append(write_temp(store._dir, target_name, payload, durable=store._durable))
            entries = [
                (original.id, os.path.basename(temp), os.path.basename(store.path_of(original.id)))
                for (original, _), temp in zip(staged, temps, strict=True)
            ]
            # By path, into the folder just opened without following a symlink: a symlink
            # swapped in meanwhile needs a writer racing us inside the store folder, who could
            # as well replace the state files themselves.
            atomic_write(manifest_path, encode_manifest(entries), durable=store._durable, operation="commit")
        except BaseException as error:
            # Undecided: nothing is visible yet. The manifest goes first (its rename may have
            # happened before a later fsync failed); temp files are only removed once no
            # manifest names them, else recovery could find a manifest without its files.
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(manifest_name, dir_fd=folder)
            except OSError:
                raise StoreIOError("commit", manifest_path, error) from error
            for temp in temps:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
            if isinstance(error, OSError) and not isinstance(error, StoreIOError):
                raise StoreIOError("commit", store._dir, error) from error
            raise
        # From here on the transaction is decided: a failure leaves the manifest, and recovery
        # (on the next open or load) finishes the renames.
        store._apply(folder, manifest_path, entries)
        for workflow_id, _, target_name in entries:
            with contextlib.suppress(OSError):
                info = os.stat(os.path.join(store._dir, target_name))
                store._remember(workflow_id, Known(identity(info), self._written[workflow_id], None))
