"""The WorkflowStore contract (save, load, list_workflows, delete), transactions and summaries."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import ClassVar, Self

from ..data import WorkflowData
from ..errors import CorruptStateError, WorkflowLockedError, WorkflowNotFoundError
from ..ids import validate_workflow_id
from ..status import FAILED_STATUSES, TERMINAL_STATUSES, NodeStatus
from ..validation import representable_time
from ._versions import is_content_token
from .leases import EXECUTE, LeaseHolder, check_purpose
from .metrics import StoreMetrics


class StateFormat(StrEnum):
    """Where a stored state came from and how it is encoded."""

    FLATBUFFERS = "flow_workbench-flatbuffers"
    JSON = "flow_workbench-json"
    GO_FLATBUFFERS = "go-flatbuffers"
    GO_JSON = "go-json"
    MEMORY = "memory"
    REDIS = "redis"


@dataclass(frozen=True)
class WorkflowSummary:
    """What a table row needs about one stored workflow, obtainable without a full decode.

    ``updated_at`` is a finite float of unix seconds that a ``datetime`` and a pandas
    ``Timestamp`` can both show (``validation.TIME_MIN..TIME_MAX``, years 1677-2262), or None
    when unknown: Go files without a timestamp, and stored times outside that range
    (``"__timestamp": 1e300`` is kept in the state, shown as unknown here).
    ``version`` is None for Go files, which store none (their states carry a content token
    instead, see ``stores._versions``).
    """

    workflow_id: str
    format: StateFormat
    node_count: int
    status_counts: dict[str, int] = field(default_factory=dict)
    failed_nodes: tuple[str, ...] = ()
    updated_at: float | None = None
    version: int | None = None
    source: str = ""
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        # Normalised here, once for every store and codec, so no caller can meet a time it
        # cannot show (the CLI's table, workflows_frame).
        object.__setattr__(self, "updated_at", representable_time(self.updated_at))
        if self.version is not None and is_content_token(self.version):
            object.__setattr__(self, "version", None)
        object.__setattr__(self, "status_counts", in_status_order(self.status_counts))

    @property
    def progress(self) -> float:
        """Fraction of nodes in a terminal status (1.0 for a workflow without nodes)."""
        if not self.node_count:
            return 1.0
        done = sum(self.status_counts.get(s.value, 0) for s in TERMINAL_STATUSES)
        return done / self.node_count


#: Where each known status value comes in ``WorkflowSummary.status_counts``.
_STATUS_RANK = {status.value: rank for rank, status in enumerate(NodeStatus)}


def in_status_order(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` with the statuses in ``NodeStatus`` order, then any other key (a custom store's)
    by name: one order whichever file kind or path produced a summary (``ls --json``, tables)."""
    keys = list(counts)
    ordered = sorted(keys, key=lambda value: (_STATUS_RANK.get(value, len(_STATUS_RANK)), value))
    return counts if keys == ordered else {value: counts[value] for value in ordered}


def summary_from_data(
    data: WorkflowData, format: StateFormat, source: str = "", size_bytes: int | None = None
) -> WorkflowSummary:
    """Summarise a fully loaded state (stores without a cheaper path use this)."""
    statuses = data.node_statuses()
    counts = Counter(status.value for status in statuses.values())
    return WorkflowSummary(
        workflow_id=data.id,
        format=format,
        node_count=len(statuses),
        status_counts=dict(counts),
        failed_nodes=tuple(n for n, s in statuses.items() if s in FAILED_STATUSES),
        updated_at=data.updated_at,
        version=data.version,
        source=source,
        size_bytes=size_bytes,
    )


def check_stored_id(data: WorkflowData, workflow_id: str, source: str) -> WorkflowData:
    """Refuse a state stored under ``workflow_id`` that names another workflow.

    Saving such a state (after a reset, a mark, a resumed run) would write over the other
    workflow, so every store checks the id of what it loads (``CorruptStateError``).
    """
    if data.id != workflow_id:
        raise CorruptStateError(source, f"holds workflow {data.id!r}, not {workflow_id!r}")
    return data


_LEASES_LOCK = threading.Lock()


class WorkflowStore(ABC):
    """Saves and restores workflow states. Implementations must be safe to call from several threads.

    ``save`` is a compare-and-set: a state whose ``version`` is older than the stored one raises
    ``VersionConflictError``; on success the store increments ``data.version`` and stamps
    ``data.updated_at``. ``load`` of an unknown id raises ``WorkflowNotFoundError``.
    """

    #: Whether ``lease_holder`` sees every holder this store's data can have (other processes
    #: included): then running nodes without a holder are known to be interrupted. The base
    #: lease is an in-process lock, so a subclass that does not override it cannot tell.
    lease_holder_sees_every_process: ClassVar[bool] = False

    _metrics: StoreMetrics | None = None
    _lease_locks: dict[str, threading.Lock] | None = None
    _lease_holders: dict[str, LeaseHolder] | None = None

    @abstractmethod
    def save(self, data: WorkflowData) -> None:
        """Durably store a snapshot of ``data``."""

    @abstractmethod
    def load(self, workflow_id: str) -> WorkflowData:
        """Return an independent copy of the stored state."""

    @abstractmethod
    def list_workflows(self) -> list[str]:
        """Sorted ids of every stored workflow."""

    @abstractmethod
    def delete(self, workflow_id: str) -> None:
        """Remove a workflow; raises ``WorkflowNotFoundError`` if there is none."""

    # --- optional capabilities with correct (if slower) defaults --------------------------------

    def save_node(self, data: WorkflowData, node: str) -> None:
        """Persist the state of one node (per-node persistence). Stores override this to be O(1)."""
        self.save(data)

    def save_nodes(self, data: WorkflowData, nodes: Sequence[str], run_id: str | None = None) -> None:
        """Persist the state of several nodes and of run ``run_id`` (its run history record): the
        engine's per-node persistence. Stores override this to write them as one O(1) change; this
        default calls ``save_node`` per node, and ``save`` when there is a run record to write
        (once per run: a run record has no per-node form)."""
        if run_id is not None:
            self.save(data)
            return
        for node in nodes:
            self.save_node(data, node)

    def save_run_end(self, data: WorkflowData, nodes: Sequence[str], run_id: str) -> None:
        """The last write of a ``Persistence.NODE`` run: afterwards the store holds ``data`` in
        full. ``nodes`` changed since the run's last ``save_nodes``; ``run_id`` is the run. This
        default calls ``save``; a store may instead write one node record when what it holds plus
        that record is ``data`` (``FileStore`` does, for short runs)."""
        self.save(data)

    def exists(self, workflow_id: str) -> bool:
        try:
            self.load(workflow_id)
        except WorkflowNotFoundError:
            return False
        return True

    def summary(self, workflow_id: str) -> WorkflowSummary:
        """Light summary of one workflow (file stores answer without a full decode)."""
        return summary_from_data(self.load(workflow_id), self.format)

    def node_status(self, workflow_id: str, node: str) -> NodeStatus | None:
        """One node's stored status, or None if the state has no such node."""
        return self.load(workflow_id).get_node_status(node)

    @property
    def format(self) -> StateFormat:
        return StateFormat.MEMORY

    @contextmanager
    def execution_lease(
        self, workflow_id: str, *, ttl: float = 30.0, wait: float | None = None, purpose: str = EXECUTE
    ) -> Iterator[None]:
        """Hold the right to execute (or edit) ``workflow_id`` while the block runs.

        ``Workflow.execute`` holds it for the whole run (``purpose="execute"``); the recovery
        edits hold it for their load-modify-save (``purpose`` names the edit). A second holder
        gets ``WorkflowLockedError`` naming the first (``lease_holder``) at once, or after waiting
        up to ``wait`` seconds. This default guards one process (one store object); stores shared
        between processes override it (a lock file next to the state, a Redis key with expiry).
        A lease that can lapse while its holder runs (Redis: not renewed within ``ttl``) must
        fence the holder's writes: once it lapsed they raise ``LeaseLostError`` and write nothing.
        """
        validate_workflow_id(workflow_id)
        check_purpose(purpose)
        with _LEASES_LOCK:
            if self._lease_locks is None:
                self._lease_locks, self._lease_holders = {}, {}
            lock = self._lease_locks.setdefault(workflow_id, threading.Lock())
        acquired = lock.acquire(blocking=False) if wait is None else lock.acquire(timeout=wait)
        if not acquired:
            raise WorkflowLockedError(workflow_id, self.lease_holder(workflow_id), where="in this process")
        with _LEASES_LOCK:
            assert self._lease_holders is not None  # set with _lease_locks
            self._lease_holders[workflow_id] = LeaseHolder.current(purpose)
        try:
            yield
        finally:
            with _LEASES_LOCK:
                self._lease_holders.pop(workflow_id, None)
            lock.release()

    def lease_holder(self, workflow_id: str) -> LeaseHolder | None:
        """Who holds ``workflow_id``'s execution lease now (host, pid, since, purpose), or None.

        A snapshot: the lease may be taken or released right after. Stores whose
        ``execution_lease`` guards nothing answer None.
        """
        validate_workflow_id(workflow_id)
        with _LEASES_LOCK:
            return None if self._lease_holders is None else self._lease_holders.get(workflow_id)

    @property
    def metrics(self) -> StoreMetrics:
        """Operation counts, failures and durations of this store instance."""
        if self._metrics is None:
            self._metrics = StoreMetrics()
        return self._metrics

    def close(self) -> None:
        """Release files, connections and locks held by the store."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Transaction(ABC):
    """Saves staged together: ``commit`` makes all visible or none; ``rollback`` discards them.

    Use as a context manager: commit on a clean exit, rollback when the block raises.
    """

    @abstractmethod
    def save(self, data: WorkflowData) -> None:
        """Stage a snapshot of ``data`` (taken now; later changes to ``data`` are not included)."""

    @abstractmethod
    def commit(self) -> None:
        """Apply every staged save atomically (version checks first: any conflict aborts all)."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard staged saves."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class StagedTransaction(Transaction):
    """A transaction that stages private copies; subclasses apply them in ``_commit_staged``."""

    def __init__(self) -> None:
        #: workflow id -> (the caller's object, a snapshot taken at ``save``)
        self._staged: dict[str, tuple[WorkflowData, WorkflowData]] = {}
        self._done = False

    def save(self, data: WorkflowData) -> None:
        self._check_open()
        validate_workflow_id(data.id)
        self._staged[data.id] = (data, data.copy())

    def commit(self) -> None:
        self._check_open()
        self._commit_staged(self._staged)
        self._done = True

    def rollback(self) -> None:
        self._staged.clear()
        self._done = True

    @abstractmethod
    def _commit_staged(self, staged: dict[str, tuple[WorkflowData, WorkflowData]]) -> None:
        """Check every version, then make all snapshots visible at once; update the callers' objects."""

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("transaction already committed or rolled back")


class TransactionalStore(WorkflowStore):
    """A store that can save several workflows atomically (the design doc's TransactionalStore)."""

    @abstractmethod
    def begin_transaction(self) -> Transaction:
        """Start a transaction."""

    def transaction(self) -> Transaction:
        """``with store.transaction() as tx: tx.save(a); tx.save(b)``."""
        return self.begin_transaction()


def copy_workflow(source: WorkflowStore, target: WorkflowStore, workflow_id: str) -> WorkflowData:
    """Copy one workflow between any two stores, keeping every value; returns the copy as saved."""
    data = source.load(workflow_id)
    target.save(data)
    return data
