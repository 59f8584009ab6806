"""Append-only per-node journal next to a snapshot: O(1) durable node updates, replayed on load.

File layout (all integers little-endian)::

    header  = b"FWJ1" | base_version: u64 | crc32(magic + base_version): u32
    record  = length: u32 | crc32(length bytes + payload): u32 | payload
    payload = orjson(NodeRecord.to_json() + {"_updated_at": unix seconds})           one node
            | orjson({"records": [NodeRecord.to_json(), ...], "run": RunRecord.to_json(),
                      "_updated_at": unix seconds})                                  several nodes

One record is one durable change (one version), whatever it holds: the engine writes the finish
of one node and the start of the next as one record (one fdatasync); "run" (optional) adds or
replaces a run of the run history.

The journal applies to the snapshot whose version equals ``base_version``; the stored version is
then ``base_version + number of valid records``. A full save writes a snapshot with a higher
version and then removes the journal; if a crash intervenes, the leftover journal's base no
longer matches and it is ignored (and later replaced), so old records never overwrite newer
snapshot content. Snapshots of version 0 (files written by the Go library) never get a journal.

A journal holding a record is created whole in a temp file (header, the record, zeros up to
``INITIAL_EXTENT``), fsynced and renamed into place, so its first record costs two syncs.
A new workflow's first snapshot and its empty journal are created together (``FileStore``):
the journal is written straight at its name (``create_empty``: no temp file, no rename), before
the snapshot's rename, and one directory fsync covers both names. That is safe because nothing
reads it yet: a journal without its snapshot is never applied (there is no snapshot to apply it
to), and a header cut short by a crash reads as no journal.

Replay stops at the first record that is short or fails its checksum: that is the tail a crash
cut off mid-append. The record was never acknowledged, so dropping it loses nothing promised.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
import time
from dataclasses import dataclass, field

import orjson

from ..data import NodeRecord, RunRecord, WorkflowData
from ..errors import CorruptStateError, SerializationError, StoreIOError
from ..validation import InvalidValue, check_record, check_run, require_count, require_time
from ._atomic import fsync, fsync_directory, open_temp, replace_temp, unlink_quietly, write_all
from ._crc import crc32

#: The journal of ``<id>.fb`` is ``<id>.journal`` (its name since the first release); every other
#: kind's is ``<id><suffix>-journal`` (``x.json-journal``), so two kinds of one id in one folder
#: never read, replace or remove each other's journal, and no journal name is another kind's
#: state or journal name (an id may end in ".json": ``x.json.journal`` would be ``x.json``'s).
JOURNAL_SUFFIX = ".journal"


def journal_suffix(state_suffix: str) -> str:
    """The suffix of the journal beside state files ending in ``state_suffix``."""
    return JOURNAL_SUFFIX if state_suffix == ".fb" else state_suffix + "-journal"


_MAGIC = b"FWJ1"
_HEADER = struct.Struct("<4sQI")
_FRAME = struct.Struct("<II")
HEADER_SIZE = _HEADER.size
#: Size of a new journal file: header, first record (if any) and zeros after them. Small, so
#: that a short run does not write (and fsync) more zeros than it will ever fill.
INITIAL_EXTENT = 16 * 1024
#: Largest run of zeros written ahead of the records when the journal runs out of written space.
#: Each extension doubles the file up to this (16, 32, 64, 128, 256 KiB, then 256 KiB each time).
PREALLOCATE = 256 * 1024
#: Records larger than this are treated as damage (a flipped length bit must not make us read GBs).
MAX_RECORD_BYTES = 64 * 1024 * 1024

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _fdatasync(fd: int) -> None:
    """fdatasync where it exists (it skips the mtime update a record does not need), else fsync."""
    if hasattr(os, "fdatasync") and sys.platform != "darwin":
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS: fsync() there would stop at the drive cache
        fsync(fd)


def encode_header(base_version: int) -> bytes:
    head = _MAGIC + struct.pack("<Q", base_version)
    return head + struct.pack("<I", crc32(head))


def next_extent(allocated: int) -> int:
    """Zero bytes to add to a journal of ``allocated`` bytes that has run out of written space."""
    return min(max(allocated, INITIAL_EXTENT), PREALLOCATE)


def initial_image(base_version: int, first_frame: bytes = b"") -> bytes:
    """The bytes of a new journal: header, optional first record, zeros up to ``INITIAL_EXTENT``
    (or one more extent beyond a first record too large for it)."""
    used = HEADER_SIZE + len(first_frame)
    size = INITIAL_EXTENT if used <= INITIAL_EXTENT else used + INITIAL_EXTENT
    return encode_header(base_version) + first_frame + bytes(size - used)


def encode_record(workflow_id: str, record: NodeRecord, updated_at: float) -> bytes:
    """One framed journal record; ``SerializationError`` names the node whose output is not JSON
    or the field that replay would refuse (the check every decoder makes: ``check_record``)."""
    try:
        check_record(record)
    except InvalidValue as error:
        raise SerializationError(workflow_id, error.where, error) from None
    try:
        # The output is embedded as stored (record.encoded_output), not encoded again.
        payload = record.dumps(_updated_at=updated_at)
    except TypeError as error:
        raise SerializationError(workflow_id, f"output of node {record.node!r}", error) from error
    return _framed(payload)


def encode_records(
    workflow_id: str, records: list[NodeRecord], run: RunRecord | None, updated_at: float
) -> bytes:
    """One framed journal record holding several nodes' records and optionally a run record
    (one record alone and no run: the single-node form of ``encode_record``)."""
    if len(records) == 1 and run is None:
        return encode_record(workflow_id, records[0], updated_at)
    parts: list[orjson.Fragment] = []
    for record in records:
        try:
            if not record.checked:  # else its state's writers vouch for it (dumps skips it too)
                check_record(record)
            parts.append(orjson.Fragment(record.dumps()))
        except InvalidValue as error:
            raise SerializationError(workflow_id, error.where, error) from None
        except TypeError as error:
            raise SerializationError(workflow_id, f"output of node {record.node!r}", error) from error
    document: dict[str, object] = {"records": parts, "_updated_at": updated_at}
    if run is not None:
        try:
            check_run(run, f"run {run.run_id!r}")
        except InvalidValue as error:
            raise SerializationError(workflow_id, error.where, error) from None
        document["run"] = run.to_json()
    try:
        payload = orjson.dumps(document)
    except TypeError as error:
        raise SerializationError(workflow_id, "run history", error) from error
    return _framed(payload)


def _framed(payload: bytes) -> bytes:
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", crc32(payload, crc32(length))) + payload


def decode_payload(raw: object) -> tuple[list[NodeRecord], RunRecord | None]:
    """The node records and the run record of a parsed journal payload (either form); raises
    ``KeyError``/``TypeError``/``ValueError`` (``InvalidValue``) for one a writer could not write."""
    if not isinstance(raw, dict):
        raise TypeError("record is not an object")
    if "records" not in raw:
        return [NodeRecord.from_json(raw)], None
    records = raw["records"]
    run = raw.get("run")
    if not isinstance(records, list) or not (records or run is not None):
        raise TypeError("records is not a list, or empty without a run")
    for item in records:
        if not isinstance(item, dict):
            raise TypeError("a node record is not an object")
    return [NodeRecord.from_json(item) for item in records], None if run is None else RunRecord.from_json(run)


@dataclass
class JournalContents:
    """What a journal file holds: its base version, the valid records and where they end."""

    base_version: int | None
    payloads: list[bytes] = field(default_factory=list)
    valid_end: int = 0
    #: Whether only zeros (preallocated space) follow the last valid record.
    clean_tail: bool = True

    @property
    def records(self) -> int:
        return len(self.payloads)

    def applies_to(self, snapshot_version: int) -> bool:
        return snapshot_version >= 1 and self.base_version == snapshot_version


def parse_journal(raw: bytes) -> JournalContents:
    """Split a journal into records; a bad header means "no journal", a bad tail is dropped."""
    if len(raw) < HEADER_SIZE:
        return JournalContents(base_version=None)
    magic, base_version, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC or crc != crc32(raw[:12]):
        return JournalContents(base_version=None)
    contents = JournalContents(base_version=base_version, valid_end=HEADER_SIZE)
    offset, total = HEADER_SIZE, len(raw)
    view = memoryview(raw)
    while offset + _FRAME.size <= total:
        length, crc = _FRAME.unpack_from(raw, offset)
        start = offset + _FRAME.size
        end = start + length
        if length > MAX_RECORD_BYTES or end > total:
            break
        if crc32(view[start:end], crc32(view[offset : offset + 4])) != crc:
            break
        contents.payloads.append(raw[start:end])
        offset = contents.valid_end = end
    contents.clean_tail = raw.count(0, contents.valid_end) == total - contents.valid_end
    return contents


def replay(data: WorkflowData, contents: JournalContents, source: str) -> None:
    """Apply the journal's records to ``data`` (decoded from the matching snapshot).

    A record with a valid checksum but impossible content was written by a buggy or hostile
    writer, not cut off by a crash, so it is reported as corruption rather than skipped.
    """
    if contents.base_version is None or not contents.payloads:
        return
    updated_at = data.updated_at
    for index, payload in enumerate(contents.payloads):
        try:
            raw = orjson.loads(payload)
            records, run = decode_payload(raw)
            stamp = require_time(raw.get("_updated_at", updated_at), "_updated_at")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise CorruptStateError(source, f"journal record {index + 1}: {error}") from None
        for record in records:
            data.apply_node_record(record)
        if run is not None:
            data.put_run(run)
        updated_at = float(stamp)
    version = contents.base_version + contents.records
    try:
        require_count(version, "version after the journal")
    except InvalidValue as error:
        raise CorruptStateError(source, str(error)) from None
    data.version = version
    data.updated_at = updated_at


def read_journal(path: str, max_bytes: int) -> JournalContents | None:
    """The journal at ``path``, or None if there is none.

    A symlink, a non-regular file (FIFO, device, directory) or a journal over ``max_bytes`` raises
    ``CorruptStateError``; other OS failures raise ``StoreIOError``.
    """
    try:
        # O_NONBLOCK: opening a FIFO planted in the journal's place must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_NOFOLLOW | _O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CorruptStateError(path, "journal is a symbolic link; journals are never followed") from None
        raise StoreIOError("read", path, error) from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # A FIFO would block, a device like /dev/zero would never end, a directory fails.
            raise CorruptStateError(path, "journal is not a regular file")
        size = info.st_size
        if size > max_bytes:
            raise CorruptStateError(path, f"journal of {size} bytes is over the {max_bytes}-byte cap")
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise CorruptStateError(path, f"journal grew over the {max_bytes}-byte cap while being read")
            chunks.append(chunk)
        return parse_journal(b"".join(chunks))
    except OSError as error:
        raise StoreIOError("read", path, error) from error
    finally:
        os.close(fd)


class SyncPolicy:
    """When an appended record is fdatasync'ed.

    - ``"full"``: every record, before ``save_node`` returns. Nothing acknowledged is ever lost.
    - ``"batched"``: when ``batch_records`` records or ``batch_ms`` milliseconds have
      accumulated since the last sync (checked at each append, like Go's ``Batched(k)``; there is
      no background thread). A process crash loses nothing (the bytes are in the page cache); a
      power loss or kernel crash loses the records appended since the last sync: at most
      ``batch_records - 1`` of them, or all appended since the last sync if appends stopped
      before a threshold was reached. ``FileStore.flush()`` and ``close()`` sync them.
    - ``"none"``: never; power loss may lose any record not yet written back by the kernel.
    """

    MODES = ("full", "batched", "none")

    def __init__(self, mode: str = "full", batch_records: int = 32, batch_ms: float = 50.0) -> None:
        if mode not in self.MODES:
            raise ValueError(f"durability must be one of {', '.join(self.MODES)}, not {mode!r}")
        if batch_records < 1 or batch_ms < 0:
            raise ValueError("batch_records must be >= 1 and batch_ms >= 0")
        self.mode = mode
        self.batch_records = batch_records
        self.batch_seconds = batch_ms / 1000.0

    def sync_now(self, unsynced: int, last_sync: float) -> bool:
        if self.mode == "full":
            return True
        if self.mode == "none":
            return False
        return unsynced >= self.batch_records or time.monotonic() - last_sync >= self.batch_seconds


class StagedJournal:
    """A new journal written into a temp file next to ``path`` (fsynced if ``durable``), not yet
    visible. ``publish`` renames it into place; ``writer`` then appends to it through the temp
    file's descriptor; ``discard`` removes it (before or after ``publish``) and closes it.

    Used by ``JournalWriter.create``; ``create_empty`` makes the empty journal ``FileStore``
    creates with a new workflow's first snapshot (one directory fsync for both names).
    Raises ``OSError`` (the temp file removed) if the temp file cannot be written.
    """

    def __init__(self, path: str, base_version: int, *, durable: bool, first_frame: bytes = b"") -> None:
        directory, name = os.path.split(path)
        image = initial_image(base_version, first_frame)
        self.path = path
        self.base_version = base_version
        self.durable = durable
        self.records = 1 if first_frame else 0
        self.end = HEADER_SIZE + len(first_frame)
        self.fd, self.temp_path = open_temp(directory, name, image, durable=durable)
        self.published = False

    @classmethod
    def create_empty(cls, path: str, base_version: int) -> StagedJournal:
        """An empty journal (header and zeros) written straight at ``path``, which must not exist
        (``O_EXCL``), not synced: already published, ``writer`` takes it over.

        Only for a journal nobody reads yet, i.e. one whose snapshot is not in place: it saves
        the temp file's name and the rename. Its bytes become durable with its first record's
        sync. Raises ``OSError`` (the file removed again) if it cannot be written.
        """
        staged = cls.__new__(cls)
        staged.path = staged.temp_path = path
        staged.base_version = base_version
        staged.durable = True  # no record to sync: nothing is owed to flush()
        staged.records = 0
        staged.end = HEADER_SIZE
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW
        staged.fd = os.open(path, flags, 0o600)
        staged.published = True
        try:
            write_all(staged.fd, initial_image(base_version))
        except BaseException:
            staged.discard()
            raise
        return staged

    def publish(self) -> None:
        """Rename into place (replacing any journal there); on failure the temp file is removed."""
        replace_temp(self.temp_path, self.path)
        self.published = True

    def discard(self) -> None:
        """Best effort: remove the journal (temp or published) and close the descriptor."""
        unlink_quietly(self.path if self.published else self.temp_path)
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def writer(self) -> JournalWriter:
        """The writer of the published journal; it takes over the descriptor."""
        if not self.published or self.fd < 0:
            raise ValueError("the journal has not been published")
        fd, self.fd = self.fd, -1
        try:
            writer = JournalWriter(self.path, self.base_version, self.records, fd, self.end)
        except BaseException:
            os.close(fd)
            raise
        if not self.durable:
            writer.unsynced = self.records  # for flush() and close(), as if appended unsynced
        return writer


class JournalWriter:
    """An open journal of one workflow, appended to while the workflow's lock is held.

    Records are written with ``pwrite`` into space zero-filled ahead of time: overwriting
    allocated blocks lets ``fdatasync`` skip the metadata commit a growing file needs, which
    halves the cost of a durable record on ext4. A new journal has ``INITIAL_EXTENT`` bytes;
    each extension doubles it, up to ``PREALLOCATE`` bytes at once, so a short run never
    flushes a large run of zeros. Replay stops at the zeros, because an all-zero frame never
    passes its checksum.
    """

    def __init__(self, path: str, base_version: int, records: int, fd: int, end: int) -> None:
        self.path = path
        self.base_version = base_version
        self.records = records
        self._fd = fd
        info = os.fstat(fd)
        self.inode = info.st_ino
        self.allocated = info.st_size
        self.end = end
        self.unsynced = 0
        self.last_sync = time.monotonic()

    @classmethod
    def create(
        cls, path: str, base_version: int, *, durable: bool, first_frame: bytes = b""
    ) -> JournalWriter:
        """Atomically replace whatever is at ``path`` with a journal for ``base_version`` holding
        ``first_frame`` (a framed record) if given.

        One temp file holding the header, the record and ``INITIAL_EXTENT`` of zeros; fsync;
        rename; directory fsync (no fsyncs with ``durable=False``). The record is durable
        once this returns, with two syncs, where a header-only journal and an append took
        three. On failure nothing is left: a journal already renamed into place is removed
        again (its record was not acknowledged), and ``StoreIOError`` is raised.
        """
        try:
            staged = StagedJournal(path, base_version, durable=durable, first_frame=first_frame)
        except OSError as error:
            raise StoreIOError("create journal", path, error) from error
        try:
            staged.publish()
            if durable:
                fsync_directory(os.path.dirname(path))
            return staged.writer()
        except BaseException as error:
            staged.discard()
            if isinstance(error, OSError):
                raise StoreIOError("create journal", path, error) from error
            raise

    @classmethod
    def open_existing(cls, path: str, contents: JournalContents) -> JournalWriter:
        """Open a scanned journal for writing; a torn or damaged tail is cut off first, so that
        no stale frame can follow the records appended from now on."""
        if contents.base_version is None:
            raise ValueError("cannot append to a journal without a valid header")
        try:
            fd = os.open(path, os.O_RDWR | _O_CLOEXEC | _O_NOFOLLOW)
        except OSError as error:
            raise StoreIOError("open journal", path, error) from error
        try:
            if not contents.clean_tail:
                # Only reached under the workflow lock: the cut bytes belong to an append that
                # crashed before it was acknowledged, or follow a damaged record.
                os.ftruncate(fd, contents.valid_end)
            return cls(path, contents.base_version, contents.records, fd, contents.valid_end)
        except OSError as error:
            os.close(fd)
            raise StoreIOError("open journal", path, error) from error

    @property
    def version(self) -> int:
        return self.base_version + self.records

    def still_current(self) -> bool:
        """Whether the file at ``path`` is still this journal with nothing appended by others.

        Another writer would have put a frame (never all zeros) exactly at ``self.end``.
        """
        try:
            if os.stat(self.path).st_ino != self.inode:
                return False
            return not os.pread(self._fd, _FRAME.size, self.end).strip(b"\0")
        except OSError:
            return False

    def append(self, frame: bytes, policy: SyncPolicy) -> None:
        """Write one framed record at the end; on failure the partial record is removed again."""
        end = self.end
        try:
            if end + len(frame) > self.allocated:
                size = end + len(frame) + next_extent(self.allocated)
                os.pwrite(self._fd, bytes(size - self.allocated), self.allocated)
                self.allocated = size
            written = os.pwrite(self._fd, frame, end)
            if written != len(frame):
                raise OSError(errno.ENOSPC, "short write to journal")
            if policy.sync_now(self.unsynced + 1, self.last_sync):
                _fdatasync(self._fd)
                self.unsynced = 0
                self.last_sync = time.monotonic()
            else:
                self.unsynced += 1
        except OSError as error:
            # The record was not acknowledged: remove whatever part of it reached the file, so
            # no reader counts it. A failed fdatasync is never retried (see _atomic).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
                self.allocated = end
            raise StoreIOError("append to journal", self.path, error) from error
        self.end = end + len(frame)
        self.records += 1

    def sync(self) -> None:
        if self.unsynced:
            try:
                _fdatasync(self._fd)
            except OSError as error:
                raise StoreIOError("sync journal", self.path, error) from error
            self.unsynced = 0
            self.last_sync = time.monotonic()

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
