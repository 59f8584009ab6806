"""Where each store keeps artifact bytes, and the save protocol: artifacts first, state, then cleanup.

Invariant: a stored state never references an artifact its store lacks. A save (``saving``)
holds the state's lock while it writes every referenced artifact the store does not have yet
(durably, content-addressed: an artifact's bytes never change under its name), then the
state; only after the state is durable are the workflow's artifacts that it no longer
references removed. A crash in between leaves unreferenced artifacts, removed by the
workflow's next save. A failed save (a version conflict, a full disk) removes nothing.

File stores keep ``<base_dir>/<id>.artifacts/<hash>.arrow`` (and ``.bin`` for registered
types); RedisStore the string keys ``<prefix>artifact:<id>:<hash>`` listed in the set
``<prefix>artifacts:<id>`` (its cleanup runs inside the state's own MULTI/EXEC, see
``RedisArtifacts``); InMemoryStore a dict. The Go FlatBuffers layout has no place for them:
saving a state with an artifact output there raises ``SerializationError`` naming the node.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..artifacts import OUTPUT_MARKER, ArtifactRef, Buffer
from ..data import WorkflowData
from ..errors import CorruptStateError, SerializationError, StoreIOError
from ._atomic import TEMP_PREFIX, atomic_write, fsync_directory, is_temp_name, unlink_quietly

if TYPE_CHECKING:
    import redis

ARTIFACTS_SUFFIX = ".artifacts"
_READ_FLAGS = (
    os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
)


class ArtifactBackend(ABC):
    """One store's artifacts, by workflow id and content hash."""

    #: Why this store cannot hold artifacts, or None when it can.
    refuses: str | None = None

    @abstractmethod
    def view(self, workflow_id: str) -> WorkflowArtifacts:
        """The ``ArtifactSource`` a state of ``workflow_id`` loaded from (or saved to) here reads."""

    @abstractmethod
    def present(self, workflow_id: str, refs: Iterable[ArtifactRef]) -> set[str]:
        """Hashes of ``refs`` stored here."""

    @abstractmethod
    def write(self, workflow_id: str, ref: ArtifactRef, raw: Buffer) -> None:
        """Store ``raw`` under ``ref`` (durably when the store is durable) before any state uses it."""

    @abstractmethod
    def read(self, workflow_id: str, ref: ArtifactRef) -> Buffer | None:
        """The stored bytes (at most ``ref.size + 1`` of them), or None when missing."""

    @abstractmethod
    def location(self, workflow_id: str, ref: ArtifactRef) -> str:
        """Path or key of ``ref``, for messages."""

    @abstractmethod
    def any(self, workflow_id: str) -> bool:
        """Whether the workflow has any stored artifact (cheap)."""

    @abstractmethod
    def collect(self, workflow_id: str, keep: set[str]) -> None:
        """Remove the workflow's artifacts whose hash is not in ``keep`` (best effort)."""

    @abstractmethod
    def remove_all(self, workflow_id: str) -> None:
        """Remove every artifact of the workflow (it was deleted)."""

    def temp_files(self, workflow_id: str) -> list[str]:
        """Paths of the workflow's artifact temp files (a writer's, or left by one that died);
        none for backends that write no temp files."""
        return []

    def remove_temp_files(self, workflow_id: str) -> None:
        """Remove the workflow's artifact temp files (the caller holds the workflow's lock, so
        no writer is alive to own them)."""
        for path in self.temp_files(workflow_id):
            unlink_quietly(path)


class WorkflowArtifacts:
    """A backend bound to one workflow: the ``ArtifactSource`` of the states it loads."""

    __slots__ = ("backend", "workflow_id")

    def __init__(self, backend: ArtifactBackend, workflow_id: str) -> None:
        self.backend = backend
        self.workflow_id = workflow_id

    def read(self, ref: ArtifactRef) -> Buffer | None:
        return self.backend.read(self.workflow_id, ref)

    def location(self, ref: ArtifactRef) -> str:
        return self.backend.location(self.workflow_id, ref)

    def any(self) -> bool:
        return self.backend.any(self.workflow_id)


# --- the save protocol -----------------------------------------------------------------------------


def attach(backend: ArtifactBackend, data: WorkflowData) -> WorkflowData:
    """Let a loaded state read its artifacts from ``backend`` (on access; nothing is read now)."""
    data.artifact_stash.source = backend.view(data.id)
    return data


#: How the key of a stored output that is not the user's value appears in an output column's JSON.
_MARKER = f'"{OUTPUT_MARKER}"'.encode()
#: The marker searched in a stored output column without copying it (a file's memoryview).
_HAS_MARKER = re.compile(re.escape(_MARKER)).search


def persist(backend: ArtifactBackend, data: WorkflowData) -> dict[str, ArtifactRef]:
    """Write every artifact ``data`` references that ``backend`` lacks; returns node -> reference.

    Hold ``data.lock`` until the state is written too, so that no output set meanwhile can be
    in the state without its artifact. Bytes come from the state (held since ``set_output``,
    or read from the store it was loaded from, checked against their hash). ``SerializationError``
    when the backend cannot hold artifacts; ``CorruptStateError`` when one cannot be found.
    """
    with data.read_columns() as columns:
        stored = columns.deferred_raw("outputs")
        if not data.artifact_stash.may_reference():
            refs: dict[str, ArtifactRef] = {}  # nothing held, none stored: no output is one
        elif stored is not None and _HAS_MARKER(stored) is None:
            refs = {}  # undecoded outputs (a load's) that reference none
        else:
            refs = data.artifact_stash.references(columns.outputs)
    if not refs:
        return refs
    if backend.refuses is not None:
        node, ref = next(iter(refs.items()))
        raise SerializationError(
            data.id, f"output of node {node!r} (a {ref.kind} artifact)", ValueError(backend.refuses)
        )
    present = backend.present(data.id, refs.values())
    for node, ref in refs.items():
        if ref.hash not in present:
            backend.write(data.id, ref, data.artifact_stash.bytes_of(ref, node))
            present.add(ref.hash)
    return refs


def saved(
    backend: ArtifactBackend,
    data: WorkflowData,
    refs: dict[str, ArtifactRef],
    *,
    nodes: Collection[str] | None = None,
) -> None:
    """After ``data`` (referencing ``refs``) is stored; call with ``data.lock`` still held.

    A full save (``nodes`` None) stored exactly ``data``: the workflow's artifacts it does not
    reference are removed and its held bytes are dropped (the store has them). A node record
    (``nodes``) stored only those nodes' outputs: other artifacts of ``data`` may not be referenced
    by the stored state yet, so nothing is removed and only the bytes other nodes still need
    stay held. Either way the state reads its artifacts from the store from now on.
    """
    if nodes is None and backend.any(data.id):
        with contextlib.suppress(OSError, StoreIOError):  # the save succeeded; tidying is best effort
            backend.collect(data.id, {ref.hash for ref in refs.values()})
    if backend.refuses is None:
        stash = data.artifact_stash
        stash.source = backend.view(data.id)
        pending = set() if nodes is None else {ref.hash for name, ref in refs.items() if name not in nodes}
        stash.held = {digest: raw for digest, raw in stash.held.items() if digest in pending}


@contextlib.contextmanager
def saving(
    backend: ArtifactBackend, states: Sequence[WorkflowData], nodes: Collection[str] | None = None
) -> Iterator[None]:
    """The protocol around a state write (``nodes``: a record of those nodes only): artifacts
    first and cleanup after a successful write only, all under the states' locks. Use inside
    the store's own write lock."""
    with contextlib.ExitStack() as locks:
        for data in states:
            locks.enter_context(data.lock)
        refs = [persist(backend, data) for data in states]
        yield
        for data, referenced in zip(states, refs, strict=True):
            saved(backend, data, referenced, nodes=nodes)


# --- in memory ----------------------------------------------------------------------------------


class MemoryArtifacts(ArtifactBackend):
    """InMemoryStore's artifacts: workflow id -> hash -> bytes."""

    def __init__(self) -> None:
        self._by_workflow: dict[str, dict[str, Buffer]] = {}
        self._lock = threading.Lock()

    def view(self, workflow_id: str) -> WorkflowArtifacts:
        return WorkflowArtifacts(self, workflow_id)

    def present(self, workflow_id: str, refs: Iterable[ArtifactRef]) -> set[str]:
        with self._lock:
            stored = self._by_workflow.get(workflow_id, {})
            return {ref.hash for ref in refs if ref.hash in stored}

    def write(self, workflow_id: str, ref: ArtifactRef, raw: Buffer) -> None:
        with self._lock:
            self._by_workflow.setdefault(workflow_id, {})[ref.hash] = raw

    def read(self, workflow_id: str, ref: ArtifactRef) -> Buffer | None:
        with self._lock:
            return self._by_workflow.get(workflow_id, {}).get(ref.hash)

    def location(self, workflow_id: str, ref: ArtifactRef) -> str:
        return f"memory artifact {workflow_id}/{ref.file_name}"

    def any(self, workflow_id: str) -> bool:
        with self._lock:
            return bool(self._by_workflow.get(workflow_id))

    def collect(self, workflow_id: str, keep: set[str]) -> None:
        with self._lock:
            stored = self._by_workflow.get(workflow_id, {})
            for digest in [d for d in stored if d not in keep]:
                del stored[digest]
            if not stored:
                self._by_workflow.pop(workflow_id, None)

    def remove_all(self, workflow_id: str) -> None:
        with self._lock:
            self._by_workflow.pop(workflow_id, None)


# --- files --------------------------------------------------------------------------------------


class FileArtifacts(ArtifactBackend):
    """``<base_dir>/<id>.artifacts/<hash>.<arrow|bin>``; written like state files (temp file,
    fsync, rename, directory fsync) unless the store's durability is ``"none"``. The store
    calls every method but ``read`` with the workflow locked, so a temp file met by
    ``collect`` belongs to a writer that died."""

    def __init__(self, base_dir: str, *, durable: bool) -> None:
        self._dir = base_dir
        self._durable = durable

    def folder(self, workflow_id: str) -> str:
        return os.path.join(self._dir, workflow_id + ARTIFACTS_SUFFIX)

    def view(self, workflow_id: str) -> WorkflowArtifacts:
        return WorkflowArtifacts(self, workflow_id)

    def location(self, workflow_id: str, ref: ArtifactRef) -> str:
        return os.path.join(self.folder(workflow_id), ref.file_name)

    def present(self, workflow_id: str, refs: Iterable[ArtifactRef]) -> set[str]:
        found = set()
        for ref in refs:
            try:
                info = os.lstat(self.location(workflow_id, ref))
            except FileNotFoundError:
                continue
            except OSError as error:
                raise StoreIOError("stat", self.location(workflow_id, ref), error) from error
            if stat.S_ISREG(info.st_mode) and info.st_size == ref.size:
                found.add(ref.hash)
        return found

    def write(self, workflow_id: str, ref: ArtifactRef, raw: Buffer) -> None:
        folder = self._folder_for_writing(workflow_id)
        atomic_write(
            os.path.join(folder, ref.file_name), raw, durable=self._durable, operation="save artifact"
        )

    def _folder_for_writing(self, workflow_id: str) -> str:
        folder = self.folder(workflow_id)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            info = os.lstat(folder)
            if not stat.S_ISDIR(info.st_mode):  # never write through a symlink planted here
                raise CorruptStateError(folder, "is not a folder of artifacts") from None
        except OSError as error:
            raise StoreIOError("create", folder, error) from error
        else:
            if self._durable:  # the folder's name must be durable before a state relies on it
                try:
                    fsync_directory(self._dir)
                except OSError as error:
                    raise StoreIOError("create", folder, error) from error
        return folder

    def read(self, workflow_id: str, ref: ArtifactRef) -> Buffer | None:
        path = self.location(workflow_id, ref)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as error:  # a symlink (ELOOP), no permission...
            raise CorruptStateError(path, f"cannot open artifact: {error.strerror or error}") from error
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise CorruptStateError(path, "artifact is not a regular file")
            if info.st_size != ref.size:  # read nothing of a file that cannot be the artifact
                raise CorruptStateError(
                    path, f"artifact holds {info.st_size} bytes, not {ref.size} (damaged)"
                )
            return _read_at_most(fd, ref.size)
        except OSError as error:
            raise StoreIOError("read", path, error) from error
        finally:
            os.close(fd)

    def any(self, workflow_id: str) -> bool:
        return os.path.isdir(self.folder(workflow_id))

    def collect(self, workflow_id: str, keep: set[str]) -> None:
        folder = self.folder(workflow_id)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            digest = name.partition(".")[0]
            if name.startswith(TEMP_PREFIX) or digest not in keep:
                unlink_quietly(os.path.join(folder, name))
        if not set(os.listdir(folder)):
            with contextlib.suppress(OSError):  # a writer may have just added a file: keep it
                os.rmdir(folder)

    def temp_files(self, workflow_id: str) -> list[str]:
        folder = self.folder(workflow_id)
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return []  # a symlink or file planted there: never look through it
            names = os.listdir(folder)
        except OSError:
            return []
        return [os.path.join(folder, name) for name in names if is_temp_name(name)]

    def remove_all(self, workflow_id: str) -> None:
        folder = self.folder(workflow_id)
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(folder)  # a symlink or file planted there: never follow it
            return
        shutil.rmtree(folder)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class RefusingArtifacts(ArtifactBackend):
    """A store that cannot hold artifacts (the Go FlatBuffers layout): saves that need one fail."""

    def __init__(self, reason: str) -> None:
        self.refuses = reason

    def view(self, workflow_id: str) -> WorkflowArtifacts:
        return WorkflowArtifacts(self, workflow_id)

    def present(self, workflow_id: str, refs: Iterable[ArtifactRef]) -> set[str]:
        return set()

    def write(self, workflow_id: str, ref: ArtifactRef, raw: Buffer) -> None:  # pragma: no cover
        raise SerializationError(workflow_id, f"artifact {ref.file_name}", ValueError(self.refuses))

    def read(self, workflow_id: str, ref: ArtifactRef) -> Buffer | None:
        return None

    def location(self, workflow_id: str, ref: ArtifactRef) -> str:
        return f"{ref.file_name} (this store holds no artifacts: {self.refuses})"

    def any(self, workflow_id: str) -> bool:
        return False

    def collect(self, workflow_id: str, keep: set[str]) -> None:
        pass

    def remove_all(self, workflow_id: str) -> None:
        pass


GO_LAYOUT_REFUSAL = (
    "the Go FlatBuffers layout cannot hold artifact outputs (DataFrames, arrays, registered types): "
    "save it with layout='native' or as JSON, or clear those outputs first"
)


def file_artifacts(base_dir: str, format_value: str, *, durable: bool) -> ArtifactBackend:
    """The artifact backend of a file store writing ``format_value`` files."""
    if format_value == "go-flatbuffers":
        return RefusingArtifacts(GO_LAYOUT_REFUSAL)
    return FileArtifacts(base_dir, durable=durable)


# --- Redis --------------------------------------------------------------------------------------


class ArtifactsMissing(Exception):
    """Raised inside a Redis write when an artifact the state needs vanished (a concurrent
    save removed it before ours committed): persist again and retry."""


class RedisArtifacts(ArtifactBackend):
    """String keys ``<prefix>artifact:<id>:<hash>``, listed in the set ``<prefix>artifacts:<id>``.

    Artifacts are written (SET, SADD) before the state's MULTI/EXEC. Removal happens only
    inside a state write's MULTI/EXEC (``check_and_plan`` then ``queue_removal``), which also
    changes the workflow's meta key: a concurrent save whose artifacts were removed loses its
    WATCH, finds them missing on retry and writes them again, so no committed state can
    reference a removed artifact.
    """

    def __init__(
        self, client: redis.Redis, prefix: str, address: str, call: Callable[[Callable[[], Any]], Any]
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._address = address
        #: The store's error mapping (``StoreUnavailableError``...) for reads made on access.
        self._call = call

    def key(self, workflow_id: str, digest: str) -> str:
        return f"{self._prefix}artifact:{workflow_id}:{digest}"

    def set_key(self, workflow_id: str) -> str:
        return f"{self._prefix}artifacts:{workflow_id}"

    def view(self, workflow_id: str) -> WorkflowArtifacts:
        return WorkflowArtifacts(self, workflow_id)

    def location(self, workflow_id: str, ref: ArtifactRef) -> str:
        return f"redis://{self._address}/{self.key(workflow_id, ref.hash)}"

    def present(self, workflow_id: str, refs: Iterable[ArtifactRef]) -> set[str]:
        digests = [ref.hash for ref in refs]
        pipe = self._client.pipeline(transaction=False)
        for digest in digests:
            pipe.exists(self.key(workflow_id, digest))
        return {digest for digest, found in zip(digests, pipe.execute(), strict=True) if found}

    def write(self, workflow_id: str, ref: ArtifactRef, raw: Buffer) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self.key(workflow_id, ref.hash), bytes(raw))
        pipe.sadd(self.set_key(workflow_id), ref.hash)
        pipe.execute()

    def read(self, workflow_id: str, ref: ArtifactRef) -> Buffer | None:
        raw: bytes | None = self._call(lambda: self._client.get(self.key(workflow_id, ref.hash)))
        return raw

    def any(self, workflow_id: str) -> bool:
        return bool(self._call(lambda: self._client.exists(self.set_key(workflow_id))))

    def collect(self, workflow_id: str, keep: set[str]) -> None:
        """Removal outside a state write is unsafe here (see the class doc): a no-op."""

    def check_and_plan(self, pipe: Any, workflow_id: str, refs: dict[str, ArtifactRef]) -> list[str]:
        """In the WATCHed phase of a state write: ``ArtifactsMissing`` unless every referenced
        artifact exists; returns the hashes to remove in the same MULTI/EXEC."""
        keys = sorted({self.key(workflow_id, ref.hash) for ref in refs.values()})
        if keys and pipe.exists(*keys) != len(keys):  # EXISTS counts a repeated key each time
            raise ArtifactsMissing(workflow_id)
        members = pipe.smembers(self.set_key(workflow_id))
        keep = {ref.hash for ref in refs.values()}
        return sorted(
            m.decode("ascii", "replace") for m in members if m.decode("ascii", "replace") not in keep
        )

    def queue_removal(self, pipe: Any, workflow_id: str, stale: list[str]) -> None:
        """Queue (after MULTI) the removal of ``stale`` artifacts."""
        if stale:
            pipe.delete(*(self.key(workflow_id, digest) for digest in stale))
            pipe.srem(self.set_key(workflow_id), *stale)

    def keys_of(self, workflow_id: str) -> list[str]:
        """Every key holding the workflow's artifacts, and their set (for ``delete``)."""
        members: set[bytes] = self._client.smembers(self.set_key(workflow_id))  # type: ignore[assignment]
        digests = (member.decode("ascii", "replace") for member in members)
        return [self.set_key(workflow_id), *(self.key(workflow_id, digest) for digest in digests)]

    def remove_all(self, workflow_id: str) -> None:
        self._client.delete(*self.keys_of(workflow_id))
