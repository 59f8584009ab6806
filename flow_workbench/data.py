"""WorkflowData: the durable state of one workflow (statuses, key-values, outputs, history, runs, audit)."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from .artifacts import OUTPUT_MARKER, ArtifactStash
from .columns_view import ColumnsView
from .errors import SerializationError, UnknownNodeError
from .identity import current_host, current_user
from .status import STATUS_BY_VALUE, NodeStatus
from .validation import (
    INT64_MAX,
    INT64_MIN,
    MAX_TRIGGER_CAUSE,
    InvalidValue,
    check_record,
    check_run,
    require_str,
    require_str_list,
    require_time,
)

_IMMUTABLE_SCALARS = (str, int, float, bool, type(None))
_PLAIN_TYPES: Final = frozenset(_IMMUTABLE_SCALARS)

#: orjson options every stored JSON value is encoded with: datetimes and dataclasses must fail
#: instead of being converted silently (the codecs use the same options).
JSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_Fragment: Final = orjson.Fragment

#: Attempts kept in each node's attempt log; older ones are dropped as new ones are added.
ATTEMPT_LOG_CAP: Final = 50
#: Runs kept in the run history; older ones are dropped as new ones are added.
RUN_HISTORY_CAP: Final = 100
#: Failed attempts of a node, newest first, that keep their traceback; older ones keep only the
#: error type and message, so a node's log (and every journal record carrying it) stays small.
TRACEBACKS_KEPT: Final = 5
#: Longest traceback kept (its last characters: the innermost frames and the error).
TRACEBACK_CHARS: Final = 4096
#: Longest error message kept in an attempt log entry (its first characters).
ERROR_CHARS: Final = 4096


@dataclass(frozen=True)
class NodeHistory:
    """What happened to one node: attempts made, when the last one ran, and how it last failed."""

    node: str
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt took, or None while it runs or when it never ran."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class AuditEntry:
    """One manual edit of a stored state: what was done, to which nodes, when, by whom and where.

    ``user`` and ``host`` are "" in entries written before they were recorded.
    """

    action: str
    nodes: tuple[str, ...]
    at: float
    detail: str = ""
    user: str = ""
    host: str = ""

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "action": self.action,
            "nodes": list(self.nodes),
            "at": self.at,
            "detail": self.detail,
        }
        # Only when known, so an older entry is written back exactly as it was read.
        if self.user:
            raw["user"] = self.user
        if self.host:
            raw["host"] = self.host
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AuditEntry:
        """Decode a stored entry; ``InvalidValue`` (a ValueError) for values of the wrong type,
        ``KeyError`` for a missing action or time. Values are never converted (a number is not
        taken as an action), so every decoder accepts exactly the same entries."""
        return cls(
            action=require_str(raw["action"], "audit action"),
            nodes=tuple(require_str_list(raw.get("nodes", []), "audit nodes")),
            at=float(require_time(raw["at"], "audit time")),
            detail=require_str(raw.get("detail", ""), "audit detail"),
            user=require_str(raw.get("user", ""), "audit user"),
            host=require_str(raw.get("host", ""), "audit host"),
        )


class AttemptOutcome:
    """How an attempt ended, as stored in the attempt log (plain strings, so files stay readable)."""

    #: Started and not finished: still running, or its process died (see ``CRASHED``).
    RUNNING: Final = "running"
    COMPLETED: Final = "completed"
    #: The action raised (the node may have been retried).
    FAILED: Final = "failed"
    #: The action ran longer than the node's ``timeout``.
    TIMEOUT: Final = "timeout"
    #: The run stopped (``cancel()``, a hard failure elsewhere) and the node was left pending.
    CANCELLED: Final = "cancelled"
    #: Ctrl-C while the attempt ran; the node was left pending.
    INTERRUPTED: Final = "interrupted"
    #: Found still running when the workflow was next executed: its process died (killed, out of
    #: memory, ``os._exit`` in the action). Counts toward the node's retry budget.
    CRASHED: Final = "crashed"

    ALL: Final = frozenset({RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED, INTERRUPTED, CRASHED})


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of one node, from the node's attempt log (``WorkflowData.attempt_log``).

    ``number`` counts within its run (``ctx.attempt``); a run that resumes one that crashed
    continues its count. ``traceback`` is the last ``TRACEBACK_CHARS`` characters of the
    formatted traceback of a failed attempt (kept for the ``TRACEBACKS_KEPT`` newest failures).
    """

    node: str
    run_id: str
    number: int
    started_at: float
    finished_at: float | None = None
    outcome: str = AttemptOutcome.RUNNING
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    host: str = ""
    pid: int = 0

    @property
    def duration(self) -> float | None:
        """Seconds the attempt took; None while it runs (or if its process died)."""
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> list[Any]:
        """The stored form: a list in field order, without the node (the log is keyed by it)."""
        return [
            self.run_id,
            self.number,
            self.started_at,
            self.finished_at,
            self.outcome,
            self.error_type,
            self.error,
            self.traceback,
            self.host,
            self.pid,
        ]

    @classmethod
    def from_json(cls, node: str, raw: Sequence[Any]) -> AttemptRecord:
        """An entry of a checked log (``validation.check_attempt_log``)."""
        run_id, number, started, finished, outcome, error_type, error, trace, host, pid = raw
        return cls(node, run_id, number, started, finished, outcome, error_type, error, trace, host, pid)


class RunReason:
    """Why ``execute`` ran, as stored in the run history."""

    #: The workflow had no stored state.
    NEW: Final = "new"
    #: The last run did not finish (it crashed, was interrupted or cancelled).
    RESUME: Final = "resume"
    #: Nodes were reset or marked (audit entries) since the last run.
    AFTER_RESET: Final = "after reset"
    #: The last run finished and nothing was edited since: running again.
    RERUN: Final = "re-run"


class RunOutcome:
    """How a run ended, as stored in the run history."""

    RUNNING: Final = "running"
    #: Every node is completed (or bypassed).
    SUCCEEDED: Final = "succeeded"
    FAILED: Final = "failed"
    CANCELLED: Final = "cancelled"
    INTERRUPTED: Final = "interrupted"
    #: Nothing failed, but some nodes are still to run (an earlier failure blocks them, or the
    #: state could not be saved).
    INCOMPLETE: Final = "incomplete"
    #: Found still running when the workflow was next executed: its process died.
    CRASHED: Final = "crashed"

    ALL: Final = frozenset({RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED, INCOMPLETE, CRASHED})


_RUN_KEYS: Final = (
    "run_id",
    "started_at",
    "finished_at",
    "outcome",
    "reason",
    "nodes_run",
    "completed",
    "failed",
    "skipped",
    "host",
    "user",
    "pid",
    "params",
)


@dataclass(frozen=True)
class RunRecord:
    """One ``Workflow.execute`` call, from the run history (``WorkflowData.runs``).

    ``nodes_run`` counts nodes attempted at least once in the run; ``completed``, ``failed`` and
    ``skipped`` count the nodes that reached those statuses in it. ``params`` are the run
    parameters given to ``execute(params=...)`` (None when none were given).
    """

    run_id: str
    started_at: float
    finished_at: float | None = None
    outcome: str = RunOutcome.RUNNING
    reason: str = RunReason.NEW
    nodes_run: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    host: str = ""
    user: str = ""
    pid: int = 0
    params: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _RUN_KEYS}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RunRecord:
        """Decode a stored run; ``InvalidValue`` (a ValueError) or ``KeyError`` when it is not one
        a save could have written (checked as every decoder checks it)."""
        if not isinstance(raw, Mapping):
            raise InvalidValue("run", f"expected an object, got {type(raw).__name__}")
        record = cls(**{key: raw[key] for key in _RUN_KEYS})
        check_run(record, f"run {record.run_id!r}")
        return record


def new_attempt_entry(run_id: str, number: int, started_at: float, host: str, pid: int) -> list[Any]:
    """The stored form of an attempt that has just started (``AttemptRecord.to_json``)."""
    return [run_id, number, started_at, None, AttemptOutcome.RUNNING, None, None, None, host, pid]


def closed_attempt_entry(
    entry: list[Any],
    outcome: str,
    finished_at: float | None,
    error_type: str | None = None,
    error: str | None = None,
    traceback: str | None = None,
) -> list[Any]:
    """``entry`` (an open attempt) with its outcome: a new list (stored lists are never mutated)."""
    if error is not None and len(error) > ERROR_CHARS:
        error = error[: ERROR_CHARS - 1] + "\u2026"
    if traceback is not None and len(traceback) > TRACEBACK_CHARS:
        traceback = "\u2026" + traceback[-(TRACEBACK_CHARS - 1) :]
    return [*entry[:3], finished_at, outcome, error_type, error, traceback, *entry[8:]]


def _bounded_log(log: list[list[Any]]) -> list[list[Any]]:
    """``log`` cut to ``ATTEMPT_LOG_CAP`` entries, with tracebacks only in the newest failures."""
    if len(log) > ATTEMPT_LOG_CAP:
        log = log[-ATTEMPT_LOG_CAP:]
    kept = 0
    for index in range(len(log) - 1, -1, -1):
        if log[index][7] is not None:
            kept += 1
            if kept > TRACEBACKS_KEPT:
                log[index] = [*log[index][:7], None, *log[index][8:]]
    return log


@dataclass(frozen=True)
class NodeRecord:
    """Everything stored about one node; the unit of per-node persistence (journal records)."""

    node: str
    status: NodeStatus
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_type: str | None = None
    has_output: bool = False
    output: Any = None
    #: The node's attempt log in its stored form (lists, see ``AttemptRecord.to_json``), or None
    #: to leave the stored log as it is (records built by hand, e.g. by a reset, and records
    #: written before the log existed).
    attempt_log: list[list[Any]] | None = None
    #: The code version the node completed with (``code_versions``); None: none known (a reset
    #: clears it).
    code_version: str | None = None
    #: The output as stored (its orjson encoding, wrapped in ``orjson.Fragment``), set by
    #: ``WorkflowData.node_record``: stores write and apply it as is, never encoding it again.
    #: None in records built by hand or decoded; then ``output`` is encoded when applied.
    encoded_output: orjson.Fragment | None = field(default=None, compare=False, repr=False)
    #: Taken from a state whose writers vouch for every value (``StateColumns.checked``): the
    #: record is written without checking each value again (one per node and run, at NODE).
    checked: bool = field(default=False, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"node": self.node, "status": self.status.value, "attempts": self.attempts}
        for name in ("started_at", "finished_at", "error", "error_type"):
            value = getattr(self, name)
            if value is not None:
                raw[name] = value
        if self.has_output:
            raw["output"] = self.output
        if self.attempt_log is not None:
            raw["attempt_log"] = self.attempt_log
        if self.code_version is not None:
            raw["code_version"] = self.code_version
        return raw

    def dumps(self, **extra: Any) -> bytes:
        """``to_json()`` plus ``extra`` keys as JSON bytes, embedding ``encoded_output`` verbatim.

        Raises ``TypeError`` when a value has no JSON form (orjson's) or is one every decoder
        refuses (``validation.check_record``: a record a load could not replay is never written).
        """
        if not self.checked:
            try:
                check_record(self)
            except InvalidValue as error:
                raise TypeError(str(error)) from None
        raw = self.to_json()
        if self.has_output and self.encoded_output is not None:
            raw["output"] = self.encoded_output
        raw.update(extra)
        return orjson.dumps(raw, option=JSON_OPTIONS)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> NodeRecord:
        """Decode a stored record (journal, Redis); values are checked as every decoder checks
        them (``validation.check_record``): ``InvalidValue`` (a ValueError) or ``KeyError``."""
        node = raw["node"]
        status = raw["status"]
        if not isinstance(status, str):  # NodeStatus.parse would fail on an unhashable value
            raise InvalidValue(f"status of node {node!r}", f"{status!r} is not a node status")
        record = cls(
            node=node,
            status=NodeStatus.parse(status),
            attempts=raw.get("attempts", 0),
            started_at=raw.get("started_at"),
            finished_at=raw.get("finished_at"),
            error=raw.get("error"),
            error_type=raw.get("error_type"),
            has_output="output" in raw,
            output=raw.get("output"),
            attempt_log=raw.get("attempt_log"),
            code_version=raw.get("code_version"),
        )
        check_record(record)
        return record


@dataclass
class StateColumns:
    """The state laid out column by column, one dict per field; what codecs read and build.

    A ``WorkflowData`` holds its own and hands them out read-only (``read_columns``); codecs
    build them to make a state (``WorkflowData.from_columns``). Sparse per-node columns only hold
    nodes that have a value.
    """

    workflow_id: str
    version: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, NodeStatus] = field(default_factory=dict)
    #: node -> output, held encoded: an ``orjson.Fragment`` of the value's JSON (what
    #: ``WorkflowData.set_output`` stores), or a decoded JSON value that nothing outside the state
    #: references (what codecs decode from a file). Either is immutable by convention: never
    #: mutated in place, never handed out (``get_output``/``outputs`` return fresh copies), so
    #: states and copies share them. ``orjson.dumps`` writes both kinds; read values through
    #: ``plain_output``.
    outputs: dict[str, Any] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error_types: dict[str, str] = field(default_factory=dict)
    #: node -> its dependencies, in DAG order; None when the state was written without a DAG (Go files).
    #: Replaced as a whole when the structure changes, never mutated in place (codecs cache its
    #: encoding by identity).
    dag: dict[str, list[str]] | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    #: node -> its attempt log, oldest first, at most ``ATTEMPT_LOG_CAP`` entries, each in its
    #: stored form (a list, see ``AttemptRecord.to_json``): one orjson document per state, read
    #: without building an object per attempt. Lists are replaced, never mutated in place.
    attempt_log: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: The run history, oldest first, at most ``RUN_HISTORY_CAP`` runs.
    runs: list[RunRecord] = field(default_factory=list)
    #: node -> the code version it last completed with (``flow_workbench.code_versions``); absent
    #: for nodes that never completed here, were reset, or come from files without versions.
    code_versions: dict[str, str] = field(default_factory=dict)
    # Fields of the Go library's snapshot, kept so its files round-trip exactly.
    #: node -> timer fire time in unix nanoseconds (Go's ``now.Add(d).UnixNano()``), an int64.
    waits: dict[str, int] = field(default_factory=dict)
    rolling_back: bool = False
    trigger_cause: int = 0
    #: node -> the status text of a node whose status is ``NodeStatus.UNKNOWN`` (a string the Go
    #: JSON reader kept, e.g. ``"bogus"``); JSON saves write it back unchanged. An entry of a node
    #: whose status is no longer UNKNOWN means nothing (``set_node_status`` drops it).
    raw_statuses: dict[str, str] = field(default_factory=dict)
    #: node -> (value, text) of a Go FlatBuffers output as read: the value it was read as and the
    #: text stored. A Go-layout save writes the text back, byte for byte, while the node's output
    #: is still that very value object (stored outputs are never mutated, see ``outputs``; a new
    #: output is a new object). Knowledge about the encoding, not content: ``differences`` skips it.
    output_texts: dict[str, tuple[Any, str]] = field(default_factory=dict)
    #: Known true: every status is a ``NodeStatus``, every attempt count an int, every start/finish
    #: time a finite float, every error and error type a str, no top-level output a non-finite
    #: float and every attempt log entry valid (``validation.check_attempt_log``), so encoders
    #: write the history columns as typed vectors and the outputs and the attempt log as they are,
    #: and skip the per-value checks of those columns. A new state starts true; ``WorkflowData``'s
    #: writers clear it when they store anything else (``set_output`` refuses such outputs); a
    #: decoder that read exactly such values may set it (encoders never modify the state: what
    #: one learns it keeps itself). Hand-built columns start false.
    checked: bool = False

    # --- columns a decoder deferred ------------------------------------------------------------
    # A decoder may leave a column undecoded (``defer``): it is decoded on first access, and until
    # then an encoder may write the stored bytes again as they are (``deferred_raw``), so a state
    # loaded, edited elsewhere and saved never parses nor re-encodes it.

    def defer(self, name: str, raw: bytes | memoryview, decode: Callable[[Any], Any]) -> None:
        """Leave column ``name`` undecoded: ``decode(raw)`` gives its value on first access.

        ``raw`` is the column as stored, in the form an encoder of the same layout writes, and is
        only ever handed back by ``deferred_raw``; ``decode`` raises ``CorruptStateError`` when the
        bytes are not a valid column (never ``AttributeError``).
        """
        self.__dict__.pop(name)
        self.__dict__.setdefault("_deferred", {})[name] = (raw, decode)

    def deferred_raw(self, name: str) -> bytes | memoryview | None:
        """The stored bytes of column ``name`` while it is still undecoded, else None."""
        entry = self.__dict__.get("_deferred", {}).get(name)
        return None if entry is None else entry[0]

    def decode_deferred(self) -> None:
        """Decode every deferred column now (``CorruptStateError`` if one is damaged)."""
        for name in list(self.__dict__.get("_deferred", ())):
            getattr(self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the instance does not hold: a deferred column, on first use.
        entry = self.__dict__.get("_deferred", {}).get(name)
        if entry is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = entry[1](entry[0])
        self.__dict__[name] = value
        self.__dict__["_deferred"].pop(name, None)
        return value


class Changed:
    """Bits of the columns a ``WorkflowData`` writer changed (``ChangeLog`` entries)."""

    STATUS: Final = 1
    OUTPUT: Final = 2
    ATTEMPTS: Final = 4
    STARTED: Final = 8
    FINISHED: Final = 16
    ERROR: Final = 32
    ERROR_TYPE: Final = 64
    ATTEMPT_LOG: Final = 128
    CODE_VERSION: Final = 256
    WAIT: Final = 512
    DATA: Final = 1024
    AUDIT: Final = 2048
    RUNS: Final = 4096
    #: A column no node record carries: the DAG document, Go's header fields.
    STATE: Final = 8192
    #: Every per-node column.
    NODE: Final = 1023
    #: The per-node columns a node record carries (``NodeRecord``; all but Go's wait).
    RECORD: Final = NODE & ~WAIT


class ChangeLog:
    """Which columns and nodes a state's writers changed, in order: (``Changed`` bits, node) entries.

    Knowledge for encoders that patch their previous output of the same state instead of
    encoding every column again (``FlatBuffersCodec``): an encoder remembers ``mark()`` and later
    asks ``since(mark)``. ``None`` means "anything may have changed": the log was reset (a node
    removed, or more than ``CAP`` entries, so it stays bounded). Not content: copies, decodes and
    comparisons ignore it. Writers append under the state's lock.
    """

    __slots__ = ("entries", "epoch")
    CAP: Final = 1 << 16

    def __init__(self) -> None:
        self.entries: list[tuple[int, str | None]] = []
        self.epoch = 0

    def note(self, bits: int, node: str | None = None) -> None:
        """Record that the writer changed the columns of ``bits`` (for ``node``; None: a column
        not keyed by node, e.g. data). "" is a node name like any other."""
        entries = self.entries
        entries.append((bits, node))
        if len(entries) > self.CAP:
            self.reset()

    def reset(self) -> None:
        """Forget the entries: every mark taken before now reads as "anything changed"."""
        self.epoch += 1
        self.entries = []

    def mark(self) -> tuple[int, int]:
        return self.epoch, len(self.entries)

    def since(self, mark: tuple[int, int], limit: int | None = None) -> list[tuple[int, str | None]] | None:
        """Entries after ``mark``; None when the log was reset since, or (``limit``) when there
        are more than ``limit`` of them (checked before they are copied)."""
        epoch, at = mark
        count = len(self.entries) - at
        if epoch != self.epoch or count < 0 or (limit is not None and count > limit):
            return None
        return self.entries[at:]


class WorkflowData:
    """Thread-safe state of one workflow run.

    Key-value data and node outputs hold JSON values (str, int of up to 64 bits, float, bool, None,
    and lists/dicts of those with str keys). Outputs are checked and encoded once, by
    ``set_output`` (which refuses anything else); data values are checked when the state is saved.
    """

    __slots__ = ("_artifacts", "_c", "_stored", "changes", "lock")

    def __init__(self, workflow_id: str, *, created_at: float | None = None) -> None:
        if not isinstance(workflow_id, str):
            raise TypeError(f"workflow id must be a str, not {type(workflow_id).__name__}")
        now = time.time() if created_at is None else created_at
        self._c = StateColumns(workflow_id=workflow_id, created_at=now, updated_at=now, checked=True)
        self._artifacts = ArtifactStash()
        #: Re-entrant lock guarding every field; ``read_columns`` and the encoders hold it while they read.
        self.lock = threading.RLock()
        #: What the writers changed, for encoders that patch their last output (``ChangeLog``).
        self.changes = ChangeLog()
        self._stored: tuple[object, tuple[int, int]] | None = None

    # --- identity and bookkeeping --------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._c.workflow_id

    @property
    def version(self) -> int:
        """How many durable changes the store has accepted; checked on save (compare-and-set)."""
        return self._c.version

    @version.setter
    def version(self, value: int) -> None:
        self._c.version = int(value)

    @property
    def created_at(self) -> float:
        return self._c.created_at

    @property
    def updated_at(self) -> float:
        """Unix time of the last save (the Go library's ``__timestamp``)."""
        return self._c.updated_at

    @updated_at.setter
    def updated_at(self, value: float) -> None:
        self._c.updated_at = float(value)

    # --- key-value data ------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        with self.lock:
            return self._c.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``; numpy bool/int/float scalars are stored as the JSON values
        they equal (see ``native_value``), anything JSON cannot hold is refused when saved."""
        if not isinstance(key, str):
            raise TypeError(f"data keys must be str, not {type(key).__name__}")
        value = native_value(value)
        with self.lock:
            self._c.data[key] = value
            self.changes.note(Changed.DATA)

    def delete(self, key: str) -> bool:
        """Remove a key; returns whether it was there."""
        with self.lock:
            self.changes.note(Changed.DATA)
            return self._c.data.pop(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        with self.lock:
            return list(self._c.data)

    def items(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self._c.data.items())

    def __contains__(self, key: object) -> bool:
        with self.lock:
            return key in self._c.data

    # --- node statuses -------------------------------------------------------------------------

    def get_node_status(self, node: str) -> NodeStatus | None:
        """The node's status, or None when the state has never seen the node."""
        with self.lock:
            return self._c.statuses.get(node)

    def set_node_status(self, node: str, status: NodeStatus | str) -> None:
        if not isinstance(node, str) or not node:
            raise ValueError(f"node name must be a non-empty str, got {node!r}")
        parsed = STATUS_BY_VALUE.get(status)
        if parsed is None:
            parsed = NodeStatus.parse(status)
        with self.lock:
            self._c.statuses[node] = parsed
            self.changes.note(Changed.STATUS, node)
            if parsed is not NodeStatus.UNKNOWN:
                self._c.raw_statuses.pop(node, None)

    def set_node_statuses(self, statuses: Mapping[str, NodeStatus]) -> None:
        """``set_node_status`` for many nodes at once (one lock; the statuses must be members)."""
        for node, status in statuses.items():
            if not isinstance(node, str) or not node:
                raise ValueError(f"node name must be a non-empty str, got {node!r}")
            if type(status) is not NodeStatus:
                raise TypeError(f"status of node {node!r} must be a NodeStatus, not {status!r}")
        with self.lock:
            self._c.statuses.update(statuses)
            note = self.changes.note
            for node in statuses:
                note(Changed.STATUS, node)
            raw = self._c.raw_statuses
            if raw:
                for node, status in statuses.items():
                    if status is not NodeStatus.UNKNOWN:
                        raw.pop(node, None)

    def status_text(self, node: str) -> str | None:
        """The node's status as its file spells it: the kept text of an UNKNOWN status (e.g.
        ``"bogus"``), else the status value; None when the state has never seen the node."""
        with self.lock:
            status = self._c.statuses.get(node)
            if status is NodeStatus.UNKNOWN:
                return self._c.raw_statuses.get(node, "unknown")
            return None if status is None else str(status.value)

    def unknown_statuses(self) -> dict[str, str]:
        """Node -> status text of every node whose status is UNKNOWN (read from a Go JSON file)."""
        with self.lock:
            c = self._c
            if NodeStatus.UNKNOWN not in c.statuses.values():
                return {}
            raw = c.raw_statuses
            return {
                node: raw.get(node, status.value)
                for node, status in c.statuses.items()
                if status is NodeStatus.UNKNOWN
            }

    def node_statuses(self) -> dict[str, NodeStatus]:
        """A copy of every node's status, in the order nodes were first seen."""
        with self.lock:
            return dict(self._c.statuses)

    def nodes_with_status(self, *statuses: NodeStatus) -> list[str]:
        wanted = set(statuses)
        with self.lock:
            return [node for node, status in self._c.statuses.items() if status in wanted]

    def remove_node(self, node: str) -> None:
        """Forget everything about a node (status, output, history)."""
        with self.lock:
            for column in self._per_node_columns():
                column.pop(node, None)
            self._c.waits.pop(node, None)
            self._c.raw_statuses.pop(node, None)
            self._c.output_texts.pop(node, None)
            self.changes.reset()  # the node set changed

    # --- outputs -------------------------------------------------------------------------------

    def get_output(self, node: str, default: Any = None) -> Any:
        """The node's output as stored: a fresh object decoded from its JSON (``default`` if none).

        Snapshot semantics: the result is a new object on every call, so mutating it never
        changes the state, and it is what a save writes (a tuple set as output reads back as a
        list, a str subclass as a str).

        When the DAG structure is known (``dag_structure`` is not None), a name that is no node
        of it (nor of the state) raises ``UnknownNodeError`` naming the closest node, so a typo
        is not read as "no output"; a known node without an output gives ``default``.
        """
        with self.lock:
            c = self._c
            stored = c.outputs.get(node, _MISSING)
            dag = c.dag
            unknown = stored is _MISSING and dag is not None and node not in dag and node not in c.statuses
            known = list(dag) if unknown and dag is not None else ()
        if unknown:
            raise UnknownNodeError.naming([node], known, self.id)
        if stored is _MISSING:
            return default
        value = plain_output(stored)
        if type(value) is dict and OUTPUT_MARKER in value:  # an artifact or an escaped dict
            return self._artifacts.resolve(self._c.workflow_id, node, value)
        return value

    def set_output(self, node: str, value: Any) -> None:
        """Store ``value`` as the node's output, encoded to JSON now (once, not at every save).

        Later changes to ``value`` do not reach the state: call ``set_output`` again. Raises
        ``SerializationError`` (a ``TypeError``) naming the node and the reason when the value
        has no JSON form: an object JSON cannot hold (set, bytes, datetime, dataclass...), a
        dict key that is not a str, an int beyond 64 bits, or a NaN/infinite float at the top
        level (nested ones are written as null, as orjson does).

        DataFrames, Series, numpy arrays, pyarrow Tables and registered types are encoded as
        artifacts (see ``flow_workbench.artifacts``): the state holds a reference, the bytes are
        held until a store writes them.
        """
        stored, artifact = ArtifactStash.stored_form(self._c.workflow_id, node, value)
        encoded = stored if artifact is not None else encode_output(self._c.workflow_id, node, stored)
        with self.lock:
            if artifact is not None:
                self._artifacts.held[artifact[0]] = artifact[1]
            self._c.outputs[node] = encoded
            self.changes.note(Changed.OUTPUT, node)

    def clear_output(self, node: str) -> None:
        with self.lock:
            self._c.outputs.pop(node, None)
            self.changes.note(Changed.OUTPUT, node)

    def has_output(self, node: str) -> bool:
        with self.lock:
            return node in self._c.outputs

    def outputs(self, *, load_artifacts: bool = True) -> dict[str, Any]:
        """Every output, decoded afresh (same snapshot semantics as ``get_output``).

        ``load_artifacts=False`` gives artifact outputs as their ``ArtifactRef`` (kind, shape,
        preview) without reading them: what tables show.
        """
        with self.lock:
            column = dict(self._c.outputs)
        return self._artifacts.resolve_all(self._c.workflow_id, plain_outputs(column), load=load_artifacts)

    @property
    def artifact_stash(self) -> ArtifactStash:
        """Where this state's artifact bytes come from (held, or its store); used by stores."""
        return self._artifacts

    # --- per-node history ----------------------------------------------------------------------

    def node_history(self, node: str) -> NodeHistory:
        with self.lock:
            c = self._c
            return NodeHistory(
                node=node,
                attempts=c.attempts.get(node, 0),
                started_at=c.started_at.get(node),
                finished_at=c.finished_at.get(node),
                error=c.errors.get(node),
                error_type=c.error_types.get(node),
            )

    def history(self) -> dict[str, NodeHistory]:
        """History of every node the state knows, in status order."""
        with self.lock:
            names = dict.fromkeys(self._c.statuses)
            names.update(dict.fromkeys(self._c.attempts))
            return {node: self.node_history(node) for node in names}

    def record_attempt_started(self, node: str, at: float | None = None) -> int:
        """Count a new attempt of ``node`` and mark it running; returns the attempt number (1-based)."""
        when = time.time() if at is None else at
        with self.lock:
            c = self._c
            if at is not None and not _finite_float(at):
                c.checked = False
            attempt = c.attempts.get(node, 0) + 1
            c.attempts[node] = attempt
            c.started_at[node] = when
            c.finished_at.pop(node, None)
            c.statuses[node] = NodeStatus.RUNNING
            self.changes.note(Changed.ATTEMPTS | Changed.STARTED | Changed.FINISHED | Changed.STATUS, node)
            return attempt

    def record_attempt_finished(
        self,
        node: str,
        status: NodeStatus,
        *,
        at: float | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """Set the outcome of the node's last attempt: its status, end time and error (if any)."""
        when = time.time() if at is None else at
        with self.lock:
            c = self._c
            if not (at is None or _finite_float(at)) or not _known_kinds(status, error, error_type):
                c.checked = False
            c.statuses[node] = status
            c.finished_at[node] = when
            if error is None:
                c.errors.pop(node, None)
                c.error_types.pop(node, None)
            else:
                c.errors[node] = error
                c.error_types[node] = error_type or "Error"
            self.changes.note(Changed.STATUS | Changed.FINISHED | Changed.ERROR | Changed.ERROR_TYPE, node)

    def set_node_error(self, node: str, error: str | None, error_type: str | None = None) -> None:
        with self.lock:
            if not _known_kinds(NodeStatus.PENDING, error, error_type):
                self._c.checked = False
            if error is None:
                self._c.errors.pop(node, None)
                self._c.error_types.pop(node, None)
            else:
                self._c.errors[node] = error
                self._c.error_types[node] = error_type or "Error"
            self.changes.note(Changed.ERROR | Changed.ERROR_TYPE, node)

    def node_record(self, node: str) -> NodeRecord:
        """Snapshot of everything stored about ``node`` (for per-node persistence)."""
        with self.lock:
            c = self._c
            status = c.statuses.get(node)
            if status is None:
                raise KeyError(node)
            stored = c.outputs.get(node, _MISSING)
            return NodeRecord(
                node=node,
                status=status,
                attempts=c.attempts.get(node, 0),
                started_at=c.started_at.get(node),
                finished_at=c.finished_at.get(node),
                error=c.errors.get(node),
                error_type=c.error_types.get(node),
                has_output=node in c.outputs,
                output=None if stored is _MISSING else plain_output(stored),
                attempt_log=c.attempt_log.get(node, []),  # stored lists are never mutated: shared
                code_version=c.code_versions.get(node),
                encoded_output=None if stored is _MISSING else as_fragment(stored),
                checked=c.checked,
            )

    def apply_node_record(self, record: NodeRecord) -> None:
        """Overwrite everything stored about ``record.node`` with the record's values.

        The output is taken from ``record.encoded_output`` when set, else encoded from
        ``record.output`` (``SerializationError`` as in ``set_output``).
        """
        node = record.node
        encoded: Any = None
        if record.has_output:
            encoded = record.encoded_output
            if encoded is None:
                encoded = encode_output(self._c.workflow_id, node, record.output)
        with self.lock:
            c = self._c
            if not (
                type(record.attempts) is int
                and all(t is None or _finite_float(t) for t in (record.started_at, record.finished_at))
                and _known_kinds(record.status, record.error, record.error_type)
            ):
                c.checked = False
            c.statuses[node] = record.status
            _put(c.attempts, node, record.attempts or None)
            _put(c.started_at, node, record.started_at)
            _put(c.finished_at, node, record.finished_at)
            _put(c.errors, node, record.error)
            _put(c.error_types, node, record.error_type)
            if record.has_output:
                c.outputs[node] = encoded
            else:
                c.outputs.pop(node, None)
            if record.attempt_log is not None:
                if record.attempt_log:
                    c.checked = False  # not checked here: the next save checks the log
                _put(c.attempt_log, node, record.attempt_log or None)
            _put(c.code_versions, node, record.code_version)
            self.changes.note(Changed.RECORD, node)

    # --- DAG structure and audit ---------------------------------------------------------------

    @property
    def dag_structure(self) -> dict[str, list[str]] | None:
        """Node -> dependencies of the DAG this state was run with (None if unknown, e.g. Go files)."""
        with self.lock:
            dag = self._c.dag
            return None if dag is None else {node: list(deps) for node, deps in dag.items()}

    def set_dag_structure(self, structure: Mapping[str, Sequence[str]] | None) -> None:
        new = None if structure is None else {n: list(d) for n, d in structure.items()}
        with self.lock:
            # The same structure again (every resumed run) keeps the stored dict: encoders reuse
            # its encoding while it is the same object (see ``StateColumns.dag``).
            if new is None or new != self._c.dag:
                if new != self._c.dag:
                    self.changes.note(Changed.STATE)
                self._c.dag = new

    @property
    def audit(self) -> list[AuditEntry]:
        with self.lock:
            return list(self._c.audit)

    def add_audit(self, action: str, nodes: Iterable[str], detail: str = "") -> AuditEntry:
        """Record a manual edit, with the time, this process's user and host."""
        entry = AuditEntry(
            action=action,
            nodes=tuple(nodes),
            at=time.time(),
            detail=detail,
            user=current_user(),
            host=current_host(),
        )
        with self.lock:
            self._c.audit.append(entry)
            self.changes.note(Changed.AUDIT)
        return entry

    # --- attempt log and run history -----------------------------------------------------------

    def attempt_log(self, node: str) -> tuple[AttemptRecord, ...]:
        """The node's last ``ATTEMPT_LOG_CAP`` attempts, oldest first (empty if it never ran)."""
        with self.lock:
            log = self._c.attempt_log.get(node, ())
            return tuple(AttemptRecord.from_json(node, entry) for entry in log)

    def attempt_logs(self) -> dict[str, tuple[AttemptRecord, ...]]:
        """Every node's attempt log, in the order nodes first ran."""
        with self.lock:
            logs = dict(self._c.attempt_log)
        return {node: tuple(AttemptRecord.from_json(node, e) for e in log) for node, log in logs.items()}

    def open_attempt(
        self, node: str, run_id: str, number: int, *, at: float, host: str = "", pid: int = 0
    ) -> None:
        """Add a running attempt to the node's log (the oldest is dropped beyond the cap)."""
        entry = new_attempt_entry(run_id, number, at, host, pid)
        valid = (
            type(run_id) is str
            and type(number) is int
            and 1 <= number <= _INT64_MAX
            and _finite_time(at)
            and type(host) is str
            and type(pid) is int
            and 0 <= pid <= _INT64_MAX
        )
        with self.lock:
            if not valid:
                self._c.checked = False  # the next save checks the log (and refuses this entry)
            log = self._c.attempt_log.get(node, [])
            self._c.attempt_log[node] = _bounded_log([*log, entry])
            self.changes.note(Changed.ATTEMPT_LOG, node)

    def close_attempt(
        self,
        node: str,
        outcome: str,
        *,
        at: float | None,
        error_type: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
    ) -> bool:
        """Set the outcome of the node's running attempt (the last one in its log); returns False
        when there is none (nothing is changed)."""
        valid = (
            outcome in AttemptOutcome.ALL
            and (at is None or _finite_time(at))
            and all(v is None or type(v) is str for v in (error_type, error, traceback))
        )
        with self.lock:
            log = self._c.attempt_log.get(node)
            if not log or log[-1][4] != AttemptOutcome.RUNNING:
                return False
            if not valid:
                self._c.checked = False
            closed = closed_attempt_entry(log[-1], outcome, at, error_type, error, traceback)
            self._c.attempt_log[node] = _bounded_log([*log[:-1], closed])
            self.changes.note(Changed.ATTEMPT_LOG, node)
            return True

    def start_attempt(
        self, node: str, run_id: str, *, number: int, at: float, host: str = "", pid: int = 0
    ) -> None:
        """``record_attempt_started`` and ``open_attempt`` as one change: ``node`` is running its
        attempt ``number`` of run ``run_id`` (the engine's start of every attempt: one lock, not two)."""
        # Written out rather than through the helpers: this runs once per attempt of every run.
        entry = [run_id, number, at, None, _RUNNING, None, None, None, host, pid]
        valid = (
            type(at) is float
            and at - at == 0.0  # finite
            and type(run_id) is str
            and type(number) is int
            and 1 <= number <= _INT64_MAX
            and type(host) is str
            and type(pid) is int
            and 0 <= pid <= _INT64_MAX
        )
        with self.lock:
            c = self._c
            if not valid:
                c.checked = False  # the next save checks the values (and refuses a bad one)
            attempts = c.attempts
            attempts[node] = attempts.get(node, 0) + 1
            c.started_at[node] = at
            c.finished_at.pop(node, None)
            c.statuses[node] = _RUNNING_STATUS
            log = c.attempt_log.get(node)
            c.attempt_log[node] = _bounded_log([*log, entry]) if log else [entry]
            self.changes.note(_STARTED_COLUMNS, node)

    def complete_attempt(self, node: str, *, at: float, code_version: str | None, keep_output: bool) -> None:
        """The engine's end of a successful attempt as one change: status completed, end time, no
        error, the running attempt closed, the code version it completed with; the output is
        dropped unless ``keep_output`` (the action returned None)."""
        valid = type(at) is float and at - at == 0.0 and (code_version is None or type(code_version) is str)
        with self.lock:
            c = self._c
            if not valid:
                c.checked = False
            if not keep_output:
                c.outputs.pop(node, None)
            if code_version is None:
                c.code_versions.pop(node, None)
            else:
                c.code_versions[node] = code_version
            c.statuses[node] = _COMPLETED_STATUS
            c.finished_at[node] = at
            if c.errors or c.error_types:
                c.errors.pop(node, None)
                c.error_types.pop(node, None)
            log = c.attempt_log.get(node)
            if log:
                last = log[-1]
                if last[4] == _RUNNING:
                    closed = [*last[:3], at, _COMPLETED, None, None, None, *last[8:]]
                    # A first attempt (the common case) has nothing to bound.
                    c.attempt_log[node] = [closed] if len(log) == 1 else _bounded_log([*log[:-1], closed])
            self.changes.note(_COMPLETED_COLUMNS, node)

    def code_version(self, node: str) -> str | None:
        """The code version ``node`` last completed with; None when unknown (see ``code_versions``)."""
        with self.lock:
            return self._c.code_versions.get(node)

    def code_versions(self) -> dict[str, str]:
        """Node -> the code version it last completed with, for the nodes that have one."""
        with self.lock:
            return dict(self._c.code_versions)

    def set_code_version(self, node: str, version: str | None) -> None:
        with self.lock:
            if version is not None and type(version) is not str:
                self._c.checked = False  # the next save checks it (and refuses it)
            _put(self._c.code_versions, node, version)
            self.changes.note(Changed.CODE_VERSION, node)

    def runs(self) -> tuple[RunRecord, ...]:
        """The run history: one record per ``execute`` call, oldest first (the last ``RUN_HISTORY_CAP``)."""
        with self.lock:
            return tuple(self._c.runs)

    def run(self, run_id: str) -> RunRecord | None:
        """The run with this id, if the history still holds it."""
        with self.lock:
            return next((r for r in reversed(self._c.runs) if r.run_id == run_id), None)

    def put_run(self, record: RunRecord) -> None:
        """Add ``record`` to the run history, or replace the run with the same id."""
        with self.lock:
            self.changes.note(Changed.RUNS, record.run_id)  # which run: see ``unstored_changes``
            runs = self._c.runs
            for index in range(len(runs) - 1, -1, -1):
                if runs[index].run_id == record.run_id:
                    runs[index] = record
                    return
            runs.append(record)
            if len(runs) > RUN_HISTORY_CAP:
                del runs[: len(runs) - RUN_HISTORY_CAP]

    # --- Go library fields ---------------------------------------------------------------------

    @property
    def waits(self) -> dict[str, int]:
        """Timer fire times of waiting nodes in unix **nanoseconds** (int64), as the Go library's
        timer writes them (``now.Add(d).UnixNano()``); ``wait_until`` gives one as a datetime."""
        with self.lock:
            return dict(self._c.waits)

    def wait_until(self, node: str) -> datetime | None:
        """The node's timer fire time as an aware UTC datetime (microsecond precision); None when
        it has no wait or the time is outside what a datetime can hold (years 1-9999)."""
        with self.lock:
            fire_at = self._c.waits.get(node)
        if type(fire_at) is not int:
            return None
        try:
            return _EPOCH + timedelta(microseconds=fire_at // 1000)
        except OverflowError:
            return None

    def set_wait(self, node: str, fire_at: int | datetime) -> None:
        """Set the node's Go timer: ``fire_at`` in unix nanoseconds (an int64, as Go stores it) or a
        datetime (a naive one is local time, as ``datetime.timestamp`` takes it), converted exactly."""
        if not isinstance(node, str) or not node:
            raise ValueError(f"node name must be a non-empty str, got {node!r}")
        nanoseconds = _unix_nanoseconds(fire_at)
        with self.lock:
            self._c.waits[node] = nanoseconds
            self.changes.note(Changed.WAIT, node)

    def clear_wait(self, node: str) -> bool:
        """Remove the node's Go timer; returns whether it had one."""
        with self.lock:
            self.changes.note(Changed.WAIT, node)
            return self._c.waits.pop(node, _MISSING) is not _MISSING

    @property
    def rolling_back(self) -> bool:
        """Whether a Go saga rollback is in progress (Go's ``rolling_back``)."""
        return self._c.rolling_back

    def set_rolling_back(self, rolling_back: bool) -> None:
        if type(rolling_back) is not bool:
            raise TypeError(f"rolling_back must be a bool, not {type(rolling_back).__name__}")
        with self.lock:
            self.changes.note(Changed.STATE)
            self._c.rolling_back = rolling_back

    @property
    def trigger_cause(self) -> int:
        """Go's rollback trigger: 0 none, 1 failure, 2 canceled, 3 deadline."""
        return self._c.trigger_cause

    def set_trigger_cause(self, cause: int) -> None:
        """Set Go's rollback trigger (0 none, 1 failure, 2 canceled, 3 deadline)."""
        if type(cause) is not int or not 0 <= cause <= MAX_TRIGGER_CAUSE:
            raise ValueError(f"trigger_cause must be an int in 0..{MAX_TRIGGER_CAUSE}, not {cause!r}")
        with self.lock:
            self.changes.note(Changed.STATE)
            self._c.trigger_cause = cause

    # --- what a store holds of this state -------------------------------------------------------

    def note_stored(self, store: object, mark: tuple[int, int] | None = None) -> None:
        """``store`` (an identity token of one store) now holds this state exactly as it was at
        ``mark`` (a ``changes.mark()`` taken before the write; None: now). Stores call it after a
        load, a full save, or node records covering every change since the last call."""
        with self.lock:
            self._stored = (store, self.changes.mark() if mark is None else mark)

    def unstored_changes(
        self, store: object, limit: int | None = None
    ) -> list[tuple[int, str | None]] | None:
        """The ``changes`` entries since ``store`` last held this state (``note_stored``), or
        None when unknown: never noted by this store, the change log reset since, or more than
        ``limit`` entries. Unknown stays unknown until the store notes the state again, so a
        store asking after every write pays for the entries at most until they pass ``limit``.
        Entries are (``Changed`` bits, node; for ``RUNS``, the run id)."""
        with self.lock:
            stored = self._stored
            if stored is None or stored[0] is not store:
                return None
            changes = self.changes.since(stored[1], limit)
            if changes is None:
                self._stored = None
            return changes

    def may_reference_artifacts(self) -> bool:
        """False only when no output can be an artifact (nothing held, none stored)."""
        return self._artifacts.may_reference()

    # --- codecs, copies, comparison ------------------------------------------------------------

    @contextlib.contextmanager
    def read_columns(self) -> Iterator[ColumnsView]:
        """Hold ``self.lock`` and read the state's columns, read-only and without copies::

            with data.read_columns() as columns:
                failed = [node for node, status in columns.statuses.items() if status is FAILED]

        Lock rule: the lock is held for the whole block, so every setter of another thread (and
        a save, which encodes under the lock) waits until it ends; keep the block short and never
        wait inside it for another thread that may take the lock (or a store's lock: the data lock
        is the innermost). The view and the mappings it gives are valid only inside the block; a
        write through them raises ``TypeError`` (see ``ColumnsView``).
        """
        with self.lock:
            view = ColumnsView(self._c)
            try:
                yield view
            finally:
                view.close()

    def _unsafe_columns(self) -> StateColumns:
        """The live, mutable columns: for tests and codecs only, never API.

        Encoders hand the live dicts to C serialisers (orjson and the FlatBuffers builder cannot
        read a ``MappingProxyType``, and a copy would cost O(nodes) per save) while they hold
        ``self.lock``, and never change them; tests use it to forge states the public setters
        refuse. Everything else reads through ``read_columns``.
        """
        return self._c

    def take_id_from_file_name(self, workflow_id: str) -> None:
        """Name this state ``workflow_id``: for a store whose files name their workflow by the file
        (Go's FlatBuffers store), whatever id the file holds (see ``StateCodec.takes_id_from_file_name``)."""
        if not isinstance(workflow_id, str):
            raise TypeError(f"workflow id must be a str, not {type(workflow_id).__name__}")
        with self.lock:
            self._c.workflow_id = workflow_id
            self.changes.reset()  # encoders keep their last output per workflow id

    @classmethod
    def from_columns(cls, columns: StateColumns) -> WorkflowData:
        """Adopt decoded columns without copying (codecs hand over dicts they built)."""
        data = cls.__new__(cls)
        data._c = columns
        data.lock = threading.RLock()
        data._artifacts = ArtifactStash()
        data.changes = ChangeLog()
        data._stored = None
        return data

    def __getstate__(self) -> tuple[StateColumns, dict[str, bytes]]:
        # Pickling is for shipping a state to a worker process (e.g. Dask), never for storage.
        # orjson.Fragment cannot be pickled: encoded outputs travel as their bytes (a decoded
        # value is never bytes, so the two kinds stay apart). Artifacts travel as their bytes.
        clone = self.copy()
        columns = clone._c
        artifacts = clone._artifacts.portable(columns.outputs)
        columns.outputs = {
            node: fragment_bytes(value) if type(value) is _Fragment else value
            for node, value in columns.outputs.items()
        }
        return columns, artifacts

    def __setstate__(self, state: tuple[StateColumns, dict[str, bytes]]) -> None:
        columns, artifacts = state
        columns.outputs = {
            node: _Fragment(value) if type(value) is bytes else value
            for node, value in columns.outputs.items()
        }
        self._c = columns
        self.lock = threading.RLock()
        self._artifacts = ArtifactStash(dict(artifacts))
        self.changes = ChangeLog()
        self._stored = None

    def copy(self) -> WorkflowData:
        """An independent deep copy (mutating either never affects the other)."""
        with self.lock:
            c = self._c
            # A column still undecoded stays so in the copy (it is immutable bytes until decoded).
            deferred_outputs = c.__dict__.get("_deferred", {}).get("outputs")
            clone = StateColumns(
                workflow_id=c.workflow_id,
                version=c.version,
                created_at=c.created_at,
                updated_at=c.updated_at,
                data=_copy_values(c.data),
                statuses=dict(c.statuses),
                # immutable values (see StateColumns.outputs): shared
                outputs={} if deferred_outputs else dict(c.outputs),
                attempts=dict(c.attempts),
                started_at=dict(c.started_at),
                finished_at=dict(c.finished_at),
                errors=dict(c.errors),
                error_types=dict(c.error_types),
                dag=c.dag,  # replaced whole, never mutated (see StateColumns.dag): shared
                audit=list(c.audit),
                attempt_log=dict(c.attempt_log),  # immutable lists (see StateColumns): shared
                runs=list(c.runs),
                code_versions=dict(c.code_versions),
                waits=dict(c.waits),
                rolling_back=c.rolling_back,
                trigger_cause=c.trigger_cause,
                raw_statuses=dict(c.raw_statuses),
                output_texts=dict(c.output_texts),
                checked=c.checked,
            )
            artifacts = self._artifacts.copy()
        if deferred_outputs:
            clone.defer("outputs", *deferred_outputs)
        data = WorkflowData.from_columns(clone)
        data._artifacts = artifacts
        return data

    def same_content(self, other: WorkflowData, *, ignore: Iterable[str] = ()) -> bool:
        """Field-by-field equality, optionally ignoring some ``StateColumns`` fields."""
        return not self.differences(other, ignore=ignore)

    def differences(self, other: WorkflowData, *, ignore: Iterable[str] = ()) -> list[str]:
        """Names of ``StateColumns`` fields that differ (statuses compare by value)."""
        skipped = {"checked", "output_texts", "_deferred", *ignore}  # knowledge, not content
        with self.lock, other.lock:
            self._c.decode_deferred()
            other._c.decode_deferred()
            mine, theirs = dict(vars(self._c)), dict(vars(other._c))
            # Only the texts of nodes still UNKNOWN are content.
            mine["raw_statuses"], theirs["raw_statuses"] = self.unknown_statuses(), other.unknown_statuses()
            if "outputs" not in skipped:  # compare values, not their encoded forms
                mine["outputs"], theirs["outputs"] = (
                    plain_outputs(mine["outputs"]),
                    plain_outputs(theirs["outputs"]),
                )
            return [
                name for name in mine if name not in skipped and not _deep_equal(mine[name], theirs[name])
            ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowData):
            return NotImplemented
        return self.same_content(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        with self.lock:
            counts: dict[str, int] = {}
            for status in self._c.statuses.values():
                counts[status.value] = counts.get(status.value, 0) + 1
        summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no nodes"
        return f"<WorkflowData {self.id!r} v{self.version}: {summary}>"

    def _per_node_columns(self) -> Iterator[dict[str, Any]]:
        c = self._c
        yield from (
            c.statuses,
            c.outputs,
            c.attempts,
            c.started_at,
            c.finished_at,
            c.errors,
            c.error_types,
            c.attempt_log,
            c.code_versions,
        )


_MISSING = object()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _unix_nanoseconds(moment: int | datetime) -> int:
    """``moment`` as int64 unix nanoseconds: an int is checked, a datetime converted exactly."""
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.astimezone()
        nanoseconds = (aware - _EPOCH) // timedelta(microseconds=1) * 1000
    elif isinstance(moment, int) and not isinstance(moment, bool):
        nanoseconds = int(moment)
    else:
        raise TypeError(f"a wait is unix nanoseconds (int) or a datetime, not {type(moment).__name__}")
    if not INT64_MIN <= nanoseconds <= INT64_MAX:
        raise ValueError(f"wait {moment!r} is outside the int64 nanoseconds Go can hold")
    return nanoseconds


_RUNNING: Final = AttemptOutcome.RUNNING
_COMPLETED: Final = AttemptOutcome.COMPLETED
_RUNNING_STATUS: Final = NodeStatus.RUNNING
#: The columns ``start_attempt`` and ``complete_attempt`` change (``ChangeLog`` entries).
_STARTED_COLUMNS: Final = (
    Changed.ATTEMPTS | Changed.STARTED | Changed.FINISHED | Changed.STATUS | Changed.ATTEMPT_LOG
)
_COMPLETED_COLUMNS: Final = (
    Changed.OUTPUT
    | Changed.CODE_VERSION
    | Changed.STATUS
    | Changed.FINISHED
    | Changed.ERROR
    | Changed.ERROR_TYPE
    | Changed.ATTEMPT_LOG
)
_COMPLETED_STATUS: Final = NodeStatus.COMPLETED


def _finite_float(value: object) -> bool:
    return type(value) is float and math.isfinite(value)


def _known_kinds(status: object, error: object, error_type: object) -> bool:
    """Whether a writer's status and error values are of the kinds ``StateColumns.checked`` vouches for."""
    return (
        type(status) is NodeStatus
        and (error is None or type(error) is str)
        and (error_type is None or type(error_type) is str)
    )


def _finite_time(value: object) -> bool:
    """A time the attempt log may hold: a finite float or an int."""
    return type(value) is int or _finite_float(value)


_INT64_MAX: Final = (1 << 63) - 1


def _put(column: dict[str, Any], node: str, value: Any) -> None:
    if value is None:
        column.pop(node, None)
    else:
        column[node] = value


def numpy_scalar(value: Any) -> bool | int | float:
    """orjson's ``default``: a numpy bool, integer or float scalar as the Python value it equals.

    Exact, never rounded: ``np.float32(0.1)`` becomes ``0.10000000149011612`` (the float it
    is), not the ``0.1`` of orjson's ``OPT_SERIALIZE_NUMPY``, which would read back as a
    different float; that option is not used because it also turns arrays into lists.
    ``np.longdouble`` (more precise than a float) and anything else raise ``TypeError``, which
    orjson reports as "Type is not JSON serializable: <type>". numpy is never imported here: a
    numpy value means numpy is loaded already.
    """
    numpy = sys.modules.get("numpy")
    if (
        numpy is not None
        and isinstance(value, numpy.bool_ | numpy.integer | numpy.floating)
        and not isinstance(value, numpy.longdouble)
    ):
        plain: bool | int | float = value.item()
        return plain
    raise TypeError(f"{type(value).__name__} has no JSON form")


def native_value(value: Any) -> Any:
    """``value`` with its numpy bool/int/float scalars (at any depth) replaced by the Python values
    they equal (as ``numpy_scalar``); any other value is returned as it is.

    A container is re-read from its JSON only when it held such a scalar (then tuples become
    lists, as a save would make them); one orjson pass, and only once numpy is loaded.
    """
    if type(value) in _PLAIN_TYPES or "numpy" not in sys.modules:
        return value
    if not isinstance(value, dict | list | tuple):
        try:
            return numpy_scalar(value)
        except TypeError:
            return value  # refused, naming the key, when the state is saved
    converted = False

    def default(item: Any) -> Any:
        nonlocal converted
        plain = numpy_scalar(item)
        converted = True
        return plain

    try:
        raw = orjson.dumps(value, option=JSON_OPTIONS, default=default)
    except TypeError:
        return value
    return orjson.loads(raw) if converted else value


def encode_output(workflow_id: str, node: str, value: Any) -> orjson.Fragment:
    """The stored form of an output: its JSON as an ``orjson.Fragment``; ``SerializationError``
    (a ``TypeError``) naming the node and the reason when the value has no JSON form.

    numpy bool/int/float scalars are written as the JSON values they equal (``numpy_scalar``);
    numpy arrays are refused like any other type JSON cannot hold.
    """
    try:
        raw = orjson.dumps(value, option=JSON_OPTIONS, default=numpy_scalar)
    except TypeError as error:  # orjson.JSONEncodeError subclasses TypeError
        raise SerializationError(workflow_id, f"output of node {node!r}", error) from error
    if raw == b"null" and value is not None:  # orjson writes NaN and infinities as null
        raise SerializationError(
            workflow_id, f"output of node {node!r}", ValueError(f"{value} has no JSON form")
        )
    return _Fragment(raw)


def fragment_bytes(fragment: orjson.Fragment) -> bytes:
    """The JSON bytes an ``orjson.Fragment`` holds (orjson exposes them only by writing it)."""
    return orjson.dumps(fragment)


def as_fragment(stored: Any) -> orjson.Fragment:
    """An output column value (see ``StateColumns.outputs``) as a Fragment of its JSON."""
    if type(stored) is _Fragment:
        return stored
    return _Fragment(orjson.dumps(stored, option=JSON_OPTIONS))


def plain_output(stored: Any) -> Any:
    """A fresh Python value of an output column value (see ``StateColumns.outputs``)."""
    if type(stored) is _Fragment:
        return orjson.loads(orjson.dumps(stored))
    if isinstance(stored, _IMMUTABLE_SCALARS):
        return stored
    try:
        return orjson.loads(orjson.dumps(stored, option=JSON_OPTIONS))
    except TypeError:  # put into the live columns by hand, bypassing set_output
        return copy.deepcopy(stored)


def plain_outputs(column: dict[str, Any]) -> dict[str, Any]:
    """Fresh values of a whole output column: one encode and one parse in C when possible."""
    try:
        # orjson writes keys in insertion order and parses them back in file order.
        plain: dict[str, Any] = orjson.loads(orjson.dumps(column, option=JSON_OPTIONS))
    except TypeError:  # a value put into the live columns by hand that JSON cannot hold
        return {node: plain_output(value) for node, value in column.items()}
    return plain


def _copy_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, _IMMUTABLE_SCALARS) else copy.deepcopy(v) for k, v in values.items()}


def _deep_equal(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from True and 1 from 1.0, so round-trip tests catch type drift."""
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
