"""RedisStore: workflow states on a Redis server, with version compare-and-set and O(1) node records.

Keys, for a workflow id ``wf`` and the default prefix ``flow_workbench:``:

- ``flow_workbench:meta:wf``   hash: ``version`` (int), ``updated_at`` (unix seconds), and ``run``
  (JSON ``RunRecord``) when ``save_nodes`` wrote a run record since the last snapshot
- ``flow_workbench:state:wf``  string: the snapshot, this project's FlatBuffers layout (checksummed)
- ``flow_workbench:nodes:wf``  hash: node -> JSON ``NodeRecord``, written by ``save_node`` and folded
  into the snapshot by the next ``save``; a load applies them over the snapshot.
- ``flow_workbench:lease:wf``  string with expiry: the execution lease (see ``execution_lease``)

The meta hash is the commit point: every write runs in MULTI/EXEC under WATCH of it, after checking
that the caller's ``data.version`` is not older than the stored one, so a lost race raises
``VersionConflictError`` and nothing is half-written. While this store object holds a workflow's
execution lease, its writes of that workflow also WATCH the lease key and check that it still holds
our token (fencing): a holder whose lease lapsed gets ``LeaseLostError`` and writes nothing, so it
can never overwrite the state of the executor that took the lease over.

FlatBuffers is used for snapshots because it is the fastest codec here for big states and carries a
checksum, so a damaged value raises ``CorruptStateError`` instead of loading garbage.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from .._gc_pause import cyclic_gc_paused
from ..data import NodeRecord, RunRecord, WorkflowData
from ..errors import (
    CorruptStateError,
    LeaseLostError,
    SerializationError,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
    WorkflowLockedError,
    WorkflowNotFoundError,
)
from ..ids import is_valid_workflow_id, validate_workflow_id
from ..validation import InvalidValue, check_run
from ._artifacts import ArtifactsMissing, RedisArtifacts, attach, persist, saved
from .base import (
    StagedTransaction,
    StateFormat,
    Transaction,
    TransactionalStore,
    WorkflowSummary,
    check_stored_id,
    summary_from_data,
)
from .leases import EXECUTE, LeaseHolder

if TYPE_CHECKING:
    import redis

T = TypeVar("T")

DEFAULT_PREFIX = "flow_workbench:"
#: Lost WATCH races are retried this often before a save gives up (only when versions still match).
MAX_WATCH_RETRIES = 16

# Deletes the lease only if we still hold it (compare-and-delete must be atomic: a Lua script).
_RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
# Extends the lease only if we still hold it.
_RENEW_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


def _glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself (``*?[]\\`` escaped)."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisStore(TransactionalStore):
    """A ``WorkflowStore`` on Redis (``redis://``, ``rediss://`` for TLS, or a ``redis.Redis`` client).

    ``retries`` and ``retry_backoff`` bound how long an unreachable server is retried before
    ``StoreUnavailableError`` (which names host and port) is raised. Authentication and TLS go
    through redis-py: put them in the URL (``rediss://user:password@host:6380/0``) or pass a
    client you configured (``redis.Redis(ssl=True, ssl_ca_certs=...)``); ``client_options`` are
    passed to ``redis.Redis.from_url``.

    ``lease_renew_interval`` is the time between renewals of a held execution lease (default: a
    third of its ttl); set it above the ttl only to make a lease lapse on purpose, as tests do.
    """

    lease_holder_sees_every_process = True  # the lease key names its holder

    def __init__(
        self,
        client_or_url: redis.Redis | str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        retries: int = 3,
        retry_backoff: float = 0.1,
        socket_timeout: float = 5.0,
        lease_renew_interval: float | None = None,
        **client_options: Any,
    ) -> None:
        import redis as redis_module
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        from .flatbuffers_codec import FlatBuffersCodec

        self._redis = redis_module
        if isinstance(client_or_url, str):
            self.client: redis.Redis = redis_module.Redis.from_url(
                client_or_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(ExponentialBackoff(base=retry_backoff, cap=retry_backoff * 8), retries),
                retry_on_error=[redis_module.ConnectionError, redis_module.TimeoutError],
                **client_options,
            )
        else:
            self.client = client_or_url
        self.prefix = prefix
        self._codec = FlatBuffersCodec()
        #: Artifact outputs: ``<prefix>artifact:<id>:<hash>`` keys, see ``_artifacts.RedisArtifacts``.
        self._artifacts = RedisArtifacts(self.client, prefix, self.address, self._call)
        self._lease_renew_interval = lease_renew_interval
        #: workflow id -> token of the execution lease this store object holds; writes of those
        #: workflows are fenced by it (any thread: the engine saves from its worker threads too).
        self._held_leases: dict[str, str] = {}
        self._held_leases_lock = threading.Lock()

    @property
    def format(self) -> StateFormat:
        return StateFormat.REDIS

    @property
    def address(self) -> str:
        """host:port (or socket path) of the server, for messages."""
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    # --- the contract ----------------------------------------------------------------------------

    def save(self, data: WorkflowData) -> None:
        with self.metrics.measure("save"):
            workflow_id = validate_workflow_id(data.id)
            self._transaction({workflow_id: data})

    def save_node(self, data: WorkflowData, node: str) -> None:
        """One HSET of the node's record and a version bump: O(1) whatever the state's size."""
        self.save_nodes(data, [node])

    def save_nodes(self, data: WorkflowData, nodes: Sequence[str], run_id: str | None = None) -> None:
        """The records of ``nodes`` (one HSET) and of run ``run_id`` (the meta hash's ``run``
        field) with one version bump, in one MULTI/EXEC."""
        with self.metrics.measure("record"):
            workflow_id = validate_workflow_id(data.id)
            payloads: dict[str, bytes] = {}
            for node in nodes:
                try:
                    payloads[node] = data.node_record(node).dumps()  # the output as stored
                except TypeError as error:
                    raise SerializationError(workflow_id, f"output of node {node!r}", error) from error
            run = None if run_id is None else data.run(run_id)
            run_payload = None
            if run is not None:
                try:
                    check_run(run, f"run {run.run_id!r}")
                    run_payload = orjson.dumps(run.to_json())
                except (InvalidValue, TypeError) as error:
                    raise SerializationError(workflow_id, "run history", error) from error
            meta, nodes_key = self._key("meta", workflow_id), self._key("nodes", workflow_id)
            now = time.time()
            refs: dict[str, Any] = {}

            def write(pipe: redis.client.Pipeline) -> int | None:
                stored = self._stored_version(pipe, meta)
                if stored is None:
                    return None  # no snapshot yet: fall back to a full save below
                if data.version < stored:
                    raise VersionConflictError(workflow_id, data.version, stored)
                # Only checked: other outputs of ``data`` may not be in the stored state yet,
                # so nothing is removed before the next full save.
                self._artifacts.check_and_plan(pipe, workflow_id, refs[workflow_id])
                pipe.multi()
                if payloads:
                    pipe.hset(nodes_key, mapping=payloads)  # type: ignore[arg-type]
                if run_payload is not None:
                    pipe.hset(meta, "run", run_payload)  # the newest run's record; a save folds it in
                pipe.hset(meta, mapping={"version": stored + 1, "updated_at": repr(now)})
                return stored + 1

            with data.lock:  # artifacts first, then the record (see _artifacts.saving)
                version = self._with_artifacts(
                    [data], refs, lambda: self._watched(write, {workflow_id: meta})
                )
                if version is None:
                    self._transaction({workflow_id: data})
                    return
                saved(self._artifacts, data, refs[workflow_id], nodes=nodes)
            data.version = version
            data.updated_at = now

    def load(self, workflow_id: str) -> WorkflowData:
        with self.metrics.measure("load"):
            validate_workflow_id(workflow_id)
            meta, state, nodes = (self._key(k, workflow_id) for k in ("meta", "state", "nodes"))

            def read() -> list[Any]:
                pipe = self.client.pipeline(transaction=True)  # MULTI/EXEC: a consistent read
                pipe.hgetall(meta)
                pipe.get(state)
                pipe.hgetall(nodes)
                return list(pipe.execute())

            meta_values, snapshot, records = self._call(read)
            if not meta_values or snapshot is None:
                raise WorkflowNotFoundError(workflow_id, f"redis {self.address}")
            source = self._source(workflow_id)
            with cyclic_gc_paused():  # a large acyclic graph: see _gc_pause
                decoded = self._codec.decode(snapshot, source)
            data = attach(self._artifacts, check_stored_id(decoded, workflow_id, source))
            version = self._parse_version(meta_values.get(b"version"), meta)
            updated_at = self._parse_updated_at(meta_values.get(b"updated_at"), meta, data.updated_at)
            try:
                for raw in records.values():
                    data.apply_node_record(NodeRecord.from_json(orjson.loads(raw)))
            except (ValueError, KeyError, TypeError) as error:
                raise CorruptStateError(
                    f"redis://{self.address}/{nodes}", f"bad node record: {error}"
                ) from error
            run = meta_values.get(b"run")
            if run is not None:
                try:
                    data.put_run(RunRecord.from_json(orjson.loads(run)))
                except (ValueError, KeyError, TypeError) as error:
                    raise CorruptStateError(
                        f"redis://{self.address}/{meta}", f"bad run record: {error}"
                    ) from error
            data.version, data.updated_at = version, updated_at
            return data

    def list_workflows(self) -> list[str]:
        with self.metrics.measure("list"):
            # The prefix is the caller's: its glob characters must match only themselves.
            pattern = _glob_escape(self._key("meta", "")) + "*"
            skip = len(self._key("meta", ""))

            def scan() -> list[str]:
                ids = (
                    key.decode("utf-8", "replace")[skip:]
                    for key in self.client.scan_iter(pattern, count=1000)
                )
                return sorted(i for i in ids if is_valid_workflow_id(i))

            return self._call(scan)

    def delete(self, workflow_id: str) -> None:
        with self.metrics.measure("delete"):
            validate_workflow_id(workflow_id)
            keys = [self._key(k, workflow_id) for k in ("meta", "state", "nodes")]
            keys += self._call(lambda: self._artifacts.keys_of(workflow_id))
            if not self._call(lambda: self.client.delete(*keys)):
                raise WorkflowNotFoundError(workflow_id, f"redis {self.address}")

    def exists(self, workflow_id: str) -> bool:
        validate_workflow_id(workflow_id)
        return bool(self._call(lambda: self.client.exists(self._key("meta", workflow_id))))

    def summary(self, workflow_id: str) -> WorkflowSummary:
        with self.metrics.measure("summary"):
            return summary_from_data(self.load(workflow_id), self.format, self._source(workflow_id))

    def begin_transaction(self) -> Transaction:
        return _RedisTransaction(self)

    def close(self) -> None:
        self.client.close()

    # --- execution leases ------------------------------------------------------------------------

    @contextmanager
    def execution_lease(
        self, workflow_id: str, *, ttl: float = 30.0, wait: float | None = None, purpose: str = EXECUTE
    ) -> Iterator[None]:
        """Hold ``workflow_id``'s lease while the block runs; renewed every ``ttl/3`` seconds.

        If another process holds it, wait up to ``wait`` seconds (None: fail at once) and then
        raise ``WorkflowLockedError``. A crashed holder stops renewing, so its lease expires after
        ``ttl`` seconds and another process can resume the workflow.

        A holder that is alive but does not renew for ``ttl`` seconds (a C call holding the GIL,
        a paused process, a lost connection) loses the lease too. Its writes of the workflow
        through this store object are then refused with ``LeaseLostError`` (the lease key is
        checked in the same MULTI/EXEC), whoever holds the lease now.
        """
        validate_workflow_id(workflow_id)
        key, ttl_ms = self._key("lease", workflow_id), max(1, int(ttl * 1000))
        # Who holds it, for messages and ``lease_holder``: host, pid, since and purpose, with a
        # random part that makes it unique.
        token = LeaseHolder.current(purpose).token(uuid.uuid4().hex)
        deadline = time.monotonic() + (wait or 0.0)
        while not self._call(lambda: self.client.set(key, token, nx=True, px=ttl_ms)):
            if wait is None or time.monotonic() >= deadline:
                raise WorkflowLockedError(
                    workflow_id, self.lease_holder(workflow_id), where=f"lease {key} on redis {self.address}"
                )
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        with self._held_leases_lock:
            self._held_leases[workflow_id] = token
        stop = threading.Event()
        renew = self.client.register_script(_RENEW_LEASE)
        interval = self._lease_renew_interval if self._lease_renew_interval is not None else ttl / 3

        def keep_renewing() -> None:
            while not stop.wait(interval):
                # A failed call is retried at the next interval; the fenced writes protect the state.
                with contextlib.suppress(self._redis.RedisError):
                    if not renew(keys=[key], args=[token, ttl_ms]):
                        return  # lapsed: the token can never hold the lease again

        renewer = threading.Thread(target=keep_renewing, daemon=True, name=f"lease-{workflow_id}")
        renewer.start()
        try:
            yield
        finally:
            with self._held_leases_lock:
                self._held_leases.pop(workflow_id, None)
            stop.set()
            renewer.join()
            with contextlib.suppress(self._redis.RedisError):  # if not released, it expires on its own
                self.client.register_script(_RELEASE_LEASE)(keys=[key], args=[token])

    def lease_holder(self, workflow_id: str) -> LeaseHolder | None:
        """Who holds the lease (read from its key's token), with the time left before it lapses."""
        validate_workflow_id(workflow_id)
        key = self._key("lease", workflow_id)

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.get(key)
            pipe.pttl(key)
            return list(pipe.execute())

        token, left_ms = self._call(read)
        if token is None:
            return None
        expires_in = left_ms / 1000 if isinstance(left_ms, int) and left_ms >= 0 else None
        return LeaseHolder.from_token(token.decode("utf-8", "replace"), expires_in)

    # --- internals -------------------------------------------------------------------------------

    def _key(self, kind: str, workflow_id: str) -> str:
        return f"{self.prefix}{kind}:{workflow_id}"

    def _source(self, workflow_id: str) -> str:
        return f"redis://{self.address}/{self._key('state', workflow_id)}"

    def _call(self, operation: Callable[[], T]) -> T:
        """Run a Redis operation; connection failures (after redis-py's retries) become one error."""
        try:
            return operation()
        except (self._redis.ConnectionError, self._redis.TimeoutError) as error:
            raise StoreUnavailableError(f"redis server at {self.address} is unreachable: {error}") from error
        except self._redis.WatchError:
            raise
        except self._redis.RedisError as error:  # e.g. authentication required, out of memory
            raise StoreError(f"redis server at {self.address} refused the operation: {error}") from error

    def _stored_version(self, pipe: redis.client.Pipeline, meta: str) -> int | None:
        raw: bytes | None = pipe.hget(meta, "version")  # type: ignore[assignment]  # bytes: no decode_responses
        return None if raw is None else self._parse_version(raw, meta)

    def _parse_version(self, raw: bytes | None, meta: str) -> int:
        """The meta hash's version field; anything but an integer in [0, 2**63) is corruption."""
        text = raw.decode("ascii", "replace") if raw is not None else ""
        # isdigit refuses "", signs, spaces and (after the ASCII decode) other scripts' digits.
        if not (text.isdigit() and len(text) <= 19 and int(text) < 2**63):
            raise self._bad_meta(meta, "version", "is not a version number", raw)
        return int(text)

    def _parse_updated_at(self, raw: bytes | None, meta: str, default: float) -> float:
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self._bad_meta(meta, "updated_at", "is not a time in unix seconds", raw)
        return value

    def _bad_meta(self, meta: str, field: str, problem: str, raw: bytes | None) -> CorruptStateError:
        shown = "missing" if raw is None else repr(raw[:64])
        return CorruptStateError(f"redis://{self.address}/{meta}", f"field {field!r} {problem}: {shown}")

    def _check_fences(self, pipe: redis.client.Pipeline, fences: dict[str, str]) -> None:
        """Refuse the write unless every lease we held for these workflows still holds our token.

        Called after WATCH of the lease keys, so a lease that expires or changes hands before
        EXEC aborts the EXEC, and the retry lands here again and refuses.
        """
        for workflow_id, token in fences.items():
            key = self._key("lease", workflow_id)
            current: bytes | None = pipe.get(key)  # type: ignore[assignment]
            if current != token.encode():
                holder = None if current is None else current[:200].decode("utf-8", "replace")
                raise LeaseLostError(workflow_id, f"{key} on redis {self.address}", holder)

    def _watched(self, write: Callable[[redis.client.Pipeline], T], metas: dict[str, str]) -> T:
        """WATCH the workflows' meta keys (and held leases), let ``write`` check and queue
        commands, EXEC; retry a lost race. ``metas`` maps workflow id -> meta key."""

        def attempt() -> T:
            for _ in range(MAX_WATCH_RETRIES):
                with self._held_leases_lock:
                    fences = {wid: self._held_leases[wid] for wid in metas if wid in self._held_leases}
                keys = [*metas.values(), *(self._key("lease", wid) for wid in fences)]
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                        self._check_fences(pipe, fences)
                        result = write(pipe)
                        if pipe.explicit_transaction:
                            pipe.execute()
                        return result
                    except self._redis.WatchError:
                        continue  # someone wrote in between: check the versions again
            raise StoreError(
                f"gave up after {MAX_WATCH_RETRIES} concurrent changes of {', '.join(metas.values())}"
            )

        return self._call(attempt)

    def _with_artifacts(self, states: list[WorkflowData], refs: dict[str, Any], write: Callable[[], T]) -> T:
        """Write the states' artifacts (node -> reference, merged into ``refs``), then ``write``;
        again when a concurrent save removed one before ours committed. Hold the states' locks."""
        for _ in range(MAX_WATCH_RETRIES):
            for data in states:
                refs[data.id] = self._call(lambda data=data: persist(self._artifacts, data))  # type: ignore[misc]
            try:
                return write()
            except ArtifactsMissing:
                continue
        raise StoreError(f"gave up after {MAX_WATCH_RETRIES} concurrent removals of artifacts")

    def _transaction(self, states: dict[str, WorkflowData]) -> None:
        """Save several states atomically (one MULTI/EXEC) after checking every version."""
        with contextlib.ExitStack() as locks:
            for data in states.values():
                locks.enter_context(data.lock)
            refs: dict[str, Any] = {}
            self._with_artifacts(list(states.values()), refs, lambda: self._write_states(states, refs))
            for wid, data in states.items():
                saved(self._artifacts, data, refs[wid])  # removal happened in the MULTI/EXEC

    def _write_states(self, states: dict[str, WorkflowData], refs: dict[str, Any]) -> None:
        metas = {wid: self._key("meta", wid) for wid in states}
        now = time.time()

        def write(pipe: redis.client.Pipeline) -> dict[str, int]:
            new_versions: dict[str, int] = {}
            for wid, data in states.items():
                stored = self._stored_version(pipe, metas[wid])
                if stored is not None and data.version < stored:
                    raise VersionConflictError(wid, data.version, stored)
                new_versions[wid] = data.version + 1
            encoded = {
                wid: bytes(self._codec.encode(data, version=new_versions[wid], updated_at=now))
                for wid, data in states.items()
            }
            stale = {wid: self._artifacts.check_and_plan(pipe, wid, refs[wid]) for wid in states}
            pipe.multi()
            for wid in states:
                pipe.set(self._key("state", wid), encoded[wid])
                pipe.delete(self._key("nodes", wid))
                pipe.hdel(metas[wid], "run")  # the snapshot holds the run history
                pipe.hset(metas[wid], mapping={"version": new_versions[wid], "updated_at": repr(now)})
                self._artifacts.queue_removal(pipe, wid, stale[wid])
            return new_versions

        new_versions = self._watched(write, metas)
        for wid, data in states.items():
            data.version = new_versions[wid]
            data.updated_at = now


class _RedisTransaction(StagedTransaction):
    def __init__(self, store: RedisStore) -> None:
        super().__init__()
        self._store = store

    def _commit_staged(self, staged: dict[str, tuple[WorkflowData, WorkflowData]]) -> None:
        with self._store.metrics.measure("commit"):
            if staged:
                self._store._transaction({wid: snapshot for wid, (_, snapshot) in staged.items()})
            for original, snapshot in staged.values():
                original.version, original.updated_at = snapshot.version, snapshot.updated_at
